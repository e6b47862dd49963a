//! The session's timers, as an `impl Session` block: when the pump wakes next (the earliest
//! keepalive, liveness, expiry or connect deadline of either leg), and what a tick does:
//! heartbeats, WebSocket pings on legs without a heartbeat of their own, giving up on a silent
//! peer, expiring correlation tables, and the upstream's connect deadline.
//!
//! Must not touch: the `select!` loop (`mod.rs`), wire bytes. What a tick decides is carried
//! out by `apply_server` and `apply_client`, as any other effect.

use std::time::Instant;

use super::{EXPIRE_TICK, Outcome, Session};
use crate::dialect::{ClientOut, Close, ServerOut};
use crate::frame::{BackendEvent, ErrorInfo, ErrorKind};

impl Session {
    /// When a leg without a heartbeat of its own is pinged (`since` + idle) or given up
    /// (`since` + twice idle, once pinged).
    fn liveness(&self, has_heartbeat: bool, since: Instant, pinged: bool) -> Option<Instant> {
        let idle = self.ctx.idle_ping.filter(|_| !has_heartbeat)?;
        Some(since + if pinged { idle * 2 } else { idle })
    }

    /// The next tick: expiry comes every [`EXPIRE_TICK`] at the latest, so no clock read is
    /// needed to bound it.
    pub(super) fn deadline(&self) -> Instant {
        let mut d = self.last_expire + EXPIRE_TICK;
        let k = self.server.keepalive();
        if let Some(e) = k.send_every {
            d = d.min(
                if k.periodic {
                    self.down_last_hb
                } else {
                    self.down_last_send
                } + e,
            );
        }
        if let Some(e) = k.expect_within {
            d = d.min(self.down_last_recv + e);
        }
        if let Some(l) = self.liveness(
            k.expect_within.is_some(),
            self.down_last_recv,
            self.down_pinged,
        ) {
            d = d.min(l);
        }
        if let Some(up) = &self.up {
            let k = up.role.keepalive();
            if let Some(e) = k.send_every {
                d = d.min(up.last_send + e);
            }
            if let Some(e) = k.expect_within {
                d = d.min(up.last_recv + e);
            }
            if let Some(l) = self.liveness(k.expect_within.is_some(), up.last_recv, up.pinged) {
                d = d.min(l);
            }
            if let Some(r) = self.ready_by {
                d = d.min(r);
            }
        }
        d
    }

    pub(super) async fn on_tick(&mut self) {
        let now = Instant::now();
        if self.down.take_heard() {
            self.down_last_recv = now;
            self.down_pinged = false;
        }
        if let Some(up) = &mut self.up
            && up.link.take_heard()
        {
            up.last_recv = now;
            up.pinged = false;
        }
        let k = self.server.keepalive();
        if k.expect_within
            .is_some_and(|e| now >= self.down_last_recv + e)
        {
            // Set first: the role's close code would otherwise read as a protocol error.
            self.done.get_or_insert(Outcome::Timeout);
            let mut out = ServerOut::default();
            self.server.on_peer_silent(&mut out);
            self.apply_server(out).await;
            return;
        }
        if let Some(at) = self.liveness(
            k.expect_within.is_some(),
            self.down_last_recv,
            self.down_pinged,
        ) && now >= at
        {
            if self.down_pinged {
                // No pong for twice the idle time: a half-open connection.
                self.done.get_or_insert(Outcome::Timeout);
                let mut out = ServerOut::default();
                self.server.on_peer_silent(&mut out);
                if out.close.is_none() {
                    out.close = Some(Close::new(1001, "peer not responding"));
                }
                self.apply_server(out).await;
                return;
            }
            self.down_pinged = true;
            self.down.ping();
        }
        let since = if k.periodic {
            self.down_last_hb
        } else {
            self.down_last_send
        };
        if k.send_every.is_some_and(|e| now >= since + e) {
            self.down_last_hb = now;
            self.down_last_send = now;
            if let Some(hb) = self.server.heartbeat() {
                self.send_down(hb).await;
            }
        }
        let expire = now >= self.last_expire + EXPIRE_TICK;
        if expire {
            self.last_expire = now;
            self.down.flush_counts();
            if let Some(up) = &mut self.up {
                up.link.flush_counts();
            }
            self.ctx.metrics.copied(std::mem::take(&mut self.copied));
            let mut out = ServerOut::default();
            self.server.expire(now, &mut out);
            self.apply_server(out).await;
        }
        if self.up.is_some() && self.ready_by.is_some_and(|r| now >= r) {
            return self.handshake_timed_out().await;
        }
        let idle = self.ctx.idle_ping;
        let Some(up) = &mut self.up else { return };
        let k = up.role.keepalive();
        let mut out = ClientOut::default();
        let unpinged = idle
            .filter(|_| k.expect_within.is_none())
            .map(|i| (up.last_recv + if up.pinged { i * 2 } else { i }, up.pinged));
        if k.expect_within.is_some_and(|e| now >= up.last_recv + e)
            || matches!(unpinged, Some((at, true)) if now >= at)
        {
            up.role.on_peer_silent(&mut out);
            if out.close.is_none() && out.events.is_empty() {
                out.events.push(BackendEvent::Error(ErrorInfo::new(
                    ErrorKind::Unavailable,
                    "backend not responding",
                )));
                out.close = Some(Close::new(1001, "peer not responding"));
            }
        } else {
            if matches!(unpinged, Some((at, false)) if now >= at) {
                up.pinged = true;
                up.link.ping();
            }
            if k.send_every.is_some_and(|e| now >= up.last_send + e) {
                if let Some(hb) = up.role.heartbeat() {
                    out.to_backend.push(hb);
                } else {
                    up.last_send = now;
                }
            }
        }
        if expire {
            up.role.expire(now, &mut out);
        }
        self.apply_client(out).await;
    }
}
