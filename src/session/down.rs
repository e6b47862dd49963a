//! The client leg, as an `impl Session` block: carrying out what the server role asks
//! (messages toward the client, its close, operations), routing each operation (a first
//! Connect builds the client role and starts the dial, a later one reauthenticates; the rest
//! are translated, then handed to the client role or held while the upstream is dialed), the
//! two ways a client ends badly: it stops reading, or it sends a message over the limit, and
//! the refusals of the route's client limits (a session refused before it starts, a message
//! over the client's rate) with the link-level care they need.
//!
//! Must not touch: wire bytes, the upstream's link (its writes are `up.rs`'s), timers.

use std::time::{Duration, Instant};

use super::link::{Link, Sent};
use super::{Outcome, Session};
use crate::admission::Reason;
use crate::dialect::{ClientOut, Close, Msgs, Refusal, ServerOut, WsMsg};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Reply};
use crate::metrics as m;

/// How long a refused client that speaks first is given to say its first frame (clients send
/// it as soon as the socket is open), and then to answer the refusal's close.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

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
        let ops = self.apply_server_writes(out).await;
        for op in ops {
            self.route_op(op).await;
        }
    }

    /// The writes (and close) the server role asked for; its operations are handed back, to
    /// be routed (none once the client is gone). Apart from [`Session::apply_server`] so that
    /// delivering backend events, which rarely leads to operations, does not carry routing
    /// inline (routing leads to deliveries: one of the two must be boxed).
    pub(super) async fn apply_server_writes(&mut self, out: ServerOut) -> Vec<ClientOp> {
        self.copied.add(self.server.take_copied());
        for msg in out.to_client {
            if !self.send_down(msg).await {
                return Vec::new();
            }
        }
        if let Some(c) = out.close {
            self.down.close(c.clone());
            let outcome = match c.code {
                1000 => Outcome::ClientClosed,
                1001 => Outcome::Shutdown,
                _ => Outcome::ProtocolError,
            };
            self.done.get_or_insert(outcome);
        }
        out.ops
    }

    /// Route operations one at a time (boxed by callers off the client's message path).
    pub(super) async fn route_ops(&mut self, ops: Vec<ClientOp>) {
        for op in ops {
            self.route_op(op).await;
        }
    }

    /// Route one operation. An operation on a session whose upstream is up (nearly every
    /// client message) is translated and handed to the client role (or the hub) in place;
    /// everything else (connects, re-authentication, joins under edge authentication, a dial
    /// in progress) is boxed: handlers are boxed per event, and what is inline here is
    /// copied into that box for every message.
    async fn route_op(&mut self, op: ClientOp) {
        if !self.routes_in_place(&op) {
            return Box::pin(self.route_op_slow(op)).await;
        }
        match self.translate_op(op) {
            Ok(op) if self.hub.is_some() => Box::pin(self.hub_op(op)).await,
            Ok(op) => {
                let mut out = ClientOut::default();
                if let Some(up) = &mut self.up {
                    up.role.on_op(op, Instant::now(), &mut out);
                }
                self.apply_client(out).await;
            }
            Err(refused) => Box::pin(self.apply_server(refused)).await,
        }
    }

    /// Whether `op` only needs translating and handing to an upstream that is up (or the
    /// hub): not a connect or re-authentication, not a join edge authentication checks.
    pub(super) fn routes_in_place(&self, op: &ClientOp) -> bool {
        (self.up.is_some() || self.hub.is_some())
            && match op {
                ClientOp::Connect { .. } | ClientOp::Reauth { .. } => false,
                ClientOp::Join { .. } => self.ctx.auth.is_none(),
                _ => true,
            }
    }

    /// An operation in the upstream's naming, or what the server role says to the client
    /// when the translator refuses it (nothing goes upstream).
    pub(super) fn translate_op(&mut self, op: ClientOp) -> Result<ClientOp, ServerOut> {
        // What a refusal names, taken before the operation is handed over.
        let refusal = match &op {
            ClientOp::Subscribe { sub, .. } => Some(Ok(*sub)),
            ClientOp::Publish {
                reply: Some(Reply { id, .. }),
                ..
            } => Some(Err(*id)),
            _ => None,
        };
        self.translator.down_op(op).map_err(|e| {
            m::translation_error(&self.ctx.metrics.route, e.kind.label());
            let ev = match refusal {
                Some(Ok(sub)) => BackendEvent::SubscribeFailed { sub, reason: e },
                Some(Err(id)) => BackendEvent::Reply { id, result: Err(e) },
                None => BackendEvent::Refused(e),
            };
            let mut out = ServerOut::default();
            self.server.on_backend(ev, Instant::now(), &mut out);
            out
        })
    }

    async fn route_op_slow(&mut self, op: ClientOp) {
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
            // The client was refused at its Connect: the join behind it has no session.
            ClientOp::Join { .. } if self.done == Some(Outcome::Unauthorized) => return,
            ClientOp::Join { scope, auth } if self.ctx.auth.is_some() => {
                match self.authenticate_scope(auth) {
                    Ok(auth) => ClientOp::Join { scope, auth },
                    Err(why) => {
                        let refused = BackendEvent::JoinFailed {
                            scope,
                            data: Some(why),
                        };
                        let mut out = ServerOut::default();
                        self.server.on_backend(refused, Instant::now(), &mut out);
                        return Box::pin(self.apply_server(out)).await;
                    }
                }
            }
            op => op,
        };
        let op = match op {
            // The hub is in process, but edge authentication comes first all the same: the
            // verified identity is what it authorizes private and presence channels with.
            ClientOp::Connect { mut credentials } if self.ctx.hub.is_some() => {
                if let Err(why) = self.authenticate(&mut credentials) {
                    return self.refuse_client(why).await;
                }
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
                // Edge authentication comes before the client role exists: a refused client
                // never makes the proxy dial its backend.
                if let Err(why) = self.authenticate(&mut credentials) {
                    return self.refuse_client(why).await;
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
        let op = match op {
            ClientOp::Reauth { mut credentials } => {
                if let Err(why) = self.authenticate(&mut credentials) {
                    // The session stays as it was, as when a backend refuses it.
                    let mut out = ServerOut::default();
                    self.server.on_backend(
                        BackendEvent::Refused(ErrorInfo::new(
                            ErrorKind::Unauthorized,
                            why.to_string(),
                        )),
                        Instant::now(),
                        &mut out,
                    );
                    return Box::pin(self.apply_server(out)).await;
                }
                ClientOp::Reauth { credentials }
            }
            op => op,
        };
        let failed_sub = match &op {
            ClientOp::Subscribe { sub, .. } => Some(*sub),
            _ => None,
        };
        let op = match self.translate_op(op) {
            Ok(op) => op,
            Err(refused) => return Box::pin(self.apply_server(refused)).await,
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
                let held = self.pending_ops.push(op);
                self.copied.add(self.pending_ops.take_copied());
                if let Err(why) = held {
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
    /// discarded, the backend is left cleanly, and the client gets its dialect's last words
    /// (best-effort).
    pub(super) async fn slow_consumer(&mut self) {
        if self.done.is_some() {
            return;
        }
        self.done = Some(Outcome::SlowConsumer);
        self.down.stall_now();
        tracing::info!(route = %self.ctx.metrics.route, "slow consumer: client stopped reading");
        let mut out = ServerOut::default();
        self.server.on_slow_consumer(&mut out);
        let close = out
            .close
            .unwrap_or_else(|| Close::new(1008, "slow consumer"));
        // The backend first: the last words may wait (a second at most) for a client that
        // shows it does not read, and the backend need not wait with it.
        self.leave_upstream().await;
        self.down
            .last_words(out.to_client, close, self.ctx.write_timeout)
            .await;
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

    /// Verify the client's token when the route has `[route.auth]`, setting its verified
    /// identity; a refusal is counted and logged here, once, by reason (never the token).
    fn authenticate(
        &mut self,
        credentials: &mut crate::frame::Credentials,
    ) -> Result<(), crate::auth::Refusal> {
        let Some(auth) = &self.ctx.auth else {
            // Only a verifier sets an identity; a role's credentials never carry one in.
            credentials.identity = None;
            return Ok(());
        };
        let token = auth.token_of(credentials);
        auth.admit(credentials)
            .inspect(|()| self.verified_token = token)
            .inspect_err(|why| {
                m::auth_failed(&self.ctx.metrics.route, why.label());
                tracing::info!(
                    route = %self.ctx.metrics.route,
                    reason = why.label(),
                    "client refused by edge authentication"
                );
            })
    }

    /// Verify one more scope's own auth (a namespace CONNECT on a route whose legs keep
    /// packet shapes) as a Connect's: its token, else the session's verified one. Returns the
    /// auth the backend gets, or the refusal (raw JSON) the client hears in that scope.
    fn authenticate_scope(
        &mut self,
        auth: Option<bytes::Bytes>,
    ) -> Result<Option<bytes::Bytes>, bytes::Bytes> {
        let Some(verifier) = &self.ctx.auth else {
            return Ok(auth);
        };
        let base = crate::frame::Credentials {
            token: self.verified_token.clone(),
            cookie: self.forward.0.clone(),
            ..Default::default()
        };
        verifier.admit_scope(auth.as_ref(), &base).map_err(|why| {
            m::auth_failed(&self.ctx.metrics.route, why.label());
            tracing::info!(
                route = %self.ctx.metrics.route,
                reason = why.label(),
                "scope refused by edge authentication"
            );
            bytes::Bytes::from(serde_json::json!({ "message": why.to_string() }).to_string())
        })
    }

    /// A client whose Connect failed edge authentication: its server role refuses it as its
    /// dialect refuses credentials (STOMP ERROR, Socket.IO `44`, Pusher 4009, SocketCluster
    /// 4008, Action Cable `unauthorized`), and the session ends. Nothing was dialed.
    async fn refuse_client(&mut self, why: crate::auth::Refusal) {
        let mut out = ServerOut::default();
        self.server.on_backend(
            BackendEvent::Error(ErrorInfo::new(ErrorKind::Unauthorized, why.to_string())),
            Instant::now(),
            &mut out,
        );
        // A role that has no words for it still must not keep the client.
        out.close
            .get_or_insert_with(|| Close::new(1008, "unauthorized"));
        self.done.get_or_insert(Outcome::Unauthorized);
        Box::pin(self.apply_server(out)).await;
    }
    /// The route's client limits refuse the session before it starts: its role says so in
    /// its dialect (nothing goes upstream), and the client is closed.
    pub(super) async fn refuse(mut self, reason: Reason) {
        let route = self.ctx.metrics.route.clone();
        m::limit_refused(&route, reason.label());
        tracing::debug!(route = %route, reason = reason.label(), "session refused by client limits");
        let mut out = ServerOut::default();
        self.server.on_refused(
            Refusal::Busy,
            ErrorInfo::new(ErrorKind::Limit, reason.message()),
            &mut out,
        );
        out.ops.clear();
        let close = out
            .close
            .take()
            .unwrap_or_else(|| Refusal::Busy.close(&ErrorInfo::new(ErrorKind::Limit, "")));
        let limit = self.ctx.write_timeout.min(Duration::from_secs(2));
        let waits = !self.ctx.client_spec.caps.speaks_first;
        refuse_link(&mut self.down, waits, out.to_client, close, limit).await;
        self.ctx.metrics.session_ended(Outcome::Refused.label());
    }

    /// A client message over its rate: dropped unread; the role answers in its dialect, and
    /// when that answer is a close the session ends (and leaves the backend).
    pub(super) async fn over_rate(&mut self, reason: Reason) {
        m::limit_refused(&self.ctx.metrics.route, reason.label());
        let mut out = ServerOut::default();
        self.server.on_refused(
            Refusal::Rate,
            ErrorInfo::new(ErrorKind::Limit, reason.message()),
            &mut out,
        );
        out.ops.clear();
        let closing = out.close.is_some();
        if closing {
            self.done.get_or_insert(Outcome::Refused);
        }
        self.apply_server(out).await;
        if closing {
            self.leave_upstream().await;
            await_close(&mut self.down).await;
        }
    }
}

/// Refuse a client on its link: when its dialect has the client speak first (STOMP CONNECT,
/// SocketCluster #handshake), wait for that frame so the refusal answers it rather than racing
/// it (a library that sends its first frame after the close arrived reports a close without
/// status, not the refusal); write `msgs` and `close`; wait for the client's close; let the
/// writer finish. Bounded throughout: a client that does not read its refusal is closed all
/// the same.
pub(super) async fn refuse_link(
    down: &mut Link,
    waits_for_client: bool,
    msgs: Msgs,
    close: Close,
    limit: Duration,
) {
    if waits_for_client {
        let _ = tokio::time::timeout(REFUSAL_WAIT, down.recv()).await;
    }
    down.last_words(msgs, close, limit).await;
    await_close(down).await;
    down.finish(None, limit).await;
}

/// After a refusal's close: read (and drop) what the client still sends until its close
/// answers ours, within [`REFUSAL_WAIT`]. A socket dropped with unread input is reset, and the
/// reset can destroy the close frame before the client library reads it: it would report
/// 1006 instead of the refusal.
pub(super) async fn await_close(down: &mut Link) {
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        // The close (queued by the role) goes out first.
        down.drain(REFUSAL_WAIT).await;
        while let Some(Ok(_)) = down.recv().await {}
    })
    .await;
}
