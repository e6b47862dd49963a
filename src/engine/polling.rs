//! Engine.IO long-polling: the handshake that registers a session, GETs that deliver the
//! buffered packets (bounded by maxPayload; one GET at a time), POST bodies into the session
//! (size and packet-count limits before buffering, one [`WsMsg`] per packet), and the writer
//! task that drains the session's outbound queue into the buffer until an upgrade takes over.
//!
//! Must not touch: Socket.IO packets and their meaning (the role's), the upgrade sequence
//! (`upgrade.rs`), CORS (`cors.rs`), request validation (`mod.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::shared::{Pings, Shared, WEBSOCKET, WsSink};
use super::upgrade::ws_writer;
use super::{Code, Engine, error, respond};
use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio::{self, Packet as Eio};
use crate::dialect::socketio::server::PING_TIMEOUT;
use crate::handshake::{Upgrader, handshake_of, session_id};
use crate::session::{Inbound, Link, LinkError, LinkOut, Session};

/// Long-polling sessions one route keeps at once. Each holds the permit of the connection that
/// opened it, but one connection can open many, so the registry has its own bound.
const MAX_POLLING_SESSIONS: usize = 100_000;
/// While an upgrade is probing, a GET with nothing to say is answered `6` after this (the
/// reference server's noop check interval), so the client can pause polling.
const PROBE_NOOP_AFTER: Duration = Duration::from_millis(100);
/// After a long-polling session ends, its sid lives on this long so the next GET can fetch what
/// was still buffered and the close packet.
const POLL_LINGER: Duration = Duration::from_secs(5);
/// The same, once the proxy is shutting down.
const POLL_LINGER_SHUTDOWN: Duration = Duration::from_secs(1);

/// Long-polling sessions of one route that exist only to answer a refusal (client limits),
/// at once: they hold no connection slot, so they have a bound of their own
/// (`Engine::refusing`'s permits).
pub(super) const MAX_REFUSING: usize = 1024;

/// A long-polling payload response.
fn payload(packets: &[Eio]) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::OK, engineio::encode_polling(packets));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Clears a busy flag when a request handler ends, however it ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Engine {
    /// A long-polling handshake: register the session, start it, answer `open`.
    pub(super) async fn open_polling(
        &self,
        req: Request<Incoming>,
        up: Upgrader,
    ) -> Response<Full<Bytes>> {
        let ctx = self.ctx.clone();
        let sid = session_id();
        let c = &ctx.config.socketio;
        let pings = Pings {
            interval: Duration::from_millis(c.ping_interval_ms),
            timeout: Duration::from_millis(c.ping_timeout_ms),
        };
        let (shared, ends) = Shared::new(ctx.queue_depth, ctx.metrics.down.for_session(), pings);
        let shared = Arc::new(shared);
        // Asked before a connection slot is taken: a session the route refuses lives on only
        // to answer that refusal at the client's next requests, and holds no slot. One
        // keep-alive connection's handshakes took a slot each until they had answered, and
        // so every slot. Such sessions are bounded apart.
        let admission = ctx.admission.admit(Some(up.peer().ip()));
        let (permit, refusing) = match &admission {
            Ok(_) => match up.session_permit() {
                Some(p) => (Some(p), None),
                None => return respond(StatusCode::SERVICE_UNAVAILABLE, Bytes::new()),
            },
            Err(_) => match self.refusing.clone().try_acquire_owned() {
                Ok(r) => (None, Some(r)),
                Err(_) => return respond(StatusCode::SERVICE_UNAVAILABLE, Bytes::new()),
            },
        };
        {
            let mut sessions = self.sessions.lock().await;
            if sessions.len() >= MAX_POLLING_SESSIONS {
                return respond(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
            }
            sessions.insert(sid.clone(), shared.clone());
        }
        let writer = tokio::spawn(poll_writer(
            shared.clone(),
            ends.outbound_rx,
            ends.poll,
            ends.hand_over,
            ctx.write_timeout,
        ));
        let link = Link::new(
            inbound(ends.inbound, shared.kill.clone()),
            ends.outbound,
            writer,
            ctx.queue_depth,
            ctx.queue_bytes,
        )
        .with_tally(shared.counters.tally.clone());
        let handshake = handshake_of(&req, Some(up.peer()), None);
        let role = (ctx.new_server)(&handshake, Instant::now());
        let registry = self.sessions.clone();
        let open = self.open_packet(sid.clone(), vec!["websocket".into()]);
        // The `open` answer is the session's first message out.
        shared.counters.count_out(1, open.len() as u64);
        up.spawn_session(permit, move |shutdown, permit| async move {
            Session::new(ctx, link, role, &handshake)
                .with_admission(admission)
                .run(shutdown.clone())
                .await;
            // The connection slot is the session's: what lingers for the client's last poll
            // (a refusal's answer, the close) holds none. One keep-alive connection opening
            // refused sessions held a slot each for the linger, and so every slot.
            drop(permit);
            if shared.transport() != WEBSOCKET && !shared.gone.is_cancelled() {
                let linger = if shutdown.is_cancelled() {
                    POLL_LINGER_SHUTDOWN
                } else {
                    POLL_LINGER
                };
                let _ = tokio::time::timeout(linger, shared.finished.cancelled()).await;
            }
            registry.lock().await.remove(&sid);
            // A refusing session's place is given back only now: with its linger, so that
            // refused sessions stay bounded, lingering ones included.
            drop(refusing);
        });
        let mut r = respond(StatusCode::OK, open);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// A long-polling GET: whatever is buffered (up to maxPayload), else wait for something.
    pub(super) async fn poll(&self, shared: &Shared, arrived: Instant) -> Response<Full<Bytes>> {
        if shared.get_busy.swap(true, Ordering::AcqRel) {
            // Overlapping polls: the reference server fails the transport.
            shared.kill.cancel();
            return error(Code::BadRequest);
        }
        let _busy = Busy(&shared.get_busy);
        let mut st = shared.poll.lock().await;
        if st.upgraded {
            return error(Code::BadRequest);
        }
        let deadline = shared.pings.interval.saturating_add(shared.pings.timeout);
        if shared.silent_for(deadline, arrived) {
            // Past the ping deadline when it arrived: the session's own timer ends it any
            // moment now.
            shared.set_gone();
            return error(Code::UnknownSid);
        }
        if shared.gone_before(arrived) {
            return error(Code::UnknownSid);
        }
        if shared.gone.is_cancelled() {
            // Gone while this GET was on its way: it was the pending one.
            return payload(&[Eio::Noop]);
        }
        let mut probing = shared.probing.subscribe();
        let mut probing_now = *probing.borrow_and_update();
        let wait = if probing_now {
            PROBE_NOOP_AFTER
        } else {
            shared.pings.interval
        };
        let mut until = tokio::time::Instant::now() + wait;
        let first = match st.held.take() {
            Some(p) => Some(p),
            None => loop {
                tokio::select! {
                    biased;
                    // engine.io answers the GET pending when the client closes with a noop.
                    _ = shared.gone.cancelled() => return payload(&[Eio::Noop]),
                    p = st.rx.recv() => break p,
                    // The upgrade completed while this GET waited: socket.io-client sends
                    // `5` only once its last poll is answered, so this GET came after `5`
                    // (it overtook it here), and engine.io refuses polling after an upgrade.
                    _ = shared.upgraded.cancelled() => return error(Code::BadRequest),
                    // A probe started: the noop that lets the client pause polling comes
                    // after the reference server's check interval, as engine.io's does (an
                    // upgrade completed meanwhile refuses this GET instead).
                    _ = probing.wait_for(|p| *p), if !probing_now => {
                        probing_now = true;
                        until = tokio::time::Instant::now() + PROBE_NOOP_AFTER;
                    }
                    _ = tokio::time::sleep_until(until) => return payload(&[Eio::Noop]),
                }
            },
        };
        let max = self.ctx.config.socketio.max_payload;
        let mut packets = Vec::new();
        let mut size = 0;
        let mut closed = false;
        match first {
            Some(p) => {
                size += packet_len(&p);
                packets.push(p);
                loop {
                    match st.rx.try_recv() {
                        Ok(p) => {
                            let len = packet_len(&p) + 1;
                            if size + len > max {
                                st.held = Some(p);
                                break;
                            }
                            size += len;
                            packets.push(p);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            None => closed = true,
        }
        drop(st);
        if closed {
            // The session is over: the client learns it from the close packet.
            packets.push(Eio::Close);
            shared.finished.cancel();
        }
        let r = payload(&packets);
        shared.counters.count_out(packets.len() as u64, size as u64);
        r
    }

    /// A long-polling POST: each packet of the body goes into the session as one message.
    pub(super) async fn post(
        &self,
        req: Request<Incoming>,
        shared: &Shared,
    ) -> Response<Full<Bytes>> {
        let max = self.ctx.config.socketio.max_payload;
        let binary = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
        if binary {
            // Engine.IO 4 bodies are text (binary packets are base64).
            shared.kill.cancel();
            return error(Code::BadRequest);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return respond(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new());
        }
        if shared.post_busy.swap(true, Ordering::AcqRel) {
            shared.kill.cancel();
            return error(Code::BadRequest);
        }
        let _busy = Busy(&shared.post_busy);
        shared.heard();
        let write_timeout = self.ctx.write_timeout;
        let collected =
            tokio::time::timeout(write_timeout, Limited::new(req.into_body(), max).collect()).await;
        let body = match collected {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return respond(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new());
            }
            Ok(Err(_)) | Err(_) => {
                shared.kill.cancel();
                return error(Code::BadRequest);
            }
        };
        // Bounded by count as well as bytes: a body of `6\x1e6\x1e…` would otherwise be
        // half a million packets, each a message through the session.
        let max_packets = self.ctx.config.socketio.max_packets_per_post;
        let packets = match engineio::decode_polling(body.clone(), max_packets) {
            Ok(p) => p,
            Err(_) => {
                shared.kill.cancel();
                return error(Code::BadRequest);
            }
        };
        if packets.iter().any(|p| matches!(p, Eio::Close)) {
            // The client closed: its sid goes now, and a waiting GET gets a noop. The close
            // still reaches the session below, which leaves the backend.
            shared.set_gone();
        }
        // Text packets go in as the WebSocket would carry them (`<digit><data>`, a slice of the
        // body); binary ones (`b<base64>`) as binary messages.
        for (part, p) in body.split(|&b| b == 0x1e).zip(packets) {
            let msg = match p {
                Eio::Binary(data) => WsMsg::Binary(data),
                _ => WsMsg::Text(body.slice_ref(part)),
            };
            shared.counters.count_in(1, msg.len() as u64);
            match tokio::time::timeout(write_timeout, shared.inbound.send(Ok(msg))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return error(Code::UnknownSid),
                Err(_) => {
                    shared.kill.cancel();
                    return error(Code::BadRequest);
                }
            }
        }
        let mut r = respond(StatusCode::OK, Bytes::from_static(b"ok"));
        // text/html, as the reference server answers (avoids download dialogs).
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        r
    }
}

/// Bytes a packet takes in a long-polling payload.
pub(super) fn packet_len(p: &Eio) -> usize {
    match p {
        Eio::Open(d) | Eio::Ping(d) | Eio::Pong(d) | Eio::Message(d) => 1 + d.len(),
        Eio::Close | Eio::Upgrade | Eio::Noop => 1,
        Eio::Binary(d) => 1 + d.len().div_ceil(3) * 4,
    }
}

/// The session's inbound stream: client packets, or an error once the transport side kills
/// the session. State lives in the stream, so dropping a `next()` future loses nothing.
fn inbound(rx: mpsc::Receiver<Result<WsMsg, LinkError>>, kill: CancellationToken) -> Inbound {
    Box::pin(futures_util::stream::unfold(
        (rx, kill, false),
        |(mut rx, kill, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                biased;
                _ = kill.cancelled() => Some((
                    Err(LinkError::Transport("engine.io transport error".into())),
                    (rx, kill, true),
                )),
                m = rx.recv() => m.map(|m| (m, (rx, kill, false))),
            }
        },
    ))
}

/// Drains the session's outbound queue into the long-polling buffer until an upgrade hands
/// over a WebSocket, then into the WebSocket. Ending drops the buffer's sender, which the next
/// GET turns into the close packet after whatever is still buffered.
async fn poll_writer(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<LinkOut>,
    poll_tx: mpsc::Sender<Eio>,
    mut hand_over: oneshot::Receiver<WsSink>,
    write_timeout: Duration,
) {
    let mut can_upgrade = true;
    loop {
        let item = tokio::select! {
            biased;
            s = &mut hand_over, if can_upgrade => match s {
                Ok(sink) => return ws_writer(&shared, sink, rx, None, write_timeout).await,
                Err(_) => {
                    can_upgrade = false;
                    continue;
                }
            },
            item = rx.recv() => item,
        };
        let msg = match item {
            Some(LinkOut::Close(c)) => {
                if c.reason == PING_TIMEOUT {
                    shared.set_gone();
                }
                return;
            }
            None => return,
            Some(LinkOut::Barrier(done)) => {
                let _ = done.send(());
                continue;
            }
            // Engine.IO has pings of its own; the session sends none to this link.
            Some(LinkOut::Ping) => continue,
            Some(LinkOut::Final(f)) => {
                let (msgs, c) = *f;
                if c.reason == PING_TIMEOUT {
                    shared.set_gone();
                }
                for m in msgs {
                    if let Ok(p) = engineio::decode_ws(&m) {
                        let _ = poll_tx.try_send(p);
                    }
                }
                return;
            }
            Some(LinkOut::Msg(msg)) => msg,
        };
        let Ok(packet) = engineio::decode_ws(&msg) else {
            continue;
        };
        // A slot in the buffer; a client that does not poll for `write_timeout` is gone.
        let permit = loop {
            tokio::select! {
                biased;
                s = &mut hand_over, if can_upgrade => match s {
                    Ok(sink) => {
                        return ws_writer(&shared, sink, rx, Some(msg), write_timeout).await;
                    }
                    Err(_) => can_upgrade = false,
                },
                p = tokio::time::timeout(write_timeout, poll_tx.reserve()) => break p,
            }
        };
        match permit {
            Ok(Ok(permit)) => permit.send(packet),
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!("long-polling client stopped polling");
                shared.kill.cancel();
                return;
            }
        }
    }
}
