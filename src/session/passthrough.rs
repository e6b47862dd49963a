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

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::down::{await_close, refuse_link};
use super::link::{Link, LinkError, LinkOut, Sent};
use super::{Outcome, RouteCtx, log_end};
use crate::config::{Mode, Route};
use crate::dialect::{Close, Dial, Refusal};
use crate::frame::{ErrorInfo, ErrorKind};
use crate::metrics as m;

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
            refuse_link(&mut down, waits, Vec::new(), close, Duration::from_secs(1)).await;
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
                down.tally.get(),
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
    // A message over the limit cannot be forwarded; its sender hears 1009, the other side
    // the close it would get had the sender left.
    let too_big = || Close::new(1009, "message too big");
    let mut close_up = Close::normal();
    let mut over_rate = None;
    let outcome = loop {
        let down_ready = up.ready();
        let up_ready = down.ready();
        // Not `biased`: neither direction may starve the other.
        tokio::select! {
            _ = shutdown.cancelled() => break Outcome::Shutdown,
            m = down.inbound.next(), if down_ready => match m {
                Some(Ok(msg)) => match rate.check(msg.len()) {
                    Err(reason) => {
                        m::limit_refused(&metrics.route, reason.label());
                        over_rate = Some(reason);
                        break Outcome::Refused;
                    }
                    Ok(()) => match up.send(msg, ctx.write_timeout).await {
                        Sent::Queued => {}
                        _ => break Outcome::UpstreamLost,
                    },
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
        let _ = down.outbound.try_send(LinkOut::Close(close_down));
        await_close(&mut down).await;
        down.finish(None, limit).await;
    } else {
        down.finish(Some(close_down), limit).await;
    }
    metrics.active.decrement(1.0);
    metrics.session_ended(outcome.label());
    log_end(
        &ctx,
        None,
        started,
        outcome,
        down.tally.get(),
        up.tally.get(),
    );
}

/// Whether a route uses passthrough.
pub fn is_passthrough(route: &Route) -> bool {
    route.mode == Mode::Passthrough
}
