//! The passthrough session (`mode = "passthrough"`): the upstream is dialed at once and
//! WebSocket messages go both ways unchanged.
//!
//! Owns: its `select!` loop (backpressure both ways, as the translating pump does) and the
//! close each side gets when it ends.
//!
//! Must not touch: message contents, roles, the translator. It shares the links and the
//! session outcomes with the translating session, nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::down::{await_close, refuse_link};
use super::gate::Gated;
use super::link::{Event, Link, LinkError, Sent};
use super::{EXPIRE_TICK, Outcome, READ_BATCH, RouteCtx, log_end};
use crate::admission::{ClientRate, Reason};
use crate::config::{Mode, Route};
use crate::dialect::{Close, Dial, Msgs, Refusal, WsMsg};
use crate::frame::{ErrorInfo, ErrorKind};
use crate::metrics as m;

/// How long a passthrough leg's counts may wait before they reach `/metrics`: as long as a
/// translating session's (its tick).
const COUNTS_EVERY: Duration = EXPIRE_TICK;

/// A passthrough session: the upstream is dialed at once and WebSocket messages are
/// forwarded unchanged both ways. Each leg still has its own queue, limits and metrics.
pub async fn passthrough(
    ctx: Arc<RouteCtx>,
    mut down: Link,
    dial: Dial,
    peer: Option<SocketAddr>,
    shutdown: CancellationToken,
) {
    let metrics = ctx.metrics.clone();
    // No role to word a refusal: the plain close codes (1013 busy, 1008 over the rate).
    let _admitted = match ctx.admission.admit(peer.map(|p| p.ip())) {
        Ok(a) => a,
        Err(reason) => {
            m::limit_refused(&metrics.route, reason.label());
            let close = Refusal::Busy.close(&ErrorInfo::new(ErrorKind::Limit, reason.message()));
            let waits = !ctx.client_spec.caps.speaks_first;
            refuse_link(&mut down, waits, Msgs::new(), close, Duration::from_secs(1)).await;
            metrics.session_ended(Outcome::Refused.label());
            return;
        }
    };
    let rate = _admitted.client_rate();
    metrics.active.increment(1.0);
    let started = Instant::now();
    let up_counters = metrics.up.for_session();
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
    let mut up = Link::websocket(
        ws,
        ctx.queue_depth,
        ctx.queue_bytes,
        ctx.write_timeout,
        up_counters,
    );
    up.relay();
    down.relay();
    // A message over the limit cannot be forwarded; its sender hears 1009, the other side
    // the close it would get had the sender left.
    let too_big = || Close::new(1009, "message too big");
    // What each side hears when the other closed: the close it sent, passed on.
    let mut close_up = Close::normal();
    let mut close_down_as_sent = None;
    let mut over_rate = None;
    // Made once, not per wait: a new one is a waiter added to and taken from the token's
    // list around every message.
    let cancelled = shutdown.cancelled();
    // Armed while a leg holds counts not yet in `/metrics` (the links count on their own;
    // see `LegCounters::add`), so an idle session's last messages show within a tick.
    let counts_due = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(cancelled, counts_due);
    // Gated: polled only when they were woken or the timer was set (see `gate.rs`).
    let mut cancelled = Gated::new(cancelled);
    let mut counts_due = Gated::new(counts_due);
    let mut due_armed = false;
    let outcome = loop {
        if !due_armed && (down.counted() || up.counted()) {
            counts_due
                .get_mut()
                .as_mut()
                .reset(tokio::time::Instant::now() + COUNTS_EVERY);
            due_armed = true;
        }
        let down_ready = up.ready();
        let up_ready = down.ready();
        // Not `biased`: neither direction may starve the other.
        let step = tokio::select! {
            _ = &mut cancelled => Err(Outcome::Shutdown),
            _ = &mut counts_due, if due_armed => {
                due_armed = false;
                down.flush_counts();
                up.flush_counts();
                Ok(false)
            }
            e = down.event(down_ready) => match e {
                Event::In(m) => {
                    from_client(m, &mut up, &rate, &ctx, &mut over_rate, &mut close_up).await
                }
                Event::Gone => Err(Outcome::ClientClosed),
                Event::Stalled => Err(Outcome::SlowConsumer),
                Event::Room => Ok(false),
            },
            e = up.event(up_ready) => match e {
                Event::In(m) => {
                    from_backend(m, &mut down, &ctx, &mut close_up, &mut close_down_as_sent).await
                }
                Event::Gone | Event::Stalled => Err(Outcome::UpstreamLost),
                Event::Room => Ok(false),
            },
        };
        match step {
            Err(o) => break o,
            // Every message a read already brought in is forwarded before the loop waits
            // again, and writes: one flush per peer for the lot.
            Ok(true) => {
                if let Err(o) = drain_reads(
                    &mut down,
                    &mut up,
                    &rate,
                    &ctx,
                    &mut over_rate,
                    &mut close_up,
                    &mut close_down_as_sent,
                )
                .await
                {
                    break o;
                }
            }
            Ok(false) => {}
        }
    };
    let close_down = match outcome {
        Outcome::Shutdown => Close::new(1001, "server shutting down"),
        // A backend that closed with a close frame: its code; one that vanished: 1011.
        Outcome::UpstreamLost => close_down_as_sent
            .take()
            .unwrap_or_else(|| Close::new(1011, "upstream closed")),
        // The only protocol error a passthrough session sees: the client's message size.
        Outcome::ProtocolError => too_big(),
        Outcome::SlowConsumer => Close::new(1008, "slow consumer"),
        Outcome::Refused => match over_rate {
            Some(reason) => {
                Refusal::Rate.close(&ErrorInfo::new(ErrorKind::Limit, reason.message()))
            }
            None => Close::new(1008, "refused"),
        },
        _ => Close::normal(),
    };
    let limit = ctx.write_timeout.min(Duration::from_secs(2));
    up.finish(Some(close_up), limit).await;
    if outcome == Outcome::Refused {
        // The client hears why, and its close is awaited (see `await_close`).
        down.close(close_down);
        await_close(&mut down).await;
        down.finish(None, limit).await;
    } else {
        down.finish(Some(close_down), limit).await;
    }
    metrics.active.decrement(1.0);
    metrics.session_ended(outcome.label());
    log_end(&ctx, None, started, outcome, down.counts(), up.counts());
}

/// The close a peer sent, as its other side hears it: the same code (a plain proxy's close
/// frame goes through as it came), or a normal close when it had none or one that may not
/// be sent (1005, 1006, 1015).
fn passed_on(code: Option<u16>) -> Close {
    match code {
        Some(c) if CloseCode::from(c).is_allowed() => Close::new(c, ""),
        _ => Close::normal(),
    }
}

/// One read from the client, forwarded: `Ok(true)` when a message went on.
async fn from_client(
    m: Option<Result<WsMsg, LinkError>>,
    up: &mut Link,
    rate: &ClientRate,
    ctx: &RouteCtx,
    over_rate: &mut Option<Reason>,
    close_up: &mut Close,
) -> Result<bool, Outcome> {
    match m {
        Some(Ok(msg)) => {
            if let Err(reason) = rate.check(msg.len()) {
                m::limit_refused(&ctx.metrics.route, reason.label());
                *over_rate = Some(reason);
                return Err(Outcome::Refused);
            }
            match up.send(msg, ctx.write_timeout).await {
                Sent::Queued => Ok(true),
                _ => Err(Outcome::UpstreamLost),
            }
        }
        Some(Err(LinkError::TooBig { .. })) => Err(Outcome::ProtocolError),
        Some(Err(LinkError::Closed(code))) => {
            *close_up = passed_on(code);
            Err(Outcome::ClientClosed)
        }
        _ => Err(Outcome::ClientClosed),
    }
}

/// One read from the backend, forwarded: `Ok(true)` when a message went on.
async fn from_backend(
    m: Option<Result<WsMsg, LinkError>>,
    down: &mut Link,
    ctx: &RouteCtx,
    close_up: &mut Close,
    close_down: &mut Option<Close>,
) -> Result<bool, Outcome> {
    match m {
        Some(Ok(msg)) => match down.send(msg, ctx.write_timeout).await {
            Sent::Queued => Ok(true),
            Sent::Full => Err(Outcome::SlowConsumer),
            Sent::Gone => Err(Outcome::ClientClosed),
        },
        Some(Err(LinkError::TooBig { .. })) => {
            // A message over the limit cannot be forwarded; the backend hears 1009, the
            // client the close it would get had the backend left.
            *close_up = Close::new(1009, "message too big");
            Err(Outcome::UpstreamLost)
        }
        Some(Err(LinkError::Closed(code))) => {
            *close_down = Some(passed_on(code));
            Err(Outcome::UpstreamLost)
        }
        _ => Err(Outcome::UpstreamLost),
    }
}

/// Forward what both legs already read, without waiting, up to a bound.
async fn drain_reads(
    down: &mut Link,
    up: &mut Link,
    rate: &ClientRate,
    ctx: &RouteCtx,
    over_rate: &mut Option<Reason>,
    close_up: &mut Close,
    close_down: &mut Option<Close>,
) -> Result<(), Outcome> {
    for _ in 0..READ_BATCH {
        let mut moved = false;
        if up.ready()
            && let Some(m) = down.try_recv().await
        {
            moved |= from_client(m, up, rate, ctx, over_rate, close_up).await?;
        }
        if down.ready()
            && let Some(m) = up.try_recv().await
        {
            moved |= from_backend(m, down, ctx, close_up, close_down).await?;
        }
        if !moved {
            break;
        }
    }
    Ok(())
}

/// Whether a route uses passthrough.
pub fn is_passthrough(route: &Route) -> bool {
    route.mode == Mode::Passthrough
}
