//! The state one Engine.IO session's HTTP handlers, writer task and upgrade share: which
//! transport is current, the long-polling buffer, the inbound channel into the session, and
//! the slot where an upgrade hands its WebSocket to the writer.
//!
//! Owns: [`Shared`], its transport states and the channel ends of a new session.
//!
//! Must not touch: requests and responses, Engine.IO packets, the session itself. It is plain
//! state; the handlers in `polling.rs` and `upgrade.rs` act on it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio::Packet as Eio;
use crate::metrics::LegCounters;
use crate::session::{LinkError, LinkOut};
use crate::websocket::Socket;

/// The WebSocket write half handed from an upgrade to the session's writer.
pub(super) type WsSink = SplitSink<Socket, Message>;

/// `Shared::transport` values.
pub(super) const POLLING: u8 = 0;
pub(super) const UPGRADING: u8 = 1;
pub(super) const WEBSOCKET: u8 = 2;

/// The long-polling side of a session: packets waiting for the next GET.
pub(super) struct PollState {
    pub(super) rx: mpsc::Receiver<Eio>,
    /// A packet taken from `rx` that did not fit the previous response.
    pub(super) held: Option<Eio>,
    /// The session moved to WebSocket; GETs are refused.
    pub(super) upgraded: bool,
}

/// One Engine.IO session as the HTTP handlers, the writer task and an upgrade share it.
pub(super) struct Shared {
    /// Packets from the client (POST bodies, then the WebSocket) into the session.
    pub(super) inbound: mpsc::Sender<Result<WsMsg, LinkError>>,
    /// Ends the session from the transport side (overlapping polls, bad bodies, stuck polls).
    pub(super) kill: CancellationToken,
    pub(super) poll: Mutex<PollState>,
    pub(super) get_busy: AtomicBool,
    pub(super) post_busy: AtomicBool,
    /// [`POLLING`], [`UPGRADING`] or [`WEBSOCKET`].
    pub(super) transport: AtomicU8,
    /// A `2probe` was answered: a waiting GET is released with a noop.
    pub(super) probing: watch::Sender<bool>,
    /// The client sent `5`: a waiting GET is released with a noop.
    pub(super) upgraded: CancellationToken,
    /// A GET carried the close packet: the sid may go.
    pub(super) finished: CancellationToken,
    /// The session is over for the client at once, as engine.io drops a closed socket's sid
    /// (it sent the close packet `1`, or missed its ping deadline): every later request with
    /// the sid is refused, and a waiting GET is released with a noop.
    pub(super) gone: CancellationToken,
    /// When `gone` was cancelled: a request that arrived before it was still in flight (the
    /// reference server, single-threaded, would have taken it first), so it is answered as
    /// one pending then, not refused.
    pub(super) gone_at: OnceLock<Instant>,
    /// When the session opened; `heard_ms` counts from here.
    pub(super) born: Instant,
    /// Milliseconds from `born` to the last POST: a GET past the ping deadline that follows
    /// (interval plus timeout) finds the sid gone even if the session's timer has not fired
    /// yet, as engine.io's own timer would have.
    pub(super) heard_ms: AtomicU64,
    /// Where an upgrade hands its WebSocket to the writer task.
    pub(super) hand_over: Mutex<Option<oneshot::Sender<WsSink>>>,
    pub(super) counters: LegCounters,
    /// The ping interval and timeout the session was opened with (its role pings on them):
    /// a GET waits as long as the interval and is late past both, whatever a reload has
    /// made the route's settings since.
    pub(super) pings: Pings,
}

/// A session's Engine.IO ping settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pings {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
}

/// Most messages in each hand-off channel toward a long-polling client (session link to
/// writer, writer to the next poll): a poll answers with up to this many at once.
const HANDOFF_DEPTH: usize = 32;

impl Shared {
    /// A fresh long-polling session's shared state, and the channel ends it does not keep.
    pub(super) fn new(depth: usize, counters: LegCounters, pings: Pings) -> (Self, Ends) {
        let (in_tx, in_rx) = mpsc::channel(depth);
        // Hand-offs only: what waits for the client waits in the session's link, bounded in
        // messages and in bytes (`queue_depth`, `queue_bytes`); channels this deep in
        // messages alone held a gigabyte for a client that stopped polling.
        let (out_tx, out_rx) = mpsc::channel(depth.clamp(1, HANDOFF_DEPTH));
        let (poll_tx, poll_rx) = mpsc::channel(depth.clamp(1, HANDOFF_DEPTH));
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
            gone: CancellationToken::new(),
            gone_at: OnceLock::new(),
            born: Instant::now(),
            heard_ms: AtomicU64::new(0),
            hand_over: Mutex::new(Some(hand_tx)),
            counters,
            pings,
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

    /// The sid is gone from now on (see [`Shared::gone`]).
    pub(super) fn set_gone(&self) {
        let _ = self.gone_at.set(Instant::now());
        self.gone.cancel();
    }

    /// Whether the sid was gone before a request that arrived at `arrived`.
    pub(super) fn gone_before(&self, arrived: Instant) -> bool {
        self.gone_at.get().is_some_and(|at| *at <= arrived)
    }

    /// A POST was received.
    pub(super) fn heard(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard_ms.store(ms, Ordering::Release);
    }

    /// Whether nothing was POSTed for `limit` (the ping interval plus timeout) before `at`.
    pub(super) fn silent_for(&self, limit: Duration, at: Instant) -> bool {
        let heard = Duration::from_millis(self.heard_ms.load(Ordering::Acquire));
        at.saturating_duration_since(self.born) >= heard.saturating_add(limit)
    }

    pub(super) fn transport(&self) -> u8 {
        self.transport.load(Ordering::Acquire)
    }
}

/// The channel ends of a new long-polling session that [`Shared`] does not hold.
pub(super) struct Ends {
    /// The session's inbound stream reads this.
    pub(super) inbound: mpsc::Receiver<Result<WsMsg, LinkError>>,
    /// The session's outbound queue...
    pub(super) outbound: mpsc::Sender<LinkOut>,
    /// ...which the writer task drains.
    pub(super) outbound_rx: mpsc::Receiver<LinkOut>,
    /// The writer fills the long-polling buffer through this.
    pub(super) poll: mpsc::Sender<Eio>,
    /// The writer receives an upgrade's WebSocket here.
    pub(super) hand_over: oneshot::Receiver<WsSink>,
}
