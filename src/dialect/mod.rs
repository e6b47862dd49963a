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

pub mod actioncable;
pub mod hold;
pub mod json;
pub mod pending;
pub mod pusher;
pub mod socketcluster;
pub mod socketio;
pub mod stomp;
pub(crate) mod swar;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::frame::{BackendEvent, ClientOp, Credentials, ErrorInfo};

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
    /// Not a wire dialect: the embedded hub (`crate::hub`), an in-process backend a route's
    /// upstream can be. It has no folder here and no registry entry; it is not in [`ALL`].
    ///
    /// [`ALL`]: Dialect::ALL
    Hub,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 5] = [
        Self::Stomp,
        Self::Socketio,
        Self::Pusher,
        Self::Socketcluster,
        Self::Actioncable,
    ];

    /// A stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stomp => "stomp",
            Self::Socketio => "socketio",
            Self::Pusher => "pusher",
            Self::Socketcluster => "socketcluster",
            Self::Actioncable => "actioncable",
            Self::Hub => "hub",
        }
    }
}

/// What the dialect registry knows of a dialect, as data. Each dialect folder exports one
/// `SPEC`; the session, listener, dialer and translator read these fields instead of naming
/// a dialect.
#[derive(Debug)]
pub struct Spec {
    /// The dialect.
    pub dialect: Dialect,
    /// Subprotocols the server role accepts, most preferred first: the first one the client
    /// offered is answered in the upgrade. Empty: none is negotiated.
    pub offers: &'static [&'static str],
    /// Subprotocols the client role requests when it dials a backend.
    pub requests: &'static [&'static str],
    /// The route path when the config sets none (the path the dialect's clients use).
    pub default_path: &'static str,
    /// Clients append a segment to the route's path (Pusher's `/app/<key>`): the route
    /// serves every path one segment below its own.
    pub path_takes_key: bool,
    /// Query parameters added to a backend URL (`upstream.url` is the URL its users know).
    pub backend_query: &'static [(&'static str, &'static str)],
    /// Whether the backend URL's path must end with `/` (Engine.IO).
    pub backend_trailing_slash: bool,
    /// The largest message the protocol itself allows a peer to send, where it sets one
    /// (Pusher's 10 KB); the proxy's own `limits.max_message_size` applies besides.
    pub max_message_size: Option<usize>,
    /// How the dialect names things when no `[[route.map]]` rule matches.
    pub naming: Naming,
    /// What the dialect can express.
    pub caps: Caps,
}

/// The default naming convention of a dialect: templates with one `{name}` variable that
/// turn its names into neutral ones and back (`/topic/{name}` for STOMP subscriptions).
#[derive(Debug)]
pub struct Naming {
    /// Names used to subscribe; the first one is used to build a name.
    pub subscribe: &'static [&'static str],
    /// Names used to publish; the first one is used to build a name.
    pub publish: &'static [&'static str],
}

/// What a dialect can express on its wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// Carries an event name apart from the channel (Socket.IO, Pusher, SocketCluster emits).
    pub event_names: bool,
    /// Clients subscribe on the wire (STOMP SUBSCRIBE, Pusher subscribe, SC `#subscribe`).
    pub client_subscriptions: bool,
    /// Answers a request with data (a Socket.IO ack's arguments, an SC `rid`), not only a
    /// confirmation.
    pub replies_with_data: bool,
    /// Has wire-level presence (Pusher `presence-` channels).
    pub presence: bool,
    /// The server speaks before the client sends anything (Pusher
    /// `connection_established`, Action Cable `welcome`, Engine.IO `open`).
    pub speaks_first: bool,
    /// Clients receive events nobody subscribed to (a Socket.IO client hears `io.emit`, an
    /// SC client hears the server's emits).
    pub events_without_subscribe: bool,
    /// Clients acknowledge deliveries themselves (STOMP ACK/NACK); otherwise a backend that
    /// wants acks is acked by the proxy once the message is delivered.
    pub acks_deliveries: bool,
    /// A backend of this dialect delivers a client's publish back to that client too (STOMP
    /// topics, `io.emit`, SC `#publish`, Action Cable broadcasts; not Pusher client events).
    pub echoes_sender: bool,
}

/// The HTTP upgrade as a server role sees it: everything a dialect may authenticate or route
/// on. Header names are lowercase.
// Debug is written out at the end of this file: credentials never print.
#[derive(Clone, Default)]
pub struct Handshake {
    /// The request path.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// Request headers, lowercase names, in order.
    pub headers: Vec<(String, Bytes)>,
    /// The subprotocol answered in the upgrade.
    pub subprotocol: Option<&'static str>,
    /// The client's address (the TCP peer).
    pub peer: Option<SocketAddr>,
}

impl Handshake {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The bearer token of the upgrade: the `Authorization` header (its `Bearer ` scheme
    /// stripped), else the `token` query parameter.
    pub fn bearer(&self) -> Option<Bytes> {
        if let Some(v) = self.header("authorization") {
            return Some(strip_bearer(v));
        }
        self.query_param("token").map(Bytes::from)
    }
}

/// `Bearer xyz` → `xyz`; other schemes are passed whole. The one place a bearer scheme is
/// read, for upgrade headers and STOMP CONNECT headers alike.
pub fn strip_bearer(v: &Bytes) -> Bytes {
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case(b"bearer ") => v.slice(7..),
        _ => v.clone(),
    }
}

/// How a client role wants its backend dialed, on top of the route's URL and the dialect's
/// [`Spec::backend_query`] and [`Spec::requests`]: what a backend that authenticates only at
/// the upgrade (Action Cable: cookie, query or header) needs.
// Debug is written out at the end of this file: credentials never print.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Dial {
    /// Appended to the URL's path (Pusher's `/<app_key>` when the URL names none).
    pub path_suffix: String,
    /// Extra query parameters.
    pub query: Vec<(String, String)>,
    /// Extra request headers (`Authorization`, `Cookie`, `Origin`).
    pub headers: Vec<(String, String)>,
}

impl Dial {
    /// The default: the downstream client's cookie and origin go along, as a reverse proxy
    /// forwards them, and nothing else.
    pub fn from_credentials(c: &Credentials) -> Self {
        let mut d = Self::default();
        for (name, v) in [("Cookie", &c.cookie), ("Origin", &c.origin)] {
            if let Some(v) = v.as_ref().and_then(|v| std::str::from_utf8(v).ok()) {
                d.headers.push((name.to_owned(), v.to_owned()));
            }
        }
        d
    }
}

/// One WebSocket data message (or one Engine.IO long-polling packet, which is the same thing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMsg {
    /// A text message; the bytes are valid UTF-8 (unchecked only in what a passthrough's
    /// client sends after a refusal, which is read and dropped and no role sees:
    /// `Frames::relay`).
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

/// What a route's client limits refuse, for the server role to word in its dialect
/// ([`ServerRole::on_refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The session, before it starts: too many connections (from its address, or per
    /// second). The client may try again later.
    Busy,
    /// One message over the client's message or byte rate; it was dropped unread.
    Rate,
}

impl Refusal {
    /// The plain WebSocket close for it: 1013 (try again later) or 1008 (policy violation),
    /// with the reason's text.
    pub fn close(self, reason: &ErrorInfo) -> Close {
        let code = match self {
            Self::Busy => 1013,
            Self::Rate => 1008,
        };
        Close::new(code, String::from_utf8_lossy(&reason.message))
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

/// Messages a role writes for one input: nearly always one, held inline (no allocation).
/// Operations and events stay in vectors: they are five times a message's size, and moving
/// them inline through the session's steps cost more copying than the allocation it saved
/// (callgrind, Socket.IO → Socket.IO).
pub type Msgs = smallvec::SmallVec<[WsMsg; 1]>;

/// What a server role (downstream leg) wants done after handling an input.
#[derive(Debug, Default)]
pub struct ServerOut {
    /// Messages to write to the client, in order.
    pub to_client: Msgs,
    /// Operations for the upstream leg, in order.
    pub ops: Vec<ClientOp>,
    /// Close the client connection after writing `to_client`.
    pub close: Option<Close>,
}

/// What a client role (upstream leg) wants done after handling an input.
#[derive(Debug, Default)]
pub struct ClientOut {
    /// Messages to write to the backend, in order.
    pub to_backend: Msgs,
    /// Events for the downstream leg, in order; delivered after `to_backend` is written.
    pub events: Vec<BackendEvent>,
    /// Close the backend connection after writing `to_backend`.
    pub close: Option<Close>,
    /// Authorizations to fetch from the app's HTTP endpoint; each answer comes back through
    /// [`ClientRole::on_authorized`].
    pub authorize: Vec<AuthRequest>,
}

/// A POST the session makes for a client role (Pusher's `authEndpoint`: the app signs a
/// subscription for the upstream's socket id, with the downstream client's credentials).
// Debug is written out at the end of this file: credentials never print.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The role's own id for it.
    pub id: u64,
    /// `http://` or `https://` URL.
    pub url: String,
    /// The form body (`application/x-www-form-urlencoded`).
    pub form: Vec<(String, String)>,
    /// Request headers (`Authorization`, `Cookie`, as the endpoint expects them).
    pub headers: Vec<(String, String)>,
}

/// The proxy playing the backend for clients of one dialect.
pub trait ServerRole: Send {
    /// The session starts: what to send before the client says anything (Pusher
    /// `connection_established`, Action Cable `welcome`). Most dialects wait.
    fn on_start(&mut self, _now: Instant, _out: &mut ServerOut) {}
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
    /// The client stopped reading: its queue stayed full, or a write made no progress, for
    /// the write timeout. What is still queued is discarded; say why in the dialect's words
    /// where it has some (written best-effort), and close.
    fn on_slow_consumer(&mut self, out: &mut ServerOut) {
        out.close = Some(Close::new(1008, "slow consumer"));
    }
    /// The route's client limits refuse this client (`reason.message` says which limit): the
    /// whole session ([`Refusal::Busy`], called instead of `on_start`, before any upstream),
    /// or one message over its rate ([`Refusal::Rate`], dropped unread). Say so in the
    /// dialect's words where it has some. The default closes: 1013 (try again later) for a
    /// busy route, 1008 (policy) for a rate; a dialect with a non-fatal error for a message
    /// over the rate (Pusher's 4301) may instead answer and go on. Ops asked here are ignored.
    fn on_refused(&mut self, refusal: Refusal, reason: ErrorInfo, out: &mut ServerOut) {
        out.close = Some(refusal.close(&reason));
    }
    /// Negotiated keepalive duties (may change after the handshake).
    fn keepalive(&self) -> Keepalive;
    /// Nothing was sent to the client for `send_every`: the heartbeat to send.
    fn heartbeat(&mut self) -> Option<WsMsg>;
    /// Nothing was received from the client for `expect_within`.
    fn on_peer_silent(&mut self, out: &mut ServerOut);
    /// Fail correlation entries older than their deadline.
    fn expire(&mut self, now: Instant, out: &mut ServerOut);
    /// Payload copies made since the last call (reassembly, escaping, re-encoding), and
    /// their bytes.
    fn take_copied(&mut self) -> Copied {
        Copied::default()
    }
    /// The shape of `ev` as this role would encode it, for a message that an in-process
    /// backend (the embedded hub) delivers to many sessions: two events with equal shapes and
    /// equal payloads encode to the same messages, and encoding one changes no state the role
    /// relies on later, so one session's encoding can be written to the others as is.
    /// `None` (the default): encode it for this session alone.
    fn shape(&self, _ev: &BackendEvent) -> Option<Vec<u8>> {
        None
    }
}

/// Build a shape key (see [`ServerRole::shape`]) from its parts, each length-prefixed so
/// that no two lists of parts give the same key.
pub fn shape_key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        k.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
        k.extend_from_slice(p);
    }
    k
}

/// The proxy playing a client of one dialect toward a backend.
pub trait ClientRole: Send {
    /// How to dial the backend for this session (built from the downstream client's
    /// credentials); asked once, before the dial.
    fn dial(&self) -> Dial {
        Dial::default()
    }
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
    /// The answer to an [`AuthRequest`]: the response body of a 2xx, else why not.
    fn on_authorized(
        &mut self,
        _id: u64,
        _result: Result<Bytes, ErrorInfo>,
        _now: Instant,
        _out: &mut ClientOut,
    ) {
    }
    /// Payload copies made since the last call (reassembly, escaping, re-encoding), and
    /// their bytes.
    fn take_copied(&mut self) -> Copied {
        Copied::default()
    }
}

/// Payload copies a role made, for `switchboard_payload_copies_total` and
/// `switchboard_payload_copied_bytes_total`. Each time payload bytes are written into a new
/// buffer counts one copy of the payload's bytes: the one write of a payload into the frame
/// that carries it (spliced raw, or rewritten as it goes where the wire forces it:
/// JSON-escaped into a string), and any rewrite before that (base64, JSON text in a string,
/// STOMP header unescaping, reassembly of a split frame). A payload passed on as a `Bytes`
/// slice is no copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// How many copies.
    pub copies: u64,
    /// Bytes copied, over all copies.
    pub bytes: u64,
}

impl Copied {
    /// Count one copy of `n` bytes (an empty payload copies nothing and is not counted).
    pub fn one(&mut self, n: usize) {
        if n > 0 {
            self.copies += 1;
            self.bytes += n as u64;
        }
    }

    /// Add `other`'s copies to these.
    pub fn add(&mut self, other: Copied) {
        self.copies += other.copies;
        self.bytes += other.bytes;
    }
}

/// A `Bytes` from a static string, for building wire frames.
pub(crate) fn stat(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Redacting Debug (issue 14): an upgrade, a dial and an authorization POST carry the client's
// credentials (Authorization, Cookie, a token in the query, a subprotocol some clients put a
// token in). Their Debug shows header and parameter names, and values only of headers known to
// carry none.
// ---------------------------------------------------------------------------------------------

/// Header names whose values are printed; every other value is redacted.
const PRINTABLE_HEADERS: [&str; 8] = [
    "host",
    "origin",
    "user-agent",
    "upgrade",
    "connection",
    "sec-websocket-version",
    "content-type",
    "content-length",
];

struct RedactedPairs<'a, V>(&'a [(String, V)]);

impl<V: AsRef<[u8]>> std::fmt::Debug for RedactedPairs<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for (k, v) in self.0 {
            if PRINTABLE_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                l.entry(&(k, String::from_utf8_lossy(v.as_ref())));
            } else {
                l.entry(&(k, crate::frame::Redacted(Some(v.as_ref()))));
            }
        }
        l.finish()
    }
}

/// A query string's parameter names, values redacted.
struct RedactedQuery<'a>(&'a str);

impl std::fmt::Debug for RedactedQuery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for (k, v) in url::form_urlencoded::parse(self.0.as_bytes()) {
            l.entry(&(k, crate::frame::Redacted(Some(v.as_bytes()))));
        }
        l.finish()
    }
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("path", &self.path)
            .field("query", &RedactedQuery(&self.query))
            .field("headers", &RedactedPairs(&self.headers))
            .field("subprotocol", &self.subprotocol)
            .field("peer", &self.peer)
            .finish()
    }
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial")
            .field("path_suffix", &self.path_suffix)
            .field("query", &RedactedPairs(&self.query))
            .field("headers", &RedactedPairs(&self.headers))
            .finish()
    }
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The form is the channel and socket id (and presence data), no secret.
        f.debug_struct("AuthRequest")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("form", &self.form)
            .field("headers", &RedactedPairs(&self.headers))
            .finish()
    }
}

/// Checks shared by the dialects' own tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Instant;

    use bytes::Bytes;

    use super::{ServerOut, ServerRole};
    use crate::frame::{BackendEvent, ClientOp, Payload, SubId};

    /// A role whose clients cannot acknowledge acks for them a delivery whose backend asked
    /// (a Socket.IO emit with a callback, an SC event with a cid): positive once written to
    /// subscription `sub` on `channel`, negative for a subscription it does not have.
    pub(crate) fn assert_the_proxy_acks(role: &mut dyn ServerRole, sub: SubId, channel: &str) {
        for (to, positive, written) in [(Some(sub), true, 1), (Some(sub + 100), false, 0)] {
            let mut out = ServerOut::default();
            let ev = BackendEvent::Message {
                sub: to,
                channel: Bytes::from(channel.to_owned()),
                event: Some(Bytes::from("news")),
                args: vec![],
                payload: Payload::json(Bytes::from(r#"{"a":1}"#)),
                meta: vec![],
                ack: Some(Bytes::from("t-1")),
            };
            role.on_backend(ev, Instant::now(), &mut out);
            assert_eq!(out.to_client.len(), written, "{to:?}");
            let ack = ClientOp::Ack {
                token: Bytes::from("t-1"),
                positive,
                result: None,
            };
            assert_eq!(out.ops, vec![ack], "{to:?}");
        }
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn handshake_dial_and_auth_request_debug_print_no_secret() {
        let hs = Handshake {
            path: "/ws".into(),
            query: "token=SECRET-1&room=7".into(),
            headers: vec![
                (
                    "authorization".into(),
                    Bytes::from_static(b"Bearer SECRET-2"),
                ),
                ("cookie".into(), Bytes::from_static(b"sid=SECRET-3")),
                (
                    "sec-websocket-protocol".into(),
                    Bytes::from_static(b"v12.stomp, SECRET-4"),
                ),
                ("origin".into(), Bytes::from_static(b"https://app.example")),
            ],
            ..Handshake::default()
        };
        let dial = Dial {
            path_suffix: String::new(),
            query: vec![("token".into(), "SECRET-5".into())],
            headers: vec![("Cookie".into(), "sid=SECRET-6".into())],
        };
        let auth = AuthRequest {
            id: 1,
            url: "http://127.0.0.1/auth".into(),
            form: vec![("channel_name".into(), "private-a".into())],
            headers: vec![("Authorization".into(), "Bearer SECRET-7".into())],
        };
        let printed = format!("{hs:?} {dial:?} {auth:#?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(printed.contains("https://app.example"), "{printed}");
        assert!(printed.contains("room"), "{printed}");
    }
}
