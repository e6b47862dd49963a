//! The passthrough session (`mode = "passthrough"`): the upstream is dialed at once and
//! WebSocket frames go both ways as they were read.
//!
//! Owns: its `select!` loop, which relays each way (frames checked from their headers and
//! written on from the read buffer: nothing unmasked, re-masked or copied; see
//! [`crate::websocket::Frames::relay_scan`]), the client's rate, the stall deadline of
//! each way, the close handshake passed end to end, and the close each side gets when the
//! proxy ends it.
//!
//! Must not touch: message contents, roles, the translator. It shares the links (for the
//! closing words) and the session outcomes with the translating session, nothing else.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_util::sync::CancellationToken;

use super::down::{await_close, refuse_link};
use super::gate::{Gate, Gated};
use super::{EXPIRE_TICK, Outcome, RouteCtx, leg_link, log_end};
use crate::admission::{ClientRate, Reason};
use crate::config::{Mode, Route};
use crate::dialect::{Close, Dial, Msgs, Refusal};
use crate::frame::{ErrorInfo, ErrorKind};
use crate::metrics::{self as m, LegCounters, LegCounts};
use crate::websocket::{Scanned, Socket};

/// How long a passthrough leg's counts may wait before they reach `/metrics`: as long as a
/// translating session's (its tick).
const COUNTS_EVERY: Duration = EXPIRE_TICK;

/// A passthrough session: the upstream is dialed at once and WebSocket frames are relayed
/// unchanged both ways, ping and pong and the close handshake included, as a plain proxy
/// relays them. Each way is still limited (message size, the client's rate) and counted.
pub async fn passthrough(
    ctx: Arc<RouteCtx>,
    client: Socket,
    dial: Dial,
    peer: Option<SocketAddr>,
    shutdown: CancellationToken,
) {
    let metrics = ctx.metrics.clone();
    let down_counters = metrics.down.for_session();
    // No role to word a refusal: the plain close codes (1013 busy, 1008 over the rate).
    let _admitted = match ctx.admission.admit(peer.map(|p| p.ip())) {
        Ok(a) => a,
        Err(reason) => {
            m::limit_refused(&metrics.route, reason.label());
            let close = Refusal::Busy.close(&ErrorInfo::new(ErrorKind::Limit, reason.message()));
            let waits = !ctx.client_spec.caps.speaks_first;
            let mut down = leg_link(client, &ctx, down_counters);
            refuse_link(&mut down, waits, Msgs::new(), close, Duration::from_secs(1)).await;
            metrics.session_ended(Outcome::Refused.label());
            return;
        }
    };
    let rate = _admitted.client_rate();
    metrics.active.increment(1.0);
    let started = Instant::now();
    let up_counters = metrics.up.for_session();
    let backend = match ctx.dialer.connect(&dial).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::info!(route = %metrics.route, error = %e, "upstream unavailable");
            let mut down = leg_link(client, &ctx, down_counters);
            down.finish(
                Some(Close::new(1011, "upstream unavailable")),
                Duration::from_secs(1),
            )
            .await;
            metrics.active.decrement(1.0);
            metrics.session_ended(Outcome::UpstreamUnavailable.label());
            log_end(
                &ctx,
                None,
                started,
                Outcome::UpstreamUnavailable,
                down.counts(),
                up_counters.tally.get(),
            );
            return;
        }
    };
    let mut relay = Relay {
        client,
        backend,
        up: Way::new(ctx.write_timeout),
        down: Way::new(ctx.write_timeout),
        client_counts: LegCounts::default(),
        backend_counts: LegCounts::default(),
        counting: false,
    };
    relay.client.relay();
    relay.backend.relay();
    let end = run(
        &mut relay,
        &ctx,
        &rate,
        &down_counters,
        &up_counters,
        &shutdown,
    )
    .await;
    let Relay {
        mut client,
        mut backend,
        mut client_counts,
        mut backend_counts,
        ..
    } = relay;
    down_counters.add(&mut client_counts);
    up_counters.add(&mut backend_counts);
    // What each way had checked and not written goes first, then the closes.
    client.end_relay(&mut backend);
    backend.end_relay(&mut client);
    let mut close_up = Some(end.close_up);
    let mut close_down = Some(match end.outcome {
        Outcome::Shutdown => Close::new(1001, "server shutting down"),
        // A backend that vanished or broke the protocol (a close it sent went through).
        Outcome::UpstreamLost => Close::new(1011, "upstream closed"),
        // The only protocol error the proxy itself answers: the client's message size.
        Outcome::ProtocolError => Close::new(1009, "message too big"),
        Outcome::SlowConsumer => Close::new(1008, "slow consumer"),
        Outcome::Refused => match end.over_rate {
            Some(reason) => {
                Refusal::Rate.close(&ErrorInfo::new(ErrorKind::Limit, reason.message()))
            }
            None => Close::new(1008, "refused"),
        },
        _ => Close::normal(),
    });
    // A peer that broke the protocol hears why (1002, 1007); the other side the close it
    // would get had that peer left.
    match &end.broke {
        Some((Side::Client, e)) => client.refuse(e),
        Some((Side::Backend, e)) => backend.refuse(e),
        None => {}
    }
    // A close that went through (relayed, or the refusal's) is the only one a peer gets.
    if client.sent_close() {
        close_down = None;
    }
    if backend.sent_close() {
        close_up = None;
    }
    let limit = ctx.write_timeout.min(Duration::from_secs(2));
    let mut up = leg_link(backend, &ctx, LegCounters::detached());
    let mut down = leg_link(client, &ctx, LegCounters::detached());
    up.finish(close_up, limit).await;
    // Let go of the backend at once, not after the client's last words.
    drop(up);
    if end.outcome == Outcome::Refused {
        // The client hears why, and its close is awaited (see `await_close`).
        if let Some(c) = close_down {
            down.close(c);
        }
        await_close(&mut down).await;
        down.finish(None, limit).await;
    } else {
        down.finish(close_down, limit).await;
    }
    metrics.active.decrement(1.0);
    metrics.session_ended(end.outcome.label());
    log_end(
        &ctx,
        None,
        started,
        end.outcome,
        down_counters.tally.get(),
        up_counters.tally.get(),
    );
}

/// The two sockets of a passthrough while it relays, and what each way holds.
struct Relay {
    client: Socket,
    backend: Socket,
    /// Client to backend.
    up: Way,
    /// Backend to client.
    down: Way,
    /// Counted and not yet in `/metrics` (see [`LegCounters::add`]).
    client_counts: LegCounts,
    backend_counts: LegCounts,
    /// Counts are pending and the loop was told (it arms the timer that hands them on).
    counting: bool,
}

/// One way of a relay.
struct Way {
    /// The sender's close frame was read.
    closed: bool,
    /// This way stopped (see [`Stop`]) and is not polled any more.
    stopped: bool,
    /// Armed while a write waits on the receiver; boxed, and only then.
    stall: Option<Pin<Box<Sleep>>>,
    write_timeout: Duration,
    /// The sender's reads go through a gate (see `gate.rs`): a wake-up for the other way,
    /// or for a write, does not try a read on a socket that has nothing new.
    read_gate: Gate,
    /// The last read found nothing (and the gate had not been woken).
    read_idle: bool,
}

impl Way {
    fn new(write_timeout: Duration) -> Self {
        Self {
            closed: false,
            stopped: false,
            stall: None,
            write_timeout,
            read_gate: Gate::new(),
            read_idle: false,
        }
    }
}

/// Why one way of a relay stopped.
#[derive(Debug)]
enum Stop {
    /// The sender's close frame went through to the receiver.
    Closed,
    /// Reading the sender failed: it left without a close, broke the protocol or sent a
    /// message over the limit.
    Read(WsError),
    /// The client's rate refused its next message.
    Refused,
    /// Writing to the receiver failed: it is gone.
    Write,
    /// The receiver took nothing for the write timeout: it stopped reading.
    Stalled,
}

/// A relay's peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Backend,
}

/// How a relay ended.
struct End {
    outcome: Outcome,
    /// The close the backend gets (unless one went through).
    close_up: Close,
    over_rate: Option<Reason>,
    /// A peer that broke the protocol, and how.
    broke: Option<(Side, WsError)>,
}

/// What woke the relay loop.
enum Step {
    Shutdown,
    /// Counts became pending: their timer is to be armed.
    Counted,
    Counts,
    Closing,
    Way(Side, Stop),
}

/// Relay both ways until one side leaves, breaks the protocol or is refused, or shutdown.
async fn run(
    relay: &mut Relay,
    ctx: &RouteCtx,
    rate: &ClientRate,
    down_counters: &LegCounters,
    up_counters: &LegCounters,
    shutdown: &CancellationToken,
) -> End {
    let mut end = End {
        outcome: Outcome::ClientClosed,
        close_up: Close::normal(),
        over_rate: None,
        broke: None,
    };
    // The first close to go through: the session's outcome; the other side's answer is
    // awaited (within the closing limit) so that both hear the handshake end to end.
    let mut first: Option<Outcome> = None;
    // Made once, not per wait (see the translating session).
    let cancelled = shutdown.cancelled();
    let counts_due = tokio::time::sleep(Duration::ZERO);
    let closing = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(cancelled, counts_due, closing);
    // Gated: polled only when they were woken or the timer was set (see `gate.rs`).
    let mut cancelled = Gated::new(cancelled);
    let mut counts_due = Gated::new(counts_due);
    let mut closing_armed = false;
    loop {
        let step = tokio::select! {
            _ = &mut cancelled => Step::Shutdown,
            _ = &mut counts_due, if relay.counting => Step::Counts,
            _ = &mut closing, if closing_armed => Step::Closing,
            s = std::future::poll_fn(|cx| relay.poll(cx, rate, &mut end.over_rate)) => s,
        };
        match step {
            Step::Shutdown => {
                end.outcome = Outcome::Shutdown;
                return end;
            }
            Step::Counted => {
                counts_due
                    .get_mut()
                    .as_mut()
                    .reset(tokio::time::Instant::now() + COUNTS_EVERY);
            }
            Step::Counts => {
                relay.counting = false;
                down_counters.add(&mut relay.client_counts);
                up_counters.add(&mut relay.backend_counts);
            }
            Step::Closing => {
                end.outcome = first.unwrap_or(Outcome::ClientClosed);
                return end;
            }
            Step::Way(side, Stop::Closed) => {
                let by = match side {
                    Side::Client => Outcome::ClientClosed,
                    Side::Backend => Outcome::UpstreamLost,
                };
                let outcome = *first.get_or_insert(by);
                if relay.up.stopped && relay.down.stopped {
                    end.outcome = outcome;
                    return end;
                }
                if !closing_armed {
                    let limit = ctx.write_timeout.min(Duration::from_secs(2));
                    closing.as_mut().reset(tokio::time::Instant::now() + limit);
                    closing_armed = true;
                }
            }
            Step::Way(side, stop) => {
                end.outcome = match first {
                    // A close went through and its answer did not come: the session had
                    // ended as that close said.
                    Some(o) => o,
                    None => stopped(side, stop, &mut end),
                };
                if let (Outcome::Refused, Some(reason)) = (end.outcome, end.over_rate) {
                    m::limit_refused(&ctx.metrics.route, reason.label());
                }
                return end;
            }
        }
    }
}

/// The outcome of a way that stopped other than by a close; what it asks of the closes.
fn stopped(side: Side, stop: Stop, end: &mut End) -> Outcome {
    match (side, stop) {
        (Side::Client, Stop::Read(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
            Outcome::ProtocolError
        }
        (Side::Backend, Stop::Read(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
            // A message over the limit cannot be forwarded; the backend hears 1009, the
            // client the close it would get had the backend left.
            end.close_up = Close::new(1009, "message too big");
            Outcome::UpstreamLost
        }
        (Side::Client, Stop::Read(e)) => {
            end.broke = Some((Side::Client, e));
            Outcome::ClientClosed
        }
        (Side::Backend, Stop::Read(e)) => {
            end.broke = Some((Side::Backend, e));
            Outcome::UpstreamLost
        }
        (_, Stop::Refused) => Outcome::Refused,
        // Client to backend: the backend is gone or stopped reading.
        (Side::Client, Stop::Write | Stop::Stalled) => Outcome::UpstreamLost,
        (Side::Backend, Stop::Write) => Outcome::ClientClosed,
        (Side::Backend, Stop::Stalled) => Outcome::SlowConsumer,
        (_, Stop::Closed) => Outcome::ClientClosed,
    }
}

impl Relay {
    /// Move frames both ways until one way stops: Ready with which and why.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        rate: &ClientRate,
        over_rate: &mut Option<Reason>,
    ) -> Poll<Step> {
        if !self.up.stopped {
            let mut admit = |len| match rate.check(len) {
                Ok(()) => true,
                Err(reason) => {
                    *over_rate = Some(reason);
                    false
                }
            };
            let (from, to) = (&mut self.client, &mut self.backend);
            let counts = (&mut self.client_counts, &mut self.backend_counts);
            if let Poll::Ready(stop) = self.up.poll(from, to, cx, counts, &mut admit) {
                self.up.stopped = true;
                return Poll::Ready(Step::Way(Side::Client, stop));
            }
        }
        if !self.down.stopped {
            let (from, to) = (&mut self.backend, &mut self.client);
            let counts = (&mut self.backend_counts, &mut self.client_counts);
            if let Poll::Ready(stop) = self.down.poll(from, to, cx, counts, &mut |_| true) {
                self.down.stopped = true;
                return Poll::Ready(Step::Way(Side::Backend, stop));
            }
        }
        if !self.counting && (self.client_counts.frames_in > 0 || self.backend_counts.frames_in > 0)
        {
            // Once a tick at most: the loop arms the timer that hands the counts on.
            self.counting = true;
            return Poll::Ready(Step::Counted);
        }
        Poll::Pending
    }
}

impl Way {
    /// Write what `from` checked to `to`, read and check more, until this way stops or
    /// waits: what was read goes on with one write per read (and one flush).
    fn poll(
        &mut self,
        from: &mut Socket,
        to: &mut Socket,
        cx: &mut Context<'_>,
        (counts_from, counts_to): (&mut LegCounts, &mut LegCounts),
        admit: &mut impl FnMut(usize) -> bool,
    ) -> Poll<Stop> {
        loop {
            let pending = from.relay_pending();
            if pending > 0 {
                match from.poll_relay_write(to, cx) {
                    Poll::Ready(Ok(())) => self.stall = None,
                    Poll::Ready(Err(_)) => return Poll::Ready(Stop::Write),
                    Poll::Pending => {
                        if self.stalled(from.relay_pending() < pending, cx) {
                            return Poll::Ready(Stop::Stalled);
                        }
                        if !from.relay_reads() {
                            return Poll::Pending;
                        }
                    }
                }
            }
            if self.closed {
                // The close frame is among what is still to be written.
                return if from.relay_pending() == 0 {
                    Poll::Ready(Stop::Closed)
                } else {
                    Poll::Pending
                };
            }
            let read = self
                .read_gate
                .poll(&mut self.read_idle, cx, |cx| from.poll_relay_read(cx));
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Stop::Read(e)),
                Poll::Ready(Ok(())) => {}
            }
            match from.relay_scan(&mut *admit) {
                Ok(found) => {
                    count(&found, counts_from, counts_to);
                    self.closed = found.closed;
                    if found.refused {
                        return Poll::Ready(Stop::Refused);
                    }
                }
                Err(e) => return Poll::Ready(Stop::Read(e)),
            }
        }
    }

    /// Whether the receiver stalled: no progress (`progressed` says whether this write made
    /// some) for the write timeout.
    fn stalled(&mut self, progressed: bool, cx: &mut Context<'_>) -> bool {
        let limit = self.write_timeout;
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if progressed {
            // The deadline is for no progress at all, not for the whole backlog.
            timer.as_mut().reset(tokio::time::Instant::now() + limit);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// Count what a scan passed: in on the sender's leg, out on the receiver's.
fn count(found: &Scanned, from: &mut LegCounts, to: &mut LegCounts) {
    from.frames_in += found.messages;
    from.bytes_in += found.bytes;
    to.frames_out += found.messages;
    to.bytes_out += found.bytes;
}

/// Whether a route uses passthrough.
pub fn is_passthrough(route: &Route) -> bool {
    route.mode == Mode::Passthrough
}
