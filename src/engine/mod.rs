//! The Engine.IO v4 server transport of Socket.IO routes: HTTP long-polling, WebSocket, and
//! the upgrade from one to the other, in front of one [`Session`] per Engine.IO session.
//!
//! Owns: request validation with the reference server's error codes, the Origin allowlist
//! (CORS for browser long-polling, and WebSocket upgrades), the `open` handshake packet, the
//! session registry (sid → transport state), the long-polling buffer toward the next GET
//! (bounded; one GET at a time), POST bodies (size and packet-count limits before buffering,
//! one [`WsMsg`] per packet into the session), sids that are gone at once as engine.io drops
//! them (a client close packet, a missed ping deadline), the probe/upgrade sequence, and the writer task
//! that drains the session's outbound queue into whichever transport is current. The session
//! and its [`SocketioServer`](crate::dialect::socketio::server::SocketioServer) role see one
//! message stream and one queue whatever the transport.
//!
//! Must not touch: Socket.IO packets and their meaning (the role's), translation, the upstream
//! leg, other dialects. Engine.IO packets are only framed and unframed here (pings are the
//! role's duty, except the `2probe`/`3probe` exchange of an upgrade).
//!
//! # Layout
//!
//! - `mod.rs`: the [`Engine`] of one route, request validation and routing (the reference
//!   server's error codes), the `open` packet, WebSocket-first sessions.
//! - `shared.rs`: the state one Engine.IO session's handlers, writer task and upgrade share.
//! - `polling.rs`: long-polling: the handshake, GETs, POST bodies, the writer task.
//! - `upgrade.rs`: the upgrade from long-polling to WebSocket: probe, hand-over, writer.
//! - `cors.rs`: the Origin allowlist, CORS headers and preflight answers.

mod cors;
mod polling;
mod shared;
#[cfg(test)]
mod tests;
mod upgrade;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Mutex;

use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio::{self, OpenInfo};
use crate::handshake::{Transport, Upgraded, Upgrader, is_upgrade, passthrough_dial, session_id};
use crate::session::{self, RouteCtx, Session};

use cors::{Cors, cors, preflight};
use shared::{Shared, WEBSOCKET};

/// Engine.IO error codes (the reference server's `Server.errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl Code {
    fn body(self) -> &'static str {
        match self {
            Self::UnknownTransport => r#"{"code":0,"message":"Transport unknown"}"#,
            Self::UnknownSid => r#"{"code":1,"message":"Session ID unknown"}"#,
            Self::BadHandshakeMethod => r#"{"code":2,"message":"Bad handshake method"}"#,
            Self::BadRequest => r#"{"code":3,"message":"Bad request"}"#,
            Self::Forbidden => r#"{"code":4,"message":"Forbidden"}"#,
            Self::UnsupportedProtocolVersion => {
                r#"{"code":5,"message":"Unsupported protocol version"}"#
            }
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An Engine.IO error response: `{"code":N,"message":".."}`.
fn error(code: Code) -> Response<Full<Bytes>> {
    let mut r = respond(code.status(), Bytes::from_static(code.body().as_bytes()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

/// The query parameters Engine.IO looks at.
#[derive(Debug, Default)]
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut out = Self::default();
        for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "EIO" => out.eio = Some(v.into_owned()),
                "transport" => out.transport = Some(v.into_owned()),
                "sid" => out.sid = Some(v.into_owned()),
                _ => {}
            }
        }
        out
    }
}

type Registry = Arc<Mutex<HashMap<String, Arc<Shared>>>>;

/// Engine.IO sessions of one route.
pub struct Engine {
    ctx: Arc<RouteCtx>,
    sessions: Registry,
    /// `socketio.cors_origins` and `client_limits.allowed_origins`: a page the route's own
    /// allowlist lets through gets its CORS answer too.
    origins: Vec<String>,
    /// Long-polling sessions answering a refusal now (see `polling::MAX_REFUSING`).
    refusing: Arc<tokio::sync::Semaphore>,
}

impl Transport for Engine {
    fn handle(
        &self,
        req: Request<Incoming>,
        up: Upgrader,
    ) -> futures_util::future::BoxFuture<'_, Response<Full<Bytes>>> {
        Box::pin(Engine::handle(self, req, up))
    }

    /// The same session registry under the new route settings: a long-polling client keeps
    /// its sid across a reload that changes its route. Its session keeps the roles and route
    /// it started with; only this transport's own request checks (POST size and packet
    /// limits) follow the new settings.
    fn carry_over(&self, ctx: Arc<RouteCtx>) -> Option<Arc<dyn Transport>> {
        Some(Arc::new(Engine {
            origins: Engine::origins(&ctx),
            ctx,
            sessions: self.sessions.clone(),
            refusing: self.refusing.clone(),
        }))
    }
}

impl Engine {
    /// An engine for a Socket.IO route; its sessions' server roles come from the route's
    /// factory.
    pub fn new(ctx: Arc<RouteCtx>) -> Self {
        Self {
            origins: Self::origins(&ctx),
            ctx,
            sessions: Arc::new(Mutex::new(HashMap::new())),
            refusing: Arc::new(tokio::sync::Semaphore::new(polling::MAX_REFUSING)),
        }
    }

    /// The origins a route's pages may come from: `socketio.cors_origins` and the route's
    /// `client_limits.allowed_origins`.
    fn origins(ctx: &RouteCtx) -> Vec<String> {
        let mut origins = ctx.config.socketio.cors_origins.clone();
        origins.extend(ctx.config.client_limits.allowed_origins.iter().cloned());
        origins
    }

    /// Handle one HTTP request on the route's path.
    pub async fn handle(&self, req: Request<Incoming>, up: Upgrader) -> Response<Full<Bytes>> {
        let arrived = Instant::now();
        let upgrade = is_upgrade(&req);
        // The Origin check covers WebSocket upgrades too: a browser lets any page open a
        // WebSocket anywhere, with its cookies, so only the allowlist stands between a
        // foreign page and the client's session. Requests without an Origin (Node clients)
        // pass.
        let Some(cors) = cors(
            &self.origins,
            req.headers().get(header::ORIGIN),
            req.headers().get(header::HOST),
        ) else {
            return error(Code::Forbidden);
        };
        let mut r = match (&cors, req.method()) {
            (Cors::Reflect(_) | Cors::Any, &Method::OPTIONS) => preflight(&req),
            _ => self.route(req, up, upgrade, arrived).await,
        };
        if !upgrade {
            cors.apply(&mut r);
        }
        r
    }

    /// Validation in the reference server's order: transport, sid, method, protocol version.
    async fn route(
        &self,
        req: Request<Incoming>,
        up: Upgrader,
        upgrade: bool,
        arrived: Instant,
    ) -> Response<Full<Bytes>> {
        let q = Query::parse(req.uri().query());
        let passthrough = session::is_passthrough(&self.ctx.config);
        let websocket = match q.transport.as_deref() {
            Some("websocket") => true,
            // A passthrough route forwards WebSocket messages; it has no long-polling.
            Some("polling") if !passthrough => false,
            _ => return error(Code::UnknownTransport),
        };
        if let Some(sid) = &q.sid {
            let found = self.sessions.lock().await.get(sid).cloned();
            let Some(shared) = found.filter(|s| !s.gone_before(arrived)) else {
                return error(Code::UnknownSid);
            };
            if q.eio.as_deref() != Some("4") {
                return error(Code::BadRequest);
            }
            if upgrade && websocket {
                return self.upgrade(req, up, shared);
            }
            if websocket || shared.transport() == WEBSOCKET {
                // Transport mismatch.
                return error(Code::BadRequest);
            }
            return match *req.method() {
                Method::GET => self.poll(&shared, arrived).await,
                Method::POST => self.post(req, &shared).await,
                _ => error(Code::BadHandshakeMethod),
            };
        }
        if req.method() != Method::GET {
            return error(Code::BadHandshakeMethod);
        }
        if websocket && !upgrade {
            return error(Code::BadRequest);
        }
        if q.eio.as_deref() != Some("4") {
            return error(Code::UnsupportedProtocolVersion);
        }
        if websocket {
            self.open_websocket(req, up)
        } else {
            self.open_polling(req, up).await
        }
    }

    /// The `open` packet as a WebSocket message (`0{..}`).
    fn open_packet(&self, sid: String, upgrades: Vec<String>) -> Bytes {
        let c = &self.ctx.config.socketio;
        let json = engineio::encode_open(&OpenInfo {
            sid,
            upgrades,
            ping_interval: c.ping_interval_ms,
            ping_timeout: c.ping_timeout_ms,
            max_payload: c.max_payload as u64,
        });
        let mut b = BytesMut::with_capacity(json.len() + 1);
        b.put_u8(b'0');
        b.extend_from_slice(&json);
        b.freeze()
    }

    /// A WebSocket-first session: `open` with no upgrades, then the session over the socket.
    fn open_websocket(&self, req: Request<Incoming>, up: Upgrader) -> Response<Full<Bytes>> {
        let open = self.open_packet(session_id(), Vec::new());
        up.upgrade(
            req,
            Some(Box::new(
                // Builds the session at once and returns it boxed: what the closure takes
                // (the upgraded WebSocket, the upgrade's headers) is not kept for the
                // session's life.
                move |upgraded: Upgraded, ctx: Arc<RouteCtx>, shutdown| {
                    let Upgraded { ws, handshake } = upgraded;
                    if session::is_passthrough(&ctx.config) {
                        // The backend's own `open` and pings go through unchanged.
                        let dial = passthrough_dial(&handshake);
                        return Box::pin(session::passthrough(
                            ctx,
                            ws,
                            dial,
                            handshake.peer,
                            shutdown,
                        ));
                    }
                    let mut link = session::leg_link(ws, &ctx, ctx.metrics.down.for_session());
                    // The queue is new: the open packet goes first, at once.
                    link.push(WsMsg::Text(open));
                    let role = (ctx.new_server)(&handshake, Instant::now());
                    Box::pin(Session::new(ctx, link, role, &handshake).run(shutdown))
                },
            )),
        )
    }
}
