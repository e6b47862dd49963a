//! Scoped mode, for a route whose clients speak Socket.IO too ([`Settings::scoped`]): the
//! Engine.IO connection is the session (ready at `open`, no namespace joined of our own), and
//! the client's namespaces are joined over it one for one ([`ClientOp::Join`], each with its
//! own auth), as socket.io-client multiplexes them. Events and acks travel in their shape:
//! the JSON array and the attachments are written as they came, under our own ack ids, and
//! the backend's packets come back the same way, in their namespace.
//!
//! Must not touch: the single-namespace, single-payload mode used for other client dialects
//! (`emit.rs`, `inbound.rs`), Engine.IO framing (`role.rs`).

use std::time::Instant;

use bytes::Bytes;

use super::{SocketioClient, State};
use crate::dialect::ClientOut;
use crate::dialect::pending;
use crate::dialect::socketio::packet::{Packet, PacketType};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Shaped};

impl SocketioClient {
    /// An operation of the scoped exchange (the session is open).
    pub(super) fn on_scoped_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut) {
        match op {
            ClientOp::Join { scope, auth } => {
                if !self.scopes.contains(&scope) {
                    self.scopes.push(scope.clone());
                }
                self.send_or_fail(PacketType::Connect, scope, None, auth, Vec::new(), out);
            }
            ClientOp::Leave { scope } => {
                self.scopes.retain(|s| *s != scope);
                self.send_or_fail(PacketType::Disconnect, scope, None, None, Vec::new(), out);
            }
            ClientOp::Emit {
                scope,
                values,
                reply,
            } => {
                let id = match reply {
                    Some(rid) => {
                        let id = self.next_ack;
                        let deadline = pending::deadline(now, self.settings.ack_timeout);
                        if let Err(e) = self.pending.insert(id, rid, deadline) {
                            out.events.push(BackendEvent::Reply {
                                id: rid,
                                result: Err(ErrorInfo::new(ErrorKind::Limit, e.to_string())),
                            });
                            return;
                        }
                        self.next_ack += 1;
                        Some(id)
                    }
                    None => None,
                };
                let p = packet(PacketType::Event, scope, id, values);
                // The array is written once, into the emit's own buffer (attachments as is).
                let copied = p.data.as_ref().map_or(0, Bytes::len);
                let sent = self.send_packet(&p, out);
                if sent.is_ok() {
                    self.copied.one(copied);
                }
                if let Err(e) = sent {
                    match id.and_then(|id| self.pending.remove(&id)) {
                        Some(rid) => out.events.push(BackendEvent::Reply {
                            id: rid,
                            result: Err(e),
                        }),
                        None => out.events.push(BackendEvent::Refused(e)),
                    }
                }
            }
            ClientOp::Answer { token, values } => {
                let Some((id, scope)) = parse_token(&token) else {
                    return;
                };
                let p = packet(PacketType::Ack, scope, Some(id), values);
                // Only a backend with a tiny maxPayload refuses it; its own timeout answers.
                if self.send_packet(&p, out).is_ok() {
                    self.copied.one(p.data.as_ref().map_or(0, Bytes::len));
                }
            }
            _ => {}
        }
    }

    fn send_or_fail(
        &mut self,
        kind: PacketType,
        nsp: Bytes,
        id: Option<u64>,
        data: Option<Bytes>,
        attachments: Vec<Bytes>,
        out: &mut ClientOut,
    ) {
        let p = Packet {
            kind,
            nsp,
            id,
            data,
            attachments,
        };
        if let Err(e) = self.send_packet(&p, out) {
            self.fail(e, out);
        }
    }

    /// A Socket.IO packet from the backend, in scoped mode.
    pub(super) fn on_sio_scoped(&mut self, p: Packet, out: &mut ClientOut) {
        match p.kind {
            PacketType::Connect => out.events.push(BackendEvent::Joined {
                scope: p.nsp,
                data: p.data,
            }),
            PacketType::ConnectError => {
                self.scopes.retain(|s| *s != p.nsp);
                out.events.push(BackendEvent::JoinFailed {
                    scope: p.nsp,
                    data: p.data,
                });
            }
            PacketType::Disconnect => {
                self.scopes.retain(|s| *s != p.nsp);
                out.events.push(BackendEvent::Left { scope: p.nsp });
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(list) = p.data else { return };
                let ack = p.id.map(|id| token(id, &p.nsp));
                out.events.push(BackendEvent::Emit {
                    scope: p.nsp,
                    values: Shaped {
                        list,
                        attachments: p.attachments,
                    },
                    ack,
                });
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let Some(id) = p.id else { return };
                let Some(rid) = self.pending.remove(&id) else {
                    return;
                };
                out.events.push(BackendEvent::Answered {
                    id: rid,
                    values: Shaped {
                        list: p.data.unwrap_or_else(|| Bytes::from_static(b"[]")),
                        attachments: p.attachments,
                    },
                });
            }
        }
    }

    /// The Engine.IO session is open: in scoped mode that is the session being ready.
    pub(super) fn open_scoped(&mut self, out: &mut ClientOut) {
        self.state = State::Connected;
        out.events.push(BackendEvent::Ready { session: None });
        let now = Instant::now();
        while let Some(op) = self.queued.pop_front() {
            crate::dialect::ClientRole::on_op(self, op, now, out);
        }
    }
}

/// An EVENT or ACK carrying `v` as it came; the binary kind when attachments go along.
fn packet(kind: PacketType, nsp: Bytes, id: Option<u64>, v: Shaped) -> Packet {
    let kind = match (kind, v.attachments.is_empty()) {
        (PacketType::Event, false) => PacketType::BinaryEvent,
        (PacketType::Ack, false) => PacketType::BinaryAck,
        (k, _) => k,
    };
    Packet {
        kind,
        nsp,
        id,
        data: Some(v.list),
        attachments: v.attachments,
    }
}

/// The token of a backend's ack request: its id, then its namespace (ack ids are counted per
/// namespace by the backend, so the pair names it).
fn token(id: u64, nsp: &[u8]) -> Bytes {
    let mut t = id.to_string().into_bytes();
    t.extend_from_slice(nsp);
    Bytes::from(t)
}

fn parse_token(t: &Bytes) -> Option<(u64, Bytes)> {
    let digits = t.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(t.get(..digits)?).ok()?.parse().ok()?;
    Some((id, t.slice(digits..)))
}
