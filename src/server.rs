//! The runtime: builds every route, binds listeners and the admin endpoint, reports
//! readiness, reloads the config, and drains on shutdown within the grace period.
//!
//! Owns: startup order (bind everything, then READY=1), the session `TaskTracker`, the
//! grace period, the config generation and what a reload changes: routes added, changed,
//! removed, listeners bound or closed, TLS material re-read. Knows no protocol.
//!
//! A reload is all or nothing: the file is loaded and checked as `switchboard check` does,
//! every route that changed is built, every TLS file read and every new address bound before
//! anything running is touched; any failure leaves the running config as it was. Then
//! listener tables are swapped (new requests see the new routes), new listeners start,
//! listeners left without routes stop accepting, and removed routes drain as on SIGTERM.
//! Sessions hold an `Arc` of the route they started on, so they keep its settings.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Health, ReloadAsk};
use crate::config::{Config, Route};
use crate::hub::Hub;
use crate::listener::{Bound, RouteEntry, Table};
use crate::metrics as m;
use crate::{registry, tls};

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error("route {route}: {source}")]
    Tls {
        /// Route name.
        route: String,
        /// Why.
        source: tls::TlsError,
    },
    /// A route could not be built.
    #[error("route {route}: {why}")]
    Route {
        /// Route name.
        route: String,
        /// Why.
        why: String,
    },
    /// The hub's Redis link could not be set up (`[hub] redis_url`).
    #[error("hub: {0}")]
    Hub(#[from] crate::hub::redis::LinkError),
    /// The session workers could not start.
    #[error(transparent)]
    Workers(#[from] crate::workers::WorkersError),
}

/// A started proxy.
pub struct Running {
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// Where each listener is bound.
    pub listen_addrs: Vec<SocketAddr>,
    health: Arc<Health>,
    tracker: TaskTracker,
    listeners: tokio::task::JoinSet<()>,
    accept_stop: CancellationToken,
    sessions_stop: CancellationToken,
    grace: Duration,
    /// What a reload compares against and builds on.
    state: State,
    /// `POST /reload` asks arrive here.
    reloads: mpsc::Receiver<ReloadAsk>,
    /// The hub's Redis link task and its stop, when `[hub] redis_url` is set.
    hub_link: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

/// The running configuration: the config, its routes as built, its listeners.
struct State {
    config: Config,
    generation: u64,
    routes: HashMap<String, LiveRoute>,
    /// By configured address (`127.0.0.1:0` stays one listener across reloads).
    listeners: BTreeMap<SocketAddr, Live>,
    limit: Arc<Semaphore>,
    handshake_timeout: Duration,
    /// The process's embedded hub, once a route needs it; kept across reloads, so sessions
    /// of old and new routes share its channels.
    hub: Option<Arc<Hub>>,
    /// The session workers connections run on (`limits.workers`), made at start.
    workers: crate::workers::Workers,
}

/// A route as it runs: the table it was built from, and what listeners serve.
struct LiveRoute {
    route: Route,
    entry: RouteEntry,
}

/// A bound listener.
struct Live {
    table: Table,
    /// Stops its accept loop (and idle keep-alive connections); its upgraded sessions answer
    /// to their routes' tokens instead.
    stop: CancellationToken,
    local: SocketAddr,
    /// Resolves once its accept loop has returned and the socket is closed.
    closed: tokio::sync::oneshot::Receiver<()>,
}

/// What a config builds into before anything runs: every route's entry, and each address's
/// routes and TLS config.
struct Plan {
    routes: Vec<(Route, RouteEntry, Change)>,
    by_addr: BTreeMap<SocketAddr, (Option<Arc<rustls::ServerConfig>>, Vec<RouteEntry>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Added,
    Changed,
    Unchanged,
}

/// Whether a route's table, and every table outside `[[route]]` that building a route reads
/// (process-wide limits), are the same in both configs: then its built entry is kept whole,
/// with any per-route state in it.
fn same_route(old: &Route, old_cfg: &Config, new: &Route, new_cfg: &Config) -> bool {
    let json = |r: &Route| serde_json::to_value(r).ok();
    let rest = |c: &Config| {
        serde_json::to_value(Config {
            routes: Vec::new(),
            ..c.clone()
        })
        .ok()
    };
    json(old).is_some() && json(old) == json(new) && rest(old_cfg) == rest(new_cfg)
}

/// Build what `config` needs: routes that are new or changed are built afresh (a changed
/// route keeps its drain token and its transport's live sessions), unchanged ones are kept,
/// and every listener's TLS files are read again.
fn plan(
    config: &Config,
    current: Option<(&Config, &HashMap<String, LiveRoute>)>,
    sessions_stop: &CancellationToken,
    hub: &mut Option<Arc<Hub>>,
) -> Result<Plan, StartError> {
    let mut client_tls = None;
    let mut out = Plan {
        routes: Vec::new(),
        by_addr: BTreeMap::new(),
    };
    for r in &config.routes {
        let old = current.and_then(|(c, routes)| routes.get(&r.name).map(|l| (c, l)));
        let (entry, change) = match old {
            Some((old_cfg, live)) if same_route(&live.route, old_cfg, r, config) => {
                (live.entry.clone(), Change::Unchanged)
            }
            _ => {
                // One embedded hub per process, shared by every route whose upstream it is and
                // kept across reloads.
                let hub = (r.upstream.dialect == crate::dialect::Dialect::Hub)
                    .then(|| hub.get_or_insert_with(|| Arc::new(Hub::default())).clone());
                let (ctx, transport) = build_route(r, config, &mut client_tls, hub)?;
                let (transport, stop, change) = match old {
                    Some((_, live)) => (
                        live.entry
                            .transport
                            .as_ref()
                            .and_then(|t| t.carry_over(ctx.clone()))
                            .or(transport),
                        live.entry.stop.clone(),
                        Change::Changed,
                    ),
                    None => (transport, sessions_stop.child_token(), Change::Added),
                };
                (
                    RouteEntry {
                        ctx,
                        transport,
                        stop,
                    },
                    change,
                )
            }
        };
        let slot = out.by_addr.entry(r.listen).or_insert((None, Vec::new()));
        if let (Some(t), None) = (&r.tls, &slot.0) {
            let cfg = tls::server_config(&t.cert, &t.key).map_err(|source| StartError::Tls {
                route: r.name.clone(),
                source,
            })?;
            slot.0 = Some(cfg);
        }
        slot.1.push(entry.clone());
        out.routes.push((r.clone(), entry, change));
    }
    Ok(out)
}

/// One route's shared state and transport; upstream TLS client configs are shared between
/// routes without a CA file of their own.
fn build_route(
    r: &Route,
    config: &Config,
    client_tls: &mut Option<Arc<rustls::ClientConfig>>,
    hub: Option<Arc<Hub>>,
) -> Result<registry::BuiltRoute, StartError> {
    let https_auth = r
        .upstream
        .auth_endpoint
        .as_deref()
        .is_some_and(|u| u.starts_with("https:"));
    let tls_for_upstream = if r.upstream.url.starts_with("wss:") || https_auth {
        if r.upstream.ca_file.is_some() || client_tls.is_none() {
            let cfg = tls::client_config(r.upstream.ca_file.as_deref()).map_err(|source| {
                StartError::Tls {
                    route: r.name.clone(),
                    source,
                }
            })?;
            if r.upstream.ca_file.is_none() {
                *client_tls = Some(cfg.clone());
            }
            Some(cfg)
        } else {
            client_tls.clone()
        }
    } else {
        None
    };
    registry::route_ctx(r, config, tls_for_upstream, hub).map_err(|e| StartError::Route {
        route: r.name.clone(),
        why: e.to_string(),
    })
}

/// Everything `start` builds from `config` short of binding and serving: the TLS files of
/// listeners and upstreams, the routes' keys and templates. `switchboard check` runs it, so
/// a file the proxy could not read fails the check as it would fail the start or a reload.
pub fn check(config: &Config) -> Result<(), StartError> {
    plan(config, None, &CancellationToken::new(), &mut None).map(drop)
}

/// Build and bind everything. Returns once every listener is bound.
pub async fn start(config: &Config, metrics: PrometheusHandle) -> Result<Running, StartError> {
    let sessions_stop = CancellationToken::new();
    // With `[hub] redis_url` the hub is one across instances: its bridge queues to a link
    // task that owns the Redis connections (and whose state `/readyz` reports). It is made
    // here, once; a local hub is made when a route first needs it (see `plan`).
    let mut hub = None;
    let mut hub_link = None;
    let mut link_up = None;
    let on_hub = config
        .routes
        .iter()
        .any(|r| r.upstream.dialect == crate::dialect::Dialect::Hub);
    if let (true, Some(_)) = (on_hub, &config.hub.redis_url) {
        let (bridge, link) = crate::hub::redis::bridge(&config.hub)?;
        link_up = Some(bridge.up());
        let h = Arc::new(Hub::new(bridge));
        let stop = CancellationToken::new();
        let task = tokio::spawn(link.run(h.clone(), stop.clone()));
        hub_link = Some((stop, task));
        hub = Some(h);
    }
    let plan = plan(config, None, &sessions_stop, &mut hub)?;

    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.admin.listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin.listen,
            source,
        })?;
    let mut bound = Vec::new();
    for (addr, (tls, routes)) in plan.by_addr {
        let b = Bound::bind(addr, tls.map(tokio_rustls::TlsAcceptor::from), routes)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        bound.push((addr, b));
    }

    let health = Arc::new(Health::default());
    if let Some(up) = link_up {
        health.watch_link("not ready: hub redis link down\n", up);
    }
    let accept_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (reload_tx, reloads) = mpsc::channel(4);
    let mut state = State {
        config: config.clone(),
        generation: 1,
        routes: plan
            .routes
            .into_iter()
            .map(|(route, entry, _)| (route.name.clone(), LiveRoute { route, entry }))
            .collect(),
        listeners: BTreeMap::new(),
        limit: Arc::new(Semaphore::new(config.limits.max_connections)),
        handshake_timeout: config.limits.handshake_timeout(),
        hub,
        workers: crate::workers::Workers::start(config.limits.workers)?,
    };
    let mut listeners = tokio::task::JoinSet::new();
    // The admin endpoint keeps answering during the drain; it is aborted at the very end.
    listeners.spawn(admin::serve(
        admin_listener,
        metrics,
        health.clone(),
        reload_tx,
        CancellationToken::new(),
    ));
    for (addr, b) in bound {
        let live = state.spawn(b, &mut listeners, &tracker, &sessions_stop);
        state.listeners.insert(addr, live);
    }
    let listen_addrs = state.listen_addrs();
    m::config_generation(state.generation);
    health.set_ready(true);
    tracing::info!(admin = %admin_addr, listeners = ?listen_addrs, "switchboard ready");
    Ok(Running {
        admin_addr,
        listen_addrs,
        health,
        tracker,
        listeners,
        accept_stop,
        sessions_stop,
        grace: Duration::from_millis(config.shutdown.grace_period_ms),
        state,
        reloads,
        hub_link,
    })
}

impl State {
    fn spawn(
        &self,
        b: Bound,
        set: &mut tokio::task::JoinSet<()>,
        tracker: &TaskTracker,
        sessions_stop: &CancellationToken,
    ) -> Live {
        let stop = sessions_stop.child_token();
        let local = b
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let table = b.table();
        let (done, closed) = tokio::sync::oneshot::channel::<()>();
        let serve = b.serve(
            self.limit.clone(),
            self.handshake_timeout,
            tracker.clone(),
            self.workers.clone(),
            stop.clone(),
        );
        set.spawn(async move {
            serve.await;
            drop(done);
        });
        Live {
            table,
            stop,
            local,
            closed,
        }
    }

    fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.values().map(|l| l.local).collect()
    }
}

/// Keys a reload cannot apply to a running process; they take effect at the next start.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.admin.listen != new.admin.listen {
        keys.push("admin.listen");
    }
    if old.limits.max_connections != new.limits.max_connections {
        keys.push("limits.max_connections");
    }
    if old.limits.workers != new.limits.workers {
        keys.push("limits.workers");
    }
    if old.limits.handshake_timeout_ms != new.limits.handshake_timeout_ms {
        keys.push("limits.handshake_timeout_ms");
    }
    if old.log.level != new.log.level {
        keys.push("log.level");
    }
    if old.log.format != new.log.format {
        keys.push("log.format");
    }
    if old.log.filter != new.log.filter {
        keys.push("log.filter");
    }
    // One hub per process, and its Redis link, are made at start.
    if serde_json::to_value(&old.hub).ok() != serde_json::to_value(&new.hub).ok() {
        keys.push("hub");
    }
    keys
}

impl Running {
    /// The next `POST /reload` ask (`None` once the admin endpoint is gone).
    pub async fn reload_asked(&mut self) -> Option<ReloadAsk> {
        self.reloads.recv().await
    }

    /// The grace period of the next drain (the last applied config's).
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The config generation: 1 at start, one more per applied reload.
    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    /// Re-read `path`, check it as `switchboard check` does, and apply it, or refuse it and
    /// keep running as before. Records the outcome in `/metrics` and the log. `Ok` is a
    /// summary line for the operator, `Err` the reason, `path: key `..` (line N): why` for a
    /// bad file, as `check` prints it.
    pub async fn reload(&mut self, path: &Path) -> Result<String, String> {
        let r = self.try_reload(path).await;
        match &r {
            Ok(summary) => {
                m::config_reloaded("ok");
                m::config_generation(self.state.generation);
                tracing::info!(generation = self.state.generation, "{summary}");
            }
            Err(why) => {
                m::config_reloaded("error");
                tracing::error!(
                    generation = self.state.generation,
                    "reload refused, the running config stays: {why}"
                );
            }
        }
        r
    }

    async fn try_reload(&mut self, path: &Path) -> Result<String, String> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let config = registry::load(path).map_err(|e| at(&e))?;
        let mut hub = self.state.hub.clone();
        let plan = plan(
            &config,
            Some((&self.state.config, &self.state.routes)),
            &self.sessions_stop,
            &mut hub,
        )
        .map_err(|e| at(&e))?;
        // Bind every new address before touching anything: a busy port refuses the reload.
        let mut fresh = Vec::new();
        for (addr, (tls, routes)) in &plan.by_addr {
            if self.state.listeners.contains_key(addr) {
                continue;
            }
            let tls = tls.clone().map(tokio_rustls::TlsAcceptor::from);
            let b = Bound::bind(*addr, tls, routes.clone())
                .await
                .map_err(|source| {
                    at(&StartError::Bind {
                        addr: *addr,
                        source,
                    })
                })?;
            fresh.push((*addr, b));
        }

        // Nothing below fails. Existing listeners serve the new tables from their next
        // request and the new TLS material from their next handshake.
        let mut by_addr = plan.by_addr;
        let mut closed = Vec::new();
        let mut closing = Vec::new();
        for (addr, live) in std::mem::take(&mut self.state.listeners) {
            match by_addr.remove(&addr) {
                Some((tls, routes)) => {
                    live.table.set_routes(routes);
                    live.table.tls().store(tls);
                    self.state.listeners.insert(addr, live);
                }
                None => {
                    // No route left here: stop accepting. Sessions it upgraded keep running
                    // under their routes' tokens.
                    live.stop.cancel();
                    closed.push(addr);
                    closing.push(live.closed);
                }
            }
        }
        for (addr, b) in fresh {
            let live = self
                .state
                .spawn(b, &mut self.listeners, &self.tracker, &self.sessions_stop);
            self.state.listeners.insert(addr, live);
        }
        let mut names: BTreeMap<Change, Vec<String>> = BTreeMap::new();
        let mut routes = HashMap::new();
        for (route, entry, change) in plan.routes {
            names.entry(change).or_default().push(route.name.clone());
            routes.insert(route.name.clone(), LiveRoute { route, entry });
        }
        let mut removed = Vec::new();
        for (name, old) in &self.state.routes {
            if !routes.contains_key(name) {
                // Drain as on SIGTERM: each session closes in its client's dialect.
                old.entry.stop.cancel();
                removed.push(name.clone());
            }
        }
        removed.sort();
        let restart = needs_restart(&self.state.config, &config);
        let list = |c: Change| names.get(&c).map(|v| v.join(",")).unwrap_or_default();
        let mut summary = format!(
            "{}: config reloaded: generation {}; added [{}] changed [{}] removed [{}] unchanged [{}]",
            path.display(),
            self.state.generation + 1,
            list(Change::Added),
            list(Change::Changed),
            removed.join(","),
            list(Change::Unchanged),
        );
        if !closed.is_empty() {
            summary.push_str(&format!("; stopped listening on {closed:?}"));
        }
        if !restart.is_empty() {
            summary.push_str(&format!("; kept until a restart: {}", restart.join(", ")));
        }
        self.state.routes = routes;
        self.grace = Duration::from_millis(config.shutdown.grace_period_ms);
        self.state.config = config;
        self.state.generation += 1;
        self.state.hub = hub;
        self.listen_addrs = self.state.listen_addrs();
        // The answer says the old addresses are closed: wait until they are (an accept loop
        // returns at once when told to stop).
        for c in closing {
            let _ = tokio::time::timeout(Duration::from_secs(1), c).await;
        }
        while self.listeners.try_join_next().is_some() {}
        Ok(summary)
    }

    /// Drain: stop accepting, tell every session to close in its dialect, wait up to the
    /// grace period, then drop what is left. Returns the number of sessions cut off.
    pub async fn shutdown(mut self) -> usize {
        self.health.set_ready(false);
        self.accept_stop.cancel();
        self.sessions_stop.cancel();
        self.tracker.close();
        let left = if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            self.tracker.len()
        } else {
            0
        };
        // After the sessions (their last presence leaves are queued): the hub's Redis link
        // sends them and tells the other instances this one is gone.
        if let Some((stop, task)) = self.hub_link.take() {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        self.listeners.abort_all();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[route]]
name = "a"
listen = "127.0.0.1:8001"
path = "/ws"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:1/ws"
dialect = "stomp"
"#;

    fn cfg(extra_top: &str, text: &str) -> Config {
        registry::from_toml(&format!("{extra_top}\n{text}")).unwrap()
    }

    #[test]
    fn a_route_is_the_same_only_with_the_same_tables() {
        let old = cfg("", BASE);
        let same = cfg("", BASE);
        assert!(same_route(&old.routes[0], &old, &same.routes[0], &same));
        let moved = cfg("", &BASE.replace("8001", "8002"));
        assert!(!same_route(&old.routes[0], &old, &moved.routes[0], &moved));
        let mapped = cfg(
            "",
            &format!("{BASE}[[route.map]]\nclient = \"/topic/{{x}}\"\nupstream = \"/q/{{x}}\"\n"),
        );
        assert!(!same_route(
            &old.routes[0],
            &old,
            &mapped.routes[0],
            &mapped
        ));
        // Process-wide limits are built into every route.
        let limits = cfg("[limits]\nqueue_depth = 8\n", BASE);
        assert!(!same_route(
            &old.routes[0],
            &old,
            &limits.routes[0],
            &limits
        ));
    }

    #[test]
    fn keys_a_reload_cannot_apply_are_named() {
        let old = cfg("", BASE);
        assert!(needs_restart(&old, &old).is_empty());
        let new = cfg(
            "[admin]\nlisten = \"127.0.0.1:9999\"\n[log]\nlevel = \"debug\"\nfilter = \"hyper=warn\"\n[shutdown]\ngrace_period_ms = 5\n",
            BASE,
        );
        assert_eq!(
            needs_restart(&old, &new),
            vec!["admin.listen", "log.level", "log.filter"]
        );
    }
}
