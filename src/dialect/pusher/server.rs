//! The Pusher server role: the proxy plays a Pusher Channels server (protocol 7) for
//! pusher-js and the vendors' SDKs.
//!
//! Owns: the app key and protocol checks of the upgrade, `connection_established` with a
//! socket id the route issued, `pusher:ping`/`pong` and the 4201 close of a silent client,
//! subscriptions with their signatures verified against that socket id (private, presence,
//! encrypted), presence and subscription-count events, client events (only on subscribed
//! private and presence channels), signin, and `pusher:error` with the close code that
//! matches what happened upstream.
//!
//! Must not touch: I/O, time (it comes in), other dialects, configuration files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::auth;
use super::codec::{self, Data, Kind};
use crate::dialect::{Close, Handshake, Keepalive, Refusal, ServerOut, ServerRole, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, SubId, SubParams,
};

/// Settings of the Pusher server role, from `[route.pusher]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The app key clients connect with (`/app/<key>`).
    pub app_key: String,
    /// The app secret that signs channel authorizations and signins.
    pub app_secret: String,
    /// Announced in `connection_established`; a client silent this long is pinged.
    pub activity_timeout: Duration,
    /// After a ping, the client must answer within this, else it is closed with 4201.
    pub pong_timeout: Duration,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Largest client event `data`, in bytes (Pusher's 10 KB).
    pub max_event_size: usize,
    /// The upstream has presence of its own; without it presence channels are refused
    /// (PROTOCOLS §6.5: never a fabricated member list).
    pub upstream_presence: bool,
    /// The upstream speaks Pusher too (the route's client dialect): a close code it gave
    /// means to pusher-js what it meant to the proxy and goes through. Another dialect's 4000–4399 (SocketCluster's 4000 ping
    /// timeout) would read as Pusher's "TLS only" or "do not reconnect".
    pub upstream_codes: bool,
    /// The upstream delivers a client's publish back to it: its own client events are then
    /// held back, since Pusher never echoes a client event to its sender.
    pub upstream_echoes: bool,
    /// The route verifies a token before the upstream is opened, and pusher-js can send one
    /// only in `pusher:signin` (its WebSocket URL and headers are not the app's to choose).
    /// A connection whose upgrade carried no token then opens its upstream at its signin,
    /// with the signin's `auth` as the token; `user_data` is answered once the token is
    /// verified and the upstream is open.
    pub await_signin: bool,
    /// With `await_signin`, a connection that has not signed in by then is closed with 4009
    /// (soketi's user-authentication timeout).
    pub signin_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_key: String::new(),
            app_secret: String::new(),
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            max_subscriptions: 256,
            max_event_size: 10 * 1024,
            upstream_presence: false,
            upstream_codes: false,
            upstream_echoes: false,
            await_signin: false,
            signin_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before `on_start`.
    New,
    Open,
    Closed,
}

#[derive(Debug)]
struct Sub {
    channel: Bytes,
    kind: Kind,
    confirmed: bool,
    /// Presence: the `user_id` of the member data the app signed, which this connection's
    /// client events carry to the channel's other members (as Pusher adds it).
    user_id: Option<Bytes>,
}

/// The Pusher server role of one connection.
#[derive(Debug)]
pub struct PusherServer {
    settings: Settings,
    socket_id: String,
    /// The last path segment of the upgrade (`/app/<key>`).
    key: String,
    /// The `protocol` query parameter.
    protocol: Option<String>,
    /// The upgrade's bearer token, presented upstream.
    token: Option<Bytes>,
    state: State,
    subs: HashMap<SubId, Sub>,
    by_channel: HashMap<Bytes, SubId>,
    next_sub: SubId,
    /// Signed-in user data (`pusher:signin`).
    user: Option<Bytes>,
    /// `await_signin`: the upstream waits for a signin due by this instant.
    signin_due: Option<Instant>,
    /// `await_signin`: the signin whose token is being verified; its `user_data` is answered
    /// when the upstream is ready.
    signin_pending: Option<Bytes>,
    /// Client events this connection sent, not yet come back from an echoing upstream:
    /// (channel, payload) fingerprints with when they were sent.
    sent: std::collections::VecDeque<(u64, Instant)>,
    copied: crate::dialect::Copied,
}

/// Client events remembered for echo suppression, and for how long.
const MAX_SENT: usize = 64;
const SENT_TTL: Duration = Duration::from_secs(10);

fn fingerprint(channel: &[u8], payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    channel.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}

impl PusherServer {
    /// The role of a connection whose upgrade was `hs`, with the socket id the route issued
    /// (`<digits>.<digits>`: the official server libraries refuse any other when signing).
    pub fn new(settings: Settings, hs: &Handshake, socket_id: String) -> Self {
        let key = hs.path.rsplit('/').next().unwrap_or_default().to_owned();
        Self {
            settings,
            socket_id,
            key,
            protocol: hs.query_param("protocol"),
            token: hs.bearer(),
            state: State::New,
            subs: HashMap::new(),
            by_channel: HashMap::new(),
            next_sub: 1,
            user: None,
            signin_due: None,
            signin_pending: None,
            sent: std::collections::VecDeque::new(),
            copied: crate::dialect::Copied::default(),
        }
    }

    fn send(out: &mut ServerOut, event: &[u8], channel: Option<&[u8]>, data: Data<'_>) {
        out.to_client
            .push(WsMsg::Text(codec::encode(event, channel, data)));
    }

    /// A `pusher:error` that leaves the connection open.
    fn error(out: &mut ServerOut, message: &str, code: Option<u16>) {
        let body = codec::error_body(message, code);
        Self::send(out, b"pusher:error", None, Data::Raw(&body));
    }

    /// A `pusher:error` and the close with the same code.
    fn fatal(&mut self, message: &str, code: u16, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        Self::error(out, message, Some(code));
        self.state = State::Closed;
        out.close = Some(Close::new(code, truncate(message)));
    }

    fn subscription_error(
        out: &mut ServerOut,
        channel: &[u8],
        kind: &str,
        message: &str,
        status: u16,
    ) {
        let mut body = Vec::with_capacity(64 + message.len());
        body.extend_from_slice(b"{\"type\":");
        body.extend_from_slice(&crate::dialect::json::json_string(kind.as_bytes()));
        body.extend_from_slice(b",\"error\":");
        body.extend_from_slice(&crate::dialect::json::json_string(message.as_bytes()));
        body.extend_from_slice(format!(",\"status\":{status}}}").as_bytes());
        Self::send(
            out,
            b"pusher:subscription_error",
            Some(channel),
            Data::Raw(&body),
        );
    }

    fn on_message(&mut self, text: Bytes, now: Instant, out: &mut ServerOut) {
        let m = match codec::decode(&text) {
            Ok(m) => m,
            Err(e) => return Self::error(out, &e.to_string(), None),
        };
        match &m.event[..] {
            b"pusher:ping" => Self::send(out, b"pusher:pong", None, Data::Raw(b"{}")),
            b"pusher:pong" => {}
            b"pusher:subscribe" => self.on_subscribe(m.data.as_ref(), out),
            b"pusher:unsubscribe" => self.on_unsubscribe(m.data.as_ref(), out),
            b"pusher:signin" => self.on_signin(m.data.as_ref(), out),
            e if e.starts_with(b"client-") => self.on_client_event(m, now, out),
            e => {
                let name = String::from_utf8_lossy(e);
                Self::error(out, &format!("Unknown event {name}"), None);
            }
        }
    }

    fn on_subscribe(&mut self, data: Option<&Bytes>, out: &mut ServerOut) {
        let s = match data.map(codec::subscribe_data) {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Self::error(out, &format!("Invalid subscribe: {e}"), None),
            None => return Self::error(out, "Invalid subscribe: no data", None),
        };
        let channel = s.channel;
        if !codec::valid_channel(&channel) {
            return Self::subscription_error(
                out,
                &channel,
                "InvalidChannel",
                "channel names are 1 to 200 of A-Z a-z 0-9 _ - = @ , . ;",
                400,
            );
        }
        if self.by_channel.contains_key(&channel) {
            // pusher-js resubscribes only after a reconnect; a repeat is answered as before.
            return self.succeeded_again(&channel, out);
        }
        if self.subs.len() >= self.settings.max_subscriptions {
            return Self::subscription_error(
                out,
                &channel,
                "LimitReached",
                "too many subscriptions",
                429,
            );
        }
        let kind = codec::kind(&channel);
        let mut params = SubParams::default();
        let mut user_id = None;
        if kind != Kind::Public {
            let data = if kind == Kind::Presence {
                match &s.channel_data {
                    Some(d) => Some(&d[..]),
                    None => {
                        return Self::subscription_error(
                            out,
                            &channel,
                            "AuthError",
                            "presence channels need channel_data",
                            401,
                        );
                    }
                }
            } else {
                None
            };
            let string = auth::channel_string(&self.socket_id, &channel, data);
            let ok = s.auth.as_ref().is_some_and(|a| {
                auth::verify(
                    a,
                    &self.settings.app_key,
                    &self.settings.app_secret,
                    &string,
                )
            });
            if !ok {
                return Self::subscription_error(
                    out,
                    &channel,
                    "AuthError",
                    "Invalid signature",
                    401,
                );
            }
            if kind == Kind::Presence && !self.settings.upstream_presence {
                return Self::subscription_error(
                    out,
                    &channel,
                    "PresenceUnavailable",
                    "the backend has no presence",
                    501,
                );
            }
            // The app signed this member data for our socket id: it is the authenticated
            // identity, and the upstream leg signs it again for its own socket id.
            user_id = s.channel_data.as_ref().and_then(member_user_id);
            params.channel_data = s.channel_data;
            params.signed = true;
        }
        let sub = self.next_sub;
        self.next_sub += 1;
        self.by_channel.insert(channel.clone(), sub);
        self.subs.insert(
            sub,
            Sub {
                channel: channel.clone(),
                kind,
                confirmed: false,
                user_id,
            },
        );
        out.ops.push(ClientOp::Subscribe {
            sub,
            channel,
            params,
        });
    }

    fn succeeded_again(&self, channel: &Bytes, out: &mut ServerOut) {
        let confirmed = self
            .by_channel
            .get(channel)
            .and_then(|s| self.subs.get(s))
            .is_some_and(|s| s.confirmed && s.kind != Kind::Presence);
        if confirmed {
            Self::send(
                out,
                b"pusher_internal:subscription_succeeded",
                Some(channel),
                Data::Str(b"{}"),
            );
        }
    }

    fn on_unsubscribe(&mut self, data: Option<&Bytes>, out: &mut ServerOut) {
        let Some(Ok(s)) = data.map(codec::subscribe_data) else {
            return Self::error(out, "Invalid unsubscribe", None);
        };
        if let Some(sub) = self.by_channel.remove(&s.channel) {
            self.subs.remove(&sub);
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
    }

    fn on_signin(&mut self, data: Option<&Bytes>, out: &mut ServerOut) {
        let Some(Ok(s)) = data.map(codec::signin_data) else {
            return Self::error(out, "Invalid signin", None);
        };
        if self.signin_due.take().is_some() {
            // The token verified at the edge is this signin's `auth`.
            self.signin_pending = Some(s.user_data);
            out.ops.push(ClientOp::Connect {
                credentials: Credentials {
                    token: Some(s.auth),
                    ..Default::default()
                },
            });
            return;
        }
        if self.signin_pending.is_some() {
            return Self::error(out, "Signin already in progress", None);
        }
        let string = auth::signin_string(&self.socket_id, &s.user_data);
        if !auth::verify(
            &s.auth,
            &self.settings.app_key,
            &self.settings.app_secret,
            &string,
        ) {
            // Pusher closes a connection whose signin fails.
            return self.fatal("Invalid signin signature", 4009, out);
        }
        self.signin_success(&s.user_data, out);
    }

    fn signin_success(&mut self, user_data: &Bytes, out: &mut ServerOut) {
        let mut body = Vec::with_capacity(16 + user_data.len() * 2);
        body.extend_from_slice(b"{\"user_data\":");
        body.extend_from_slice(&crate::dialect::json::json_string(user_data));
        body.push(b'}');
        Self::send(out, b"pusher:signin_success", None, Data::Raw(&body));
        self.user = Some(user_data.clone());
    }

    fn on_client_event(&mut self, m: codec::Msg, now: Instant, out: &mut ServerOut) {
        let Some(channel) = m.channel else {
            return Self::error(out, "Client event needs a channel", None);
        };
        let sub = self.by_channel.get(&channel).and_then(|s| self.subs.get(s));
        let mut meta = Vec::new();
        match sub {
            Some(s) if s.confirmed && matches!(s.kind, Kind::Private | Kind::Presence) => {
                if let Some(u) = &s.user_id {
                    meta.push((Bytes::from_static(crate::frame::SENDER), u.clone()));
                }
            }
            Some(s) if s.kind == Kind::Encrypted => {
                return Self::error(
                    out,
                    "Client events are not allowed on encrypted channels",
                    None,
                );
            }
            Some(s) if s.kind == Kind::Public => {
                return Self::error(
                    out,
                    "Client events are only allowed on private and presence channels",
                    None,
                );
            }
            _ => {
                let name = String::from_utf8_lossy(&channel);
                return Self::error(out, &format!("Not subscribed to {name}"), None);
            }
        }
        let data = m.data.unwrap_or_else(|| Bytes::from_static(b"null"));
        if data.len() > self.settings.max_event_size {
            return Self::error(
                out,
                &format!(
                    "Client event rejected: data over {} bytes",
                    self.settings.max_event_size
                ),
                Some(4301),
            );
        }
        let (payload, copied) = codec::data_payload(&data);
        self.copied.one(copied);
        if self.settings.upstream_echoes {
            if self.sent.len() >= MAX_SENT {
                self.sent.pop_front();
            }
            self.sent
                .push_back((fingerprint(&channel, &payload.data), now));
        }
        out.ops.push(ClientOp::Publish {
            channel,
            event: Some(m.event),
            args: Vec::new(),
            payload,
            meta,
            reply: None,
            // A client event goes to the channel's other subscribers: a channel publish.
            broadcast: true,
            sub: None,
        });
    }

    /// Whether a delivery is this connection's own client event coming back.
    fn is_echo(&mut self, channel: &[u8], p: &Payload, now: Instant) -> bool {
        self.sent
            .retain(|(_, at)| now.saturating_duration_since(*at) < SENT_TTL);
        let f = fingerprint(channel, &p.data);
        match self.sent.iter().position(|(h, _)| *h == f) {
            Some(i) => {
                self.sent.remove(i);
                true
            }
            None => false,
        }
    }

    /// A delivery on a subscribed channel; `data` JSON-encoded into a string.
    /// Write a backend message to its channel; whether it went (or was this connection's
    /// own client event, held back).
    fn deliver(
        &mut self,
        sub: Option<SubId>,
        event: Option<Bytes>,
        p: &Payload,
        meta: &[(Bytes, Bytes)],
        now: Instant,
        out: &mut ServerOut,
    ) -> bool {
        let Some(channel) = sub
            .and_then(|s| self.subs.get(&s))
            .map(|s| s.channel.clone())
        else {
            // Pusher clients hear only the channels they subscribed to.
            return false;
        };
        if !self.sent.is_empty() && self.is_echo(&channel, p, now) {
            return true;
        }
        let Some(s) = sub.and_then(|s| self.subs.get(&s)) else {
            return false;
        };
        let Some(json) = codec::payload_json(p) else {
            // No binary on Pusher; the session counts what a role drops.
            return false;
        };
        if let std::borrow::Cow::Owned(o) = &json {
            self.copied.one(o.len());
        }
        // The string's escaping copies the payload once into the frame.
        self.copied.one(json.len());
        let event = event.unwrap_or_else(|| s.channel.clone());
        // A presence member's client event says who sent it.
        let user_id = (s.kind == Kind::Presence)
            .then(|| meta.iter().find(|(k, _)| k == crate::frame::SENDER))
            .flatten();
        match user_id {
            Some((_, u)) => out.to_client.push(WsMsg::Text(codec::encode_from_user(
                &event, &s.channel, &json, u,
            ))),
            None => Self::send(out, &event, Some(&s.channel), Data::Str(&json)),
        }
        true
    }

    fn close_for(&self, e: &ErrorInfo) -> u16 {
        // A Pusher upstream's own code goes through (4000–4399).
        if let Some(c) = e
            .code
            .filter(|c| self.settings.upstream_codes && (4000..4400).contains(c))
        {
            return c;
        }
        match e.kind {
            ErrorKind::Unauthorized => 4009,
            // Reconnect after a backoff: the backend is down or slow.
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Limit => 4100,
            // Reconnect at once.
            ErrorKind::Protocol | ErrorKind::Untranslatable => 4200,
        }
    }
}

impl ServerRole for PusherServer {
    /// An event depends on the subscription's channel and the message; while client events
    /// of this connection wait for their echo to be filtered, it is encoded per session.
    fn shape(&self, ev: &BackendEvent) -> Option<Vec<u8>> {
        let BackendEvent::Message { sub: Some(sub), .. } = ev else {
            return None;
        };
        if self.state != State::Open || !self.sent.is_empty() {
            return None;
        }
        let s = self.subs.get(sub)?;
        Some(crate::dialect::shape_key(&[b"pusher", &s.channel]))
    }

    fn on_start(&mut self, now: Instant, out: &mut ServerOut) {
        if self.state != State::New {
            return;
        }
        self.state = State::Open;
        if self.key != self.settings.app_key {
            let msg = format!(
                "App key {} not in this cluster. Did you forget to specify the cluster?",
                self.key
            );
            return self.fatal(&msg, 4001, out);
        }
        match self.protocol.as_deref() {
            None => return self.fatal("No protocol version supplied", 4008, out),
            Some("7") => {}
            Some(p) => {
                let msg = format!("Unsupported protocol version {p}");
                return self.fatal(&msg, 4007, out);
            }
        }
        let data = format!(
            r#"{{"socket_id":"{}","activity_timeout":{}}}"#,
            self.socket_id,
            self.settings.activity_timeout.as_secs()
        );
        Self::send(
            out,
            b"pusher:connection_established",
            None,
            Data::Str(data.as_bytes()),
        );
        if self.settings.await_signin && self.token.is_none() {
            self.signin_due = Some(now + self.settings.signin_timeout);
            return;
        }
        // Pusher clients authenticate per subscription; the upstream leg opens with what the
        // upgrade carried.
        out.ops.push(ClientOp::Connect {
            credentials: Credentials {
                token: self.token.clone(),
                ..Default::default()
            },
        });
    }

    fn on_client(&mut self, msg: WsMsg, now: Instant, out: &mut ServerOut) {
        if self.state != State::Open {
            return;
        }
        match msg {
            WsMsg::Text(t) => self.on_message(t, now, out),
            WsMsg::Binary(_) => Self::error(out, "Pusher messages are text", None),
        }
    }

    fn on_backend(&mut self, ev: BackendEvent, now: Instant, out: &mut ServerOut) {
        if self.state != State::Open {
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
                if let Some(user_data) = self.signin_pending.take() {
                    self.signin_success(&user_data, out);
                }
            }
            BackendEvent::Subscribed { sub, data } => {
                let Some(s) = self.subs.get_mut(&sub) else {
                    return;
                };
                s.confirmed = true;
                let channel = s.channel.clone();
                let body = match (&data, s.kind) {
                    // A presence snapshot from the upstream, as is.
                    (Some(d), Kind::Presence) => d.data.clone(),
                    _ => Bytes::from_static(b"{}"),
                };
                Self::send(
                    out,
                    b"pusher_internal:subscription_succeeded",
                    Some(&channel),
                    Data::Str(&body),
                );
            }
            BackendEvent::SubscribeFailed { sub, reason } => {
                let Some(s) = self.subs.remove(&sub) else {
                    return;
                };
                self.by_channel.remove(&s.channel);
                let (kind, status) = match reason.kind {
                    ErrorKind::Unauthorized => ("AuthError", 401),
                    ErrorKind::Limit => ("LimitReached", 429),
                    ErrorKind::Untranslatable => ("InvalidChannel", 400),
                    _ => ("SubscriptionError", reason.code.unwrap_or(500)),
                };
                let msg = String::from_utf8_lossy(&reason.message);
                Self::subscription_error(out, &s.channel, kind, &msg, status);
            }
            BackendEvent::Unsubscribed { sub, .. } => {
                // Pusher has no kick: delivery stops (PROTOCOLS §6.9).
                if let Some(s) = self.subs.remove(&sub) {
                    self.by_channel.remove(&s.channel);
                }
            }
            BackendEvent::Message {
                sub,
                event,
                payload,
                ack,
                meta,
                ..
            } => {
                let delivered = self.deliver(sub, event, &payload, &meta, now, out);
                if let Some(token) = ack {
                    // Pusher clients cannot acknowledge: a backend that asked hears from the
                    // proxy once the message is written (or that it was not).
                    out.ops.push(ClientOp::Ack {
                        token,
                        positive: delivered,
                        result: None,
                    });
                }
            }
            BackendEvent::Presence {
                channel,
                member,
                added,
            } => {
                if self.by_channel.contains_key(&channel) {
                    let event: &[u8] = if added {
                        b"pusher_internal:member_added"
                    } else {
                        b"pusher_internal:member_removed"
                    };
                    Self::send(out, event, Some(&channel), Data::Str(&member));
                }
            }
            BackendEvent::SubscriptionCount { channel, count } => {
                if self.by_channel.contains_key(&channel) {
                    let body = format!(r#"{{"subscription_count":{count}}}"#);
                    Self::send(
                        out,
                        b"pusher_internal:subscription_count",
                        Some(&channel),
                        Data::Str(body.as_bytes()),
                    );
                }
            }
            // Client events have no answer; a confirmation has nobody to tell.
            BackendEvent::Reply { result: Ok(_), .. }
            | BackendEvent::AuthChanged { .. }
            | BackendEvent::Dropped(_) => {}
            BackendEvent::Reply { result: Err(e), .. } | BackendEvent::Refused(e) => {
                let msg = String::from_utf8_lossy(&e.message);
                Self::error(out, &msg, e.code);
            }
            BackendEvent::Error(e) => {
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                self.fatal(&msg, self.close_for(&e), out);
            }
            BackendEvent::Closing { reason, retry } => {
                let msg = String::from_utf8_lossy(&reason.message).into_owned();
                // 4000–4099: pusher-js does not reconnect as is.
                let code = match (retry, reason.kind) {
                    (true, _) => 4200,
                    (false, ErrorKind::Unauthorized) => 4009,
                    (false, _) => 4099,
                };
                self.fatal(&msg, code, out);
            }
        }
    }

    fn on_upstream_lost(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        let msg = format!(
            "upstream unavailable: {}",
            String::from_utf8_lossy(&reason.message)
        );
        self.fatal(&msg, self.close_for(&reason), out);
    }

    fn on_shutdown(&mut self, out: &mut ServerOut) {
        // Reconnect at once: to another instance.
        self.fatal("server shutting down", 4200, out);
    }

    fn on_too_big(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        let msg = String::from_utf8_lossy(&reason.message).into_owned();
        Self::error(out, &msg, Some(4301));
        self.state = State::Closed;
        out.close = Some(Close::new(1009, "message too big"));
    }

    fn on_refused(&mut self, refusal: Refusal, reason: ErrorInfo, out: &mut ServerOut) {
        let msg = String::from_utf8_lossy(&reason.message).into_owned();
        match refusal {
            // 4100 "Over capacity": pusher-js reconnects after backing off.
            Refusal::Busy => self.fatal(&msg, 4100, out),
            // 4301, Pusher's own answer to a client over its rate: the message is dropped and
            // the connection stays.
            Refusal::Rate => Self::error(out, &msg, Some(4301)),
        }
    }

    fn on_slow_consumer(&mut self, out: &mut ServerOut) {
        // Back off before reconnecting.
        self.fatal("slow consumer: messages were not read in time", 4100, out);
    }

    fn keepalive(&self) -> Keepalive {
        Keepalive {
            send_every: Some(self.settings.activity_timeout),
            expect_within: Some(self.settings.activity_timeout + self.settings.pong_timeout),
            // Every activity timeout whatever else is sent: pusher-js pings only after that
            // long without a message either way, so a client that only listens to a busy
            // channel would send nothing and be closed for silence; the ping it answers
            // keeps it.
            periodic: true,
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        (self.state == State::Open)
            .then(|| WsMsg::Text(codec::encode(b"pusher:ping", None, Data::Raw(b"{}"))))
    }

    fn on_peer_silent(&mut self, out: &mut ServerOut) {
        self.fatal("Pong reply not received", 4201, out);
    }

    fn expire(&mut self, now: Instant, out: &mut ServerOut) {
        if self.signin_due.is_some_and(|due| now >= due) {
            self.signin_due = None;
            self.fatal("Connection not authorized within timeout", 4009, out);
        }
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        std::mem::take(&mut self.copied)
    }
}

/// A close reason within WebSocket's 123 bytes.
fn truncate(s: &str) -> String {
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// The `user_id` of presence member data (`{"user_id":..,"user_info":..}`), as a string.
fn member_user_id(channel_data: &Bytes) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Member<'a> {
        #[serde(borrow)]
        user_id: &'a serde_json::value::RawValue,
    }
    let m: Member<'_> = serde_json::from_slice(channel_data).ok()?;
    codec::user_id_string(&channel_data.slice_ref(m.user_id.get().as_bytes()))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
