//! The SocketCluster client role: the proxy plays socketcluster-client toward a
//! SocketCluster server, v1 or v2 (set by the route, or learnt from the first ping).
//!
//! Owns: `#handshake` with the downstream client's token (operations held until it is
//! answered), answering pings in the server's version, RPCs with `cid`/`rid` correlation in
//! one [`Pending`] table with the ack timeout (failed when the leg closes), channel
//! subscribe/publish, the server's own emits (answered by the downstream client when they
//! ask), kick-outs and token changes.
//!
//! Must not touch: I/O, time (it comes in), other dialects, configuration files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{self, Decoded, Packet, Version};
use crate::dialect::hold::{Gate, HoldQueue};
use crate::dialect::pending::{self, Pending};
use crate::dialect::{ClientOut, ClientRole, Close, Dial, Keepalive, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, Reply, ReplyId, SubId,
};

/// Settings of the SocketCluster client role, from `[route.upstream]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server's protocol; `None`: learnt from its first ping.
    pub version: Option<Version>,
    /// Calls fail after this long (SocketCluster's `ackTimeout`).
    pub ack_timeout: Duration,
    /// Wait for the backend's answer on receipt-style confirmations too (`upstream.acks`).
    pub acks: bool,
    /// Most calls waiting at once.
    pub max_pending: usize,
    /// Most operations held until the handshake is answered.
    pub max_queued_ops: usize,
    /// Most bytes of those.
    pub max_queued_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            version: None,
            ack_timeout: Duration::from_secs(10),
            acks: false,
            max_pending: 65_536,
            max_queued_ops: 1024,
            max_queued_bytes: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `#handshake` sent.
    Handshaking,
    Open,
    Closed,
}

/// What a call of ours waits for.
#[derive(Debug, Clone)]
enum Call {
    Handshake,
    Reply(ReplyId),
    Subscribe(Bytes),
    Authenticate(Bytes),
}

/// The SocketCluster client role of one session.
#[derive(Debug)]
pub struct ScClient {
    settings: Settings,
    credentials: Credentials,
    state: State,
    version: Option<Version>,
    ping_timeout: Duration,
    next_cid: u64,
    calls: Pending<u64, Call>,
    held: HoldQueue,
    /// Channel → the downstream subscriptions on it (one wire subscription each channel).
    channels: HashMap<Bytes, Vec<SubId>>,
    by_sub: HashMap<SubId, Bytes>,
    copied: crate::dialect::Copied,
}

impl ScClient {
    /// A client role that will hand `credentials.token` over in `#handshake`.
    pub fn new(settings: Settings, credentials: Credentials) -> Self {
        Self {
            version: settings.version,
            calls: Pending::new(settings.max_pending),
            held: HoldQueue::new(settings.max_queued_ops, settings.max_queued_bytes),
            settings,
            credentials,
            state: State::Handshaking,
            ping_timeout: Duration::from_secs(20),
            next_cid: 1,
            channels: HashMap::new(),
            by_sub: HashMap::new(),
            copied: crate::dialect::Copied::default(),
        }
    }

    fn text(out: &mut ClientOut, b: Bytes) {
        out.to_backend.push(WsMsg::Text(b));
    }

    /// A call with a fresh cid; `None` (and the failure told) when the table is full.
    fn call(&mut self, what: Call, now: Instant, out: &mut ClientOut) -> Option<u64> {
        let cid = self.next_cid;
        let deadline = pending::deadline(now, self.settings.ack_timeout);
        if self.calls.insert(cid, what.clone(), deadline).is_err() {
            let e = ErrorInfo::new(ErrorKind::Limit, "too many calls waiting for an answer");
            Self::fail_call(what, e, out);
            return None;
        }
        self.next_cid += 1;
        Some(cid)
    }

    fn fail_call(what: Call, e: ErrorInfo, out: &mut ClientOut) {
        match what {
            Call::Reply(id) => out.events.push(BackendEvent::Reply { id, result: Err(e) }),
            Call::Authenticate(_) => out.events.push(BackendEvent::Refused(e)),
            Call::Handshake | Call::Subscribe(_) => {}
        }
    }

    fn fail_channel(&mut self, channel: &Bytes, e: &ErrorInfo, out: &mut ClientOut) {
        for sub in self.channels.remove(channel).unwrap_or_default() {
            self.by_sub.remove(&sub);
            out.events.push(BackendEvent::SubscribeFailed {
                sub,
                reason: e.clone(),
            });
        }
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
        for (_, what) in self.calls.drain() {
            match what {
                Call::Subscribe(ch) => self.fail_channel(&ch, e, out),
                w => Self::fail_call(w, e.clone(), out),
            }
        }
        self.held.refuse_all(e, out);
    }

    fn subscribe(
        &mut self,
        sub: SubId,
        channel: Bytes,
        data: Option<Payload>,
        now: Instant,
        out: &mut ClientOut,
    ) {
        self.by_sub.insert(sub, channel.clone());
        let subs = self.channels.entry(channel.clone()).or_default();
        subs.push(sub);
        if subs.len() > 1 {
            // The wire subscription exists (or is on its way): its answer covers this one
            // too, or it already came.
            if !self.calls_for(&channel) {
                out.events
                    .push(BackendEvent::Subscribed { sub, data: None });
            }
            return;
        }
        let Some(cid) = self.call(Call::Subscribe(channel.clone()), now, out) else {
            let e = ErrorInfo::new(ErrorKind::Limit, "too many calls waiting for an answer");
            return self.fail_channel(&channel, &e, out);
        };
        let data = data.map(|d| codec::payload_json(&d, &mut self.copied));
        Self::text(
            out,
            codec::channel_event(b"#subscribe", &channel, data.as_deref(), Some(cid)),
        );
    }

    /// Whether a `#subscribe` for `channel` is still waiting for its answer.
    fn calls_for(&self, channel: &Bytes) -> bool {
        self.calls
            .values()
            .any(|c| matches!(c, Call::Subscribe(ch) if ch == channel))
    }

    fn unsubscribe(&mut self, sub: SubId, out: &mut ClientOut) {
        let Some(channel) = self.by_sub.remove(&sub) else {
            return;
        };
        let empty = self.channels.get_mut(&channel).is_none_or(|subs| {
            subs.retain(|s| *s != sub);
            subs.is_empty()
        });
        if empty {
            self.channels.remove(&channel);
            let name = crate::dialect::json::json_string(&channel);
            Self::text(out, codec::event(b"#unsubscribe", Some(&name), None));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        channel: Bytes,
        payload: Payload,
        reply: Option<Reply>,
        broadcast: bool,
        now: Instant,
        out: &mut ClientOut,
    ) {
        let data = codec::payload_json(&payload, &mut self.copied);
        // A client that expects data (or a route that waits for the backend) gets the
        // answer; a receipt is confirmed once written.
        let wait = reply.filter(|r| r.data || self.settings.acks);
        let cid = match wait {
            Some(r) => match self.call(Call::Reply(r.id), now, out) {
                Some(c) => Some(c),
                None => return,
            },
            None => None,
        };
        let msg = if broadcast {
            codec::channel_event(b"#publish", &channel, Some(&data), cid)
        } else {
            codec::event(&channel, Some(&data), cid)
        };
        Self::text(out, msg);
        if let (Some(r), None) = (reply, wait) {
            out.events.push(BackendEvent::Reply {
                id: r.id,
                result: Ok(None),
            });
        }
    }

    fn on_answer(&mut self, rid: u64, p: Packet, now: Instant, out: &mut ClientOut) {
        let Some(what) = self.calls.remove(&rid) else {
            return;
        };
        match what {
            Call::Handshake => self.on_handshake(p, now, out),
            Call::Reply(id) => {
                let result = match p.error {
                    Some(e) => {
                        let (name, message) = codec::error_fields(&e);
                        let kind = if name == "TimeoutError" {
                            ErrorKind::Timeout
                        } else {
                            ErrorKind::Protocol
                        };
                        let mut info = ErrorInfo::new(kind, message);
                        // The slot as it was, for a SocketCluster client downstream.
                        info.detail = Some(Payload::json(e));
                        Err(info)
                    }
                    None => Ok(p.data.map(Payload::json)),
                };
                out.events.push(BackendEvent::Reply { id, result });
            }
            Call::Subscribe(ch) => match p.error {
                Some(e) => {
                    let (name, message) = codec::error_fields(&e);
                    let kind = if name.contains("Auth") || name.contains("Blocked") {
                        ErrorKind::Unauthorized
                    } else {
                        ErrorKind::Protocol
                    };
                    self.fail_channel(&ch, &ErrorInfo::new(kind, message), out);
                }
                None => {
                    for sub in self.channels.get(&ch).cloned().unwrap_or_default() {
                        out.events
                            .push(BackendEvent::Subscribed { sub, data: None });
                    }
                }
            },
            Call::Authenticate(token) => match p.error {
                Some(e) => {
                    let (_, message) = codec::error_fields(&e);
                    out.events.push(BackendEvent::Refused(ErrorInfo::new(
                        ErrorKind::Unauthorized,
                        message,
                    )));
                }
                None => out
                    .events
                    .push(BackendEvent::AuthChanged { token: Some(token) }),
            },
        }
    }

    fn on_handshake(&mut self, p: Packet, now: Instant, out: &mut ClientOut) {
        #[derive(serde::Deserialize)]
        struct Hs {
            id: String,
            #[serde(default, rename = "pingTimeout")]
            ping_timeout: Option<u64>,
            #[serde(default, rename = "authError")]
            auth_error: Option<serde_json::Value>,
        }
        if let Some(e) = p.error {
            let (_, message) = codec::error_fields(&e);
            return self.fail(ErrorInfo::new(ErrorKind::Unauthorized, message), out);
        }
        let Some(hs) = p
            .data
            .as_ref()
            .and_then(|d| serde_json::from_slice::<Hs>(d).ok())
        else {
            return self.fail(
                ErrorInfo::new(ErrorKind::Protocol, "bad #handshake answer"),
                out,
            );
        };
        if let Some(e) = hs.auth_error.filter(|e| !e.is_null()) {
            // The token was refused: the client's credentials are not good here.
            let message = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("auth token refused")
                .to_owned();
            return self.fail(ErrorInfo::new(ErrorKind::Unauthorized, message), out);
        }
        if let Some(ms) = hs.ping_timeout {
            self.ping_timeout = Duration::from_millis(ms);
        }
        self.state = State::Open;
        out.events.push(BackendEvent::Ready {
            session: Some(Bytes::from(hs.id)),
        });
        let held: Vec<ClientOp> = self.held.drain().collect();
        for op in held {
            self.on_op(op, now, out);
        }
    }

    fn on_packet(&mut self, p: Packet, now: Instant, out: &mut ClientOut) {
        if let Some(rid) = p.rid {
            return self.on_answer(rid, p, now, out);
        }
        let Some(event) = p.event.clone() else { return };
        match &event[..] {
            b"#publish" => {
                let Some((channel, data)) = p.data.as_ref().and_then(codec::channel_of) else {
                    return;
                };
                out.events.push(BackendEvent::Message {
                    sub: None,
                    channel,
                    event: None,
                    args: Vec::new(),
                    payload: data.map(Payload::json).unwrap_or_else(Payload::null),
                    meta: Vec::new(),
                    ack: None,
                });
            }
            b"#kickOut" => {
                let Some((channel, message)) = p.data.as_ref().and_then(codec::channel_of) else {
                    return;
                };
                let message = message
                    .map(|m| codec::error_fields(&m).1)
                    .unwrap_or_else(|| "kicked out".into());
                let reason = ErrorInfo::new(ErrorKind::Unauthorized, message);
                for sub in self.channels.remove(&channel).unwrap_or_default() {
                    self.by_sub.remove(&sub);
                    out.events.push(BackendEvent::Unsubscribed {
                        sub,
                        reason: reason.clone(),
                    });
                }
            }
            b"#setAuthToken" => {
                #[derive(serde::Deserialize)]
                struct T {
                    token: String,
                }
                if let Some(cid) = p.cid {
                    Self::text(out, codec::reply(cid, None));
                }
                if let Some(t) = p
                    .data
                    .as_ref()
                    .and_then(|d| serde_json::from_slice::<T>(d).ok())
                {
                    out.events.push(BackendEvent::AuthChanged {
                        token: Some(Bytes::from(t.token)),
                    });
                }
            }
            b"#removeAuthToken" => {
                if let Some(cid) = p.cid {
                    Self::text(out, codec::reply(cid, None));
                }
                out.events.push(BackendEvent::AuthChanged { token: None });
            }
            b"#disconnect" => {
                #[derive(serde::Deserialize)]
                struct D {
                    #[serde(default)]
                    code: Option<u16>,
                    #[serde(default)]
                    data: Option<serde_json::Value>,
                }
                let d = p
                    .data
                    .as_ref()
                    .and_then(|d| serde_json::from_slice::<D>(d).ok());
                let message = d
                    .as_ref()
                    .and_then(|d| d.data.as_ref())
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_else(|| "disconnected by the server".into());
                let mut e = ErrorInfo::new(ErrorKind::Unavailable, message);
                e.code = d.and_then(|d| d.code);
                self.fail(e, out);
            }
            e if e.starts_with(b"#") => {}
            // The server's own emit: the downstream client hears it, and answers when asked.
            _ => out.events.push(BackendEvent::Message {
                sub: None,
                channel: event,
                event: None,
                args: Vec::new(),
                payload: p.data.map(Payload::json).unwrap_or_else(Payload::null),
                meta: Vec::new(),
                ack: p.cid.map(|c| Bytes::from(c.to_string())),
            }),
        }
    }
}

impl ClientRole for ScClient {
    fn dial(&self) -> Dial {
        Dial::from_credentials(&self.credentials)
    }

    fn start(&mut self, now: Instant, out: &mut ClientOut) {
        let token = self
            .credentials
            .token
            .as_ref()
            .map(|t| crate::dialect::json::json_string(t))
            .unwrap_or_else(|| Bytes::from_static(b"null"));
        let mut data = b"{\"authToken\":".to_vec();
        data.extend_from_slice(&token);
        data.push(b'}');
        if let Some(cid) = self.call(Call::Handshake, now, out) {
            Self::text(out, codec::event(b"#handshake", Some(&data), Some(cid)));
        }
    }

    fn on_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut) {
        // The v9 server drops what comes before its handshake answer: hold it.
        let gate = match self.state {
            State::Closed => Gate::Closed("SocketCluster connection closed"),
            State::Handshaking => Gate::Handshaking,
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
            ClientOp::Reauth { credentials } => {
                let Some(token) = credentials.token else {
                    return out.events.push(BackendEvent::Refused(ErrorInfo::new(
                        ErrorKind::Unauthorized,
                        "re-authentication needs a token",
                    )));
                };
                if let Some(cid) = self.call(Call::Authenticate(token.clone()), now, out) {
                    let t = crate::dialect::json::json_string(&token);
                    Self::text(out, codec::event(b"#authenticate", Some(&t), Some(cid)));
                }
            }
            ClientOp::Subscribe {
                sub,
                channel,
                params,
            } => self.subscribe(sub, channel, params.data, now, out),
            ClientOp::Unsubscribe { sub } => self.unsubscribe(sub, out),
            ClientOp::Publish {
                channel,
                payload,
                reply,
                broadcast,
                ..
            } => self.publish(channel, payload, reply, broadcast, now, out),
            ClientOp::Ack {
                token,
                positive,
                result,
            } => {
                let Some(cid) = std::str::from_utf8(&token)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                else {
                    return;
                };
                let data = result.map(|r| codec::payload_json(&r, &mut self.copied));
                let msg = if positive {
                    codec::reply(cid, data.as_deref())
                } else {
                    let e = data
                        .unwrap_or_else(|| codec::error_object("Error", b"refused by the client"));
                    codec::reply_error(cid, &e)
                };
                Self::text(out, msg);
            }
            ClientOp::Disconnect => {
                self.state = State::Closed;
                out.close = Some(Close::normal());
            }
        }
    }

    fn on_backend(&mut self, msg: WsMsg, now: Instant, out: &mut ClientOut) {
        let WsMsg::Text(text) = msg else {
            return out.events.push(BackendEvent::Dropped(ErrorInfo::new(
                ErrorKind::Untranslatable,
                "binary message from a SocketCluster server",
            )));
        };
        match codec::decode(&text, false) {
            Ok(Decoded::Ping(v)) => {
                // The version the server speaks decides the pong.
                let v = *self.version.get_or_insert(v);
                Self::text(out, Bytes::from_static(v.pong()));
            }
            Ok(Decoded::Pong(_)) => {}
            Ok(Decoded::Packet(p)) => self.on_packet(p, now, out),
            Ok(Decoded::Packets(ps)) => {
                for p in ps {
                    self.on_packet(p, now, out);
                }
            }
            Err(e) => out.events.push(BackendEvent::Dropped(ErrorInfo::new(
                ErrorKind::Protocol,
                e.to_string(),
            ))),
        }
    }

    fn keepalive(&self) -> Keepalive {
        // The server pings; silence past its ping timeout means it is gone.
        Keepalive {
            send_every: None,
            expect_within: Some(self.ping_timeout),
            periodic: false,
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }

    fn on_peer_silent(&mut self, out: &mut ClientOut) {
        let mut e = ErrorInfo::new(ErrorKind::Unavailable, "server ping timed out");
        e.code = Some(4000);
        self.fail(e, out);
    }

    fn expire(&mut self, now: Instant, out: &mut ClientOut) {
        for (_, what) in self.calls.expire(now) {
            let e = ErrorInfo::new(ErrorKind::Timeout, "SocketCluster call timed out");
            match what {
                Call::Handshake => {
                    return self.fail(
                        ErrorInfo::new(ErrorKind::Timeout, "#handshake not answered"),
                        out,
                    );
                }
                Call::Subscribe(ch) => self.fail_channel(&ch, &e, out),
                w => Self::fail_call(w, e, out),
            }
        }
    }

    fn on_closed(&mut self, reason: ErrorInfo, out: &mut ClientOut) {
        self.state = State::Closed;
        self.fail_all(&reason, out);
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
