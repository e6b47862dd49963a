//! The Engine.IO v4 server transport of Socket.IO routes: HTTP long-polling, WebSocket, and
//! the upgrade from one to the other, in front of one [`Session`] per Engine.IO session.
//!
//! Owns: request validation with the reference server's error codes, the Origin allowlist
//! (CORS for browser long-polling, and WebSocket upgrades), the `open` handshake packet, the
//! session registry (sid → transport state), the long-polling buffer toward the next GET
//! (bounded; one GET at a time), POST bodies (size and packet-count limits before buffering,
//! one [`WsMsg`] per packet into the session), the probe/upgrade sequence, and the writer task that drains the session's outbound
//! queue into whichever transport is current. The session and its [`SocketioServer`] role see one message stream
//! and one queue whatever the transport.
//!
//! Must not touch: Socket.IO packets and their meaning (the role's), translation, the upstream
//! leg, other dialects. Engine.IO packets are only framed and unframed here (pings are the
//! role's duty, except the `2probe`/`3probe` exchange of an upgrade).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio::{self, OpenInfo, Packet as Eio};
use crate::handshake::{
    Transport, Upgraded, Upgrader, handshake_of, is_upgrade, passthrough_dial, session_id,
};
use crate::metrics::LegCounters;
use crate::session::{self, Inbound, Link, LinkError, LinkOut, RouteCtx, Session};

/// The WebSocket write half handed from an upgrade to the session's writer.
type WsSink = SplitSink<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, Message>;

/// Long-polling sessions one route keeps at once. Each holds the permit of the connection that
/// opened it, but one connection can open many, so the registry has its own bound.
const MAX_POLLING_SESSIONS: usize = 100_000;
/// The client must finish an upgrade (`2probe` … `5`) within this (reference `upgradeTimeout`).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// While an upgrade is probing, a GET with nothing to say is answered `6` after this (the
/// reference server's noop check interval), so the client can pause polling.
const PROBE_NOOP_AFTER: Duration = Duration::from_millis(100);
/// After a long-polling session ends, its sid lives on this long so the next GET can fetch what
/// was still buffered and the close packet.
const POLL_LINGER: Duration = Duration::from_secs(5);
/// The same, once the proxy is shutting down.
const POLL_LINGER_SHUTDOWN: Duration = Duration::from_secs(1);

/// `Shared::transport` values.
const POLLING: u8 = 0;
const UPGRADING: u8 = 1;
const WEBSOCKET: u8 = 2;

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

/// A long-polling payload response.
fn payload(packets: &[Eio]) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::OK, engineio::encode_polling(packets));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

/// The long-polling side of a session: packets waiting for the next GET.
struct PollState {
    rx: mpsc::Receiver<Eio>,
    /// A packet taken from `rx` that did not fit the previous response.
    held: Option<Eio>,
    /// The session moved to WebSocket; GETs are refused.
    upgraded: bool,
}

/// One Engine.IO session as the HTTP handlers, the writer task and an upgrade share it.
struct Shared {
    /// Packets from the client (POST bodies, then the WebSocket) into the session.
    inbound: mpsc::Sender<Result<WsMsg, LinkError>>,
    /// Ends the session from the transport side (overlapping polls, bad bodies, stuck polls).
    kill: CancellationToken,
    poll: Mutex<PollState>,
    get_busy: AtomicBool,
    post_busy: AtomicBool,
    /// [`POLLING`], [`UPGRADING`] or [`WEBSOCKET`].
    transport: AtomicU8,
    /// A `2probe` was answered: a waiting GET is released with a noop.
    probing: watch::Sender<bool>,
    /// The client sent `5`: a waiting GET is released with a noop.
    upgraded: CancellationToken,
    /// A GET carried the close packet: the sid may go.
    finished: CancellationToken,
    /// Where an upgrade hands its WebSocket to the writer task.
    hand_over: Mutex<Option<oneshot::Sender<WsSink>>>,
    counters: LegCounters,
}

impl Shared {
    /// A fresh long-polling session's shared state, and the channel ends it does not keep.
    fn new(depth: usize, counters: LegCounters) -> (Self, Ends) {
        let (in_tx, in_rx) = mpsc::channel(depth);
        let (out_tx, out_rx) = mpsc::channel(depth);
        let (poll_tx, poll_rx) = mpsc::channel(depth);
        let (hand_tx, hand_rx) = oneshot::channel();
        let shared = Self {
            inbound: in_tx,
            kill: CancellationToken::new(),
            poll: Mutex::new(PollState {
                rx: poll_rx,
                held: None,
                upgraded: false,
            }),
            get_busy: AtomicBool::new(false),
            post_busy: AtomicBool::new(false),
            transport: AtomicU8::new(POLLING),
            probing: watch::Sender::new(false),
            upgraded: CancellationToken::new(),
            finished: CancellationToken::new(),
            hand_over: Mutex::new(Some(hand_tx)),
            counters,
        };
        let ends = Ends {
            inbound: in_rx,
            outbound: out_tx,
            outbound_rx: out_rx,
            poll: poll_tx,
            hand_over: hand_rx,
        };
        (shared, ends)
    }

    fn transport(&self) -> u8 {
        self.transport.load(Ordering::Acquire)
    }
}

/// The channel ends of a new long-polling session that [`Shared`] does not hold.
struct Ends {
    /// The session's inbound stream reads this.
    inbound: mpsc::Receiver<Result<WsMsg, LinkError>>,
    /// The session's outbound queue...
    outbound: mpsc::Sender<LinkOut>,
    /// ...which the writer task drains.
    outbound_rx: mpsc::Receiver<LinkOut>,
    /// The writer fills the long-polling buffer through this.
    poll: mpsc::Sender<Eio>,
    /// The writer receives an upgrade's WebSocket here.
    hand_over: oneshot::Receiver<WsSink>,
}

/// An upgrade in progress: the session is [`UPGRADING`] while this lives. Dropped before
/// [`UpgradeGuard::complete`], however that happens (the 101 was not sent, hyper never handed
/// the connection over, the probe failed or was dropped), it returns the session to
/// [`POLLING`]; otherwise the session would refuse every later upgrade.
struct UpgradeGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl UpgradeGuard {
    /// `None` when the session is already upgrading or upgraded.
    fn begin(shared: Arc<Shared>) -> Option<Self> {
        shared
            .transport
            .compare_exchange(POLLING, UPGRADING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(Self {
            shared,
            done: false,
        })
    }

    /// The client sent `5`: the session is on WebSocket for good.
    fn complete(mut self) -> Arc<Shared> {
        self.done = true;
        self.shared.transport.store(WEBSOCKET, Ordering::Release);
        self.shared.clone()
    }
}

impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        if !self.done {
            // Only UPGRADING goes back: nothing else may have moved it meanwhile, but a
            // compare-exchange costs nothing and cannot undo a finished upgrade.
            let _ = self.shared.transport.compare_exchange(
                UPGRADING,
                POLLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// Clears a busy flag when a request handler ends, however it ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

type Registry = Arc<Mutex<HashMap<String, Arc<Shared>>>>;

/// Engine.IO sessions of one route.
pub struct Engine {
    ctx: Arc<RouteCtx>,
    sessions: Registry,
}

impl Transport for Engine {
    fn handle(
        &self,
        req: Request<Incoming>,
        up: Upgrader,
    ) -> futures_util::future::BoxFuture<'_, Response<Full<Bytes>>> {
        Box::pin(Engine::handle(self, req, up))
    }
}

impl Engine {
    /// An engine for a Socket.IO route; its sessions' server roles come from the route's
    /// factory.
    pub fn new(ctx: Arc<RouteCtx>) -> Self {
        Self {
            ctx,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Handle one HTTP request on the route's path.
    pub async fn handle(&self, req: Request<Incoming>, up: Upgrader) -> Response<Full<Bytes>> {
        let upgrade = is_upgrade(&req);
        // The Origin check covers WebSocket upgrades too: a browser lets any page open a
        // WebSocket anywhere, with its cookies, so only the allowlist stands between a
        // foreign page and the client's session. Requests without an Origin (Node clients)
        // pass.
        let Some(cors) = cors(
            &self.ctx.config.socketio.cors_origins,
            req.headers().get(header::ORIGIN),
            req.headers().get(header::HOST),
        ) else {
            return error(Code::Forbidden);
        };
        let mut r = match (&cors, req.method()) {
            (Cors::Reflect(_) | Cors::Any, &Method::OPTIONS) => preflight(&req),
            _ => self.route(req, up, upgrade).await,
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
            let Some(shared) = found else {
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
                Method::GET => self.poll(&shared).await,
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
                move |upgraded: Upgraded, ctx: Arc<RouteCtx>, shutdown| {
                    Box::pin(async move {
                        let Upgraded { ws, handshake } = upgraded;
                        let link = Link::websocket(
                            ws,
                            ctx.queue_depth,
                            ctx.queue_bytes,
                            ctx.write_timeout,
                            ctx.metrics.down.clone(),
                        );
                        if session::is_passthrough(&ctx.config) {
                            // The backend's own `open` and pings go through unchanged.
                            let dial = passthrough_dial(&handshake);
                            return session::passthrough(ctx, link, dial, shutdown).await;
                        }
                        if link
                            .outbound
                            .send(LinkOut::Msg(WsMsg::Text(open)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        let role = (ctx.new_server)(&handshake, Instant::now());
                        Session::new(ctx, link, role, &handshake)
                            .run(shutdown)
                            .await;
                    })
                },
            )),
        )
    }

    /// A long-polling handshake: register the session, start it, answer `open`.
    async fn open_polling(&self, req: Request<Incoming>, up: Upgrader) -> Response<Full<Bytes>> {
        let ctx = self.ctx.clone();
        let sid = session_id();
        let (shared, ends) = Shared::new(ctx.queue_depth, ctx.metrics.down.clone());
        let shared = Arc::new(shared);
        let Some(permit) = up.session_permit() else {
            return respond(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
        };
        {
            let mut sessions = self.sessions.lock().await;
            if sessions.len() >= MAX_POLLING_SESSIONS {
                return respond(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
            }
            sessions.insert(sid.clone(), shared.clone());
        }
        let writer = tokio::spawn(poll_writer(
            shared.clone(),
            ends.outbound_rx,
            ends.poll,
            ends.hand_over,
            ctx.write_timeout,
        ));
        let link = Link::new(
            inbound(ends.inbound, shared.kill.clone()),
            ends.outbound,
            writer,
        );
        let handshake = handshake_of(&req, Some(up.peer()), None);
        let role = (ctx.new_server)(&handshake, Instant::now());
        let registry = self.sessions.clone();
        let open = self.open_packet(sid.clone(), vec!["websocket".into()]);
        up.spawn_session(permit, move |shutdown| async move {
            Session::new(ctx, link, role, &handshake)
                .run(shutdown.clone())
                .await;
            if shared.transport() != WEBSOCKET {
                let linger = if shutdown.is_cancelled() {
                    POLL_LINGER_SHUTDOWN
                } else {
                    POLL_LINGER
                };
                let _ = tokio::time::timeout(linger, shared.finished.cancelled()).await;
            }
            registry.lock().await.remove(&sid);
        });
        self.ctx.metrics.down.frames_out.increment(1);
        self.ctx.metrics.down.bytes_out.increment(open.len() as u64);
        let mut r = respond(StatusCode::OK, open);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// A long-polling GET: whatever is buffered (up to maxPayload), else wait for something.
    async fn poll(&self, shared: &Shared) -> Response<Full<Bytes>> {
        if shared.get_busy.swap(true, Ordering::AcqRel) {
            // Overlapping polls: the reference server fails the transport.
            shared.kill.cancel();
            return error(Code::BadRequest);
        }
        let _busy = Busy(&shared.get_busy);
        let mut st = shared.poll.lock().await;
        if st.upgraded {
            return error(Code::BadRequest);
        }
        let mut probing = shared.probing.subscribe();
        let probing_now = *probing.borrow_and_update();
        let wait = if probing_now {
            PROBE_NOOP_AFTER
        } else {
            Duration::from_millis(self.ctx.config.socketio.ping_interval_ms)
        };
        let first = match st.held.take() {
            Some(p) => Some(p),
            None => tokio::select! {
                biased;
                p = st.rx.recv() => p,
                _ = shared.upgraded.cancelled() => return payload(&[Eio::Noop]),
                _ = probing.wait_for(|p| *p), if !probing_now => return payload(&[Eio::Noop]),
                _ = tokio::time::sleep(wait) => return payload(&[Eio::Noop]),
            },
        };
        let max = self.ctx.config.socketio.max_payload;
        let mut packets = Vec::new();
        let mut size = 0;
        let mut closed = false;
        match first {
            Some(p) => {
                size += packet_len(&p);
                packets.push(p);
                loop {
                    match st.rx.try_recv() {
                        Ok(p) => {
                            let len = packet_len(&p) + 1;
                            if size + len > max {
                                st.held = Some(p);
                                break;
                            }
                            size += len;
                            packets.push(p);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            None => closed = true,
        }
        drop(st);
        if closed {
            // The session is over: the client learns it from the close packet.
            packets.push(Eio::Close);
            shared.finished.cancel();
        }
        let r = payload(&packets);
        shared.counters.frames_out.increment(packets.len() as u64);
        shared.counters.bytes_out.increment(size as u64);
        r
    }

    /// A long-polling POST: each packet of the body goes into the session as one message.
    async fn post(&self, req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
        let max = self.ctx.config.socketio.max_payload;
        let binary = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
        if binary {
            // Engine.IO 4 bodies are text (binary packets are base64).
            shared.kill.cancel();
            return error(Code::BadRequest);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return respond(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new());
        }
        if shared.post_busy.swap(true, Ordering::AcqRel) {
            shared.kill.cancel();
            return error(Code::BadRequest);
        }
        let _busy = Busy(&shared.post_busy);
        let write_timeout = self.ctx.write_timeout;
        let collected =
            tokio::time::timeout(write_timeout, Limited::new(req.into_body(), max).collect()).await;
        let body = match collected {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return respond(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new());
            }
            Ok(Err(_)) | Err(_) => {
                shared.kill.cancel();
                return error(Code::BadRequest);
            }
        };
        // Bounded by count as well as bytes: a body of `6\x1e6\x1e…` would otherwise be
        // half a million packets, each a message through the session.
        let max_packets = self.ctx.config.socketio.max_packets_per_post;
        let packets = match engineio::decode_polling(body.clone(), max_packets) {
            Ok(p) => p,
            Err(_) => {
                shared.kill.cancel();
                return error(Code::BadRequest);
            }
        };
        // Text packets go in as the WebSocket would carry them (`<digit><data>`, a slice of the
        // body); binary ones (`b<base64>`) as binary messages.
        for (part, p) in body.split(|&b| b == 0x1e).zip(packets) {
            let msg = match p {
                Eio::Binary(data) => WsMsg::Binary(data),
                _ => WsMsg::Text(body.slice_ref(part)),
            };
            shared.counters.frames_in.increment(1);
            shared.counters.bytes_in.increment(msg.len() as u64);
            match tokio::time::timeout(write_timeout, shared.inbound.send(Ok(msg))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return error(Code::UnknownSid),
                Err(_) => {
                    shared.kill.cancel();
                    return error(Code::BadRequest);
                }
            }
        }
        let mut r = respond(StatusCode::OK, Bytes::from_static(b"ok"));
        // text/html, as the reference server answers (avoids download dialogs).
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        r
    }

    /// A WebSocket upgrade of a long-polling session.
    fn upgrade(
        &self,
        req: Request<Incoming>,
        up: Upgrader,
        shared: Arc<Shared>,
    ) -> Response<Full<Bytes>> {
        let Some(guard) = UpgradeGuard::begin(shared) else {
            // Already upgrading or upgraded.
            return error(Code::BadRequest);
        };
        let write_timeout = self.ctx.write_timeout;
        // The guard lives in the closure, then in the probe: a refused handshake or an
        // upgrade hyper never completes drops it with the closure.
        up.upgrade(
            req,
            Some(Box::new(move |upgraded: Upgraded, _route, shutdown| {
                Box::pin(probe(guard, upgraded.ws, write_timeout, shutdown))
            })),
        )
    }
}

/// How a request's `Origin` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cors {
    /// No `Origin` header: not a browser, nothing to add.
    NoOrigin,
    /// A listed or same-origin page: its origin is reflected, credentials allowed.
    Reflect(HeaderValue),
    /// Allowed by `*`: `Access-Control-Allow-Origin: *`. Never reflected with credentials,
    /// which would hand every site the client's cookies.
    Any,
}

impl Cors {
    fn apply(&self, r: &mut Response<Full<Bytes>>) {
        let h = r.headers_mut();
        match self {
            Self::NoOrigin => {}
            Self::Reflect(o) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            Self::Any => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
        }
    }
}

/// The CORS decision for a request: `None` is Forbidden. An origin listed in `allowed`, or
/// naming the very host the request was sent to, is reflected; otherwise `*` allows any.
fn cors(
    allowed: &[String],
    origin: Option<&HeaderValue>,
    host: Option<&HeaderValue>,
) -> Option<Cors> {
    let Some(origin) = origin else {
        return Some(Cors::NoOrigin);
    };
    let listed = allowed.iter().any(|o| o.as_bytes() == origin.as_bytes());
    if listed || host.is_some_and(|h| same_origin(origin.as_bytes(), h.as_bytes())) {
        return Some(Cors::Reflect(origin.clone()));
    }
    allowed.iter().any(|o| o == "*").then_some(Cors::Any)
}

/// Whether `origin` (`scheme://host[:port]`) names the host:port of the `Host` header: a page
/// served from this very listener (same-origin long-polling needs no allowlist). The Host
/// header is read with the origin's scheme so that default ports compare equal
/// (`https://a.example` and `a.example:443`).
fn same_origin(origin: &[u8], host: &[u8]) -> bool {
    let (Ok(origin), Ok(host)) = (std::str::from_utf8(origin), std::str::from_utf8(host)) else {
        return false;
    };
    let Ok(o) = url::Url::parse(origin) else {
        // Includes the opaque `null` origin of sandboxed pages and files.
        return false;
    };
    if !matches!(o.scheme(), "http" | "https") {
        return false;
    }
    let Ok(h) = url::Url::parse(&format!("{}://{host}", o.scheme())) else {
        return false;
    };
    // A Host header is only `host[:port]`; anything else parsed into user info or a path
    // is not a host this listener serves.
    let plain = h.username().is_empty()
        && h.password().is_none()
        && h.path() == "/"
        && h.query().is_none()
        && h.fragment().is_none();
    plain
        && h.host().is_some()
        && o.host() == h.host()
        && o.port_or_known_default() == h.port_or_known_default()
}

/// A CORS preflight answer (the allow-origin headers are added by the caller).
fn preflight<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::NO_CONTENT, Bytes::new());
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    if let Some(v) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    r
}

/// Bytes a packet takes in a long-polling payload.
fn packet_len(p: &Eio) -> usize {
    match p {
        Eio::Open(d) | Eio::Ping(d) | Eio::Pong(d) | Eio::Message(d) => 1 + d.len(),
        Eio::Close | Eio::Upgrade | Eio::Noop => 1,
        Eio::Binary(d) => 1 + d.len().div_ceil(3) * 4,
    }
}

/// One read from an upgraded client WebSocket, as [`Link::websocket`] takes it (an oversize
/// message is `LinkError::TooBig`, which the session answers); the stream's end is a close.
fn from_ws(
    next: Option<Result<Message, WsError>>,
    counters: &LegCounters,
) -> Option<Result<WsMsg, LinkError>> {
    match next {
        Some(r) => session::inbound_item(r, counters),
        None => Some(Err(LinkError::Closed)),
    }
}

/// The session's inbound stream: client packets, or an error once the transport side kills
/// the session. State lives in the stream, so dropping a `next()` future loses nothing.
fn inbound(rx: mpsc::Receiver<Result<WsMsg, LinkError>>, kill: CancellationToken) -> Inbound {
    Box::pin(futures_util::stream::unfold(
        (rx, kill, false),
        |(mut rx, kill, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                biased;
                _ = kill.cancelled() => Some((
                    Err(LinkError::Transport("engine.io transport error".into())),
                    (rx, kill, true),
                )),
                m = rx.recv() => m.map(|m| (m, (rx, kill, false))),
            }
        },
    ))
}

/// Drains the session's outbound queue into the long-polling buffer until an upgrade hands
/// over a WebSocket, then into the WebSocket. Ending drops the buffer's sender, which the next
/// GET turns into the close packet after whatever is still buffered.
async fn poll_writer(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<LinkOut>,
    poll_tx: mpsc::Sender<Eio>,
    mut hand_over: oneshot::Receiver<WsSink>,
    write_timeout: Duration,
) {
    let mut can_upgrade = true;
    loop {
        let item = tokio::select! {
            biased;
            s = &mut hand_over, if can_upgrade => match s {
                Ok(sink) => return ws_writer(&shared, sink, rx, None, write_timeout).await,
                Err(_) => {
                    can_upgrade = false;
                    continue;
                }
            },
            item = rx.recv() => item,
        };
        let msg = match item {
            None | Some(LinkOut::Close(_)) => return,
            Some(LinkOut::Barrier(done)) => {
                let _ = done.send(());
                continue;
            }
            // Engine.IO has pings of its own; the session sends none to this link.
            Some(LinkOut::Ping) => continue,
            Some(LinkOut::Final(msgs, _)) => {
                for m in msgs {
                    if let Ok(p) = engineio::decode_ws(&m) {
                        let _ = poll_tx.try_send(p);
                    }
                }
                return;
            }
            Some(LinkOut::Msg(msg)) => msg,
        };
        let Ok(packet) = engineio::decode_ws(&msg) else {
            continue;
        };
        // A slot in the buffer; a client that does not poll for `write_timeout` is gone.
        let permit = loop {
            tokio::select! {
                biased;
                s = &mut hand_over, if can_upgrade => match s {
                    Ok(sink) => {
                        return ws_writer(&shared, sink, rx, Some(msg), write_timeout).await;
                    }
                    Err(_) => can_upgrade = false,
                },
                p = tokio::time::timeout(write_timeout, poll_tx.reserve()) => break p,
            }
        };
        match permit {
            Ok(Ok(permit)) => permit.send(packet),
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!("long-polling client stopped polling");
                shared.kill.cancel();
                return;
            }
        }
    }
}

/// The writer after an upgrade: first what the long-polling buffer still holds, then `carry`,
/// then the session's queue, batching flushes like the WebSocket link's writer.
async fn ws_writer(
    shared: &Shared,
    mut sink: WsSink,
    rx: mpsc::Receiver<LinkOut>,
    carry: Option<WsMsg>,
    write_timeout: Duration,
) {
    let mut first = Vec::new();
    {
        let mut st = shared.poll.lock().await;
        st.upgraded = true;
        if let Some(p) = st.held.take() {
            first.push(engineio::encode_ws(&p));
        }
        while let Ok(p) = st.rx.try_recv() {
            first.push(engineio::encode_ws(&p));
        }
        st.rx.close();
    }
    first.extend(carry);
    let counters = &shared.counters;
    for msg in first {
        if session::feed(&mut sink, msg, write_timeout, counters)
            .await
            .is_err()
        {
            return;
        }
    }
    if session::flush(&mut sink, write_timeout).await.is_err() {
        return;
    }
    session::write_socket(sink, rx, write_timeout, counters.clone()).await;
}

/// The upgrade of a long-polling session, on the new WebSocket: answer `2probe` with
/// `3probe`, release the waiting GET so the client can pause polling, and on `5` hand the
/// socket to the session (the writer first sends what polling had not delivered). Then read
/// the socket into the session until either ends.
async fn probe(
    guard: UpgradeGuard,
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    write_timeout: Duration,
    shutdown: CancellationToken,
) {
    let shared = guard.shared.clone();
    let (mut sink, mut stream) = ws.split();
    let deadline = tokio::time::Instant::now() + UPGRADE_TIMEOUT;
    let upgraded = loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break false,
            _ = shared.inbound.closed() => break false,
            n = tokio::time::timeout_at(deadline, stream.next()) => n,
        };
        match next {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2probe" => {
                let pong = Message::Text(Utf8Bytes::from_static("3probe"));
                if !matches!(
                    tokio::time::timeout(write_timeout, sink.send(pong)).await,
                    Ok(Ok(()))
                ) {
                    break false;
                }
                shared.probing.send_replace(true);
            }
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "5" => break true,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
            // Anything else, a close, an error or the timeout: the upgrade failed.
            _ => break false,
        }
    };
    shared.probing.send_replace(false);
    if !upgraded {
        let _ = tokio::time::timeout(write_timeout, sink.close()).await;
        // Dropping the guard puts the session back on long-polling.
        return;
    }
    let shared = guard.complete();
    shared.upgraded.cancel();
    let hand_over = shared.hand_over.lock().await.take();
    let Some(tx) = hand_over else { return };
    if tx.send(sink).is_err() {
        // The session (and its writer) is gone.
        return;
    }
    loop {
        let next = tokio::select! {
            biased;
            _ = shared.inbound.closed() => return,
            n = stream.next() => n,
        };
        let Some(item) = from_ws(next, &shared.counters) else {
            continue;
        };
        let end = item.is_err();
        tokio::select! {
            biased;
            _ = shared.inbound.closed() => return,
            r = shared.inbound.send(item) => if r.is_err() { return },
        }
        if end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some("EIO=4&transport=polling&t=abc&sid=x%2By"));
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("polling"));
        assert_eq!(q.sid.as_deref(), Some("x+y"));
        let q = Query::parse(None);
        assert!(q.eio.is_none() && q.transport.is_none() && q.sid.is_none());
    }

    #[test]
    fn error_bodies_match_the_reference_server() {
        for (code, n, status) in [
            (Code::UnknownTransport, 0, 400),
            (Code::UnknownSid, 1, 400),
            (Code::BadHandshakeMethod, 2, 400),
            (Code::BadRequest, 3, 400),
            (Code::Forbidden, 4, 403),
            (Code::UnsupportedProtocolVersion, 5, 400),
        ] {
            let v: serde_json::Value = serde_json::from_str(code.body()).unwrap();
            assert_eq!(v["code"], n);
            assert_eq!(code.status().as_u16(), status);
            let r = error(code);
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        }
    }

    #[test]
    fn polling_packet_lengths() {
        for p in [
            Eio::Message(Bytes::from("2[\"a\"]")),
            Eio::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Eio::Binary(Bytes::new()),
            Eio::Close,
            Eio::Ping(Bytes::new()),
        ] {
            assert_eq!(
                packet_len(&p),
                engineio::encode_polling(std::slice::from_ref(&p)).len()
            );
        }
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        for (origin, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("https://app.example", "app.example"),
            ("https://app.example", "app.example:443"),
            ("http://app.example", "APP.example:80"),
            ("http://[::1]:3000", "[::1]:3000"),
        ] {
            assert!(
                same_origin(origin.as_bytes(), host.as_bytes()),
                "{origin} {host}"
            );
        }
        for (origin, host) in [
            ("http://127.0.0.1:8081", "127.0.0.1:8080"),
            ("https://app.example", "app.example:80"),
            ("http://evil.example", "app.example"),
            ("null", "app.example"),
            ("file:///x", "app.example"),
            ("http://app.example", ""),
            ("http://app.example", "evil@app.example"),
            ("http://app.example", "app.example/x"),
        ] {
            assert!(
                !same_origin(origin.as_bytes(), host.as_bytes()),
                "{origin} {host}"
            );
        }
    }

    #[test]
    fn cors_decisions() {
        let none: Vec<String> = Vec::new();
        let listed = vec!["https://app.example".to_owned()];
        let any = vec!["*".to_owned()];
        let host = hv("proxy.example:8080");
        // No Origin: not a browser.
        assert_eq!(cors(&none, None, Some(&host)), Some(Cors::NoOrigin));
        // Same origin passes even with an empty allowlist, and is reflected.
        let own = hv("http://proxy.example:8080");
        assert_eq!(
            cors(&none, Some(&own), Some(&host)),
            Some(Cors::Reflect(own.clone()))
        );
        // Cross origin: only if listed, or `*` (then without reflection).
        let app = hv("https://app.example");
        assert_eq!(cors(&none, Some(&app), Some(&host)), None);
        assert_eq!(cors(&none, Some(&app), None), None);
        assert_eq!(
            cors(&listed, Some(&app), Some(&host)),
            Some(Cors::Reflect(app.clone()))
        );
        assert_eq!(
            cors(&listed, Some(&hv("https://evil.example")), Some(&host)),
            None
        );
        assert_eq!(cors(&any, Some(&app), Some(&host)), Some(Cors::Any));
        // `*` still reflects the listener's own origin (credentials are safe there).
        assert_eq!(
            cors(&any, Some(&own), Some(&host)),
            Some(Cors::Reflect(own.clone()))
        );

        let mut r = respond(StatusCode::OK, Bytes::new());
        Cors::Any.apply(&mut r);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(
            !r.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        );
        let mut r = respond(StatusCode::OK, Bytes::new());
        Cors::Reflect(app.clone()).apply(&mut r);
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
            "true"
        );
        assert_eq!(r.headers()[header::VARY], "Origin");
        let mut r = respond(StatusCode::OK, Bytes::new());
        Cors::NoOrigin.apply(&mut r);
        assert!(r.headers().is_empty());
    }

    fn shared() -> Arc<Shared> {
        let (s, _) = Shared::new(4, LegCounters::new("test", "socketio", "downstream"));
        Arc::new(s)
    }

    #[test]
    fn a_failed_upgrade_returns_to_polling() {
        let s = shared();
        let g = UpgradeGuard::begin(s.clone()).unwrap();
        assert_eq!(s.transport(), UPGRADING);
        // One upgrade at a time.
        assert!(UpgradeGuard::begin(s.clone()).is_none());
        // The probe failed (or the guard's future was dropped).
        drop(g);
        assert_eq!(s.transport(), POLLING);
        // The 101 was answered but hyper never handed the connection over: the closure
        // holding the guard is dropped without being called.
        let g = UpgradeGuard::begin(s.clone()).unwrap();
        let start: Box<dyn FnOnce() + Send> = Box::new(move || drop(g));
        drop(start);
        assert_eq!(s.transport(), POLLING);
        // A completed upgrade stays, and refuses further ones.
        let g = UpgradeGuard::begin(s.clone()).unwrap();
        let same = g.complete();
        assert!(Arc::ptr_eq(&same, &s));
        assert_eq!(s.transport(), WEBSOCKET);
        assert!(UpgradeGuard::begin(s.clone()).is_none());
        assert_eq!(s.transport(), WEBSOCKET);
    }

    #[test]
    fn oversize_websocket_message_is_left_to_the_session() {
        use tokio_tungstenite::tungstenite::error::CapacityError;
        let counters = LegCounters::new("test", "socketio", "downstream");
        let too_long = WsError::Capacity(CapacityError::MessageTooLong {
            size: 11,
            max_size: 10,
        });
        // The session answers it in the role's dialect, with close 1009.
        let r = from_ws(Some(Err(too_long)), &counters);
        assert!(matches!(
            r,
            Some(Err(LinkError::TooBig { size: 11, max: 10 }))
        ));
        let r = from_ws(Some(Err(WsError::ConnectionClosed)), &counters);
        assert!(matches!(r, Some(Err(LinkError::Transport(_)))));
        // Data passes, control frames are skipped, the end is a close.
        let r = from_ws(Some(Ok(Message::text("40"))), &counters);
        assert!(matches!(r, Some(Ok(WsMsg::Text(t))) if t == "40"));
        assert!(from_ws(Some(Ok(Message::Ping(Bytes::new()))), &counters).is_none());
        assert!(matches!(
            from_ws(None, &counters),
            Some(Err(LinkError::Closed))
        ));
    }
}
