//! The [`ClientRole`] impl: CONNECT at start, ops held until CONNECTED (within a count and
//! byte budget) then written as SUBSCRIBE (with a receipt), UNSUBSCRIBE, SEND (with a receipt
//! when a reply is awaited), ACK/NACK and DISCONNECT; broker messages through the decoder,
//! heart-beats, and receipt timeouts.
//!
//! Must not touch: what each broker frame means (`inbound.rs`), the CONNECT frame
//! (`connect.rs`).

use std::time::Instant;

use super::{ReceiptFor, State, StompClient};
use crate::dialect::hold::HoldError;
use crate::dialect::stomp::codec::{Command, Frame, Item};
use crate::dialect::stomp::push_content_type;
use crate::dialect::{ClientOut, ClientRole, Close, Dial, Keepalive, WsMsg, stat};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, PayloadKind, Reply};

impl ClientRole for StompClient {
    fn dial(&self) -> Dial {
        // The client's cookie and origin go along, as any reverse proxy forwards them:
        // backends behind session cookies or Origin checks see their own client.
        Dial::from_credentials(&self.credentials)
    }

    fn start(&mut self, _now: Instant, out: &mut ClientOut) {
        let f = self.connect_frame();
        self.send(&f, out);
        // Until CONNECTED arrives, silence past the deadline means the broker is stuck.
        self.keepalive = Keepalive {
            send_every: None,
            expect_within: Some(self.settings.receipt_timeout),
            periodic: false,
        };
    }

    fn on_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut) {
        match self.state {
            State::Closed => {
                if let ClientOp::Publish {
                    reply: Some(Reply { id, .. }),
                    ..
                } = op
                {
                    let e = ErrorInfo::new(ErrorKind::Unavailable, "broker connection closed");
                    out.events.push(BackendEvent::Reply { id, result: Err(e) });
                }
                return;
            }
            State::Connecting if !matches!(op, ClientOp::Connect { .. }) => {
                if let Err(e) = self.queued.push(op) {
                    let why = match e {
                        HoldError::TooMany { .. } => {
                            "too many operations before the broker was ready"
                        }
                        HoldError::TooBig { .. } => "too many bytes before the broker was ready",
                    };
                    return self.fail(ErrorInfo::new(ErrorKind::Limit, why), out);
                }
                return;
            }
            _ => {}
        }
        match op {
            // Argument-list shapes pass only between legs of that shape, never to this one.
            op @ (ClientOp::Join { .. }
            | ClientOp::Leave { .. }
            | ClientOp::Emit { .. }
            | ClientOp::Answer { .. }) => out.events.extend(op.shape_refusal()),
            ClientOp::Connect { .. } => {}
            // STOMP authenticates once, at CONNECT.
            ClientOp::Reauth { .. } => out.events.push(BackendEvent::Refused(ErrorInfo::new(
                ErrorKind::Untranslatable,
                "a STOMP broker cannot re-authenticate an open session",
            ))),
            ClientOp::Subscribe { sub, channel, .. } => {
                let receipt = match self.receipt_id(ReceiptFor::Subscribe(sub), now) {
                    Ok(r) => r,
                    Err(e) => return out.events.push(ReceiptFor::Subscribe(sub).failed(e)),
                };
                let f = Frame::new(Command::Subscribe)
                    .with_header("id", format!("sub-{sub}"))
                    .with_header("destination", channel)
                    .with_header(
                        "ack",
                        if self.settings.client_ack {
                            "client-individual"
                        } else {
                            "auto"
                        },
                    )
                    .with_header("receipt", receipt);
                self.send(&f, out);
            }
            ClientOp::Unsubscribe { sub } => {
                let f = Frame::new(Command::Unsubscribe).with_header("id", format!("sub-{sub}"));
                self.send(&f, out);
            }
            ClientOp::Publish {
                meta,
                channel,
                event,
                args,
                payload,
                reply,
                ..
            } => {
                let (body, kind) = if args.is_empty() {
                    (payload.data, payload.kind)
                } else {
                    let arr = crate::dialect::json::pack(&args, &payload);
                    self.copied.one(arr.len());
                    (arr, PayloadKind::Json)
                };
                // The body is written once, into the SEND frame's own buffer.
                self.copied.one(body.len());
                // destination, content-type, content-length, event, receipt, then meta.
                let mut f = Frame::with_capacity(Command::Send, 5 + meta.len())
                    .with_header("destination", channel);
                push_content_type(&mut f, kind, &meta);
                f.push_header("content-length", body.len().to_string());
                if let Some(e) = event {
                    f.push_header("event", e);
                }
                // A STOMP broker answers receipt-style requests and data requests alike
                // with its RECEIPT: the backend's own confirmation.
                if let Some(Reply { id, .. }) = reply {
                    match self.receipt_id(ReceiptFor::Reply(id), now) {
                        Ok(r) => f.push_header("receipt", r),
                        Err(e) => return out.events.push(ReceiptFor::Reply(id).failed(e)),
                    }
                }
                // The proxy's own keys are not headers.
                f.headers.extend(
                    meta.into_iter()
                        .filter(|(k, _)| !crate::frame::is_internal(k)),
                );
                let f = f.with_body(body);
                self.send(&f, out);
            }
            ClientOp::Ack {
                token, positive, ..
            } => self.send_ack(token, positive, out),
            ClientOp::Disconnect => {
                self.send(&Frame::new(Command::Disconnect), out);
                self.state = State::Closed;
                self.fail_pending(
                    &ErrorInfo::new(ErrorKind::Unavailable, "client disconnected"),
                    out,
                );
                out.close = Some(Close::normal());
            }
        }
    }

    fn on_backend(&mut self, msg: WsMsg, now: Instant, out: &mut ClientOut) {
        if self.state == State::Closed {
            return;
        }
        let mut next = Some(match msg {
            WsMsg::Text(b) | WsMsg::Binary(b) => b,
        });
        // CONNECTED pauses the decoder: what follows it is decoded under its version.
        while let Some(bytes) = next.take() {
            // The item vector is the role's, reused message after message.
            let mut items = std::mem::take(&mut self.items);
            let res = self.decoder.decode(bytes, &mut items);
            self.copied.add(self.decoder.take_copied());
            for item in items.drain(..) {
                if self.state == State::Closed {
                    continue;
                }
                if let Item::Frame(f) = item {
                    self.on_frame(f, now, out);
                }
            }
            // Kept for the next message unless a batch of many frames grew it.
            if items.capacity() <= 4 {
                self.items = items;
            }
            if self.state == State::Closed {
                return;
            }
            if let Err(e) = res {
                return self.fail(
                    ErrorInfo::new(ErrorKind::Protocol, format!("bad frame from broker: {e}")),
                    out,
                );
            }
            next = self.decoder.take_held();
        }
    }

    fn keepalive(&self) -> Keepalive {
        self.keepalive
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        (self.state == State::Connected).then(|| WsMsg::Text(stat("\n")))
    }

    fn on_peer_silent(&mut self, out: &mut ClientOut) {
        let msg = if self.state == State::Connecting {
            "broker did not answer CONNECT in time"
        } else {
            "broker heart-beat timeout"
        };
        self.fail(ErrorInfo::new(ErrorKind::Timeout, msg), out);
    }

    fn expire(&mut self, now: Instant, out: &mut ClientOut) {
        let mut late = self.pending.expire(now);
        // Receipt-id byte order, as before the table was a `Pending`; its own order is by
        // deadline.
        late.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, p) in late {
            let e = ErrorInfo::new(ErrorKind::Timeout, "broker did not send a RECEIPT in time");
            out.events.push(p.failed(e));
        }
    }

    fn on_closed(&mut self, reason: ErrorInfo, out: &mut ClientOut) {
        self.state = State::Closed;
        self.fail_pending(&reason, out);
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        std::mem::take(&mut self.copied)
    }
}
