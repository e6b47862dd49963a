//! The client leg, as an `impl Session` block: carrying out what the server role asks
//! (messages toward the client, its close, operations), routing each operation (a first
//! Connect builds the client role and starts the dial, a later one reauthenticates; the rest
//! are translated, then handed to the client role or held while the upstream is dialed), and
//! the two ways a client ends badly: it stops reading, or it sends a message over the limit.
//!
//! Must not touch: wire bytes, the upstream's link (its writes are `up.rs`'s), timers.

use std::time::{Duration, Instant};

use super::link::{LinkOut, Sent};
use super::{Outcome, Session};
use crate::dialect::{ClientOut, Close, ServerOut, WsMsg};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Reply};
use crate::metrics as m;

impl Session {
    /// Queue one message toward the client; a queue that stays full is a slow consumer.
    pub(super) async fn send_down(&mut self, msg: WsMsg) -> bool {
        match self.down.send(msg, self.ctx.write_timeout).await {
            Sent::Queued => {
                self.down_last_send = Instant::now();
                true
            }
            Sent::Full => {
                Box::pin(self.slow_consumer()).await;
                false
            }
            Sent::Gone => {
                self.done.get_or_insert(Outcome::ClientClosed);
                false
            }
        }
    }

    /// Carry out what the server role asked: write to the client, route ops upstream.
    pub(super) async fn apply_server(&mut self, out: ServerOut) {
        self.ctx.metrics.copied(self.server.take_copied());
        for msg in out.to_client {
            if !self.send_down(msg).await {
                return;
            }
        }
        if let Some(c) = out.close {
            let _ = tokio::time::timeout(
                self.ctx.write_timeout,
                self.down.outbound.send(LinkOut::Close(c.clone())),
            )
            .await;
            let outcome = match c.code {
                1000 => Outcome::ClientClosed,
                1001 => Outcome::Shutdown,
                _ => Outcome::ProtocolError,
            };
            self.done.get_or_insert(outcome);
        }
        for op in out.ops {
            self.route_op(op).await;
        }
    }

    async fn route_op(&mut self, op: ClientOp) {
        let started = self.up.is_some()
            || self.dialing.is_some()
            || self.role.is_some()
            || self.hub.is_some();
        let op = match op {
            // A second Connect on an open session is a re-authentication.
            ClientOp::Connect { credentials } if started => ClientOp::Reauth { credentials },
            op => op,
        };
        let op = match op {
            ClientOp::Connect { credentials } if self.ctx.hub.is_some() => {
                return Box::pin(self.attach_hub(credentials)).await;
            }
            op => op,
        };
        if let ClientOp::Connect { mut credentials } = op {
            {
                if credentials.cookie.is_none() {
                    credentials.cookie = self.forward.0.clone();
                }
                if credentials.origin.is_none() {
                    credentials.origin = self.forward.1.clone();
                }
                let role = (self.ctx.new_client)(credentials);
                let dial = role.dial();
                self.role = Some(role);
                // One budget for the whole connect, as the config documents it: what the
                // dial leaves over is what the protocol handshake gets.
                let timeout = Duration::from_millis(self.ctx.config.upstream.connect_timeout_ms);
                self.ready_by = Some(Instant::now() + timeout);
                let dialer = self.ctx.dialer.clone();
                self.dialing = Some(Box::pin(async move { dialer.connect(&dial).await }));
            }
            return;
        }
        let failed_sub = match &op {
            ClientOp::Subscribe { sub, .. } => Some(*sub),
            _ => None,
        };
        let op = match self.translator.down_op(op.clone()) {
            Ok(op) => op,
            Err(e) => {
                m::translation_error(&self.ctx.metrics.route, e.kind.label());
                let ev = match op {
                    ClientOp::Subscribe { sub, .. } => {
                        BackendEvent::SubscribeFailed { sub, reason: e }
                    }
                    ClientOp::Publish {
                        reply: Some(Reply { id, .. }),
                        ..
                    } => BackendEvent::Reply { id, result: Err(e) },
                    _ => BackendEvent::Refused(e),
                };
                let mut out = ServerOut::default();
                self.server.on_backend(ev, Instant::now(), &mut out);
                Box::pin(self.apply_server(out)).await;
                return;
            }
        };
        if self.hub.is_some() {
            return Box::pin(self.hub_op(op)).await;
        }
        match &mut self.up {
            Some(up) => {
                let mut out = ClientOut::default();
                up.role.on_op(op, Instant::now(), &mut out);
                Box::pin(self.apply_client(out)).await;
            }
            None => {
                if let Err(why) = self.pending_ops.push(op) {
                    if let Some(sub) = failed_sub {
                        self.translator.forget(sub);
                    }
                    let mut out = ServerOut::default();
                    self.server.on_upstream_lost(
                        ErrorInfo::new(ErrorKind::Limit, why.to_string()),
                        &mut out,
                    );
                    Box::pin(self.apply_server(out)).await;
                }
            }
        }
    }

    /// The client stopped reading for the write timeout: what is queued toward it is
    /// discarded, it gets its dialect's last words (best-effort), and the backend is left
    /// cleanly.
    pub(super) async fn slow_consumer(&mut self) {
        if self.done.is_some() {
            return;
        }
        self.done = Some(Outcome::SlowConsumer);
        self.down.stalled.cancel();
        tracing::info!(route = %self.ctx.metrics.route, "slow consumer: client stopped reading");
        let mut out = ServerOut::default();
        self.server.on_slow_consumer(&mut out);
        let close = out
            .close
            .unwrap_or_else(|| Close::new(1008, "slow consumer"));
        // The writer is discarding, so the queue drains; bounded all the same.
        let _ = tokio::time::timeout(
            self.ctx.write_timeout,
            self.down
                .outbound
                .send(LinkOut::Final(out.to_client, close)),
        )
        .await;
        self.leave_upstream().await;
    }

    /// The client sent a message over the size limit (`limits.max_message_size`, or a
    /// Socket.IO route's `max_payload`): its role tells it and closes with 1009.
    pub(super) async fn client_too_big(&mut self, size: usize, max: usize) {
        let reason = ErrorInfo::new(
            ErrorKind::Limit,
            format!("message of {size} bytes exceeds the limit of {max} bytes"),
        );
        let mut out = ServerOut::default();
        self.server.on_too_big(reason, &mut out);
        self.apply_server(out).await;
        // The client cannot go on (the rest of its message is unread).
        self.leave_upstream().await;
        self.done.get_or_insert(Outcome::ProtocolError);
    }
}
