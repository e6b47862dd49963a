//! The SocketCluster server role: the proxy plays a SocketCluster server (protocol v1 or v2,
//! as the route says) for socketcluster-client.
//!
//! Owns: `#handshake` (answered once the upstream is ready, with the socket id, the ping
//! timeout and whether the token was taken), pings on the interval and the 4001 close of a
//! client that stops answering, emits with a `cid` answered by `rid` with `data` or `error`,
//! `#subscribe`/`#unsubscribe`/`#publish` with their confirmations, `#authenticate` and the
//! backend's `#setAuthToken`/`#removeAuthToken`, `#kickOut`, batches, the backend's own
//! emits (answered by the client when the backend asked), and the close codes clients act
//! on (4001, 4005, 4008, 4009, v1's `#disconnect`).
//!
//! Must not touch: I/O, time (it comes in), other dialects, configuration files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{self, Decoded, Packet, Version};
use crate::dialect::pending::{Pending, deadline};
use crate::dialect::{Close, Handshake, Keepalive, Refusal, ServerOut, ServerRole, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, PayloadKind, Reply,
    ReplyId, SubId, SubParams,
};

/// Settings of the SocketCluster server role, from `[route.socketcluster]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The protocol clients speak (not negotiated).
    pub version: Version,
    /// A ping every this long.
    pub ping_interval: Duration,
    /// A client silent this long is closed with 4001; also told in the handshake.
    pub ping_timeout: Duration,
    /// `#handshake` must arrive within this (else 4005).
    pub handshake_timeout: Duration,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most calls (`cid`s) waiting for their answer at once, each way.
    pub max_pending: usize,
    /// The backend's emits that want an answer wait this long for the client's (then the
    /// backend hears a failure): socketcluster-client's own `ackTimeout`.
    pub call_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            version: Version::V1,
            ping_interval: Duration::from_millis(8000),
            ping_timeout: Duration::from_millis(20_000),
            handshake_timeout: Duration::from_secs(10),
            max_subscriptions: 1000,
            max_pending: 1024,
            call_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHandshake,
    /// `Connect` went upstream; the handshake's answer waits for `Ready`.
    Connecting,
    Open,
    Closed,
}

/// The SocketCluster server role of one connection.
#[derive(Debug)]
pub struct ScServer {
    settings: Settings,
    id: String,
    upgrade_token: Option<Bytes>,
    state: State,
    handshake_cid: Option<u64>,
    authenticated: bool,
    subs: HashMap<SubId, Bytes>,
    by_channel: HashMap<Bytes, SubId>,
    next_sub: SubId,
    /// Publish reply ids → the client's cid.
    replies: HashMap<ReplyId, u64>,
    /// Subscriptions → the client's cid, until confirmed.
    sub_cids: HashMap<SubId, u64>,
    next_reply: ReplyId,
    /// Our cids on the backend's emits → the backend's ack token, until the client answers
    /// or the call times out.
    backend_calls: Pending<u64, Bytes>,
    next_cid: u64,
    /// The cid of an `#authenticate` in flight.
    reauth_cid: Option<u64>,
    started: Instant,
    copied: crate::dialect::Copied,
}

impl ScServer {
    /// The role of a connection whose upgrade was `hs`; `id` is the socket id the route
    /// issued; `started` starts the handshake deadline.
    pub fn new(settings: Settings, hs: &Handshake, id: String, started: Instant) -> Self {
        let max_pending = settings.max_pending;
        Self {
            settings,
            id,
            upgrade_token: hs.bearer(),
            state: State::AwaitHandshake,
            handshake_cid: None,
            authenticated: false,
            subs: HashMap::new(),
            by_channel: HashMap::new(),
            next_sub: 1,
            replies: HashMap::new(),
            sub_cids: HashMap::new(),
            next_reply: 1,
            backend_calls: Pending::new(max_pending),
            next_cid: 1,
            reauth_cid: None,
            started,
            copied: crate::dialect::Copied::default(),
        }
    }

    fn text(out: &mut ServerOut, b: Bytes) {
        out.to_client.push(WsMsg::Text(b));
    }

    fn error_reply(out: &mut ServerOut, cid: Option<u64>, name: &str, message: &str) {
        if let Some(cid) = cid {
            let e = codec::error_object(name, message.as_bytes());
            Self::text(out, codec::reply_error(cid, &e));
        }
    }

    /// Close with `code`; v1 clients first hear `#disconnect` with the same values.
    fn close(&mut self, code: u16, reason: &str, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        if self.settings.version == Version::V1 {
            let data = format!(
                r#"{{"code":{code},"data":{}}}"#,
                String::from_utf8_lossy(&crate::dialect::json::json_string(reason.as_bytes()))
            );
            Self::text(
                out,
                codec::event(b"#disconnect", Some(data.as_bytes()), None),
            );
        }
        let disconnect = matches!(self.state, State::Connecting | State::Open);
        self.state = State::Closed;
        if disconnect {
            out.ops.push(ClientOp::Disconnect);
        }
        out.close = Some(Close::new(
            code,
            reason.chars().take(100).collect::<String>(),
        ));
    }

    fn pending(&self) -> usize {
        self.replies.len() + self.sub_cids.len()
    }

    fn on_packet(&mut self, p: Packet, out: &mut ServerOut) {
        if let Some(rid) = p.rid {
            return self.on_answer(rid, p, out);
        }
        let Some(event) = p.event.clone() else {
            return Self::error_reply(out, p.cid, "InvalidMessageError", "no event");
        };
        if self.state == State::AwaitHandshake {
            if &event[..] == b"#handshake" {
                return self.on_handshake(p, out);
            }
            return self.close(4009, "message before the handshake", out);
        }
        if &event[..] == b"#handshake" {
            return Self::error_reply(out, p.cid, "InvalidActionError", "already handshaken");
        }
        if p.cid.is_some() && self.pending() >= self.settings.max_pending {
            return Self::error_reply(
                out,
                p.cid,
                "BadConnectionError",
                "too many calls waiting for an answer",
            );
        }
        match &event[..] {
            b"#subscribe" => self.on_subscribe(p, out),
            b"#unsubscribe" => self.on_unsubscribe(p, out),
            b"#publish" => self.on_publish(p, out),
            b"#authenticate" => self.on_authenticate(p, out),
            // Client-side notices: nothing to do.
            b"#removeAuthToken" | b"#disconnect" => {}
            e if e.starts_with(b"#") => {
                let name = String::from_utf8_lossy(e);
                Self::error_reply(
                    out,
                    p.cid,
                    "InvalidActionError",
                    &format!("{name} is a reserved event"),
                );
            }
            _ => self.on_emit(event, p, out),
        }
    }

    fn on_handshake(&mut self, p: Packet, out: &mut ServerOut) {
        #[derive(serde::Deserialize)]
        struct Hs {
            #[serde(default, rename = "authToken")]
            auth_token: Option<String>,
        }
        let token = p
            .data
            .as_ref()
            .and_then(|d| serde_json::from_slice::<Hs>(d).ok())
            .and_then(|h| h.auth_token)
            .map(Bytes::from)
            .or_else(|| self.upgrade_token.clone());
        self.authenticated = token.is_some();
        self.handshake_cid = p.cid;
        self.state = State::Connecting;
        out.ops.push(ClientOp::Connect {
            credentials: Credentials {
                token,
                ..Default::default()
            },
        });
    }

    fn on_emit(&mut self, event: Bytes, p: Packet, out: &mut ServerOut) {
        let reply = p.cid.map(|cid| {
            let id = self.next_reply;
            self.next_reply += 1;
            self.replies.insert(id, cid);
            // An emit with a callback wants the backend's answer.
            Reply::data(id)
        });
        out.ops.push(ClientOp::Publish {
            channel: event,
            event: None,
            args: Vec::new(),
            payload: payload_of(p.data),
            meta: Vec::new(),
            reply,
            broadcast: false,
            sub: None,
        });
    }

    fn on_publish(&mut self, p: Packet, out: &mut ServerOut) {
        let Some((channel, data)) = p.data.as_ref().and_then(codec::channel_of) else {
            return Self::error_reply(out, p.cid, "InvalidActionError", "#publish needs a channel");
        };
        let reply = p.cid.map(|cid| {
            let id = self.next_reply;
            self.next_reply += 1;
            self.replies.insert(id, cid);
            // A publish is confirmed, not answered.
            Reply::receipt(id)
        });
        out.ops.push(ClientOp::Publish {
            channel,
            event: None,
            args: Vec::new(),
            payload: payload_of(data),
            meta: Vec::new(),
            reply,
            broadcast: true,
            sub: None,
        });
    }

    fn on_subscribe(&mut self, p: Packet, out: &mut ServerOut) {
        let Some((channel, data)) = p.data.as_ref().and_then(codec::channel_of) else {
            return Self::error_reply(
                out,
                p.cid,
                "InvalidActionError",
                "#subscribe needs a channel",
            );
        };
        if self.by_channel.contains_key(&channel) {
            // Already subscribed: confirmed again, as SocketCluster does.
            if let Some(cid) = p.cid {
                Self::text(out, codec::reply(cid, None));
            }
            return;
        }
        if self.subs.len() >= self.settings.max_subscriptions {
            return Self::error_reply(
                out,
                p.cid,
                "InvalidActionError",
                "socket channel limit reached",
            );
        }
        let sub = self.next_sub;
        self.next_sub += 1;
        // Its own copy: kept for the subscription's life, where a slice would keep the whole
        // message it came in (a name, not payload: not a counted copy).
        let channel = Bytes::copy_from_slice(&channel);
        self.subs.insert(sub, channel.clone());
        self.by_channel.insert(channel.clone(), sub);
        if let Some(cid) = p.cid {
            self.sub_cids.insert(sub, cid);
        }
        out.ops.push(ClientOp::Subscribe {
            sub,
            channel,
            params: SubParams {
                data: data.map(Payload::json),
                ..Default::default()
            },
        });
    }

    fn on_unsubscribe(&mut self, p: Packet, out: &mut ServerOut) {
        let Some((channel, _)) = p.data.as_ref().and_then(codec::channel_of) else {
            return Self::error_reply(
                out,
                p.cid,
                "InvalidActionError",
                "#unsubscribe needs a channel",
            );
        };
        if let Some(sub) = self.by_channel.remove(&channel) {
            self.subs.remove(&sub);
            self.sub_cids.remove(&sub);
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
        if let Some(cid) = p.cid {
            Self::text(out, codec::reply(cid, None));
        }
    }

    fn on_authenticate(&mut self, p: Packet, out: &mut ServerOut) {
        let token = p
            .data
            .as_ref()
            .and_then(|d| serde_json::from_slice::<String>(d).ok());
        let Some(token) = token else {
            return Self::error_reply(
                out,
                p.cid,
                "InvalidActionError",
                "#authenticate needs a token",
            );
        };
        self.reauth_cid = p.cid;
        out.ops.push(ClientOp::Reauth {
            credentials: Credentials {
                token: Some(Bytes::from(token)),
                ..Default::default()
            },
        });
    }

    /// The client answers one of the backend's emits.
    fn on_answer(&mut self, rid: u64, p: Packet, out: &mut ServerOut) {
        let Some(token) = self.backend_calls.remove(&rid) else {
            // An answer to `#setAuthToken` (v1) or to nothing: ignored.
            return;
        };
        let (positive, result) = match (p.error, p.data) {
            (Some(e), _) => (false, Some(Payload::json(e))),
            (None, d) => (true, Some(payload_of(d))),
        };
        out.ops.push(ClientOp::Ack {
            token,
            positive,
            result,
        });
    }

    fn on_ready(&mut self, out: &mut ServerOut) {
        if self.state != State::Connecting {
            return;
        }
        self.state = State::Open;
        if let Some(cid) = self.handshake_cid.take() {
            let data = format!(
                r#"{{"id":"{}","pingTimeout":{},"isAuthenticated":{}}}"#,
                self.id,
                self.settings.ping_timeout.as_millis(),
                self.authenticated
            );
            Self::text(out, codec::reply(cid, Some(data.as_bytes())));
        }
    }

    fn on_reply(
        &mut self,
        id: ReplyId,
        result: Result<Option<Payload>, ErrorInfo>,
        out: &mut ServerOut,
    ) {
        let Some(cid) = self.replies.remove(&id) else {
            return;
        };
        let msg = match result {
            Ok(None) => codec::reply(cid, None),
            Ok(Some(p)) => match error_slot(&p) {
                // A Socket.IO-style `{error:{name,message}}` answer is SocketCluster's error.
                Some(e) => codec::reply_error(cid, &e),
                None => {
                    let data = codec::payload_json(&p, &mut self.copied);
                    codec::reply(cid, Some(&data))
                }
            },
            Err(e) => {
                // Between SocketCluster legs the error slot passes as it was.
                let slot = match &e.detail {
                    Some(d) if d.kind == PayloadKind::Json => d.data.clone(),
                    _ => codec::error_object(error_name(&e), &e.message),
                };
                codec::reply_error(cid, &slot)
            }
        };
        Self::text(out, msg);
    }

    fn deliver(
        &mut self,
        sub: Option<SubId>,
        channel: Bytes,
        p: Payload,
        ack: Option<Bytes>,
        now: Instant,
        out: &mut ServerOut,
    ) {
        let nack = |out: &mut ServerOut, token| {
            out.ops.push(ClientOp::Ack {
                token,
                positive: false,
                result: None,
            });
        };
        match sub.map(|s| self.subs.get(&s)) {
            Some(Some(ch)) => {
                let data = codec::payload_json(&p, &mut self.copied);
                Self::text(
                    out,
                    codec::channel_event(b"#publish", ch, Some(&data), None),
                );
            }
            // For a subscription this connection no longer has (kicked out, unsubscribed
            // while it was on its way): nobody to hear it, and never a plain event.
            Some(None) => {
                if let Some(token) = ack {
                    nack(out, token);
                }
            }
            // An emit of the backend's own: the client hears it as an event, and answers it
            // when the backend asked.
            None => {
                if codec::RESERVED.iter().any(|r| r.as_bytes() == &channel[..])
                    || (self.settings.version == Version::V1 && channel.starts_with(b"#"))
                {
                    if let Some(token) = ack {
                        nack(out, token);
                    }
                    return;
                }
                let data = codec::payload_json(&p, &mut self.copied);
                let mut cid = None;
                if let Some(token) = ack {
                    let deadline = deadline(now, self.settings.call_timeout);
                    match self
                        .backend_calls
                        .insert(self.next_cid, token.clone(), deadline)
                    {
                        Ok(()) => {
                            cid = Some(self.next_cid);
                            self.next_cid += 1;
                        }
                        // As many calls wait as the client may have: this one is heard
                        // without a cid, and the backend is told it will get no answer.
                        Err(_) => nack(out, token),
                    }
                }
                Self::text(out, codec::event(&channel, Some(&data), cid));
            }
        }
    }
}

/// A packet's `data` as a payload (`null` when absent).
fn payload_of(data: Option<Bytes>) -> Payload {
    data.map(Payload::json).unwrap_or_else(Payload::null)
}

/// The error slot of an answer shaped `{"error":..}` (the Socket.IO convention: an error
/// object, or whatever value a backend answers there, as the SMS guide's does with a
/// string); `null` is no error.
fn error_slot(p: &Payload) -> Option<Bytes> {
    if p.kind != PayloadKind::Json || !p.data.starts_with(b"{") {
        return None;
    }
    let map: HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(&p.data).ok()?;
    if map.len() != 1 {
        return None;
    }
    let e = map.get("error")?;
    (e.get() != "null").then(|| p.data.slice_ref(e.get().as_bytes()))
}

fn error_name(e: &ErrorInfo) -> &'static str {
    match e.kind {
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::Unauthorized => "AuthError",
        ErrorKind::Untranslatable => "InvalidActionError",
        ErrorKind::Limit => "LimitError",
        ErrorKind::Unavailable => "BadConnectionError",
        ErrorKind::Protocol => "ProtocolError",
    }
}

impl ServerRole for ScServer {
    /// A `#publish` depends on the subscription's channel and the message, an emit on the
    /// message alone; an emit the backend wants answered records a call id and is encoded
    /// per session.
    fn shape(&self, ev: &BackendEvent) -> Option<Vec<u8>> {
        let BackendEvent::Message { sub, ack, .. } = ev else {
            return None;
        };
        if self.state == State::Closed {
            return None;
        }
        match (sub, ack) {
            (Some(s), _) => Some(crate::dialect::shape_key(&[
                b"sc#publish",
                self.subs.get(s)?,
            ])),
            (None, None) => Some(crate::dialect::shape_key(&[b"sc-emit"])),
            (None, Some(_)) => None,
        }
    }

    fn on_client(&mut self, msg: WsMsg, _now: Instant, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        let WsMsg::Text(text) = msg else {
            return self.close(1003, "binary messages are not SocketCluster", out);
        };
        match codec::decode(&text, true) {
            Ok(Decoded::Pong(_)) => {}
            // A client does not ping; an empty message from one is a pong (v2).
            Ok(Decoded::Ping(_)) => {}
            Ok(Decoded::Packet(p)) => self.on_packet(p, out),
            Ok(Decoded::Packets(ps)) => {
                for p in ps {
                    self.on_packet(p, out);
                    if self.state == State::Closed {
                        return;
                    }
                }
            }
            // RFC 6455 §7.4.1: data inconsistent with the message type.
            Err(e) => self.close(1007, &e.to_string(), out),
        }
    }

    fn on_backend(&mut self, ev: BackendEvent, now: Instant, out: &mut ServerOut) {
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
            BackendEvent::Ready { .. } => self.on_ready(out),
            BackendEvent::Subscribed { sub, .. } => {
                if let Some(cid) = self.sub_cids.remove(&sub) {
                    Self::text(out, codec::reply(cid, None));
                }
            }
            BackendEvent::SubscribeFailed { sub, reason } => {
                if let Some(ch) = self.subs.remove(&sub) {
                    self.by_channel.remove(&ch);
                }
                if let Some(cid) = self.sub_cids.remove(&sub) {
                    let e = codec::error_object(error_name(&reason), &reason.message);
                    Self::text(out, codec::reply_error(cid, &e));
                }
            }
            BackendEvent::Unsubscribed { sub, reason } => {
                self.sub_cids.remove(&sub);
                if let Some(ch) = self.subs.remove(&sub) {
                    self.by_channel.remove(&ch);
                    let body = codec::kick_body(&ch, &reason.message);
                    Self::text(out, codec::event(b"#kickOut", Some(&body), None));
                }
            }
            BackendEvent::Message {
                sub,
                channel,
                payload,
                ack,
                ..
            } => self.deliver(sub, channel, payload, ack, now, out),
            BackendEvent::Reply { id, result } => self.on_reply(id, result, out),
            BackendEvent::AuthChanged { token } => {
                self.authenticated = token.is_some();
                if let Some(cid) = self.reauth_cid.take() {
                    let data = format!(
                        r#"{{"isAuthenticated":{},"authError":null}}"#,
                        token.is_some()
                    );
                    Self::text(out, codec::reply(cid, Some(data.as_bytes())));
                }
                match token {
                    Some(t) => {
                        let mut body = b"{\"token\":".to_vec();
                        body.extend_from_slice(&crate::dialect::json::json_string(&t));
                        body.push(b'}');
                        // v1 clients answer it; their `rid` is ignored.
                        let cid = (self.settings.version == Version::V1).then(|| {
                            let c = self.next_cid;
                            self.next_cid += 1;
                            c
                        });
                        Self::text(out, codec::event(b"#setAuthToken", Some(&body), cid));
                    }
                    None => Self::text(out, codec::event(b"#removeAuthToken", None, None)),
                }
            }
            BackendEvent::Refused(e) => {
                // A refused `#authenticate`, if one is waiting; else nobody to tell.
                if let Some(cid) = self.reauth_cid.take() {
                    let obj = codec::error_object("AuthError", &e.message);
                    Self::text(out, codec::reply_error(cid, &obj));
                }
            }
            BackendEvent::Presence { .. }
            | BackendEvent::SubscriptionCount { .. }
            | BackendEvent::Dropped(_) => {}
            BackendEvent::Error(e) => {
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                let code = match (self.state, e.kind) {
                    // Refused credentials at the handshake: the handshake is rejected.
                    (State::Connecting, ErrorKind::Unauthorized) => {
                        if let Some(cid) = self.handshake_cid.take() {
                            let obj = codec::error_object("AuthTokenInvalidError", &e.message);
                            Self::text(out, codec::reply_error(cid, &obj));
                        }
                        4008
                    }
                    _ => 1011,
                };
                self.close(code, &msg, out);
            }
            BackendEvent::Closing { reason, retry } => {
                let msg = String::from_utf8_lossy(&reason.message).into_owned();
                // 4500 and up: SocketCluster clients do not reconnect.
                self.close(if retry { 1011 } else { 4500 }, &msg, out);
            }
        }
    }

    fn on_upstream_lost(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        let code = if self.state == State::Connecting && reason.kind == ErrorKind::Unauthorized {
            4008
        } else {
            // Any code < 4500 but 1000: SocketCluster clients reconnect.
            1011
        };
        let msg = format!(
            "upstream unavailable: {}",
            String::from_utf8_lossy(&reason.message)
        );
        self.close(code, &msg, out);
    }

    fn on_shutdown(&mut self, out: &mut ServerOut) {
        self.close(1001, "server shutting down", out);
    }

    fn on_too_big(&mut self, _reason: ErrorInfo, out: &mut ServerOut) {
        self.close(1009, "message too big", out);
    }

    fn on_refused(&mut self, refusal: Refusal, reason: ErrorInfo, out: &mut ServerOut) {
        // SocketCluster's errors are close codes (v1 clients hear `#disconnect` first): 1013
        // is below 4500, so its clients reconnect later; 1008 is "policy violation".
        let close = refusal.close(&reason);
        self.close(close.code, &close.reason, out);
    }

    fn keepalive(&self) -> Keepalive {
        match self.state {
            State::AwaitHandshake => Keepalive {
                send_every: None,
                expect_within: Some(self.settings.handshake_timeout),
                periodic: false,
            },
            _ => Keepalive {
                send_every: Some(self.settings.ping_interval),
                expect_within: Some(self.settings.ping_timeout),
                periodic: true,
            },
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        matches!(self.state, State::Connecting | State::Open)
            .then(|| WsMsg::Text(Bytes::from_static(self.settings.version.ping())))
    }

    fn on_peer_silent(&mut self, out: &mut ServerOut) {
        match self.state {
            State::AwaitHandshake => self.close(4005, "no #handshake in time", out),
            _ => self.close(4001, "pong timed out", out),
        }
    }

    fn expire(&mut self, now: Instant, out: &mut ServerOut) {
        for (_, token) in self.backend_calls.expire(now) {
            // Unanswered: the backend's callback hears a failure, as from a client that
            // timed out.
            out.ops.push(ClientOp::Ack {
                token,
                positive: false,
                result: None,
            });
        }
        // The handshake deadline counts from the connection, not from the last message.
        if self.state == State::AwaitHandshake
            && now.saturating_duration_since(self.started) >= self.settings.handshake_timeout
        {
            self.close(4005, "no #handshake in time", out);
        }
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        std::mem::take(&mut self.copied)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
