//! One peer connection as a session sees it, and the writer task behind it.
//!
//! Owns: [`Link`] (a stream of messages in, a queue out bounded in depth and in bytes),
//! what a writer is asked to do ([`LinkOut`]), why a link stopped ([`LinkError`], an oversize
//! message told apart from other failures), and the writer tasks: feeding and flushing within
//! the write timeout, giving the byte budget back, discarding after a stall, best-effort last
//! words, and the per-leg message and byte counters.
//!
//! Must not touch: roles, translation, session state, the session's timers. It moves whole
//! WebSocket messages and never looks inside them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

use crate::dialect::{Close, WsMsg};
use crate::metrics::{LegCounters, LegTally};

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
    /// after a stall, when everything queued before is discarded), then the close. Boxed:
    /// every queue slot is as large as the largest variant, and the queue's first block of
    /// slots is allocated per link whether used or not.
    Final(Box<(Vec<WsMsg>, Close)>),
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
    /// This link's own message and byte counts (for the session-end log line).
    pub tally: LegTally,
}

/// What queuing a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
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
        let tally = counters.tally.clone();
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
            tally,
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
            tally: LegTally::default(),
        }
    }

    /// The same link, reporting `tally` as its counts (a transport that counts itself).
    pub fn with_tally(mut self, tally: LegTally) -> Self {
        self.tally = tally;
        self
    }

    /// Whether a message can be queued now without waiting (backpressure: the other side is
    /// read only while this holds).
    pub(super) fn ready(&self) -> bool {
        self.outbound.capacity() > 0
            && self
                .budget
                .as_ref()
                .is_none_or(|b| b.sem.available_permits() > 0)
    }

    /// The most bytes the queue toward the peer takes (`None`: bounded by depth alone).
    pub fn queue_bytes(&self) -> Option<usize> {
        self.budget.as_ref().map(|b| b.total as usize)
    }

    /// Whether a ping or pong arrived since the last call.
    pub(super) fn take_heard(&self) -> bool {
        self.heard.swap(false, Ordering::Relaxed)
    }

    /// Queue a message, waiting at most `limit` for room (in messages and in bytes).
    pub(super) async fn send(&mut self, msg: WsMsg, limit: Duration) -> Sent {
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
    pub(super) async fn finish(&mut self, close: Option<Close>, limit: Duration) {
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
        // The rare paths are boxed: a task's future is as large as its largest state, and
        // an idle writer should hold only what waiting on its queue needs.
        if w.stalled.is_cancelled() {
            return Box::pin(discard(sink, rx, item, &w)).await;
        }
        let res = match item {
            LinkOut::Msg(msg) => {
                let n = msg.len();
                let r = feed(&mut sink, msg, w.write_timeout, &w.counters).await;
                give_back(n);
                r
            }
            LinkOut::Ping => write(sink.feed(Message::Ping(Bytes::new())), w.write_timeout).await,
            LinkOut::Close(c) => return Box::pin(close(&mut sink, c, w.write_timeout)).await,
            LinkOut::Final(f) => {
                let (msgs, c) = *f;
                return Box::pin(last_words(&mut sink, msgs, c, &w)).await;
            }
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
                return Box::pin(discard(sink, rx, next, &w)).await;
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
            LinkOut::Final(f) => {
                let (msgs, c) = *f;
                return last_words(&mut sink, msgs, c, w).await;
            }
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
