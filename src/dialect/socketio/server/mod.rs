//! The Socket.IO server role: the proxy plays a Socket.IO v4 server (protocol 5 over
//! Engine.IO 4) for downstream clients.
//!
//! Two conventions, by upstream: toward a Socket.IO upstream ([`Settings::shapes`]) packets
//! keep their shape and namespaces are joined upstream one for one (`shaped.rs`); toward
//! any other dialect, what follows: single payloads, one upstream identity.
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
//! turns long-polling bodies into one [`WsMsg`](crate::dialect::WsMsg) per packet, so this
//! role sees every transport alike), configuration files, other dialects, channel naming (the
//! translator renames).
//!
//! # Layout
//!
//! - `mod.rs`: [`Settings`], the role's state ([`SocketioServer`] and its tables), closing,
//!   and the dispatch of a decoded packet by type.
//! - `namespaces.rs`: namespace CONNECT and DISCONNECT, the one upstream identity, the held
//!   `40` replies released on `Ready`, `44` refusals and upstream failures.
//! - `subscriptions.rs`: the `subscribe`/`unsubscribe` events, the subscription table and
//!   auto-subscriptions at connect.
//! - `emit.rs`: client emits: event dispatch, emit to publish, and the backend's replies
//!   answering the client's acks.
//! - `delivery.rs`: backend messages emitted to the client, and the client's acks the backend
//!   asked for.
//! - `wire.rs`: writing Socket.IO packets as Engine.IO messages (events, acks, error acks).
//! - `shaped.rs`: toward a Socket.IO upstream ([`Settings::shapes`]): namespaces joined
//!   upstream one for one, events and acks forwarded in their shape.
//! - `role.rs`: the [`ServerRole`](crate::dialect::ServerRole) impl: Engine.IO packets,
//!   backend events, keepalive and deadlines.

mod delivery;
mod emit;
mod namespaces;
mod role;
mod shaped;
mod subscriptions;
#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
mod wire;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::packet::{Decoder, Packet, PacketType, SioError};
use crate::dialect::pending::Pending;
use crate::dialect::{Close, ServerOut};
use crate::frame::{ClientOp, ReplyId, SubId};
use crate::template::Template;

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
    /// The upstream is Socket.IO too: namespaces are joined upstream one for one (each with
    /// its own auth), and events and acks keep their shape (every argument, attachments in
    /// place, ack ids) instead of becoming single payloads.
    pub shapes: bool,
    /// The route verifies tokens at the edge: with [`Settings::shapes`] the upstream opens
    /// with the first namespace CONNECT and its auth (which carries the token), not at the
    /// Engine.IO session's start.
    pub defer_open: bool,
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
            shapes: false,
            defer_open: false,
        }
    }
}

/// The close reason of a client that missed its ping deadline: the Engine.IO transport drops
/// such a session's sid at once, as engine.io does.
pub const PING_TIMEOUT: &str = "ping timeout";

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
    /// The ack ids of the `subscribe` emits waiting for the backend's answer (the first,
    /// and any repeat of it made meanwhile), answered on `Subscribed`/`SubscribeFailed`.
    acks: Vec<u64>,
    /// The backend confirmed it: a repeat is answered at once.
    confirmed: bool,
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
    /// Shapes mode: the upstream said `Ready` (it may, before any namespace CONNECT).
    upstream_ready: bool,
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
    copied: crate::dialect::Copied,
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
            upstream_ready: false,
            subs: HashMap::new(),
            next_sub: 1,
            replies: HashMap::new(),
            next_reply: 1,
            next_ack: 0,
            last_recv: None,
            copied: crate::dialect::Copied::default(),
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
            PacketType::Disconnect if self.settings.shapes => self.leave_shaped(&p.nsp, out),
            PacketType::Disconnect => self.on_leave(&p.nsp, out),
            PacketType::Event | PacketType::BinaryEvent => {
                if self.nsp_index(&p.nsp).is_none() {
                    // The reference server closes on a packet for a namespace not joined.
                    return self.close(1002, "invalid state", true, out);
                }
                self.on_event(p, out);
            }
            PacketType::Ack | PacketType::BinaryAck if self.settings.shapes => {
                self.answer_shaped(p, out)
            }
            PacketType::Ack | PacketType::BinaryAck => self.on_client_ack(p, out),
            PacketType::ConnectError => self.close(1002, "invalid state", true, out),
        }
    }
}
