//! Toward the backend: a publish becomes an emit (reserved names refused; text and binary
//! payloads as the last argument), with an ack id in the bounded pending table when the
//! client wants the backend's answer or the route waits for acks, else confirmed once
//! written; and the downstream's answers to the backend's own ack requests.
//!
//! Must not touch: packets from the backend (`inbound.rs`), the Engine.IO exchange (`role.rs`).

use std::time::Instant;

use bytes::Bytes;

use super::SocketioClient;
use crate::dialect::ClientOut;
use crate::dialect::pending;
use crate::dialect::socketio::packet::{self, Packet, PacketType};
use crate::frame::{BackendEvent, ErrorInfo, ErrorKind, Payload, PayloadKind, Reply, ReplyId};

impl SocketioClient {
    pub(super) fn publish(
        &mut self,
        event: Bytes,
        args: Vec<Bytes>,
        payload: Payload,
        reply: Option<Reply>,
        now: Instant,
        out: &mut ClientOut,
    ) {
        // The client wants the backend's answer (its data), or the route waits for the
        // backend's ack on every confirmation; otherwise a confirmation is given once the
        // emit is written.
        let ack = reply.filter(|r| r.data || self.settings.acks);
        let reply = reply.map(|r| r.id);
        let Ok(name) = std::str::from_utf8(&event) else {
            return reply_err(
                reply,
                ErrorInfo::new(ErrorKind::Untranslatable, "event name is not UTF-8"),
                out,
            );
        };
        if packet::RESERVED_EVENTS.contains(&name) {
            let e = ErrorInfo::new(
                ErrorKind::Untranslatable,
                format!("`{name}` is a reserved Socket.IO event"),
            );
            return reply_err(reply, e, out);
        }
        // The payload is written once, into the emit's own buffer: spliced raw (JSON), as a
        // JSON string (text), or as attachment 0 behind a placeholder (binary, not copied).
        let (last, attachment) = packet::Arg::of_payload(&payload);
        let id = match ack {
            Some(Reply { id: rid, .. }) => {
                let id = self.next_ack;
                let deadline = pending::deadline(now, self.settings.ack_timeout);
                if let Err(e) = self.pending.insert(id, rid, deadline) {
                    return reply_err(reply, ErrorInfo::new(ErrorKind::Limit, e.to_string()), out);
                }
                self.next_ack += 1;
                Some(id)
            }
            _ => None,
        };
        let head = packet::Head {
            kind: if attachment.is_some() {
                PacketType::BinaryEvent
            } else {
                PacketType::Event
            },
            nsp: &self.nsp,
            id,
            attachments: usize::from(attachment.is_some()),
        };
        let data = packet::Data::Array {
            name: Some(name),
            args: &args,
            last: Some(last),
        };
        let attachments = attachment.map(std::slice::from_ref).unwrap_or_default();
        match self.send_parts(&head, &data, attachments, out) {
            Ok(()) => {
                if attachment.is_none() {
                    self.copied.one(payload.data.len());
                }
                // Without backend acks the publish is confirmed once written upstream; the
                // session delivers events only after `to_backend` is written.
                if let (Some(rid), None) = (reply, id) {
                    out.events.push(BackendEvent::Reply {
                        id: rid,
                        result: Ok(None),
                    });
                }
            }
            Err(e) => {
                if let Some(id) = id {
                    self.pending.remove(&id);
                }
                reply_err(reply, e, out);
            }
        }
    }

    /// Answer the backend's ack request `id` with the arguments array `args`.
    pub(super) fn ack(&self, id: u64, args: Bytes, out: &mut ClientOut) {
        let ack = Packet {
            kind: PacketType::Ack,
            nsp: self.nsp.clone(),
            id: Some(id),
            data: Some(args),
            attachments: vec![],
        };
        // Only a backend with a maxPayload below a few dozen bytes refuses this; it then
        // times the ack out itself.
        let _ = self.send_packet(&ack, out);
    }

    /// Answer the backend's ack request named by `token` (its ack id): with the client's own
    /// ack arguments, `[]` for a plain ACK, or an error for a NACK.
    pub(super) fn answer(
        &mut self,
        token: &[u8],
        positive: bool,
        result: Option<Payload>,
        out: &mut ClientOut,
    ) {
        let Some(id) = std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return;
        };
        if !positive {
            let array = packet::error_args("nack", b"the client refused the message");
            return self.ack(id, array, out);
        }
        match result {
            None => self.ack(id, Bytes::from_static(b"[]"), out),
            // A Socket.IO client's ack arrives as its argument array.
            Some(r) if r.kind == PayloadKind::Json && r.data.first() == Some(&b'[') => {
                self.ack(id, r.data, out)
            }
            Some(r) => {
                // The answer is written once, into the ack's own buffer.
                let (arg, attachment) = packet::Arg::of_payload(&r);
                if attachment.is_none() {
                    self.copied.one(r.data.len());
                }
                let head = packet::Head {
                    kind: if attachment.is_some() {
                        PacketType::BinaryAck
                    } else {
                        PacketType::Ack
                    },
                    nsp: &self.nsp,
                    id: Some(id),
                    attachments: usize::from(attachment.is_some()),
                };
                let data = packet::Data::Array {
                    name: None,
                    args: &[],
                    last: Some(arg),
                };
                let attachments = attachment.map(std::slice::from_ref).unwrap_or_default();
                let _ = self.send_parts(&head, &data, attachments, out);
            }
        }
    }

    /// Refuse the backend's ack request `id`: `[{"error":{"name":"<kind>","message":".."}}]`,
    /// the error-ack convention the server role uses too (Socket.IO acks have no error slot).
    pub(super) fn ack_error(&self, id: u64, e: &ErrorInfo, out: &mut ClientOut) {
        self.ack(id, packet::error_args(e.kind.label(), &e.message), out);
    }
}

fn reply_err(reply: Option<ReplyId>, e: ErrorInfo, out: &mut ClientOut) {
    match reply {
        Some(id) => out.events.push(BackendEvent::Reply { id, result: Err(e) }),
        // Nobody asked for an answer; the client's dialect decides what a refusal means.
        None => out.events.push(BackendEvent::Refused(e)),
    }
}
