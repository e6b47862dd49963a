//! The session's synchronous path, as an `impl Session` block: what a message from either
//! peer (or a delivery from the embedded hub) leads to when nothing on the way has to wait (the queues it writes to have room, no
//! confirmation waits for a flush, no close, dial, authorization or refusal is involved).
//! That is nearly every message, and it then costs no future at all: the async handlers are
//! boxed per event (an idle session's task must stay small), and a box, with the handler's
//! whole state copied into it, per message was a measurable part of the proxy's CPU.
//!
//! The rule that keeps this equal to the async handlers: a step is taken here only when it is
//! known beforehand that it completes without waiting (a role's output is looked at before
//! anything of it is carried out), and at the first step that is not, that step and
//! everything after it, in order, becomes [`Rest`] for the async handlers (`down.rs`,
//! `up.rs`), which carry it out exactly as they would have.
//!
//! Must not touch: wire bytes, timers, the `select!` loop. Everything written here goes
//! through the links' queues, as from the async handlers.

use std::sync::Arc;
use std::time::Instant;

use super::up::backend_ended;
use super::{Ev, Session};
use crate::admission::Reason;
use crate::dialect::{ClientOut, ServerOut};
use crate::frame::{BackendEvent, ClientOp};
use crate::hub::{Delivery, HubMessage};

/// What is left, in order, once the synchronous path met a step that may wait.
pub(super) enum Rest {
    /// The client sent a message over its rate.
    OverRate(Reason),
    /// The server role's output, not yet begun.
    Server(ServerOut),
    /// Operations not yet routed.
    Ops(Vec<ClientOp>),
    /// The client role's output, not yet begun.
    Client(ClientOut),
    /// Backend events, not yet translated.
    Events(Vec<BackendEvent>),
    /// Backend events already translated, not yet handed to the server role.
    Translated(Vec<BackendEvent>),
    /// A hub message's translations not yet encoded.
    Hub(Arc<HubMessage>, Vec<BackendEvent>),
}

impl Session {
    /// A message from either peer or a hub delivery, handled without waiting as far as that
    /// goes; what is left is in `rest`. Any other event is given back (`Some`).
    ///
    /// The clock is read once per event: every step it leads to happens within
    /// microseconds, and a clock read per step was several per message.
    pub(super) fn on_event_now(&mut self, ev: Ev, rest: &mut Vec<Rest>) -> Option<Ev> {
        let now = Instant::now();
        match ev {
            Ev::Down(Some(Ok(msg))) => {
                self.down_last_recv = now;
                self.down_pinged = false;
                if let Err(reason) = self.rate.check(msg.len()) {
                    rest.push(Rest::OverRate(reason));
                    return None;
                }
                let mut out = ServerOut::default();
                self.server.on_client(msg, now, &mut out);
                self.apply_server_now(out, now, rest);
                None
            }
            Ev::Up(Some(Ok(msg))) => {
                let mut out = ClientOut::default();
                if let Some(up) = &mut self.up {
                    up.last_recv = now;
                    up.pinged = false;
                    up.role.on_backend(msg, now, &mut out);
                }
                self.apply_client_now(out, now, rest);
                None
            }
            Ev::Hub(Some(Delivery::Event(ev))) => {
                self.deliver_events_now(vec![ev], now, rest);
                None
            }
            Ev::Hub(Some(Delivery::Message(msg, sub))) => {
                let mut translated = Vec::new();
                self.translator
                    .up_event(msg.event_for(sub), &mut translated);
                self.deliver_hub_now(msg, translated, now, rest);
                None
            }
            Ev::Room => None,
            ev => Some(ev),
        }
    }

    /// Carry out what is left, in order, with the async handlers.
    pub(super) async fn resume(&mut self, rest: Vec<Rest>) {
        for r in rest {
            match r {
                Rest::OverRate(reason) => self.over_rate(reason).await,
                Rest::Server(out) => self.apply_server(out).await,
                Rest::Ops(ops) => self.route_ops(ops).await,
                Rest::Client(out) => self.apply_client(out).await,
                Rest::Events(events) => self.deliver_events(events).await,
                Rest::Translated(events) => {
                    self.deliver_translated(events).await;
                }
                Rest::Hub(msg, events) => self.deliver_hub(msg, events).await,
            }
        }
    }

    /// [`Session::apply_server`] when its writes all fit and it does not close; `false`
    /// once something is left in `rest`.
    fn apply_server_now(&mut self, out: ServerOut, now: Instant, rest: &mut Vec<Rest>) -> bool {
        if out.close.is_some() || !self.down.takes_now(&out.to_client) {
            rest.push(Rest::Server(out));
            return false;
        }
        self.copied.add(self.server.take_copied());
        if !out.to_client.is_empty() {
            for msg in out.to_client {
                self.down.push(msg);
            }
            self.down_last_send = now;
        }
        self.route_ops_now(out.ops, now, rest)
    }

    fn route_ops_now(&mut self, ops: Vec<ClientOp>, now: Instant, rest: &mut Vec<Rest>) -> bool {
        let mut ops = ops.into_iter();
        while let Some(op) = ops.next() {
            if !self.route_op_now(op, now, rest) {
                let left: Vec<ClientOp> = ops.collect();
                if !left.is_empty() {
                    rest.push(Rest::Ops(left));
                }
                return false;
            }
        }
        true
    }

    /// [`Session::route_op`] for an operation routed in place.
    fn route_op_now(&mut self, op: ClientOp, now: Instant, rest: &mut Vec<Rest>) -> bool {
        if !self.routes_in_place(&op) {
            rest.push(Rest::Ops(vec![op]));
            return false;
        }
        match self.translate_op(op) {
            Ok(op) if self.hub.is_some() => {
                let mut events = Vec::new();
                if let Some(conn) = &mut self.hub {
                    conn.op(op, &mut events);
                }
                self.deliver_events_now(events, now, rest)
            }
            Ok(op) => {
                let mut out = ClientOut::default();
                if let Some(up) = &mut self.up {
                    up.role.on_op(op, now, &mut out);
                }
                self.apply_client_now(out, now, rest)
            }
            Err(refused) => {
                rest.push(Rest::Server(refused));
                false
            }
        }
    }

    /// [`Session::apply_client`] when it asks no authorization, does not close, confirms
    /// nothing it writes (a confirmation waits for the flush) and its writes all fit.
    fn apply_client_now(&mut self, out: ClientOut, now: Instant, rest: &mut Vec<Rest>) -> bool {
        let confirms = || {
            out.events
                .iter()
                .any(|e| matches!(e, BackendEvent::Reply { result: Ok(_), .. }))
        };
        let Some(up) = &mut self.up else {
            rest.push(Rest::Client(out));
            return false;
        };
        if !out.authorize.is_empty()
            || out.close.is_some()
            || !up.link.takes_now(&out.to_backend)
            || (!out.to_backend.is_empty() && confirms())
        {
            rest.push(Rest::Client(out));
            return false;
        }
        if out
            .events
            .iter()
            .any(|e| matches!(e, BackendEvent::Ready { .. }))
        {
            self.ready_by = None;
        }
        self.copied.add(up.role.take_copied());
        if !out.to_backend.is_empty() {
            for msg in out.to_backend {
                up.link.push(msg);
            }
            up.last_send = now;
        }
        self.deliver_events_now(out.events, now, rest)
    }

    /// [`Session::deliver_events`], each event's writes queued before the next is encoded.
    fn deliver_events_now(
        &mut self,
        events: Vec<BackendEvent>,
        now: Instant,
        rest: &mut Vec<Rest>,
    ) -> bool {
        let mut events = events.into_iter();
        while let Some(ev) = events.next() {
            let mut translated = Vec::new();
            self.translate_event(ev, &mut translated);
            let mut translated = translated.into_iter();
            while let Some(ev) = translated.next() {
                if self.done.is_some() {
                    // As the async path: what is left to deliver is dropped.
                    return true;
                }
                let ends = backend_ended(&ev);
                let mut out = ServerOut::default();
                self.server.on_backend(ev, now, &mut out);
                self.note_backend_end(ends, &out);
                if !self.apply_server_now(out, now, rest) {
                    let left: Vec<BackendEvent> = translated.collect();
                    if !left.is_empty() {
                        rest.push(Rest::Translated(left));
                    }
                    let left: Vec<BackendEvent> = events.collect();
                    if !left.is_empty() {
                        rest.push(Rest::Events(left));
                    }
                    return false;
                }
            }
        }
        true
    }

    /// [`Session::deliver_hub`]: each translation encoded through the shared cache.
    fn deliver_hub_now(
        &mut self,
        msg: Arc<HubMessage>,
        translated: Vec<BackendEvent>,
        now: Instant,
        rest: &mut Vec<Rest>,
    ) -> bool {
        let route = self.route_key();
        let mut translated = translated.into_iter();
        while let Some(ev) = translated.next() {
            if self.done.is_some() {
                return true;
            }
            let mut out = ServerOut::default();
            msg.encoded(route, self.server.as_mut(), ev, now, &mut out);
            if !self.apply_server_now(out, now, rest) {
                let left: Vec<BackendEvent> = translated.collect();
                if !left.is_empty() {
                    rest.push(Rest::Hub(msg, left));
                }
                return false;
            }
        }
        true
    }
}
