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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::config::{Mode, Route};
use crate::dialect::hold::HoldQueue;
use crate::dialect::{
    ClientOut, ClientRole, Close, Dial, Handshake, ServerOut, ServerRole, Spec, WsMsg,
};
use crate::frame::{BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Reply};
use crate::metrics::{self as m, LegCounters, RouteMetrics};
use crate::translate::{Mapping, Translator};
use crate::upstream::{Dialer, UpstreamError, Ws};

/// Why a link stopped delivering messages.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The peer closed the connection, with the close frame's code when it sent one.
    #[error("closed by peer")]
    Closed(Option<u16>),
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
    /// A WebSocket ping: the peer's pong proves the connection is still there when its
    /// protocol has no heartbeat of its own (STOMP with `heart-beat:0,0`).
    Ping,
    /// The session's last words to a peer that stopped reading: written best-effort (even
    /// after a stall, when everything queued before is discarded), then the close.
    Final(Vec<WsMsg>, Close),
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
    /// Bytes the queue may still take: bounds the queue in bytes besides its depth. The
    /// writer gives them back once a message is written. `None`: the depth alone.
    budget: Option<Budget>,
    /// Cancelled when the peer stopped reading (a write made no progress, or the queue stayed
    /// full, for the write timeout); the writer then discards what is queued.
    pub stalled: CancellationToken,
    /// Set when a WebSocket ping or pong arrived (they are not messages, but they are life).
    heard: Arc<AtomicBool>,
}

/// What queuing a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Queued,
    /// The queue stayed full (in messages or bytes) for the limit: a slow consumer.
    Full,
    /// The writer is gone.
    Gone,
}

impl Link {
    /// Wrap a WebSocket: spawns its writer task, counts messages and bytes. The queue holds
    /// at most `depth` messages and `budget` bytes.
    pub fn websocket<S>(
        ws: WebSocketStream<S>,
        depth: usize,
        budget: usize,
        write_timeout: Duration,
        counters: LegCounters,
    ) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::channel(depth);
        let c_in = counters.clone();
        let heard = Arc::new(AtomicBool::new(false));
        let h = heard.clone();
        let inbound = stream.filter_map(move |r| {
            if matches!(r, Ok(Message::Ping(_) | Message::Pong(_))) {
                h.store(true, Ordering::Relaxed);
            }
            std::future::ready(inbound_item(r, &c_in))
        });
        let budget = Budget::new(budget);
        let stalled = CancellationToken::new();
        let writer = tokio::spawn(write_loop(
            sink,
            rx,
            Writer {
                write_timeout,
                counters,
                budget: Some(budget.clone()),
                stalled: stalled.clone(),
            },
        ));
        Self {
            inbound: Box::pin(inbound),
            outbound: tx,
            writer: Some(writer),
            budget: Some(budget),
            stalled,
            heard,
        }
    }

    /// A link over channels a transport of its own drains (Engine.IO): bounded by depth.
    pub fn new(inbound: Inbound, outbound: mpsc::Sender<LinkOut>, writer: JoinHandle<()>) -> Self {
        Self {
            inbound,
            outbound,
            writer: Some(writer),
            budget: None,
            stalled: CancellationToken::new(),
            heard: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a message can be queued now without waiting (backpressure: the other side is
    /// read only while this holds).
    fn ready(&self) -> bool {
        self.outbound.capacity() > 0
            && self
                .budget
                .as_ref()
                .is_none_or(|b| b.sem.available_permits() > 0)
    }

    /// Whether a ping or pong arrived since the last call.
    fn take_heard(&self) -> bool {
        self.heard.swap(false, Ordering::Relaxed)
    }

    /// Queue a message, waiting at most `limit` for room (in messages and in bytes).
    async fn send(&mut self, msg: WsMsg, limit: Duration) -> Sent {
        if self.stalled.is_cancelled() {
            return Sent::Full;
        }
        let budget = self.budget.clone();
        let n = msg.len();
        let queued = tokio::time::timeout(limit, async {
            if let Some(b) = budget
                && !b.take(n).await
            {
                return false;
            }
            self.outbound.send(LinkOut::Msg(msg)).await.is_ok()
        })
        .await;
        match queued {
            Ok(true) => Sent::Queued,
            Ok(false) => Sent::Gone,
            Err(_) if self.outbound.is_closed() => Sent::Gone,
            Err(_) => {
                // Nothing moved for the write timeout: the writer discards from here on.
                self.stalled.cancel();
                Sent::Full
            }
        }
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

/// A queue's byte budget: permits are bytes, taken when a message is queued and given back
/// by the writer once it is written.
#[derive(Debug, Clone)]
struct Budget {
    sem: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Self {
            sem: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// What a message of `n` bytes is charged: a message larger than the whole budget takes
    /// all of it (and waits for an empty queue).
    fn charge(&self, n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX).clamp(1, self.total)
    }

    async fn take(&self, n: usize) -> bool {
        match self.sem.acquire_many(self.charge(n)).await {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    fn give_back(&self, n: usize) {
        self.sem.add_permits(self.charge(n) as usize);
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
        Ok(Message::Close(f)) => return Some(Err(LinkError::Closed(f.map(|f| u16::from(f.code))))),
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

/// Write one message (not yet flushed), counting it.
pub(crate) async fn feed<S>(
    sink: &mut S,
    msg: WsMsg,
    write_timeout: Duration,
    counters: &LegCounters,
) -> Result<(), Stop>
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
    write(sink.feed(m), write_timeout).await
}

/// Flush within `write_timeout`.
pub(crate) async fn flush<S>(sink: &mut S, write_timeout: Duration) -> Result<(), Stop>
where
    S: futures_util::Sink<Message> + Unpin,
{
    write(sink.flush(), write_timeout).await
}

/// Why a writer stopped writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The peer is gone (the write failed).
    Gone,
    /// The write made no progress for the write timeout: the peer stopped reading.
    Stalled,
}

async fn write<F, E>(f: F, limit: Duration) -> Result<(), Stop>
where
    F: Future<Output = Result<(), E>>,
{
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => Err(Stop::Stalled),
    }
}

/// What a WebSocket writer task needs besides its socket and queue.
struct Writer {
    write_timeout: Duration,
    counters: LegCounters,
    budget: Option<Budget>,
    stalled: CancellationToken,
}

/// How long the last words to a stalled peer may take: it has shown it does not read.
const FINAL_WRITE: Duration = Duration::from_secs(1);

/// The writer task of a WebSocket peer: drains the session's queue, flushing only when the
/// queue is empty (one syscall for a burst), until a close or a failed write. After a stall
/// it discards what is queued (giving back its budget) until the session's last words.
async fn write_loop<S>(mut sink: S, mut rx: mpsc::Receiver<LinkOut>, w: Writer)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let give_back = |n: usize| {
        if let Some(b) = &w.budget {
            b.give_back(n);
        }
    };
    while let Some(item) = rx.recv().await {
        if w.stalled.is_cancelled() {
            return discard(sink, rx, item, &w).await;
        }
        let res = match item {
            LinkOut::Msg(msg) => {
                let n = msg.len();
                let r = feed(&mut sink, msg, w.write_timeout, &w.counters).await;
                give_back(n);
                r
            }
            LinkOut::Ping => write(sink.feed(Message::Ping(Bytes::new())), w.write_timeout).await,
            LinkOut::Close(c) => return close(&mut sink, c, w.write_timeout).await,
            LinkOut::Final(msgs, c) => return last_words(&mut sink, msgs, c, &w).await,
            LinkOut::Barrier(done) => {
                let r = flush(&mut sink, w.write_timeout).await;
                let _ = done.send(());
                r
            }
        };
        let res = match res {
            Ok(()) if rx.is_empty() => flush(&mut sink, w.write_timeout).await,
            r => r,
        };
        match res {
            Ok(()) => {}
            Err(Stop::Gone) => return,
            Err(Stop::Stalled) => {
                w.stalled.cancel();
                let Some(next) = rx.recv().await else { return };
                return discard(sink, rx, next, &w).await;
            }
        }
    }
    let _ = tokio::time::timeout(w.write_timeout, sink.close()).await;
}

/// The writer of a WebSocket a transport of its own set up (Engine.IO after an upgrade):
/// bounded by the queue's depth alone.
pub(crate) async fn write_socket<S>(
    sink: S,
    rx: mpsc::Receiver<LinkOut>,
    write_timeout: Duration,
    counters: LegCounters,
) where
    S: futures_util::Sink<Message> + Unpin,
{
    let w = Writer {
        write_timeout,
        counters,
        budget: None,
        stalled: CancellationToken::new(),
    };
    write_loop(sink, rx, w).await
}

/// After a stall: drop queued messages until the session's last words or close.
async fn discard<S>(mut sink: S, mut rx: mpsc::Receiver<LinkOut>, first: LinkOut, w: &Writer)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut item = Some(first);
    while let Some(it) = item {
        match it {
            LinkOut::Msg(m) => {
                if let Some(b) = &w.budget {
                    b.give_back(m.len());
                }
            }
            LinkOut::Ping | LinkOut::Barrier(_) => {}
            LinkOut::Close(c) => return close(&mut sink, c, FINAL_WRITE).await,
            LinkOut::Final(msgs, c) => return last_words(&mut sink, msgs, c, w).await,
        }
        item = rx.recv().await;
    }
}

async fn last_words<S>(sink: &mut S, msgs: Vec<WsMsg>, c: Close, w: &Writer)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let limit = w.write_timeout.min(FINAL_WRITE);
    for m in msgs {
        if feed(sink, m, limit, &w.counters).await.is_err() {
            break;
        }
    }
    close(sink, c, limit).await;
}

async fn close<S>(sink: &mut S, c: Close, limit: Duration)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(c.code),
        reason: c.reason.into(),
    };
    let _ = tokio::time::timeout(limit, sink.send(Message::Close(Some(frame)))).await;
    let _ = tokio::time::timeout(limit, sink.close()).await;
}

/// Builds a route's server role for one client connection, from the upgrade's facts.
pub type ServerFactory = Arc<dyn Fn(&Handshake, Instant) -> Box<dyn ServerRole> + Send + Sync>;
/// Builds a route's client role for one session, from the downstream client's credentials.
pub type ClientFactory = Arc<dyn Fn(Credentials) -> Box<dyn ClientRole> + Send + Sync>;

/// Everything a route's sessions share. Built by the dialect registry; nothing here names a
/// dialect.
pub struct RouteCtx {
    /// The route's config.
    pub config: Route,
    /// What the client dialect is.
    pub client_spec: &'static Spec,
    /// What the upstream dialect is.
    pub upstream_spec: &'static Spec,
    /// The server role of each session.
    pub new_server: ServerFactory,
    /// The client role of each session.
    pub new_client: ClientFactory,
    /// Compiled mapping.
    pub mapping: Mapping,
    /// How to reach the backend.
    pub dialer: Dialer,
    /// Metric handles.
    pub metrics: RouteMetrics,
    /// Queue depth per peer.
    pub queue_depth: usize,
    /// Bytes queued per peer.
    pub queue_bytes: usize,
    /// Writer timeout.
    pub write_timeout: Duration,
    /// Largest WebSocket message from a backend.
    pub max_message_size: usize,
    /// Largest WebSocket message from a client of this route.
    pub client_message_limit: usize,
    /// A WebSocket ping after this much silence on a leg whose protocol has no heartbeat
    /// (then a dead peer is one silent for twice this); `None`: off.
    pub idle_ping: Option<Duration>,
    /// Origins upgrades must come from; empty: any.
    pub allowed_origins: Vec<String>,
}

/// The byte budget for operations held before the upstream is ready; see
/// [`MAX_PENDING_BYTES`]. Client roles get the same, so all the session held fits.
pub fn pending_budget(max_message_size: usize) -> usize {
    MAX_PENDING_BYTES.max(max_message_size)
}

type Dialing = Pin<Box<dyn Future<Output = Result<Ws, UpstreamError>> + Send>>;
/// An authorization POST in flight for the client role, and its answer.
type Authorizing = Pin<Box<dyn Future<Output = (u64, Result<Bytes, ErrorInfo>)> + Send>>;

/// Authorization POSTs one session may have in flight; more are refused at once.
const MAX_AUTHORIZING: usize = 16;

struct Up {
    link: Link,
    role: Box<dyn ClientRole>,
    last_recv: Instant,
    last_send: Instant,
    /// A WebSocket ping went out and nothing came back yet.
    pinged: bool,
}

enum Ev {
    Shutdown,
    Down(Option<Result<WsMsg, LinkError>>),
    DownGone,
    DownStalled,
    Up(Option<Result<WsMsg, LinkError>>),
    UpGone,
    Dialed(Box<Result<Ws, UpstreamError>>),
    Authorized(u64, Result<Bytes, ErrorInfo>),
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
    SlowConsumer,
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
            Self::SlowConsumer => "slow_consumer",
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
    /// A WebSocket ping went to the client and nothing came back yet.
    down_pinged: bool,
    up: Option<Up>,
    dialing: Option<Dialing>,
    /// The client role, built when the client connects, until its backend is dialed.
    role: Option<Box<dyn ClientRole>>,
    /// Authorization POSTs the client role asked for (bounded by [`MAX_AUTHORIZING`]).
    authorizing: futures_util::stream::FuturesUnordered<Authorizing>,
    /// The upgrade's `Cookie` and `Origin`, added to the client's credentials.
    forward: (Option<Bytes>, Option<Bytes>),
    /// When the upstream must be ready (`BackendEvent::Ready`) by: set when dialing starts,
    /// cleared on Ready or when the upstream goes. The dialer's own timeout covers only TCP,
    /// TLS and the WebSocket upgrade; a backend that accepts the upgrade and then never
    /// finishes its protocol handshake would otherwise hold the client forever.
    ready_by: Option<Instant>,
    /// Operations held while the upstream is dialed.
    pending_ops: HoldQueue,
    last_expire: Instant,
    /// Set once the client connection is being closed; the loop then ends.
    done: Option<Outcome>,
    shutting: bool,
}

impl Session {
    /// A session for a freshly upgraded client connection.
    pub fn new(
        ctx: Arc<RouteCtx>,
        down: Link,
        server: Box<dyn ServerRole>,
        handshake: &Handshake,
    ) -> Self {
        let now = Instant::now();
        let pending_ops = HoldQueue::new(MAX_PENDING_OPS, pending_budget(ctx.max_message_size));
        Self {
            translator: Translator::new(ctx.mapping.clone()),
            ctx,
            down,
            server,
            down_last_recv: now,
            down_last_send: now,
            down_last_hb: now,
            down_pinged: false,
            up: None,
            dialing: None,
            role: None,
            authorizing: futures_util::stream::FuturesUnordered::new(),
            forward: (
                handshake.header("cookie").cloned(),
                handshake.header("origin").cloned(),
            ),
            ready_by: None,
            pending_ops,
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
        let mut out = ServerOut::default();
        self.server.on_start(started, &mut out);
        self.apply_server(out).await;
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

    /// When a leg without a heartbeat of its own is pinged (`since` + idle) or given up
    /// (`since` + twice idle, once pinged).
    fn liveness(&self, has_heartbeat: bool, since: Instant, pinged: bool) -> Option<Instant> {
        let idle = self.ctx.idle_ping.filter(|_| !has_heartbeat)?;
        Some(since + if pinged { idle * 2 } else { idle })
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
        if let Some(l) = self.liveness(
            k.expect_within.is_some(),
            self.down_last_recv,
            self.down_pinged,
        ) {
            d = d.min(l);
        }
        if let Some(up) = &self.up {
            let k = up.role.keepalive();
            if let Some(e) = k.send_every {
                d = d.min(up.last_send + e);
            }
            if let Some(e) = k.expect_within {
                d = d.min(up.last_recv + e);
            }
            if let Some(l) = self.liveness(k.expect_within.is_some(), up.last_recv, up.pinged) {
                d = d.min(l);
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
            let down_ready = self.up.as_ref().is_none_or(|u| u.link.ready());
            let up_ready = self.down.ready();
            // Not `biased`: a client that publishes without pause must not keep the
            // backend's pings unread or the timers from firing. Every ready branch gets its
            // turn.
            let ev = tokio::select! {
                _ = shutdown.cancelled(), if !self.shutting => Ev::Shutdown,
                _ = self.down.outbound.closed() => Ev::DownGone,
                _ = self.down.stalled.cancelled() => Ev::DownStalled,
                r = dialing(&mut self.dialing) => Ev::Dialed(Box::new(r)),
                Some((id, r)) = self.authorizing.next(), if !self.authorizing.is_empty() => {
                    Ev::Authorized(id, r)
                }
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
                Ev::DownGone => {
                    if self.down.stalled.is_cancelled() {
                        self.slow_consumer().await;
                    } else {
                        self.leave_upstream().await;
                    }
                    self.done.get_or_insert(Outcome::ClientClosed);
                }
                Ev::DownStalled => self.slow_consumer().await,
                Ev::Down(Some(Err(LinkError::TooBig { size, max }))) => {
                    self.client_too_big(size, max).await
                }
                Ev::Down(None | Some(Err(_))) => {
                    self.leave_upstream().await;
                    return Outcome::ClientClosed;
                }
                Ev::Down(Some(Ok(msg))) => {
                    self.down_last_recv = Instant::now();
                    self.down_pinged = false;
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
                        // The backend's close code goes along: a leg of the same family (a
                        // Pusher client) passes a 4xxx code on.
                        LinkError::Closed(code) => {
                            let e = ErrorInfo::new(
                                ErrorKind::Unavailable,
                                "backend closed the connection",
                            );
                            match code.filter(|c| *c >= 4000) {
                                Some(c) => e.with_code(c),
                                None => e,
                            }
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
                        up.pinged = false;
                        up.role.on_backend(msg, now, &mut out);
                    }
                    self.apply_client(out).await;
                }
                Ev::Dialed(r) => self.on_dialed(*r).await,
                Ev::Authorized(id, r) => {
                    let mut out = ClientOut::default();
                    if let Some(up) = &mut self.up {
                        up.role.on_authorized(id, r, Instant::now(), &mut out);
                    }
                    self.apply_client(out).await;
                }
                Ev::Tick => self.on_tick().await,
            }
        }
    }

    /// The client is gone or going: leave the backend as a client that disconnects would.
    async fn leave_upstream(&mut self) {
        if let Some(up) = &mut self.up {
            let mut out = ClientOut::default();
            up.role
                .on_op(ClientOp::Disconnect, Instant::now(), &mut out);
            self.apply_client(out).await;
        }
    }

    /// The client stopped reading for the write timeout: what is queued toward it is
    /// discarded, it gets its dialect's last words (best-effort), and the backend is left
    /// cleanly.
    async fn slow_consumer(&mut self) {
        if self.done.is_some() {
            return;
        }
        self.done = Some(Outcome::SlowConsumer);
        self.down.stalled.cancel();
        tracing::info!(route = %self.ctx.metrics.route, "slow consumer: client stopped reading");
        let mut out = ServerOut::default();
        self.server.on_slow_consumer(&mut out);
        let close = out
            .close
            .unwrap_or_else(|| Close::new(1008, "slow consumer"));
        // The writer is discarding, so the queue drains; bounded all the same.
        let _ = tokio::time::timeout(
            self.ctx.write_timeout,
            self.down
                .outbound
                .send(LinkOut::Final(out.to_client, close)),
        )
        .await;
        self.leave_upstream().await;
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        if self.down.take_heard() {
            self.down_last_recv = now;
            self.down_pinged = false;
        }
        if let Some(up) = &mut self.up
            && up.link.take_heard()
        {
            up.last_recv = now;
            up.pinged = false;
        }
        let k = self.server.keepalive();
        if k.expect_within
            .is_some_and(|e| now >= self.down_last_recv + e)
        {
            // Set first: the role's close code would otherwise read as a protocol error.
            self.done.get_or_insert(Outcome::Timeout);
            let mut out = ServerOut::default();
            self.server.on_peer_silent(&mut out);
            self.apply_server(out).await;
            return;
        }
        if let Some(at) = self.liveness(
            k.expect_within.is_some(),
            self.down_last_recv,
            self.down_pinged,
        ) && now >= at
        {
            if self.down_pinged {
                // No pong for twice the idle time: a half-open connection.
                self.done.get_or_insert(Outcome::Timeout);
                let mut out = ServerOut::default();
                self.server.on_peer_silent(&mut out);
                if out.close.is_none() {
                    out.close = Some(Close::new(1001, "peer not responding"));
                }
                self.apply_server(out).await;
                return;
            }
            self.down_pinged = true;
            let _ = self.down.outbound.try_send(LinkOut::Ping);
        }
        let since = if k.periodic {
            self.down_last_hb
        } else {
            self.down_last_send
        };
        if k.send_every.is_some_and(|e| now >= since + e) {
            self.down_last_hb = now;
            self.down_last_send = now;
            if let Some(hb) = self.server.heartbeat() {
                self.send_down(hb).await;
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
        let idle = self.ctx.idle_ping;
        let Some(up) = &mut self.up else { return };
        let k = up.role.keepalive();
        let mut out = ClientOut::default();
        let unpinged = idle
            .filter(|_| k.expect_within.is_none())
            .map(|i| (up.last_recv + if up.pinged { i * 2 } else { i }, up.pinged));
        if k.expect_within.is_some_and(|e| now >= up.last_recv + e)
            || matches!(unpinged, Some((at, true)) if now >= at)
        {
            up.role.on_peer_silent(&mut out);
            if out.close.is_none() && out.events.is_empty() {
                out.events.push(BackendEvent::Error(ErrorInfo::new(
                    ErrorKind::Unavailable,
                    "backend not responding",
                )));
                out.close = Some(Close::new(1001, "peer not responding"));
            }
        } else {
            if matches!(unpinged, Some((at, false)) if now >= at) {
                up.pinged = true;
                let _ = up.link.outbound.try_send(LinkOut::Ping);
            }
            if k.send_every.is_some_and(|e| now >= up.last_send + e) {
                if let Some(hb) = up.role.heartbeat() {
                    out.to_backend.push(hb);
                } else {
                    up.last_send = now;
                }
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
        // The client cannot go on (the rest of its message is unread).
        self.leave_upstream().await;
        self.done.get_or_insert(Outcome::ProtocolError);
    }

    /// The upstream WebSocket is open but the backend did not finish its protocol handshake
    /// (Engine.IO open, Socket.IO CONNECT reply, STOMP CONNECTED) within the connect timeout.
    async fn handshake_timed_out(&mut self) {
        self.ready_by = None;
        let ms = self.ctx.config.upstream.connect_timeout_ms;
        // A reason of its own: "timeout" is the dial's, "handshake" the WebSocket upgrade's.
        m::upstream_connect_failed(
            &self.ctx.metrics.route,
            self.ctx.upstream_spec.dialect.label(),
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
        match (r, self.role.take()) {
            (Ok(ws), Some(role)) => {
                let counters = self.ctx.metrics.up.clone();
                let link = Link::websocket(
                    ws,
                    self.ctx.queue_depth,
                    self.ctx.queue_bytes,
                    self.ctx.write_timeout,
                    counters,
                );
                let now = Instant::now();
                self.up = Some(Up {
                    link,
                    role,
                    last_recv: now,
                    last_send: now,
                    pinged: false,
                });
                let mut out = ClientOut::default();
                if let Some(up) = &mut self.up {
                    up.role.start(now, &mut out);
                    for op in self.pending_ops.drain() {
                        up.role.on_op(op, now, &mut out);
                    }
                }
                self.apply_client(out).await;
            }
            (r, _) => {
                self.ready_by = None;
                let e = match r {
                    Ok(_) => UpstreamError::Handshake("no client role".into()),
                    Err(e) => e,
                };
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
        // A close code means something only in the backend's dialect: its client role has
        // read it (and said so in events above); the server role hears the failure alone.
        let reason = ErrorInfo {
            code: None,
            ..reason
        };
        let mut sout = ServerOut::default();
        self.server.on_upstream_lost(reason, &mut sout);
        self.apply_server(sout).await;
        self.done.get_or_insert(Outcome::UpstreamLost);
    }

    /// Queue one message toward the client; a queue that stays full is a slow consumer.
    async fn send_down(&mut self, msg: WsMsg) -> bool {
        match self.down.send(msg, self.ctx.write_timeout).await {
            Sent::Queued => {
                self.down_last_send = Instant::now();
                true
            }
            Sent::Full => {
                Box::pin(self.slow_consumer()).await;
                false
            }
            Sent::Gone => {
                self.done.get_or_insert(Outcome::ClientClosed);
                false
            }
        }
    }

    /// Carry out what the server role asked: write to the client, route ops upstream.
    async fn apply_server(&mut self, out: ServerOut) {
        self.ctx.metrics.copied(self.server.take_copied());
        for msg in out.to_client {
            if !self.send_down(msg).await {
                return;
            }
        }
        if let Some(c) = out.close {
            let _ = tokio::time::timeout(
                self.ctx.write_timeout,
                self.down.outbound.send(LinkOut::Close(c.clone())),
            )
            .await;
            let outcome = match c.code {
                1000 => Outcome::ClientClosed,
                1001 => Outcome::Shutdown,
                _ => Outcome::ProtocolError,
            };
            self.done.get_or_insert(outcome);
        }
        for op in out.ops {
            self.route_op(op).await;
        }
    }

    async fn route_op(&mut self, op: ClientOp) {
        let started = self.up.is_some() || self.dialing.is_some() || self.role.is_some();
        let op = match op {
            // A second Connect on an open session is a re-authentication.
            ClientOp::Connect { credentials } if started => ClientOp::Reauth { credentials },
            op => op,
        };
        if let ClientOp::Connect { mut credentials } = op {
            {
                if credentials.cookie.is_none() {
                    credentials.cookie = self.forward.0.clone();
                }
                if credentials.origin.is_none() {
                    credentials.origin = self.forward.1.clone();
                }
                let role = (self.ctx.new_client)(credentials);
                let dial = role.dial();
                self.role = Some(role);
                // One budget for the whole connect, as the config documents it: what the
                // dial leaves over is what the protocol handshake gets.
                let timeout = Duration::from_millis(self.ctx.config.upstream.connect_timeout_ms);
                self.ready_by = Some(Instant::now() + timeout);
                let dialer = self.ctx.dialer.clone();
                self.dialing = Some(Box::pin(async move { dialer.connect(&dial).await }));
            }
            return;
        }
        let failed_sub = match &op {
            ClientOp::Subscribe { sub, .. } => Some(*sub),
            _ => None,
        };
        let op = match self.translator.down_op(op.clone()) {
            Ok(op) => op,
            Err(e) => {
                m::translation_error(&self.ctx.metrics.route, e.kind.label());
                let ev = match op {
                    ClientOp::Subscribe { sub, .. } => {
                        BackendEvent::SubscribeFailed { sub, reason: e }
                    }
                    ClientOp::Publish {
                        reply: Some(Reply { id, .. }),
                        ..
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
                if let Err(why) = self.pending_ops.push(op) {
                    if let Some(sub) = failed_sub {
                        self.translator.forget(sub);
                    }
                    let mut out = ServerOut::default();
                    self.server.on_upstream_lost(
                        ErrorInfo::new(ErrorKind::Limit, why.to_string()),
                        &mut out,
                    );
                    Box::pin(self.apply_server(out)).await;
                }
            }
        }
    }

    /// Start the authorization POSTs the client role asked for; past the bound, the role
    /// hears at once that it was refused.
    fn authorize(&mut self, requests: Vec<crate::dialect::AuthRequest>) -> ClientOut {
        let mut refused = ClientOut::default();
        for req in requests {
            if self.authorizing.len() >= MAX_AUTHORIZING {
                if let Some(up) = &mut self.up {
                    let e = ErrorInfo::new(ErrorKind::Limit, "too many authorizations in flight");
                    up.role
                        .on_authorized(req.id, Err(e), Instant::now(), &mut refused);
                }
                continue;
            }
            let dialer = self.ctx.dialer.clone();
            let limit = Duration::from_millis(self.ctx.config.upstream.connect_timeout_ms);
            self.authorizing.push(Box::pin(async move {
                let r = dialer.authorize(&req, limit).await.map_err(|e| {
                    ErrorInfo::new(
                        ErrorKind::Unauthorized,
                        format!("authorization endpoint: {e}"),
                    )
                });
                (req.id, r)
            }));
        }
        refused
    }

    /// Carry out what the client role asked: write upstream, then deliver events downstream.
    async fn apply_client(&mut self, mut out: ClientOut) {
        if !out.authorize.is_empty() {
            let refused = self.authorize(std::mem::take(&mut out.authorize));
            out.to_backend.extend(refused.to_backend);
            out.events.extend(refused.events);
        }
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
            if up.link.send(msg, self.ctx.write_timeout).await != Sent::Queued {
                alive = false;
                break;
            }
            up.last_send = Instant::now();
        }
        // A confirmation must not overtake the frame it confirms onto the wire; the wait for
        // the flush is bounded like any write.
        let confirms = out
            .events
            .iter()
            .any(|e| matches!(e, BackendEvent::Reply { result: Ok(_), .. }));
        if alive && wrote && confirms {
            let (tx, rx) = oneshot::channel();
            let limit = self.ctx.write_timeout;
            alive = matches!(
                tokio::time::timeout(limit, async {
                    up.link.outbound.send(LinkOut::Barrier(tx)).await.is_ok() && rx.await.is_ok()
                })
                .await,
                Ok(true)
            );
        }
        if let Some(c) = out.close
            && let Some(mut up) = self.up.take()
        {
            up.link.finish(Some(c), Duration::from_millis(500)).await;
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

    /// Hand backend events to the server role one at a time, each written (within the
    /// client's queue budget) before the next is encoded: one backend message that many
    /// subscriptions match never turns into all its copies encoded at once.
    async fn deliver_events(&mut self, events: Vec<BackendEvent>) {
        let mut translated = Vec::new();
        for ev in events {
            if let BackendEvent::Dropped(e) = &ev {
                // Nothing the client asked for: count it, never tell the client.
                m::translation_error(&self.ctx.metrics.route, e.kind.label());
                tracing::debug!(route = %self.ctx.metrics.route, reason = %String::from_utf8_lossy(&e.message), "backend event dropped");
                continue;
            }
            self.translator.up_event(ev, &mut translated);
            for ev in translated.drain(..) {
                if self.done.is_some() {
                    return;
                }
                let mut out = ServerOut::default();
                self.server.on_backend(ev, Instant::now(), &mut out);
                Box::pin(self.apply_server(out)).await;
            }
        }
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
    dial: Dial,
    shutdown: CancellationToken,
) {
    let metrics = ctx.metrics.clone();
    metrics.active.increment(1.0);
    let ws = match ctx.dialer.connect(&dial).await {
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
    let mut up = Link::websocket(
        ws,
        ctx.queue_depth,
        ctx.queue_bytes,
        ctx.write_timeout,
        metrics.up.clone(),
    );
    // A message over the limit cannot be forwarded; its sender hears 1009, the other side
    // the close it would get had the sender left.
    let too_big = || Close::new(1009, "message too big");
    let mut close_up = Close::normal();
    let outcome = loop {
        let down_ready = up.ready();
        let up_ready = down.ready();
        // Not `biased`: neither direction may starve the other.
        tokio::select! {
            _ = shutdown.cancelled() => break Outcome::Shutdown,
            m = down.inbound.next(), if down_ready => match m {
                Some(Ok(msg)) => match up.send(msg, ctx.write_timeout).await {
                    Sent::Queued => {}
                    _ => break Outcome::UpstreamLost,
                },
                Some(Err(LinkError::TooBig { .. })) => break Outcome::ProtocolError,
                _ => break Outcome::ClientClosed,
            },
            m = up.inbound.next(), if up_ready => match m {
                Some(Ok(msg)) => match down.send(msg, ctx.write_timeout).await {
                    Sent::Queued => {}
                    Sent::Full => break Outcome::SlowConsumer,
                    Sent::Gone => break Outcome::ClientClosed,
                },
                Some(Err(LinkError::TooBig { .. })) => {
                    close_up = too_big();
                    break Outcome::UpstreamLost;
                }
                _ => break Outcome::UpstreamLost,
            },
            _ = down.outbound.closed() => break if down.stalled.is_cancelled() {
                Outcome::SlowConsumer
            } else {
                Outcome::ClientClosed
            },
            _ = down.stalled.cancelled() => break Outcome::SlowConsumer,
            _ = up.outbound.closed() => break Outcome::UpstreamLost,
        }
    };
    let close_down = match outcome {
        Outcome::Shutdown => Close::new(1001, "server shutting down"),
        Outcome::UpstreamLost => Close::new(1011, "upstream closed"),
        // The only protocol error a passthrough session sees: the client's message size.
        Outcome::ProtocolError => too_big(),
        Outcome::SlowConsumer => Close::new(1008, "slow consumer"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::{Keepalive, stomp};
    use tokio::sync::mpsc::UnboundedSender;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A server role that greets first and hands two Connects and a Subscribe upstream.
    struct Greeter;

    impl ServerRole for Greeter {
        fn on_start(&mut self, _: Instant, out: &mut ServerOut) {
            out.to_client
                .push(WsMsg::Text(Bytes::from_static(b"welcome")));
        }
        fn on_client(&mut self, msg: WsMsg, _: Instant, out: &mut ServerOut) {
            let token = Some(msg.bytes().clone());
            out.ops.push(ClientOp::Connect {
                credentials: Credentials {
                    token,
                    ..Default::default()
                },
            });
        }
        fn on_backend(&mut self, ev: BackendEvent, _: Instant, out: &mut ServerOut) {
            let text = format!("{ev:?}");
            out.to_client.push(WsMsg::Text(Bytes::from(text)));
        }
        fn on_upstream_lost(&mut self, _: ErrorInfo, out: &mut ServerOut) {
            out.close = Some(Close::new(1011, "lost"));
        }
        fn on_shutdown(&mut self, out: &mut ServerOut) {
            out.close = Some(Close::new(1001, "bye"));
        }
        fn on_too_big(&mut self, _: ErrorInfo, out: &mut ServerOut) {
            out.close = Some(Close::new(1009, "big"));
        }
        fn keepalive(&self) -> Keepalive {
            Keepalive::default()
        }
        fn heartbeat(&mut self) -> Option<WsMsg> {
            None
        }
        fn on_peer_silent(&mut self, _: &mut ServerOut) {}
        fn expire(&mut self, _: Instant, _: &mut ServerOut) {}
    }

    /// A client role that dials with a path, query and header of its own and reports every
    /// operation it gets.
    struct Recorder(UnboundedSender<ClientOp>, Credentials);

    impl ClientRole for Recorder {
        fn dial(&self) -> Dial {
            Dial {
                path_suffix: "k1".into(),
                query: vec![("token".into(), "t1".into())],
                headers: vec![("Cookie".into(), "c=1".into())],
            }
        }
        fn start(&mut self, _: Instant, out: &mut ClientOut) {
            let _ = self.0.send(ClientOp::Connect {
                credentials: self.1.clone(),
            });
            out.events.push(BackendEvent::Ready { session: None });
        }
        fn on_op(&mut self, op: ClientOp, _: Instant, out: &mut ClientOut) {
            if let ClientOp::Reauth { .. } = &op {
                out.events.push(BackendEvent::AuthChanged { token: None });
            }
            let _ = self.0.send(op);
        }
        fn on_backend(&mut self, _: WsMsg, _: Instant, _: &mut ClientOut) {}
        fn keepalive(&self) -> Keepalive {
            Keepalive::default()
        }
        fn heartbeat(&mut self) -> Option<WsMsg> {
            None
        }
        fn on_peer_silent(&mut self, _: &mut ClientOut) {}
        fn expire(&mut self, _: Instant, _: &mut ClientOut) {}
        fn on_closed(&mut self, _: ErrorInfo, _: &mut ClientOut) {}
    }

    /// A WebSocket backend on 127.0.0.1 that reports the upgrade's URI and `Cookie`.
    async fn backend() -> (u16, mpsc::UnboundedReceiver<(String, String)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = tx.clone();
            // The signature is tungstenite's `Callback`.
            #[allow(clippy::result_large_err)]
            let cb = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                           mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                // The dialect's subprotocol, as a STOMP broker answers it.
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    tokio_tungstenite::tungstenite::http::HeaderValue::from_static("v12.stomp"),
                );
                let cookie = req
                    .headers()
                    .get("cookie")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = seen.send((req.uri().to_string(), cookie));
                Ok(resp)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, cb).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });
        (port, rx)
    }

    #[tokio::test]
    async fn a_server_role_speaks_first_and_a_second_connect_reauthenticates() {
        let (port, mut seen) = backend().await;
        let text = crate::config::tests::MINIMAL.replace(
            "ws://127.0.0.1:3000/socket.io/",
            &format!("ws://127.0.0.1:{port}/app"),
        );
        let config = crate::config::Config::from_toml(&text).unwrap();
        let route = config.routes[0].clone();
        let (ops_tx, mut ops) = mpsc::unbounded_channel();
        let ctx = Arc::new(RouteCtx {
            new_server: Arc::new(|_, _| Box::new(Greeter)),
            new_client: Arc::new(move |c| Box::new(Recorder(ops_tx.clone(), c))),
            mapping: Mapping::new(&[], &stomp::SPEC, &stomp::SPEC).unwrap(),
            dialer: Dialer::new(
                "t",
                &route.upstream.url,
                &stomp::SPEC,
                None,
                Duration::from_secs(2),
                1 << 20,
            )
            .unwrap(),
            metrics: RouteMetrics::new("t", "stomp", "stomp"),
            config: route,
            client_spec: &stomp::SPEC,
            upstream_spec: &stomp::SPEC,
            queue_depth: 8,
            queue_bytes: 1 << 20,
            write_timeout: Duration::from_secs(2),
            max_message_size: 1 << 20,
            client_message_limit: 1 << 20,
            idle_ping: None,
            allowed_origins: Vec::new(),
        });
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let link = Link::websocket(
            server,
            8,
            1 << 20,
            Duration::from_secs(2),
            ctx.metrics.down.clone(),
        );
        let hs = Handshake {
            headers: vec![("origin".into(), Bytes::from_static(b"https://a.example"))],
            ..Default::default()
        };
        let stop = CancellationToken::new();
        let session = Session::new(ctx, link, Box::new(Greeter), &hs);
        let run = tokio::spawn(session.run(stop.clone()));
        // Before the client says anything.
        let first = client.next().await.unwrap().unwrap();
        assert_eq!(first, Message::text("welcome"));
        client.send(Message::text("tok-1")).await.unwrap();
        let (uri, cookie) = seen.recv().await.unwrap();
        assert_eq!(uri, "/app/k1?token=t1");
        assert_eq!(cookie, "c=1");
        let op = ops.recv().await;
        let Some(ClientOp::Connect { credentials }) = op else {
            panic!("{op:?}")
        };
        assert_eq!(credentials.token.as_deref(), Some(&b"tok-1"[..]));
        // The upgrade's Origin went into the credentials.
        assert_eq!(
            credentials.origin.as_deref(),
            Some(&b"https://a.example"[..])
        );
        client.send(Message::text("tok-2")).await.unwrap();
        let op = ops.recv().await;
        let Some(ClientOp::Reauth { credentials }) = op else {
            panic!("{op:?}")
        };
        assert_eq!(credentials.token.as_deref(), Some(&b"tok-2"[..]));
        // The backend's answer reaches the server role.
        loop {
            let m = client.next().await.unwrap().unwrap();
            if m.to_text().unwrap().starts_with("AuthChanged") {
                break;
            }
        }
        stop.cancel();
        run.await.unwrap();
    }

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
            Some(Err(LinkError::Closed(None)))
        ));
    }
}
