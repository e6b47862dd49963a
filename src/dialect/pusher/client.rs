//! The Pusher client role: the proxy plays a pusher-js-like client toward a Pusher Channels
//! server (Pusher, soketi, sockudo).
//!
//! Owns: waiting for `connection_established` (holding operations until then), the
//! activity timeout and `pusher:ping`/`pong`, subscriptions signed for the **upstream**
//! socket id with the route's app secret (one wire subscription per channel however many
//! downstream subscriptions share it), client events (`client-*` on private and presence
//! channels, within Pusher's size limit), server events with their JSON-in-a-string `data`
//! decoded once, presence and subscription counts, and `pusher:error` codes.
//!
//! Must not touch: I/O, time (it comes in), other dialects, configuration files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::auth;
use super::codec::{self, Data, Kind};
use crate::dialect::hold::{Gate, HoldQueue};
use crate::dialect::pending::deadline;
use crate::dialect::{ClientOut, ClientRole, Close, Dial, Keepalive, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, Reply, SubId, SubParams,
};

/// Settings of the Pusher client role, from `[route.upstream]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The app key (the last segment of the upstream URL's path).
    pub app_key: String,
    /// The app secret that signs private and presence subscriptions for the upstream's
    /// socket id.
    pub app_secret: Option<String>,
    /// Else the app's authorization endpoint, asked with the client's credentials; with
    /// neither, such subscriptions are refused.
    pub auth_endpoint: Option<String>,
    /// Our own activity timeout; the server's, if shorter, wins.
    pub activity_timeout: Duration,
    /// A ping unanswered this long means the server is gone.
    pub pong_timeout: Duration,
    /// Largest client event `data` the server takes (Pusher: 10 KB).
    pub max_event_size: usize,
    /// Most operations held until `connection_established`.
    pub max_queued_ops: usize,
    /// Most bytes of those operations.
    pub max_queued_bytes: usize,
    /// A subscription neither confirmed nor refused this long after it was asked for fails
    /// (the authorization request included): nothing else would end its wait.
    pub confirm_timeout: Duration,
}

/// How much of a code-null `pusher:error`'s message is searched for the channel it names.
const MAX_ERROR_SEARCH: usize = 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_key: String::new(),
            app_secret: None,
            auth_endpoint: None,
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            max_event_size: 10 * 1024,
            max_queued_ops: 1024,
            max_queued_bytes: 4 << 20,
            confirm_timeout: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitEstablished,
    Open,
    Closed,
}

/// One wire subscription and the downstream subscriptions that share it.
#[derive(Debug, Default)]
struct Channel {
    subs: Vec<SubId>,
    confirmed: bool,
    /// `subscription_succeeded`'s data, for subscriptions that join later.
    data: Option<Payload>,
    /// Until confirmed: when it fails unanswered.
    deadline: Option<Instant>,
}

/// The Pusher client role of one session.
#[derive(Debug)]
pub struct PusherClient {
    settings: Settings,
    credentials: Credentials,
    state: State,
    socket_id: String,
    keepalive: Keepalive,
    held: HoldQueue,
    channels: HashMap<Bytes, Channel>,
    by_sub: HashMap<SubId, Bytes>,
    /// Authorization requests in flight → their channel.
    authorizing: HashMap<u64, Bytes>,
    next_auth: u64,
    copied: crate::dialect::Copied,
}

impl PusherClient {
    /// A client role for one session.
    pub fn new(settings: Settings, credentials: Credentials) -> Self {
        let held = HoldQueue::new(settings.max_queued_ops, settings.max_queued_bytes);
        Self {
            settings,
            credentials,
            state: State::AwaitEstablished,
            socket_id: String::new(),
            keepalive: Keepalive::default(),
            held,
            channels: HashMap::new(),
            by_sub: HashMap::new(),
            authorizing: HashMap::new(),
            next_auth: 1,
            copied: crate::dialect::Copied::default(),
        }
    }

    fn send(out: &mut ClientOut, event: &[u8], channel: Option<&[u8]>, data: Data<'_>) {
        out.to_backend
            .push(WsMsg::Text(codec::encode(event, channel, data)));
    }

    fn fail(&mut self, e: ErrorInfo, out: &mut ClientOut) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.fail_all(&e, out);
        out.events.push(BackendEvent::Error(e));
        out.close = Some(Close::normal());
    }

    fn fail_all(&mut self, e: &ErrorInfo, out: &mut ClientOut) {
        for (_, ch) in self.channels.drain() {
            if !ch.confirmed {
                for sub in ch.subs {
                    out.events.push(BackendEvent::SubscribeFailed {
                        sub,
                        reason: e.clone(),
                    });
                }
            }
        }
        self.by_sub.clear();
        self.held.refuse_all(e, out);
    }

    fn subscribe(
        &mut self,
        sub: SubId,
        channel: Bytes,
        params: SubParams,
        now: Instant,
        out: &mut ClientOut,
    ) {
        let refuse = |kind, msg: &str, out: &mut ClientOut| {
            out.events.push(BackendEvent::SubscribeFailed {
                sub,
                reason: ErrorInfo::new(kind, msg.to_owned()),
            });
        };
        if !codec::valid_channel(&channel) {
            return refuse(
                ErrorKind::Untranslatable,
                "not a Pusher channel name (1 to 200 of A-Z a-z 0-9 _ - = @ , . ;)",
                out,
            );
        }
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.subs.push(sub);
            self.by_sub.insert(sub, channel);
            if ch.confirmed {
                out.events.push(BackendEvent::Subscribed {
                    sub,
                    data: ch.data.clone(),
                });
            }
            return;
        }
        let kind = codec::kind(&channel);
        let signed = if kind == Kind::Public {
            Some((None, None))
        } else if let Some(secret) = self.settings.app_secret.as_deref() {
            let data = match kind {
                // The member data the downstream's app signed (a Pusher client's), else the
                // authenticated identity: the login the client presented. Never made up.
                Kind::Presence => match params.channel_data.clone().or_else(|| {
                    self.credentials.login.as_ref().map(|l| {
                        let mut d = b"{\"user_id\":".to_vec();
                        d.extend_from_slice(&crate::dialect::json::json_string(l));
                        d.push(b'}');
                        Bytes::from(d)
                    })
                }) {
                    Some(d) => Some(d),
                    None => {
                        return refuse(
                            ErrorKind::Unauthorized,
                            "presence channels need an authenticated identity",
                            out,
                        );
                    }
                },
                _ => None,
            };
            let string = auth::channel_string(&self.socket_id, &channel, data.as_deref());
            let Some(signature) = auth::sign(&self.settings.app_key, secret, &string) else {
                return refuse(ErrorKind::Unauthorized, "cannot sign", out);
            };
            Some((Some(Bytes::from(signature)), data))
        } else if let Some(url) = self.settings.auth_endpoint.clone() {
            // The app signs for our socket id, as it would for its own client, on the
            // strength of that client's credentials; its answer comes to `on_authorized`.
            let id = self.next_auth;
            self.next_auth += 1;
            self.authorizing.insert(id, channel.clone());
            let mut headers = Vec::new();
            if let Some(t) = self
                .credentials
                .token
                .as_ref()
                .and_then(|t| std::str::from_utf8(t).ok())
            {
                headers.push(("Authorization".to_owned(), format!("Bearer {t}")));
            }
            if let Some(c) = self
                .credentials
                .cookie
                .as_ref()
                .and_then(|c| std::str::from_utf8(c).ok())
            {
                headers.push(("Cookie".to_owned(), c.to_owned()));
            }
            out.authorize.push(crate::dialect::AuthRequest {
                id,
                url,
                form: vec![
                    ("socket_id".to_owned(), self.socket_id.clone()),
                    (
                        "channel_name".to_owned(),
                        String::from_utf8_lossy(&channel).into_owned(),
                    ),
                ],
                headers,
            });
            None
        } else {
            return refuse(
                ErrorKind::Unauthorized,
                "private and presence channels need upstream.app_secret or upstream.auth_endpoint",
                out,
            );
        };
        if let Some((auth, data)) = signed {
            Self::send_subscribe(&channel, auth.as_deref(), data.as_deref(), out);
        }
        self.by_sub.insert(sub, channel.clone());
        self.channels.insert(
            channel,
            Channel {
                subs: vec![sub],
                deadline: Some(deadline(now, self.settings.confirm_timeout)),
                ..Default::default()
            },
        );
    }

    /// The wire subscription on `channel` failed: every subscription sharing it hears why.
    fn fail_channel(&mut self, channel: &[u8], reason: &ErrorInfo, out: &mut ClientOut) {
        let Some(ch) = self.channels.remove(channel) else {
            return;
        };
        for sub in ch.subs {
            self.by_sub.remove(&sub);
            out.events.push(BackendEvent::SubscribeFailed {
                sub,
                reason: reason.clone(),
            });
        }
    }

    /// The unconfirmed channel a code-null `pusher:error` is about: Pusher answers a bad
    /// signature that way, naming the signed string (`<socket id>:<channel>...`), and no
    /// channel field. The longest pending name it contains (one may contain another). Only
    /// the message's start is searched, in linear time: Pusher's names the channel in its
    /// first few hundred bytes, and a backend's megabyte of message against 256 pending
    /// names searched naively held the worker for over a second.
    fn refused_channel(&self, message: &[u8]) -> Option<Bytes> {
        let message = message.get(..MAX_ERROR_SEARCH).unwrap_or(message);
        self.channels
            .iter()
            .filter(|(name, ch)| {
                !ch.confirmed && !name.is_empty() && memchr::memmem::find(message, name).is_some()
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(name, _)| name.clone())
    }

    fn send_subscribe(
        channel: &[u8],
        auth: Option<&[u8]>,
        channel_data: Option<&[u8]>,
        out: &mut ClientOut,
    ) {
        let mut body = Vec::with_capacity(64 + channel.len());
        body.extend_from_slice(b"{\"channel\":");
        body.extend_from_slice(&crate::dialect::json::json_string(channel));
        if let Some(a) = auth {
            body.extend_from_slice(b",\"auth\":");
            body.extend_from_slice(&crate::dialect::json::json_string(a));
        }
        if let Some(d) = channel_data {
            body.extend_from_slice(b",\"channel_data\":");
            body.extend_from_slice(&crate::dialect::json::json_string(d));
        }
        body.push(b'}');
        Self::send(out, b"pusher:subscribe", None, Data::Raw(&body));
    }

    fn send_unsubscribe(channel: &[u8], out: &mut ClientOut) {
        let mut body = b"{\"channel\":".to_vec();
        body.extend_from_slice(&crate::dialect::json::json_string(channel));
        body.push(b'}');
        Self::send(out, b"pusher:unsubscribe", None, Data::Raw(&body));
    }

    /// The endpoint's answer for one channel: subscribe with it, or refuse every
    /// subscription waiting on that channel.
    fn authorized(&mut self, id: u64, result: Result<Bytes, ErrorInfo>, out: &mut ClientOut) {
        #[derive(serde::Deserialize)]
        struct Answer {
            auth: String,
            #[serde(default)]
            channel_data: Option<String>,
        }
        let Some(channel) = self.authorizing.remove(&id) else {
            return;
        };
        if !self.channels.contains_key(&channel) {
            // Unsubscribed meanwhile.
            return;
        }
        let answer = result.and_then(|body| {
            serde_json::from_slice::<Answer>(&body).map_err(|e| {
                ErrorInfo::new(
                    ErrorKind::Unauthorized,
                    format!("authorization endpoint: bad answer: {e}"),
                )
            })
        });
        match answer {
            Ok(a) => Self::send_subscribe(
                &channel,
                Some(a.auth.as_bytes()),
                a.channel_data.as_deref().map(str::as_bytes),
                out,
            ),
            Err(reason) => self.fail_channel(&channel, &reason, out),
        }
    }

    fn unsubscribe(&mut self, sub: SubId, out: &mut ClientOut) {
        let Some(channel) = self.by_sub.remove(&sub) else {
            return;
        };
        let empty = self.channels.get_mut(&channel).is_none_or(|ch| {
            ch.subs.retain(|s| *s != sub);
            ch.subs.is_empty()
        });
        if empty {
            self.channels.remove(&channel);
            Self::send_unsubscribe(&channel, out);
        }
    }

    fn publish(
        &mut self,
        channel: Bytes,
        event: Option<Bytes>,
        payload: Payload,
        reply: Option<Reply>,
        out: &mut ClientOut,
    ) {
        let answer = |result: Result<Option<Payload>, ErrorInfo>, out: &mut ClientOut| match reply {
            Some(r) => out.events.push(BackendEvent::Reply { id: r.id, result }),
            None => {
                if let Err(e) = result {
                    out.events.push(BackendEvent::Refused(e));
                }
            }
        };
        let Some(event) = event.filter(|e| e.starts_with(b"client-")) else {
            return answer(
                Err(ErrorInfo::new(
                    ErrorKind::Untranslatable,
                    "a Pusher client can only send client-* events (set the event name)",
                )),
                out,
            );
        };
        let subscribed = self.channels.get(&channel).is_some_and(|c| c.confirmed);
        if !subscribed || !matches!(codec::kind(&channel), Kind::Private | Kind::Presence) {
            return answer(
                Err(ErrorInfo::new(
                    ErrorKind::Untranslatable,
                    "client events go on a subscribed private- or presence- channel",
                )),
                out,
            );
        }
        let Some(json) = codec::payload_json(&payload) else {
            return answer(
                Err(ErrorInfo::new(
                    ErrorKind::Untranslatable,
                    "Pusher cannot carry binary data",
                )),
                out,
            );
        };
        if json.len() > self.settings.max_event_size {
            return answer(
                Err(ErrorInfo::new(
                    ErrorKind::Limit,
                    format!(
                        "data of {} bytes is over Pusher's limit of {} bytes",
                        json.len(),
                        self.settings.max_event_size
                    ),
                )),
                out,
            );
        }
        if let std::borrow::Cow::Owned(o) = &json {
            self.copied.one(o.len());
        }
        // Written once more, into the frame.
        self.copied.one(json.len());
        // Client events carry the data as sent (an object), as pusher-js does.
        Self::send(out, &event, Some(&channel), Data::Raw(&json));
        // Pusher answers nothing: confirmed once written (PROTOCOLS §6.2), never a made-up
        // result for a request that expected data.
        answer(Ok(None), out);
    }

    fn on_established(&mut self, data: Option<&Bytes>, now: Instant, out: &mut ClientOut) {
        #[derive(serde::Deserialize)]
        struct Established {
            socket_id: String,
            #[serde(default)]
            activity_timeout: Option<u64>,
        }
        let parsed = data
            .and_then(|d| codec::data_json(d).ok())
            .and_then(|(j, _)| serde_json::from_slice::<Established>(&j).ok());
        let Some(e) = parsed else {
            return self.fail(
                ErrorInfo::new(ErrorKind::Protocol, "bad pusher:connection_established"),
                out,
            );
        };
        // A server's 0 would be a ping on every tick: it is no timeout, and ours applies.
        let activity = e
            .activity_timeout
            .filter(|&a| a > 0)
            .map(Duration::from_secs)
            .map_or(self.settings.activity_timeout, |a| {
                a.min(self.settings.activity_timeout)
            });
        self.keepalive = Keepalive {
            send_every: Some(activity),
            expect_within: Some(activity + self.settings.pong_timeout),
            // Whatever this leg sends: a leg that only publishes to a quiet server hears
            // nothing but the pongs to these pings.
            periodic: true,
        };
        self.state = State::Open;
        out.events.push(BackendEvent::Ready {
            session: Some(Bytes::from(e.socket_id.clone())),
        });
        self.socket_id = e.socket_id;
        let held: Vec<ClientOp> = self.held.drain().collect();
        for op in held {
            self.on_op(op, now, out);
        }
    }

    fn on_message(&mut self, text: Bytes, now: Instant, out: &mut ClientOut) {
        let m = match codec::decode(&text) {
            Ok(m) => m,
            Err(e) => {
                return out.events.push(BackendEvent::Dropped(ErrorInfo::new(
                    ErrorKind::Protocol,
                    e.to_string(),
                )));
            }
        };
        match (&m.event[..], self.state) {
            (b"pusher:connection_established", State::AwaitEstablished) => {
                self.on_established(m.data.as_ref(), now, out)
            }
            (b"pusher:ping", _) => Self::send(out, b"pusher:pong", None, Data::Raw(b"{}")),
            (b"pusher:pong" | b"pusher:signin_success" | b"pusher:cache_miss", _) => {}
            (b"pusher:error", _) => {
                let e = codec::error_data(m.data.as_ref());
                let mut info = ErrorInfo::new(error_kind(e.code), e.message);
                info.code = e.code;
                if e.code.is_some_and(|c| (4000..4300).contains(&c)) {
                    // A close with the same code follows.
                    self.fail(info, out);
                } else if let Some(channel) = e
                    .code
                    .is_none()
                    .then(|| self.refused_channel(&info.message))
                    .flatten()
                {
                    info.kind = ErrorKind::Unauthorized;
                    self.fail_channel(&channel, &info, out);
                } else {
                    out.events.push(BackendEvent::Refused(info));
                }
            }
            (b"pusher_internal:subscription_succeeded", State::Open) => {
                let Some(channel) = m.channel else { return };
                let data = m.data.as_ref().map(|d| {
                    let (p, copied) = codec::data_payload(d);
                    self.copied.one(copied);
                    p
                });
                let Some(ch) = self.channels.get_mut(&channel) else {
                    return;
                };
                ch.confirmed = true;
                ch.data = data.clone();
                for sub in &ch.subs {
                    out.events.push(BackendEvent::Subscribed {
                        sub: *sub,
                        data: data.clone(),
                    });
                }
            }
            (b"pusher:subscription_error", State::Open) => {
                let Some(channel) = m.channel else { return };
                let e = codec::error_data(m.data.as_ref());
                let kind = match (e.kind.as_deref(), e.code) {
                    (Some("AuthError"), _) | (_, Some(401 | 403)) => ErrorKind::Unauthorized,
                    _ => ErrorKind::Protocol,
                };
                let mut reason = ErrorInfo::new(kind, e.message);
                reason.code = e.code;
                self.fail_channel(&channel, &reason, out);
            }
            (b"pusher_internal:member_added" | b"pusher_internal:member_removed", State::Open) => {
                let (Some(channel), Some(data)) = (m.channel, m.data) else {
                    return;
                };
                let (member, copied) = codec::data_payload(&data);
                self.copied.one(copied);
                out.events.push(BackendEvent::Presence {
                    channel,
                    member: member.data,
                    added: &m.event[..] == b"pusher_internal:member_added",
                });
            }
            (b"pusher_internal:subscription_count", State::Open) => {
                #[derive(serde::Deserialize)]
                struct Count {
                    subscription_count: u64,
                }
                let (Some(channel), Some(data)) = (m.channel, m.data) else {
                    return;
                };
                if let Some(c) = codec::data_json(&data)
                    .ok()
                    .and_then(|(j, _)| serde_json::from_slice::<Count>(&j).ok())
                {
                    out.events.push(BackendEvent::SubscriptionCount {
                        channel,
                        count: c.subscription_count,
                    });
                }
            }
            (e, State::Open)
                if !e.starts_with(b"pusher:") && !e.starts_with(b"pusher_internal:") =>
            {
                let Some(channel) = m.channel else { return };
                let (payload, copied) = match &m.data {
                    Some(d) => codec::data_payload(d),
                    None => (Payload::null(), 0),
                };
                self.copied.one(copied);
                // A presence member's client event: who sent it travels on.
                let meta = m
                    .user_id
                    .as_ref()
                    .and_then(codec::user_id_string)
                    .map(|u| vec![(Bytes::from_static(crate::frame::SENDER), u)])
                    .unwrap_or_default();
                out.events.push(BackendEvent::Message {
                    sub: None,
                    channel,
                    event: Some(m.event),
                    args: Vec::new(),
                    payload,
                    meta,
                    ack: None,
                });
            }
            _ => {}
        }
    }
}

/// What a Pusher error code says happened.
fn error_kind(code: Option<u16>) -> ErrorKind {
    match code {
        Some(4009) => ErrorKind::Unauthorized,
        Some(4001 | 4003 | 4005 | 4006 | 4007 | 4008) => ErrorKind::Protocol,
        Some(4004 | 4100 | 4301) => ErrorKind::Limit,
        _ => ErrorKind::Unavailable,
    }
}

impl ClientRole for PusherClient {
    fn dial(&self) -> Dial {
        Dial::from_credentials(&self.credentials)
    }

    fn start(&mut self, _now: Instant, _out: &mut ClientOut) {
        // The server speaks first (`connection_established`).
    }

    fn on_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut) {
        let gate = match self.state {
            State::Closed => Gate::Closed("Pusher connection closed"),
            State::AwaitEstablished => Gate::Handshaking,
            _ => Gate::Open,
        };
        let op = match self.held.admit(gate, op, out) {
            Ok(Some(op)) => op,
            Ok(None) => return,
            Err(e) => return self.fail(e, out),
        };
        match op {
            // Argument-list shapes pass only between legs of that shape, never to this one.
            op @ (ClientOp::Join { .. }
            | ClientOp::Leave { .. }
            | ClientOp::Emit { .. }
            | ClientOp::Answer { .. }) => out.events.extend(op.shape_refusal()),
            ClientOp::Connect { credentials } => self.credentials = credentials,
            // Pusher signin would need the user data signed by the app: not forwarded.
            ClientOp::Reauth { .. } => out.events.push(BackendEvent::Refused(ErrorInfo::new(
                ErrorKind::Untranslatable,
                "a Pusher backend cannot re-authenticate an open session",
            ))),
            ClientOp::Subscribe {
                sub,
                channel,
                params,
            } => self.subscribe(sub, channel, params, now, out),
            ClientOp::Unsubscribe { sub } => self.unsubscribe(sub, out),
            ClientOp::Publish {
                channel,
                event,
                payload,
                reply,
                ..
            } => self.publish(channel, event, payload, reply, out),
            // Pusher deliveries are not acknowledged.
            ClientOp::Ack { .. } => {}
            ClientOp::Disconnect => {
                self.state = State::Closed;
                out.close = Some(Close::normal());
            }
        }
    }

    fn on_backend(&mut self, msg: WsMsg, now: Instant, out: &mut ClientOut) {
        match msg {
            WsMsg::Text(t) => self.on_message(t, now, out),
            WsMsg::Binary(_) => out.events.push(BackendEvent::Dropped(ErrorInfo::new(
                ErrorKind::Protocol,
                "binary message from a Pusher server",
            ))),
        }
    }

    fn keepalive(&self) -> Keepalive {
        self.keepalive
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        (self.state == State::Open)
            .then(|| WsMsg::Text(codec::encode(b"pusher:ping", None, Data::Raw(b"{}"))))
    }

    fn on_peer_silent(&mut self, out: &mut ClientOut) {
        self.fail(
            ErrorInfo::new(
                ErrorKind::Unavailable,
                "Pusher server stopped answering pings",
            ),
            out,
        );
    }

    fn expire(&mut self, now: Instant, out: &mut ClientOut) {
        let late: Vec<Bytes> = self
            .channels
            .iter()
            .filter(|(_, ch)| !ch.confirmed && ch.deadline.is_some_and(|d| d <= now))
            .map(|(name, _)| name.clone())
            .collect();
        let reason = ErrorInfo::new(
            ErrorKind::Timeout,
            "the Pusher server neither confirmed nor refused the subscription",
        );
        for channel in late {
            // Should the server confirm it after all, it is not left subscribed.
            Self::send_unsubscribe(&channel, out);
            self.fail_channel(&channel, &reason, out);
        }
    }

    fn on_closed(&mut self, reason: ErrorInfo, out: &mut ClientOut) {
        let open = self.state != State::Closed;
        self.state = State::Closed;
        self.fail_all(&reason, out);
        // A Pusher close code (4000–4399) says how to reconnect: keep it for a Pusher client
        // downstream, with the kind it means.
        if let Some(code) = reason.code.filter(|c| open && (4000..4400).contains(c)) {
            let mut e = ErrorInfo::new(error_kind(Some(code)), reason.message);
            e.code = Some(code);
            out.events.push(BackendEvent::Error(e));
        }
    }

    fn on_authorized(
        &mut self,
        id: u64,
        result: Result<Bytes, ErrorInfo>,
        _now: Instant,
        out: &mut ClientOut,
    ) {
        if self.state == State::Open {
            self.authorized(id, result, out);
        }
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        let mut copied = std::mem::take(&mut self.copied);
        copied.add(self.held.take_copied());
        copied
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
