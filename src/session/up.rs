//! The upstream leg, as an `impl Session` block: a finished dial (the client role starts and
//! gets the operations held meanwhile), a protocol handshake past the connect deadline, losing
//! the backend or leaving it when the client goes, the client role's authorization POSTs, and
//! carrying out what the client role asks: messages toward the backend (a confirmation waits
//! until the frame it confirms is flushed), its close, and its events, translated and handed
//! to the server role one at a time.
//!
//! Must not touch: wire bytes, the client's link (everything toward the client goes through
//! the server role and `apply_server`), timers.

use std::time::{Duration, Instant};

use super::link::Sent;
use super::{MAX_AUTHORIZING, Outcome, Session, Up};
use crate::dialect::{ClientOut, ServerOut};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind};
use crate::metrics as m;
use crate::upstream::UpstreamError;
use crate::websocket::Socket;

impl Session {
    pub(super) async fn on_dialed(&mut self, r: Result<Socket, UpstreamError>) {
        self.dialing = None;
        match (r, self.role.take()) {
            (Ok(ws), Some(role)) => {
                let link = super::leg_link(ws, &self.ctx, self.up_counters.clone());
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
                // Set first: the role's close code would otherwise read as a protocol error.
                self.done.get_or_insert(Outcome::UpstreamUnavailable);
                let mut out = ServerOut::default();
                self.server
                    .on_upstream_lost(ErrorInfo::new(kind, e.to_string()), &mut out);
                self.apply_server(out).await;
            }
        }
    }

    /// The upstream WebSocket is open but the backend did not finish its protocol handshake
    /// (Engine.IO open, Socket.IO CONNECT reply, STOMP CONNECTED) within the connect timeout.
    pub(super) async fn handshake_timed_out(&mut self) {
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

    pub(super) async fn upstream_lost(&mut self, reason: ErrorInfo) {
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
        // Set before the role's close, whose code would otherwise read as a protocol error.
        self.done.get_or_insert(Outcome::UpstreamLost);
        let mut sout = ServerOut::default();
        self.server.on_upstream_lost(reason, &mut sout);
        self.apply_server(sout).await;
    }

    /// The client is gone or going: leave the backend as a client that disconnects would.
    pub(super) async fn leave_upstream(&mut self) {
        // Leaving the hub is dropping the attachment (presence and counts updated at once).
        self.hub = None;
        if let Some(up) = &mut self.up {
            let mut out = ClientOut::default();
            up.role
                .on_op(ClientOp::Disconnect, Instant::now(), &mut out);
            self.apply_client(out).await;
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
    pub(super) async fn apply_client(&mut self, mut out: ClientOut) {
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
        self.copied.add(up.role.take_copied());
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
        // The waits below are boxed: this runs for every message, inline in its handler's
        // box, and a queue with room, no confirmation and no close waits for nothing.
        if alive && wrote && confirms {
            alive = Box::pin(up.link.drain(self.ctx.write_timeout)).await;
        }
        if let Some(c) = out.close
            && let Some(mut up) = self.up.take()
        {
            Box::pin(up.link.finish(Some(c), Duration::from_millis(500))).await;
        }
        self.deliver_events(out.events).await;
        if !alive {
            Box::pin(self.upstream_lost(ErrorInfo::new(
                ErrorKind::Unavailable,
                "backend connection failed",
            )))
            .await;
        }
    }

    /// Hand backend events to the server role one at a time, each written (within the
    /// client's queue budget) before the next is encoded: one backend message that many
    /// subscriptions match never turns into all its copies encoded at once.
    pub(super) async fn deliver_events(&mut self, events: Vec<BackendEvent>) {
        for ev in events {
            let mut translated = Vec::new();
            self.translate_event(ev, &mut translated);
            if !self.deliver_translated(translated).await {
                return;
            }
        }
    }

    /// One backend event in the client's naming, into `into`: none for an event dropped (it
    /// is counted, and the client never told), several for one that many subscriptions match.
    pub(super) fn translate_event(&mut self, ev: BackendEvent, into: &mut Vec<BackendEvent>) {
        if let BackendEvent::Dropped(e) = &ev {
            m::translation_error(&self.ctx.metrics.route, e.kind.label());
            tracing::debug!(route = %self.ctx.metrics.route, reason = %String::from_utf8_lossy(&e.message), "backend event dropped");
            return;
        }
        self.translator.up_event(ev, into);
    }

    /// Hand translated events to the server role one at a time; `false` once the session is
    /// done (what is left is dropped).
    pub(super) async fn deliver_translated(&mut self, events: Vec<BackendEvent>) -> bool {
        for ev in events {
            if self.done.is_some() {
                return false;
            }
            let ends = backend_ended(&ev);
            let mut out = ServerOut::default();
            self.server.on_backend(ev, Instant::now(), &mut out);
            self.note_backend_end(ends, &out);
            let ops = self.apply_server_writes(out).await;
            if !ops.is_empty() {
                Box::pin(self.route_ops(ops)).await;
            }
        }
        true
    }
}

/// How a session ends when the backend's event makes the server role close the client: the
/// backend's doing, whatever code the role tells its client with (a Pusher 4200, a
/// Socket.IO kick's 1000, a STOMP ERROR's close).
pub(super) fn backend_ended(ev: &BackendEvent) -> Option<Outcome> {
    match ev {
        BackendEvent::Error(e) if e.kind == ErrorKind::Unauthorized => Some(Outcome::Unauthorized),
        BackendEvent::Error(_) | BackendEvent::Closing { .. } => Some(Outcome::UpstreamLost),
        _ => None,
    }
}

impl Session {
    /// Records the outcome [`backend_ended`] gave when the role closes the client for it.
    pub(super) fn note_backend_end(&mut self, ends: Option<Outcome>, out: &ServerOut) {
        if let Some(o) = ends
            && out.close.is_some()
        {
            self.done.get_or_insert(o);
        }
    }
}
