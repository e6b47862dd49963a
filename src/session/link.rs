//! One peer connection as a session sees it: read and written by the session's own task.
//!
//! Owns: [`Link`] (messages in; a queue out bounded in depth and in bytes, written by the
//! session task itself as part of the same `select!` that reads), what is asked of a peer
//! ([`LinkOut`]), why a link stopped ([`LinkError`], an oversize message told apart from other
//! failures), write batching (everything queued is fed, then flushed once), the stall deadline
//! (a write that makes no progress for the write timeout), best-effort last words, and the
//! per-leg message and byte counts (plain sums, handed to the route's counters when the
//! session says: at its ticks and at the end). The writer task of a transport with its own writer
//! (Engine.IO long-polling and its upgrade) is here too ([`write_socket`]).
//!
//! Must not touch: roles, translation, session state, the session's timers. It moves whole
//! WebSocket messages and never looks inside them.
//!
//! Why the session writes its own sockets: a writer task per peer cost a task wake-up (often
//! on another worker thread) and a queue hop per message, and two tasks plus two channels per
//! client in memory. Now a message read on one leg is decoded, translated, encoded and
//! queued toward the other in one task; the queue is written when the pump next waits, so
//! every frame of one read goes out with one flush.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_util::sync::PollSender;

use super::gate::Gate;
use crate::dialect::{Close, Msgs, WsMsg};
use crate::metrics::{LegCounters, LegCounts, LegTally};
use crate::websocket::Frames;

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

/// What is asked of a peer: a queue entry.
#[derive(Debug)]
pub enum LinkOut {
    /// Write one message.
    Msg(WsMsg),
    /// Send a close frame and stop.
    Close(Close),
    /// Signal once everything queued before it has been flushed (a transport with a writer
    /// of its own; a WebSocket link is drained in place).
    Barrier(oneshot::Sender<()>),
    /// A WebSocket ping: the peer's pong proves the connection is still there when its
    /// protocol has no heartbeat of its own (STOMP with `heart-beat:0,0`).
    Ping,
    /// The session's last words to a peer that stopped reading, for a transport with a
    /// writer of its own: written best-effort, then the close. Boxed: every queue slot is as
    /// large as the largest variant.
    Final(Box<(Msgs, Close)>),
}

/// Messages from a peer, in order.
pub type Inbound = Pin<Box<dyn Stream<Item = Result<WsMsg, LinkError>> + Send>>;

/// A WebSocket both read and written through one handle (no lock between halves: one task
/// does both): [`crate::websocket::Frames`] on both legs (the unit tests also use
/// tokio-tungstenite's).
pub trait Duplex:
    Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Send + Unpin
{
    /// Queue one data message, as `start_send` does (after `poll_ready`). Text that is not
    /// UTF-8 goes as binary rather than being refused.
    fn start_send_data(self: Pin<&mut Self>, msg: WsMsg) -> Result<(), WsError>;
}

impl<S> Duplex for Frames<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    /// Encoded straight from the message's bytes: no `Utf8Bytes` (which takes its own
    /// handle on the bytes, an allocation when they came from a vector).
    fn start_send_data(self: Pin<&mut Self>, msg: WsMsg) -> Result<(), WsError> {
        let this = self.get_mut();
        match &msg {
            WsMsg::Text(b) => {
                let text = std::str::from_utf8(b).is_ok();
                this.start_send_data(text, b)
            }
            WsMsg::Binary(b) => this.start_send_data(false, b),
        }
    }
}

/// The unit tests' links over tokio-tungstenite's WebSocket.
#[cfg(test)]
impl<S> Duplex for tokio_tungstenite::WebSocketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    fn start_send_data(self: Pin<&mut Self>, msg: WsMsg) -> Result<(), WsError> {
        self.start_send(message(msg))
    }
}

/// A WebSocket with the gate its reads go through, in one allocation.
struct Tapped<D: ?Sized> {
    gate: Gate,
    /// The last read found nothing (and the gate had not been woken).
    idle: bool,
    ws: D,
}

impl Tapped<dyn Duplex> {
    /// The socket's next item, or Pending at once when its last poll was and nothing woke
    /// it since (see [`Gate`]: an idle check was about 400 instructions, several times per
    /// message; callgrind, STOMP → Socket.IO: 40.3k → 33.6k instructions per round trip).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        let ws = &mut self.ws;
        self.gate
            .poll(&mut self.idle, cx, |cx| Pin::new(ws).poll_next(cx))
    }
}

/// The connection behind a link.
enum Io {
    /// A WebSocket the session reads and writes itself, read through a [`Gate`].
    Ws(Box<Tapped<dyn Duplex>>),
    /// A transport with a writer task of its own (Engine.IO): the queue drains into its
    /// channel. Boxed: the common link, a WebSocket, should not carry its size.
    Chan(Box<Chan>),
}

struct Chan {
    inbound: Inbound,
    tx: PollSender<LinkOut>,
    writer: Option<JoinHandle<()>>,
}

/// What a link has to tell the session.
#[derive(Debug)]
pub enum Event {
    /// A message from the peer; `None`: its stream ended.
    In(Option<Result<WsMsg, LinkError>>),
    /// A write failed: the peer is gone.
    Gone,
    /// A write made no progress for the write timeout: the peer stopped reading. What was
    /// queued is discarded.
    Stalled,
    /// Writes made room in a queue that was full: its other side may be read again.
    Room,
}

/// What queuing a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Queued,
    /// The queue stayed full (in messages or bytes) for the limit: a slow consumer.
    Full,
    /// The peer is gone.
    Gone,
}

/// Why writing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The peer is gone (the write failed).
    Gone,
    /// The write made no progress for the write timeout: the peer stopped reading.
    Stalled,
}

/// How long the last words to a stalled peer may take: it has shown it does not read.
const FINAL_WRITE: Duration = Duration::from_secs(1);

/// One peer connection as the session sees it: a message stream in, a bounded queue out that
/// the session's task writes.
pub struct Link {
    io: Io,
    /// Entries not yet handed to the socket. Empty (and unallocated) while idle.
    queue: VecDeque<LinkOut>,
    /// Bytes of the messages in `queue`.
    queued_bytes: usize,
    /// Most entries the queue takes before the other side stops being read.
    depth: usize,
    /// Most bytes the queue takes before the other side stops being read (`usize::MAX`:
    /// the depth alone).
    budget: usize,
    write_timeout: Duration,
    counters: LegCounters,
    /// Counted and not yet added to `counters` (see [`LegCounters::add`]).
    pending: LegCounts,
    /// Something was handed to the socket and not flushed yet.
    unflushed: bool,
    /// A close frame went into the socket: nothing more is written.
    closed: bool,
    gone: bool,
    stalled: bool,
    /// `Gone` or `Stalled` was told to the session (once: then the link is quiet).
    told: bool,
    /// Armed while a write waits on the socket; boxed, and only then: an idle link holds
    /// none.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A WebSocket ping or pong arrived (they are not messages, but they are life).
    heard: bool,
    /// This link's own message and byte counts (for the session-end log line).
    tally: LegTally,
}

impl Link {
    /// Wrap a WebSocket, counting messages and bytes. The queue holds at most `depth`
    /// messages and `budget` bytes before the session stops reading the other side.
    pub fn websocket<D: Duplex + 'static>(
        ws: D,
        depth: usize,
        budget: usize,
        write_timeout: Duration,
        counters: LegCounters,
    ) -> Self {
        let tally = counters.tally.clone();
        Self::with_io(
            Io::Ws(Box::new(Tapped {
                gate: Gate::new(),
                idle: false,
                ws,
            })),
            depth,
            budget.max(1),
            write_timeout,
            counters,
            tally,
        )
    }

    /// A link over channels a transport of its own drains (Engine.IO): what waits for the
    /// transport is bounded by `depth` messages and `max_bytes` bytes, as a WebSocket's.
    pub fn new(
        inbound: Inbound,
        outbound: mpsc::Sender<LinkOut>,
        writer: JoinHandle<()>,
        depth: usize,
        max_bytes: usize,
    ) -> Self {
        let counters = LegCounters::detached();
        Self::with_io(
            Io::Chan(Box::new(Chan {
                inbound,
                tx: PollSender::new(outbound),
                writer: Some(writer),
            })),
            depth,
            max_bytes,
            Duration::from_secs(10),
            counters,
            LegTally::default(),
        )
    }

    fn with_io(
        io: Io,
        depth: usize,
        budget: usize,
        write_timeout: Duration,
        counters: LegCounters,
        tally: LegTally,
    ) -> Self {
        Self {
            io,
            queue: VecDeque::new(),
            queued_bytes: 0,
            depth: depth.max(1),
            budget,
            write_timeout,
            counters,
            pending: LegCounts::default(),
            unflushed: false,
            closed: false,
            gone: false,
            stalled: false,
            told: false,
            stall: None,
            heard: false,
            tally,
        }
    }

    /// Hand what this link counted to its counters (the route's series and the tally).
    pub(super) fn flush_counts(&mut self) {
        self.counters.add(&mut self.pending);
    }

    /// This link's counts so far (for the session-end log line).
    pub(super) fn counts(&mut self) -> LegCounts {
        self.flush_counts();
        self.tally.get()
    }

    /// The same link, reporting `tally` as its counts (a transport that counts itself).
    pub fn with_tally(mut self, tally: LegTally) -> Self {
        self.tally = tally;
        self
    }

    /// Whether the other side may be read now (backpressure: what it sends comes here).
    pub(super) fn ready(&self) -> bool {
        !self.gone
            && !self.stalled
            && self.queue.len() < self.depth
            && self.queued_bytes < self.budget
    }

    /// The most messages the queue toward the peer takes.
    pub fn queue_depth(&self) -> usize {
        self.depth
    }

    /// The most bytes the queue toward the peer takes (`None`: bounded by depth alone).
    pub fn queue_bytes(&self) -> Option<usize> {
        (self.budget != usize::MAX).then_some(self.budget)
    }

    /// Whether a ping or pong arrived since the last call.
    pub(super) fn take_heard(&mut self) -> bool {
        std::mem::take(&mut self.heard)
    }

    /// The next event: writes make progress first (so one wait serves both directions),
    /// then a message is read when `read` (backpressure off). Cancel-safe: all state is on
    /// the link.
    pub(super) fn event(&mut self, read: bool) -> impl Future<Output = Event> + '_ {
        std::future::poll_fn(move |cx| self.poll_event(cx, read))
    }

    fn poll_event(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event> {
        let was_ready = self.ready();
        match self.poll_write(cx) {
            Poll::Ready(Err(e)) if !std::mem::replace(&mut self.told, true) => {
                return Poll::Ready(match e {
                    Stop::Gone => Event::Gone,
                    Stop::Stalled => Event::Stalled,
                });
            }
            _ => {}
        }
        if !was_ready && self.ready() {
            return Poll::Ready(Event::Room);
        }
        if read {
            return self.poll_recv(cx).map(Event::In);
        }
        Poll::Pending
    }

    /// The next message from the peer, without writing (a refusal waiting for the client's
    /// first frame or its close).
    pub(super) async fn recv(&mut self) -> Option<Result<WsMsg, LinkError>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// A message already read, if there is one, without waiting. Polled with the task's own
    /// waker (not a no-op one): the read side's registration stays as the pump's wait left it.
    pub(super) async fn try_recv(&mut self) -> Option<Option<Result<WsMsg, LinkError>>> {
        std::future::poll_fn(|cx| {
            Poll::Ready(match self.poll_recv(cx) {
                Poll::Ready(m) => Some(m),
                Poll::Pending => None,
            })
        })
        .await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<WsMsg, LinkError>>> {
        match &mut self.io {
            Io::Ws(t) => loop {
                let Some(r) = std::task::ready!(t.poll_next(cx)) else {
                    return Poll::Ready(None);
                };
                if matches!(r, Ok(Message::Ping(_) | Message::Pong(_))) {
                    self.heard = true;
                }
                if let Some(item) = inbound(r) {
                    if let Ok(m) = &item {
                        self.pending.count_in(m.len() as u64);
                    }
                    return Poll::Ready(Some(item));
                }
            },
            Io::Chan(c) => c.inbound.poll_next_unpin(cx),
        }
    }

    /// A message the peer gets next, ahead of nothing: queued without waiting (its first
    /// words: the queue is new).
    pub fn push(&mut self, msg: WsMsg) {
        self.queued_bytes = self.queued_bytes.saturating_add(msg.len());
        self.queue.push_back(LinkOut::Msg(msg));
    }

    /// Queue a WebSocket ping (small and rare: past the bounds).
    pub(super) fn ping(&mut self) {
        if !self.closed && !self.stalled {
            self.queue.push_back(LinkOut::Ping);
        }
    }

    /// Queue a close after what is queued; nothing is written after it.
    pub(super) fn close(&mut self, c: Close) {
        if !self.closed && !self.stalled {
            self.queue.push_back(LinkOut::Close(c));
        }
    }

    /// Queue a message, writing what is queued (within `limit`) when the queue is full in
    /// messages or bytes.
    pub(super) async fn send(&mut self, msg: WsMsg, limit: Duration) -> Sent {
        match self.offer(msg) {
            Ok(sent) => sent,
            // Boxed: the wait holds a timer, and every handler that sends would carry it
            // inline (and copy it into its own box) although a queue with room never waits.
            Err(msg) => Box::pin(self.send_waiting(msg, limit)).await,
        }
    }

    /// Queue a message if that needs no wait; `Err` gives it back when the queue is full.
    fn offer(&mut self, msg: WsMsg) -> Result<Sent, WsMsg> {
        if self.gone {
            return Ok(Sent::Gone);
        }
        if self.stalled || self.closed {
            return Ok(Sent::Full);
        }
        if !self.room_for(msg.len()) {
            return Err(msg);
        }
        self.push(msg);
        Ok(Sent::Queued)
    }

    /// Wait (within `limit`) until writes make room for `msg`, then queue it.
    async fn send_waiting(&mut self, msg: WsMsg, limit: Duration) -> Sent {
        let n = msg.len();
        let room = tokio::time::timeout(
            limit,
            std::future::poll_fn(|cx| match self.poll_write(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ if self.room_for(n) => Poll::Ready(Ok(())),
                _ => Poll::Pending,
            }),
        )
        .await;
        match room {
            Ok(Ok(())) => {
                self.push(msg);
                Sent::Queued
            }
            Ok(Err(Stop::Gone)) => Sent::Gone,
            Ok(Err(Stop::Stalled)) => Sent::Full,
            Err(_) => {
                self.stall_now();
                Sent::Full
            }
        }
    }

    /// Whether every one of `msgs` would be queued now, one after another, without a wait
    /// (as [`Link::send`] would queue them).
    pub(super) fn takes_now(&self, msgs: &[WsMsg]) -> bool {
        if self.gone || self.stalled || self.closed {
            return msgs.is_empty();
        }
        let (mut len, mut bytes) = (self.queue.len(), self.queued_bytes);
        for m in msgs {
            let n = m.len();
            if len != 0 && (len >= self.depth || bytes.saturating_add(n) > self.budget) {
                return false;
            }
            len += 1;
            bytes = bytes.saturating_add(n);
        }
        true
    }

    /// Room for one more message of `n` bytes: one larger than the whole budget waits for
    /// an empty queue.
    fn room_for(&self, n: usize) -> bool {
        self.queue.is_empty()
            || (self.queue.len() < self.depth && self.queued_bytes.saturating_add(n) <= self.budget)
    }

    /// Write and flush everything queued, within `limit`; whether it all went out.
    pub(super) async fn drain(&mut self, limit: Duration) -> bool {
        let barrier = match self.io {
            Io::Ws(..) => None,
            Io::Chan(_) => {
                let (tx, rx) = oneshot::channel();
                self.queue.push_back(LinkOut::Barrier(tx));
                Some(rx)
            }
        };
        let written = tokio::time::timeout(limit, async {
            std::future::poll_fn(|cx| self.poll_write(cx)).await.is_ok()
                && match barrier {
                    Some(rx) => rx.await.is_ok(),
                    None => true,
                }
        })
        .await;
        matches!(written, Ok(true))
    }

    /// The peer stopped reading: what is queued is dropped, nothing more is written but
    /// [`Link::last_words`].
    pub(super) fn stall_now(&mut self) {
        self.stalled = true;
        self.stall = None;
        self.queue.clear();
        self.queued_bytes = 0;
    }

    /// Last words to a peer, even one that stopped reading: `msgs` then the close, written
    /// best-effort within `limit` (at most a second after a stall).
    pub(super) async fn last_words(&mut self, msgs: Msgs, close: Close, limit: Duration) {
        if self.gone || self.closed {
            return;
        }
        let limit = if self.stalled {
            limit.min(FINAL_WRITE)
        } else {
            limit
        };
        if let Io::Chan(_) = self.io {
            // The transport's writer knows how to word them after a stall.
            self.stall_now();
            self.stalled = false;
            self.queue
                .push_back(LinkOut::Final(Box::new((msgs, close))));
            let _ =
                tokio::time::timeout(limit, std::future::poll_fn(|cx| self.poll_write(cx))).await;
            return;
        }
        if self.stalled {
            self.stalled = false;
            self.stall = None;
        }
        for m in msgs {
            self.push(m);
        }
        self.queue.push_back(LinkOut::Close(close));
        let _ = tokio::time::timeout(limit, std::future::poll_fn(|cx| self.poll_write(cx))).await;
        self.stalled = true;
    }

    /// Queue the close (if any), write what is queued and close the connection, all within
    /// `limit`; then let go of the transport's writer, if it has one.
    pub(super) async fn finish(&mut self, close: Option<Close>, limit: Duration) {
        if let Some(c) = close {
            self.close(c);
        }
        let _ = tokio::time::timeout(limit, async {
            if !self.stalled {
                let _ = std::future::poll_fn(|cx| self.poll_write(cx)).await;
            }
            match &mut self.io {
                Io::Ws(t) => {
                    if !self.gone {
                        let _ = t.ws.close().await;
                    }
                }
                Io::Chan(c) => c.tx.close(),
            }
        })
        .await;
        if let Io::Chan(c) = &mut self.io {
            c.tx.close();
            if let Some(w) = c.writer.take() {
                let abort = w.abort_handle();
                if tokio::time::timeout(limit, w).await.is_err() {
                    abort.abort();
                }
            }
        }
    }

    /// Hand what is queued to the transport, then flush once. Ready(Ok) once everything is
    /// written and flushed; Pending while the socket takes no more (the stall deadline
    /// runs); Ready(Err) once the peer is gone or stalled.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stop>> {
        if self.gone {
            return Poll::Ready(Err(Stop::Gone));
        }
        if self.stalled {
            return Poll::Ready(Err(Stop::Stalled));
        }
        let before = (self.queue.len(), self.unflushed);
        let r = match &mut self.io {
            Io::Ws(t) => poll_ws(
                t,
                cx,
                &mut self.queue,
                &mut self.queued_bytes,
                &mut self.unflushed,
                &mut self.closed,
                &mut self.pending,
            ),
            Io::Chan(c) => poll_chan(&mut c.tx, cx, &mut self.queue, &mut self.queued_bytes),
        };
        match r {
            Poll::Ready(Ok(())) => {
                self.stall = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(())) => {
                self.gone = true;
                self.queue.clear();
                self.queued_bytes = 0;
                Poll::Ready(Err(Stop::Gone))
            }
            Poll::Pending => {
                let limit = self.write_timeout;
                let progressed = before != (self.queue.len(), self.unflushed);
                let timer = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if progressed {
                    // The deadline is for no progress at all, not for the whole backlog.
                    timer.as_mut().reset(tokio::time::Instant::now() + limit);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    self.stall_now();
                    return Poll::Ready(Err(Stop::Stalled));
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Link {
    /// What was counted reaches the route's series however the session ended.
    fn drop(&mut self) {
        self.flush_counts();
    }
}

/// Feed a WebSocket what is queued (the socket gathers it in its write buffer), then flush
/// once. `Err(())`: the peer is gone.
fn poll_ws(
    t: &mut Tapped<dyn Duplex>,
    cx: &mut Context<'_>,
    queue: &mut VecDeque<LinkOut>,
    queued_bytes: &mut usize,
    unflushed: &mut bool,
    closed: &mut bool,
    counts: &mut LegCounts,
) -> Poll<Result<(), ()>> {
    let mut ws = Pin::new(&mut t.ws);
    while !queue.is_empty() {
        if *closed {
            queue.clear();
            *queued_bytes = 0;
            break;
        }
        std::task::ready!(ws.as_mut().poll_ready(cx)).map_err(drop)?;
        let Some(item) = queue.pop_front() else { break };
        let m = match item {
            LinkOut::Msg(msg) => {
                *queued_bytes = queued_bytes.saturating_sub(msg.len());
                counts.count_out(msg.len() as u64);
                ws.as_mut().start_send_data(msg).map_err(drop)?;
                *unflushed = true;
                continue;
            }
            LinkOut::Ping => Message::Ping(Bytes::new()),
            LinkOut::Close(c) => {
                *closed = true;
                close_message(c)
            }
            // Only a transport with a writer of its own is sent these.
            LinkOut::Barrier(_) | LinkOut::Final(_) => continue,
        };
        ws.as_mut().start_send(m).map_err(drop)?;
        *unflushed = true;
    }
    if *unflushed {
        std::task::ready!(ws.as_mut().poll_flush(cx)).map_err(drop)?;
        *unflushed = false;
    }
    Poll::Ready(Ok(()))
}

/// Move what is queued into a transport writer's channel. `Err(())`: the writer is gone.
fn poll_chan(
    tx: &mut PollSender<LinkOut>,
    cx: &mut Context<'_>,
    queue: &mut VecDeque<LinkOut>,
    queued_bytes: &mut usize,
) -> Poll<Result<(), ()>> {
    while !queue.is_empty() {
        std::task::ready!(tx.poll_reserve(cx)).map_err(drop)?;
        let Some(item) = queue.pop_front() else { break };
        if let LinkOut::Msg(m) = &item {
            *queued_bytes = queued_bytes.saturating_sub(m.len());
        }
        tx.send_item(item).map_err(drop)?;
    }
    Poll::Ready(Ok(()))
}

/// A message as tungstenite takes it: text that is not UTF-8 goes as binary rather than
/// being refused.
fn message(msg: WsMsg) -> Message {
    match msg {
        WsMsg::Text(b) => match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(b.clone()) {
            Ok(t) => Message::Text(t),
            Err(_) => Message::Binary(b),
        },
        WsMsg::Binary(b) => Message::Binary(b),
    }
}

fn close_message(c: Close) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(c.code),
        reason: c.reason.into(),
    }))
}

/// One read from a WebSocket as the session takes it: `None` to skip (control frames), an
/// error once the socket is done. An oversize message is told apart from other failures so
/// the session can answer it with 1009.
pub(crate) fn inbound_item(
    r: Result<Message, WsError>,
    counters: &LegCounters,
) -> Option<Result<WsMsg, LinkError>> {
    let item = inbound(r)?;
    if let Ok(msg) = &item {
        counters.count_in(1, msg.len() as u64);
    }
    Some(item)
}

/// [`inbound_item`] without the counting.
fn inbound(r: Result<Message, WsError>) -> Option<Result<WsMsg, LinkError>> {
    let msg = match r {
        Ok(Message::Text(t)) => WsMsg::Text(Bytes::from(t)),
        Ok(Message::Binary(b)) => WsMsg::Binary(b),
        Ok(Message::Close(f)) => return Some(Err(LinkError::Closed(f.map(|f| u16::from(f.code))))),
        // A relay's text, unchecked (see `Frames::relay`).
        Ok(Message::Frame(f)) if f.header().opcode == OpCode::Data(Data::Text) => {
            WsMsg::Text(f.into_payload())
        }
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => return None,
        Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
            return Some(Err(LinkError::TooBig {
                size,
                max: max_size,
            }));
        }
        Err(e) => return Some(Err(LinkError::Transport(e.to_string()))),
    };
    Some(Ok(msg))
}

// ---------------------------------------------------------------------------------------------
// The writer task of a transport with a writer of its own: the WebSocket an Engine.IO
// long-polling session upgraded to, fed from the channel its link drains into.
// ---------------------------------------------------------------------------------------------

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
    counters.count_out(1, msg.len() as u64);
    write(sink.feed(message(msg)), write_timeout).await
}

/// Flush within `write_timeout`.
pub(crate) async fn flush<S>(sink: &mut S, write_timeout: Duration) -> Result<(), Stop>
where
    S: futures_util::Sink<Message> + Unpin,
{
    write(sink.flush(), write_timeout).await
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

/// The writer of a WebSocket a transport of its own set up (Engine.IO after an upgrade):
/// drains the channel, flushing only when it is empty (one syscall for a burst), until a
/// close or a failed write; after a stall it discards until the last words.
pub(crate) async fn write_socket<S>(
    mut sink: S,
    mut rx: mpsc::Receiver<LinkOut>,
    write_timeout: Duration,
    counters: LegCounters,
) where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut stalled = false;
    while let Some(item) = rx.recv().await {
        let res = match item {
            LinkOut::Msg(_) | LinkOut::Ping | LinkOut::Barrier(_) if stalled => Ok(()),
            LinkOut::Msg(msg) => feed(&mut sink, msg, write_timeout, &counters).await,
            LinkOut::Ping => write(sink.feed(Message::Ping(Bytes::new())), write_timeout).await,
            LinkOut::Close(c) => {
                let limit = if stalled { FINAL_WRITE } else { write_timeout };
                return close(&mut sink, c, limit).await;
            }
            LinkOut::Final(f) => {
                let (msgs, c) = *f;
                let limit = write_timeout.min(FINAL_WRITE);
                for m in msgs {
                    if feed(&mut sink, m, limit, &counters).await.is_err() {
                        break;
                    }
                }
                return close(&mut sink, c, limit).await;
            }
            LinkOut::Barrier(done) => {
                let r = flush(&mut sink, write_timeout).await;
                let _ = done.send(());
                r
            }
        };
        let res = match res {
            Ok(()) if rx.is_empty() && !stalled => flush(&mut sink, write_timeout).await,
            r => r,
        };
        match res {
            Ok(()) => {}
            Err(Stop::Gone) => return,
            Err(Stop::Stalled) => stalled = true,
        }
    }
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

async fn close<S>(sink: &mut S, c: Close, limit: Duration)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let _ = tokio::time::timeout(limit, sink.send(close_message(c))).await;
    let _ = tokio::time::timeout(limit, sink.close()).await;
}
