//! Frames from the broker: CONNECTED (the version, heart-beats negotiated, held ops released),
//! RECEIPT answering a publish or a subscription, MESSAGE as a neutral message (its ack token,
//! or acked at once on delivery), and ERROR (unauthorized before CONNECTED, fatal always).
//!
//! Must not touch: decoding (`role.rs`), ack frames themselves (`acks.rs`).

use std::time::{Duration, Instant};

use super::{ReceiptFor, State, StompClient};
use crate::dialect::json::is_json;
use crate::dialect::stomp::codec::{Command, Frame, Version};
use crate::dialect::stomp::{meta_of, payload_kind};
use crate::dialect::{ClientOut, ClientRole, Keepalive, stat};
use crate::frame::{BackendEvent, ErrorInfo, ErrorKind, Payload, PayloadKind, SubId};

impl StompClient {
    pub(super) fn on_frame(&mut self, f: Frame, now: Instant, out: &mut ClientOut) {
        match f.command {
            Command::Connected if self.state == State::Connecting => {
                // A 1.0 broker may leave `version` out; any other value is not ours to guess.
                let version = match f.header_str("version") {
                    None => Some(Version::V1_0),
                    Some(v) => Version::parse(v.as_bytes()),
                };
                let Some(version) = version else {
                    let v = f.header_str("version").unwrap_or_default();
                    return self.fail(
                        ErrorInfo::new(
                            ErrorKind::Protocol,
                            format!("broker answered with unsupported STOMP version {v}"),
                        ),
                        out,
                    );
                };
                self.version = version;
                self.decoder.set_version(self.version);
                let (sx, sy) = f
                    .header_str("heart-beat")
                    .and_then(|h| h.split_once(','))
                    .and_then(|(a, b)| {
                        Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
                    })
                    .unwrap_or((0, 0));
                let (cx, cy) = self.settings.heartbeat;
                let send = (cx != 0 && sy != 0).then(|| cx.max(sy));
                let recv = (sx != 0 && cy != 0).then(|| sx.max(cy));
                self.keepalive = Keepalive {
                    send_every: send.map(Duration::from_millis),
                    expect_within: recv.map(|ms| Duration::from_millis(ms.saturating_mul(2))),
                    periodic: false,
                };
                self.state = State::Connected;
                out.events.push(BackendEvent::Ready {
                    session: f.header("session").cloned(),
                });
                while let Some(op) = self.queued.pop_front() {
                    self.on_op(op, now, out);
                }
            }
            Command::Receipt => {
                let Some(id) = f.header("receipt-id") else {
                    return;
                };
                match self.pending.remove(id) {
                    Some(ReceiptFor::Reply(rid)) => out.events.push(BackendEvent::Reply {
                        id: rid,
                        result: Ok(None),
                    }),
                    Some(ReceiptFor::Subscribe(sub)) => out
                        .events
                        .push(BackendEvent::Subscribed { sub, data: None }),
                    None => {}
                }
            }
            Command::Message => {
                let Some(sub) = f
                    .header_str("subscription")
                    .and_then(|s| s.strip_prefix("sub-"))
                    .and_then(|s| s.parse::<SubId>().ok())
                else {
                    return;
                };
                let channel = f.header("destination").cloned().unwrap_or_default();
                let ack_token = if self.settings.client_ack {
                    self.ack_token(&f)
                } else {
                    None
                };
                let mut kind = payload_kind(f.header_str("content-type"), &f.body);
                if kind == PayloadKind::Json && !is_json(&f.body) {
                    // The publisher's content-type, not the body: passed on as JSON it would
                    // be pasted into other dialects' frames (a Socket.IO `42["ev",]` that
                    // drops the client). It stays in the meta for STOMP clients.
                    kind = if std::str::from_utf8(&f.body).is_ok() {
                        PayloadKind::Text
                    } else {
                        PayloadKind::Binary
                    };
                }
                if self.settings.ack_on_delivery
                    && let Some(t) = &ack_token
                {
                    self.send_ack(t.clone(), true, out);
                }
                out.events.push(BackendEvent::Message {
                    meta: meta_of(&f, kind),
                    sub: Some(sub),
                    channel,
                    event: f.header("event").cloned(),
                    args: Vec::new(),
                    payload: Payload { data: f.body, kind },
                    ack: if self.settings.ack_on_delivery {
                        None
                    } else {
                        ack_token
                    },
                });
            }
            Command::Error => {
                let message = f
                    .header("message")
                    .cloned()
                    .unwrap_or_else(|| stat("broker error"));
                let kind = if self.state == State::Connecting {
                    ErrorKind::Unauthorized
                } else {
                    ErrorKind::Protocol
                };
                let detail = (!f.body.is_empty()).then(|| Payload::text(f.body.clone()));
                let info = ErrorInfo {
                    kind,
                    message,
                    detail,
                    code: None,
                };
                if let Some(p) = f.header("receipt-id").and_then(|r| self.pending.remove(r)) {
                    out.events.push(p.failed(info.clone()));
                }
                self.fail(info, out);
            }
            _ => {}
        }
    }
}
