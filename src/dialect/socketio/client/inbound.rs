//! Socket.IO packets from the backend: the namespace CONNECT reply (the session is ready and
//! held ops go out) or CONNECT_ERROR (unauthorized, with the backend's message and data), a
//! namespace DISCONNECT, events as messages (connection-state-recovery offsets stripped,
//! binary resolved to one neutral payload or refused), and acks answering our emits.
//!
//! Must not touch: Engine.IO framing (`role.rs`), what we send (`emit.rs`).

use std::time::Instant;

use bytes::Bytes;

use super::{SocketioClient, State};
use crate::dialect::socketio::packet::{self, Decoder, Packet, PacketType};
use crate::dialect::{ClientOut, ClientRole, Close};
use crate::frame::{BackendEvent, ErrorInfo, ErrorKind, Payload};

impl SocketioClient {
    pub(super) fn on_sio(&mut self, p: Packet, out: &mut ClientOut) {
        if p.nsp != self.nsp {
            return;
        }
        match p.kind {
            PacketType::Connect => {
                if self.state != State::Connecting {
                    return;
                }
                let info = p
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_slice::<ConnectReply>(d).ok());
                self.recovery = info.as_ref().is_some_and(|i| i.pid.is_some());
                self.state = State::Connected;
                out.events.push(BackendEvent::Ready {
                    session: info.and_then(|i| i.sid).map(Bytes::from),
                });
                let now = Instant::now();
                while let Some(op) = self.queued.pop_front() {
                    self.on_op(op, now, out);
                }
            }
            PacketType::ConnectError => {
                let (message, detail) = connect_error(p.data.as_ref());
                self.fail(
                    ErrorInfo {
                        kind: ErrorKind::Unauthorized,
                        message,
                        detail,
                        code: None,
                    },
                    out,
                );
            }
            PacketType::Disconnect => {
                // The backend's `socket.disconnect()`: "io server disconnect", which
                // socket.io-client does not reconnect from; a kick, not an outage.
                if self.state == State::Closed {
                    return;
                }
                self.state = State::Closed;
                let e =
                    ErrorInfo::new(ErrorKind::Unavailable, "backend disconnected the namespace");
                self.fail_pending(&e, out);
                out.events.push(BackendEvent::Closing {
                    reason: e,
                    retry: false,
                });
                out.close = Some(Close::normal());
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(data) = p.data else { return };
                let Ok((name, mut args)) = self.decoder.split_event(&data) else {
                    return self.fail(
                        ErrorInfo::new(ErrorKind::Protocol, "malformed event from backend"),
                        out,
                    );
                };
                // Connection-state recovery appends a string offset as the last argument of
                // every stored event (broadcasts without an ack id); the backend application
                // never sent it. A direct emit ending in a string looks the same on the wire;
                // the reference client reads that same position as the offset.
                if self.recovery
                    && p.id.is_none()
                    && args.last().is_some_and(|a| a.first() == Some(&b'"'))
                {
                    args.pop();
                }
                let binary = if p.kind.is_binary() {
                    match resolve_binary(&args, &p.attachments) {
                        Ok(b) => b,
                        Err(e) if e.kind == ErrorKind::Protocol => return self.fail(e, out),
                        Err(mut e) => {
                            if let Some(id) = p.id {
                                self.ack_error(id, &e, out);
                            }
                            // Name what was dropped, for the session's count and log.
                            let why = String::from_utf8_lossy(&e.message);
                            let name = String::from_utf8_lossy(&name);
                            e.message = Bytes::from(format!("backend event `{name}`: {why}"));
                            out.events.push(BackendEvent::Dropped(e));
                            return;
                        }
                    }
                } else {
                    None
                };
                let payload = match (binary, args.pop()) {
                    // The placeholder it replaces was the last argument.
                    (Some(bin), _) => Payload::binary(bin),
                    (None, Some(last)) => Payload::json(last),
                    (None, None) => Payload::null(),
                };
                out.events.push(BackendEvent::Message {
                    meta: Vec::new(),
                    sub: None,
                    channel: name,
                    event: None,
                    // Empty (no allocation) unless the event had arguments before its last.
                    args: args.into_vec(),
                    payload,
                    // The backend asked for an ack: the downstream answers it (a Socket.IO
                    // client's own ack, a STOMP client's ACK/NACK, or its server role once
                    // delivered), as `ClientOp::Ack` with this id as the token.
                    ack: p.id.map(|id| Bytes::from(id.to_string())),
                });
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let Some(id) = p.id else { return };
                let Some(rid) = self.pending.remove(&id) else {
                    return;
                };
                let result = match p.data {
                    Some(d) => ack_payload(&mut self.decoder, p.kind, d, &p.attachments).map(Some),
                    None => Ok(None),
                };
                if let Err(e) = &result
                    && e.kind == ErrorKind::Protocol
                {
                    let e = e.clone();
                    out.events.push(BackendEvent::Reply { id: rid, result });
                    return self.fail(e, out);
                }
                out.events.push(BackendEvent::Reply { id: rid, result });
            }
        }
    }
}

/// The one attachment of a `BINARY_*` packet, when it maps to a neutral binary payload: it
/// must be the whole last argument. `Ok(None)` when the packet has no binary at all.
///
/// A placeholder that names no attachment is a protocol error (the reference parser's
/// "illegal attachments", which closes the connection). Anything else with binary in it
/// (several attachments, a nested or non-final placeholder, an attachment no placeholder
/// names) is valid Socket.IO that one payload cannot carry: untranslatable.
fn resolve_binary(args: &[Bytes], attachments: &[Bytes]) -> Result<Option<Bytes>, ErrorInfo> {
    let mut refs = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let found = packet::placeholder_refs(a).map_err(|e| {
            ErrorInfo::new(ErrorKind::Protocol, format!("bad Socket.IO packet: {e}"))
        })?;
        refs.extend(found.into_iter().map(|r| (i, r)));
    }
    if refs
        .iter()
        .any(|(_, r)| r.num.is_none_or(|n| n >= attachments.len()))
    {
        return Err(ErrorInfo::new(
            ErrorKind::Protocol,
            format!(
                "binary packet from backend has a placeholder naming none of its {} attachments",
                attachments.len()
            ),
        ));
    }
    match (attachments, refs.as_slice()) {
        ([], []) => Ok(None),
        ([bin], [(i, r)]) if r.root && *i + 1 == args.len() => Ok(Some(bin.clone())),
        _ => Err(ErrorInfo::new(
            ErrorKind::Untranslatable,
            format!(
                "binary data must be the last argument, alone ({} attachments, {} placeholders)",
                attachments.len(),
                refs.len()
            ),
        )),
    }
}

/// The payload of an ACK's arguments array `data`: its single argument, or the whole array
/// when there are several (or none); binary when the single argument is the attachment.
/// `decoder` is the one that decoded the ACK (its elements are then not scanned again).
fn ack_payload(
    decoder: &mut Decoder,
    kind: PacketType,
    data: Bytes,
    attachments: &[Bytes],
) -> Result<Payload, ErrorInfo> {
    let Ok(mut args) = decoder.split_args(&data) else {
        return Ok(Payload::json(data));
    };
    let binary = if kind.is_binary() {
        resolve_binary(&args, attachments)?
    } else {
        None
    };
    match (binary, args.len()) {
        (Some(bin), 1) => Ok(Payload::binary(bin)),
        (Some(_), n) => Err(ErrorInfo::new(
            ErrorKind::Untranslatable,
            format!("binary data must be the ack's only argument (got {n})"),
        )),
        (None, 1) => Ok(args.pop().map_or(Payload::json(data), Payload::json)),
        (None, _) => Ok(Payload::json(data)),
    }
}

#[derive(serde::Deserialize)]
struct ConnectReply {
    sid: Option<String>,
    pid: Option<String>,
}

fn connect_error(data: Option<&Bytes>) -> (Bytes, Option<Payload>) {
    #[derive(serde::Deserialize)]
    struct E<'a> {
        #[serde(borrow)]
        message: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    let Some(d) = data else {
        return (Bytes::from_static(b"connection refused"), None);
    };
    if let Ok(e) = serde_json::from_slice::<E<'_>>(d) {
        let message = e
            .message
            .map(|m| Bytes::from(m.into_owned()))
            .unwrap_or_else(|| Bytes::from_static(b"connection refused"));
        let detail = e
            .data
            .map(|r| Payload::json(d.slice_ref(r.get().as_bytes())));
        return (message, detail);
    }
    // Legacy servers send a bare string.
    match serde_json::from_slice::<String>(d) {
        Ok(s) => (Bytes::from(s), None),
        Err(_) => (Bytes::from_static(b"connection refused"), None),
    }
}
