//! Dialect codecs and the two roles each dialect plays.
//!
//! Owns: bytes to and from dialect frames (`codec` modules, pure and synchronous) and the
//! per-leg protocol state machines (`server` and `client` modules) that turn dialect frames
//! into neutral [`crate::frame`] operations and events, keep correlation tables and say which
//! heartbeats are due; and what those roles share: [`hold::HoldQueue`] for operations held
//! until a leg is ready, [`pending::Pending`] for correlation tables with deadlines.
//!
//! Must not touch: tokio, sockets, metrics, configuration files, or another dialect. Time
//! comes in as an argument; the session owns every timer.
#![deny(clippy::indexing_slicing)]

pub mod hold;
pub mod json;
pub mod pending;
pub mod socketio;
pub mod stomp;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::frame::{BackendEvent, ClientOp, ErrorInfo};

/// The five dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// STOMP 1.0–1.2 over WebSocket.
    Stomp,
    /// Socket.IO protocol 5 over Engine.IO 4.
    Socketio,
    /// Pusher Channels protocol 7.
    Pusher,
    /// SocketCluster.
    Socketcluster,
    /// Rails Action Cable.
    Actioncable,
}

impl Dialect {
    /// A stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stomp => "stomp",
            Self::Socketio => "socketio",
            Self::Pusher => "pusher",
            Self::Socketcluster => "socketcluster",
            Self::Actioncable => "actioncable",
        }
    }
}

/// One WebSocket data message (or one Engine.IO long-polling packet, which is the same thing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMsg {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl WsMsg {
    /// The message's bytes.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Self::Text(b) | Self::Binary(b) => b,
        }
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }
    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// How a leg closes its peer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason (kept short; WebSocket limits it to 123 bytes).
    pub reason: String,
}

impl Close {
    /// Normal closure.
    pub fn normal() -> Self {
        Self {
            code: 1000,
            reason: String::new(),
        }
    }
    /// A close with a code and reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Keepalive duties a leg has negotiated with its peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keepalive {
    /// Send a heartbeat when nothing was sent for this long.
    pub send_every: Option<Duration>,
    /// Consider the peer dead when nothing was received for this long.
    pub expect_within: Option<Duration>,
    /// Send a heartbeat every `send_every` even when other traffic flows (Engine.IO pings).
    pub periodic: bool,
}

/// What a server role (downstream leg) wants done after handling an input.
#[derive(Debug, Default)]
pub struct ServerOut {
    /// Messages to write to the client, in order.
    pub to_client: Vec<WsMsg>,
    /// Operations for the upstream leg, in order.
    pub ops: Vec<ClientOp>,
    /// Close the client connection after writing `to_client`.
    pub close: Option<Close>,
}

/// What a client role (upstream leg) wants done after handling an input.
#[derive(Debug, Default)]
pub struct ClientOut {
    /// Messages to write to the backend, in order.
    pub to_backend: Vec<WsMsg>,
    /// Events for the downstream leg, in order; delivered after `to_backend` is written.
    pub events: Vec<BackendEvent>,
    /// Close the backend connection after writing `to_backend`.
    pub close: Option<Close>,
}

/// The proxy playing the backend for clients of one dialect.
pub trait ServerRole: Send {
    /// A message arrived from the client.
    fn on_client(&mut self, msg: WsMsg, now: Instant, out: &mut ServerOut);
    /// An event arrived from the upstream leg (already translated to this dialect's naming).
    fn on_backend(&mut self, ev: BackendEvent, now: Instant, out: &mut ServerOut);
    /// The upstream leg is gone, or could not be opened: tell the client in its own dialect.
    fn on_upstream_lost(&mut self, reason: ErrorInfo, out: &mut ServerOut);
    /// The proxy is shutting down: tell the client in its own dialect.
    fn on_shutdown(&mut self, out: &mut ServerOut);
    /// The client sent a WebSocket message over the size limit (`reason` says how big): the
    /// connection cannot go on. Tell it in its dialect where there is a way, and close with
    /// 1009 (RFC 6455 §7.4.1: the size, not the content, was refused).
    fn on_too_big(&mut self, reason: ErrorInfo, out: &mut ServerOut);
    /// Negotiated keepalive duties (may change after the handshake).
    fn keepalive(&self) -> Keepalive;
    /// Nothing was sent to the client for `send_every`: the heartbeat to send.
    fn heartbeat(&mut self) -> Option<WsMsg>;
    /// Nothing was received from the client for `expect_within`.
    fn on_peer_silent(&mut self, out: &mut ServerOut);
    /// Fail correlation entries older than their deadline.
    fn expire(&mut self, now: Instant, out: &mut ServerOut);
    /// Payload bytes copied since the last call (reassembly, escaping, re-encoding).
    fn take_copied(&mut self) -> u64 {
        0
    }
}

/// The proxy playing a client of one dialect toward a backend.
pub trait ClientRole: Send {
    /// The connection is open: what to send first.
    fn start(&mut self, now: Instant, out: &mut ClientOut);
    /// An operation from the downstream leg (already translated to this dialect's naming).
    fn on_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut);
    /// A message arrived from the backend.
    fn on_backend(&mut self, msg: WsMsg, now: Instant, out: &mut ClientOut);
    /// Negotiated keepalive duties (may change after the handshake).
    fn keepalive(&self) -> Keepalive;
    /// Nothing was sent to the backend for `send_every`: the heartbeat to send.
    fn heartbeat(&mut self) -> Option<WsMsg>;
    /// Nothing was received from the backend for `expect_within`.
    fn on_peer_silent(&mut self, out: &mut ClientOut);
    /// Fail correlation entries older than their deadline.
    fn expire(&mut self, now: Instant, out: &mut ClientOut);
    /// The backend connection ended: fail every pending entry.
    fn on_closed(&mut self, reason: ErrorInfo, out: &mut ClientOut);
    /// Payload bytes copied since the last call (reassembly, escaping, re-encoding).
    fn take_copied(&mut self) -> u64 {
        0
    }
}

/// A `Bytes` from a static string, for building wire frames.
pub(crate) fn stat(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}
