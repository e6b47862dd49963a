//! The hub leg, as an `impl Session` block: a route whose upstream is the embedded hub
//! attaches to it in process when the client connects (no dial, no client role, no wire),
//! hands it the translated operations, and writes what it delivers through the server role,
//! one encoding per (route, shape) of a message shared by every session that receives it.
//!
//! Must not touch: wire bytes, the hub's state (its own, behind [`crate::hub::Conn`]).

use std::sync::Arc;
use std::time::Instant;

use super::Session;
use crate::dialect::ServerOut;
use crate::frame::{BackendEvent, ClientOp, Credentials};
use crate::hub::{Attach, HubMessage};

/// A hub connection's queue holds this many times `limits.queue_depth` deliveries.
const HUB_QUEUE_FACTOR: usize = 4;

impl Session {
    /// The client connected: attach to the hub, which is ready at once.
    pub(super) async fn attach_hub(&mut self, credentials: Credentials) {
        let Some(hub) = &self.ctx.hub else { return };
        let caps = self.ctx.client_spec.caps;
        let attach = Attach {
            echo: caps.echoes_sender,
            // Clients that cannot subscribe on their wire hear every channel (`io.emit`).
            everything: caps.events_without_subscribe && !caps.client_subscriptions,
            // Deliveries wait here before the client's own queue; a burst of publishes gets
            // room beyond it before this client counts as a slow consumer.
            depth: self.ctx.queue_depth.saturating_mul(HUB_QUEUE_FACTOR),
            // As the client's own queue's byte bound: deliveries share their message, but one
            // this client has not taken keeps it alive.
            bytes: self.ctx.queue_bytes,
        };
        self.hub = Some(hub.attach(attach, credentials.identity.clone()));
        self.deliver_events(vec![BackendEvent::Ready { session: None }])
            .await;
        let held: Vec<ClientOp> = self.pending_ops.drain().collect();
        for op in held {
            Box::pin(self.hub_op(op)).await;
        }
    }

    /// An operation for the hub (already translated); the events it comes to go to the
    /// client.
    pub(super) async fn hub_op(&mut self, op: ClientOp) {
        let mut events = Vec::new();
        if let Some(conn) = &mut self.hub {
            conn.op(op, &mut events);
        }
        self.deliver_events(events).await;
    }

    /// A hub message's translations, each encoded through the shared cache and written
    /// before the next.
    pub(super) async fn deliver_hub(
        &mut self,
        msg: Arc<HubMessage>,
        translated: Vec<BackendEvent>,
    ) {
        let route = self.route_key();
        for ev in translated {
            if self.done.is_some() {
                return;
            }
            let mut out = ServerOut::default();
            msg.encoded(route, self.server.as_mut(), ev, Instant::now(), &mut out);
            self.apply_server(out).await;
        }
    }

    /// This session's route, as the hub's encoding cache tells routes apart.
    pub(super) fn route_key(&self) -> usize {
        Arc::as_ptr(&self.ctx) as usize
    }
}
