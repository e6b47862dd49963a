//! Listeners: TCP accept under a connection limit, TLS and HTTP in the spawned task under a
//! timeout, routing by path to a route's transport or to the plain WebSocket upgrade.
//!
//! Owns: accept backoff, the connection `Semaphore`, per-address route tables. A table and
//! the listener's TLS config sit in swappable cells ([`Table`]) so a reload changes what new
//! connections and requests see, while upgraded sessions keep the route they started with.
//! A request asks its route's `Origin` allowlist ([`crate::admission`]) before anything else.
//!
//! Must never await a handshake or a read inline in the accept loop, and must not translate.
//! The upgrade itself is [`crate::handshake`]'s; dialect transports (Engine.IO) are reached
//! through the [`Transport`] trait, so nothing here knows a dialect.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Reason;
use crate::handshake::{Transport, Upgrader, is_upgrade, text};
use crate::metrics as m;
use crate::session::RouteCtx;
use crate::tls::ServerTls;

/// A listener bound to one address, serving one or more routes by path.
pub struct Bound {
    listener: TcpListener,
    tls: ServerTls,
    routes: Arc<ArcSwap<Routes>>,
}

/// The swappable part of a bound listener: its routes and its TLS config. A reload replaces
/// both; each request looks its route up in the current table, each handshake takes the
/// current TLS config.
#[derive(Clone)]
pub struct Table {
    routes: Arc<ArcSwap<Routes>>,
    tls: ServerTls,
}

impl Table {
    /// Serve `routes` to requests from now on.
    pub fn set_routes(&self, routes: Vec<RouteEntry>) {
        self.routes.store(Arc::new(Routes::new(routes)));
    }

    /// The listener's TLS cell.
    pub fn tls(&self) -> &ServerTls {
        &self.tls
    }
}

/// One listener's routes by path.
struct Routes {
    exact: HashMap<String, RouteEntry>,
}

impl Routes {
    fn new(routes: Vec<RouteEntry>) -> Self {
        let exact = routes
            .into_iter()
            .map(|r| (r.ctx.config.path.clone(), r))
            .collect();
        Self { exact }
    }

    /// The route serving `path`: its own path, or one segment below it when its client
    /// dialect's clients append one (Pusher's `/app/<key>`).
    fn find(&self, path: &str) -> Option<&RouteEntry> {
        if let Some(r) = self.exact.get(path) {
            return Some(r);
        }
        let (parent, last) = path.rsplit_once('/')?;
        if last.is_empty() {
            return None;
        }
        // The route's path as written, with or without its trailing slash.
        let with_slash = path.get(..=parent.len())?;
        [parent, with_slash]
            .into_iter()
            .filter_map(|p| self.exact.get(p))
            .find(|r| r.ctx.client_spec.path_takes_key)
    }
}

/// A route as the listener serves it.
#[derive(Clone)]
pub struct RouteEntry {
    /// Shared per-route state.
    pub ctx: Arc<RouteCtx>,
    /// The dialect's own transport in front of its sessions (Engine.IO), when it has one.
    pub transport: Option<Arc<dyn Transport>>,
    /// The route's drain signal: its sessions close as on SIGTERM when it is cancelled (the
    /// route was removed by a reload, or the process is draining). Kept across a reload that
    /// changes the route, so sessions of either version drain together.
    pub stop: CancellationToken,
}

impl Bound {
    /// Bind `addr` for `routes`.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        routes: Vec<RouteEntry>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            tls: ServerTls::new(tls.map(|a| a.config().clone())),
            routes: Arc::new(ArcSwap::from_pointee(Routes::new(routes))),
        })
    }

    /// The handle through which a reload swaps this listener's routes and TLS config.
    pub fn table(&self) -> Table {
        Table {
            routes: self.routes.clone(),
            tls: self.tls.clone(),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept until `shutdown`, running each connection on the next of `workers`, tracked
    /// by `tracker`.
    pub async fn serve(
        self,
        limit: Arc<Semaphore>,
        handshake_timeout: Duration,
        tracker: TaskTracker,
        workers: crate::workers::Workers,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.listener.accept() => match r {
                    Ok(x) => { backoff = Duration::from_millis(5); x }
                    Err(e) => {
                        // EMFILE and friends: wait rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            m::accepted();
            let conn = Conn {
                routes: self.routes.clone(),
                limit: limit.clone(),
                tracker: tracker.clone(),
                shutdown: shutdown.clone(),
                permit: Arc::new(permit),
                peer,
            };
            let tls = self.tls.acceptor();
            workers.spawn_conn(&tracker, tcp, move |tcp| {
                conn.run(tcp, tls, handshake_timeout)
            });
        }
    }
}

struct Conn {
    routes: Arc<ArcSwap<Routes>>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    /// The listener's stop: ends this HTTP connection gracefully (idle keep-alive ones when a
    /// reload closes the listener). Sessions it upgrades answer to their route's token.
    shutdown: CancellationToken,
    /// Held by this connection and by any session it upgrades into.
    permit: Arc<OwnedSemaphorePermit>,
    peer: SocketAddr,
}

impl Conn {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>, handshake_timeout: Duration) {
        crate::tcp::configure(&tcp);
        let io: Box<dyn crate::websocket::Io> = match tls {
            Some(acc) => match tokio::time::timeout(handshake_timeout, acc.accept(tcp)).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    return m::handshake_failed("tls");
                }
                Err(_) => return m::handshake_failed("tls_timeout"),
            },
            None => Box::new(tcp),
        };
        let shutdown = self.shutdown.clone();
        let this = Arc::new(self);
        let svc = hyper::service::service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.handle(req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(handshake_timeout)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        // The table current for this request: a keep-alive connection sees a reload.
        let Some(route) = self.routes.load().find(req.uri().path()).cloned() else {
            m::handshake_failed("no_route");
            return text(StatusCode::NOT_FOUND, "no route for this path\n");
        };
        // Every request on the route, whatever its dialect or transport: a foreign page's
        // browser must not reach the session (or Engine.IO's long-polling) at all.
        let origin = req.headers().get(header::ORIGIN).map(HeaderValue::as_bytes);
        if !route.ctx.admission.origin_allowed(origin) {
            m::limit_refused(&route.ctx.metrics.route, Reason::Origin.label());
            return text(StatusCode::FORBIDDEN, "origin not allowed\n");
        }
        let up = Upgrader::new(
            route.ctx.clone(),
            self.peer,
            self.limit.clone(),
            self.tracker.clone(),
            // The route's own drain signal (a child of the process's), so removing the route
            // drains its sessions alone.
            route.stop.clone(),
            self.permit.clone(),
        );
        if let Some(transport) = &route.transport {
            return transport.handle(req, up).await;
        }
        if !is_upgrade(&req) {
            m::handshake_failed("not_websocket");
            let mut r = text(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint speaks WebSocket only\n",
            );
            r.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return r;
        }
        up.upgrade(req, None)
    }
}
