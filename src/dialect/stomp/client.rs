//! The STOMP client role: the proxy plays a STOMP 1.2 client (1.0/1.1 accepted) toward a
//! broker.
//!
//! Owns: CONNECT with the client's credentials as the route says, heart-beat negotiation,
//! subscription ids, receipts correlated to replies and subscriptions (with timeouts),
//! ACK/NACK in client ack mode, and turning broker ERROR frames into neutral errors.
//!
//! Must not touch: I/O, timers, naming (destinations arrive already translated).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::codec::{self, Command, Decoder, Frame, Item, Limits, Version};
use super::payload_kind;
use crate::dialect::hold::{HoldError, HoldQueue};
use crate::dialect::pending::{self, Pending};
use crate::dialect::{ClientOut, ClientRole, Close, Dial, Keepalive, WsMsg, stat};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, PayloadKind, Reply,
    ReplyId, SubId,
};

/// Where a client's bearer token goes in the broker's CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAs {
    /// `passcode:<token>` (with `login` if one is configured).
    Passcode,
    /// `Authorization:Bearer <token>`.
    Authorization,
    /// Not sent.
    None,
}

/// Settings of the STOMP client role, from `[route.upstream]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The CONNECT `host` header.
    pub host: String,
    /// Heart-beat we offer: (send every, expect every) in ms.
    pub heartbeat: (u64, u64),
    /// Where a bearer token goes.
    pub token_as: TokenAs,
    /// Fixed login when the client gave none.
    pub login: Option<String>,
    /// Fixed passcode when the client gave none.
    pub passcode: Option<String>,
    /// `client-individual` subscriptions (messages acked explicitly) instead of `auto`.
    pub client_ack: bool,
    /// Ack each delivered message as soon as it is handed downstream (downstreams that
    /// cannot ack themselves).
    pub ack_on_delivery: bool,
    /// Receipts fail after this long; also bounds the wait for CONNECTED.
    pub receipt_timeout: Duration,
    /// Frame limits.
    pub limits: Limits,
    /// Most operations held while CONNECT is in flight.
    pub max_queued_ops: usize,
    /// Most bytes of operations held while CONNECT is in flight (see [`ClientOp::held_bytes`]): with
    /// the count alone, 1024 frames of the largest size could wait. The session sets it to
    /// its own budget for ops held while dialing, so whatever it hands over fits.
    pub max_queued_bytes: usize,
}

/// The default of [`Settings::max_queued_bytes`]: hundreds of ordinary frames, and the STOMP
/// server role's transaction budget too.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "/".into(),
            heartbeat: (10_000, 10_000),
            token_as: TokenAs::Passcode,
            login: None,
            passcode: None,
            client_ack: false,
            ack_on_delivery: false,
            receipt_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            max_queued_ops: 1024,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Closed,
}

/// Most receipts awaited at once. Far above what a downstream leg has in flight (the server
/// roles cap their own receipts and acks in the low thousands); a SEND or SUBSCRIBE past it
/// is refused rather than sent without a receipt nobody could answer.
const MAX_PENDING_RECEIPTS: usize = 65_536;

/// What a receipt we asked the broker for answers.
#[derive(Debug, Clone, Copy)]
enum ReceiptFor {
    Reply(ReplyId),
    Subscribe(SubId),
}

impl ReceiptFor {
    /// The event telling the downstream leg this request failed.
    fn failed(self, reason: ErrorInfo) -> BackendEvent {
        match self {
            Self::Reply(id) => BackendEvent::Reply {
                id,
                result: Err(reason),
            },
            Self::Subscribe(sub) => BackendEvent::SubscribeFailed { sub, reason },
        }
    }
}

/// The STOMP client role of one session.
#[derive(Debug)]
pub struct StompClient {
    settings: Settings,
    credentials: Credentials,
    state: State,
    version: Version,
    decoder: Decoder,
    keepalive: Keepalive,
    /// Ops held while CONNECT is in flight.
    queued: HoldQueue,
    next_receipt: u64,
    /// Receipt id → what it answers.
    pending: Pending<Bytes, ReceiptFor>,
    copied: u64,
}

impl StompClient {
    /// A client role that will CONNECT with `credentials`.
    pub fn new(settings: Settings, credentials: Credentials) -> Self {
        Self {
            decoder: Decoder::new(settings.limits.clone()).pausing_after_handshake(),
            queued: HoldQueue::new(settings.max_queued_ops, settings.max_queued_bytes),
            settings,
            credentials,
            state: State::Connecting,
            version: Version::V1_2,
            keepalive: Keepalive::default(),
            next_receipt: 1,
            pending: Pending::new(MAX_PENDING_RECEIPTS),
            copied: 0,
        }
    }

    fn send(&self, f: &Frame, out: &mut ClientOut) {
        let bytes = codec::encode_to_bytes(f, self.version);
        if std::str::from_utf8(&f.body).is_ok() {
            out.to_backend.push(WsMsg::Text(bytes));
        } else {
            out.to_backend.push(WsMsg::Binary(bytes));
        }
    }

    /// A fresh receipt id awaited for `p`, or why none can be awaited.
    fn receipt_id(&mut self, p: ReceiptFor, now: Instant) -> Result<Bytes, ErrorInfo> {
        let id = Bytes::from(format!("sb-{}", self.next_receipt));
        let deadline = pending::deadline(now, self.settings.receipt_timeout);
        self.pending
            .insert(id.clone(), p, deadline)
            .map_err(|e| ErrorInfo::new(ErrorKind::Limit, e.to_string()))?;
        self.next_receipt += 1;
        Ok(id)
    }

    fn fail(&mut self, e: ErrorInfo, out: &mut ClientOut) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.fail_pending(&e, out);
        out.events.push(BackendEvent::Error(e));
        out.close = Some(Close::normal());
    }

    fn fail_pending(&mut self, e: &ErrorInfo, out: &mut ClientOut) {
        let mut all = self.pending.drain();
        // Receipt-id byte order (`sb-10` before `sb-2`), as before the table was a `Pending`;
        // its own order is insertion order.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, p) in all {
            out.events.push(p.failed(e.clone()));
        }
        for op in self.queued.drain() {
            if let ClientOp::Publish {
                reply: Some(Reply { id, .. }),
                ..
            } = op
            {
                out.events.push(BackendEvent::Reply {
                    id,
                    result: Err(e.clone()),
                });
            }
        }
    }

    fn connect_frame(&self) -> Frame {
        let (cx, cy) = self.settings.heartbeat;
        let mut f = Frame::new(Command::Connect)
            .with_header("accept-version", "1.0,1.1,1.2")
            .with_header("host", self.settings.host.clone())
            .with_header("heart-beat", format!("{cx},{cy}"));
        let c = &self.credentials;
        let s = &self.settings;
        let mut login = c.login.clone().or_else(|| s.login.clone().map(Bytes::from));
        let mut passcode = if c.login.is_some() {
            c.passcode.clone()
        } else {
            None
        };
        if passcode.is_none() {
            match (&c.token, s.token_as) {
                (Some(t), TokenAs::Passcode) if s.passcode.is_none() || c.login.is_some() => {
                    passcode = Some(t.clone());
                }
                (Some(t), TokenAs::Authorization) => {
                    let mut v = BytesMut::with_capacity(t.len() + 7);
                    v.extend_from_slice(b"Bearer ");
                    v.extend_from_slice(t);
                    f.push_header("Authorization", v.freeze());
                }
                _ => {}
            }
        }
        if passcode.is_none() {
            passcode = s.passcode.clone().map(Bytes::from);
        }
        if login.is_none() && passcode.is_some() {
            login = Some(Bytes::new());
        }
        if let Some(l) = login {
            f.push_header("login", l);
        }
        if let Some(p) = passcode {
            f.push_header("passcode", p);
        }
        f
    }

    fn on_frame(&mut self, f: Frame, now: Instant, out: &mut ClientOut) {
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
                let kind = payload_kind(f.header_str("content-type"), &f.body);
                if self.settings.ack_on_delivery
                    && let Some(t) = &ack_token
                {
                    self.send_ack(t.clone(), true, out);
                }
                out.events.push(BackendEvent::Message {
                    meta: super::meta_of(&f, kind),
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

    /// What identifies a MESSAGE in ACK/NACK: 1.2 names its `ack` header; 1.1 needs the
    /// `subscription` and `message-id` together (carried as `subscription\nmessage-id`,
    /// since neither may hold a raw line feed); 1.0 the `message-id` alone.
    fn ack_token(&self, f: &Frame) -> Option<Bytes> {
        match self.version {
            Version::V1_2 => f.header("ack").or_else(|| f.header("message-id")).cloned(),
            Version::V1_1 => {
                let sub = f.header("subscription")?;
                let id = f.header("message-id")?;
                let mut t = Vec::with_capacity(sub.len() + 1 + id.len());
                t.extend_from_slice(sub);
                t.push(b'\n');
                t.extend_from_slice(id);
                Some(Bytes::from(t))
            }
            Version::V1_0 => f.header("message-id").cloned(),
        }
    }

    fn send_ack(&mut self, token: Bytes, positive: bool, out: &mut ClientOut) {
        let command = if positive {
            Command::Ack
        } else {
            Command::Nack
        };
        let f = match self.version {
            Version::V1_2 => Frame::new(command).with_header("id", token),
            Version::V1_1 => {
                let Some(nl) = token.iter().position(|&b| b == b'\n') else {
                    return;
                };
                Frame::new(command)
                    .with_header("subscription", token.slice(..nl))
                    .with_header("message-id", token.slice(nl + 1..))
            }
            // 1.0 has no NACK: the broker redelivers what stays unacknowledged.
            Version::V1_0 if !positive => return,
            Version::V1_0 => Frame::new(command).with_header("message-id", token),
        };
        self.send(&f, out);
    }
}

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
            } => {
                let (body, kind) = if args.is_empty() {
                    (payload.data, payload.kind)
                } else {
                    let arr = crate::dialect::json::pack(&args, &payload);
                    self.copied += arr.len() as u64;
                    (arr, PayloadKind::Json)
                };
                let mut f = Frame::new(Command::Send).with_header("destination", channel);
                super::push_content_type(&mut f, kind, &meta);
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
                f.headers.extend(meta);
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
            let mut items = Vec::new();
            let res = self.decoder.decode(bytes, &mut items);
            self.copied += self.decoder.take_copied_bytes();
            for item in items {
                if let Item::Frame(f) = item {
                    self.on_frame(f, now, out);
                }
                if self.state == State::Closed {
                    return;
                }
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

    fn take_copied(&mut self) -> u64 {
        std::mem::take(&mut self.copied)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn s(m: &WsMsg) -> String {
        String::from_utf8(m.bytes().to_vec()).unwrap()
    }
    fn txt(s: &str) -> WsMsg {
        WsMsg::Text(Bytes::from(s.to_owned()))
    }

    fn connected(settings: Settings, creds: Credentials) -> (StompClient, String) {
        let mut c = StompClient::new(settings, creds);
        let mut out = ClientOut::default();
        c.start(Instant::now(), &mut out);
        let connect = s(&out.to_backend[0]);
        let mut out = ClientOut::default();
        c.on_backend(txt("CONNECTED\nversion:1.2\nheart-beat:4000,4000\nsession:b-1\nserver:RabbitMQ/3.10.8\n\n\0"), Instant::now(), &mut out);
        assert_eq!(
            out.events,
            vec![BackendEvent::Ready {
                session: Some(Bytes::from("b-1"))
            }]
        );
        (c, connect)
    }

    #[test]
    fn connect_carries_token_as_passcode_or_authorization() {
        let creds = Credentials {
            token: Some(Bytes::from("tok")),
            ..Default::default()
        };
        let (_, f) = connected(
            Settings {
                login: Some("svc".into()),
                ..Default::default()
            },
            creds.clone(),
        );
        assert_eq!(
            f,
            "CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nheart-beat:10000,10000\nlogin:svc\npasscode:tok\n\n\0"
        );
        let (_, f) = connected(
            Settings {
                token_as: TokenAs::Authorization,
                login: Some("guest".into()),
                passcode: Some("guest".into()),
                ..Default::default()
            },
            creds,
        );
        assert_eq!(
            f,
            "CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nheart-beat:10000,10000\nAuthorization:Bearer tok\nlogin:guest\npasscode:guest\n\n\0"
        );
        let creds = Credentials {
            login: Some(Bytes::from("ann")),
            passcode: Some(Bytes::from("pw")),
            ..Default::default()
        };
        let (_, f) = connected(Settings::default(), creds);
        assert!(f.contains("login:ann\npasscode:pw\n"));
    }

    #[test]
    fn heartbeat_negotiated_from_connected() {
        let (c, _) = connected(Settings::default(), Credentials::default());
        assert_eq!(
            c.keepalive().send_every,
            Some(Duration::from_millis(10_000))
        );
        assert_eq!(
            c.keepalive().expect_within,
            Some(Duration::from_millis(20_000))
        );
    }

    #[test]
    fn subscribe_confirmed_by_receipt_and_message_delivered() {
        let (mut c, _) = connected(Settings::default(), Credentials::default());
        let now = Instant::now();
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Subscribe {
                sub: 3,
                channel: Bytes::from("/topic/a"),
                params: Default::default(),
            },
            now,
            &mut out,
        );
        assert_eq!(
            s(&out.to_backend[0]),
            "SUBSCRIBE\nid:sub-3\ndestination:/topic/a\nack:auto\nreceipt:sb-1\n\n\0"
        );
        let mut out = ClientOut::default();
        c.on_backend(txt("RECEIPT\nreceipt-id:sb-1\n\n\0MESSAGE\nsubscription:sub-3\nmessage-id:m1\ndestination:/topic/a\ncontent-type:application/json\ncontent-length:7\n\n{\"a\":1}\0"), now, &mut out);
        assert_eq!(
            out.events[0],
            BackendEvent::Subscribed { sub: 3, data: None }
        );
        assert!(
            matches!(&out.events[1], BackendEvent::Message { sub: Some(3), payload, .. } if payload.data == "{\"a\":1}" && payload.kind == PayloadKind::Json)
        );
    }

    #[test]
    fn publish_receipt_and_error_correlate() {
        let (mut c, _) = connected(Settings::default(), Credentials::default());
        let now = Instant::now();
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Publish {
                meta: Vec::new(),
                channel: Bytes::from("/topic/t"),
                event: Some(Bytes::from("typing")),
                args: vec![],
                payload: Payload::json(Bytes::from("{}")),
                reply: Some(Reply::receipt(9)),
            },
            now,
            &mut out,
        );
        assert_eq!(
            s(&out.to_backend[0]),
            "SEND\ndestination:/topic/t\ncontent-type:application/json\ncontent-length:2\nevent:typing\nreceipt:sb-1\n\n{}\0"
        );
        let mut out = ClientOut::default();
        c.on_backend(txt("RECEIPT\nreceipt-id:sb-1\n\n\0"), now, &mut out);
        assert_eq!(
            out.events,
            vec![BackendEvent::Reply {
                id: 9,
                result: Ok(None)
            }]
        );
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Publish {
                meta: Vec::new(),
                channel: Bytes::from("/queue/x"),
                event: None,
                args: vec![],
                payload: Payload::null(),
                reply: Some(Reply::receipt(10)),
            },
            now,
            &mut out,
        );
        let mut out = ClientOut::default();
        c.on_backend(
            txt("ERROR\nmessage:access refused\nreceipt-id:sb-2\n\nno\0"),
            now,
            &mut out,
        );
        assert!(
            matches!(&out.events[0], BackendEvent::Reply { id: 10, result: Err(e) } if e.message == "access refused")
        );
        assert!(matches!(&out.events[1], BackendEvent::Error(e) if e.kind == ErrorKind::Protocol));
        assert!(out.close.is_some());
    }

    #[test]
    fn error_before_connected_is_unauthorized() {
        let mut c = StompClient::new(Settings::default(), Credentials::default());
        let mut out = ClientOut::default();
        c.start(Instant::now(), &mut out);
        let mut out = ClientOut::default();
        c.on_backend(
            txt("ERROR\nmessage:Bad CONNECT\n\nAccess refused for user 'x'\0"),
            Instant::now(),
            &mut out,
        );
        assert!(
            matches!(&out.events[0], BackendEvent::Error(e) if e.kind == ErrorKind::Unauthorized && e.message == "Bad CONNECT")
        );
    }

    #[test]
    fn ops_before_connected_are_queued_and_receipts_expire() {
        let mut c = StompClient::new(
            Settings {
                receipt_timeout: Duration::from_millis(10),
                ..Default::default()
            },
            Credentials::default(),
        );
        let now = Instant::now();
        let mut out = ClientOut::default();
        c.start(now, &mut out);
        c.on_op(
            ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/topic/a"),
                params: Default::default(),
            },
            now,
            &mut out,
        );
        assert_eq!(out.to_backend.len(), 1);
        let mut out = ClientOut::default();
        c.on_backend(txt("CONNECTED\nversion:1.2\n\n\0"), now, &mut out);
        assert!(s(&out.to_backend[0]).starts_with("SUBSCRIBE\nid:sub-1\n"));
        let mut out = ClientOut::default();
        c.expire(now + Duration::from_millis(20), &mut out);
        assert!(
            matches!(&out.events[0], BackendEvent::SubscribeFailed { sub: 1, reason } if reason.kind == ErrorKind::Timeout)
        );
    }

    fn publish(body: &str, reply: Option<ReplyId>) -> ClientOp {
        ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from("/queue/q"),
            event: None,
            args: vec![],
            payload: Payload::text(Bytes::from(body.to_owned())),
            reply: reply.map(Reply::receipt),
        }
    }

    #[test]
    fn ops_before_connected_are_held_within_a_byte_budget() {
        // Each op holds 8 bytes of channel plus its body.
        let settings = Settings {
            max_queued_bytes: 100,
            ..Default::default()
        };
        let now = Instant::now();
        // Exactly the budget is held, and all of it goes out once CONNECTED arrives.
        let mut c = StompClient::new(settings.clone(), Credentials::default());
        let mut out = ClientOut::default();
        c.start(now, &mut out);
        c.on_op(publish(&"a".repeat(42), None), now, &mut out);
        c.on_op(publish(&"b".repeat(42), Some(1)), now, &mut out);
        assert!(out.events.is_empty() && out.close.is_none(), "{out:?}");
        assert_eq!(
            out.to_backend.len(),
            1,
            "only CONNECT is sent before CONNECTED"
        );
        let mut out = ClientOut::default();
        c.on_backend(txt("CONNECTED\nversion:1.2\n\n\0"), now, &mut out);
        assert_eq!(out.to_backend.len(), 2);
        assert!(s(&out.to_backend[1]).ends_with(&format!("\n\n{}\0", "b".repeat(42))));
        let mut out = ClientOut::default();
        c.on_op(publish(&"c".repeat(500), None), now, &mut out);
        assert_eq!(out.to_backend.len(), 1, "a connected leg holds nothing");

        // One byte over fails the leg like the count limit: kind Limit, queued replies failed.
        let mut c = StompClient::new(settings, Credentials::default());
        let mut out = ClientOut::default();
        c.start(now, &mut out);
        c.on_op(publish(&"a".repeat(42), Some(7)), now, &mut out);
        c.on_op(publish(&"b".repeat(43), None), now, &mut out);
        assert!(
            matches!(&out.events[..], [
                BackendEvent::Reply { id: 7, result: Err(r) },
                BackendEvent::Error(e),
            ] if r.kind == ErrorKind::Limit && e.kind == ErrorKind::Limit
                && e.message == "too many bytes before the broker was ready"),
            "{out:?}"
        );
        assert!(out.close.is_some());
    }

    #[test]
    fn a_full_receipt_table_refuses_the_op_instead_of_sending_it() {
        let (mut c, _) = connected(Settings::default(), Credentials::default());
        c.pending = Pending::new(1);
        let now = Instant::now();
        let mut out = ClientOut::default();
        c.on_op(publish("a", Some(1)), now, &mut out);
        c.on_op(publish("b", Some(2)), now, &mut out);
        c.on_op(
            ClientOp::Subscribe {
                sub: 3,
                channel: Bytes::from("/topic/a"),
                params: Default::default(),
            },
            now,
            &mut out,
        );
        assert_eq!(out.to_backend.len(), 1, "{out:?}");
        assert!(s(&out.to_backend[0]).contains("\nreceipt:sb-1\n"));
        assert!(
            matches!(&out.events[..], [
                BackendEvent::Reply { id: 2, result: Err(e) },
                BackendEvent::SubscribeFailed { sub: 3, reason: r },
            ] if e.kind == ErrorKind::Limit && r.kind == ErrorKind::Limit),
            "{out:?}"
        );
        assert!(out.close.is_none(), "the leg goes on");
        let mut out = ClientOut::default();
        c.on_backend(txt("RECEIPT\nreceipt-id:sb-1\n\n\0"), now, &mut out);
        assert_eq!(
            out.events,
            vec![BackendEvent::Reply {
                id: 1,
                result: Ok(None)
            }]
        );
    }

    #[test]
    fn client_ack_mode_acks_on_delivery_or_forwards_token() {
        let settings = Settings {
            client_ack: true,
            ack_on_delivery: true,
            ..Default::default()
        };
        let (mut c, _) = connected(settings, Credentials::default());
        let mut out = ClientOut::default();
        c.on_backend(
            txt(
                "MESSAGE\nsubscription:sub-1\nmessage-id:m1\ndestination:/topic/a\nack:a-1\n\nhi\0",
            ),
            Instant::now(),
            &mut out,
        );
        assert_eq!(s(&out.to_backend[0]), "ACK\nid:a-1\n\n\0");
        let settings = Settings {
            client_ack: true,
            ..Default::default()
        };
        let (mut c, _) = connected(settings, Credentials::default());
        let mut out = ClientOut::default();
        c.on_backend(
            txt(
                "MESSAGE\nsubscription:sub-1\nmessage-id:m1\ndestination:/topic/a\nack:a-1\n\nhi\0",
            ),
            Instant::now(),
            &mut out,
        );
        assert!(out.to_backend.is_empty());
        assert!(matches!(&out.events[0], BackendEvent::Message { ack: Some(t), .. } if t == "a-1"));
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Ack {
                token: Bytes::from("a-1"),
                positive: false,
                result: None,
            },
            Instant::now(),
            &mut out,
        );
        assert_eq!(s(&out.to_backend[0]), "NACK\nid:a-1\n\n\0");
    }

    fn connected_as(version: &str) -> StompClient {
        let settings = Settings {
            client_ack: true,
            ..Default::default()
        };
        let mut c = StompClient::new(settings, Credentials::default());
        let mut out = ClientOut::default();
        c.start(Instant::now(), &mut out);
        let mut out = ClientOut::default();
        c.on_backend(
            txt(&format!("CONNECTED\n{version}\n\0")),
            Instant::now(),
            &mut out,
        );
        assert!(
            matches!(out.events[0], BackendEvent::Ready { .. }),
            "{out:?}"
        );
        c
    }

    fn ack_frames(c: &mut StompClient, message: &str) -> Vec<String> {
        let mut out = ClientOut::default();
        c.on_backend(txt(message), Instant::now(), &mut out);
        let Some(BackendEvent::Message {
            ack: Some(token), ..
        }) = out.events.pop()
        else {
            panic!("{out:?}")
        };
        let mut frames = Vec::new();
        for positive in [true, false] {
            let mut out = ClientOut::default();
            c.on_op(
                ClientOp::Ack {
                    token: token.clone(),
                    positive,
                    result: None,
                },
                Instant::now(),
                &mut out,
            );
            frames.extend(out.to_backend.iter().map(s));
        }
        frames
    }

    #[test]
    fn acks_follow_the_brokers_version() {
        let m = "MESSAGE\nsubscription:sub-4\nmessage-id:m-7\ndestination:/topic/a\n\nhi\0";
        let mut c = connected_as("version:1.1\n");
        assert_eq!(
            ack_frames(&mut c, m),
            [
                "ACK\nsubscription:sub-4\nmessage-id:m-7\n\n\0",
                "NACK\nsubscription:sub-4\nmessage-id:m-7\n\n\0"
            ]
        );
        // 1.0 (no `version` header) has no NACK.
        let mut c = connected_as("");
        assert_eq!(ack_frames(&mut c, m), ["ACK\nmessage-id:m-7\n\n\0"]);
    }

    #[test]
    fn an_unknown_broker_version_fails_the_leg() {
        let mut c = StompClient::new(Settings::default(), Credentials::default());
        let mut out = ClientOut::default();
        c.start(Instant::now(), &mut out);
        let mut out = ClientOut::default();
        c.on_backend(
            txt("CONNECTED\nversion:3.0\n\n\0"),
            Instant::now(),
            &mut out,
        );
        assert!(
            matches!(&out.events[0], BackendEvent::Error(e) if e.kind == ErrorKind::Protocol && e.message.starts_with(b"broker answered with unsupported STOMP version 3.0")),
            "{out:?}"
        );
    }

    #[test]
    fn a_senders_content_type_in_meta_replaces_the_derived_one() {
        let (mut c, _) = connected(Settings::default(), Credentials::default());
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Publish {
                meta: vec![(Bytes::from("content-type"), Bytes::from("text/csv"))],
                channel: Bytes::from("/queue/a"),
                event: None,
                args: vec![],
                payload: Payload::text(Bytes::from("a,b")),
                reply: None,
            },
            Instant::now(),
            &mut out,
        );
        assert_eq!(
            s(&out.to_backend[0]),
            "SEND\ndestination:/queue/a\ncontent-length:3\ncontent-type:text/csv\n\na,b\0"
        );
    }
}
