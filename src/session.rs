//! The session pump: one task per client connection, owning its upstream connection.
//!
//! Owns: the only `select!` loops of the proxy, the bounded queues toward each peer (with a
//! writer task per peer), keepalive deadlines of both legs, the upstream's connect deadline
//! (dial, WebSocket and protocol handshake until the client role is ready), correlation-table
//! expiry ticks, the order of effects (a publish is confirmed only after its frame is
//! written), the answer to a WebSocket message over the size limit (the dialect's error where
//! the role has one, then close 1009), and the count and byte budget of client operations held
//! while the upstream is dialed.
//!
//! Must not touch: wire bytes. Roles decode and encode; the translator renames. Every
//! `select!` branch is cancel-safe: state lives on [`Session`], never in a branch future.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::config::{Mode, Route};
use crate::dialect::socketio::client::{self as sio_client, SocketioClient};
use crate::dialect::stomp::client::{self as stomp_client, StompClient};
use crate::dialect::{ClientOut, ClientRole, Close, Dialect, ServerOut, ServerRole, WsMsg};
use crate::frame::{BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind};
use crate::metrics::{self as m, LegCounters, RouteMetrics};
use crate::translate::{Mapping, Translator};
use crate::upstream::{Dialer, Io, UpstreamError, Ws};

/// Why a link stopped delivering messages.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The peer closed the connection.
    #[error("closed by peer")]
    Closed,
    /// The transport failed.
    #[error("{0}")]
    Transport(String),
    /// The peer sent a message (or frame) over the size limit. The WebSocket layer refused
    /// it from the frame header, before buffering; the connection cannot go on (the rest of
    /// the message is still unread), but it can still be written to, so the session can
    /// answer in the peer's dialect and with close code 1009 instead of a bare close.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooBig {
        /// The size the frame header announced.
        size: usize,
        /// The configured limit.
        max: usize,
    },
}

/// What a writer task is asked to do.
#[derive(Debug)]
pub enum LinkOut {
    /// Write one message.
    Msg(WsMsg),
    /// Send a close frame and stop.
    Close(Close),
    /// Signal once everything queued before it has been flushed to the socket.
    Barrier(oneshot::Sender<()>),
}

/// Messages from a peer, in order.
pub type Inbound = Pin<Box<dyn Stream<Item = Result<WsMsg, LinkError>> + Send>>;

/// One peer connection as the session sees it: a message stream and a bounded queue to a
/// writer task.
pub struct Link {
    /// Messages from the peer.
    pub inbound: Inbound,
    /// The bounded queue toward the peer.
    pub outbound: mpsc::Sender<LinkOut>,
    /// The writer task, awaited (bounded) when the session ends.
    pub writer: Option<JoinHandle<()>>,
}

impl Link {
    /// Wrap a WebSocket: spawns its writer task, counts messages and bytes.
    pub fn websocket<S>(
        ws: WebSocketStream<S>,
        depth: usize,
        write_timeout: Duration,
        counters: LegCounters,
    ) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::channel(depth);
        let c_in = counters.clone();
        let inbound = stream.filter_map(move |r| std::future::ready(inbound_item(r, &c_in)));
        let writer = tokio::spawn(write_loop(sink, rx, write_timeout, counters));
        Self {
            inbound: Box::pin(inbound),
            outbound: tx,
            writer: Some(writer),
        }
    }

    /// Queue a message; `false` when the writer is gone or the queue stayed full for
    /// `limit` (a peer that reads nothing must not stall the session loop forever).
    async fn send(&mut self, msg: WsMsg, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.outbound.send(LinkOut::Msg(msg))).await,
            Ok(Ok(()))
        )
    }

    /// Queue a close and let the writer drain, within `limit`.
    async fn finish(&mut self, close: Option<Close>, limit: Duration) {
        if let Some(c) = close {
            let _ = self.outbound.try_send(LinkOut::Close(c));
        }
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.outbound, tx));
        if let Some(w) = self.writer.take() {
            let abort = w.abort_handle();
            if tokio::time::timeout(limit, w).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// One read from a WebSocket as the session takes it: `None` to skip (control frames), an
/// error once the socket is done. An oversize message is told apart from other failures so
/// the session can answer it with 1009.
pub(crate) fn inbound_item(
    r: Result<Message, WsError>,
    counters: &LegCounters,
) -> Option<Result<WsMsg, LinkError>> {
    let msg = match r {
        Ok(Message::Text(t)) => WsMsg::Text(Bytes::from(t)),
        Ok(Message::Binary(b)) => WsMsg::Binary(b),
        Ok(Message::Close(_)) => return Some(Err(LinkError::Closed)),
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => return None,
        Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
            return Some(Err(LinkError::TooBig {
                size,
                max: max_size,
            }));
        }
        Err(e) => return Some(Err(LinkError::Transport(e.to_string()))),
    };
    counters.frames_in.increment(1);
    counters.bytes_in.increment(msg.len() as u64);
    Some(Ok(msg))
}

/// Write one message (not yet flushed), counting it; `false` when the peer is gone or the
/// write made no progress for `write_timeout`.
pub(crate) async fn feed<S>(
    sink: &mut S,
    msg: WsMsg,
    write_timeout: Duration,
    counters: &LegCounters,
) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    counters.frames_out.increment(1);
    counters.bytes_out.increment(msg.len() as u64);
    let m = match msg {
        WsMsg::Text(b) => match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(b.clone()) {
            Ok(t) => Message::Text(t),
            Err(_) => Message::Binary(b),
        },
        WsMsg::Binary(b) => Message::Binary(b),
    };
    matches!(
        tokio::time::timeout(write_timeout, sink.feed(m)).await,
        Ok(Ok(()))
    )
}

/// Flush within `write_timeout`; `false` when the peer is gone or stuck.
pub(crate) async fn flush<S>(sink: &mut S, write_timeout: Duration) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    matches!(
        tokio::time::timeout(write_timeout, sink.flush()).await,
        Ok(Ok(()))
    )
}

/// The writer task of a WebSocket peer: drains the session's queue, flushing only when the
/// queue is empty (one syscall for a burst), until a close or a failed write.
pub(crate) async fn write_loop<S>(
    mut sink: S,
    mut rx: mpsc::Receiver<LinkOut>,
    write_timeout: Duration,
    counters: LegCounters,
) where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(item) = rx.recv().await {
        let ok = match item {
            LinkOut::Msg(msg) => feed(&mut sink, msg, write_timeout, &counters).await,
            LinkOut::Close(c) => {
                let frame = CloseFrame {
                    code: CloseCode::from(c.code),
                    reason: c.reason.into(),
                };
                let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(frame))))
                    .await;
                let _ = tokio::time::timeout(write_timeout, sink.close()).await;
                return;
            }
            LinkOut::Barrier(done) => {
                let ok = flush(&mut sink, write_timeout).await;
                let _ = done.send(());
                ok
            }
        };
        if !ok || (rx.is_empty() && !flush(&mut sink, write_timeout).await) {
            return;
        }
    }
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

/// Everything a route's sessions share.
pub struct RouteCtx {
    /// The route's config.
    pub config: Route,
    /// Compiled mapping.
    pub mapping: Mapping,
    /// How to reach the backend.
    pub dialer: Dialer,
    /// Metric handles.
    pub metrics: RouteMetrics,
    /// Queue depth per peer.
    pub queue_depth: usize,
    /// Writer timeout.
    pub write_timeout: Duration,
    /// Largest WebSocket message.
    pub max_message_size: usize,
}

impl RouteCtx {
    /// The byte budget for operations held before the upstream is ready; see
    /// [`MAX_PENDING_BYTES`].
    fn pending_budget(&self) -> usize {
        MAX_PENDING_BYTES.max(self.max_message_size)
    }

    fn client_role(&self, credentials: Credentials) -> Box<dyn ClientRole> {
        let up = &self.config.upstream;
        match up.dialect {
            Dialect::Stomp => Box::new(StompClient::new(
                stomp_client::Settings {
                    // The same budget as the session's, so all it held while dialing fits.
                    max_queued_bytes: self.pending_budget(),
                    ..stomp_client::Settings::from_route(&self.config)
                },
                credentials,
            )),
            _ => Box::new(SocketioClient::new(
                sio_client::Settings {
                    namespace: up.namespace.clone(),
                    acks: up.acks,
                    ack_timeout: Duration::from_millis(up.ack_timeout_ms),
                    max_attachments: self.config.socketio.max_attachments,
                    max_queued_ops: 1024,
                    // The same budget as the session's, so all it held while dialing fits.
                    max_queued_bytes: self.pending_budget(),
                },
                credentials,
            )),
        }
    }
}

type Dialing = Pin<Box<dyn Future<Output = Result<Ws, UpstreamError>> + Send>>;

struct Up {
    link: Link,
    role: Box<dyn ClientRole>,
    last_recv: Instant,
    last_send: Instant,
}

enum Ev {
    Shutdown,
    Down(Option<Result<WsMsg, LinkError>>),
    DownGone,
    Up(Option<Result<WsMsg, LinkError>>),
    UpGone,
    Dialed(Box<Result<Ws, UpstreamError>>),
    Tick,
}

/// How a session ended, for `switchboard_sessions_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    ClientClosed,
    UpstreamLost,
    UpstreamUnavailable,
    ProtocolError,
    Shutdown,
    Timeout,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::UpstreamLost => "upstream_lost",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::ProtocolError => "protocol_error",
            Self::Shutdown => "shutdown",
            Self::Timeout => "timeout",
        }
    }
}

/// How often correlation tables are checked for expired entries.
const EXPIRE_TICK: Duration = Duration::from_millis(500);
/// Most client operations held while the upstream is being dialed.
const MAX_PENDING_OPS: usize = 1024;
/// Most bytes of client operations held while the upstream is not ready, by the session while
/// it dials and then by the client role until its handshake ends (each holds at most this).
/// The count alone would let one session hold 1024 messages of `limits.max_message_size`,
/// 1 GiB at the default. 4 MiB, the STOMP server role's transaction budget too, is hundreds of
/// ordinary frames; a client that sends more before its backend answers is flooding, not
/// chatting. [`RouteCtx::pending_budget`] raises it to one largest message, so any message
/// the WebSocket layer admits can still wait.
const MAX_PENDING_BYTES: usize = 4 << 20;

/// One translating session.
pub struct Session {
    ctx: Arc<RouteCtx>,
    translator: Translator,
    down: Link,
    server: Box<dyn ServerRole>,
    down_last_recv: Instant,
    down_last_send: Instant,
    down_last_hb: Instant,
    up: Option<Up>,
    dialing: Option<Dialing>,
    /// When the upstream must be ready (`BackendEvent::Ready`) by: set when dialing starts,
    /// cleared on Ready or when the upstream goes. The dialer's own timeout covers only TCP,
    /// TLS and the WebSocket upgrade; a backend that accepts the upgrade and then never
    /// finishes its protocol handshake would otherwise hold the client forever.
    ready_by: Option<Instant>,
    credentials: Option<Credentials>,
    pending_ops: VecDeque<ClientOp>,
    /// [`ClientOp::held_bytes`] of `pending_ops`.
    pending_bytes: usize,
    last_expire: Instant,
    /// Set once the client connection is being closed; the loop then ends.
    done: Option<Outcome>,
    shutting: bool,
}

impl Session {
    /// A session for a freshly upgraded client connection.
    pub fn new(ctx: Arc<RouteCtx>, down: Link, server: Box<dyn ServerRole>) -> Self {
        let now = Instant::now();
        Self {
            translator: Translator::new(ctx.mapping.clone()),
            ctx,
            down,
            server,
            down_last_recv: now,
            down_last_send: now,
            down_last_hb: now,
            up: None,
            dialing: None,
            ready_by: None,
            credentials: None,
            pending_ops: VecDeque::new(),
            pending_bytes: 0,
            last_expire: now,
            done: None,
            shutting: false,
        }
    }

    /// Run to completion.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let metrics = self.ctx.metrics.clone();
        metrics.active.increment(1.0);
        let started = Instant::now();
        tracing::debug!(route = %metrics.route, "session started");
        let outcome = self.pump(&shutdown).await;
        let limit = self.ctx.write_timeout.min(Duration::from_secs(2));
        if let Some(mut up) = self.up.take() {
            up.link.finish(Some(Close::normal()), limit).await;
        }
        // The server role already queued its close when it decided to end.
        self.down.finish(None, limit).await;
        metrics.active.decrement(1.0);
        metrics.session_ended(outcome.label());
        tracing::info!(
            route = %metrics.route,
            outcome = outcome.label(),
            secs = started.elapsed().as_secs_f64(),
            "session ended"
        );
    }

    fn deadline(&self, now: Instant) -> Instant {
        let mut d = now + Duration::from_secs(3600);
        let k = self.server.keepalive();
        if let Some(e) = k.send_every {
            d = d.min(
                if k.periodic {
                    self.down_last_hb
                } else {
                    self.down_last_send
                } + e,
            );
        }
        if let Some(e) = k.expect_within {
            d = d.min(self.down_last_recv + e);
        }
        if let Some(up) = &self.up {
            let k = up.role.keepalive();
            if let Some(e) = k.send_every {
                d = d.min(up.last_send + e);
            }
            if let Some(e) = k.expect_within {
                d = d.min(up.last_recv + e);
            }
            if let Some(r) = self.ready_by {
                d = d.min(r);
            }
        }
        d.min(self.last_expire + EXPIRE_TICK)
    }

    async fn pump(&mut self, shutdown: &CancellationToken) -> Outcome {
        loop {
            if let Some(o) = self.done {
                return o;
            }
            let now = Instant::now();
            let deadline = tokio::time::Instant::from_std(self.deadline(now));
            // Backpressure: read a side only while the queue its frames go to has room.
            let down_ready = self
                .up
                .as_ref()
                .is_none_or(|u| u.link.outbound.capacity() > 0);
            let up_ready = self.down.outbound.capacity() > 0;
            let ev = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !self.shutting => Ev::Shutdown,
                _ = self.down.outbound.closed() => Ev::DownGone,
                r = dialing(&mut self.dialing) => Ev::Dialed(Box::new(r)),
                m = self.down.inbound.next(), if down_ready => Ev::Down(m),
                e = up_next(&mut self.up, up_ready) => e,
                _ = tokio::time::sleep_until(deadline) => Ev::Tick,
            };
            match ev {
                Ev::Shutdown => {
                    self.shutting = true;
                    let mut out = ServerOut::default();
                    self.server.on_shutdown(&mut out);
                    self.apply_server(out).await;
                    self.done.get_or_insert(Outcome::Shutdown);
                }
                Ev::DownGone => return Outcome::ClientClosed,
                Ev::Down(Some(Err(LinkError::TooBig { size, max }))) => {
                    self.client_too_big(size, max).await
                }
                Ev::Down(None | Some(Err(_))) => {
                    if let Some(up) = &mut self.up {
                        let mut out = ClientOut::default();
                        up.role
                            .on_op(ClientOp::Disconnect, Instant::now(), &mut out);
                        self.apply_client(out).await;
                    }
                    return Outcome::ClientClosed;
                }
                Ev::Down(Some(Ok(msg))) => {
                    self.down_last_recv = Instant::now();
                    let mut out = ServerOut::default();
                    self.server.on_client(msg, self.down_last_recv, &mut out);
                    self.apply_server(out).await;
                }
                Ev::UpGone | Ev::Up(None) => {
                    self.upstream_lost(ErrorInfo::new(
                        ErrorKind::Unavailable,
                        "backend closed the connection",
                    ))
                    .await
                }
                Ev::Up(Some(Err(e))) => {
                    let reason = match e {
                        LinkError::Closed => {
                            ErrorInfo::new(ErrorKind::Unavailable, "backend closed the connection")
                        }
                        LinkError::Transport(t) => ErrorInfo::new(
                            ErrorKind::Unavailable,
                            format!("backend connection failed: {t}"),
                        ),
                        LinkError::TooBig { size, max } => {
                            // The backend hears why, as a client would tell it; the writer
                            // sends this before `upstream_lost` lets the link go.
                            if let Some(up) = &self.up {
                                let _ = up
                                    .link
                                    .outbound
                                    .try_send(LinkOut::Close(Close::new(1009, "message too big")));
                            }
                            ErrorInfo::new(
                                ErrorKind::Limit,
                                format!(
                                    "backend sent a message of {size} bytes, over the limit of {max} bytes"
                                ),
                            )
                        }
                    };
                    self.upstream_lost(reason).await;
                }
                Ev::Up(Some(Ok(msg))) => {
                    let now = Instant::now();
                    let mut out = ClientOut::default();
                    if let Some(up) = &mut self.up {
                        up.last_recv = now;
                        up.role.on_backend(msg, now, &mut out);
                    }
                    self.apply_client(out).await;
                }
                Ev::Dialed(r) => self.on_dialed(*r).await,
                Ev::Tick => self.on_tick().await,
            }
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let k = self.server.keepalive();
        if k.expect_within
            .is_some_and(|e| now >= self.down_last_recv + e)
        {
            let mut out = ServerOut::default();
            self.server.on_peer_silent(&mut out);
            self.apply_server(out).await;
            self.done.get_or_insert(Outcome::Timeout);
            return;
        }
        let since = if k.periodic {
            self.down_last_hb
        } else {
            self.down_last_send
        };
        if k.send_every.is_some_and(|e| now >= since + e) {
            self.down_last_hb = now;
            self.down_last_send = now;
            if let Some(hb) = self.server.heartbeat()
                && !self.down.send(hb, self.ctx.write_timeout).await
            {
                self.done.get_or_insert(Outcome::ClientClosed);
            }
        }
        let expire = now >= self.last_expire + EXPIRE_TICK;
        if expire {
            self.last_expire = now;
            let mut out = ServerOut::default();
            self.server.expire(now, &mut out);
            self.apply_server(out).await;
        }
        if self.up.is_some() && self.ready_by.is_some_and(|r| now >= r) {
            return self.handshake_timed_out().await;
        }
        let Some(up) = &mut self.up else { return };
        let k = up.role.keepalive();
        let mut out = ClientOut::default();
        if k.expect_within.is_some_and(|e| now >= up.last_recv + e) {
            up.role.on_peer_silent(&mut out);
        } else if k.send_every.is_some_and(|e| now >= up.last_send + e) {
            if let Some(hb) = up.role.heartbeat() {
                out.to_backend.push(hb);
            } else {
                up.last_send = now;
            }
        }
        if expire {
            up.role.expire(now, &mut out);
        }
        self.apply_client(out).await;
    }

    /// The client sent a message over the size limit (`limits.max_message_size`, or a
    /// Socket.IO route's `max_payload`): its role tells it and closes with 1009.
    async fn client_too_big(&mut self, size: usize, max: usize) {
        let reason = ErrorInfo::new(
            ErrorKind::Limit,
            format!("message of {size} bytes exceeds the limit of {max} bytes"),
        );
        let mut out = ServerOut::default();
        self.server.on_too_big(reason, &mut out);
        self.apply_server(out).await;
        // The client cannot go on (the rest of its message is unread): leave the backend as
        // a client that disconnects would.
        if let Some(up) = &mut self.up {
            let mut out = ClientOut::default();
            up.role
                .on_op(ClientOp::Disconnect, Instant::now(), &mut out);
            self.apply_client(out).await;
        }
        self.done.get_or_insert(Outcome::ProtocolError);
    }

    /// The upstream WebSocket is open but the backend did not finish its protocol handshake
    /// (Engine.IO open, Socket.IO CONNECT reply, STOMP CONNECTED) within the connect timeout.
    async fn handshake_timed_out(&mut self) {
        self.ready_by = None;
        let up = &self.ctx.config.upstream;
        let ms = up.connect_timeout_ms;
        // A reason of its own: "timeout" is the dial's, "handshake" the WebSocket upgrade's.
        m::upstream_connect_failed(
            &self.ctx.metrics.route,
            up.dialect.label(),
            "protocol_timeout",
        );
        tracing::info!(
            route = %self.ctx.metrics.route,
            timeout_ms = ms,
            "upstream unavailable: protocol handshake timed out"
        );
        // The outcome is that of a failed dial: the client never had a working upstream.
        self.done.get_or_insert(Outcome::UpstreamUnavailable);
        self.upstream_lost(ErrorInfo::new(
            ErrorKind::Timeout,
            format!("backend handshake not completed within {ms} ms"),
        ))
        .await;
    }

    async fn on_dialed(&mut self, r: Result<Ws, UpstreamError>) {
        self.dialing = None;
        match r {
            Ok(ws) => {
                let counters = self.ctx.metrics.up.clone();
                let link =
                    Link::websocket(ws, self.ctx.queue_depth, self.ctx.write_timeout, counters);
                let creds = self.credentials.take().unwrap_or_default();
                let role = self.ctx.client_role(creds);
                let now = Instant::now();
                self.up = Some(Up {
                    link,
                    role,
                    last_recv: now,
                    last_send: now,
                });
                let mut out = ClientOut::default();
                if let Some(up) = &mut self.up {
                    up.role.start(now, &mut out);
                    self.pending_bytes = 0;
                    for op in self.pending_ops.drain(..) {
                        up.role.on_op(op, now, &mut out);
                    }
                }
                self.apply_client(out).await;
            }
            Err(e) => {
                self.ready_by = None;
                tracing::info!(route = %self.ctx.metrics.route, error = %e, "upstream unavailable");
                let kind = match e {
                    UpstreamError::Timeout(_) => ErrorKind::Timeout,
                    _ => ErrorKind::Unavailable,
                };
                let mut out = ServerOut::default();
                self.server
                    .on_upstream_lost(ErrorInfo::new(kind, e.to_string()), &mut out);
                self.apply_server(out).await;
                self.done.get_or_insert(Outcome::UpstreamUnavailable);
            }
        }
    }

    async fn upstream_lost(&mut self, reason: ErrorInfo) {
        self.ready_by = None;
        let Some(mut up) = self.up.take() else { return };
        let mut out = ClientOut::default();
        up.role.on_closed(reason.clone(), &mut out);
        up.link.finish(None, Duration::from_millis(100)).await;
        self.deliver_events(out.events).await;
        let mut sout = ServerOut::default();
        self.server.on_upstream_lost(reason, &mut sout);
        self.apply_server(sout).await;
        self.done.get_or_insert(Outcome::UpstreamLost);
    }

    /// Carry out what the server role asked: write to the client, route ops upstream.
    async fn apply_server(&mut self, out: ServerOut) {
        self.ctx.metrics.copied(self.server.take_copied());
        for msg in out.to_client {
            if !self.down.send(msg, self.ctx.write_timeout).await {
                self.done.get_or_insert(Outcome::ClientClosed);
                return;
            }
            self.down_last_send = Instant::now();
        }
        if let Some(c) = out.close {
            let _ = tokio::time::timeout(
                self.ctx.write_timeout,
                self.down.outbound.send(LinkOut::Close(c.clone())),
            )
            .await;
            let outcome = if c.code == 1000 {
                Outcome::ClientClosed
            } else if c.code == 1001 {
                Outcome::Shutdown
            } else {
                Outcome::ProtocolError
            };
            self.done.get_or_insert(outcome);
        }
        for op in out.ops {
            self.route_op(op).await;
        }
    }

    async fn route_op(&mut self, op: ClientOp) {
        if let ClientOp::Connect { credentials } = op {
            if self.up.is_none() && self.dialing.is_none() {
                self.credentials = Some(credentials);
                // One budget for the whole connect, as the config documents it: what the
                // dial leaves over is what the protocol handshake gets.
                let timeout = Duration::from_millis(self.ctx.config.upstream.connect_timeout_ms);
                self.ready_by = Some(Instant::now() + timeout);
                let dialer = self.ctx.dialer.clone();
                self.dialing = Some(Box::pin(async move { dialer.connect(&[]).await }));
            }
            return;
        }
        let op = match self.translator.down_op(op.clone()) {
            Ok(op) => op,
            Err(e) => {
                m::translation_error(&self.ctx.metrics.route, e.kind.label());
                let ev = match op {
                    ClientOp::Subscribe { sub, .. } => {
                        BackendEvent::SubscribeFailed { sub, reason: e }
                    }
                    ClientOp::Publish {
                        reply: Some(id), ..
                    } => BackendEvent::Reply { id, result: Err(e) },
                    _ => BackendEvent::Refused(e),
                };
                let mut out = ServerOut::default();
                self.server.on_backend(ev, Instant::now(), &mut out);
                Box::pin(self.apply_server(out)).await;
                return;
            }
        };
        match &mut self.up {
            Some(up) => {
                let mut out = ClientOut::default();
                up.role.on_op(op, Instant::now(), &mut out);
                Box::pin(self.apply_client(out)).await;
            }
            None => {
                if let Err(why) = self.hold(op) {
                    let mut out = ServerOut::default();
                    self.server
                        .on_upstream_lost(ErrorInfo::new(ErrorKind::Limit, why), &mut out);
                    Box::pin(self.apply_server(out)).await;
                }
            }
        }
    }

    /// Hold `op` until the upstream is dialed, within the count and the byte budget, both
    /// checked before the op is queued.
    fn hold(&mut self, op: ClientOp) -> Result<(), &'static str> {
        if self.pending_ops.len() >= MAX_PENDING_OPS {
            return Err("too many frames before the backend was ready");
        }
        let bytes = op.held_bytes();
        if self.pending_bytes.saturating_add(bytes) > self.ctx.pending_budget() {
            return Err("too many bytes before the backend was ready");
        }
        self.pending_bytes += bytes;
        self.pending_ops.push_back(op);
        Ok(())
    }

    /// Carry out what the client role asked: write upstream, then deliver events downstream.
    async fn apply_client(&mut self, out: ClientOut) {
        if out
            .events
            .iter()
            .any(|e| matches!(e, BackendEvent::Ready { .. }))
        {
            self.ready_by = None;
        }
        let Some(up) = &mut self.up else {
            return self.deliver_events(out.events).await;
        };
        self.ctx.metrics.copied(up.role.take_copied());
        let wrote = !out.to_backend.is_empty();
        let mut alive = true;
        for msg in out.to_backend {
            if !up.link.send(msg, self.ctx.write_timeout).await {
                alive = false;
                break;
            }
            up.last_send = Instant::now();
        }
        // A confirmation must not overtake the frame it confirms onto the wire.
        let confirms = out
            .events
            .iter()
            .any(|e| matches!(e, BackendEvent::Reply { result: Ok(_), .. }));
        if alive && wrote && confirms {
            let (tx, rx) = oneshot::channel();
            alive = up.link.outbound.send(LinkOut::Barrier(tx)).await.is_ok() && rx.await.is_ok();
        }
        if let Some(c) = out.close {
            if let Some(mut up) = self.up.take() {
                up.link.finish(Some(c), Duration::from_millis(500)).await;
            }
        }
        self.deliver_events(out.events).await;
        if !alive {
            self.upstream_lost(ErrorInfo::new(
                ErrorKind::Unavailable,
                "backend connection failed",
            ))
            .await;
        }
    }

    async fn deliver_events(&mut self, events: Vec<BackendEvent>) {
        if events.is_empty() {
            return;
        }
        let mut translated = Vec::with_capacity(events.len());
        for ev in events {
            if let BackendEvent::Dropped(e) = &ev {
                // Nothing the client asked for: count it, never tell the client.
                m::translation_error(&self.ctx.metrics.route, e.kind.label());
                tracing::debug!(route = %self.ctx.metrics.route, reason = %String::from_utf8_lossy(&e.message), "backend event dropped");
                continue;
            }
            self.translator.up_event(ev, &mut translated);
        }
        let mut out = ServerOut::default();
        let now = Instant::now();
        for ev in translated {
            self.server.on_backend(ev, now, &mut out);
        }
        Box::pin(self.apply_server(out)).await;
    }
}

async fn dialing(d: &mut Option<Dialing>) -> Result<Ws, UpstreamError> {
    match d {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The upstream's next message, or its writer going away; reads only when `ready`.
async fn up_next(up: &mut Option<Up>, ready: bool) -> Ev {
    match up {
        Some(u) => tokio::select! {
            _ = u.link.outbound.closed() => Ev::UpGone,
            m = u.link.inbound.next(), if ready => Ev::Up(m),
        },
        None => std::future::pending().await,
    }
}

/// A passthrough session: the upstream is dialed at once and WebSocket messages are
/// forwarded unchanged both ways. Each leg still has its own queue, limits and metrics.
pub async fn passthrough(
    ctx: Arc<RouteCtx>,
    mut down: Link,
    headers: Vec<(&'static str, String)>,
    shutdown: CancellationToken,
) {
    let metrics = ctx.metrics.clone();
    metrics.active.increment(1.0);
    let ws = match ctx.dialer.connect(&headers).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::info!(route = %metrics.route, error = %e, "upstream unavailable");
            down.finish(
                Some(Close::new(1011, "upstream unavailable")),
                Duration::from_secs(1),
            )
            .await;
            metrics.active.decrement(1.0);
            metrics.session_ended(Outcome::UpstreamUnavailable.label());
            return;
        }
    };
    let mut up = Link::websocket(ws, ctx.queue_depth, ctx.write_timeout, metrics.up.clone());
    // A message over the limit cannot be forwarded; its sender hears 1009, the other side
    // the close it would get had the sender left.
    let too_big = || Close::new(1009, "message too big");
    let mut close_up = Close::normal();
    let outcome = loop {
        let down_ready = up.outbound.capacity() > 0;
        let up_ready = down.outbound.capacity() > 0;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Outcome::Shutdown,
            m = down.inbound.next(), if down_ready => match m {
                Some(Ok(msg)) => if !up.send(msg, ctx.write_timeout).await { break Outcome::UpstreamLost },
                Some(Err(LinkError::TooBig { .. })) => break Outcome::ProtocolError,
                _ => break Outcome::ClientClosed,
            },
            m = up.inbound.next(), if up_ready => match m {
                Some(Ok(msg)) => if !down.send(msg, ctx.write_timeout).await { break Outcome::ClientClosed },
                Some(Err(LinkError::TooBig { .. })) => {
                    close_up = too_big();
                    break Outcome::UpstreamLost;
                }
                _ => break Outcome::UpstreamLost,
            },
            _ = down.outbound.closed() => break Outcome::ClientClosed,
            _ = up.outbound.closed() => break Outcome::UpstreamLost,
        }
    };
    let close_down = match outcome {
        Outcome::Shutdown => Close::new(1001, "server shutting down"),
        Outcome::UpstreamLost => Close::new(1011, "upstream closed"),
        // The only protocol error a passthrough session sees: the client's message size.
        Outcome::ProtocolError => too_big(),
        _ => Close::normal(),
    };
    let limit = ctx.write_timeout.min(Duration::from_secs(2));
    up.finish(Some(close_up), limit).await;
    down.finish(Some(close_down), limit).await;
    metrics.active.decrement(1.0);
    metrics.session_ended(outcome.label());
}

/// Whether a route uses passthrough.
pub fn is_passthrough(route: &Route) -> bool {
    route.mode == Mode::Passthrough
}

/// A helper so listener code can box any I/O stream for `Link::websocket`.
pub fn boxed<T: Io + 'static>(io: T) -> Box<dyn Io> {
    Box::new(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversize_message_is_told_apart_from_other_failures() {
        let counters = LegCounters::new("test", "stomp", "downstream");
        let too_long = WsError::Capacity(CapacityError::MessageTooLong {
            size: 11,
            max_size: 10,
        });
        assert!(matches!(
            inbound_item(Err(too_long), &counters),
            Some(Err(LinkError::TooBig { size: 11, max: 10 }))
        ));
        assert!(matches!(
            inbound_item(Err(WsError::ConnectionClosed), &counters),
            Some(Err(LinkError::Transport(_)))
        ));
        assert!(matches!(
            inbound_item(Ok(Message::text("x")), &counters),
            Some(Ok(WsMsg::Text(t))) if t == "x"
        ));
        assert!(inbound_item(Ok(Message::Ping(Bytes::new())), &counters).is_none());
        assert!(matches!(
            inbound_item(Ok(Message::Close(None)), &counters),
            Some(Err(LinkError::Closed))
        ));
    }
}
