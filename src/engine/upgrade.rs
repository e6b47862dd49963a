//! The upgrade of a long-polling session to WebSocket: the guard that keeps one upgrade at a
//! time and undoes a failed one, the `2probe`/`3probe`/`5` exchange, the hand-over of the
//! socket to the session's writer, and that writer afterwards.
//!
//! Must not touch: Socket.IO packets (the role's), long-polling requests (`polling.rs`),
//! CORS (`cors.rs`), request validation (`mod.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::shared::{POLLING, Shared, UPGRADING, WEBSOCKET, WsSink};
use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio;
use crate::handshake::{Upgraded, Upgrader};
use crate::metrics::LegCounters;
use crate::session::{self, LinkError, LinkOut};
use crate::websocket::Socket;

/// The client must finish an upgrade (`2probe` … `5`) within this (reference `upgradeTimeout`).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// An upgrade in progress: the session is [`UPGRADING`] while this lives. Dropped before
/// [`UpgradeGuard::complete`], however that happens (the 101 was not sent, hyper never handed
/// the connection over, the probe failed or was dropped), it returns the session to
/// [`POLLING`]; otherwise the session would refuse every later upgrade.
pub(super) struct UpgradeGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl UpgradeGuard {
    /// `None` when the session is already upgrading or upgraded.
    pub(super) fn begin(shared: Arc<Shared>) -> Option<Self> {
        shared
            .transport
            .compare_exchange(POLLING, UPGRADING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(Self {
            shared,
            done: false,
        })
    }

    /// The client sent `5`: the session is on WebSocket for good.
    pub(super) fn complete(mut self) -> Arc<Shared> {
        self.done = true;
        self.shared.transport.store(WEBSOCKET, Ordering::Release);
        self.shared.clone()
    }
}

impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        if !self.done {
            // Only UPGRADING goes back: nothing else may have moved it meanwhile, but a
            // compare-exchange costs nothing and cannot undo a finished upgrade.
            let _ = self.shared.transport.compare_exchange(
                UPGRADING,
                POLLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

impl Engine {
    /// A WebSocket upgrade of a long-polling session.
    pub(super) fn upgrade(
        &self,
        req: Request<Incoming>,
        up: Upgrader,
        shared: Arc<Shared>,
    ) -> Response<Full<Bytes>> {
        let write_timeout = self.ctx.write_timeout;
        let Some(guard) = UpgradeGuard::begin(shared) else {
            // Already upgrading or upgraded: engine.io completes this handshake and closes
            // the new socket at once, leaving the session as it was.
            return up.upgrade(
                req,
                Some(Box::new(move |upgraded: Upgraded, _route, _shutdown| {
                    Box::pin(async move {
                        let mut ws = upgraded.ws;
                        let _ = tokio::time::timeout(write_timeout, SinkExt::close(&mut ws)).await;
                    })
                })),
            );
        };
        // The guard lives in the closure, then in the probe: a refused handshake or an
        // upgrade hyper never completes drops it with the closure.
        up.upgrade(
            req,
            Some(Box::new(move |upgraded: Upgraded, _route, shutdown| {
                Box::pin(probe(guard, upgraded.ws, write_timeout, shutdown))
            })),
        )
    }
}

/// One read from an upgraded client WebSocket, as
/// [`Link::websocket`](crate::session::Link::websocket) takes it (an oversize message is
/// `LinkError::TooBig`, which the session answers); the stream's end is a close.
pub(super) fn from_ws(
    next: Option<Result<Message, WsError>>,
    counters: &LegCounters,
) -> Option<Result<WsMsg, LinkError>> {
    match next {
        Some(r) => session::inbound_item(r, counters),
        None => Some(Err(LinkError::Closed(None))),
    }
}

/// The writer after an upgrade: first what the long-polling buffer still holds, then `carry`,
/// then the session's queue, batching flushes like the WebSocket link's writer.
pub(super) async fn ws_writer(
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
        if session::feed(&mut sink, msg, write_timeout, counters)
            .await
            .is_err()
        {
            return;
        }
    }
    if session::flush(&mut sink, write_timeout).await.is_err() {
        return;
    }
    session::write_socket(sink, rx, write_timeout, counters.clone()).await;
}

/// The upgrade of a long-polling session, on the new WebSocket: answer `2probe` with
/// `3probe`, release the waiting GET so the client can pause polling, and on `5` hand the
/// socket to the session (the writer first sends what polling had not delivered). Then read
/// the socket into the session until either ends.
async fn probe(
    guard: UpgradeGuard,
    ws: Socket,
    write_timeout: Duration,
    shutdown: CancellationToken,
) {
    let shared = guard.shared.clone();
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
        // Dropping the guard puts the session back on long-polling.
        return;
    }
    let shared = guard.complete();
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
        let Some(item) = from_ws(next, &shared.counters) else {
            continue;
        };
        let end = item.is_err();
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
