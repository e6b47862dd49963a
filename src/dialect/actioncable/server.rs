//! The Action Cable server role: the proxy plays a Rails Action Cable server
//! (`actioncable-v1-json`) for `@rails/actioncable` and `@anycable/core`.
//!
//! Owns: `welcome` (once the upstream is ready, as Rails sends it after `connect`), a ping
//! every 3 s with a Unix timestamp, `subscribe`/`unsubscribe`/`message` commands with their
//! JSON-in-string `identifier` and `data`, identifiers compared canonically while the
//! client's own string is echoed, deduplicated re-sends (the JS client re-subscribes every
//! 500 ms until answered), `confirm_subscription`/`reject_subscription`, and `disconnect`
//! with `reason` and `reconnect` from what happened upstream.
//!
//! Must not touch: I/O, time (it comes in), other dialects, configuration files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec;
use crate::dialect::{Close, Handshake, Keepalive, Refusal, ServerOut, ServerRole, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, PayloadKind, SubId,
    SubParams,
};

/// Settings of the Action Cable server role.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A ping every this long (Rails: 3 s; clients call a link stale after 6 s).
    pub ping_interval: Duration,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(3),
            max_subscriptions: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `Connect` went upstream; `welcome` waits for `Ready`.
    Connecting,
    Open,
    Closed,
}

#[derive(Debug)]
struct Sub {
    /// The identifier as the client sent it (echoed byte for byte).
    identifier: Bytes,
    /// Its JSON string token on the wire (see [`codec::Msg::identifier_token`]).
    token: Bytes,
    /// The channel class name.
    channel: Bytes,
    canonical: String,
    confirmed: bool,
}

/// The Action Cable server role of one connection.
#[derive(Debug)]
pub struct CableServer {
    settings: Settings,
    credentials: Credentials,
    state: State,
    subs: HashMap<SubId, Sub>,
    by_canonical: HashMap<String, SubId>,
    /// Subscriptions by the identifier token their `subscribe` carried: a `message` command
    /// with the same token finds its subscription without the identifier being parsed.
    by_token: HashMap<Bytes, SubId>,
    next_sub: SubId,
    /// Unix seconds at `started`, and `started`: pings carry the time.
    epoch: (u64, Instant),
    pings: u64,
    copied: crate::dialect::Copied,
}

impl CableServer {
    /// The role of a connection whose upgrade was `hs`; `unix_now` is the wall clock (in
    /// seconds) at `started`, for the pings' timestamps.
    pub fn new(settings: Settings, hs: &Handshake, unix_now: u64, started: Instant) -> Self {
        Self {
            settings,
            // Action Cable authenticates at the upgrade: its token (header or `?token=`)
            // and cookies are what the backend gets.
            credentials: Credentials {
                token: hs.bearer(),
                ..Default::default()
            },
            state: State::Connecting,
            subs: HashMap::new(),
            by_canonical: HashMap::new(),
            by_token: HashMap::new(),
            next_sub: 1,
            epoch: (unix_now, started),
            pings: 0,
            copied: crate::dialect::Copied::default(),
        }
    }

    fn text(out: &mut ServerOut, b: Bytes) {
        out.to_client.push(WsMsg::Text(b));
    }

    /// `disconnect` with its reason and reconnect flag, then the close.
    fn disconnect(&mut self, reason: &str, reconnect: bool, code: u16, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        let reason_json = crate::dialect::json::json_string(reason.as_bytes());
        let flag: &[u8] = if reconnect { b"true" } else { b"false" };
        Self::text(
            out,
            codec::server_type(
                "disconnect",
                &[("reason", &reason_json), ("reconnect", flag)],
            ),
        );
        self.state = State::Closed;
        out.ops.push(ClientOp::Disconnect);
        out.close = Some(Close::new(code, reason.to_owned()));
    }

    fn on_command(&mut self, m: codec::Msg, out: &mut ServerOut) {
        if m.copied > 0 {
            self.copied.one(m.copied);
        }
        let Some(token) = &m.identifier_token else {
            // Rails logs a command without an identifier and goes on.
            return;
        };
        if m.command.as_deref() == Some(b"message") {
            return self.on_perform(token, &m, out);
        }
        let Some(identifier) = m.identifier() else {
            return;
        };
        match m.command.as_deref() {
            Some(b"subscribe") => self.on_subscribe(identifier, token, out),
            Some(b"unsubscribe") => {
                let Ok(id) = codec::identifier(&identifier) else {
                    return;
                };
                if let Some(sub) = self.by_canonical.get(&id.canonical).copied() {
                    self.forget(sub);
                    out.ops.push(ClientOp::Unsubscribe { sub });
                }
            }
            // Unknown commands are ignored, as Rails does.
            _ => {}
        }
    }

    /// Drop a subscription from every table.
    fn forget(&mut self, sub: SubId) -> Option<Sub> {
        let s = self.subs.remove(&sub)?;
        self.by_canonical.remove(&s.canonical);
        if self.by_token.get(&s.token) == Some(&sub) {
            self.by_token.remove(&s.token);
        }
        Some(s)
    }

    fn on_subscribe(&mut self, identifier: Bytes, token: &[u8], out: &mut ServerOut) {
        let id = match codec::identifier(&identifier) {
            Ok(id) => id,
            // An identifier that is not JSON with a channel names no channel: rejected.
            Err(_) => {
                return Self::text(
                    out,
                    codec::subscription_answer(&identifier, "reject_subscription"),
                );
            }
        };
        if let Some(sub) = self.by_canonical.get(&id.canonical) {
            // The JS client re-sends until answered: answer a confirmed one again.
            if self.subs.get(sub).is_some_and(|s| s.confirmed) {
                Self::text(
                    out,
                    codec::subscription_answer(&identifier, "confirm_subscription"),
                );
            }
            return;
        }
        if self.subs.len() >= self.settings.max_subscriptions {
            return Self::text(
                out,
                codec::subscription_answer(&identifier, "reject_subscription"),
            );
        }
        let sub = self.next_sub;
        self.next_sub += 1;
        self.by_canonical.insert(id.canonical.clone(), sub);
        // Copied: a slice would keep the whole subscribe message alive with it.
        let token = Bytes::copy_from_slice(token);
        self.by_token.entry(token.clone()).or_insert(sub);
        let channel = Bytes::from(id.channel);
        self.subs.insert(
            sub,
            Sub {
                identifier,
                token,
                channel: channel.clone(),
                canonical: id.canonical,
                confirmed: false,
            },
        );
        out.ops.push(ClientOp::Subscribe {
            sub,
            channel,
            params: SubParams {
                data: id.params.map(Payload::json),
                ..Default::default()
            },
        });
    }

    /// `perform(action, data)`: a publish named after the action, on that subscription.
    /// The subscription is found by the identifier's token as the client sent it, and only
    /// when that fails by the identifier's canonical form (the same subscription written
    /// another way).
    fn on_perform(&mut self, token: &Bytes, m: &codec::Msg, out: &mut ServerOut) {
        let sub = match self.by_token.get(token) {
            Some(&sub) => Some(sub),
            None => m
                .identifier()
                .and_then(|i| codec::identifier(&i).ok())
                .and_then(|id| self.by_canonical.get(&id.canonical).copied()),
        };
        // Rails: "Unable to find subscription": logged, nothing sent.
        let Some((sub, s)) = sub.and_then(|sub| Some((sub, self.subs.get(&sub)?))) else {
            return;
        };
        let data = m.data.clone().unwrap_or_else(|| Bytes::from_static(b"{}"));
        #[derive(serde::Deserialize)]
        struct Action<'a> {
            #[serde(borrow, default)]
            action: Option<std::borrow::Cow<'a, str>>,
        }
        // Rails decodes `data` as a JSON object and, when it is not one, logs the error and
        // performs nothing; passed on, it would be pasted into other dialects' frames as
        // JSON that is not.
        let parsed = match data.trim_ascii_start().first() {
            Some(b'{') => serde_json::from_slice::<Action<'_>>(&data).ok(),
            _ => None,
        };
        let Some(parsed) = parsed else {
            tracing::debug!("action cable: a message whose data is not a JSON object, dropped");
            return;
        };
        let action = match parsed.action {
            Some(std::borrow::Cow::Borrowed(a)) => data.slice_ref(a.as_bytes()),
            Some(std::borrow::Cow::Owned(a)) => Bytes::from(a),
            None => Bytes::from_static(b"receive"),
        };
        out.ops.push(ClientOp::Publish {
            channel: s.channel.clone(),
            event: Some(action),
            args: Vec::new(),
            payload: Payload::json(data),
            meta: Vec::new(),
            reply: None,
            broadcast: false,
            sub: Some(sub),
        });
    }

    /// Write a backend message to its subscription; whether it went.
    fn deliver(&mut self, sub: Option<SubId>, p: &Payload, out: &mut ServerOut) -> bool {
        let Some(s) = sub.and_then(|s| self.subs.get(&s)) else {
            // Action Cable clients hear only their subscriptions.
            return false;
        };
        let message = match p.kind {
            PayloadKind::Json => p.data.clone(),
            _ => {
                let s = crate::dialect::json::json_string(&p.data);
                self.copied.one(p.data.len());
                s
            }
        };
        // Then written into the frame: one more copy.
        self.copied.one(p.data.len());
        let msg = codec::data_message(&s.identifier, &message);
        Self::text(out, msg);
        true
    }
}

impl ServerRole for CableServer {
    /// A message depends on the subscription's identifier (echoed as the client wrote it)
    /// and the message.
    fn shape(&self, ev: &BackendEvent) -> Option<Vec<u8>> {
        let BackendEvent::Message { sub: Some(sub), .. } = ev else {
            return None;
        };
        if self.state == State::Closed {
            return None;
        }
        let s = self.subs.get(sub)?;
        Some(crate::dialect::shape_key(&[b"actioncable", &s.identifier]))
    }

    fn on_start(&mut self, _now: Instant, out: &mut ServerOut) {
        out.ops.push(ClientOp::Connect {
            credentials: self.credentials.clone(),
        });
    }

    fn on_client(&mut self, msg: WsMsg, _now: Instant, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        let WsMsg::Text(text) = msg else {
            return self.disconnect("invalid_request", false, 1003, out);
        };
        match codec::decode(&text) {
            Ok(m) => self.on_command(m, out),
            Err(_) => self.disconnect("invalid_request", false, 1007, out),
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
            BackendEvent::Ready { .. } => {
                if self.state == State::Connecting {
                    self.state = State::Open;
                    Self::text(out, codec::server_type("welcome", &[]));
                }
            }
            BackendEvent::Subscribed { sub, .. } => {
                if let Some(s) = self.subs.get_mut(&sub) {
                    s.confirmed = true;
                    let answer = codec::subscription_answer(&s.identifier, "confirm_subscription");
                    Self::text(out, answer);
                }
            }
            BackendEvent::SubscribeFailed { sub, .. } | BackendEvent::Unsubscribed { sub, .. } => {
                if let Some(s) = self.forget(sub) {
                    let answer = codec::subscription_answer(&s.identifier, "reject_subscription");
                    Self::text(out, answer);
                }
            }
            BackendEvent::Message {
                sub, payload, ack, ..
            } => {
                let delivered = self.deliver(sub, &payload, out);
                if let Some(token) = ack {
                    // Action Cable clients cannot acknowledge: a backend that asked hears
                    // from the proxy once the message is written (or that it was not).
                    out.ops.push(ClientOp::Ack {
                        token,
                        positive: delivered,
                        result: None,
                    });
                }
            }
            // Action Cable has no answers, presence, token pushes or error frames.
            BackendEvent::Reply { .. }
            | BackendEvent::Presence { .. }
            | BackendEvent::SubscriptionCount { .. }
            | BackendEvent::AuthChanged { .. }
            | BackendEvent::Refused(_)
            | BackendEvent::Dropped(_) => {}
            BackendEvent::Error(e) => {
                if e.kind == ErrorKind::Unauthorized {
                    self.disconnect("unauthorized", false, 1000, out);
                } else {
                    self.disconnect("server_restart", true, 1011, out);
                }
            }
            BackendEvent::Closing { reason, retry } => {
                if !retry && reason.kind == ErrorKind::Unauthorized {
                    self.disconnect("unauthorized", false, 1000, out);
                } else {
                    self.disconnect("remote", retry, 1011, out);
                }
            }
        }
    }

    fn on_upstream_lost(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        if reason.kind == ErrorKind::Unauthorized {
            self.disconnect("unauthorized", false, 1000, out);
        } else {
            self.disconnect("server_restart", true, 1011, out);
        }
    }

    fn on_shutdown(&mut self, out: &mut ServerOut) {
        self.disconnect("server_restart", true, 1001, out);
    }

    fn on_too_big(&mut self, _reason: ErrorInfo, out: &mut ServerOut) {
        self.disconnect("invalid_request", false, 1009, out);
    }

    fn on_refused(&mut self, refusal: Refusal, reason: ErrorInfo, out: &mut ServerOut) {
        // Action Cable's one way to say why is `disconnect`; its client only logs the reason
        // and obeys `reconnect`: a busy route is tried again later, a flood is not.
        let close = refusal.close(&reason);
        match refusal {
            Refusal::Busy => self.disconnect("too_many_connections", true, close.code, out),
            Refusal::Rate => self.disconnect("rate_limited", false, close.code, out),
        }
    }

    fn keepalive(&self) -> Keepalive {
        // Clients never ping; the session's WebSocket pings find a dead one.
        Keepalive {
            send_every: (self.state == State::Open).then_some(self.settings.ping_interval),
            expect_within: None,
            periodic: true,
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        if self.state != State::Open {
            return None;
        }
        self.pings += 1;
        // The wall clock at the start plus the pings' cadence: the time, without a clock
        // read in the role.
        let secs = self.epoch.0 + self.pings * self.settings.ping_interval.as_secs().max(1);
        let stamp = secs.to_string();
        Some(WsMsg::Text(codec::server_type(
            "ping",
            &[("message", stamp.as_bytes())],
        )))
    }

    fn on_peer_silent(&mut self, _out: &mut ServerOut) {}

    fn expire(&mut self, _now: Instant, _out: &mut ServerOut) {}

    fn take_copied(&mut self) -> crate::dialect::Copied {
        std::mem::take(&mut self.copied)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
