//! The HTTP upgrade: what makes a request a WebSocket upgrade, subprotocol negotiation from
//! the client dialect's [`Spec`](crate::dialect::Spec), the [`Handshake`] facts a server
//! role sees, the 101 answer, and handing the upgraded socket to a session.
//!
//! Owns: `is_upgrade` (the one test of an upgrade request), the WebSocket limits of a route's
//! client leg, [`Upgrader`] (shared by plain WebSocket routes and dialect transports such as
//! Engine.IO), the [`Transport`] trait such transports implement, and session ids.
//!
//! Must not touch: the accept loop and route tables (the listener's), translation, wire
//! bytes of any dialect. It does not import the listener: the listener and the transports
//! both sit above it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dialect::{Dial, Handshake};
use crate::metrics as m;
use crate::session::{self, RouteCtx, Session};
use crate::websocket::Socket;

/// A transport of a dialect's own in front of its sessions (Engine.IO's long-polling and
/// upgrade): it takes every HTTP request on the route's path.
pub trait Transport: Send + Sync {
    /// Answer one request; WebSocket upgrades go through `up`.
    fn handle(&self, req: Request<Incoming>, up: Upgrader) -> BoxFuture<'_, Response<Full<Bytes>>>;

    /// The transport of the same route after a reload changed it: new sessions get `ctx`,
    /// while sessions this transport already holds (long-polling ones, reached by id on
    /// every request) stay reachable. `None`: nothing to carry over, build afresh.
    fn carry_over(&self, ctx: Arc<RouteCtx>) -> Option<Arc<dyn Transport>> {
        let _ = ctx;
        None
    }
}

/// Whether a request asks for a WebSocket upgrade: `GET`, with `Upgrade: websocket` and
/// `Connection: upgrade` among the (possibly repeated, comma-separated) header values.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    req.method() == Method::GET
        && has_token(h, header::UPGRADE, "websocket")
        && has_token(h, header::CONNECTION, "upgrade")
}

/// Whether `token` is among the (possibly repeated, comma-separated) values of header
/// `name`, in any case: the test both ends of an upgrade make (the request here, a backend's
/// answer in `upstream`).
pub(crate) fn has_token(h: &header::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The first of `offers` (the server role's subprotocols, most preferred first) that the
/// client offered in any `Sec-WebSocket-Protocol` header.
pub fn negotiate<B>(req: &Request<B>, offers: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    offers
        .iter()
        .copied()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
}

/// The facts of a request a server role may look at.
pub fn handshake_of<B>(
    req: &Request<B>,
    peer: Option<SocketAddr>,
    subprotocol: Option<&'static str>,
) -> Handshake {
    Handshake {
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or_default().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        subprotocol,
        peer,
    }
}

/// How a passthrough route dials its backend: the client's bearer token, cookie and origin
/// go along, as a plain reverse proxy forwards them.
pub fn passthrough_dial(hs: &Handshake) -> Dial {
    let mut d = Dial::default();
    if let Some(t) = hs.bearer() {
        d.headers.push((
            "Authorization".into(),
            format!("Bearer {}", String::from_utf8_lossy(&t)),
        ));
    }
    for name in ["cookie", "origin"] {
        if let Some(v) = hs.header(name).and_then(|v| std::str::from_utf8(v).ok()) {
            d.headers.push((name.into(), v.into()));
        }
    }
    d
}

/// A short random session id.
pub fn session_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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

/// Everything needed to turn an HTTP request into a WebSocket session.
#[derive(Clone)]
pub struct Upgrader {
    ctx: Arc<RouteCtx>,
    peer: SocketAddr,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    permit: Arc<OwnedSemaphorePermit>,
}

/// What a finished upgrade hands over: the WebSocket and the request's facts.
pub struct Upgraded {
    /// The WebSocket, server side.
    pub ws: Socket,
    /// The upgrade request as the server role sees it.
    pub handshake: Handshake,
}

/// A session starter for upgrades whose session is not the route's default (Engine.IO).
pub type OnUpgrade =
    Box<dyn FnOnce(Upgraded, Arc<RouteCtx>, CancellationToken) -> BoxFuture<'static, ()> + Send>;

impl Upgrader {
    /// An upgrader for one accepted connection. `permit` is its connection permit, held by
    /// any session it upgrades into.
    pub fn new(
        ctx: Arc<RouteCtx>,
        peer: SocketAddr,
        limit: Arc<Semaphore>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        permit: Arc<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            ctx,
            peer,
            limit,
            tracker,
            shutdown,
            permit,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// A connection permit of its own for a session that outlives its HTTP connection (an
    /// Engine.IO long-polling session), so `limits.max_connections` bounds those too.
    /// `None` when the limit is reached.
    pub fn session_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.limit.clone().try_acquire_owned().ok()
    }

    /// Spawn a session task that is not a WebSocket upgrade (an Engine.IO long-polling
    /// session): it is tracked for the drain and is handed `permit` (none for a session that
    /// only answers a refusal), to hold while the session runs (not while what is left of it
    /// lingers).
    pub fn spawn_session<F, Fut>(&self, permit: Option<OwnedSemaphorePermit>, start: F)
    where
        F: FnOnce(CancellationToken, Option<OwnedSemaphorePermit>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(start(self.shutdown.clone(), permit));
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
        // RFC 6455 §4.2.1: one key, the base64 of 16 bytes (24 characters, `==` ending).
        let mut keys = req.headers().get_all(header::SEC_WEBSOCKET_KEY).iter();
        let (Some(key), None) = (keys.next(), keys.next()) else {
            m::handshake_failed("ws_key");
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
        };
        if !is_ws_key(key.as_bytes()) {
            m::handshake_failed("ws_key");
            return text(StatusCode::BAD_REQUEST, "bad Sec-WebSocket-Key\n");
        }
        let accept = derive_accept_key(key.as_bytes());
        let ctx = self.ctx.clone();
        if !ctx.allowed_origins.is_empty() {
            let origin = req.headers().get(header::ORIGIN).map(HeaderValue::as_bytes);
            let listed = |o: &[u8]| {
                ctx.allowed_origins
                    .iter()
                    .any(|a| a.as_bytes().eq_ignore_ascii_case(o))
            };
            if !origin.is_some_and(listed) {
                // As Rails answers a missing or foreign Origin.
                m::handshake_failed("origin");
                return text(StatusCode::NOT_FOUND, "Page not found\n");
            }
        }
        let protocol = negotiate(&req, ctx.client_spec.offers);
        let handshake = handshake_of(&req, Some(self.peer), protocol);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (shutdown, permit) = (self.shutdown.clone(), self.permit.clone());
        self.tracker.spawn(async move {
            let _permit = permit;
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return m::handshake_failed("upgrade");
                }
            };
            let config = client_ws_config(&ctx);
            let ws = Socket::upgraded(upgraded, Role::Server, &config);
            let up = Upgraded { ws, handshake };
            match custom {
                Some(start) => start(up, ctx, shutdown).await,
                None => run_default(up, ctx, shutdown).await,
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

/// A client WebSocket's limits: the route's message limit (checked from the frame header,
/// before buffering) and the read and write buffer sizes (`[limits]`).
pub(crate) fn client_ws_config(ctx: &RouteCtx) -> WebSocketConfig {
    crate::upstream::ws_config(ctx.client_message_limit, ctx.read_buffer, ctx.write_buffer)
}

/// The session of a route whose client dialect needs no transport of its own: the server
/// role from the route's factory over the upgraded WebSocket, or a passthrough.
///
/// Builds the session at once and returns it boxed: an `async fn` would keep its arguments
/// (the WebSocket as it was before it became a link, the upgrade's headers) in the task for
/// the session's whole life.
fn run_default(
    up: Upgraded,
    ctx: Arc<RouteCtx>,
    shutdown: CancellationToken,
) -> BoxFuture<'static, ()> {
    if session::is_passthrough(&ctx.config) {
        let dial = passthrough_dial(&up.handshake);
        return Box::pin(session::passthrough(
            ctx,
            up.ws,
            dial,
            up.handshake.peer,
            shutdown,
        ));
    }
    let link = session::leg_link(up.ws, &ctx, ctx.metrics.down.for_session());
    let server = (ctx.new_server)(&up.handshake, Instant::now());
    Box::pin(Session::new(ctx, link, server, &up.handshake).run(shutdown))
}

/// Whether `key` is the base64 of 16 bytes, as RFC 6455 asks of `Sec-WebSocket-Key`.
fn is_ws_key(key: &[u8]) -> bool {
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    // 16 bytes are 22 characters and `==`.
    key.strip_suffix(b"==")
        .is_some_and(|k| k.len() == 22 && k.iter().all(b64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_websocket_key_is_base64_of_16_bytes() {
        assert!(is_ws_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_ws_key(b"AAAAAAAAAAAAAAAAAAAA+/=="));
        for bad in [
            &b""[..],
            b"abc",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZQ==x",
        ] {
            assert!(!is_ws_key(bad), "{bad:?}");
        }
        assert!(!is_ws_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
    }

    #[test]
    fn subprotocol_follows_the_servers_preference() {
        let offers = &["v12.stomp", "v11.stomp", "v10.stomp"];
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "v10.stomp, v12.stomp")
            .body(())
            .unwrap();
        assert_eq!(negotiate(&req, offers), Some("v12.stomp"));
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "v11.stomp")
            .body(())
            .unwrap();
        assert_eq!(negotiate(&req, offers), Some("v11.stomp"));
        // Several headers count as one list.
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "mqtt")
            .header("Sec-WebSocket-Protocol", "V10.STOMP")
            .body(())
            .unwrap();
        assert_eq!(negotiate(&req, offers), Some("v10.stomp"));
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "mqtt")
            .body(())
            .unwrap();
        assert_eq!(negotiate(&req, offers), None);
        assert_eq!(negotiate(&req, &[]), None);
        // Action Cable: the JS client offers both; a client offering only
        // `actioncable-unsupported` is answered with it, as Rails does (and then gives up).
        let cable = crate::dialect::actioncable::SPEC.offers;
        let req = Request::builder()
            .header(
                "Sec-WebSocket-Protocol",
                "actioncable-v1-json, actioncable-unsupported",
            )
            .body(())
            .unwrap();
        assert_eq!(negotiate(&req, cable), Some("actioncable-v1-json"));
        let req = Request::builder()
            .header("Sec-WebSocket-Protocol", "actioncable-unsupported")
            .body(())
            .unwrap();
        assert_eq!(negotiate(&req, cable), Some("actioncable-unsupported"));
    }

    #[test]
    fn memory_settings_reach_the_client_socket() {
        let c = crate::upstream::ws_config(4096, 2048, 1000);
        assert_eq!(c.read_buffer_size, 2048);
        assert_eq!(c.write_buffer_size, 1000);
        assert_eq!(c.max_frame_size, Some(4096));
    }

    #[test]
    fn upgrade_detection_reads_every_header_value() {
        let req = |conn: &[&str]| {
            let mut b = Request::builder()
                .method("GET")
                .header("Upgrade", "WebSocket");
            for c in conn {
                b = b.header("Connection", *c);
            }
            b.body(()).unwrap()
        };
        assert!(is_upgrade(&req(&["Upgrade"])));
        assert!(is_upgrade(&req(&["keep-alive, Upgrade"])));
        // Firefox-style split headers: the token is in the second value.
        assert!(is_upgrade(&req(&["keep-alive", "upgrade"])));
        assert!(!is_upgrade(&req(&["keep-alive"])));
        let post = Request::builder()
            .method("POST")
            .header("Upgrade", "websocket")
            .header("Connection", "upgrade")
            .body(())
            .unwrap();
        assert!(!is_upgrade(&post));
    }

    #[test]
    fn handshake_carries_bearer_cookie_and_origin() {
        let req = Request::builder()
            .uri("/ws?room=1&token=q")
            .header("Authorization", "Bearer abc")
            .header("Cookie", "s=1")
            .header("Origin", "https://app.example")
            .body(())
            .unwrap();
        let hs = handshake_of(&req, None, Some("v12.stomp"));
        assert_eq!(hs.path, "/ws");
        assert_eq!(hs.query_param("room").as_deref(), Some("1"));
        assert_eq!(hs.bearer().unwrap(), "abc");
        assert_eq!(hs.header("cookie").unwrap(), "s=1");
        let d = passthrough_dial(&hs);
        assert!(
            d.headers
                .contains(&("Authorization".into(), "Bearer abc".into()))
        );
        assert!(d.headers.contains(&("cookie".into(), "s=1".into())));
        let req = Request::builder().uri("/ws?token=x%20y").body(()).unwrap();
        assert_eq!(handshake_of(&req, None, None).bearer().unwrap(), "x y");
    }
}
