//! The Engine.IO v4 server transport of Socket.IO routes: HTTP long-polling, WebSocket, and
//! the upgrade from one to the other, in front of one [`Session`] per Engine.IO session.
//!
//! Owns: request validation with the reference server's error codes, CORS for browser
//! long-polling, the `open` handshake packet, the session registry (sid → transport state), the
//! long-polling buffer toward the next GET (bounded; one GET at a time), POST bodies (size
//! limit before buffering, one [`WsMsg`] per packet into the session), the probe/upgrade
//! sequence, and the writer task that drains the session's outbound queue into whichever
//! transport is current. The session and its [`SocketioServer`] role see one message stream
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
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio::{self, OpenInfo, Packet as Eio};
use crate::dialect::socketio::server::{self as sio_server, SocketioServer};
use crate::listener::{Upgraded, Upgrader, bearer, session_id};
use crate::metrics::LegCounters;
use crate::session::{self, Inbound, Link, LinkError, LinkOut, RouteCtx, Session};
use crate::translate::Template;

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

fn is_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method() == Method::GET
        && has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade")
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
    fn transport(&self) -> u8 {
        self.transport.load(Ordering::Acquire)
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
    settings: sio_server::Settings,
    sessions: Registry,
}

impl Engine {
    /// An engine for a Socket.IO route.
    pub fn new(ctx: Arc<RouteCtx>) -> Self {
        let c = &ctx.config.socketio;
        let settings = sio_server::Settings {
            ping_interval: Duration::from_millis(c.ping_interval_ms),
            ping_timeout: Duration::from_millis(c.ping_timeout_ms),
            max_payload: c.max_payload,
            namespaces: c.namespaces.clone(),
            max_attachments: c.max_attachments,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            // Validated by `Config::validate`.
            auto_subscribe: c
                .auto_subscribe
                .iter()
                .filter_map(|t| Template::parse(t).ok())
                .collect(),
            ..Default::default()
        };
        Self {
            ctx,
            settings,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Handle one HTTP request on the route's path.
    pub async fn handle(&self, req: Request<Incoming>, up: Upgrader) -> Response<Full<Bytes>> {
        let upgrade = is_upgrade(&req);
        // CORS is for browser long-polling; requests without an Origin (Node clients) pass.
        let origin = match req.headers().get(header::ORIGIN) {
            Some(o) if !upgrade => {
                if !self.origin_allowed(o) {
                    return error(Code::Forbidden);
                }
                Some(o.clone())
            }
            _ => None,
        };
        let mut r = match (&origin, req.method()) {
            (Some(_), &Method::OPTIONS) => preflight(&req),
            _ => self.route(req, up, upgrade).await,
        };
        if let Some(o) = origin {
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        r
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        let origin = origin.as_bytes();
        self.ctx
            .config
            .socketio
            .cors_origins
            .iter()
            .any(|o| o == "*" || o.as_bytes() == origin)
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
        let settings = self.settings.clone();
        let open = self.open_packet(session_id(), Vec::new());
        up.upgrade(
            req,
            Some(Box::new(move |upgraded: Upgraded, route, shutdown| {
                Box::pin(async move {
                    let Upgraded { ws, token, query } = upgraded;
                    let ctx = route.ctx;
                    let link = Link::websocket(
                        ws,
                        ctx.queue_depth,
                        ctx.write_timeout,
                        ctx.metrics.down.clone(),
                    );
                    if session::is_passthrough(&ctx.config) {
                        // The backend's own `open` and pings go through unchanged.
                        let headers = token
                            .map(|t| {
                                vec![(
                                    "Authorization",
                                    format!("Bearer {}", String::from_utf8_lossy(&t)),
                                )]
                            })
                            .unwrap_or_default();
                        return session::passthrough(ctx, link, headers, shutdown).await;
                    }
                    if link
                        .outbound
                        .send(LinkOut::Msg(WsMsg::Text(open)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let role =
                        SocketioServer::new(settings, token, query, session_id(), Instant::now());
                    Session::new(ctx, link, Box::new(role)).run(shutdown).await;
                })
            })),
        )
    }

    /// A long-polling handshake: register the session, start it, answer `open`.
    async fn open_polling(&self, req: Request<Incoming>, up: Upgrader) -> Response<Full<Bytes>> {
        let ctx = self.ctx.clone();
        let depth = ctx.queue_depth;
        let sid = session_id();
        let (in_tx, in_rx) = mpsc::channel(depth);
        let (out_tx, out_rx) = mpsc::channel(depth);
        let (poll_tx, poll_rx) = mpsc::channel(depth);
        let (hand_tx, hand_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
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
            counters: ctx.metrics.down.clone(),
        });
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
            out_rx,
            poll_tx,
            hand_rx,
            ctx.write_timeout,
        ));
        let link = Link {
            inbound: inbound(in_rx, shared.kill.clone()),
            outbound: out_tx,
            writer: Some(writer),
        };
        let role = SocketioServer::new(
            self.settings.clone(),
            bearer(&req),
            req.uri().query().unwrap_or_default().to_owned(),
            session_id(),
            Instant::now(),
        );
        let registry = self.sessions.clone();
        let open = self.open_packet(sid.clone(), vec!["websocket".into()]);
        up.spawn_session(permit, move |shutdown| async move {
            Session::new(ctx, link, Box::new(role))
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
            self.settings.ping_interval
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
        let max = self.settings.max_payload;
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
        let max = self.settings.max_payload;
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
        let packets = match engineio::decode_polling(body.clone(), max / 2 + 1) {
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
        if shared
            .transport
            .compare_exchange(POLLING, UPGRADING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Already upgrading or upgraded.
            return error(Code::BadRequest);
        }
        let probe_shared = shared.clone();
        let write_timeout = self.ctx.write_timeout;
        let r = up.upgrade(
            req,
            Some(Box::new(move |upgraded: Upgraded, _route, shutdown| {
                Box::pin(probe(probe_shared, upgraded.ws, write_timeout, shutdown))
            })),
        );
        if r.status() != StatusCode::SWITCHING_PROTOCOLS {
            shared.transport.store(POLLING, Ordering::Release);
        }
        r
    }
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
        if !crate::session::feed(&mut sink, msg, write_timeout, counters).await {
            return;
        }
    }
    if !crate::session::flush(&mut sink, write_timeout).await {
        return;
    }
    crate::session::write_loop(sink, rx, write_timeout, counters.clone()).await;
}

/// The upgrade of a long-polling session, on the new WebSocket: answer `2probe` with
/// `3probe`, release the waiting GET so the client can pause polling, and on `5` hand the
/// socket to the session (the writer first sends what polling had not delivered). Then read
/// the socket into the session until either ends.
async fn probe(
    shared: Arc<Shared>,
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    write_timeout: Duration,
    shutdown: CancellationToken,
) {
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
        shared.transport.store(POLLING, Ordering::Release);
        return;
    }
    shared.transport.store(WEBSOCKET, Ordering::Release);
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
        let item = match next {
            Some(Ok(Message::Text(t))) => Ok(WsMsg::Text(Bytes::from(t))),
            Some(Ok(Message::Binary(b))) => Ok(WsMsg::Binary(b)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => Err(LinkError::Closed),
            Some(Err(e)) => Err(LinkError::Transport(e.to_string())),
        };
        let end = item.is_err();
        if let Ok(m) = &item {
            shared.counters.frames_in.increment(1);
            shared.counters.bytes_in.increment(m.len() as u64);
        }
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

    #[test]
    fn upgrade_detection() {
        let req = Request::builder()
            .header("Upgrade", "websocket")
            .header("Connection", "keep-alive, Upgrade")
            .body(())
            .unwrap();
        assert!(is_upgrade(&req));
        let req = Request::builder()
            .header("Connection", "Upgrade")
            .body(())
            .unwrap();
        assert!(!is_upgrade(&req));
    }
}
