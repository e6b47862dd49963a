//! The Socket.IO server role: the proxy plays a Socket.IO v4 server (protocol 5 over
//! Engine.IO 4) for downstream clients.
//!
//! Owns: the Engine.IO ping/pong duty and liveness deadlines (the connect timeout, absolute
//! from the session's start, before the first namespace CONNECT), namespace CONNECT/DISCONNECT
//! (the `40{"sid":..}` reply held until the upstream is ready, `44` refusals, and one upstream
//! identity: later namespaces must present the first one's token), the `subscribe`/
//! `unsubscribe` event convention and its subscription table, emit to publish with the ack
//! table, deliveries as events (binary payloads as attachments; reserved event names never
//! reach the client), auto-subscriptions at connect, and the size limits and parse errors
//! that close the connection like the reference server does.
//!
//! Must not touch: I/O, timers, the transport (the engine sends the Engine.IO `open` packet and
//! turns long-polling bodies into one [`WsMsg`] per packet, so this role sees every transport
//! alike), configuration files, other dialects, channel naming (the translator renames).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

use super::engineio::{self, Packet as Eio};
use super::packet::{self, Decoder, Packet, PacketType, SioError};
use crate::dialect::json::is_json;
use crate::dialect::pending::{self, Pending};
use crate::dialect::{Close, Keepalive, ServerOut, ServerRole, WsMsg, stat};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, PayloadKind, Reply,
    ReplyId, SubId,
};
use crate::template::{Captures, Template};

/// The root namespace.
const ROOT: &[u8] = b"/";

/// Settings of the Socket.IO server role, from `[route.socketio]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Engine.IO `pingInterval`: a ping every this long.
    pub ping_interval: Duration,
    /// Engine.IO `pingTimeout`: the client answers within this.
    pub ping_timeout: Duration,
    /// Largest Engine.IO packet accepted from the client, in bytes.
    pub max_payload: usize,
    /// Namespaces clients may join.
    pub namespaces: Vec<String>,
    /// Most binary attachments in one packet.
    pub max_attachments: usize,
    /// The first namespace CONNECT must arrive within this.
    pub connect_timeout: Duration,
    /// Subscriptions made once the upstream is ready, filled from the auth object and query.
    pub auto_subscribe: Vec<Template>,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most emits waiting for their ack at once.
    pub max_pending_acks: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            namespaces: vec!["/".into()],
            max_attachments: 10,
            connect_timeout: Duration::from_millis(45_000),
            auto_subscribe: Vec::new(),
            max_subscriptions: 256,
            max_pending_acks: 1024,
        }
    }
}

/// How long an ack the client owes the backend is remembered.
const BACKEND_ACK_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No namespace CONNECT yet.
    AwaitConnect,
    /// `Connect` sent upstream; CONNECT replies wait for `Ready`.
    Connecting,
    Ready,
    Closed,
}

/// A namespace the client asked to join.
#[derive(Debug)]
struct Nsp {
    name: Bytes,
    /// `40{"sid":..}` was sent.
    joined: bool,
}

#[derive(Debug)]
struct Sub {
    nsp: Bytes,
    topic: Bytes,
    /// The `subscribe` emit's ack id, answered on `Subscribed`/`SubscribeFailed`.
    ack: Option<u64>,
}

/// The Socket.IO server role of one connection.
#[derive(Debug)]
pub struct SocketioServer {
    settings: Settings,
    upgrade_token: Option<Bytes>,
    query: String,
    sid: String,
    state: State,
    decoder: Decoder,
    nsps: Vec<Nsp>,
    /// The namespace whose CONNECT opened the upstream (auto-subscriptions live there).
    primary: Option<Bytes>,
    /// The raw auth object of that CONNECT.
    auth: Option<Bytes>,
    /// The bearer token that CONNECT presented upstream (its `auth.token`, else the upgrade
    /// token). The one upstream identity of the connection: later namespaces must match it.
    token: Option<Bytes>,
    /// Whether `ClientOp::Connect` went upstream (so a close says `Disconnect`).
    connect_sent: bool,
    subs: HashMap<SubId, Sub>,
    next_sub: SubId,
    /// Publish reply id → (namespace, the client's ack id).
    replies: HashMap<ReplyId, (Bytes, u64)>,
    next_reply: ReplyId,
    /// Our ack id on an emit to the client → the backend's ack token, forgotten after
    /// [`BACKEND_ACK_TTL`]. The backend asked for an ack; the client's `43<id>` answers it.
    backend_acks: Pending<u64, Bytes>,
    next_ack: u64,
    last_recv: Option<Instant>,
    /// When the connection is closed unless a namespace CONNECT came: absolute from the
    /// role's creation, so nothing the client sends (pongs included) moves it.
    connect_deadline: Instant,
    copied: u64,
}

impl SocketioServer {
    /// A new connection's server role. `upgrade_token` is the bearer token of the handshake
    /// request (`Authorization` header or `token` query parameter), `query` its raw query
    /// string, `sid` the id given to the client in each namespace CONNECT reply, and
    /// `started` when the Engine.IO session opened (the connect timeout runs from there).
    pub fn new(
        settings: Settings,
        upgrade_token: Option<Bytes>,
        query: String,
        sid: String,
        started: Instant,
    ) -> Self {
        Self {
            connect_deadline: started + settings.connect_timeout,
            decoder: Decoder::new(settings.max_attachments),
            backend_acks: Pending::new(settings.max_pending_acks),
            settings,
            upgrade_token,
            query,
            sid,
            state: State::AwaitConnect,
            nsps: Vec::new(),
            primary: None,
            auth: None,
            token: None,
            connect_sent: false,
            subs: HashMap::new(),
            next_sub: 1,
            replies: HashMap::new(),
            next_reply: 1,
            next_ack: 0,
            last_recv: None,
            copied: 0,
        }
    }

    /// End the connection. `disconnect` also tells the upstream leg the client left.
    fn close(&mut self, code: u16, reason: &str, disconnect: bool, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        if disconnect && self.connect_sent {
            out.ops.push(ClientOp::Disconnect);
        }
        self.state = State::Closed;
        out.close = Some(Close::new(code, reason));
    }

    fn parse_error(&mut self, e: &SioError, out: &mut ServerOut) {
        if matches!(e, SioError::TooManyAttachments { .. }) {
            self.close(1009, "message too big", true, out);
        } else {
            self.close(1002, "parse error", true, out);
        }
    }

    fn nsp_index(&self, nsp: &[u8]) -> Option<usize> {
        self.nsps.iter().position(|n| n.name == nsp)
    }

    fn on_packet(&mut self, p: Packet, out: &mut ServerOut) {
        match p.kind {
            PacketType::Connect => self.on_connect(p, out),
            PacketType::Disconnect => self.on_leave(&p.nsp, out),
            PacketType::Event | PacketType::BinaryEvent => {
                if self.nsp_index(&p.nsp).is_none() {
                    // The reference server closes on a packet for a namespace not joined.
                    return self.close(1002, "invalid state", true, out);
                }
                self.on_event(p, out);
            }
            PacketType::Ack | PacketType::BinaryAck => self.on_client_ack(p, out),
            PacketType::ConnectError => self.close(1002, "invalid state", true, out),
        }
    }

    fn on_connect(&mut self, p: Packet, out: &mut ServerOut) {
        let allowed = self
            .settings
            .namespaces
            .iter()
            .any(|n| n.as_bytes() == p.nsp.as_ref());
        if !allowed {
            let msg = wire(
                PacketType::ConnectError,
                &p.nsp,
                None,
                0,
                &[br#"{"message":"Invalid namespace"}"#],
            );
            out.to_client.push(msg);
            return;
        }
        if let Some(i) = self.nsp_index(&p.nsp) {
            if self.nsps.get(i).is_some_and(|n| n.joined) {
                // A second CONNECT to a joined namespace: the reference server closes.
                self.close(1002, "invalid state", true, out);
            }
            return;
        }
        let token = p
            .data
            .as_ref()
            .and_then(|d| auth_token(d))
            .or_else(|| self.upgrade_token.clone());
        if matches!(self.state, State::Connecting | State::Ready) && token != self.token {
            // One session holds one upstream identity, the first namespace's. The reference
            // server checks auth per namespace; joining with other credentials would borrow
            // that identity, so it is refused like a middleware refusal (the connection and
            // its other namespaces stay).
            let msg = wire(
                PacketType::ConnectError,
                &p.nsp,
                None,
                0,
                &[br#"{"message":"auth differs from the connection's first namespace"}"#],
            );
            out.to_client.push(msg);
            return;
        }
        match self.state {
            State::AwaitConnect => {
                out.ops.push(ClientOp::Connect {
                    credentials: Credentials {
                        token: token.clone(),
                        login: None,
                        passcode: None,
                        auth_json: p.data.clone(),
                        ..Default::default()
                    },
                });
                self.connect_sent = true;
                self.auth = p.data;
                self.token = token;
                self.primary = Some(p.nsp.clone());
                self.state = State::Connecting;
                self.nsps.push(Nsp {
                    name: p.nsp,
                    joined: false,
                });
            }
            State::Connecting => self.nsps.push(Nsp {
                name: p.nsp,
                joined: false,
            }),
            State::Ready => {
                out.to_client.push(self.connect_reply(&p.nsp));
                self.nsps.push(Nsp {
                    name: p.nsp,
                    joined: true,
                });
            }
            State::Closed => {}
        }
    }

    /// `40{"sid":".."}` (never with a `pid`: connection state recovery is off).
    fn connect_reply(&self, nsp: &[u8]) -> WsMsg {
        let sid = packet::json_string(self.sid.as_bytes());
        wire(
            PacketType::Connect,
            nsp,
            None,
            0,
            &[b"{\"sid\":", &sid, b"}"],
        )
    }

    fn on_leave(&mut self, nsp: &Bytes, out: &mut ServerOut) {
        let Some(i) = self.nsp_index(nsp) else {
            return;
        };
        self.nsps.remove(i);
        let mut gone: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.nsp == nsp)
            .map(|(id, _)| *id)
            .collect();
        gone.sort_unstable();
        for sub in gone {
            self.subs.remove(&sub);
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
        self.replies.retain(|_, (n, _)| n != nsp);
        if self.nsps.is_empty() {
            self.close(1000, "client namespace disconnect", true, out);
        }
    }

    fn on_event(&mut self, p: Packet, out: &mut ServerOut) {
        let Some(data) = p.data.as_ref() else {
            return self.close(1002, "parse error", true, out);
        };
        let (name, args) = match packet::split_event(data) {
            Ok(x) => x,
            Err(e) => return self.parse_error(&e, out),
        };
        if is_reserved(name.as_bytes()) {
            // socket.io-parser 4.2 rejects such an EVENT as an invalid payload, and the
            // socket.io 4.8 server closes the whole connection on any decode error.
            return self.close(1002, "parse error", true, out);
        }
        match name.as_str() {
            "subscribe" => self.on_subscribe(&p.nsp, p.id, args.first(), out),
            "unsubscribe" => self.on_unsubscribe(&p.nsp, p.id, args.first(), out),
            _ => self.on_publish(name, args, p, out),
        }
    }

    fn on_subscribe(
        &mut self,
        nsp: &Bytes,
        id: Option<u64>,
        arg: Option<&Bytes>,
        out: &mut ServerOut,
    ) {
        let Some(topic) = arg.and_then(|a| topic_of(a)) else {
            if let Some(id) = id {
                out.to_client.push(named_error_ack(
                    nsp,
                    id,
                    "SubscribeError",
                    br#"subscribe needs a topic: {"topic":"<name>"}"#,
                ));
            }
            return;
        };
        self.subscribe(nsp, topic, id, out);
    }

    fn subscribe(&mut self, nsp: &Bytes, topic: Bytes, id: Option<u64>, out: &mut ServerOut) {
        if is_reserved(&topic) {
            // Its deliveries would be named after the topic, and socket.io-client treats
            // those names as its own lifecycle events (`42["disconnect"]` would fake one).
            if let Some(id) = id {
                let mut msg = b"`".to_vec();
                msg.extend_from_slice(&topic);
                msg.extend_from_slice(b"` is a reserved event name");
                out.to_client
                    .push(named_error_ack(nsp, id, "SubscribeError", &msg));
            }
            return;
        }
        if self.subs.values().any(|s| s.nsp == nsp && s.topic == topic) {
            if let Some(id) = id {
                out.to_client.push(ack(nsp, id, b"[null]"));
            }
            return;
        }
        if self.subs.len() >= self.settings.max_subscriptions {
            if let Some(id) = id {
                out.to_client.push(named_error_ack(
                    nsp,
                    id,
                    "SubscribeError",
                    b"too many subscriptions",
                ));
            }
            return;
        }
        let sub = self.next_sub;
        self.next_sub += 1;
        self.subs.insert(
            sub,
            Sub {
                nsp: nsp.clone(),
                topic: topic.clone(),
                ack: id,
            },
        );
        out.ops.push(ClientOp::Subscribe {
            sub,
            channel: topic,
            params: Default::default(),
        });
    }

    fn on_unsubscribe(
        &mut self,
        nsp: &Bytes,
        id: Option<u64>,
        arg: Option<&Bytes>,
        out: &mut ServerOut,
    ) {
        let Some(topic) = arg.and_then(|a| topic_of(a)) else {
            if let Some(id) = id {
                out.to_client.push(named_error_ack(
                    nsp,
                    id,
                    "SubscribeError",
                    br#"unsubscribe needs a topic: {"topic":"<name>"}"#,
                ));
            }
            return;
        };
        let mut gone: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.nsp == nsp && s.topic == topic)
            .map(|(id, _)| *id)
            .collect();
        gone.sort_unstable();
        for sub in gone {
            self.subs.remove(&sub);
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
        if let Some(id) = id {
            out.to_client.push(ack(nsp, id, b"[null]"));
        }
    }

    fn on_publish(&mut self, name: String, args: Vec<Bytes>, p: Packet, out: &mut ServerOut) {
        let refuse = |this: &Self, e: ErrorInfo, out: &mut ServerOut| {
            if let Some(id) = p.id {
                out.to_client.push(this.error_ack(&p.nsp, id, &e));
            }
        };
        let payload = match args.as_slice() {
            [] => Payload::null(),
            [one] => match packet::placeholder_num(one).and_then(|n| p.attachments.get(n)) {
                Some(bin) if p.attachments.len() == 1 => Payload::binary(bin.clone()),
                _ if !p.attachments.is_empty() => {
                    let e = ErrorInfo::new(
                        ErrorKind::Untranslatable,
                        "binary data must be the event's only argument",
                    );
                    return refuse(self, e, out);
                }
                _ => Payload::json(one.clone()),
            },
            many => {
                if !p.attachments.is_empty() {
                    let e = ErrorInfo::new(
                        ErrorKind::Untranslatable,
                        "binary data must be the event's only argument",
                    );
                    return refuse(self, e, out);
                }
                let parts: Vec<&[u8]> = many.iter().map(|a| a.as_ref()).collect();
                let array = packet::build_array(&parts);
                self.copied += array.len() as u64;
                Payload::json(array)
            }
        };
        let reply = match p.id {
            None => None,
            Some(_) if self.replies.len() >= self.settings.max_pending_acks => {
                let e = ErrorInfo::new(ErrorKind::Limit, "too many emits waiting for an ack");
                return refuse(self, e, out);
            }
            Some(id) => {
                let rid = self.next_reply;
                self.next_reply += 1;
                self.replies.insert(rid, (p.nsp.clone(), id));
                // A Socket.IO ack carries the backend's answer: data, not a receipt.
                Some(Reply::data(rid))
            }
        };
        out.ops.push(ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from(name),
            event: None,
            args: Vec::new(),
            payload,
            reply,
        });
    }

    /// `43N[{"error":{"name":"<kind>","message":".."}}]`.
    fn error_ack(&self, nsp: &[u8], id: u64, e: &ErrorInfo) -> WsMsg {
        named_error_ack(nsp, id, e.kind.label(), &e.message)
    }

    fn on_ready(&mut self, out: &mut ServerOut) {
        if self.state != State::Connecting {
            return;
        }
        self.state = State::Ready;
        let pending: Vec<Bytes> = self
            .nsps
            .iter()
            .filter(|n| !n.joined)
            .map(|n| n.name.clone())
            .collect();
        for nsp in pending {
            out.to_client.push(self.connect_reply(&nsp));
        }
        for n in &mut self.nsps {
            n.joined = true;
        }
        self.auto_subscribe(out);
    }

    fn auto_subscribe(&mut self, out: &mut ServerOut) {
        if self.settings.auto_subscribe.is_empty() {
            return;
        }
        let Some(nsp) = self.primary.clone() else {
            return;
        };
        if self.nsp_index(&nsp).is_none() {
            return;
        }
        let caps = captures(&self.query, self.auth.as_deref());
        let topics: Vec<String> = self
            .settings
            .auto_subscribe
            .iter()
            .filter_map(|t| t.fill(&caps))
            .collect();
        for topic in topics {
            self.subscribe(&nsp, Bytes::from(topic), None, out);
        }
    }

    /// The client is refused by the backend: `44` on every namespace still waiting, then close.
    fn refuse(&mut self, e: &ErrorInfo, out: &mut ServerOut) {
        let message = packet::json_string(&e.message);
        let detail = e
            .detail
            .as_ref()
            .filter(|d| d.kind == PayloadKind::Json && is_json(&d.data));
        let pending: Vec<Bytes> = self
            .nsps
            .iter()
            .filter(|n| !n.joined)
            .map(|n| n.name.clone())
            .collect();
        for nsp in pending {
            let msg = match detail {
                Some(d) => wire(
                    PacketType::ConnectError,
                    &nsp,
                    None,
                    0,
                    &[b"{\"message\":", &message, b",\"data\":", &d.data, b"}"],
                ),
                None => wire(
                    PacketType::ConnectError,
                    &nsp,
                    None,
                    0,
                    &[b"{\"message\":", &message, b"}"],
                ),
            };
            out.to_client.push(msg);
        }
        self.close(1008, "unauthorized", false, out);
    }

    /// A fatal upstream condition: auth refusals before ready get `44`; anything else closes
    /// the transport so the client reconnects (never `41`, which stops reconnection).
    fn upstream_failed(&mut self, e: &ErrorInfo, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        if e.kind == ErrorKind::Unauthorized && self.state == State::Connecting {
            return self.refuse(e, out);
        }
        self.close(1011, "upstream unavailable", false, out);
    }

    /// Emit a backend message: on its subscription's namespace, or, for an event a Socket.IO
    /// backend sent without any subscription, on the namespace that opened the upstream (a
    /// Socket.IO client never subscribes, it just listens) while the client is still in it.
    ///
    /// A message whose event name is reserved is dropped: socket.io-client would take
    /// `42["disconnect",..]` for its own lifecycle event. No counter records it: the role has
    /// no metrics (the dialect layer must not), and the trait has no drop report to carry it.
    ///
    /// When the backend asked for an ack (`ack` is its token), the emit asks the client for
    /// one under our own id; a message not emitted is not acked, as with a client that has no
    /// listener, and the backend's own timeout answers it.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        sub: Option<SubId>,
        channel: Bytes,
        event: Option<Bytes>,
        args: Vec<Bytes>,
        payload: Payload,
        ack: Option<Bytes>,
        now: Instant,
        out: &mut ServerOut,
    ) {
        let nsp = match sub {
            Some(sub) => match self.subs.get(&sub) {
                Some(s) => s.nsp.clone(),
                None => return,
            },
            None => match &self.primary {
                // Left (`41`): that namespace's listeners are gone on the client too.
                Some(p) if self.nsps.iter().any(|n| n.name == p && n.joined) => p.clone(),
                _ => return,
            },
        };
        let name = event.as_ref().unwrap_or(&channel);
        if is_reserved(name) {
            return;
        }
        let name = packet::json_string(name);
        let (last, attachment) = self.payload_arg(payload);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * args.len() + 5);
        parts.push(b"[");
        parts.push(&name);
        for a in &args {
            parts.push(b",");
            parts.push(a);
        }
        parts.push(b",");
        parts.push(&last);
        parts.push(b"]");
        // A full table asks for no ack: the backend's own timeout answers that emit.
        let id = ack.and_then(|token| {
            let id = self.next_ack;
            let deadline = pending::deadline(now, BACKEND_ACK_TTL);
            self.backend_acks.insert(id, token, deadline).ok()?;
            self.next_ack += 1;
            Some(id)
        });
        match attachment {
            Some(bin) => {
                out.to_client
                    .push(wire(PacketType::BinaryEvent, &nsp, id, 1, &parts));
                out.to_client.push(WsMsg::Binary(bin));
            }
            None => out
                .to_client
                .push(wire(PacketType::Event, &nsp, id, 0, &parts)),
        }
    }

    /// The client's answer to an emit that asked for an ack: it goes to the backend as the
    /// answer to its own ack request. Unknown ids are ignored, as the reference server does.
    fn on_client_ack(&mut self, p: Packet, out: &mut ServerOut) {
        let Some(id) = p.id else { return };
        let Some(token) = self.backend_acks.remove(&id) else {
            return;
        };
        let data = p.data.unwrap_or_else(|| Bytes::from_static(b"[]"));
        let result = if p.kind == PacketType::BinaryAck {
            // One binary argument is the one shape a neutral payload carries; other binary
            // answers are refused (a NACK) rather than sent with dangling placeholders.
            match (packet::split_args(&data), p.attachments.as_slice()) {
                (Ok(args), [bin])
                    if args.len() == 1
                        && args.first().and_then(|a| packet::placeholder_num(a)) == Some(0) =>
                {
                    Some(Payload::binary(bin.clone()))
                }
                _ => {
                    out.ops.push(ClientOp::Ack {
                        token,
                        positive: false,
                        result: None,
                    });
                    return;
                }
            }
        } else {
            Some(Payload::json(data))
        };
        out.ops.push(ClientOp::Ack {
            token,
            positive: true,
            result,
        });
    }

    /// A payload as one JSON argument, plus its attachment when it is binary.
    fn payload_arg(&mut self, p: Payload) -> (Bytes, Option<Bytes>) {
        match p.kind {
            PayloadKind::Json => (p.data, None),
            PayloadKind::Text => {
                let s = packet::json_string(&p.data);
                self.copied += s.len() as u64;
                (s, None)
            }
            PayloadKind::Binary => (packet::placeholder(0), Some(p.data)),
        }
    }

    fn on_reply(
        &mut self,
        id: ReplyId,
        result: Result<Option<Payload>, ErrorInfo>,
        out: &mut ServerOut,
    ) {
        let Some((nsp, ack_id)) = self.replies.remove(&id) else {
            return;
        };
        match result {
            Ok(None) => out.to_client.push(ack(&nsp, ack_id, b"[]")),
            Ok(Some(p)) => {
                let (arg, attachment) = self.payload_arg(p);
                let parts: [&[u8]; 3] = [b"[", &arg, b"]"];
                match attachment {
                    Some(bin) => {
                        out.to_client.push(wire(
                            PacketType::BinaryAck,
                            &nsp,
                            Some(ack_id),
                            1,
                            &parts,
                        ));
                        out.to_client.push(WsMsg::Binary(bin));
                    }
                    None => {
                        out.to_client
                            .push(wire(PacketType::Ack, &nsp, Some(ack_id), 0, &parts))
                    }
                }
            }
            Err(e) => out.to_client.push(self.error_ack(&nsp, ack_id, &e)),
        }
    }
}

/// One Socket.IO packet as an Engine.IO `message`: `4<type>[<n>-][<nsp>,][<id>]` followed by
/// `parts`, written once into a buffer of the right size.
fn wire(
    kind: PacketType,
    nsp: &[u8],
    id: Option<u64>,
    attachments: usize,
    parts: &[&[u8]],
) -> WsMsg {
    let has_nsp = !nsp.is_empty() && nsp != ROOT;
    let len = 2
        + if kind.is_binary() { 21 } else { 0 }
        + if has_nsp { nsp.len() + 1 } else { 0 }
        + if id.is_some() { 20 } else { 0 }
        + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(b'4');
    b.put_u8(kind.digit());
    if kind.is_binary() {
        // Writing integers into a BytesMut cannot fail.
        let _ = write!(b, "{attachments}-");
    }
    if has_nsp {
        b.extend_from_slice(nsp);
        b.put_u8(b',');
    }
    if let Some(id) = id {
        let _ = write!(b, "{id}");
    }
    for p in parts {
        b.extend_from_slice(p);
    }
    WsMsg::Text(b.freeze())
}

/// Whether `name` is one of the event names socket.io reserves for itself.
fn is_reserved(name: &[u8]) -> bool {
    packet::RESERVED_EVENTS.iter().any(|r| r.as_bytes() == name)
}

/// `43[<nsp>,]<id><array>`.
fn ack(nsp: &[u8], id: u64, array: &[u8]) -> WsMsg {
    wire(PacketType::Ack, nsp, Some(id), 0, &[array])
}

/// `43N[{"error":{"name":"<name>","message":".."}}]`.
fn named_error_ack(nsp: &[u8], id: u64, name: &str, message: &[u8]) -> WsMsg {
    let args = packet::error_args(name, message);
    wire(PacketType::Ack, nsp, Some(id), 0, &[&args])
}

/// The fields of a CONNECT auth object, as raw JSON slices.
fn auth_fields(auth: &[u8]) -> Option<HashMap<String, &RawValue>> {
    serde_json::from_slice(auth).ok()
}

/// `auth.token` when it is a string.
fn auth_token(auth: &[u8]) -> Option<Bytes> {
    let fields = auth_fields(auth)?;
    let raw = fields.get("token")?;
    serde_json::from_str::<String>(raw.get())
        .ok()
        .filter(|t| !t.is_empty())
        .map(Bytes::from)
}

/// The topic of a `subscribe`/`unsubscribe` argument: `{"topic":"<name>"}` or `"<name>"`.
fn topic_of(arg: &[u8]) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct T {
        topic: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Arg {
        Bare(String),
        Object(T),
    }
    let topic = match serde_json::from_slice::<Arg>(arg).ok()? {
        Arg::Bare(s) => s,
        Arg::Object(t) => t.topic,
    };
    (!topic.is_empty()).then(|| Bytes::from(topic))
}

/// Template variables from the handshake query and the auth object (auth wins). Only
/// non-empty strings and numbers count; a template missing a variable is not filled.
fn captures(query: &str, auth: Option<&[u8]>) -> Captures {
    let mut caps = Captures::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if !v.is_empty() {
            caps.insert(k.into_owned(), v.into_owned());
        }
    }
    if let Some(fields) = auth.and_then(auth_fields) {
        for (k, raw) in fields {
            let text = raw.get();
            let value = match text.as_bytes().first() {
                Some(b'"') => serde_json::from_str::<String>(text).ok(),
                Some(b'-' | b'0'..=b'9') => Some(text.to_owned()),
                _ => None,
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                caps.insert(k, v);
            }
        }
    }
    caps
}

impl ServerRole for SocketioServer {
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
                if let Some(s) = self.subs.get_mut(&sub)
                    && let Some(id) = s.ack.take()
                {
                    let nsp = s.nsp.clone();
                    out.to_client.push(ack(&nsp, id, b"[null]"));
                }
            }
            BackendEvent::SubscribeFailed { sub, reason } => {
                if let Some(s) = self.subs.remove(&sub)
                    && let Some(id) = s.ack
                {
                    out.to_client.push(named_error_ack(
                        &s.nsp,
                        id,
                        "SubscribeError",
                        &reason.message,
                    ));
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

    fn keepalive(&self) -> Keepalive {
        let s = &self.settings;
        let expect_within = match self.state {
            State::Closed => return Keepalive::default(),
            // The connect timeout runs from the start, not from the last pong: pongs before a
            // CONNECT must not keep an idle connection open. The session measures silence
            // from the last receive, so the remaining time is counted from there. (`expire`
            // enforces the same deadline, should the session's clock start a little later.)
            State::AwaitConnect => match self.last_recv {
                Some(last) => self.connect_deadline.saturating_duration_since(last),
                None => s.connect_timeout,
            },
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
        let reason = if self.state == State::AwaitConnect {
            "connect timeout"
        } else {
            "ping timeout"
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

    fn take_copied(&mut self) -> u64 {
        std::mem::take(&mut self.copied)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn txt(s: &str) -> WsMsg {
        WsMsg::Text(Bytes::from(s.to_owned()))
    }

    fn s(m: &WsMsg) -> String {
        String::from_utf8(m.bytes().to_vec()).unwrap()
    }

    fn texts(out: &ServerOut) -> Vec<String> {
        out.to_client.iter().map(s).collect()
    }

    fn role_with(settings: Settings) -> SocketioServer {
        role_at(settings, Instant::now())
    }

    fn role_at(settings: Settings, started: Instant) -> SocketioServer {
        SocketioServer::new(
            settings,
            Some(Bytes::from("upgrade-tok")),
            "EIO=4&transport=websocket&room=r7".into(),
            "SID1".into(),
            started,
        )
    }

    fn role() -> SocketioServer {
        role_with(Settings {
            namespaces: vec!["/".into(), "/admin".into()],
            ..Default::default()
        })
    }

    fn feed(r: &mut SocketioServer, m: &str) -> ServerOut {
        let mut out = ServerOut::default();
        r.on_client(txt(m), Instant::now(), &mut out);
        out
    }

    fn backend(r: &mut SocketioServer, ev: BackendEvent) -> ServerOut {
        let mut out = ServerOut::default();
        r.on_backend(ev, Instant::now(), &mut out);
        out
    }

    /// CONNECT then Ready: returns the role with `/` joined.
    fn ready() -> SocketioServer {
        let mut r = role();
        let out = feed(&mut r, r#"40{"token":"abc","room":"r1"}"#);
        assert!(out.to_client.is_empty());
        assert_eq!(
            out.ops,
            vec![ClientOp::Connect {
                credentials: Credentials {
                    token: Some(Bytes::from("abc")),
                    login: None,
                    passcode: None,
                    auth_json: Some(Bytes::from(r#"{"token":"abc","room":"r1"}"#)),
                    ..Default::default()
                }
            }]
        );
        let out = backend(&mut r, BackendEvent::Ready { session: None });
        assert_eq!(texts(&out), [r#"40{"sid":"SID1"}"#]);
        r
    }

    fn subscribed(r: &mut SocketioServer, topic: &str, ack_id: u64) -> SubId {
        let out = feed(
            r,
            &format!(r#"42{ack_id}["subscribe",{{"topic":"{topic}"}}]"#),
        );
        let [ClientOp::Subscribe { sub, channel, .. }] = out.ops.as_slice() else {
            panic!("{:?}", out.ops)
        };
        assert_eq!(channel, topic);
        let sub = *sub;
        assert!(out.to_client.is_empty());
        let out = backend(r, BackendEvent::Subscribed { sub, data: None });
        assert_eq!(texts(&out), [format!("43{ack_id}[null]")]);
        sub
    }

    fn msg(sub: SubId, channel: &str, payload: Payload) -> BackendEvent {
        BackendEvent::Message {
            meta: Vec::new(),
            sub: Some(sub),
            channel: Bytes::from(channel.to_owned()),
            event: None,
            args: vec![],
            payload,
            ack: None,
        }
    }

    #[test]
    fn keepalive_pings_and_connect_timeout() {
        let t0 = Instant::now();
        let mut r = role_at(Settings::default(), t0);
        let k = r.keepalive();
        assert_eq!(k.send_every, Some(Duration::from_millis(25_000)));
        assert!(k.periodic);
        assert_eq!(k.expect_within, Some(Duration::from_millis(45_000)));
        assert_eq!(r.heartbeat(), Some(txt("2")));
        // Pongs before CONNECT do not extend the connect deadline.
        let mut out = ServerOut::default();
        r.on_client(txt("3"), t0, &mut out);
        r.on_client(txt("3"), t0 + Duration::from_secs(30), &mut out);
        assert!(out.to_client.is_empty() && out.close.is_none());
        assert_eq!(
            r.keepalive().expect_within,
            Some(Duration::from_millis(15_000))
        );
        let mut out = ServerOut::default();
        r.on_peer_silent(&mut out);
        assert_eq!(out.close, Some(Close::new(1000, "connect timeout")));
        assert!(out.ops.is_empty());
        assert_eq!(r.heartbeat(), None);

        let r = ready();
        assert_eq!(
            r.keepalive().expect_within,
            Some(Duration::from_millis(45_000))
        );
    }

    #[test]
    fn engineio_packets() {
        let mut r = ready();
        assert_eq!(texts(&feed(&mut r, "2")), ["3"]);
        assert_eq!(texts(&feed(&mut r, "2probe")), ["3probe"]);
        for quiet in ["3", "6", "5"] {
            let out = feed(&mut r, quiet);
            assert!(out.to_client.is_empty() && out.ops.is_empty() && out.close.is_none());
        }
        let mut out = ServerOut::default();
        r.on_peer_silent(&mut out);
        assert_eq!(out.close, Some(Close::new(1000, "ping timeout")));
        assert_eq!(out.ops, vec![ClientOp::Disconnect]);
    }

    #[test]
    fn engineio_close_disconnects() {
        let mut r = ready();
        let out = feed(&mut r, "1");
        assert_eq!(out.ops, vec![ClientOp::Disconnect]);
        assert_eq!(out.close.unwrap().code, 1000);
        // Closed: everything after is ignored.
        let out = feed(&mut r, "2");
        assert!(out.to_client.is_empty());
    }

    #[test]
    fn malformed_packets_close_with_parse_error() {
        for bad in [
            "",
            "9",
            "4x",
            "42",
            "42{\"a\":1}",
            "42[1]",
            "45-[\"a\"]",
            "40[]",
        ] {
            let mut r = ready();
            let out = feed(&mut r, bad);
            assert_eq!(out.close, Some(Close::new(1002, "parse error")), "{bad:?}");
            assert_eq!(out.ops, vec![ClientOp::Disconnect], "{bad:?}");
        }
        // Before CONNECT nothing went upstream, so there is nothing to disconnect.
        let mut r = role();
        let out = feed(&mut r, "4zz");
        assert_eq!(out.close.unwrap().code, 1002);
        assert!(out.ops.is_empty());
    }

    #[test]
    fn limits_close_with_1009() {
        let mut r = role_with(Settings {
            max_payload: 20,
            max_attachments: 2,
            ..Default::default()
        });
        let out = feed(&mut r, &format!("42[\"a\",\"{}\"]", "x".repeat(20)));
        assert_eq!(out.close, Some(Close::new(1009, "message too big")));
        let mut r = role_with(Settings {
            max_attachments: 2,
            ..Default::default()
        });
        feed(&mut r, "40");
        let out = feed(&mut r, r#"453-["up",1]"#);
        assert_eq!(out.close, Some(Close::new(1009, "message too big")));
    }

    #[test]
    fn invalid_namespace_stays_open() {
        let mut r = role();
        let out = feed(&mut r, "40/nope,");
        assert_eq!(texts(&out), [r#"44/nope,{"message":"Invalid namespace"}"#]);
        assert!(out.close.is_none() && out.ops.is_empty());
        let mut r = role_with(Settings {
            namespaces: vec!["/admin".into()],
            ..Default::default()
        });
        let out = feed(&mut r, "40");
        assert_eq!(texts(&out), [r#"44{"message":"Invalid namespace"}"#]);
        // A valid one still connects afterwards.
        let out = feed(&mut r, "40/admin,");
        assert!(matches!(out.ops[0], ClientOp::Connect { .. }));
    }

    #[test]
    fn connect_without_auth_uses_upgrade_token() {
        let mut r = role();
        let out = feed(&mut r, "40");
        assert_eq!(
            out.ops,
            vec![ClientOp::Connect {
                credentials: Credentials {
                    token: Some(Bytes::from("upgrade-tok")),
                    ..Default::default()
                }
            }]
        );
        // A non-string token falls back as well, but the auth object still goes upstream.
        let mut r = role();
        let out = feed(&mut r, r#"40{"token":5}"#);
        let ClientOp::Connect { credentials } = &out.ops[0] else {
            panic!()
        };
        assert_eq!(credentials.token.as_deref(), Some(&b"upgrade-tok"[..]));
        assert_eq!(
            credentials.auth_json.as_deref(),
            Some(&br#"{"token":5}"#[..])
        );
    }

    #[test]
    fn further_namespaces_share_the_upstream() {
        let mut r = role();
        feed(&mut r, r#"40{"token":"abc"}"#);
        // Still connecting: held until Ready, no second Connect.
        let out = feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        assert!(out.ops.is_empty() && out.to_client.is_empty());
        let out = backend(&mut r, BackendEvent::Ready { session: None });
        assert_eq!(
            texts(&out),
            [r#"40{"sid":"SID1"}"#, r#"40/admin,{"sid":"SID1"}"#]
        );
        // Ready: leave and rejoin answers at once.
        let out = feed(&mut r, "41/admin,");
        assert!(out.close.is_none());
        let out = feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
        assert!(out.ops.is_empty());
        // A second CONNECT to a joined namespace is a protocol error.
        let out = feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        assert_eq!(out.close.unwrap().code, 1002);
    }

    #[test]
    fn backend_refusal_is_connect_error_then_close() {
        let mut r = role();
        feed(&mut r, r#"40/admin,{"token":"bad"}"#);
        let out = backend(
            &mut r,
            BackendEvent::Error(ErrorInfo {
                kind: ErrorKind::Unauthorized,
                message: Bytes::from("invalid token"),
                detail: Some(Payload::json(Bytes::from(r#"{"reason":"jwt"}"#))),
                code: None,
            }),
        );
        assert_eq!(
            texts(&out),
            [r#"44/admin,{"message":"invalid token","data":{"reason":"jwt"}}"#]
        );
        assert_eq!(out.close.unwrap().code, 1008);
        assert!(out.ops.is_empty());

        // Without JSON detail, and through on_upstream_lost.
        let mut r = role();
        feed(&mut r, "40");
        let mut out = ServerOut::default();
        r.on_upstream_lost(
            ErrorInfo {
                kind: ErrorKind::Unauthorized,
                message: Bytes::from("Bad \"creds\""),
                detail: Some(Payload::text(Bytes::from("nope"))),
                code: None,
            },
            &mut out,
        );
        assert_eq!(texts(&out), [r#"44{"message":"Bad \"creds\""}"#]);
    }

    #[test]
    fn upstream_failures_close_the_transport_without_41() {
        let lost = ErrorInfo::new(ErrorKind::Unavailable, "backend closed the connection");
        let mut r = ready();
        let mut out = ServerOut::default();
        r.on_upstream_lost(lost.clone(), &mut out);
        assert!(out.to_client.is_empty());
        assert_eq!(out.close.unwrap().code, 1011);

        let mut r = ready();
        let out = backend(&mut r, BackendEvent::Error(lost.clone()));
        assert!(out.to_client.is_empty());
        assert_eq!(out.close.unwrap().code, 1011);

        let mut r = ready();
        let out = backend(
            &mut r,
            BackendEvent::Closing {
                reason: ErrorInfo::new(ErrorKind::Unauthorized, "token expired"),
                retry: false,
            },
        );
        assert!(out.to_client.is_empty());
        assert_eq!(out.close.unwrap().code, 1011);

        // Not ready yet and not an auth problem: also a plain close.
        let mut r = role();
        feed(&mut r, "40");
        let out = backend(&mut r, BackendEvent::Error(lost));
        assert!(out.to_client.is_empty());
        assert_eq!(out.close.unwrap().code, 1011);

        let mut r = ready();
        let mut out = ServerOut::default();
        r.on_shutdown(&mut out);
        assert_eq!(out.close.unwrap().code, 1001);
        assert_eq!(out.ops, vec![ClientOp::Disconnect]);
    }

    #[test]
    fn subscribe_ack_and_delivery() {
        let mut r = ready();
        let sub = subscribed(&mut r, "message_created", 0);
        let payload = Bytes::from(r#"{"id":17,"text":"hi"}"#);
        let out = backend(
            &mut r,
            msg(sub, "message_created", Payload::json(payload.clone())),
        );
        assert_eq!(
            texts(&out),
            [r#"42["message_created",{"id":17,"text":"hi"}]"#]
        );
        // Extra args and an explicit event name.
        let out = backend(
            &mut r,
            BackendEvent::Message {
                meta: Vec::new(),
                sub: Some(sub),
                channel: Bytes::from("message_created"),
                event: Some(Bytes::from("created")),
                args: vec![Bytes::from("\"c1\""), Bytes::from("2")],
                payload: Payload::text(Bytes::from("a\"b")),
                ack: None,
            },
        );
        assert_eq!(texts(&out), [r#"42["created","c1",2,"a\"b"]"#]);
        assert_eq!(r.take_copied(), 6);
        // Unknown subscriptions are dropped; unaddressed messages (a Socket.IO backend's
        // plain emits) go to the namespace that opened the upstream.
        let out = backend(&mut r, msg(99, "x", Payload::null()));
        assert!(out.to_client.is_empty());
        let out = backend(
            &mut r,
            BackendEvent::Message {
                meta: Vec::new(),
                sub: None,
                channel: Bytes::from("message_created"),
                event: None,
                args: vec![],
                payload: Payload::null(),
                ack: None,
            },
        );
        assert_eq!(texts(&out), [r#"42["message_created",null]"#]);
    }

    #[test]
    fn delivery_of_an_array_payload() {
        let mut r = ready();
        let sub = subscribed(&mut r, "t", 1);
        let out = backend(&mut r, msg(sub, "t", Payload::json(Bytes::from("[1,2]"))));
        assert_eq!(texts(&out), [r#"42["t",[1,2]]"#]);
        assert_eq!(r.take_copied(), 0);
    }

    #[test]
    fn binary_delivery_and_namespaced_subscription() {
        let mut r = ready();
        feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        let out = feed(&mut r, r#"42/admin,7["subscribe","files"]"#);
        let [ClientOp::Subscribe { sub, channel, .. }] = out.ops.as_slice() else {
            panic!()
        };
        assert_eq!(channel, "files");
        let sub = *sub;
        let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
        assert_eq!(texts(&out), ["43/admin,7[null]"]);
        let out = backend(
            &mut r,
            msg(
                sub,
                "files",
                Payload::binary(Bytes::from_static(&[1, 2, 3])),
            ),
        );
        assert_eq!(
            s(&out.to_client[0]),
            r#"451-/admin,["files",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            out.to_client[1],
            WsMsg::Binary(Bytes::from_static(&[1, 2, 3]))
        );
    }

    #[test]
    fn subscribe_failures_and_duplicates() {
        let mut r = ready();
        let out = feed(&mut r, r#"423["subscribe",{"topic":"nope"}]"#);
        let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
            panic!()
        };
        let out = backend(
            &mut r,
            BackendEvent::SubscribeFailed {
                sub: *sub,
                reason: ErrorInfo::new(ErrorKind::Untranslatable, "no route for nope"),
            },
        );
        assert_eq!(
            texts(&out),
            [r#"433[{"error":{"name":"SubscribeError","message":"no route for nope"}}]"#]
        );
        // The failed subscription is forgotten: deliveries for it are dropped.
        let out = backend(&mut r, msg(1, "nope", Payload::null()));
        assert!(out.to_client.is_empty());
        // Missing topic.
        let out = feed(&mut r, r#"424["subscribe",{"room":"x"}]"#);
        assert!(out.ops.is_empty());
        assert_eq!(
            texts(&out),
            [
                r#"434[{"error":{"name":"SubscribeError","message":"subscribe needs a topic: {\"topic\":\"<name>\"}"}}]"#
            ]
        );
        // Without an ack id: subscribed, but no answer either way.
        let out = feed(&mut r, r#"42["subscribe",{"topic":"quiet"}]"#);
        let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
            panic!()
        };
        let out = backend(
            &mut r,
            BackendEvent::Subscribed {
                sub: *sub,
                data: None,
            },
        );
        assert!(out.to_client.is_empty());
        // A duplicate is answered at once without a second subscription.
        let out = feed(&mut r, r#"425["subscribe",{"topic":"quiet"}]"#);
        assert!(out.ops.is_empty());
        assert_eq!(texts(&out), ["435[null]"]);
    }

    #[test]
    fn too_many_subscriptions() {
        let mut r = role_with(Settings {
            max_subscriptions: 1,
            ..Default::default()
        });
        feed(&mut r, "40");
        backend(&mut r, BackendEvent::Ready { session: None });
        subscribed(&mut r, "a", 1);
        let out = feed(&mut r, r#"422["subscribe","b"]"#);
        assert!(out.ops.is_empty());
        assert_eq!(
            texts(&out),
            [r#"432[{"error":{"name":"SubscribeError","message":"too many subscriptions"}}]"#]
        );
    }

    #[test]
    fn unsubscribe() {
        let mut r = ready();
        let sub = subscribed(&mut r, "message_created", 1);
        let out = feed(&mut r, r#"422["unsubscribe",{"topic":"message_created"}]"#);
        assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub }]);
        assert_eq!(texts(&out), ["432[null]"]);
        let out = backend(&mut r, msg(sub, "message_created", Payload::null()));
        assert!(out.to_client.is_empty());
        // Unknown topic: nothing to do, still acked.
        let out = feed(&mut r, r#"423["unsubscribe","other"]"#);
        assert!(out.ops.is_empty());
        assert_eq!(texts(&out), ["433[null]"]);
    }

    #[test]
    fn emit_becomes_publish_and_ack_answers() {
        let mut r = ready();
        let wire_msg = Bytes::from(r#"4212["message_created",{"text":"hi"}]"#);
        let mut out = ServerOut::default();
        r.on_client(WsMsg::Text(wire_msg.clone()), Instant::now(), &mut out);
        let [
            ClientOp::Publish {
                meta: _,
                channel,
                event: None,
                args,
                payload,
                reply: Some(rid),
            },
        ] = out.ops.as_slice()
        else {
            panic!("{:?}", out.ops)
        };
        assert_eq!(channel, "message_created");
        assert!(args.is_empty());
        assert_eq!(payload, &Payload::json(Bytes::from(r#"{"text":"hi"}"#)));
        // Zero copy: the payload is a slice of the received message.
        assert!(wire_msg.as_ptr_range().contains(&payload.data.as_ptr()));
        assert_eq!(r.take_copied(), 0);
        // A Socket.IO ack asks for the backend's data.
        assert!(rid.data);
        let rid = rid.id;
        let out = backend(
            &mut r,
            BackendEvent::Reply {
                id: rid,
                result: Ok(Some(Payload::json(Bytes::from(r#"{"ok":true}"#)))),
            },
        );
        assert_eq!(texts(&out), [r#"4312[{"ok":true}]"#]);
        // Answered once only.
        let out = backend(
            &mut r,
            BackendEvent::Reply {
                id: rid,
                result: Ok(None),
            },
        );
        assert!(out.to_client.is_empty());
    }

    fn publish(r: &mut SocketioServer, m: &str) -> (Bytes, Payload, Option<ReplyId>) {
        let out = feed(r, m);
        let [
            ClientOp::Publish {
                channel,
                payload,
                reply,
                ..
            },
        ] = out.ops.as_slice()
        else {
            panic!("{m}: {:?}", out.ops)
        };
        (channel.clone(), payload.clone(), reply.map(|r| r.id))
    }

    #[test]
    fn emit_arguments_to_payload() {
        let mut r = ready();
        let (_, p, reply) = publish(&mut r, r#"42["ping"]"#);
        assert_eq!(p, Payload::null());
        assert_eq!(reply, None);
        let (_, p, _) = publish(&mut r, r#"42["m",1,"two",{"three":3}]"#);
        assert_eq!(p, Payload::json(Bytes::from(r#"[1,"two",{"three":3}]"#)));
        assert_eq!(r.take_copied(), 21);
        feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        let (c, p, _) = publish(&mut r, r#"42/admin,["m",null]"#);
        assert_eq!(c, "m");
        assert_eq!(p, Payload::json(Bytes::from("null")));
    }

    #[test]
    fn binary_emit_and_reply_kinds() {
        let mut r = ready();
        let out = feed(&mut r, r#"451-3["upload",{"_placeholder":true,"num":0}]"#);
        assert!(out.ops.is_empty());
        let mut out = ServerOut::default();
        r.on_client(
            WsMsg::Binary(Bytes::from_static(&[9, 8])),
            Instant::now(),
            &mut out,
        );
        let [
            ClientOp::Publish {
                channel,
                payload,
                reply: Some(rid),
                ..
            },
        ] = out.ops.as_slice()
        else {
            panic!("{:?}", out.ops)
        };
        assert_eq!(channel, "upload");
        assert_eq!(payload, &Payload::binary(Bytes::from_static(&[9, 8])));
        // A Socket.IO ack asks for the backend's data.
        assert!(rid.data);
        let rid = rid.id;
        let out = backend(
            &mut r,
            BackendEvent::Reply {
                id: rid,
                result: Ok(Some(Payload::binary(Bytes::from_static(&[7])))),
            },
        );
        assert_eq!(texts(&out)[0], r#"461-3[{"_placeholder":true,"num":0}]"#);
        assert_eq!(out.to_client[1], WsMsg::Binary(Bytes::from_static(&[7])));

        let (_, _, Some(rid)) = publish(&mut r, r#"424["a",1]"#) else {
            panic!()
        };
        let out = backend(
            &mut r,
            BackendEvent::Reply {
                id: rid,
                result: Ok(None),
            },
        );
        assert_eq!(texts(&out), ["434[]"]);

        feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        let (_, _, Some(rid)) = publish(&mut r, r#"42/admin,5["a",1]"#) else {
            panic!()
        };
        let out = backend(
            &mut r,
            BackendEvent::Reply {
                id: rid,
                result: Err(ErrorInfo::new(ErrorKind::Timeout, "no answer")),
            },
        );
        assert_eq!(
            texts(&out),
            [r#"43/admin,5[{"error":{"name":"timeout","message":"no answer"}}]"#]
        );

        let (_, _, Some(rid)) = publish(&mut r, r#"426["a",1]"#) else {
            panic!()
        };
        let out = backend(
            &mut r,
            BackendEvent::Reply {
                id: rid,
                result: Ok(Some(Payload::text(Bytes::from("done")))),
            },
        );
        assert_eq!(texts(&out), [r#"436["done"]"#]);
    }

    #[test]
    fn binary_among_several_arguments_is_refused() {
        let mut r = ready();
        feed(
            &mut r,
            r#"451-8["upload","name",{"_placeholder":true,"num":0}]"#,
        );
        let mut out = ServerOut::default();
        r.on_client(
            WsMsg::Binary(Bytes::from_static(&[1])),
            Instant::now(),
            &mut out,
        );
        assert!(out.ops.is_empty());
        assert_eq!(
            texts(&out),
            [
                r#"438[{"error":{"name":"untranslatable","message":"binary data must be the event's only argument"}}]"#
            ]
        );
    }

    #[test]
    fn reserved_event_from_the_client_is_a_parse_error() {
        // As socket.io 4.8 does: the parser refuses the payload and the connection closes.
        for name in packet::RESERVED_EVENTS {
            for m in [
                format!(r#"429["{name}",1]"#),
                format!(r#"42/admin,["{name}"]"#),
            ] {
                let mut r = ready();
                feed(&mut r, r#"40/admin,{"token":"abc"}"#);
                let out = feed(&mut r, &m);
                assert_eq!(out.close, Some(Close::new(1002, "parse error")), "{m}");
                assert_eq!(out.ops, vec![ClientOp::Disconnect], "{m}");
                assert!(out.to_client.is_empty(), "{m}");
            }
        }
        // Binary events too, once their attachment is in.
        let mut r = ready();
        assert!(
            feed(
                &mut r,
                r#"451-["disconnecting",{"_placeholder":true,"num":0}]"#
            )
            .close
            .is_none()
        );
        let mut out = ServerOut::default();
        r.on_client(
            WsMsg::Binary(Bytes::from_static(&[1])),
            Instant::now(),
            &mut out,
        );
        assert_eq!(out.close, Some(Close::new(1002, "parse error")));
        // Names that merely resemble one are ordinary events.
        let mut r = ready();
        publish(&mut r, r#"42["Disconnect"]"#);
        publish(&mut r, r#"42["connect_errors"]"#);
    }

    #[test]
    fn reserved_subscription_is_refused() {
        let mut r = ready();
        for (i, name) in packet::RESERVED_EVENTS.iter().enumerate() {
            let out = feed(
                &mut r,
                &format!(r#"42{i}["subscribe",{{"topic":"{name}"}}]"#),
            );
            assert!(out.ops.is_empty() && out.close.is_none(), "{name}");
            assert_eq!(
                texts(&out),
                [format!(
                    r#"43{i}[{{"error":{{"name":"SubscribeError","message":"`{name}` is a reserved event name"}}}}]"#
                )]
            );
        }
        // Without an ack id: nothing subscribed, nothing said.
        let out = feed(&mut r, r#"42["subscribe","newListener"]"#);
        assert!(out.ops.is_empty() && out.to_client.is_empty() && out.close.is_none());
        // An auto-subscription whose topic comes out reserved is skipped.
        let mut r = role_with(Settings {
            auto_subscribe: vec![Template::parse("{kind}").unwrap()],
            ..Default::default()
        });
        feed(&mut r, r#"40{"kind":"disconnect"}"#);
        let out = backend(&mut r, BackendEvent::Ready { session: None });
        assert_eq!(texts(&out), [r#"40{"sid":"SID1"}"#]);
        assert!(out.ops.is_empty());
    }

    #[test]
    fn reserved_delivery_is_dropped() {
        let mut r = ready();
        let sub = subscribed(&mut r, "news", 1);
        for name in packet::RESERVED_EVENTS {
            // Named by the translator (event), or by the channel of an unclaimed emit.
            let out = backend(
                &mut r,
                BackendEvent::Message {
                    meta: Vec::new(),
                    sub: Some(sub),
                    channel: Bytes::from("news"),
                    event: Some(Bytes::from(*name)),
                    args: vec![],
                    payload: Payload::null(),
                    ack: None,
                },
            );
            assert!(out.to_client.is_empty() && out.close.is_none(), "{name}");
            let out = backend(
                &mut r,
                BackendEvent::Message {
                    meta: Vec::new(),
                    sub: None,
                    channel: Bytes::from(*name),
                    event: None,
                    args: vec![],
                    payload: Payload::null(),
                    ack: None,
                },
            );
            assert!(out.to_client.is_empty() && out.close.is_none(), "{name}");
        }
        // The connection goes on: an ordinary delivery still arrives.
        let out = backend(&mut r, msg(sub, "news", Payload::null()));
        assert_eq!(texts(&out), [r#"42["news",null]"#]);
    }

    #[test]
    fn too_many_pending_acks() {
        let mut r = role_with(Settings {
            max_pending_acks: 1,
            ..Default::default()
        });
        feed(&mut r, "40");
        backend(&mut r, BackendEvent::Ready { session: None });
        publish(&mut r, r#"421["a"]"#);
        let out = feed(&mut r, r#"422["a"]"#);
        assert!(out.ops.is_empty());
        assert_eq!(
            texts(&out),
            [r#"432[{"error":{"name":"limit","message":"too many emits waiting for an ack"}}]"#]
        );
        // Without an ack id nothing is tracked, so it still goes through.
        publish(&mut r, r#"42["a"]"#);
    }

    #[test]
    fn event_on_unjoined_namespace_closes() {
        let mut r = ready();
        let out = feed(&mut r, r#"42/admin,["a"]"#);
        assert_eq!(out.close, Some(Close::new(1002, "invalid state")));
        let mut r = role();
        let out = feed(&mut r, r#"42["a"]"#);
        assert_eq!(out.close.unwrap().code, 1002);
        assert!(out.ops.is_empty());
    }

    #[test]
    fn leaving_namespaces() {
        let mut r = ready();
        feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        let sub_root = subscribed(&mut r, "a", 1);
        let out = feed(&mut r, r#"42/admin,2["subscribe",{"topic":"b"}]"#);
        let [ClientOp::Subscribe { sub: sub_admin, .. }] = out.ops.as_slice() else {
            panic!()
        };
        let sub_admin = *sub_admin;
        let (_, _, Some(rid)) = publish(&mut r, r#"42/admin,3["x"]"#) else {
            panic!()
        };
        let out = feed(&mut r, "41/admin,");
        assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub: sub_admin }]);
        assert!(out.close.is_none());
        // The ack of the namespace left is not sent.
        let out = backend(
            &mut r,
            BackendEvent::Reply {
                id: rid,
                result: Ok(None),
            },
        );
        assert!(out.to_client.is_empty());
        // Leaving an unknown namespace is ignored; leaving the last one ends the connection.
        assert!(feed(&mut r, "41/other,").close.is_none());
        let out = feed(&mut r, "41");
        assert_eq!(
            out.ops,
            vec![
                ClientOp::Unsubscribe { sub: sub_root },
                ClientOp::Disconnect
            ]
        );
        assert_eq!(out.close.unwrap().code, 1000);
    }

    #[test]
    fn auto_subscribe_from_auth_and_query() {
        let templates = [
            "/v1/topic/conversation/{conversation}",
            "user-{uid}",
            "room-{room}",
            "missing-{nope}",
        ];
        let mut r = role_with(Settings {
            auto_subscribe: templates
                .iter()
                .map(|t| Template::parse(t).unwrap())
                .collect(),
            ..Default::default()
        });
        feed(
            &mut r,
            r#"40{"token":"t","conversation":"c-9","uid":42,"flag":true}"#,
        );
        let out = backend(&mut r, BackendEvent::Ready { session: None });
        assert_eq!(texts(&out), [r#"40{"sid":"SID1"}"#]);
        let channels: Vec<&[u8]> = out
            .ops
            .iter()
            .map(|op| match op {
                ClientOp::Subscribe { channel, .. } => channel.as_ref(),
                o => panic!("{o:?}"),
            })
            .collect();
        assert_eq!(
            channels,
            [&b"/v1/topic/conversation/c-9"[..], b"user-42", b"room-r7"]
        );
        // Auto-subscriptions deliver on the connecting namespace, and are never acked.
        let ClientOp::Subscribe { sub, .. } = out.ops[0] else {
            panic!()
        };
        let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
        assert!(out.to_client.is_empty());
        let out = backend(
            &mut r,
            msg(
                sub,
                "/v1/topic/conversation/c-9",
                Payload::json(Bytes::from("1")),
            ),
        );
        assert_eq!(texts(&out), [r#"42["/v1/topic/conversation/c-9",1]"#]);
    }

    const AUTH_DIFFERS: &str =
        r#"{"message":"auth differs from the connection's first namespace"}"#;

    #[test]
    fn later_namespace_must_present_the_same_auth() {
        // Ready: a different token, or none (the upgrade token differs too), is refused.
        let mut r = role_with(Settings {
            namespaces: vec!["/".into(), "/admin".into(), "/ops".into()],
            ..Default::default()
        });
        feed(&mut r, r#"40{"token":"abc"}"#);
        backend(&mut r, BackendEvent::Ready { session: None });
        for m in [r#"40/admin,{"token":"other"}"#, "40/admin,", "40/admin,{}"] {
            let out = feed(&mut r, m);
            assert_eq!(texts(&out), [format!("44/admin,{AUTH_DIFFERS}")], "{m}");
            assert!(out.ops.is_empty() && out.close.is_none(), "{m}");
        }
        // Refused means not joined: its events still close like any unjoined namespace's.
        let mut probe = role();
        feed(&mut probe, r#"40{"token":"abc"}"#);
        backend(&mut probe, BackendEvent::Ready { session: None });
        feed(&mut probe, r#"40/admin,{"token":"x"}"#);
        assert_eq!(
            feed(&mut probe, r#"42/admin,["a"]"#).close.unwrap().code,
            1002
        );
        // The same token is accepted, whatever else the auth object holds.
        let out = feed(&mut r, r#"40/admin,{"token":"abc","room":"r2"}"#);
        assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
        assert!(out.ops.is_empty());

        // Still connecting: refused at once, the accepted one waits for Ready.
        let mut r = role_with(Settings {
            namespaces: vec!["/".into(), "/admin".into(), "/ops".into()],
            ..Default::default()
        });
        feed(&mut r, r#"40{"token":"abc"}"#);
        let out = feed(&mut r, r#"40/ops,{"token":"zzz"}"#);
        assert_eq!(texts(&out), [format!("44/ops,{AUTH_DIFFERS}")]);
        assert!(
            feed(&mut r, r#"40/admin,{"token":"abc"}"#)
                .to_client
                .is_empty()
        );
        let out = backend(&mut r, BackendEvent::Ready { session: None });
        assert_eq!(
            texts(&out),
            [r#"40{"sid":"SID1"}"#, r#"40/admin,{"sid":"SID1"}"#]
        );

        // A first CONNECT without auth used the upgrade token: a later one without auth, or
        // with that same token, matches it.
        let mut r = role();
        feed(&mut r, "40");
        backend(&mut r, BackendEvent::Ready { session: None });
        let out = feed(&mut r, "40/admin,");
        assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
        feed(&mut r, "41/admin,");
        let out = feed(&mut r, r#"40/admin,{"token":"upgrade-tok"}"#);
        assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
    }

    #[test]
    fn unclaimed_deliveries_stop_when_the_primary_namespace_is_left() {
        let unclaimed = || BackendEvent::Message {
            meta: Vec::new(),
            sub: None,
            channel: Bytes::from("news"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            ack: None,
        };
        let mut r = ready();
        feed(&mut r, r#"40/admin,{"token":"abc"}"#);
        assert_eq!(texts(&backend(&mut r, unclaimed())), [r#"42["news",null]"#]);
        // `/` left, `/admin` still joined: not redirected there, dropped.
        assert!(feed(&mut r, "41").close.is_none());
        let out = backend(&mut r, unclaimed());
        assert!(out.to_client.is_empty() && out.close.is_none());
        // Back in `/`: delivered again.
        feed(&mut r, r#"40{"token":"abc"}"#);
        assert_eq!(texts(&backend(&mut r, unclaimed())), [r#"42["news",null]"#]);
    }

    #[test]
    fn connect_deadline_is_absolute_from_creation() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut r = role_at(Settings::default(), t0);
        let mut out = ServerOut::default();
        // The client answers pings (and sends noops), but never CONNECTs.
        for at in [25_000, 44_000] {
            r.on_client(txt("3"), s(at), &mut out);
            r.on_client(txt("6"), s(at), &mut out);
            r.expire(s(at), &mut out);
        }
        assert!(out.close.is_none() && out.to_client.is_empty());
        assert_eq!(
            r.keepalive().expect_within,
            Some(Duration::from_millis(1_000))
        );
        r.expire(s(44_999), &mut out);
        assert!(out.close.is_none());
        r.expire(s(45_000), &mut out);
        assert_eq!(out.close, Some(Close::new(1000, "connect timeout")));
        assert!(out.ops.is_empty());

        // A message arriving first does not start the clock: it started at creation.
        let mut r = role_at(Settings::default(), t0);
        let mut out = ServerOut::default();
        r.on_client(txt("3"), s(40_000), &mut out);
        r.expire(s(45_000), &mut out);
        assert_eq!(out.close, Some(Close::new(1000, "connect timeout")));

        // Once CONNECT arrived, the deadline no longer applies.
        let mut r = role_at(Settings::default(), t0);
        let mut out = ServerOut::default();
        r.on_client(txt("40"), s(1_000), &mut out);
        r.expire(s(60_000), &mut out);
        assert!(out.close.is_none());
    }

    #[test]
    fn topic_and_token_helpers() {
        assert_eq!(topic_of(br#"{"topic":"a"}"#).unwrap(), "a");
        assert_eq!(topic_of(br#""b""#).unwrap(), "b");
        assert!(topic_of(br#"{"topic":1}"#).is_none());
        assert!(topic_of(br#""""#).is_none());
        assert!(topic_of(b"[]").is_none());
        assert_eq!(auth_token(br#"{"token":"x\"y"}"#).unwrap(), "x\"y");
        assert!(auth_token(br#"{"token":""}"#).is_none());
        assert!(auth_token(br#"{"tok":"x"}"#).is_none());
    }

    #[test]
    fn backend_ack_requests_ask_the_client_and_carry_its_answer() {
        let mut r = ready();
        let ev = |token: &str| BackendEvent::Message {
            meta: Vec::new(),
            sub: None,
            channel: Bytes::from("confirm"),
            event: None,
            args: vec![],
            payload: Payload::json(Bytes::from("{\"id\":7}")),
            ack: Some(Bytes::from(token.to_owned())),
        };
        let out = backend(&mut r, ev("12"));
        assert_eq!(texts(&out), [r#"420["confirm",{"id":7}]"#]);
        let out = backend(&mut r, ev("13"));
        assert_eq!(texts(&out), [r#"421["confirm",{"id":7}]"#]);
        let out = feed(&mut r, r#"431[{"seen":true}]"#);
        assert_eq!(
            out.ops,
            vec![ClientOp::Ack {
                token: Bytes::from("13"),
                positive: true,
                result: Some(Payload::json(Bytes::from(r#"[{"seen":true}]"#))),
            }]
        );
        // Answered once; unknown ids are ignored.
        assert!(feed(&mut r, "431[]").ops.is_empty());
        assert!(feed(&mut r, "4399[]").ops.is_empty());
        // Forgotten after a while (the backend's timeout has answered by then).
        let mut out = ServerOut::default();
        r.expire(Instant::now() + BACKEND_ACK_TTL, &mut out);
        assert!(feed(&mut r, "430[]").ops.is_empty());
    }

    #[test]
    fn a_full_backend_ack_table_asks_the_client_for_no_ack() {
        let mut r = ready();
        r.backend_acks = Pending::new(1);
        let ev = |token: &str| BackendEvent::Message {
            meta: Vec::new(),
            sub: None,
            channel: Bytes::from("confirm"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            ack: Some(Bytes::from(token.to_owned())),
        };
        assert_eq!(
            texts(&backend(&mut r, ev("12"))),
            [r#"420["confirm",null]"#]
        );
        assert_eq!(texts(&backend(&mut r, ev("13"))), [r#"42["confirm",null]"#]);
        // The answer frees the entry; the next request gets the next id.
        assert_eq!(feed(&mut r, "430[]").ops.len(), 1);
        assert_eq!(
            texts(&backend(&mut r, ev("14"))),
            [r#"421["confirm",null]"#]
        );
    }
}
