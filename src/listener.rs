//! Listeners: TCP accept under a connection limit, TLS and the HTTP upgrade in the spawned
//! task under a timeout, routing by path, subprotocol negotiation, and handing the upgraded
//! WebSocket to a session.
//!
//! Owns: accept backoff, the connection `Semaphore`, per-address route tables, the WebSocket
//! upgrade response, Engine.IO request validation before the upgrade.
//!
//! Must never await a handshake or a read inline in the accept loop, and must not translate.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Mode;
use crate::dialect::Dialect;
use crate::dialect::stomp::server::{self as stomp_server, StompServer};
use crate::engine::Engine;
use crate::metrics as m;
use crate::session::{self, Link, RouteCtx, Session};

/// A listener bound to one address, serving one or more routes by path.
pub struct Bound {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    routes: Arc<HashMap<String, RouteEntry>>,
}

/// A route as the listener serves it.
#[derive(Clone)]
pub struct RouteEntry {
    /// Shared per-route state.
    pub ctx: Arc<RouteCtx>,
    /// Engine.IO sessions of a Socket.IO route (long-polling and WebSocket).
    pub engine: Option<Arc<Engine>>,
}

impl Bound {
    /// Bind `addr` for `routes`.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        routes: Vec<RouteEntry>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let routes = routes
            .into_iter()
            .map(|r| (r.ctx.config.path.clone(), r))
            .collect();
        Ok(Self {
            listener,
            tls,
            routes: Arc::new(routes),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept until `shutdown`, spawning each connection on `tracker`.
    pub async fn serve(
        self,
        limit: Arc<Semaphore>,
        handshake_timeout: Duration,
        tracker: TaskTracker,
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
            let tls = self.tls.clone();
            tracker.spawn(conn.run(tcp, tls, handshake_timeout));
        }
    }
}

struct Conn {
    routes: Arc<HashMap<String, RouteEntry>>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Held by this connection and by any session it upgrades into.
    permit: Arc<OwnedSemaphorePermit>,
    peer: SocketAddr,
}

impl Conn {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>, handshake_timeout: Duration) {
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn crate::upstream::Io> = match tls {
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
        let Some(route) = self.routes.get(req.uri().path()).cloned() else {
            m::handshake_failed("no_route");
            return text(StatusCode::NOT_FOUND, "no route for this path\n");
        };
        if let Some(engine) = &route.engine {
            return engine.handle(req, self.upgrader(route.clone())).await;
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
        self.upgrade(req, route)
    }

    fn upgrader(&self, route: RouteEntry) -> Upgrader {
        Upgrader {
            route,
            limit: self.limit.clone(),
            tracker: self.tracker.clone(),
            shutdown: self.shutdown.clone(),
            permit: self.permit.clone(),
        }
    }

    fn upgrade(&self, req: Request<Incoming>, route: RouteEntry) -> Response<Full<Bytes>> {
        self.upgrader(route).upgrade(req, None)
    }
}

/// Everything needed to turn an HTTP request into a WebSocket session.
#[derive(Clone)]
pub struct Upgrader {
    /// The route.
    pub route: RouteEntry,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    permit: Arc<OwnedSemaphorePermit>,
}

/// What a finished upgrade hands over: the WebSocket and the request facts a session needs.
pub struct Upgraded {
    /// The WebSocket, server side.
    pub ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    /// Bearer token from `Authorization` or the `token` query parameter.
    pub token: Option<Bytes>,
    /// The raw query string.
    pub query: String,
}

/// A session starter for upgrades whose session is not a plain STOMP one (Engine.IO).
pub type OnUpgrade = Box<
    dyn FnOnce(
            Upgraded,
            RouteEntry,
            CancellationToken,
        ) -> futures_util::future::BoxFuture<'static, ()>
        + Send,
>;

impl Upgrader {
    /// A connection permit of its own for a session that outlives its HTTP connection (an
    /// Engine.IO long-polling session), so `limits.max_connections` bounds those too.
    /// `None` when the limit is reached.
    pub fn session_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.limit.clone().try_acquire_owned().ok()
    }

    /// Spawn a session task that is not a WebSocket upgrade (an Engine.IO long-polling
    /// session): it is tracked for the drain and holds `permit` until it ends.
    pub fn spawn_session<F, Fut>(&self, permit: OwnedSemaphorePermit, start: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let fut = start(self.shutdown.clone());
        self.tracker.spawn(async move {
            let _permit = permit;
            fut.await;
        });
    }

    /// Answer `101` and spawn the session once hyper hands over the connection. `custom`
    /// replaces the route's default session (Engine.IO uses it).
    pub fn upgrade(
        &self,
        mut req: Request<Incoming>,
        custom: Option<OnUpgrade>,
    ) -> Response<Full<Bytes>> {
        if req
            .headers()
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            m::handshake_failed("ws_version");
            let mut r = text(StatusCode::BAD_REQUEST, "unsupported WebSocket version\n");
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return r;
        }
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            m::handshake_failed("ws_key");
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
        };
        let accept = derive_accept_key(key.as_bytes());
        let ctx = self.route.ctx.clone();
        let protocol = match ctx.config.client {
            Dialect::Stomp => negotiate_stomp(&req),
            _ => None,
        };
        let token = bearer(&req);
        let query = req.uri().query().unwrap_or_default().to_owned();
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (shutdown, permit, route) = (
            self.shutdown.clone(),
            self.permit.clone(),
            self.route.clone(),
        );
        let max = ws_message_limit(&ctx);
        self.tracker.spawn(async move {
            let _permit = permit;
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return m::handshake_failed("upgrade");
                }
            };
            let config = WebSocketConfig::default()
                .max_message_size(Some(max))
                .max_frame_size(Some(max));
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            let up = Upgraded { ws, token, query };
            match custom {
                Some(start) => start(up, route, shutdown).await,
                None => run_default(up, route.ctx, shutdown).await,
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(p) = protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        r
    }
}

/// The default session for a route whose client dialect needs no transport of its own.
async fn run_default(up: Upgraded, ctx: Arc<RouteCtx>, shutdown: CancellationToken) {
    let link = Link::websocket(
        up.ws,
        ctx.queue_depth,
        ctx.write_timeout,
        ctx.metrics.down.clone(),
    );
    if session::is_passthrough(&ctx.config) {
        let mut headers = Vec::new();
        if let Some(t) = &up.token {
            headers.push((
                "Authorization",
                format!("Bearer {}", String::from_utf8_lossy(t)),
            ));
        }
        return session::passthrough(ctx, link, headers, shutdown).await;
    }
    let server: Box<dyn crate::dialect::ServerRole> = match ctx.config.client {
        Dialect::Stomp => {
            let s = &ctx.config.stomp;
            let settings = stomp_server::Settings {
                heartbeat: s.heartbeat_ms,
                limits: crate::dialect::stomp::codec::Limits {
                    max_frame_size: s.max_frame_size,
                    max_headers: s.max_headers,
                    max_header_len: s.max_header_len,
                },
                max_subscriptions: s.max_subscriptions,
                connect_timeout: Duration::from_millis(s.connect_timeout_ms),
                ..Default::default()
            };
            Box::new(StompServer::new(
                settings,
                up.token,
                session_id(),
                Instant::now(),
            ))
        }
        // Socket.IO routes always go through their Engine.IO engine.
        _ => return,
    };
    Session::new(ctx, link, server).run(shutdown).await;
}

/// The largest WebSocket message (and frame) a route's clients may send. tungstenite checks
/// it before buffering (a frame by its header's length), so the limit must be the real one:
/// a translating Socket.IO route takes its Engine.IO `maxPayload`, which its `open` packet
/// advertises and the reference server enforces on WebSocket messages too (validated to be
/// at most `limits.max_message_size`). Other routes, and passthrough (where the backend
/// advertises its own), take the global limit.
fn ws_message_limit(ctx: &RouteCtx) -> usize {
    match (ctx.config.client, ctx.config.mode) {
        (Dialect::Socketio, Mode::Translate) => ctx.config.socketio.max_payload,
        _ => ctx.max_message_size,
    }
}

/// A short random session id.
pub fn session_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Pick the highest STOMP subprotocol the client offered.
fn negotiate_stomp<B>(req: &Request<B>) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    ["v12.stomp", "v11.stomp", "v10.stomp"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
}

/// Bearer token from the upgrade's `Authorization` header, else the `token` query parameter.
pub fn bearer<B>(req: &Request<B>) -> Option<Bytes> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let b = Bytes::copy_from_slice(v.as_bytes());
        return Some(stomp_server::strip_bearer(&b));
    }
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| Bytes::from(v.into_owned()))
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stomp_subprotocol_prefers_highest() {
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "v10.stomp, v12.stomp")
            .body(())
            .unwrap();
        assert_eq!(negotiate_stomp(&req), Some("v12.stomp"));
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "v11.stomp")
            .body(())
            .unwrap();
        assert_eq!(negotiate_stomp(&req), Some("v11.stomp"));
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "mqtt")
            .body(())
            .unwrap();
        assert_eq!(negotiate_stomp(&req), None);
    }

    #[test]
    fn bearer_from_header_or_query() {
        let req = Request::builder()
            .header("Authorization", "Bearer abc")
            .body(())
            .unwrap();
        assert_eq!(bearer(&req).unwrap(), "abc");
        let req = Request::builder().uri("/ws?token=x%20y").body(()).unwrap();
        assert_eq!(bearer(&req).unwrap(), "x y");
    }
}
