//! The dialect registry: the one place that says, for each dialect, what it is (its
//! [`Spec`]: subprotocols, default path, backend URL parameters, limits, naming, capabilities)
//! and how its roles are built from a route's configuration.
//!
//! Owns: the list of dialects ([`ENTRIES`], one entry each), turning `[[route]]` tables
//! into the plain option structs the roles take, the dialect-specific checks of a parsed
//! config (run from above, as `switchboard check` runs them: `config` does not import this
//! module), and building a route's [`RouteCtx`].
//!
//! Must not touch: wire bytes, sockets, sessions once built. Adding a dialect is its folder
//! under `src/dialect/` and one entry here; nothing else in the crate names a dialect.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Admission;
use crate::config::{Config, ConfigError, Mode, Route};
use crate::dialect::actioncable::{self, client::CableClient, server::CableServer};
use crate::dialect::pusher::{self, client::PusherClient, server::PusherServer};
use crate::dialect::socketcluster::{self, client::ScClient, codec::Version, server::ScServer};
use crate::dialect::socketio::{self, client::SocketioClient, server::SocketioServer};
use crate::dialect::stomp::{self, client::StompClient, server::StompServer};
use crate::dialect::{Dialect, Spec};
use crate::engine::Engine;
use crate::handshake::{Transport, session_id};
use crate::metrics::RouteMetrics;
use crate::session::{ClientFactory, RouteCtx, ServerFactory, pending_budget};
use crate::template::Template;
use crate::translate::Mapping;
use crate::upstream::Dialer;

/// What building a route needs besides the route itself.
#[derive(Debug, Clone, Copy)]
pub struct Shared<'a> {
    /// The whole config (process-wide limits).
    pub config: &'a Config,
}

/// Builds a dialect's transport for a route.
pub type TransportBuild = fn(Arc<RouteCtx>) -> Arc<dyn Transport>;
/// A dialect-specific check of a route: `Err((key below route.N, why))`.
pub type RouteCheck = fn(&Route, Shared<'_>) -> Result<(), (String, String)>;
/// A built route: what its sessions share, and the dialect's transport if it has one.
pub type BuiltRoute = (Arc<RouteCtx>, Option<Arc<dyn Transport>>);

/// One dialect: its data and, where they exist, its roles.
pub struct Entry {
    /// What the dialect is, as data.
    pub spec: &'static Spec,
    /// Builds a route's server-role factory (options parsed once per route); `None`: the
    /// dialect has no server role yet.
    pub server: Option<fn(&Route, Shared<'_>) -> ServerFactory>,
    /// A transport of the dialect's own in front of its sessions (Engine.IO); `None`: plain
    /// WebSocket upgrades.
    pub transport: Option<TransportBuild>,
    /// Builds a route's client-role factory; `None`: no client role yet.
    pub client: Option<fn(&Route, Shared<'_>) -> ClientFactory>,
    /// The largest WebSocket message a client of a translating route may send.
    pub client_message_limit: fn(&Route, Shared<'_>) -> usize,
    /// Checks of the route's dialect tables when it is the client dialect.
    pub check_server: RouteCheck,
    /// Checks of the route's upstream table when it is the upstream dialect.
    pub check_client: RouteCheck,
    /// Origins the route's upgrades must come from (empty: any), from its dialect table.
    pub allowed_origins: fn(&Route) -> Vec<String>,
}

/// Every dialect, one entry each.
pub static ENTRIES: &[Entry] = &[
    Entry {
        spec: &stomp::SPEC,
        server: Some(stomp_server),
        transport: None,
        client: Some(stomp_client),
        client_message_limit: global_limit,
        check_server: stomp_server_checks,
        check_client: stomp_client_checks,
        allowed_origins: any_origin,
    },
    Entry {
        spec: &socketio::SPEC,
        server: Some(socketio_server),
        transport: Some(engine),
        client: Some(socketio_client),
        client_message_limit: socketio_limit,
        check_server: socketio_checks,
        check_client: no_checks,
        allowed_origins: any_origin,
    },
    Entry {
        spec: &pusher::SPEC,
        server: Some(pusher_server),
        transport: None,
        client: Some(pusher_client),
        client_message_limit: global_limit,
        check_server: pusher_server_checks,
        check_client: pusher_client_checks,
        allowed_origins: any_origin,
    },
    Entry {
        spec: &socketcluster::SPEC,
        server: Some(sc_server),
        transport: None,
        client: Some(sc_client),
        client_message_limit: global_limit,
        check_server: sc_server_checks,
        check_client: sc_client_checks,
        allowed_origins: any_origin,
    },
    Entry {
        spec: &actioncable::SPEC,
        server: Some(cable_server),
        transport: None,
        client: Some(cable_client),
        client_message_limit: global_limit,
        check_server: cable_server_checks,
        check_client: cable_client_checks,
        allowed_origins: cable_origins,
    },
];

/// The entry of a dialect.
pub fn entry(d: Dialect) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.spec.dialect == d)
}

/// What a route's upstream is, as data: a dialect's spec, or the embedded hub's.
pub fn upstream_spec(d: Dialect) -> Option<&'static Spec> {
    if d == Dialect::Hub {
        return Some(&crate::hub::SPEC);
    }
    entry(d).map(|e| e.spec)
}

/// Load, layer, fill in the dialects' defaults and validate a config file: what `switchboard
/// check` and the run command do.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_toml_with_env(&text)
}

/// [`load`] from text, with the environment layer.
pub fn from_toml_with_env(text: &str) -> Result<Config, ConfigError> {
    complete(Config::parse_with_env(text)?, text)
}

/// [`load`] from text, without the environment layer.
pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
    complete(Config::parse(text)?, text)
}

fn complete(mut config: Config, text: &str) -> Result<Config, ConfigError> {
    for r in &mut config.routes {
        if let Some(l) = config.listen {
            r.listen = l;
        }
        if r.path.is_empty()
            && let Some(e) = entry(r.client)
        {
            r.path = e.spec.default_path.to_owned();
        }
    }
    let config = config.validate(text)?;
    check(&config, text)?;
    crate::auth::check(&config, text)?;
    Ok(config)
}

/// The dialect-specific checks of a parsed config: every route's dialects have the roles it
/// needs, and the client dialect's own tables hold.
pub fn check(config: &Config, text: &str) -> Result<(), ConfigError> {
    let shared = Shared { config };
    for (i, r) in config.routes.iter().enumerate() {
        let bad = |field: &str, reason: String| {
            ConfigError::at(text, format!("route.{i}.{field}"), reason)
        };
        if r.client == Dialect::Hub {
            return Err(bad(
                "client",
                "`hub` is a backend (upstream.dialect = \"hub\"), not a dialect clients speak"
                    .into(),
            ));
        }
        let client = entry(r.client).filter(|e| e.server.is_some());
        let Some(client) = client else {
            return Err(bad(
                "client",
                format!(
                    "dialect `{}` has no server role yet (clients cannot connect with it)",
                    r.client.label()
                ),
            ));
        };
        if r.upstream.dialect != Dialect::Hub
            && entry(r.upstream.dialect)
                .filter(|e| e.client.is_some())
                .is_none()
        {
            return Err(bad(
                "upstream.dialect",
                format!(
                    "dialect `{}` has no client role yet (backends speaking it cannot be reached)",
                    r.upstream.dialect.label()
                ),
            ));
        }
        (client.check_server)(r, shared).map_err(|(k, why)| bad(&k, why))?;
        if let Some(up) = entry(r.upstream.dialect) {
            (up.check_client)(r, shared).map_err(|(k, why)| bad(&k, why))?;
        }
    }
    Ok(())
}

/// Why a route cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A dialect lacks the role the route needs (a config that skipped [`check`]).
    #[error("dialect `{0}` has no {1} role")]
    NoRole(&'static str, &'static str),
    /// The backend URL is unusable.
    #[error("{0}")]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// The mapping does not compile.
    #[error("{0}")]
    Mapping(String),
    /// `[route.auth]` cannot be set up (its key file, its secret's variable).
    #[error("{}: {}", .0.key, .0)]
    Auth(#[from] crate::auth::SetupError),
}

/// Everything a route's sessions share, and its transport when the dialect has one. `hub`
/// is the process's embedded hub, which routes whose upstream it is attach to.
pub fn route_ctx(
    r: &Route,
    config: &Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    hub: Option<Arc<crate::hub::Hub>>,
) -> Result<BuiltRoute, BuildError> {
    let shared = Shared { config };
    let down = entry(r.client).ok_or(BuildError::NoRole(r.client.label(), "server"))?;
    let new_server = down
        .server
        .ok_or(BuildError::NoRole(r.client.label(), "server"))?(r, shared);
    let on_hub = r.upstream.dialect == Dialect::Hub;
    let (up_spec, new_client, url, hub): (_, ClientFactory, _, _) = if on_hub {
        let hub = hub.ok_or(BuildError::NoRole("hub", "in-process"))?;
        // Never dialed: sessions of the route attach to the hub in process.
        let none: ClientFactory = Arc::new(|_| Box::new(crate::hub::NoClient));
        (&crate::hub::SPEC, none, "ws://hub.invalid/", Some(hub))
    } else {
        let up = entry(r.upstream.dialect)
            .ok_or(BuildError::NoRole(r.upstream.dialect.label(), "client"))?;
        let new_client = up
            .client
            .ok_or(BuildError::NoRole(r.upstream.dialect.label(), "client"))?(
            r, shared
        );
        (up.spec, new_client, r.upstream.url.as_str(), None)
    };
    let limits = &config.limits;
    let dialer = Dialer::new(
        &r.name,
        url,
        up_spec,
        tls,
        Duration::from_millis(r.upstream.connect_timeout_ms),
        limits.max_message_size,
        limits.read_buffer_bytes,
    )?
    .with_write_buffer(limits.write_buffer_bytes);
    let mapping = Mapping::new(&r.maps, down.spec, up_spec).map_err(BuildError::Mapping)?;
    let auth = match &r.auth {
        Some(a) => Some(Arc::new(crate::auth::Verifier::new(a)?)),
        None => None,
    };
    let client_message_limit = match r.mode {
        Mode::Translate => (down.client_message_limit)(r, shared),
        // The backend advertises its own limit; the proxy's is the global one.
        Mode::Passthrough => limits.max_message_size,
    };
    let ctx = Arc::new(RouteCtx {
        config: r.clone(),
        client_spec: down.spec,
        upstream_spec: up_spec,
        new_server,
        new_client,
        mapping,
        dialer,
        metrics: RouteMetrics::new(&r.name, r.client.label(), r.upstream.dialect.label()),
        queue_depth: limits.queue_depth,
        queue_bytes: limits.queue_bytes.max(limits.max_message_size),
        write_timeout: limits.write_timeout(),
        max_message_size: limits.max_message_size,
        client_message_limit,
        idle_ping: limits.idle_ping(),
        allowed_origins: (down.allowed_origins)(r),
        read_buffer: limits.read_buffer_bytes,
        write_buffer: limits.write_buffer_bytes,
        auth,
        admission: Arc::new(Admission::new(&r.client_limits, client_message_limit)),
        hub,
    });
    let transport = down.transport.map(|t| t(ctx.clone()));
    Ok((ctx, transport))
}

fn any_origin(_: &Route) -> Vec<String> {
    Vec::new()
}

fn global_limit(_: &Route, s: Shared<'_>) -> usize {
    s.config.limits.max_message_size
}

fn no_checks(_: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    Ok(())
}

/// Settings that must not be 0: a timeout that fires at once, a limit nothing fits.
fn positive(settings: &[(&str, u64)]) -> Result<(), (String, String)> {
    match settings.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(((*key).to_owned(), "must be at least 1".into())),
        None => Ok(()),
    }
}

// --- STOMP -------------------------------------------------------------------------------

fn stomp_server_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    let c = &r.stomp;
    positive(&[
        ("stomp.connect_timeout_ms", c.connect_timeout_ms),
        ("stomp.max_frame_size", c.max_frame_size as u64),
        ("stomp.max_headers", c.max_headers as u64),
        ("stomp.max_header_len", c.max_header_len as u64),
        ("stomp.max_subscriptions", c.max_subscriptions as u64),
    ])
}

fn stomp_server(r: &Route, _: Shared<'_>) -> ServerFactory {
    let s = &r.stomp;
    let settings = stomp::server::Settings {
        heartbeat: s.heartbeat_ms,
        limits: stomp::codec::Limits {
            max_frame_size: s.max_frame_size,
            max_headers: s.max_headers,
            max_header_len: s.max_header_len,
        },
        max_subscriptions: s.max_subscriptions,
        connect_timeout: Duration::from_millis(s.connect_timeout_ms),
        ..Default::default()
    };
    Arc::new(move |hs, now| {
        Box::new(StompServer::new(
            settings.clone(),
            hs.bearer(),
            session_id(),
            now,
        ))
    })
}

fn stomp_client(r: &Route, s: Shared<'_>) -> ClientFactory {
    let up = &r.upstream;
    let token_as = match up.credentials.token_as.as_deref() {
        Some("authorization") => stomp::client::TokenAs::Authorization,
        Some("none") => stomp::client::TokenAs::None,
        _ => stomp::client::TokenAs::Passcode,
    };
    let acks_deliveries = entry(r.client).is_some_and(|e| e.spec.caps.acks_deliveries);
    let settings = stomp::client::Settings {
        // Brokers read `host` as the virtual host (RabbitMQ refuses unknown ones), so the
        // default is the default vhost rather than the URL's host name.
        host: up.vhost.clone().unwrap_or_else(|| "/".into()),
        heartbeat: up.heartbeat_ms,
        token_as,
        login: up.credentials.login.clone(),
        passcode: up.credentials.passcode.clone(),
        client_ack: up.ack_mode == "client-individual",
        // A client that cannot ack a delivery itself has it acked once delivered.
        ack_on_delivery: !acks_deliveries,
        receipt_timeout: Duration::from_millis(up.ack_timeout_ms),
        limits: stomp::codec::Limits {
            max_frame_size: r.stomp.max_frame_size,
            ..stomp::codec::Limits::default()
        },
        max_queued_ops: 1024,
        // The same budget as the session's, so all it held while dialing fits.
        max_queued_bytes: pending_budget(s.config.limits.max_message_size),
    };
    Arc::new(move |credentials| Box::new(StompClient::new(settings.clone(), credentials)))
}

// --- Socket.IO -----------------------------------------------------------------------------

/// The smallest `route.socketio.max_payload`: below it, a namespace CONNECT with a bearer
/// token would not fit, so a typo (bytes taken for kilobytes) would refuse every client.
const MIN_MAX_PAYLOAD: usize = 512;

fn socketio_server(r: &Route, _: Shared<'_>) -> ServerFactory {
    let c = &r.socketio;
    let settings = socketio::server::Settings {
        ping_interval: Duration::from_millis(c.ping_interval_ms),
        ping_timeout: Duration::from_millis(c.ping_timeout_ms),
        max_payload: c.max_payload,
        namespaces: c.namespaces.clone(),
        max_attachments: c.max_attachments,
        connect_timeout: Duration::from_millis(c.connect_timeout_ms),
        // Checked by `Config::validate`.
        auto_subscribe: c
            .auto_subscribe
            .iter()
            .filter_map(|t| Template::parse(t).ok())
            .collect(),
        // An upstream of the same dialect: namespaces and packets keep their shape.
        shapes: r.upstream.dialect == r.client,
        defer_open: r.auth.is_some(),
        ..Default::default()
    };
    Arc::new(move |hs, now| {
        Box::new(SocketioServer::new(
            settings.clone(),
            hs.bearer(),
            hs.query.clone(),
            session_id(),
            now,
        ))
    })
}

fn engine(ctx: Arc<RouteCtx>) -> Arc<dyn Transport> {
    Arc::new(Engine::new(ctx))
}

fn socketio_client(r: &Route, s: Shared<'_>) -> ClientFactory {
    let up = &r.upstream;
    let settings = socketio::client::Settings {
        namespace: up.namespace.clone(),
        acks: up.acks,
        ack_timeout: Duration::from_millis(up.ack_timeout_ms),
        max_attachments: r.socketio.max_attachments,
        max_queued_ops: 1024,
        // The same budget as the session's, so all it held while dialing fits.
        max_queued_bytes: pending_budget(s.config.limits.max_message_size),
        // Clients of the same dialect: namespaces and packets keep their shape.
        scoped: r.client == r.upstream.dialect,
    };
    Arc::new(move |credentials| Box::new(SocketioClient::new(settings.clone(), credentials)))
}

/// Engine.IO's `maxPayload`, which its `open` packet advertises and the reference server
/// enforces on WebSocket messages too.
fn socketio_limit(r: &Route, _: Shared<'_>) -> usize {
    r.socketio.max_payload
}

fn socketio_checks(r: &Route, s: Shared<'_>) -> Result<(), (String, String)> {
    let c = &r.socketio;
    // 0 would ping every turn of the session loop, or time every client out at once.
    positive(&[
        ("socketio.ping_interval_ms", c.ping_interval_ms),
        ("socketio.ping_timeout_ms", c.ping_timeout_ms),
        ("socketio.connect_timeout_ms", c.connect_timeout_ms),
    ])?;
    let max = s.config.limits.max_message_size;
    if !(MIN_MAX_PAYLOAD..=max).contains(&r.socketio.max_payload) {
        return Err((
            "socketio.max_payload".into(),
            format!("must be between {MIN_MAX_PAYLOAD} and limits.max_message_size ({max})"),
        ));
    }
    Ok(())
}

// --- Pusher --------------------------------------------------------------------------------

/// A socket id in Pusher's `<digits>.<digits>` form, fresh per connection.
fn pusher_socket_id() -> String {
    let a: u32 = rand::random_range(1..1_000_000_000);
    let b: u32 = rand::random_range(1..1_000_000_000);
    format!("{a}.{b}")
}

fn pusher_server(r: &Route, _: Shared<'_>) -> ServerFactory {
    let p = &r.pusher;
    let settings = pusher::server::Settings {
        app_key: p.app_key.clone(),
        app_secret: p.app_secret.clone(),
        activity_timeout: Duration::from_secs(if p.activity_timeout == 0 {
            120
        } else {
            p.activity_timeout
        }),
        upstream_presence: upstream_spec(r.upstream.dialect).is_some_and(|s| s.caps.presence),
        // The upstream speaks the client's own dialect: its close codes mean the same.
        upstream_codes: r.upstream.dialect == r.client,
        upstream_echoes: upstream_spec(r.upstream.dialect).is_some_and(|s| s.caps.echoes_sender),
        // pusher-js carries a token only in its signin: a route that requires one waits for it.
        await_signin: r.auth.as_ref().is_some_and(|a| a.required),
        ..Default::default()
    };
    Arc::new(move |hs, _now| Box::new(PusherServer::new(settings.clone(), hs, pusher_socket_id())))
}

fn pusher_server_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    if r.pusher.app_key.is_empty() || r.pusher.app_key.contains('/') {
        return Err((
            "pusher.app_key".into(),
            "a Pusher route needs its app key (no `/`)".into(),
        ));
    }
    if r.pusher.app_secret.is_empty() {
        return Err((
            "pusher.app_secret".into(),
            "a Pusher route needs the app secret that signs channel authorizations".into(),
        ));
    }
    Ok(())
}

/// The app key of a Pusher upstream URL: the segment after `/app/`.
fn pusher_app_key(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let mut segs = u.path_segments()?;
    segs.find(|s| *s == "app")?;
    segs.next().filter(|k| !k.is_empty()).map(str::to_owned)
}

fn pusher_client(r: &Route, s: Shared<'_>) -> ClientFactory {
    let up = &r.upstream;
    let settings = pusher::client::Settings {
        app_key: pusher_app_key(&up.url).unwrap_or_default(),
        app_secret: up.app_secret.clone(),
        auth_endpoint: up.auth_endpoint.clone(),
        max_queued_bytes: pending_budget(s.config.limits.max_message_size),
        ..Default::default()
    };
    Arc::new(move |credentials| Box::new(PusherClient::new(settings.clone(), credentials)))
}

fn pusher_client_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    if pusher_app_key(&r.upstream.url).is_none() {
        return Err((
            "upstream.url".into(),
            "a Pusher upstream URL names its app: ws[s]://host/app/<key>".into(),
        ));
    }
    if let Some(e) = &r.upstream.auth_endpoint {
        let ok = url::Url::parse(e)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            return Err((
                "upstream.auth_endpoint".into(),
                "must be an http:// or https:// URL".into(),
            ));
        }
    }
    Ok(())
}

// --- SocketCluster -----------------------------------------------------------------------

fn sc_version(v: u8) -> Version {
    if v == 2 { Version::V2 } else { Version::V1 }
}

fn sc_server(r: &Route, _: Shared<'_>) -> ServerFactory {
    let c = &r.socketcluster;
    let settings = socketcluster::server::Settings {
        version: sc_version(c.protocol_version),
        ping_interval: Duration::from_millis(c.ping_interval_ms),
        ping_timeout: Duration::from_millis(c.ping_timeout_ms),
        ..Default::default()
    };
    Arc::new(move |hs, now| Box::new(ScServer::new(settings.clone(), hs, session_id(), now)))
}

fn sc_server_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    let c = &r.socketcluster;
    if !matches!(c.protocol_version, 1 | 2) {
        return Err((
            "socketcluster.protocol_version".into(),
            "must be 1 (SocketCluster up to 14) or 2".into(),
        ));
    }
    if c.ping_interval_ms == 0 || c.ping_timeout_ms <= c.ping_interval_ms {
        return Err((
            "socketcluster.ping_timeout_ms".into(),
            "must be longer than ping_interval_ms, which must not be 0".into(),
        ));
    }
    Ok(())
}

fn sc_client(r: &Route, s: Shared<'_>) -> ClientFactory {
    let up = &r.upstream;
    let settings = socketcluster::client::Settings {
        version: up.protocol_version.map(sc_version),
        ack_timeout: Duration::from_millis(up.ack_timeout_ms),
        acks: up.acks,
        max_queued_bytes: pending_budget(s.config.limits.max_message_size),
        ..Default::default()
    };
    Arc::new(move |credentials| Box::new(ScClient::new(settings.clone(), credentials)))
}

fn sc_client_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    match r.upstream.protocol_version {
        None | Some(1 | 2) => Ok(()),
        Some(_) => Err((
            "upstream.protocol_version".into(),
            "must be 1 (SocketCluster up to 14) or 2".into(),
        )),
    }
}

fn stomp_client_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    match r.upstream.credentials.token_as.as_deref() {
        Some(t) if t.starts_with("query:") || t.starts_with("cookie:") => Err((
            "upstream.credentials.token_as".into(),
            "a STOMP broker takes the token in CONNECT: `passcode`, `authorization` or `none`"
                .into(),
        )),
        _ => Ok(()),
    }
}

// --- Action Cable --------------------------------------------------------------------------

fn cable_server(_: &Route, _: Shared<'_>) -> ServerFactory {
    let settings = actioncable::server::Settings::default();
    Arc::new(move |hs, now| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Box::new(CableServer::new(settings.clone(), hs, unix, now))
    })
}

fn cable_origins(r: &Route) -> Vec<String> {
    r.actioncable.allowed_origins.clone()
}

fn cable_server_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    // Compared with what browsers send: `https://app.example`, no path, no slash.
    match r
        .actioncable
        .allowed_origins
        .iter()
        .find(|o| !crate::config::is_origin(o))
    {
        Some(o) => Err((
            "actioncable.allowed_origins".into(),
            format!("`{o}` is not an origin (scheme://host[:port], no path)"),
        )),
        None => Ok(()),
    }
}

fn cable_client(r: &Route, s: Shared<'_>) -> ClientFactory {
    use actioncable::client::TokenAs;
    let up = &r.upstream;
    let token_as = match up.credentials.token_as.as_deref() {
        Some("authorization") => TokenAs::Authorization,
        Some("none") => TokenAs::None,
        Some(t) if t.starts_with("cookie:") => {
            TokenAs::Cookie(t.trim_start_matches("cookie:").to_owned())
        }
        Some(t) if t.starts_with("query:") => {
            TokenAs::Query(t.trim_start_matches("query:").to_owned())
        }
        _ => TokenAs::Query("token".into()),
    };
    let settings = actioncable::client::Settings {
        token_as,
        origin: up.origin.clone(),
        event_field: up.event_field.clone(),
        max_queued_bytes: pending_budget(s.config.limits.max_message_size),
        ..Default::default()
    };
    Arc::new(move |credentials| Box::new(CableClient::new(settings.clone(), credentials)))
}

fn cable_client_checks(r: &Route, _: Shared<'_>) -> Result<(), (String, String)> {
    if r.upstream.credentials.token_as.as_deref() == Some("passcode") {
        return Err((
            "upstream.credentials.token_as".into(),
            "Action Cable takes the token at the upgrade: `query:<name>`, `cookie:<name>`,              `authorization` or `none`"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MINIMAL;

    #[test]
    fn every_dialect_has_exactly_one_entry() {
        for d in Dialect::ALL {
            assert_eq!(
                ENTRIES.iter().filter(|e| e.spec.dialect == d).count(),
                1,
                "{d:?}"
            );
        }
        assert_eq!(ENTRIES.len(), Dialect::ALL.len());
    }

    #[test]
    fn the_path_defaults_to_the_dialects() {
        let text = MINIMAL.replace("path = \"/ws\"\n", "");
        assert_eq!(from_toml(&text).unwrap().routes[0].path, "/ws");
        let text = text.replace("client = \"stomp\"", "client = \"socketio\"");
        assert_eq!(from_toml(&text).unwrap().routes[0].path, "/socket.io/");
    }

    #[test]
    fn socketio_limits_are_validated() {
        let sio = MINIMAL.replace("client = \"stomp\"", "client = \"socketio\"");
        let c = from_toml(&sio).unwrap();
        assert_eq!(c.routes[0].socketio.max_packets_per_post, 1024);
        for (table, key) in [
            ("max_payload = 100", "route.0.socketio.max_payload"),
            ("max_payload = 2000000", "route.0.socketio.max_payload"),
            (
                "max_packets_per_post = 0",
                "route.0.socketio.max_packets_per_post",
            ),
            ("ping_interval_ms = 0", "route.0.socketio.ping_interval_ms"),
            ("ping_timeout_ms = 0", "route.0.socketio.ping_timeout_ms"),
            (
                "connect_timeout_ms = 0",
                "route.0.socketio.connect_timeout_ms",
            ),
        ] {
            let text = format!("{sio}\n[route.socketio]\n{table}\n");
            let ConfigError::Invalid { key: k, line, .. } = from_toml(&text).unwrap_err() else {
                panic!()
            };
            assert_eq!(k, key, "{table}");
            assert_eq!(line, Some(16), "{table}");
        }
        // Bounded by the global message limit, which may be raised.
        let text = format!(
            "[limits]\nmax_message_size = 4000000\n{sio}\n[route.socketio]\nmax_payload = 2000000\n"
        );
        assert_eq!(
            from_toml(&text).unwrap().routes[0].socketio.max_payload,
            2_000_000
        );
        // A STOMP route's unused Socket.IO defaults do not fail a small global limit.
        let text = format!("[limits]\nmax_message_size = 65536\n{MINIMAL}");
        assert!(from_toml(&text).is_ok());
    }

    #[test]
    fn action_cable_origins_are_origins() {
        let cable = MINIMAL.replace("client = \"stomp\"", "client = \"actioncable\"");
        for (origins, ok) in [
            (r#"["https://app.example", "http://127.0.0.1:3000"]"#, true),
            (r#"["https://app.example/"]"#, false),
            (r#"["app.example"]"#, false),
        ] {
            let text = format!("{cable}\n[route.actioncable]\nallowed_origins = {origins}\n");
            match from_toml(&text) {
                Ok(_) => assert!(ok, "{origins}"),
                Err(ConfigError::Invalid { key, .. }) => {
                    assert!(!ok, "{origins}");
                    assert_eq!(key, "route.0.actioncable.allowed_origins");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn stomp_timeouts_and_limits_are_not_zero() {
        for table in [
            "connect_timeout_ms = 0",
            "max_frame_size = 0",
            "max_subscriptions = 0",
        ] {
            let text = format!("{MINIMAL}\n[route.stomp]\n{table}\n");
            let ConfigError::Invalid { key, line, reason } = from_toml(&text).unwrap_err() else {
                panic!()
            };
            let field = table.split(' ').next().unwrap();
            assert_eq!(key, format!("route.0.stomp.{field}"));
            assert_eq!((line, reason.as_str()), (Some(16), "must be at least 1"));
        }
        assert!(
            from_toml(&format!(
                "{MINIMAL}\n[route.stomp]\nheartbeat_ms = [0, 0]\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn hub_routes_have_no_url_and_the_hub_serves_no_clients() {
        let hub = MINIMAL.replace(
            "url = \"ws://127.0.0.1:3000/socket.io/\"\ndialect = \"socketio\"",
            "dialect = \"hub\"",
        );
        let c = from_toml(&hub).unwrap();
        assert_eq!(c.routes[0].upstream.dialect, Dialect::Hub);
        let with_url = hub.replace("dialect = \"hub\"", "dialect = \"hub\"\nurl = \"ws://x/\"");
        let e = from_toml(&with_url).unwrap_err().to_string();
        assert!(
            e.contains("route.0.upstream.url") && e.contains("no url"),
            "{e}"
        );
        let no_url = MINIMAL.replace("url = \"ws://127.0.0.1:3000/socket.io/\"\n", "");
        let e = from_toml(&no_url).unwrap_err().to_string();
        assert!(e.contains("route.0.upstream.url"), "{e}");
        let client = hub.replace("client = \"stomp\"", "client = \"hub\"");
        let e = from_toml(&client).unwrap_err().to_string();
        assert!(e.contains("route.0.client") && e.contains("backend"), "{e}");
        // SWITCHBOARD_LISTEN's key moves every route.
        let moved = format!("listen = \"127.0.0.1:7171\"\n{hub}");
        let c = from_toml(&moved).unwrap();
        assert_eq!(c.routes[0].listen.port(), 7171);
    }

    /// Issue 12: the memory-related `[limits]` reach both legs' sockets and queues, through
    /// the functions the listener (`client_ws_config`), the dialer (its `ws_config`) and
    /// both legs' links (`leg_link`) use.
    #[tokio::test]
    async fn memory_settings_reach_both_legs_sockets_and_queues() {
        let text = format!(
            "[limits]\nread_buffer_bytes = 1024\nwrite_buffer_bytes = 3000\n\
             queue_depth = 7\nqueue_bytes = 2000000\nmax_message_size = 65536\n{MINIMAL}"
        );
        let config = from_toml(&text).unwrap();
        let (ctx, _) = route_ctx(&config.routes[0], &config, None, None).unwrap();
        let down = crate::handshake::client_ws_config(&ctx);
        let up = ctx.dialer.ws_config();
        for c in [&down, up] {
            assert_eq!(c.read_buffer_size, 1024);
            assert_eq!(c.write_buffer_size, 3000);
            assert_eq!(c.max_message_size, Some(65536));
            assert_eq!(c.max_frame_size, Some(65536));
        }
        // The defaults, where nothing is said.
        let config = from_toml(MINIMAL).unwrap();
        let (dctx, _) = route_ctx(&config.routes[0], &config, None, None).unwrap();
        assert_eq!(
            crate::handshake::client_ws_config(&dctx).read_buffer_size,
            2048
        );
        assert_eq!(dctx.dialer.ws_config().write_buffer_size, 8192);
        // Both legs' queues, over an in-memory socket.
        use tokio_tungstenite::tungstenite::protocol::Role;
        for role in [Role::Server, Role::Client] {
            let (a, _b) = tokio::io::duplex(1 << 12);
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(a, role, Some(down)).await;
            let link = crate::session::leg_link(ws, &ctx, ctx.metrics.down.clone());
            assert_eq!(link.queue_depth(), 7);
            assert_eq!(link.queue_bytes(), Some(2_000_000));
        }
    }
}
