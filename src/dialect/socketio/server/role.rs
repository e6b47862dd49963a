//! The [`ServerRole`] impl: Engine.IO packets from the client (size limit, ping/pong, close,
//! Socket.IO packets through the decoder), backend events, the keepalive and its deadlines
//! (the absolute connect timeout, then ping interval plus timeout), and expiry of the acks
//! the client owes the backend.
//!
//! Must not touch: what each Socket.IO packet means; that is in the concern files.

use std::time::Instant;

use super::wire::{ack, named_error_ack};
use super::{SocketioServer, State};
use crate::dialect::socketio::engineio::{self, Packet as Eio};
use crate::dialect::{Keepalive, Refusal, ServerOut, ServerRole, WsMsg, stat};
use crate::frame::{BackendEvent, ErrorInfo};

impl ServerRole for SocketioServer {
    /// An event depends on the namespace it goes to and the message; one the backend wants
    /// acked records the ack and is encoded per session.
    fn shape(&self, ev: &BackendEvent) -> Option<Vec<u8>> {
        let BackendEvent::Message { sub, ack: None, .. } = ev else {
            return None;
        };
        if self.state == State::Closed {
            return None;
        }
        let nsp = match sub {
            Some(s) => &self.subs.get(s)?.nsp,
            None => match &self.primary {
                Some(p) if self.nsps.iter().any(|n| n.name == p && n.joined) => p,
                _ => return None,
            },
        };
        Some(crate::dialect::shape_key(&[b"socketio", nsp]))
    }

    fn on_start(&mut self, _now: Instant, out: &mut ServerOut) {
        if self.settings.shapes && !self.settings.defer_open {
            self.open_shaped(None, out);
        }
    }

    fn on_client(&mut self, msg: WsMsg, now: Instant, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        self.last_recv = Some(now);
        if msg.len() > self.settings.max_payload {
            return self.close(1009, "message too big", true, out);
        }
        let eio = match engineio::decode_ws(&msg) {
            Ok(p) => p,
            Err(_) => return self.close(1002, "parse error", true, out),
        };
        match eio {
            Eio::Ping(data) => out.to_client.push(engineio::encode_ws(&Eio::Pong(data))),
            Eio::Pong(_) | Eio::Noop | Eio::Upgrade | Eio::Open(_) => {}
            Eio::Close => self.close(1000, "transport close", true, out),
            Eio::Message(text) => match self.decoder.decode_text(text) {
                Ok(Some(p)) => self.on_packet(p, out),
                Ok(None) => {}
                Err(e) => self.parse_error(&e, out),
            },
            Eio::Binary(data) => match self.decoder.decode_binary(data) {
                Ok(Some(p)) => self.on_packet(p, out),
                Ok(None) => {}
                Err(e) => self.parse_error(&e, out),
            },
        }
    }

    fn on_backend(&mut self, ev: BackendEvent, now: Instant, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        match ev {
            BackendEvent::Ready { .. } => self.on_ready(out),
            BackendEvent::Subscribed { sub, .. } => {
                if let Some(s) = self.subs.get_mut(&sub) {
                    s.confirmed = true;
                    for id in std::mem::take(&mut s.acks) {
                        out.to_client.push(ack(&s.nsp, id, b"[null]"));
                    }
                }
            }
            BackendEvent::SubscribeFailed { sub, reason } => {
                if let Some(s) = self.subs.remove(&sub) {
                    for id in s.acks {
                        out.to_client.push(named_error_ack(
                            &s.nsp,
                            id,
                            "SubscribeError",
                            &reason.message,
                        ));
                    }
                }
            }
            BackendEvent::Message {
                sub,
                channel,
                event,
                args,
                payload,
                ack,
                ..
            } => self.deliver(sub, channel, event, args, payload, ack, now, out),
            // The backend ended the subscription: delivery on it stops.
            BackendEvent::Unsubscribed { sub, .. } => {
                self.subs.remove(&sub);
            }
            // An emit without an ack has nobody to tell; the refusal is counted by the session.
            // Socket.IO carries no presence, token push or subscription count.
            BackendEvent::Presence { .. }
            | BackendEvent::Refused(_)
            | BackendEvent::Dropped(_)
            | BackendEvent::AuthChanged { .. }
            | BackendEvent::SubscriptionCount { .. } => {}
            BackendEvent::Reply { id, result } => self.on_reply(id, result, out),
            ev @ (BackendEvent::Joined { .. }
            | BackendEvent::JoinFailed { .. }
            | BackendEvent::Left { .. }
            | BackendEvent::Emit { .. }
            | BackendEvent::Answered { .. }) => self.on_shaped_event(ev, now, out),
            // Not for a refused token: the client reconnects, and its `auth` may be fresh.
            BackendEvent::Closing {
                retry: false,
                reason,
            } if reason.kind != crate::frame::ErrorKind::Unauthorized => self.kicked(out),
            BackendEvent::Error(e) | BackendEvent::Closing { reason: e, .. } => {
                self.upstream_failed(&e, out);
            }
        }
    }

    fn on_upstream_lost(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        self.upstream_failed(&reason, out);
    }

    fn on_shutdown(&mut self, out: &mut ServerOut) {
        self.close(1001, "server shutting down", true, out);
    }

    fn on_too_big(&mut self, _reason: ErrorInfo, out: &mut ServerOut) {
        // Socket.IO has no packet for it: the reference server's `ws` closes with 1009.
        self.close(1009, "message too big", false, out);
    }

    fn on_refused(&mut self, refusal: Refusal, reason: ErrorInfo, out: &mut ServerOut) {
        self.refused(refusal, &reason, out);
    }

    fn keepalive(&self) -> Keepalive {
        let s = &self.settings;
        let expect_within = match self.state {
            State::Closed => return Keepalive::default(),
            // The connect timeout runs from the start, not from the last pong: pongs before a
            // CONNECT must not keep an idle connection open. The session measures silence
            // from the last receive, so the remaining time is counted from there. (`expire`
            // enforces the same deadline, should the session's clock start a little later.)
            // Pings are owed before a CONNECT too: the sooner deadline applies.
            State::AwaitConnect => match self.last_recv {
                Some(last) => self.connect_deadline.saturating_duration_since(last),
                None => s.connect_timeout,
            }
            .min(s.ping_interval.saturating_add(s.ping_timeout)),
            State::Connecting | State::Ready => s.ping_interval.saturating_add(s.ping_timeout),
        };
        Keepalive {
            send_every: Some(s.ping_interval),
            expect_within: Some(expect_within),
            periodic: true,
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        (self.state != State::Closed).then(|| WsMsg::Text(stat("2")))
    }

    fn on_peer_silent(&mut self, out: &mut ServerOut) {
        // Before a CONNECT, whichever deadline was the sooner one ran out.
        let s = &self.settings;
        let connect_left = match self.last_recv {
            Some(last) => self.connect_deadline.saturating_duration_since(last),
            None => s.connect_timeout,
        };
        let connect_first = connect_left <= s.ping_interval.saturating_add(s.ping_timeout);
        let reason = if self.state == State::AwaitConnect && connect_first {
            "connect timeout"
        } else {
            super::PING_TIMEOUT
        };
        self.close(1000, reason, true, out);
    }

    fn expire(&mut self, now: Instant, out: &mut ServerOut) {
        // The absolute connect deadline, whatever the client sent meanwhile.
        if self.state == State::AwaitConnect && now >= self.connect_deadline {
            self.close(1000, "connect timeout", true, out);
        }
        // Emits wait for the upstream leg, which times its own acks out and answers each
        // reply id exactly once. Acks the client owes the backend are forgotten after a
        // while: the backend's own timeout has answered them by then.
        self.backend_acks.expire(now);
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        std::mem::take(&mut self.copied)
    }
}
