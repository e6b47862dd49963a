//! Configuration: figment layering (built-in defaults, then the TOML file, then
//! `SWITCHBOARD_*` environment variables), validation, and the `check` report.
//!
//! Owns: the config types, their defaults and `validate()`. Every key is documented in the
//! shipped `config.toml`.
//!
//! Must not touch: sockets, files other than the config file itself, TLS material (only
//! checks that paths are set in pairs), any protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::dialect::Dialect;

/// A config that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key is missing, of the wrong type, unknown, or its value is invalid.
    #[error("{}", format_invalid(.key, .line, .reason))]
    Invalid {
        /// Dotted key path, e.g. `route[0].upstream.url`.
        key: String,
        /// 1-based line in the TOML file, when known.
        line: Option<usize>,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// An invalid value at dotted `key`, located in the file's `text` where it is written:
    /// for checks made above this module (the dialect registry's).
    pub fn at(text: &str, key: String, reason: String) -> Self {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        let (line, reason) = place(text, &path, reason);
        Self::Invalid { key, line, reason }
    }
}

/// Where a bad value was set: the environment variable that set it (the file's line would
/// point at a value that is not the one in force), else its line in the file.
fn place(text: &str, path: &[String], reason: String) -> (Option<usize>, String) {
    let var = format!("SWITCHBOARD_{}", path.join("__").to_ascii_uppercase());
    if !path.is_empty() && std::env::var_os(&var).is_some() {
        return (None, format!("{reason} (set by {var})"));
    }
    (locate(text, path), reason)
}

fn format_invalid(key: &str, line: &Option<usize>, reason: &str) -> String {
    match line {
        Some(l) => format!("key `{key}` (line {l}): {reason}"),
        None => format!("key `{key}`: {reason}"),
    }
}

/// The top-level keys the environment layer may set. Other `SWITCHBOARD_*` variables are
/// not ours to refuse (Kubernetes sets `SWITCHBOARD_PORT` and the like for a Service named
/// `switchboard`); a wrong key inside one of these tables is still refused.
const ENV_TABLES: &[&str] = &[
    "admin", "limits", "shutdown", "log", "route", "listen", "hub",
];

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The admin listener.
    pub admin: Admin,
    /// Process-wide limits.
    pub limits: Limits,
    /// Graceful shutdown.
    pub shutdown: Shutdown,
    /// Log settings.
    pub log: Log,
    /// Routes; several may share a `listen` address with different paths.
    #[serde(rename = "route")]
    pub routes: Vec<Route>,
    /// When set, every route listens here instead of on its own `listen`: meant for the
    /// environment layer (`SWITCHBOARD_LISTEN=127.0.0.1:8181`), to move a shipped config's
    /// routes without editing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The embedded hub across instances.
    pub hub: HubConfig,
}

/// `[admin]`: serves `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// Address of the admin HTTP listener.
    pub listen: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// `[limits]`: apply to every listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections accepted at once, over all listeners; more wait in the kernel backlog.
    pub max_connections: usize,
    /// The TLS handshake must finish within this many milliseconds, then each HTTP request's
    /// head (the upgrade, a long-polling request) within as long again.
    pub handshake_timeout_ms: u64,
    /// Largest WebSocket message accepted from either peer, in bytes.
    pub max_message_size: usize,
    /// Messages queued toward one peer before the sender waits (backpressure).
    pub queue_depth: usize,
    /// Bytes queued toward one peer before the sender waits (at least one message is
    /// admitted whatever its size).
    pub queue_bytes: usize,
    /// A queued message that cannot be written for this long ends the session (a client
    /// that stopped reading is closed as a slow consumer).
    pub write_timeout_ms: u64,
    /// A leg whose protocol has no heartbeat (STOMP with `heart-beat:0,0`) gets a WebSocket
    /// ping after this many ms of silence and is closed after twice this; 0 turns it off.
    pub idle_ping_ms: u64,
    /// Bytes each WebSocket reads from its socket at once (both legs). tungstenite's 128 KiB
    /// default, twice per proxied client, was most of an idle client's memory.
    pub read_buffer_bytes: usize,
    /// Bytes of encoded frames each WebSocket gathers before writing them to its socket (both
    /// legs); a flush writes what is gathered whatever its size. The buffer keeps the
    /// capacity its largest burst needed, up to this plus one message, so it is also what a
    /// client that was once busy keeps. tungstenite's default is 128 KiB.
    pub write_buffer_bytes: usize,
    /// Threads that run connections and their sessions, each a single-threaded runtime a
    /// connection stays on from accept to end (0: one per core). Read at start.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout_ms: 10_000,
            max_message_size: 1_048_576,
            queue_depth: 256,
            queue_bytes: 8 << 20,
            write_timeout_ms: 10_000,
            idle_ping_ms: 30_000,
            read_buffer_bytes: 2048,
            write_buffer_bytes: 8192,
            workers: 0,
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shutdown {
    /// After SIGTERM/SIGINT, sessions get this long to close before they are dropped.
    pub grace_period_ms: u64,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            grace_period_ms: 10_000,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// Switchboard's own level (`info`, `debug`, `trace`, ...), or directives for its own
    /// modules (`info,switchboard::session=debug`). Third-party crates stay at `warn`.
    /// `RUST_LOG`, when set, replaces it (read the same way).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Directives for third-party targets, by name (`tungstenite=debug,rustls=info`); they
    /// are never logged at `trace`, whose output carries wire bytes and credentials.
    pub filter: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
            filter: String::new(),
        }
    }
}

/// How a route handles messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Terminate both legs and translate every frame.
    #[default]
    Translate,
    /// Forward WebSocket messages unchanged (same dialect only); the performance baseline.
    Passthrough,
}

/// `[[route]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name; used as the `route` metric label.
    pub name: String,
    /// Listener address; routes may share one.
    pub listen: SocketAddr,
    /// HTTP path of the WebSocket endpoint (exact match, query ignored); empty: the client
    /// dialect's default path, filled in by the dialect registry.
    #[serde(default)]
    pub path: String,
    /// The dialect clients speak.
    pub client: Dialect,
    /// `translate` or `passthrough`.
    #[serde(default)]
    pub mode: Mode,
    /// TLS for this listener.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// The backend.
    pub upstream: Upstream,
    /// STOMP server-role settings (when `client = "stomp"`).
    #[serde(default)]
    pub stomp: StompServer,
    /// Socket.IO server-role settings (when `client = "socketio"`).
    #[serde(default)]
    pub socketio: SocketioServer,
    /// Pusher server-role settings (when `client = "pusher"`).
    #[serde(default)]
    pub pusher: PusherServer,
    /// SocketCluster server-role settings (when `client = "socketcluster"`).
    #[serde(default)]
    pub socketcluster: SocketclusterServer,
    /// Action Cable server-role settings (when `client = "actioncable"`).
    #[serde(default)]
    pub actioncable: ActioncableServer,
    /// Channel/event templates, tried in order before the defaults.
    #[serde(default, rename = "map")]
    pub maps: Vec<MapRule>,
    /// Edge authentication: a JWT every client must present (see [`RouteAuth`]).
    #[serde(default)]
    pub auth: Option<RouteAuth>,
    /// What one client may do on this route, and which pages may open it.
    #[serde(default)]
    pub client_limits: ClientLimits,
}

/// `[route.tls]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[route.upstream]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The backend's endpoint as its users know it (`ws://`, `wss://`); none for the
    /// embedded hub (`dialect = "hub"`).
    #[serde(default)]
    pub url: String,
    /// The dialect the backend speaks.
    pub dialect: Dialect,
    /// Dial + WebSocket handshake + protocol handshake must finish within this.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Extra CA certificates (PEM) for `wss://`; the system roots are always trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Wait for the backend's own ack (Socket.IO ack, STOMP RECEIPT) before confirming a
    /// publish to the client; otherwise confirm once written upstream.
    #[serde(default)]
    pub acks: bool,
    /// Pending acks/receipts fail after this long.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_ms: u64,
    /// Socket.IO upstream: the namespace to join.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// STOMP upstream: heart-beat we offer, `send,receive` in ms.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: (u64, u64),
    /// STOMP upstream: the `host` header (virtual host).
    #[serde(default)]
    pub vhost: Option<String>,
    /// STOMP upstream: `auto` or `client-individual` (each message acked: by the STOMP
    /// client's own ACK, or by the proxy once delivered to other dialects).
    #[serde(default = "default_ack_mode")]
    pub ack_mode: String,
    /// How the client's credentials are presented upstream.
    #[serde(default)]
    pub credentials: UpstreamCredentials,
    /// Pusher upstream: the app secret that signs private and presence subscriptions for
    /// the upstream's socket id.
    #[serde(default)]
    pub app_secret: Option<String>,
    /// Pusher upstream: the app's authorization endpoint (the vendor's `authEndpoint`),
    /// POSTed `socket_id` and `channel_name` with the client's bearer token and cookie when
    /// a private or presence subscription needs a signature and there is no `app_secret`.
    #[serde(default)]
    pub auth_endpoint: Option<String>,
    /// SocketCluster upstream: the server's protocol, 1 (SocketCluster ≤ 14) or 2; unset:
    /// learnt from its first ping.
    #[serde(default)]
    pub protocol_version: Option<u8>,
    /// Action Cable upstream: the `Origin` sent on the upgrade (Rails refuses upgrades
    /// without an allowed one); unset: the client's own.
    #[serde(default)]
    pub origin: Option<String>,
    /// Action Cable upstream: the broadcast field whose string names the event.
    #[serde(default = "default_event_field")]
    pub event_field: String,
}

fn default_event_field() -> String {
    "event".into()
}

/// `[route.upstream.credentials]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamCredentials {
    /// Where the client's bearer token goes: `passcode` (STOMP CONNECT, login from
    /// `login`), `authorization` (STOMP CONNECT header, or the Action Cable upgrade's
    /// `Authorization: Bearer <token>`), `query:<name>` or `cookie:<name>` (Action Cable
    /// upgrade), or `none`.
    pub token_as: Option<String>,
    /// STOMP upstream: fixed login to use (when the client gave none).
    pub login: Option<String>,
    /// STOMP upstream: fixed passcode to use (when the client gave none).
    pub passcode: Option<String>,
}

/// `[route.stomp]`: the STOMP server role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StompServer {
    /// Heart-beat the proxy offers, `send,receive` in ms (CONNECTED `heart-beat`).
    pub heartbeat_ms: (u64, u64),
    /// Largest STOMP frame, in bytes.
    pub max_frame_size: usize,
    /// Most headers in one frame.
    pub max_headers: usize,
    /// Longest header line, in bytes.
    pub max_header_len: usize,
    /// Most subscriptions per session.
    pub max_subscriptions: usize,
    /// The client must send CONNECT within this many ms.
    pub connect_timeout_ms: u64,
}

impl Default for StompServer {
    fn default() -> Self {
        Self {
            heartbeat_ms: (10_000, 10_000),
            max_frame_size: 1_048_576,
            max_headers: 64,
            max_header_len: 8192,
            max_subscriptions: 256,
            connect_timeout_ms: 10_000,
        }
    }
}

/// `[route.socketio]`: the Socket.IO server role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketioServer {
    /// Engine.IO `pingInterval`.
    pub ping_interval_ms: u64,
    /// Engine.IO `pingTimeout`.
    pub ping_timeout_ms: u64,
    /// Engine.IO `maxPayload`: the long-polling body limit and, on translating routes, the
    /// WebSocket message limit.
    pub max_payload: usize,
    /// Namespaces this route serves.
    pub namespaces: Vec<String>,
    /// Browser origins allowed (CORS for long-polling, and WebSocket upgrades) besides the
    /// listener's own (same host:port as the `Host` header); `*` allows any, without
    /// credentials.
    pub cors_origins: Vec<String>,
    /// Most binary attachments in one packet.
    pub max_attachments: usize,
    /// A namespace CONNECT must arrive within this many ms.
    pub connect_timeout_ms: u64,
    /// Subscriptions made at connect: destination templates filled from the handshake's
    /// `auth` and `query`, e.g. `/v1/topic/conversation/{conversation}`.
    pub auto_subscribe: Vec<String>,
    /// Most Engine.IO packets in one long-polling POST body; more is a 400 that ends the
    /// session.
    pub max_packets_per_post: usize,
}

impl Default for SocketioServer {
    fn default() -> Self {
        Self {
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            max_payload: 1_000_000,
            namespaces: vec!["/".into()],
            cors_origins: Vec::new(),
            max_attachments: 10,
            connect_timeout_ms: 45_000,
            auto_subscribe: Vec::new(),
            max_packets_per_post: 1024,
        }
    }
}

/// `[route.pusher]`: the Pusher server role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PusherServer {
    /// The app key clients connect with (`<path>/<app_key>`); required on Pusher routes.
    pub app_key: String,
    /// The app secret that signs channel authorizations; required on Pusher routes.
    pub app_secret: String,
    /// Seconds of silence before a ping (announced in `connection_established`); a client
    /// that then stays silent 30 s more is closed with 4201. 0: Pusher's 120.
    pub activity_timeout: u64,
}

/// `[route.socketcluster]`: the SocketCluster server role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketclusterServer {
    /// The protocol clients speak: 1 (socketcluster-client ≤ 14, the v9-era clients) or 2.
    pub protocol_version: u8,
    /// A ping every this many ms.
    pub ping_interval_ms: u64,
    /// A client that answers no ping for this many ms is closed with 4001 (also sent in the
    /// handshake answer as `pingTimeout`).
    pub ping_timeout_ms: u64,
}

impl Default for SocketclusterServer {
    fn default() -> Self {
        Self {
            protocol_version: 1,
            ping_interval_ms: 8000,
            ping_timeout_ms: 20_000,
        }
    }
}

/// `[route.actioncable]`: the Action Cable server role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActioncableServer {
    /// Origins allowed to connect; when set, an upgrade without one of them gets HTTP 404,
    /// as Rails answers it. Empty: any.
    pub allowed_origins: Vec<String>,
}

/// `[[route.map]]`: one template pair. `{name}` captures one path segment (no `/`), and
/// the same names fill the other side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRule {
    /// Template in the client's dialect (STOMP destination, Socket.IO event).
    pub client: String,
    /// Template in the upstream's dialect.
    pub upstream: String,
    /// Leading event arguments filled from captures (Socket.IO upstream): a fixed event name
    /// with the id carried in the payload's argument list instead of the name.
    #[serde(default)]
    pub upstream_args: Vec<String>,
    /// Deliveries on this rule's subscriptions name their event after the single top-level
    /// key of the JSON body and carry that key's value (`{"message":{..}}` → event
    /// `message` with `{..}`), as STOMP backends that key events by name send them.
    #[serde(default)]
    pub event_from_key: bool,
    /// Parameters of the client's subscription, matched like `client` (an Action Cable
    /// identifier's keys besides `channel`: `client_params = { id = "{id}" }`).
    #[serde(default)]
    pub client_params: std::collections::BTreeMap<String, String>,
    /// Parameters of the upstream subscription, filled from the captures (an Action Cable
    /// identifier: `upstream = "Chats::RoomChannel"`, `upstream_params = { id = "{id}" }`).
    #[serde(default)]
    pub upstream_params: std::collections::BTreeMap<String, String>,
}

/// The signature algorithm of `[route.auth]` tokens; a token signed otherwise is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC SHA-256 with a shared `secret`.
    HS256,
    /// RSASSA-PKCS1-v1_5 SHA-256, verified with an RSA `public_key_file`.
    RS256,
    /// ECDSA P-256 SHA-256, verified with an EC `public_key_file`.
    ES256,
}

/// `[route.auth]`: a JWT verified at the edge, before any upstream is dialed. Its claims
/// become the session's verified identity (`sub`, `info`, `channels`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: JwtAlgorithm,
    /// HS256: the shared secret (or use `secret_env`).
    #[serde(default)]
    pub secret: Option<String>,
    /// HS256: the environment variable holding the shared secret, read at startup.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RS256/ES256: a PEM file with the public key (`PUBLIC KEY`, or `RSA PUBLIC KEY`).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// The `iss` tokens must carry; unset: not checked.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The `aud` tokens must carry; unset: tokens with an `aud` claim are refused.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Clients without a token are refused; `false` lets them in without an identity (a
    /// token that is present must still be valid).
    #[serde(default = "default_true")]
    pub required: bool,
    /// The verified token still goes to the backend where its dialect carries one.
    #[serde(default = "default_true")]
    pub forward_token: bool,
    /// A cookie of the upgrade to take the token from when the client's dialect carries
    /// none (Action Cable clients, browsers).
    #[serde(default)]
    pub cookie: Option<String>,
}

fn default_leeway() -> u64 {
    60
}
fn default_true() -> bool {
    true
}

fn default_connect_timeout() -> u64 {
    5_000
}
fn default_ack_timeout() -> u64 {
    10_000
}
fn default_ack_mode() -> String {
    "auto".into()
}
fn default_namespace() -> String {
    "/".into()
}
fn default_heartbeat() -> (u64, u64) {
    (10_000, 10_000)
}

impl Limits {
    /// Handshake timeout as a `Duration`.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    /// Write timeout as a `Duration`.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    /// The idle WebSocket ping interval, `None` when off.
    pub fn idle_ping(&self) -> Option<Duration> {
        (self.idle_ping_ms > 0).then(|| Duration::from_millis(self.idle_ping_ms))
    }
}

impl Config {
    /// Parse TOML text (layered over defaults and under the environment) and validate.
    pub fn from_toml_with_env(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with_env(text)?.validate(text)
    }

    /// Parse TOML text layered over defaults and under the environment, without the checks
    /// of [`Config::validate`] (the dialect registry fills its defaults in between).
    pub fn parse_with_env(text: &str) -> Result<Self, ConfigError> {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .merge(Env::prefixed("SWITCHBOARD_").split("__").filter(|k| {
                ENV_TABLES.iter().any(|t| {
                    k.as_str()
                        .split('.')
                        .next()
                        .is_some_and(|h| h.eq_ignore_ascii_case(t))
                })
            }));
        Self::extract(figment, text)
    }

    /// Parse TOML text without the environment layer (tests, `check` of a pure file).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text)?.validate(text)
    }

    /// [`Config::parse_with_env`] without the environment layer.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        Self::extract(figment, text)
    }

    fn extract(figment: Figment, text: &str) -> Result<Self, ConfigError> {
        figment.extract().map_err(|e| {
            let key = if e.path.is_empty() {
                "<root>".to_owned()
            } else {
                e.path.join(".")
            };
            let (line, reason) = place(text, &e.path, e.kind.to_string());
            ConfigError::Invalid { key, line, reason }
        })
    }

    /// Semantic checks that types alone cannot express and that need no dialect knowledge
    /// (the dialect registry checks the rest from above).
    pub fn validate(self, text: &str) -> Result<Self, ConfigError> {
        let bad = |key: String, reason: String| ConfigError::at(text, key, reason);
        if self.routes.is_empty() {
            return Err(bad(
                "route".into(),
                "at least one [[route]] is required".into(),
            ));
        }
        let mut names = HashMap::new();
        let mut paths = HashMap::new();
        let mut tls_by_addr: HashMap<SocketAddr, Option<(PathBuf, PathBuf)>> = HashMap::new();
        for (i, r) in self.routes.iter().enumerate() {
            let k = |field: &str| format!("route.{i}.{field}");
            if r.name.is_empty() {
                return Err(bad(k("name"), "must not be empty".into()));
            }
            if names.insert(r.name.clone(), i).is_some() {
                return Err(bad(k("name"), format!("duplicate route name `{}`", r.name)));
            }
            if !r.path.starts_with('/') {
                return Err(bad(k("path"), "must start with `/`".into()));
            }
            if let Some(j) = paths.insert((r.listen, r.path.clone()), i) {
                return Err(bad(
                    k("path"),
                    format!("route {j} already serves {} on {}", r.path, r.listen),
                ));
            }
            if r.listen == self.admin.listen {
                return Err(bad(k("listen"), "is the admin listener's address".into()));
            }
            let tls = r.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone()));
            match tls_by_addr.get(&r.listen) {
                Some(prev) if *prev != tls => {
                    return Err(bad(
                        k("tls"),
                        format!("routes sharing {} must use the same TLS settings", r.listen),
                    ));
                }
                _ => {
                    tls_by_addr.insert(r.listen, tls);
                }
            }
            if r.upstream.dialect == Dialect::Hub {
                // The embedded hub runs in process: nothing to dial, nothing to pass through.
                if !r.upstream.url.is_empty() {
                    return Err(bad(
                        k("upstream.url"),
                        "the hub runs in process and has no url".into(),
                    ));
                }
                if r.mode == Mode::Passthrough {
                    return Err(bad(k("mode"), "the hub cannot be passed through to".into()));
                }
            } else {
                let url = url::Url::parse(&r.upstream.url)
                    .map_err(|e| bad(k("upstream.url"), format!("not a URL: {e}")))?;
                if !matches!(url.scheme(), "ws" | "wss") {
                    return Err(bad(k("upstream.url"), "scheme must be ws or wss".into()));
                }
                if url.host_str().is_none() {
                    return Err(bad(k("upstream.url"), "has no host".into()));
                }
            }
            if r.mode == Mode::Passthrough && r.client != r.upstream.dialect {
                return Err(bad(
                    k("mode"),
                    "passthrough needs client and upstream.dialect to be the same".into(),
                ));
            }
            if let Some(t) = r.upstream.credentials.token_as.as_deref() {
                let named = |p: &str| t.strip_prefix(p).is_some_and(|n| !n.is_empty());
                if !(matches!(t, "passcode" | "authorization" | "none")
                    || named("query:")
                    || named("cookie:"))
                {
                    return Err(bad(
                        k("upstream.credentials.token_as"),
                        "must be `passcode`, `authorization`, `none`, `query:<name>` or `cookie:<name>`"
                            .into(),
                    ));
                }
            }
            if !matches!(r.upstream.ack_mode.as_str(), "auto" | "client-individual") {
                return Err(bad(
                    k("upstream.ack_mode"),
                    "must be `auto` or `client-individual`".into(),
                ));
            }
            if !r.upstream.namespace.starts_with('/') {
                return Err(bad(k("upstream.namespace"), "must start with `/`".into()));
            }
            if r.socketio.namespaces.iter().any(|n| !n.starts_with('/')) {
                return Err(bad(
                    k("socketio.namespaces"),
                    "each must start with `/`".into(),
                ));
            }
            for (m, rule) in r.maps.iter().enumerate() {
                let client_params: Vec<String> = rule.client_params.values().cloned().collect();
                let mut upstream_extra = rule.upstream_args.clone();
                upstream_extra.extend(rule.upstream_params.values().cloned());
                if let Err(why) = crate::template::Template::check_pair(
                    &rule.client,
                    &client_params,
                    &rule.upstream,
                    &upstream_extra,
                ) {
                    return Err(bad(format!("route.{i}.map.{m}"), why));
                }
            }
            if r.socketio.max_packets_per_post == 0 {
                return Err(bad(
                    k("socketio.max_packets_per_post"),
                    "must be at least 1".into(),
                ));
            }
            for t in &r.socketio.auto_subscribe {
                if let Err(why) = crate::template::Template::parse(t) {
                    return Err(bad(k("socketio.auto_subscribe"), why));
                }
            }
            if let Some(a) = &r.auth {
                a.validate().map_err(|(key, why)| bad(k(key), why))?;
                if r.mode == Mode::Passthrough {
                    return Err(bad(
                        k("auth"),
                        "needs mode = \"translate\": a passthrough route does not read the client's frames, where its token is".into(),
                    ));
                }
            }
        }
        // A zero here is accepted by the types and then breaks every connection (a timeout
        // that fires at once, a message limit nothing fits); a huge one panics where the
        // value sizes a semaphore or a channel.
        let limits = &self.limits;
        let mut bounded: Vec<(String, u64, u64, u64)> = vec![
            bound(
                "limits.max_connections",
                limits.max_connections,
                1,
                MAX_COUNT,
            ),
            bound("limits.queue_depth", limits.queue_depth, 1, MAX_COUNT),
            bound(
                "limits.handshake_timeout_ms",
                limits.handshake_timeout_ms,
                1,
                MAX_MS,
            ),
            bound(
                "limits.write_timeout_ms",
                limits.write_timeout_ms,
                1,
                MAX_MS,
            ),
            bound(
                "limits.max_message_size",
                limits.max_message_size,
                1,
                MAX_BYTES,
            ),
            bound("limits.queue_bytes", limits.queue_bytes, 1, MAX_BYTES),
            bound(
                "limits.read_buffer_bytes",
                limits.read_buffer_bytes,
                512,
                MAX_BYTES,
            ),
            bound(
                "limits.write_buffer_bytes",
                limits.write_buffer_bytes,
                1,
                MAX_BYTES,
            ),
            bound("limits.idle_ping_ms", limits.idle_ping_ms, 0, MAX_MS),
            bound(
                "shutdown.grace_period_ms",
                self.shutdown.grace_period_ms,
                0,
                MAX_MS,
            ),
        ];
        for (i, r) in self.routes.iter().enumerate() {
            let up = &r.upstream;
            let k = |field: &str| format!("route.{i}.upstream.{field}");
            bounded.push(bound(
                &k("connect_timeout_ms"),
                up.connect_timeout_ms,
                1,
                MAX_MS,
            ));
            bounded.push(bound(&k("ack_timeout_ms"), up.ack_timeout_ms, 1, MAX_MS));
        }
        for (key, value, min, max) in bounded {
            if !(min..=max).contains(&value) {
                return Err(bad(key, format!("must be between {min} and {max}")));
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(bad("log.format".into(), "must be `text` or `json`".into()));
        }
        for (i, r) in self.routes.iter().enumerate() {
            r.client_limits
                .check()
                .map_err(|(field, why)| bad(format!("route.{i}.client_limits.{field}"), why))?;
        }
        if let Err(e) = crate::logging::directives(&self.log.level, &self.log.filter) {
            return Err(bad(format!("log.{}", e.key()), e.to_string()));
        }
        self.hub.validate(&self.routes, text)?;
        Ok(self)
    }
}

/// Counts that size a semaphore or a channel: far above any machine's descriptors, far
/// below tokio's limit (`usize::MAX >> 3`).
const MAX_COUNT: u64 = 1 << 24;
/// A day: longer than any timeout or interval means something else was meant.
const MAX_MS: u64 = 86_400_000;
/// 1 GiB: no message or buffer of a proxied session is meant to be larger.
const MAX_BYTES: u64 = 1 << 30;

/// A numeric setting with its allowed range, for [`Config::validate`].
fn bound(key: &str, value: impl TryInto<u64>, min: u64, max: u64) -> (String, u64, u64, u64) {
    (
        key.to_owned(),
        value.try_into().unwrap_or(u64::MAX),
        min,
        max,
    )
}

/// The most clock-skew leeway a token may be given, in seconds.
const MAX_LEEWAY_SECS: u64 = 3600;

impl RouteAuth {
    /// The checks that need no file or environment: the key material fits the algorithm.
    /// Reading the key (`public_key_file`, `secret_env`) is [`crate::auth`]'s.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        // Leeway for clock skew is seconds; more than an hour is a mistake (milliseconds
        // meant), and near u64 seconds the verifier's arithmetic overflows.
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err((
                "auth.leeway_secs",
                format!("must be at most {MAX_LEEWAY_SECS} (seconds)"),
            ));
        }
        match self.algorithm {
            JwtAlgorithm::HS256 => {
                if self.public_key_file.is_some() {
                    return Err((
                        "auth.public_key_file",
                        "HS256 verifies with a shared `secret`, not a public key".into(),
                    ));
                }
                match (&self.secret, &self.secret_env) {
                    (Some(_), Some(_)) => Err((
                        "auth.secret_env",
                        "set either `secret` or `secret_env`, not both".into(),
                    )),
                    (None, None) => {
                        Err(("auth.secret", "HS256 needs `secret` or `secret_env`".into()))
                    }
                    (Some(s), None) if s.is_empty() => {
                        Err(("auth.secret", "must not be empty".into()))
                    }
                    (None, Some(e)) if e.is_empty() => Err((
                        "auth.secret_env",
                        "must name an environment variable".into(),
                    )),
                    _ => Ok(()),
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                if self.secret.is_some() || self.secret_env.is_some() {
                    let key = if self.secret.is_some() {
                        "auth.secret"
                    } else {
                        "auth.secret_env"
                    };
                    return Err((
                        key,
                        format!(
                            "{:?} verifies with `public_key_file`, not a shared secret",
                            self.algorithm
                        ),
                    ));
                }
                match &self.public_key_file {
                    None => Err((
                        "auth.public_key_file",
                        format!("{:?} needs `public_key_file` (PEM)", self.algorithm),
                    )),
                    Some(p) if p.as_os_str().is_empty() => {
                        Err(("auth.public_key_file", "must not be empty".into()))
                    }
                    Some(_) => Ok(()),
                }
            }
        }?;
        if self.issuer.as_deref() == Some("") {
            return Err((
                "auth.issuer",
                "must not be empty (leave it out instead)".into(),
            ));
        }
        if self.audience.as_deref() == Some("") {
            return Err((
                "auth.audience",
                "must not be empty (leave it out instead)".into(),
            ));
        }
        if self.cookie.as_deref() == Some("") {
            return Err(("auth.cookie", "must name a cookie".into()));
        }
        Ok(())
    }
}

/// `[route.client_limits]`: per-client limits of one route and its `Origin` allowlist. Every
/// number is off at 0. Not the process-wide `[limits]` (sizes, queues, timeouts).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientLimits {
    /// Sessions one source address (an IPv6 client's /64) may have open at once on the route.
    pub connections_per_address: u32,
    /// New sessions per second on the whole route (a burst of one second's worth).
    pub connections_per_second: u32,
    /// New sessions per second from one source address (its /64 for IPv6).
    pub connections_per_second_per_address: u32,
    /// Source addresses whose connection rate is tracked at once: the bound on that table's
    /// memory. Addresses idle for a second are forgotten first; when it is still full, new
    /// addresses are held only to `connections_per_second`.
    pub tracked_addresses: usize,
    /// WebSocket messages per second one client may send (a burst of one second's worth).
    pub messages_per_second: u32,
    /// Message bytes per second one client may send (a burst of one second's worth, or of one
    /// largest message when that is more).
    pub bytes_per_second: u32,
    /// Browser origins (`https://app.example.com`) whose pages may connect; a request with any
    /// other `Origin` is refused with HTTP 403. Empty: any. Requests without an `Origin`
    /// (clients that are not browsers, which could send any) pass.
    pub allowed_origins: Vec<String>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            connections_per_address: 0,
            connections_per_second: 0,
            connections_per_second_per_address: 0,
            tracked_addresses: 65_536,
            messages_per_second: 0,
            bytes_per_second: 0,
            allowed_origins: Vec::new(),
        }
    }
}

impl ClientLimits {
    /// `Err((field, why))` when a value cannot be used.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.tracked_addresses == 0 {
            return Err(("tracked_addresses", "must be at least 1".into()));
        }
        for o in &self.allowed_origins {
            if !is_origin(o) {
                return Err((
                    "allowed_origins",
                    format!(
                        "`{o}` is not an origin: scheme://host[:port], no path or trailing `/`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `s` is a serialized origin as browsers send it in `Origin`.
pub(crate) fn is_origin(s: &str) -> bool {
    let Ok(u) = url::Url::parse(s) else {
        return false;
    };
    u.host_str().is_some()
        && u.path() == "/"
        && !s.ends_with('/')
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
}

/// Find the 1-based line of a key path in TOML text, following `[table]`, `[[array]]`
/// headers and array indexes well enough for error messages. Best effort: `None` when the
/// key is not written in the file (a default or an environment value).
fn locate(text: &str, path: &[String]) -> Option<usize> {
    let path: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    let mut table: Vec<String> = Vec::new();
    let mut counters: HashMap<String, usize> = HashMap::new();
    let mut best: Option<(usize, usize)> = None; // (match length, line)
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let idx = counters.entry(name.clone()).or_insert(0);
            let mut segs: Vec<String> = name.split('.').map(str::to_owned).collect();
            segs.push(idx.to_string());
            *idx += 1;
            // Nested arrays under an indexed parent: reset children counters.
            counters.retain(|k, _| !k.starts_with(&format!("{name}.")));
            table = expand_parent(&segs, &counters);
            consider(&mut best, &path, &table, n + 1);
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            let segs: Vec<String> = name.trim().split('.').map(str::to_owned).collect();
            table = expand_parent(&segs, &counters);
            consider(&mut best, &path, &table, n + 1);
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let mut full = table.clone();
            full.extend(
                key.trim()
                    .split('.')
                    .map(|s| s.trim().trim_matches('"').to_owned()),
            );
            consider(&mut best, &path, &full, n + 1);
        }
    }
    best.map(|(_, l)| l)
}

/// Insert the current index of every enclosing array-of-tables (`route` in
/// `route.upstream`) so table paths line up with figment's `route.0.upstream`.
fn expand_parent(segs: &[String], counters: &HashMap<String, usize>) -> Vec<String> {
    let mut out = Vec::new();
    let mut prefix = String::new();
    let last = segs.len().saturating_sub(1);
    for (i, s) in segs.iter().enumerate() {
        out.push(s.clone());
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(s);
        if i < last
            && let Some(c) = counters.get(&prefix)
            && segs.get(i + 1).is_none_or(|n| n.parse::<usize>().is_err())
        {
            out.push(c.saturating_sub(1).to_string());
        }
    }
    out
}

fn consider(best: &mut Option<(usize, usize)>, want: &[&str], have: &[String], line: usize) {
    let common = want
        .iter()
        .zip(have.iter())
        .take_while(|(a, b)| **a == b.as_str())
        .count();
    if common == 0 || common < have.len() {
        return;
    }
    match best {
        Some((len, _)) if *len >= common => {}
        _ => *best = Some((common, line)),
    }
}

/// `[hub]`: the embedded hub across several Switchboard instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// `redis://[user:password@]host:port[/db]`: every instance with the same Redis (and
    /// prefix) is one hub: publishes reach subscribers on every instance and presence
    /// membership is shared. Unset: the hub is local to the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys and the pub/sub channel, so several hubs can share a Redis.
    pub redis_prefix: String,
    /// An instance whose heartbeat is older than this is dead: the others remove its presence
    /// members within `instance_ttl_ms * 4 / 3` of its death (heartbeats and sweeps run every
    /// third of it).
    pub instance_ttl_ms: u64,
    /// Publishes and presence changes queued toward Redis; when full (or while Redis is down)
    /// publishes are delivered locally only and counted as dropped.
    pub redis_queue: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_prefix: "switchboard".into(),
            instance_ttl_ms: 10_000,
            redis_queue: 4096,
        }
    }
}

impl HubConfig {
    /// The instance TTL as a `Duration`.
    pub fn instance_ttl(&self) -> Duration {
        Duration::from_millis(self.instance_ttl_ms)
    }

    fn validate(&self, routes: &[Route], text: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| ConfigError::at(text, key.into(), reason.into());
        let Some(u) = self.redis_url.as_deref() else {
            return Ok(());
        };
        let url =
            url::Url::parse(u).map_err(|e| bad("hub.redis_url", &format!("not a URL: {e}")))?;
        match url.scheme() {
            "redis" => {}
            "rediss" => {
                return Err(bad(
                    "hub.redis_url",
                    "TLS to Redis is not built in: use redis:// (on loopback or a private network)",
                ));
            }
            _ => return Err(bad("hub.redis_url", "scheme must be redis")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("hub.redis_url", "has no host"));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(bad("hub.redis_url", "the path must be a database number"));
        }
        if !routes.iter().any(|r| r.upstream.dialect == Dialect::Hub) {
            return Err(bad(
                "hub.redis_url",
                "no route's upstream is the hub (`[route.upstream] dialect = \"hub\"`)",
            ));
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err(bad(
                "hub.redis_prefix",
                "must be non-empty and without whitespace",
            ));
        }
        if self.instance_ttl_ms < 300 {
            return Err(bad("hub.instance_ttl_ms", "must be at least 300"));
        }
        if self.redis_queue == 0 {
            return Err(bad("hub.redis_queue", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The environment layer lets through exactly the config's own top-level keys.
    #[test]
    fn env_tables_are_the_top_level_keys() {
        let config = Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 1))),
            ..Config::default()
        };
        let value = serde_json::to_value(&config).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut tables = ENV_TABLES.to_vec();
        tables.sort_unstable();
        assert_eq!(keys, tables);
    }

    pub(crate) const MINIMAL: &str = r#"
[admin]
listen = "127.0.0.1:9191"

[[route]]
name = "chat"
listen = "127.0.0.1:8181"
path = "/ws"
client = "stomp"

[route.upstream]
url = "ws://127.0.0.1:3000/socket.io/"
dialect = "socketio"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].upstream.connect_timeout_ms, 5000);
        assert_eq!(c.routes[0].stomp.heartbeat_ms, (10_000, 10_000));
        assert_eq!(c.limits.queue_depth, 256);
        assert_eq!(c.routes[0].mode, Mode::Translate);
    }

    #[test]
    fn unknown_key_reports_key_and_line() {
        let text = MINIMAL.replace(
            "dialect = \"socketio\"",
            "dialect = \"socketio\"\nbogus = 1",
        );
        let err = Config::from_toml(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bogus"), "{msg}");
        assert!(msg.contains("line 14"), "{msg}");
    }

    #[test]
    fn bad_value_reports_key_and_line() {
        let text = MINIMAL.replace("client = \"stomp\"", "client = \"smtp\"");
        let err = Config::from_toml(&text).unwrap_err();
        let ConfigError::Invalid { key, line, .. } = err else {
            panic!()
        };
        assert_eq!(key, "route.0.client");
        assert_eq!(line, Some(9));
    }

    #[test]
    fn semantic_error_reports_line() {
        let text = MINIMAL.replace("ws://127.0.0.1:3000/socket.io/", "http://x/");
        let err = Config::from_toml(&text).unwrap_err();
        let ConfigError::Invalid { key, line, reason } = err else {
            panic!()
        };
        assert_eq!(key, "route.0.upstream.url");
        assert_eq!(line, Some(12));
        assert!(reason.contains("ws or wss"));
    }

    #[test]
    fn second_route_is_located() {
        let text = format!(
            "{MINIMAL}\n[[route]]\nname = \"chat\"\nlisten = \"127.0.0.1:8182\"\npath = \"/x\"\nclient = \"stomp\"\n[route.upstream]\nurl = \"ws://127.0.0.1:1/\"\ndialect = \"stomp\"\n"
        );
        let err = Config::from_toml(&text).unwrap_err();
        let ConfigError::Invalid { key, line, .. } = err else {
            panic!()
        };
        assert_eq!(key, "route.1.name");
        assert_eq!(line, Some(16));
    }

    /// Zero timeouts and sizes, and counts tokio cannot hold, are refused with their key
    /// and line rather than breaking every connection or panicking at start.
    #[test]
    fn out_of_range_limits_are_refused_with_their_line() {
        let cases = [
            (
                "[limits]\nhandshake_timeout_ms = 0",
                "limits.handshake_timeout_ms",
            ),
            ("[limits]\nwrite_timeout_ms = 0", "limits.write_timeout_ms"),
            ("[limits]\nmax_message_size = 0", "limits.max_message_size"),
            ("[limits]\nqueue_depth = 0", "limits.queue_depth"),
            ("[limits]\nmax_connections = 0", "limits.max_connections"),
            (
                "[limits]\nmax_connections = 9000000000000000000",
                "limits.max_connections",
            ),
            (
                "[limits]\nqueue_depth = 4611686018427387904",
                "limits.queue_depth",
            ),
            (
                "[limits]\nread_buffer_bytes = 100",
                "limits.read_buffer_bytes",
            ),
        ];
        for (table, key) in cases {
            let text = format!("{table}\n{MINIMAL}");
            let ConfigError::Invalid {
                key: k,
                line,
                reason,
            } = Config::from_toml(&text).unwrap_err()
            else {
                panic!("{table}")
            };
            assert_eq!((k.as_str(), line), (key, Some(2)), "{table}");
            assert!(reason.contains("must be between"), "{reason}");
        }
        for (field, key) in [
            ("connect_timeout_ms", "route.0.upstream.connect_timeout_ms"),
            ("ack_timeout_ms", "route.0.upstream.ack_timeout_ms"),
        ] {
            let text = MINIMAL.replace(
                "dialect = \"socketio\"",
                &format!("dialect = \"socketio\"\n{field} = 0"),
            );
            let ConfigError::Invalid { key: k, line, .. } = Config::from_toml(&text).unwrap_err()
            else {
                panic!("{field}")
            };
            assert_eq!((k.as_str(), line), (key, Some(14)));
        }
        assert!(Config::from_toml(&format!("[limits]\nidle_ping_ms = 0\n{MINIMAL}")).is_ok());
        // Clock-skew leeway in seconds: more than an hour was meant as milliseconds.
        let auth = |leeway: u64| {
            format!(
                "{MINIMAL}\n[route.auth]\nalgorithm = \"HS256\"\nsecret = \"s\"\nleeway_secs = {leeway}\n"
            )
        };
        assert!(Config::from_toml(&auth(3600)).is_ok());
        let ConfigError::Invalid { key, .. } = Config::from_toml(&auth(60_000)).unwrap_err() else {
            panic!()
        };
        assert_eq!(key, "route.0.auth.leeway_secs");
    }

    #[test]
    fn passthrough_needs_same_dialect() {
        let text = MINIMAL.replace(
            "client = \"stomp\"",
            "client = \"stomp\"\nmode = \"passthrough\"",
        );
        assert!(
            Config::from_toml(&text)
                .unwrap_err()
                .to_string()
                .contains("passthrough")
        );
    }

    #[test]
    fn client_limits_default_off_and_are_checked_with_their_line() {
        let c = Config::from_toml(MINIMAL).unwrap();
        let l = &c.routes[0].client_limits;
        assert_eq!((l.connections_per_address, l.messages_per_second), (0, 0));
        assert!(l.allowed_origins.is_empty());
        let text = format!(
            "{MINIMAL}\n[route.client_limits]\nmessages_per_second = 5\nallowed_origins = [\"https://app.example/\"]\n"
        );
        let ConfigError::Invalid { key, line, reason } = Config::from_toml(&text).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(key, "route.0.client_limits.allowed_origins");
        assert_eq!(line, Some(17));
        assert!(reason.contains("not an origin"), "{reason}");
        let ok = text.replace("app.example/", "app.example:8443");
        let c = Config::from_toml(&ok).unwrap();
        assert_eq!(c.routes[0].client_limits.messages_per_second, 5);
        let zero = format!("{MINIMAL}\n[route.client_limits]\ntracked_addresses = 0\n");
        assert!(
            Config::from_toml(&zero)
                .unwrap_err()
                .to_string()
                .contains("client_limits.tracked_addresses")
        );
        let typo = format!("{MINIMAL}\n[route.client_limits]\nmessages_per_sec = 5\n");
        assert!(
            Config::from_toml(&typo)
                .unwrap_err()
                .to_string()
                .contains("messages_per_sec")
        );
    }

    #[test]
    fn log_filter_and_level_are_checked_with_their_line() {
        let text = format!("{MINIMAL}\n[log]\nlevel = \"debug\"\nfilter = \"trace\"\n");
        let ConfigError::Invalid { key, line, reason } = Config::from_toml(&text).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(key, "log.filter");
        assert_eq!(line, Some(text.lines().count()));
        assert!(reason.contains("bare level"), "{reason}");
        let text = format!("{MINIMAL}\n[log]\nlevel = \"hyper=debug\"\n");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains("log.level") && err.contains("log.filter"),
            "{err}"
        );
        let ok = format!("{MINIMAL}\n[log]\nlevel = \"trace\"\nfilter = \"tungstenite=debug\"\n");
        assert_eq!(
            Config::from_toml(&ok).unwrap().log.filter,
            "tungstenite=debug"
        );
    }
}

#[cfg(test)]
mod hub_tests {
    use super::*;

    const HUB: &str = r#"
[admin]
listen = "127.0.0.1:9191"

[hub]
redis_url = "redis://127.0.0.1:6379/0"

[[route]]
name = "chat"
listen = "127.0.0.1:8181"
path = "/ws"
client = "stomp"

[route.upstream]
dialect = "hub"
"#;

    #[test]
    fn redis_url_is_optional_and_checked() {
        let c = Config::from_toml(HUB).unwrap();
        assert_eq!(c.hub.redis_url.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(c.hub.instance_ttl_ms, 10_000);
        assert_eq!(c.hub.redis_prefix, "switchboard");
        let local = Config::from_toml(&HUB.replace("redis_url = \"redis://127.0.0.1:6379/0\"", ""));
        assert_eq!(local.unwrap().hub.redis_url, None);
        for (from, to, key) in [
            (
                "redis://127.0.0.1:6379/0",
                "rediss://127.0.0.1:6379/0",
                "hub.redis_url",
            ),
            (
                "redis://127.0.0.1:6379/0",
                "http://127.0.0.1:6379/",
                "hub.redis_url",
            ),
            (
                "redis://127.0.0.1:6379/0",
                "redis://127.0.0.1:6379/x",
                "hub.redis_url",
            ),
            ("redis://127.0.0.1:6379/0", "not a url", "hub.redis_url"),
            (
                "dialect = \"hub\"",
                "dialect = \"socketio\"\nurl = \"ws://127.0.0.1:1/\"",
                "hub.redis_url",
            ),
            (
                "[hub]",
                "[hub]\ninstance_ttl_ms = 10",
                "hub.instance_ttl_ms",
            ),
            ("[hub]", "[hub]\nredis_queue = 0", "hub.redis_queue"),
            ("[hub]", "[hub]\nredis_prefix = \"\"", "hub.redis_prefix"),
        ] {
            let text = HUB.replace(from, to);
            let err = Config::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
            assert!(err.contains("line "), "{to}: {err}");
        }
        let err = Config::from_toml(&HUB.replace("[hub]", "[hub]\nredis_port = 1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis_port"), "{err}");
    }
}
