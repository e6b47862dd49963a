//! The runtime: builds every route, binds listeners and the admin endpoint, reports
//! readiness, and drains on shutdown within the grace period.
//!
//! Owns: startup order (bind everything, then READY=1), the session `TaskTracker`, the
//! grace period. Knows no protocol.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Health};
use crate::config::Config;
use crate::listener::{Bound, RouteEntry};
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
    /// The hub's Redis link task and its stop, when `[hub] redis_url` is set.
    hub_link: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

/// Build and bind everything. Returns once every listener is bound.
pub async fn start(config: &Config, metrics: PrometheusHandle) -> Result<Running, StartError> {
    let mut client_tls = None;
    // One embedded hub per process, shared by every route whose upstream it is.
    let on_hub = config
        .routes
        .iter()
        .any(|r| r.upstream.dialect == crate::dialect::Dialect::Hub);
    // With `[hub] redis_url` the hub is one across instances: its bridge queues to a link
    // task that owns the Redis connections (and whose state `/readyz` reports).
    let mut hub_link = None;
    let mut link_up = None;
    let hub = match (on_hub, &config.hub.redis_url) {
        (false, _) => None,
        (true, None) => Some(Arc::new(crate::hub::Hub::default())),
        (true, Some(_)) => {
            let (bridge, link) = crate::hub::redis::bridge(&config.hub)?;
            link_up = Some(bridge.up());
            let hub = Arc::new(crate::hub::Hub::new(bridge));
            let stop = CancellationToken::new();
            let task = tokio::spawn(link.run(hub.clone(), stop.clone()));
            hub_link = Some((stop, task));
            Some(hub)
        }
    };
    let mut by_addr: BTreeMap<SocketAddr, (Option<tokio_rustls::TlsAcceptor>, Vec<RouteEntry>)> =
        BTreeMap::new();
    for r in &config.routes {
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
                    client_tls = Some(cfg.clone());
                }
                Some(cfg)
            } else {
                client_tls.clone()
            }
        } else {
            None
        };
        let (ctx, transport) = registry::route_ctx(r, config, tls_for_upstream, hub.clone())
            .map_err(|e| StartError::Route {
                route: r.name.clone(),
                why: e.to_string(),
            })?;
        let entry = by_addr.entry(r.listen).or_insert((None, Vec::new()));
        if let (Some(t), None) = (&r.tls, &entry.0) {
            let cfg = tls::server_config(&t.cert, &t.key).map_err(|source| StartError::Tls {
                route: r.name.clone(),
                source,
            })?;
            entry.0 = Some(tokio_rustls::TlsAcceptor::from(cfg));
        }
        entry.1.push(RouteEntry { ctx, transport });
    }

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
    for (addr, (tls, routes)) in by_addr {
        let b = Bound::bind(addr, tls, routes)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        bound.push(b);
    }

    let health = Arc::new(Health::default());
    if let Some(up) = link_up {
        health.watch_link("not ready: hub redis link down\n", up);
    }
    let accept_stop = CancellationToken::new();
    let sessions_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(config.limits.max_connections));
    let mut listeners = tokio::task::JoinSet::new();
    let mut listen_addrs = Vec::new();
    // The admin endpoint keeps answering during the drain; it is aborted at the very end.
    listeners.spawn(admin::serve(
        admin_listener,
        metrics,
        health.clone(),
        CancellationToken::new(),
    ));
    for b in bound {
        if let Ok(a) = b.local_addr() {
            listen_addrs.push(a);
        }
        listeners.spawn(b.serve(
            limit.clone(),
            config.limits.handshake_timeout(),
            tracker.clone(),
            sessions_stop.clone(),
        ));
    }
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
        hub_link,
    })
}

impl Running {
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
