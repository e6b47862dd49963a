//! The [`ServerRole`] impl: client messages through the decoder (paused after CONNECT so what
//! follows is decoded under the negotiated version), backend events (CONNECTED once the
//! upstream is ready, receipts resolved, refusals and upstream failures as fatal `ERROR`s),
//! the keepalive and the CONNECT deadline.
//!
//! Must not touch: what each client frame means; that is in the concern files.

use std::time::Instant;

use super::{State, StompServer, Wait};
use crate::dialect::stomp::codec::{Command, Frame, Item};
use crate::dialect::{Keepalive, Refusal, ServerOut, ServerRole, WsMsg, stat};
use crate::frame::{BackendEvent, ErrorInfo, ErrorKind};

impl ServerRole for StompServer {
    /// A MESSAGE depends on the subscription's id, the version's header escaping and the
    /// message; under `ack:auto` nothing is recorded per message (the first encoder's
    /// `message-id` is unique per message, so it stays unique in every session). Other ack
    /// modes record each message and are encoded per session.
    fn shape(&self, ev: &BackendEvent) -> Option<Vec<u8>> {
        let BackendEvent::Message {
            sub: Some(sub),
            ack: None,
            ..
        } = ev
        else {
            return None;
        };
        if self.state == State::Closed {
            return None;
        }
        let s = self.subs.get(sub)?;
        if s.ack != super::AckMode::Auto {
            return None;
        }
        let v: &[u8] = match self.version {
            crate::dialect::stomp::codec::Version::V1_0 => b"1.0",
            crate::dialect::stomp::codec::Version::V1_1 => b"1.1",
            crate::dialect::stomp::codec::Version::V1_2 => b"1.2",
        };
        Some(crate::dialect::shape_key(&[b"stomp", v, &s.stomp_id]))
    }

    fn on_client(&mut self, msg: WsMsg, _now: Instant, out: &mut ServerOut) {
        let mut next = Some(match msg {
            WsMsg::Text(b) | WsMsg::Binary(b) => b,
        });
        // A CONNECT pauses the decoder: what follows it is decoded under its version.
        while let Some(bytes) = next.take() {
            // The item vector is the role's, reused message after message.
            let mut items = std::mem::take(&mut self.items);
            let res = self.decoder.decode(bytes, &mut items);
            self.copied.add(self.decoder.take_copied());
            for item in items.drain(..) {
                if out.close.is_some() {
                    continue;
                }
                if let Item::Frame(f) = item {
                    self.on_frame(f, out);
                }
            }
            // Kept for the next message unless a batch of many frames grew it.
            if items.capacity() <= 4 {
                self.items = items;
            }
            if out.close.is_some() {
                return;
            }
            if let Err(e) = res {
                let detail = e.to_string();
                return self.fatal(&e.message(), detail.as_bytes(), None, 1002, out);
            }
            next = self.decoder.take_held();
        }
    }

    fn on_backend(&mut self, ev: BackendEvent, _now: Instant, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        match ev {
            // Argument-list shapes pass only between legs of that shape, never to this one.
            BackendEvent::Joined { .. }
            | BackendEvent::JoinFailed { .. }
            | BackendEvent::Left { .. }
            | BackendEvent::Emit { .. }
            | BackendEvent::Answered { .. } => {}
            BackendEvent::Ready { session } => {
                if self.state != State::Connecting {
                    return;
                }
                self.state = State::Connected;
                if let Some(s) = session.and_then(|s| String::from_utf8(s.to_vec()).ok()) {
                    self.session_id = s;
                }
                let (sx, sy) = self.settings.heartbeat;
                let hb = format!(
                    "{},{}",
                    self.keepalive.send_every.map_or(0, |_| sx),
                    self.keepalive.expect_within.map_or(0, |_| sy)
                );
                let mut f =
                    Frame::new(Command::Connected).with_header("version", self.version.as_str());
                f.push_header("heart-beat", hb);
                f.push_header("session", self.session_id.clone());
                f.push_header("server", self.settings.server_name);
                self.send(&f, out);
                if let Some(r) = self.connect_receipt.take() {
                    self.receipt(r, out);
                }
            }
            BackendEvent::Subscribed { sub, .. } => self.resolve(Wait::Subscribed(sub), out),
            BackendEvent::SubscribeFailed { sub, reason } => {
                let receipt = self.take_receipt(Wait::Subscribed(sub));
                let msg = String::from_utf8_lossy(&reason.message).into_owned();
                self.fatal(
                    &format!("subscription refused: {msg}"),
                    &detail_bytes(&reason),
                    receipt,
                    1008,
                    out,
                );
            }
            ev @ BackendEvent::Message { sub: Some(_), .. } => self.deliver(ev, out),
            BackendEvent::Message { sub: None, .. } => {}
            BackendEvent::Reply { id, result: Ok(_) } => self.resolve(Wait::Reply(id), out),
            BackendEvent::Reply { id, result: Err(e) } => {
                let Some(r) = self.take_receipt(Wait::Reply(id)) else {
                    return;
                };
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                self.fatal(&msg, &detail_bytes(&e), Some(r), 1011, out);
            }
            // The backend ended the subscription (kicked out): STOMP has no frame for that, so
            // delivery stops; the client's later UNSUBSCRIBE of that id is a no-op.
            BackendEvent::Unsubscribed { sub, .. } => {
                if let Some(s) = self.subs.remove(&sub) {
                    self.by_stomp_id.remove(&s.stomp_id);
                    self.forget_tokens(sub, s);
                }
            }
            // Nothing in STOMP carries these.
            BackendEvent::Presence { .. }
            | BackendEvent::Dropped(_)
            | BackendEvent::AuthChanged { .. }
            | BackendEvent::SubscriptionCount { .. } => {}
            // STOMP: "a SEND that fails must produce an ERROR", and ERROR is fatal.
            BackendEvent::Refused(e) => {
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                self.fatal(&msg, &detail_bytes(&e), None, 1008, out);
            }
            BackendEvent::Error(e) | BackendEvent::Closing { reason: e, .. } => {
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                let code = if e.kind == ErrorKind::Unauthorized {
                    1008
                } else {
                    1011
                };
                self.fatal(&msg, &detail_bytes(&e), None, code, out);
            }
        }
    }

    fn on_upstream_lost(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        let msg = String::from_utf8_lossy(&reason.message).into_owned();
        let text = if reason.kind == ErrorKind::Unauthorized {
            msg
        } else {
            format!("upstream unavailable: {msg}")
        };
        self.fatal(&text, &detail_bytes(&reason), None, 1011, out);
    }

    fn on_shutdown(&mut self, out: &mut ServerOut) {
        self.fatal(
            "server shutting down",
            b"the proxy is restarting; reconnect",
            None,
            1001,
            out,
        );
    }

    fn on_too_big(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        let msg = String::from_utf8_lossy(&reason.message).into_owned();
        self.fatal(&msg, &detail_bytes(&reason), None, 1009, out);
    }

    fn on_refused(&mut self, refusal: Refusal, reason: ErrorInfo, out: &mut ServerOut) {
        // STOMP errors are fatal: `ERROR` then the close (stomp.js takes an ERROR before
        // CONNECTED too, so a refused session hears why).
        let close = refusal.close(&reason);
        self.fatal(&close.reason, b"", None, close.code, out);
    }

    fn on_slow_consumer(&mut self, out: &mut ServerOut) {
        // 1008: the client broke the (implicit) policy of reading what it subscribed to.
        self.fatal(
            "slow consumer: messages were not read in time",
            b"",
            None,
            1008,
            out,
        );
    }

    fn keepalive(&self) -> Keepalive {
        match self.state {
            State::AwaitConnect | State::Connecting => Keepalive {
                send_every: None,
                expect_within: Some(self.settings.connect_timeout),
                periodic: false,
            },
            _ => self.keepalive,
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        matches!(self.state, State::Connected | State::Disconnecting)
            .then(|| WsMsg::Text(stat("\n")))
    }

    fn on_peer_silent(&mut self, out: &mut ServerOut) {
        match self.state {
            State::AwaitConnect => self.fatal("no CONNECT received in time", b"", None, 1002, out),
            State::Connecting => self.fatal(
                "upstream unavailable: no answer in time",
                b"",
                None,
                1011,
                out,
            ),
            _ => self.fatal("heart-beat timeout", b"", None, 1002, out),
        }
    }

    fn expire(&mut self, now: Instant, out: &mut ServerOut) {
        if self.state == State::AwaitConnect && now >= self.connect_by {
            self.fatal("no CONNECT received in time", b"", None, 1002, out);
        }
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        std::mem::take(&mut self.copied)
    }
}

fn detail_bytes(e: &ErrorInfo) -> Vec<u8> {
    match &e.detail {
        Some(p) => p.data.to_vec(),
        None => e.message.to_vec(),
    }
}
