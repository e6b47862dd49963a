//! Client emits: an EVENT is a `subscribe`, an `unsubscribe` or a publish (reserved names are
//! a parse error, as in the reference server); its arguments become one payload (binary only
//! as the sole argument), its ack id a reply id in a bounded table, and the backend's reply
//! the `43` that answers it.
//!
//! Must not touch: the subscription events themselves (`subscriptions.rs`), deliveries and
//! the acks the backend asks of the client (`delivery.rs`).

use bytes::Bytes;

use super::SocketioServer;
use super::wire::{ack, is_reserved, named_error_ack, wire_data};
use crate::dialect::socketio::packet::{self, Packet, PacketType};
use crate::dialect::{ServerOut, WsMsg};
use crate::frame::{ClientOp, ErrorInfo, ErrorKind, Payload, Reply, ReplyId};

impl SocketioServer {
    pub(super) fn on_event(&mut self, p: Packet, out: &mut ServerOut) {
        let Some(data) = p.data.as_ref() else {
            return self.close(1002, "parse error", true, out);
        };
        let (name, args) = match self.decoder.split_event(data) {
            Ok(x) => x,
            Err(e) => return self.parse_error(&e, out),
        };
        if is_reserved(&name) {
            // socket.io-parser 4.2 rejects such an EVENT as an invalid payload, and the
            // socket.io 4.8 server closes the whole connection on any decode error.
            return self.close(1002, "parse error", true, out);
        }
        if self.settings.shapes {
            return self.emit_shaped(p, out);
        }
        match &name[..] {
            b"subscribe" => self.on_subscribe(&p.nsp, p.id, args.first(), out),
            b"unsubscribe" => self.on_unsubscribe(&p.nsp, p.id, args.first(), out),
            _ => self.on_publish(name, args, p, out),
        }
    }

    fn on_publish(&mut self, name: Bytes, args: packet::Args, p: Packet, out: &mut ServerOut) {
        let refuse = |this: &Self, e: ErrorInfo, out: &mut ServerOut| {
            if let Some(id) = p.id {
                out.to_client.push(this.error_ack(&p.nsp, id, &e));
            }
        };
        let payload = match args.as_slice() {
            [] => Payload::null(),
            [one] => match packet::placeholder_num(one).and_then(|n| p.attachments.get(n)) {
                Some(bin) if p.attachments.len() == 1 => Payload::binary(bin.clone()),
                _ if !p.attachments.is_empty() => {
                    let e = ErrorInfo::new(
                        ErrorKind::Untranslatable,
                        "binary data must be the event's only argument",
                    );
                    return refuse(self, e, out);
                }
                _ => Payload::json(one.clone()),
            },
            many => {
                if !p.attachments.is_empty() {
                    let e = ErrorInfo::new(
                        ErrorKind::Untranslatable,
                        "binary data must be the event's only argument",
                    );
                    return refuse(self, e, out);
                }
                let parts: Vec<&[u8]> = many.iter().map(|a| a.as_ref()).collect();
                let array = packet::build_array(&parts);
                self.copied.one(array.len());
                Payload::json(array)
            }
        };
        let reply = match p.id {
            None => None,
            Some(_) if self.replies.len() >= self.settings.max_pending_acks => {
                let e = ErrorInfo::new(ErrorKind::Limit, "too many emits waiting for an ack");
                return refuse(self, e, out);
            }
            Some(id) => {
                let rid = self.next_reply;
                self.next_reply += 1;
                self.replies.insert(rid, (p.nsp.clone(), id));
                // A Socket.IO ack carries the backend's answer: data, not a receipt.
                Some(Reply::data(rid))
            }
        };
        out.ops.push(ClientOp::Publish {
            meta: Vec::new(),
            channel: name,
            event: None,
            args: Vec::new(),
            payload,
            reply,
            broadcast: false,
            sub: None,
        });
    }

    /// `43N[{"error":{"name":"<kind>","message":".."}}]`.
    fn error_ack(&self, nsp: &[u8], id: u64, e: &ErrorInfo) -> WsMsg {
        named_error_ack(nsp, id, e.kind.label(), &e.message)
    }

    pub(super) fn on_reply(
        &mut self,
        id: ReplyId,
        result: Result<Option<Payload>, ErrorInfo>,
        out: &mut ServerOut,
    ) {
        let Some((nsp, ack_id)) = self.replies.remove(&id) else {
            return;
        };
        match result {
            Ok(None) => out.to_client.push(ack(&nsp, ack_id, b"[]")),
            Ok(Some(p)) => {
                // The answer is written once, into the ack's own buffer.
                let (arg, attachment) = packet::Arg::of_payload(&p);
                if attachment.is_none() {
                    self.copied.one(p.data.len());
                }
                let head = packet::Head {
                    kind: if attachment.is_some() {
                        PacketType::BinaryAck
                    } else {
                        PacketType::Ack
                    },
                    nsp: &nsp,
                    id: Some(ack_id),
                    attachments: usize::from(attachment.is_some()),
                };
                let data = packet::Data::Array {
                    name: None,
                    args: &[],
                    last: Some(arg),
                };
                out.to_client.push(wire_data(&head, &data));
                if let Some(bin) = attachment {
                    out.to_client.push(WsMsg::Binary(bin.clone()));
                }
            }
            Err(e) => out.to_client.push(self.error_ack(&nsp, ack_id, &e)),
        }
    }
}
