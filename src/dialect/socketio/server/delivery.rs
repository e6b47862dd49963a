//! Delivery to the client: a backend message becomes an event on its subscription's namespace
//! (or the primary one for events without a subscription), binary payloads an attachment,
//! reserved names are dropped; an ack the backend asks for is requested of the client under
//! our own id, and the client's answer goes back to the backend.
//!
//! Must not touch: client emits and their replies (`emit.rs`), the subscription table
//! (`subscriptions.rs`).

use std::time::Instant;

use bytes::Bytes;

use super::wire::{is_reserved, wire_data};
use super::{BACKEND_ACK_TTL, SocketioServer};
use crate::dialect::pending;
use crate::dialect::socketio::packet::{self, Packet, PacketType};
use crate::dialect::{ServerOut, WsMsg};
use crate::frame::{ClientOp, Payload, SubId};

impl SocketioServer {
    /// Emit a backend message: on its subscription's namespace, or, for an event a Socket.IO
    /// backend sent without any subscription, on the namespace that opened the upstream (a
    /// Socket.IO client never subscribes, it just listens) while the client is still in it.
    ///
    /// A message whose event name is reserved is dropped: socket.io-client would take
    /// `42["disconnect",..]` for its own lifecycle event. No counter records it: the role has
    /// no metrics (the dialect layer must not), and the trait has no drop report to carry it.
    ///
    /// When the backend asked for an ack (`ack` is its token), the emit asks the client for
    /// one under our own id; a message not emitted is not acked, as with a client that has no
    /// listener, and the backend's own timeout answers it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver(
        &mut self,
        sub: Option<SubId>,
        channel: Bytes,
        event: Option<Bytes>,
        args: Vec<Bytes>,
        payload: Payload,
        ack: Option<Bytes>,
        now: Instant,
        out: &mut ServerOut,
    ) {
        let nsp = match sub {
            Some(sub) => match self.subs.get(&sub) {
                Some(s) => s.nsp.clone(),
                None => return,
            },
            None => match &self.primary {
                // Left (`41`): that namespace's listeners are gone on the client too.
                Some(p) if self.nsps.iter().any(|n| n.name == p && n.joined) => p.clone(),
                _ => return,
            },
        };
        let name = event.as_ref().unwrap_or(&channel);
        if is_reserved(name) {
            return;
        }
        // The payload is written once, into the event's own buffer (with the Engine.IO `4`):
        // spliced raw (JSON), as a JSON string (text), or as attachment 0 (binary, not copied).
        let name = String::from_utf8_lossy(name);
        let (last, attachment) = packet::Arg::of_payload(&payload);
        if attachment.is_none() {
            self.copied.one(payload.data.len());
        }
        // A full table asks for no ack: the backend's own timeout answers that emit.
        let id = ack.and_then(|token| {
            let id = self.next_ack;
            let deadline = pending::deadline(now, BACKEND_ACK_TTL);
            self.backend_acks.insert(id, token, deadline).ok()?;
            self.next_ack += 1;
            Some(id)
        });
        let head = packet::Head {
            kind: if attachment.is_some() {
                PacketType::BinaryEvent
            } else {
                PacketType::Event
            },
            nsp: &nsp,
            id,
            attachments: usize::from(attachment.is_some()),
        };
        let data = packet::Data::Array {
            name: Some(&name),
            args: &args,
            last: Some(last),
        };
        out.to_client.reserve(1 + usize::from(attachment.is_some()));
        out.to_client.push(wire_data(&head, &data));
        if let Some(bin) = attachment {
            out.to_client.push(WsMsg::Binary(bin.clone()));
        }
    }

    /// The client's answer to an emit that asked for an ack: it goes to the backend as the
    /// answer to its own ack request. Unknown ids are ignored, as the reference server does.
    pub(super) fn on_client_ack(&mut self, p: Packet, out: &mut ServerOut) {
        let Some(id) = p.id else { return };
        let Some(token) = self.backend_acks.remove(&id) else {
            return;
        };
        let data = p.data.unwrap_or_else(|| Bytes::from_static(b"[]"));
        let result = if p.kind == PacketType::BinaryAck {
            // One binary argument is the one shape a neutral payload carries; other binary
            // answers are refused (a NACK) rather than sent with dangling placeholders.
            match (self.decoder.split_args(&data), p.attachments.as_slice()) {
                (Ok(args), [bin])
                    if args.len() == 1
                        && args.first().and_then(|a| packet::placeholder_num(a)) == Some(0) =>
                {
                    Some(Payload::binary(bin.clone()))
                }
                _ => {
                    out.ops.push(ClientOp::Ack {
                        token,
                        positive: false,
                        result: None,
                    });
                    return;
                }
            }
        } else {
            Some(Payload::json(data))
        };
        out.ops.push(ClientOp::Ack {
            token,
            positive: true,
            result,
        });
    }
}
