//! The session pump: one task per client connection, owning its upstream connection.
//!
//! Owns: the only `select!` loops of the proxy (one task reads and writes both of a
//! session's sockets: the queues toward each peer are written by the same wait that reads,
//! and every message one read brought in is handled before the next write, so one flush
//! carries them), keepalive deadlines of both legs, the upstream's connect deadline
//! (dial, WebSocket and protocol handshake until the client role is ready), correlation-table
//! expiry ticks, the order of effects (a publish is confirmed only after its frame is
//! written), the answer to a WebSocket message over the size limit (the dialect's error where
//! the role has one, then close 1009), the count and byte budget of client operations held
//! while the upstream is dialed, and where the route's client limits are asked (admission
//! before the role starts, the rate of every client message: [`crate::admission`] decides,
//! the role words the refusal).
//!
//! Must not touch: wire bytes. Roles decode and encode; the translator renames. Every
//! `select!` branch is cancel-safe: state lives on [`Session`], never in a branch future.
//!
//! # Layout
//!
//! - `mod.rs`: [`RouteCtx`] and the role factories, the [`Session`] state, its `run` and the
//!   pump (the `select!` loop and what each event leads to).
//! - `link.rs`: [`Link`], [`LinkOut`], [`LinkError`]: a socket's reads, its bounded queue
//!   and batched writes, the stall deadline; the writer task of Engine.IO's own transports.
//! - `down.rs`: the client leg: what the server role asks, routing operations, a slow
//!   consumer, a client message over the limit.
//! - `up.rs`: the upstream leg: the dial's result, the connect deadline, losing or leaving the
//!   backend, authorization POSTs, what the client role asks, delivering its events.
//! - `fast.rs`: a message from either peer carried out without a future while nothing on its
//!   way has to wait (nearly always); what may wait is left, in order, to `down.rs`/`up.rs`.
//! - `hub.rs`: a route whose upstream is the embedded hub: attaching in process when the
//!   client connects, its operations, and its deliveries encoded once per (route, shape).
//! - `ticks.rs`: the next deadline and what a tick does (keepalive, pings, expiry).
//! - `passthrough.rs`: the session of a passthrough route.

mod down;
mod fast;
mod gate;
mod hub;
mod link;
mod passthrough;
#[cfg(test)]
mod tests;
mod ticks;
mod up;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use self::gate::Gated;

use crate::admission::{Admission, ClientRate};
use crate::config::Route;
use crate::dialect::hold::HoldQueue;
use crate::dialect::{ClientOut, ClientRole, Close, Handshake, ServerOut, ServerRole, Spec, WsMsg};
use crate::frame::{Credentials, ErrorInfo, ErrorKind};
use crate::metrics::{LegCounters, LegCounts, RouteMetrics};
use crate::translate::{Mapping, Translator};
use crate::upstream::{Dialer, UpstreamError};
use crate::websocket::Socket;

pub use link::{Duplex, Event, Inbound, Link, LinkError, LinkOut};
pub(crate) use link::{feed, flush, inbound_item, write_socket};
pub use passthrough::{is_passthrough, passthrough};

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
    /// Bytes a client WebSocket reads at once.
    pub read_buffer: usize,
    /// Bytes a client WebSocket gathers before writing.
    pub write_buffer: usize,
    /// Edge authentication (`[route.auth]`): every Connect (and re-authentication) is
    /// verified before the upstream is dialed; `None`: the backend alone decides.
    pub auth: Option<Arc<crate::auth::Verifier>>,
    /// The route's per-client limits (`[route.client_limits]`).
    pub admission: Arc<Admission>,
    /// The embedded hub, when it is the route's upstream: sessions attach to it in process
    /// and `dialer` is never used.
    pub hub: Option<Arc<crate::hub::Hub>>,
}

/// The byte budget for operations held before the upstream is ready; see
/// the 4 MiB of `MAX_PENDING_BYTES`. Client roles get the same, so all the session held fits.
pub fn pending_budget(max_message_size: usize) -> usize {
    MAX_PENDING_BYTES.max(max_message_size)
}

type Dialing = Pin<Box<dyn Future<Output = Result<Socket, UpstreamError>> + Send>>;
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
    /// A queue that was full has room again: the pump re-reads its gates.
    Room,
    Dialed(Box<Result<Socket, UpstreamError>>),
    Authorized(u64, Result<Bytes, ErrorInfo>),
    Hub(Option<crate::hub::Delivery>),
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
    /// Refused by the route's edge authentication, before any upstream was dialed.
    Unauthorized,
    /// Refused by the route's client limits (a busy route, or a message over the rate that
    /// the dialect answers by closing).
    Refused,
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
            Self::Unauthorized => "unauthorized",
            Self::Refused => "refused",
        }
    }
}

/// How often correlation tables are checked for expired entries.
const EXPIRE_TICK: Duration = Duration::from_millis(500);
/// Most messages already read that are handled back to back before the pump waits again.
const READ_BATCH: usize = 64;
/// Most client operations held while the upstream is being dialed.
const MAX_PENDING_OPS: usize = 1024;
/// Most bytes of client operations held while the upstream is not ready, by the session while
/// it dials and then by the client role until its handshake ends (each holds at most this).
/// The count alone would let one session hold 1024 messages of `limits.max_message_size`,
/// 1 GiB at the default. 4 MiB, the STOMP server role's transaction budget too, is hundreds of
/// ordinary frames; a client that sends more before its backend answers is flooding, not
/// chatting. [`pending_budget`] raises it to one largest message, so any message
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
    /// The attachment to the embedded hub, on a route whose upstream it is.
    hub: Option<crate::hub::Conn>,
    last_expire: Instant,
    /// Set once the client connection is being closed; the loop then ends.
    done: Option<Outcome>,
    shutting: bool,
    /// The token edge authentication verified for this session: a scope joined later
    /// without a token of its own is the same client.
    verified_token: Option<bytes::Bytes>,
    /// The client's message and byte rates, set once admitted.
    rate: ClientRate,
    /// The route's answer to this client when its transport asked before the session
    /// started (Engine.IO long-polling: a refused session takes no connection slot); else
    /// the session asks when it runs.
    admission: Option<Result<crate::admission::Admitted, crate::admission::Reason>>,
    /// The upstream leg's counters: the route's, plus this session's own counts.
    up_counters: LegCounters,
    /// The client's address: the route's per-address limits, the session-end line.
    peer: Option<SocketAddr>,
    /// Payload copies the roles reported, not yet added to the route's counters (at each
    /// tick and at the end, as the links' message counts).
    copied: crate::dialect::Copied,
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
        let ctx_up_counters = ctx.metrics.up.for_session();
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
            hub: None,
            last_expire: now,
            done: None,
            shutting: false,
            verified_token: None,
            rate: ClientRate::default(),
            admission: None,
            up_counters: ctx_up_counters,
            peer: handshake.peer,
            copied: crate::dialect::Copied::default(),
        }
    }

    /// The route's answer to this client, asked for by its transport before the session
    /// was made (see the `admission` field).
    pub fn with_admission(
        mut self,
        a: Result<crate::admission::Admitted, crate::admission::Reason>,
    ) -> Self {
        self.admission = Some(a);
        self
    }

    /// Run to completion.
    ///
    /// Only the pump is awaited in place: what comes before and after is boxed, so the task
    /// of an idle session holds the session and the pump's wait, not the largest of its
    /// other states (sized with `session_future_sizes` in the tests).
    ///
    /// Not an `async fn`: one keeps its arguments twice (as arguments and as the body's
    /// bindings), and the session is the largest of them.
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self, shutdown: CancellationToken) -> impl Future<Output = ()> + Send {
        async move {
            // Held until the session ends: its address's slot.
            let decided = match self.admission.take() {
                Some(d) => d,
                None => self.ctx.admission.admit(self.peer.map(|p| p.ip())),
            };
            let admitted = match decided {
                Ok(a) => {
                    self.rate = a.client_rate();
                    a
                }
                Err(reason) => return Box::pin(self.refuse(reason)).await,
            };
            let started = Instant::now();
            Box::pin(self.begin(started)).await;
            let outcome = self.pump(&shutdown).await;
            Box::pin(self.end(started, outcome)).await;
            drop(admitted);
        }
    }

    /// The session is admitted: counted, and the server role starts.
    async fn begin(&mut self, started: Instant) {
        self.ctx.metrics.active.increment(1.0);
        tracing::debug!(route = %self.ctx.metrics.route, "session started");
        let mut out = ServerOut::default();
        self.server.on_start(started, &mut out);
        self.apply_server(out).await;
    }

    /// The pump ended: both legs are let go (each writer drains within a bound), then the
    /// session is counted and logged.
    async fn end(&mut self, started: Instant, outcome: Outcome) {
        let limit = self.ctx.write_timeout.min(Duration::from_secs(2));
        if let Some(mut up) = self.up.take() {
            up.link.finish(Some(Close::normal()), limit).await;
        }
        // The server role already queued its close when it decided to end.
        self.down.finish(None, limit).await;
        let metrics = &self.ctx.metrics;
        metrics.copied(std::mem::take(&mut self.copied));
        metrics.active.decrement(1.0);
        metrics.session_ended(outcome.label());
        log_end(
            &self.ctx,
            self.peer,
            started,
            outcome,
            self.down.counts(),
            self.up_counters.tally.get(),
        );
    }

    async fn pump(&mut self, shutdown: &CancellationToken) -> Outcome {
        // Both made once per session, not once per wait: a new timer each time was a
        // registration in the runtime's timer wheel and a removal after every message, and a
        // new `cancelled()` a waiter added to and taken from the token's list. A deadline
        // that moves later (every message moves a keepalive deadline) is a store in the
        // registered timer; the wheel sees it only when the old deadline comes.
        // Gated: polled only when they were woken or the deadline moved (see `gate.rs`).
        let cancelled = shutdown.cancelled();
        let tick = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(cancelled, tick);
        let mut cancelled = Gated::new(cancelled);
        let mut tick = Gated::new(tick);
        let mut armed: Option<Instant> = None;
        loop {
            if let Some(o) = self.done {
                return o;
            }
            let deadline = self.deadline();
            if armed != Some(deadline) {
                tick.get_mut()
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(deadline));
                armed = Some(deadline);
            }
            // Backpressure: read a side only while the queue its frames go to has room.
            let down_ready = self.up.as_ref().is_none_or(|u| u.link.ready());
            let up_ready = self.down.ready();
            // Not `biased`: a client that publishes without pause must not keep the
            // backend's pings unread or the timers from firing. Every ready branch gets its
            // turn.
            let ev = tokio::select! {
                _ = &mut cancelled, if !self.shutting => Ev::Shutdown,
                e = self.down.event(down_ready) => match e {
                    Event::In(m) => Ev::Down(m),
                    Event::Gone => Ev::DownGone,
                    Event::Stalled => Ev::DownStalled,
                    Event::Room => Ev::Room,
                },
                r = dialing(&mut self.dialing) => Ev::Dialed(Box::new(r)),
                Some((id, r)) = self.authorizing.next(), if !self.authorizing.is_empty() => {
                    Ev::Authorized(id, r)
                }
                e = up_next(&mut self.up, up_ready) => e,
                e = hub_next(&mut self.hub, up_ready) => e,
                _ = &mut tick => {
                    // Fired: the next wait arms it again, even for the same instant.
                    armed = None;
                    Ev::Tick
                }
            };
            let read = matches!(ev, Ev::Down(Some(Ok(_))) | Ev::Up(Some(Ok(_))));
            if let Some(o) = self.handle(ev).await {
                return o;
            }
            // Every message a read already brought in is handled before the pump waits
            // again, and writes: what they produce goes out with one flush per peer.
            if read {
                for _ in 0..READ_BATCH {
                    let Some(ev) = self.next_read().await else {
                        break;
                    };
                    if let Some(o) = self.handle(ev).await {
                        return o;
                    }
                }
            }
        }
    }

    /// One event: without waiting as far as that goes (`fast.rs`), the rest by the async
    /// handlers. Those are boxed: a session's task is as large as the largest state of its
    /// future, and an idle session waits in the `select!` above. Inline, every handler's
    /// nested futures (writes under timeouts, translation, last words) made that task about
    /// 7 KiB per client; boxed, they take memory only while an event is handled.
    async fn handle(&mut self, ev: Ev) -> Option<Outcome> {
        let mut rest = Vec::new();
        match self.on_event_now(ev, &mut rest) {
            Some(ev) => Box::pin(self.on_event(ev)).await,
            None if rest.is_empty() => None,
            None => {
                Box::pin(self.resume(rest)).await;
                None
            }
        }
    }

    /// A message either leg already has, without waiting (and without writing).
    async fn next_read(&mut self) -> Option<Ev> {
        if self.done.is_some() {
            return None;
        }
        if self.up.as_ref().is_none_or(|u| u.link.ready())
            && let Some(m) = self.down.try_recv().await
        {
            return Some(Ev::Down(m));
        }
        let up_ready = self.down.ready();
        match &mut self.up {
            Some(u) if up_ready => u.link.try_recv().await.map(Ev::Up),
            _ => None,
        }
    }

    /// What one event of the pump leads to; `Some` ends the session at once.
    async fn on_event(&mut self, ev: Ev) -> Option<Outcome> {
        {
            match ev {
                Ev::Shutdown => {
                    self.shutting = true;
                    let mut out = ServerOut::default();
                    self.server.on_shutdown(&mut out);
                    self.apply_server(out).await;
                    self.done.get_or_insert(Outcome::Shutdown);
                }
                Ev::DownGone => {
                    self.leave_upstream().await;
                    self.done.get_or_insert(Outcome::ClientClosed);
                }
                Ev::DownStalled => self.slow_consumer().await,
                Ev::Down(Some(Err(LinkError::TooBig { size, max }))) => {
                    self.client_too_big(size, max).await
                }
                Ev::Down(None | Some(Err(_))) => {
                    self.leave_upstream().await;
                    return Some(Outcome::ClientClosed);
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
                            if let Some(up) = &mut self.up {
                                up.link.close(Close::new(1009, "message too big"));
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
                ev
                @ (Ev::Down(Some(Ok(_))) | Ev::Up(Some(Ok(_))) | Ev::Hub(Some(_)) | Ev::Room) => {
                    // The same as the pump's: without waiting, then what is left.
                    let mut rest = Vec::new();
                    if self.on_event_now(ev, &mut rest).is_none() {
                        self.resume(rest).await;
                    }
                }
                Ev::Dialed(r) => self.on_dialed(*r).await,
                Ev::Authorized(id, r) => {
                    let mut out = ClientOut::default();
                    if let Some(up) = &mut self.up {
                        up.role.on_authorized(id, r, Instant::now(), &mut out);
                    }
                    self.apply_client(out).await;
                }
                Ev::Hub(None) => {
                    // The hub let go of this connection (it keeps every attached one, so
                    // this is the process going away): the client hears the backend is gone.
                    self.hub = None;
                    self.done.get_or_insert(Outcome::UpstreamLost);
                    let mut out = ServerOut::default();
                    self.server.on_upstream_lost(
                        ErrorInfo::new(ErrorKind::Unavailable, "hub detached"),
                        &mut out,
                    );
                    self.apply_server(out).await;
                }
                Ev::Tick => self.on_tick().await,
            }
        }
        None
    }
}

async fn dialing(d: &mut Option<Dialing>) -> Result<Socket, UpstreamError> {
    match d {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The hub's next delivery, read only when the client's queue has room; or a publish found
/// this session's hub queue full (a slow consumer).
async fn hub_next(hub: &mut Option<crate::hub::Conn>, ready: bool) -> Ev {
    match hub {
        Some(c) => {
            let lagged = c.lagged().clone();
            tokio::select! {
                _ = lagged.cancelled() => Ev::DownStalled,
                d = c.recv(), if ready => Ev::Hub(d),
            }
        }
        None => std::future::pending().await,
    }
}

/// The upstream's next message, or its writer going away; reads only when `ready`.
async fn up_next(up: &mut Option<Up>, ready: bool) -> Ev {
    match up {
        Some(u) => match u.link.event(ready).await {
            Event::In(m) => Ev::Up(m),
            Event::Gone | Event::Stalled => Ev::UpGone,
            Event::Room => Ev::Room,
        },
        None => std::future::pending().await,
    }
}

/// The one structured line each session ends with (issue 14): which route and dialects, how
/// long, messages and bytes each way on both legs, and how it ended. No payload, no
/// credential: counts and labels only.
fn log_end(
    ctx: &RouteCtx,
    peer: Option<SocketAddr>,
    started: Instant,
    outcome: Outcome,
    client: LegCounts,
    upstream: LegCounts,
) {
    let peer = peer.map_or_else(String::new, |p| p.to_string());
    tracing::info!(
        route = %ctx.metrics.route,
        client = ctx.client_spec.dialect.label(),
        upstream = ctx.upstream_spec.dialect.label(),
        mode = if is_passthrough(&ctx.config) { "passthrough" } else { "translate" },
        peer = %peer,
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        client_frames_in = client.frames_in,
        client_bytes_in = client.bytes_in,
        upstream_frames_out = upstream.frames_out,
        upstream_bytes_out = upstream.bytes_out,
        upstream_frames_in = upstream.frames_in,
        upstream_bytes_in = upstream.bytes_in,
        client_frames_out = client.frames_out,
        client_bytes_out = client.bytes_out,
        outcome = outcome.label(),
        "session ended"
    );
}

/// A leg's link as `[limits]` sizes it: the queue's depth and bytes, the write timeout. Every
/// WebSocket of a route, client side and upstream, is wrapped here, so the tests that check
/// these settings check what the sockets get.
pub fn leg_link<D: Duplex + 'static>(ws: D, ctx: &RouteCtx, counters: LegCounters) -> Link {
    Link::websocket(
        ws,
        ctx.queue_depth,
        ctx.queue_bytes,
        ctx.write_timeout,
        counters,
    )
}
