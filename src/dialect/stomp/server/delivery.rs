//! MESSAGE delivery and its acknowledgement: backend messages become MESSAGE frames with our
//! own message and ack ids (`auto` subscriptions are acked upstream at once), a bounded table
//! maps ack ids to the upstream's tokens, and the client's ACK/NACK goes upstream (`client`
//! covering every earlier message of the subscription, `client-individual` just one).
//!
//! Must not touch: subscribing (`subscriptions.rs`), holding acks in a transaction
//! (`transactions.rs`).

use bytes::{Bytes, BytesMut};

use super::{AckMode, MAX_UNACKED, State, StompServer, TxItem, Wait};
use crate::dialect::json::decimal;
use crate::dialect::stomp::codec::{self, Command, Frame, Version};
use crate::dialect::stomp::push_content_type;
use crate::dialect::{ServerOut, WsMsg, json};
use crate::frame::{BackendEvent, ClientOp, PayloadKind};

impl StompServer {
    /// Acknowledges our ack id `id` upstream: alone under `client-individual`, with every
    /// earlier message of its subscription under `client`.
    pub(super) fn apply_ack(&mut self, id: &Bytes, positive: bool, out: &mut ServerOut) {
        // Upstreams without client acks redeliver nothing: the ACK is a no-op there.
        let Some(&(sub, _)) = self.ack_tokens.get(id) else {
            return;
        };
        match self.subs.get_mut(&sub) {
            Some(s) if s.ack == AckMode::Client => {
                while let Some(front) = s.unacked.pop_front() {
                    if let Some((_, token)) = self.ack_tokens.remove(&front) {
                        s.tokens = s.tokens.saturating_sub(1);
                        out.ops.push(ClientOp::Ack {
                            token,
                            positive,
                            result: None,
                        });
                    }
                    if front == id {
                        break;
                    }
                }
            }
            s => {
                if let Some((_, token)) = self.ack_tokens.remove(id) {
                    if let Some(s) = s {
                        s.tokens = s.tokens.saturating_sub(1);
                    }
                    out.ops.push(ClientOp::Ack {
                        token,
                        positive,
                        result: None,
                    });
                }
            }
        }
    }

    pub(super) fn on_ack(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        // 1.2 acks by `id`; 1.0/1.1 by `message-id`.
        let id = f.header("id").or_else(|| f.header("message-id")).cloned();
        let Some(id) = id else {
            return self.fatal(
                "missing id",
                b"ACK/NACK needs an id header",
                receipt,
                1002,
                out,
            );
        };
        let positive = f.command == Command::Ack;
        match f.header("transaction") {
            // Acked only on COMMIT: after an ABORT the message can still be acknowledged.
            Some(tx) => {
                let item = TxItem::Ack { id, positive };
                self.buffer(tx, item, receipt.clone(), out);
                if self.state == State::Closed {
                    // Refused: its ERROR carried the receipt-id.
                    return;
                }
            }
            None => self.apply_ack(&id, positive, out),
        }
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }

    pub(super) fn deliver(&mut self, ev: BackendEvent, out: &mut ServerOut) {
        let BackendEvent::Message {
            meta,
            sub: Some(sub),
            channel,
            event,
            args,
            payload,
            ack,
        } = ev
        else {
            return;
        };
        let Some(s) = self.subs.get(&sub) else { return };
        let (body, kind) = if args.is_empty() {
            (payload.data, payload.kind)
        } else {
            // Several arguments become one JSON array body.
            let arr = json::pack(&args, &payload);
            self.copied.one(arr.len());
            (arr, PayloadKind::Json)
        };
        // The body is written once, into the MESSAGE frame's own buffer.
        self.copied.one(body.len());
        let (message_id, content_length) =
            id_and_length(&self.session_id, self.next_message, body.len());
        self.next_message += 1;
        // subscription, message-id, destination, ack, content-type, content-length, event.
        // The ack id is the message id; an `auto` subscription needs none (and no clone).
        let ack_id = (s.ack != AckMode::Auto).then(|| message_id.clone());
        let mut f = Frame::with_capacity(Command::Message, 7 + meta.len())
            .with_header("subscription", s.stomp_id.clone())
            .with_header("message-id", message_id)
            .with_header("destination", channel);
        // An `auto` subscriber never acks: the proxy acks upstream once the MESSAGE is queued.
        let mut auto_ack = None;
        match (s.ack, ack) {
            (AckMode::Auto, token) => auto_ack = token,
            (mode, token) => {
                let ack_id = ack_id.unwrap_or_default();
                if self.version == Version::V1_2 {
                    f.push_header("ack", ack_id.clone());
                }
                if let Some(token) = token {
                    if self.ack_tokens.len() >= MAX_UNACKED {
                        return self.fatal(
                            "too many unacknowledged messages",
                            b"acknowledge messages before receiving more",
                            None,
                            1008,
                            out,
                        );
                    }
                    if let Some(s) = self.subs.get_mut(&sub) {
                        s.tokens += 1;
                        if mode == AckMode::Client {
                            s.unacked.push_back(ack_id.clone());
                        }
                    }
                    self.ack_tokens.insert(ack_id, (sub, token));
                }
            }
        }
        push_content_type(&mut f, kind, &meta);
        f.push_header("content-length", content_length);
        if let Some(e) = event {
            f.push_header("event", e);
        }
        // The proxy's own keys are not headers.
        f.headers.extend(
            meta.into_iter()
                .filter(|(k, _)| !crate::frame::is_internal(k)),
        );
        let f = f.with_body(body);
        if kind == PayloadKind::Binary {
            out.to_client
                .push(WsMsg::Binary(codec::encode_to_bytes(&f, self.version)));
        } else {
            self.send(&f, out);
        }
        if let Some(token) = auto_ack {
            out.ops.push(ClientOp::Ack {
                token,
                positive: true,
                result: None,
            });
        }
    }
}

/// Room for a message id and a content-length value side by side.
const SMALL: usize = 64;

/// A message id and a content-length value in one fixed buffer, owned by the `Bytes` slices
/// of both.
struct Small {
    buf: [u8; SMALL],
    len: usize,
}

impl AsRef<[u8]> for Small {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// The message id `<session>-<n>` and the `content-length` value of one MESSAGE, sharing one
/// allocation (slices of one owner: neither clone allocates). A session id too long for the
/// fixed buffer (an upstream's own) takes one allocation each.
fn id_and_length(session: &str, n: u64, body_len: usize) -> (Bytes, Bytes) {
    let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
    let n = decimal(n, &mut a);
    let len = decimal(body_len as u64, &mut b);
    let id_len = session.len() + 1 + n.len();
    let mut small = Small {
        buf: [0; SMALL],
        len: id_len + len.len(),
    };
    let parts: [&[u8]; 4] = [session.as_bytes(), b"-", n, len];
    let mut at = 0;
    for p in parts {
        match small.buf.get_mut(at..at + p.len()) {
            Some(dst) => dst.copy_from_slice(p),
            None => {
                let mut id = BytesMut::with_capacity(id_len);
                id.extend_from_slice(session.as_bytes());
                id.extend_from_slice(b"-");
                id.extend_from_slice(n);
                return (id.freeze(), Bytes::copy_from_slice(len));
            }
        }
        at += p.len();
    }
    let both = Bytes::from_owner(small);
    (both.slice(..id_len), both.slice(id_len..))
}
