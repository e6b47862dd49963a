//! Packets kept in their shape, for a route whose upstream is Socket.IO too
//! ([`Settings::shapes`](super::Settings::shapes)): every namespace CONNECT is joined upstream
//! as the same namespace with its own auth ([`ClientOp::Join`]), events and acks go as
//! argument lists with their attachments in place ([`ClientOp::Emit`],
//! [`ClientOp::Answer`]), and the backend's `40`, `44`, `41`, events and acks come back in
//! the namespace they were sent in. Nothing is packed, unpacked or renumbered: the JSON
//! array and the attachments are forwarded as they came, only the ack ids are the legs' own.
//!
//! Must not touch: the single-payload conventions used toward other dialects (`emit.rs`,
//! `delivery.rs`, `namespaces.rs`, `subscriptions.rs`), Engine.IO packets (`role.rs`).

use std::time::Instant;

use bytes::Bytes;

use super::wire::wire;
use super::{BACKEND_ACK_TTL, Nsp, SocketioServer, State};
use crate::dialect::pending;
use crate::dialect::socketio::packet::{self, Packet, PacketType};
use crate::dialect::{ServerOut, WsMsg};
use crate::frame::{BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Shaped};

impl SocketioServer {
    /// A namespace CONNECT (allowed, not yet asked for): the first one opens the upstream
    /// session; each is joined upstream with its own auth, and its `40` waits for the
    /// backend's.
    pub(super) fn join_shaped(&mut self, p: Packet, out: &mut ServerOut) {
        if self.state == State::AwaitConnect {
            self.open_shaped(p.data.as_ref(), out);
            self.auth = p.data.clone();
            self.primary = Some(p.nsp.clone());
            self.state = if self.upstream_ready {
                State::Ready
            } else {
                State::Connecting
            };
        }
        out.ops.push(ClientOp::Join {
            scope: p.nsp.clone(),
            auth: p.data,
        });
        self.nsps.push(Nsp {
            name: p.nsp,
            joined: false,
        });
    }

    /// Open the upstream session (once): at the Engine.IO session's start, as a socket.io
    /// server has the connection before any namespace is joined, so the first CONNECT does
    /// not wait for the dial; or, on a route that verifies tokens at the edge
    /// ([`Settings::defer_open`](super::Settings::defer_open)), with the first CONNECT's
    /// `auth`, whose token the session verifies before it dials.
    pub(super) fn open_shaped(&mut self, auth: Option<&Bytes>, out: &mut ServerOut) {
        if self.connect_sent {
            return;
        }
        let token = self
            .upgrade_token
            .clone()
            .or_else(|| auth.and_then(|a| super::namespaces::auth_token(a)));
        out.ops.push(ClientOp::Connect {
            credentials: Credentials {
                token: token.clone(),
                auth_json: auth.cloned(),
                ..Default::default()
            },
        });
        self.connect_sent = true;
        self.token = token;
    }

    /// The client left a namespace: so does the upstream. Unlike the single-payload mode the
    /// connection goes on when it was the last one, as socket.io's does.
    pub(super) fn leave_shaped(&mut self, nsp: &Bytes, out: &mut ServerOut) {
        let Some(i) = self.nsp_index(nsp) else {
            return;
        };
        self.nsps.remove(i);
        self.replies.retain(|_, (n, _)| n != nsp);
        out.ops.push(ClientOp::Leave { scope: nsp.clone() });
    }

    /// A client EVENT as it came: the array (event name first) and its attachments.
    pub(super) fn emit_shaped(&mut self, p: Packet, out: &mut ServerOut) {
        let Some(list) = p.data else {
            return self.close(1002, "parse error", true, out);
        };
        if !p.attachments.is_empty() && !placeholders_resolve(&list, p.attachments.len()) {
            // The reference parser's "illegal attachments": the connection ends (forwarded,
            // it would end the backend's connection, which every namespace shares).
            return self.close(1002, "parse error", true, out);
        }
        let reply = match p.id {
            None => None,
            Some(id) if self.replies.len() >= self.settings.max_pending_acks => {
                let e = ErrorInfo::new(ErrorKind::Limit, "too many emits waiting for an ack");
                out.to_client.push(super::wire::named_error_ack(
                    &p.nsp,
                    id,
                    e.kind.label(),
                    &e.message,
                ));
                return;
            }
            Some(id) => {
                let rid = self.next_reply;
                self.next_reply += 1;
                self.replies.insert(rid, (p.nsp.clone(), id));
                Some(rid)
            }
        };
        out.ops.push(ClientOp::Emit {
            scope: p.nsp,
            values: Shaped {
                list,
                attachments: p.attachments,
            },
            reply,
        });
    }

    /// The client's ACK of an emit the backend asked an answer for: the arguments as they
    /// came. Unknown ids are ignored, as the reference server does.
    pub(super) fn answer_shaped(&mut self, p: Packet, out: &mut ServerOut) {
        let Some(id) = p.id else { return };
        let Some(token) = self.backend_acks.remove(&id) else {
            return;
        };
        if let Some(list) = &p.data
            && !p.attachments.is_empty()
            && !placeholders_resolve(list, p.attachments.len())
        {
            return self.close(1002, "parse error", true, out);
        }
        out.ops.push(ClientOp::Answer {
            token,
            values: Shaped {
                list: p.data.unwrap_or_else(|| Bytes::from_static(b"[]")),
                attachments: p.attachments,
            },
        });
    }

    /// The backend's side of the shaped exchange.
    pub(super) fn on_shaped_event(&mut self, ev: BackendEvent, now: Instant, out: &mut ServerOut) {
        match ev {
            BackendEvent::Joined { scope, data } => {
                let Some(n) = self.nsps.iter_mut().find(|n| n.name == scope && !n.joined) else {
                    return;
                };
                n.joined = true;
                match data {
                    Some(d) => {
                        out.to_client
                            .push(wire(PacketType::Connect, &scope, None, 0, &[&d]))
                    }
                    None => {
                        let sid = packet::json_string(self.sid.as_bytes());
                        out.to_client.push(wire(
                            PacketType::Connect,
                            &scope,
                            None,
                            0,
                            &[b"{\"sid\":", &sid, b"}"],
                        ));
                    }
                }
            }
            BackendEvent::JoinFailed { scope, data } => {
                let Some(i) = self.nsps.iter().position(|n| n.name == scope && !n.joined) else {
                    return;
                };
                self.nsps.remove(i);
                let data = data.unwrap_or_else(|| {
                    Bytes::from_static(br#"{"message":"the backend refused the namespace"}"#)
                });
                out.to_client
                    .push(wire(PacketType::ConnectError, &scope, None, 0, &[&data]));
            }
            BackendEvent::Left { scope } => {
                let Some(i) = self.nsp_index(&scope) else {
                    return;
                };
                self.nsps.remove(i);
                self.replies.retain(|_, (n, _)| *n != scope);
                out.to_client
                    .push(wire(PacketType::Disconnect, &scope, None, 0, &[]));
            }
            BackendEvent::Emit { scope, values, ack } => {
                if !self.nsps.iter().any(|n| n.name == scope && n.joined) {
                    // Not (or no longer) joined: the client has no listeners there.
                    return;
                }
                // A full table asks for no ack: the backend's own timeout answers that emit.
                let id = ack.and_then(|token| {
                    let id = self.next_ack;
                    let deadline = pending::deadline(now, BACKEND_ACK_TTL);
                    self.backend_acks.insert(id, token, deadline).ok()?;
                    self.next_ack += 1;
                    Some(id)
                });
                self.copied.one(values.list.len());
                shaped(PacketType::Event, &scope, id, values, out);
            }
            BackendEvent::Answered { id, values } => {
                if let Some((nsp, ack_id)) = self.replies.remove(&id) {
                    self.copied.one(values.list.len());
                    shaped(PacketType::Ack, &nsp, Some(ack_id), values, out);
                }
            }
            _ => {}
        }
    }
}

/// An EVENT or ACK with its values as they came: the binary kind when attachments go along,
/// each attachment then as a binary message. The array is written once, into the packet's
/// own buffer (the caller counts that copy); attachments go as they came.
fn shaped(kind: PacketType, nsp: &[u8], id: Option<u64>, v: Shaped, out: &mut ServerOut) {
    let kind = match (kind, v.attachments.is_empty()) {
        (PacketType::Event, false) => PacketType::BinaryEvent,
        (PacketType::Ack, false) => PacketType::BinaryAck,
        (k, _) => k,
    };
    out.to_client.reserve(1 + v.attachments.len());
    out.to_client
        .push(wire(kind, nsp, id, v.attachments.len(), &[&v.list]));
    out.to_client
        .extend(v.attachments.into_iter().map(WsMsg::Binary));
}

/// Whether every attachment placeholder in `list` names one of `count` attachments.
fn placeholders_resolve(list: &[u8], count: usize) -> bool {
    packet::placeholder_refs(list)
        .is_ok_and(|refs| refs.iter().all(|r| r.num.is_some_and(|n| n < count)))
}
