//! The Action Cable client role: the proxy plays `@rails/actioncable` toward a Rails (or
//! AnyCable) server.
//!
//! Owns: the upgrade's credentials where the server looks for them (a query parameter, a
//! cookie or `Authorization`) and its `Origin`, waiting for `welcome` (operations held
//! until then), the server's 3 s pings (a silent server is gone), identifiers built from a
//! subscription's channel and parameters (one wire subscription per identifier),
//! `confirm_subscription`/`reject_subscription` (or none within a deadline), `perform` (a `message` command with the
//! action in `data`), broadcasts named by their `event` field, and `disconnect` with its
//! reconnect flag.
//!
//! Must not touch: I/O, time (it comes in), other dialects, configuration files.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec;
use crate::dialect::hold::{Gate, HoldQueue};
use crate::dialect::pending::deadline;
use crate::dialect::{ClientOut, ClientRole, Close, Dial, Keepalive, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, PayloadKind, Reply, SubId,
    SubParams,
};

/// Where the client's token goes on the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAs {
    /// `Authorization: Bearer <token>`.
    Authorization,
    /// A query parameter of this name.
    Query(String),
    /// A cookie of this name.
    Cookie(String),
    /// Nowhere (the client's own cookies may still carry its session).
    None,
}

/// Settings of the Action Cable client role.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the client's token goes.
    pub token_as: TokenAs,
    /// The `Origin` sent (Rails refuses upgrades without an allowed one); else the client's.
    pub origin: Option<String>,
    /// The broadcast field that names an event (`event`).
    pub event_field: String,
    /// No ping for this long: the server is gone (the JS client's stale threshold).
    pub stale_after: Duration,
    /// Most operations held until `welcome`.
    pub max_queued_ops: usize,
    /// Most bytes of those.
    pub max_queued_bytes: usize,
    /// A subscription neither confirmed nor rejected this long after it was sent fails
    /// (Rails says nothing at all about a channel class it does not know).
    pub confirm_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            token_as: TokenAs::Query("token".into()),
            origin: None,
            event_field: "event".into(),
            stale_after: Duration::from_secs(6),
            max_queued_ops: 1024,
            max_queued_bytes: 4 << 20,
            confirm_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitWelcome,
    Open,
    Closed,
}

#[derive(Debug)]
struct Wire {
    /// The identifier sent.
    identifier: String,
    subs: Vec<SubId>,
    confirmed: bool,
    /// Until confirmed: when it fails unanswered.
    deadline: Instant,
}

/// The Action Cable client role of one session.
#[derive(Debug)]
pub struct CableClient {
    settings: Settings,
    credentials: Credentials,
    state: State,
    held: HoldQueue,
    /// Canonical identifier → the wire subscription.
    wires: HashMap<String, Wire>,
    by_sub: HashMap<SubId, String>,
    /// The identifier strings sent → their canonical form.
    by_sent: HashMap<Vec<u8>, String>,
    copied: crate::dialect::Copied,
}

impl CableClient {
    /// A client role for one session.
    pub fn new(settings: Settings, credentials: Credentials) -> Self {
        Self {
            held: HoldQueue::new(settings.max_queued_ops, settings.max_queued_bytes),
            settings,
            credentials,
            state: State::AwaitWelcome,
            wires: HashMap::new(),
            by_sub: HashMap::new(),
            by_sent: HashMap::new(),
            copied: crate::dialect::Copied::default(),
        }
    }

    fn text(out: &mut ClientOut, b: Bytes) {
        out.to_backend.push(WsMsg::Text(b));
    }

    fn fail(&mut self, e: ErrorInfo, out: &mut ClientOut) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.fail_all(&e, out);
        out.events.push(BackendEvent::Error(e));
        out.close = Some(Close::normal());
    }

    fn fail_all(&mut self, e: &ErrorInfo, out: &mut ClientOut) {
        self.by_sent.clear();
        for (_, w) in self.wires.drain() {
            if !w.confirmed {
                for sub in w.subs {
                    out.events.push(BackendEvent::SubscribeFailed {
                        sub,
                        reason: e.clone(),
                    });
                }
            }
        }
        self.by_sub.clear();
        self.held.refuse_all(e, out);
    }

    fn subscribe(
        &mut self,
        sub: SubId,
        channel: Bytes,
        params: SubParams,
        now: Instant,
        out: &mut ClientOut,
    ) {
        let params = params.data.filter(|d| d.kind == PayloadKind::Json);
        let built = codec::build_identifier(&channel, params.as_ref().map(|p| &p.data[..]))
            .and_then(|raw| Ok((codec::identifier(raw.as_bytes())?, raw)));
        let (id, raw) = match built {
            Ok(x) => x,
            Err(e) => {
                return out.events.push(BackendEvent::SubscribeFailed {
                    sub,
                    reason: ErrorInfo::new(ErrorKind::Untranslatable, e.to_string()),
                });
            }
        };
        self.by_sub.insert(sub, id.canonical.clone());
        if let Some(w) = self.wires.get_mut(&id.canonical) {
            w.subs.push(sub);
            if w.confirmed {
                out.events
                    .push(BackendEvent::Subscribed { sub, data: None });
            }
            return;
        }
        Self::text(out, codec::command("subscribe", raw.as_bytes(), None));
        self.by_sent
            .insert(raw.as_bytes().to_vec(), id.canonical.clone());
        self.wires.insert(
            id.canonical,
            Wire {
                identifier: raw,
                subs: vec![sub],
                confirmed: false,
                deadline: deadline(now, self.settings.confirm_timeout),
            },
        );
    }

    fn unsubscribe(&mut self, sub: SubId, out: &mut ClientOut) {
        let Some(canonical) = self.by_sub.remove(&sub) else {
            return;
        };
        let empty = self.wires.get_mut(&canonical).is_none_or(|w| {
            w.subs.retain(|s| *s != sub);
            w.subs.is_empty()
        });
        if empty && let Some(w) = self.wires.remove(&canonical) {
            self.by_sent.remove(w.identifier.as_bytes());
            Self::text(
                out,
                codec::command("unsubscribe", w.identifier.as_bytes(), None),
            );
        }
    }

    /// `perform(event, payload)` on the subscription the publish is made on.
    fn perform(
        &mut self,
        sub: Option<SubId>,
        event: Option<Bytes>,
        payload: Payload,
        reply: Option<Reply>,
        out: &mut ClientOut,
    ) {
        let answer = |result: Result<Option<Payload>, ErrorInfo>, out: &mut ClientOut| match reply {
            Some(r) => out.events.push(BackendEvent::Reply { id: r.id, result }),
            None => {
                if let Err(e) = result {
                    out.events.push(BackendEvent::Refused(e));
                }
            }
        };
        let wire = sub
            .and_then(|s| self.by_sub.get(&s))
            .and_then(|c| self.wires.get(c));
        let Some(w) = wire else {
            return answer(
                Err(ErrorInfo::new(
                    ErrorKind::Untranslatable,
                    "Action Cable performs actions on a subscription: subscribe to it first",
                )),
                out,
            );
        };
        let action = event.map(|e| String::from_utf8_lossy(&e).into_owned());
        // The payload is rewritten into the `data` JSON text, which is then escaped into the
        // command's string: two copies, each counted.
        let data = codec::perform_data(action.as_deref(), &payload);
        self.copied.one(payload.data.len());
        self.copied.one(data.len());
        Self::text(
            out,
            codec::command("message", w.identifier.as_bytes(), Some(&data)),
        );
        // Action Cable answers nothing: confirmed once written (PROTOCOLS §6.2).
        answer(Ok(None), out);
    }

    fn on_message(&mut self, m: codec::Msg, now: Instant, out: &mut ClientOut) {
        match m.kind.as_deref() {
            Some("welcome") if self.state == State::AwaitWelcome => {
                self.state = State::Open;
                out.events.push(BackendEvent::Ready { session: None });
                let held: Vec<ClientOp> = self.held.drain().collect();
                for op in held {
                    self.on_op(op, now, out);
                }
            }
            Some("ping") | Some("welcome") => {}
            Some("confirm_subscription") => {
                let Some(w) = self.wire_of(m.identifier().as_ref()) else {
                    return;
                };
                if !w.confirmed {
                    w.confirmed = true;
                    for sub in w.subs.clone() {
                        out.events
                            .push(BackendEvent::Subscribed { sub, data: None });
                    }
                }
            }
            Some("reject_subscription") => {
                let Some(canonical) = m
                    .identifier()
                    .as_ref()
                    .and_then(|i| codec::identifier(i).ok())
                    .map(|i| i.canonical)
                else {
                    return;
                };
                let reason = ErrorInfo::new(ErrorKind::Unauthorized, "subscription rejected");
                self.end_wire(&canonical, &reason, out);
            }
            Some("disconnect") => {
                let reason = m.reason.unwrap_or_else(|| "disconnected".into());
                let reconnect = m.reconnect.unwrap_or(true);
                if reason == "unauthorized" {
                    return self.fail(ErrorInfo::new(ErrorKind::Unauthorized, reason), out);
                }
                let e = ErrorInfo::new(ErrorKind::Unavailable, reason);
                self.state = State::Closed;
                self.fail_all(&e, out);
                out.events.push(BackendEvent::Closing {
                    reason: e,
                    retry: reconnect,
                });
                out.close = Some(Close::normal());
            }
            Some(_) => {}
            None => {
                let (Some(identifier), Some(message)) = (m.identifier(), m.message) else {
                    return;
                };
                let Some(w) = self.wire_of(Some(&identifier)) else {
                    return;
                };
                let subs = w.subs.clone();
                let event = event_name(&message, &self.settings.event_field);
                for sub in subs {
                    out.events.push(BackendEvent::Message {
                        sub: Some(sub),
                        channel: identifier.clone(),
                        event: event.clone(),
                        args: Vec::new(),
                        payload: Payload::json(message.clone()),
                        meta: Vec::new(),
                        ack: None,
                    });
                }
            }
        }
    }

    /// The wire subscription `canonical` ended from the server's side (rejected, or never
    /// answered): each subscription sharing it hears why, as a failure while unconfirmed.
    /// Its identifier, if it was there.
    fn end_wire(
        &mut self,
        canonical: &str,
        reason: &ErrorInfo,
        out: &mut ClientOut,
    ) -> Option<String> {
        let w = self.wires.remove(canonical)?;
        self.by_sent.remove(w.identifier.as_bytes());
        for sub in w.subs {
            self.by_sub.remove(&sub);
            let reason = reason.clone();
            out.events.push(if w.confirmed {
                BackendEvent::Unsubscribed { sub, reason }
            } else {
                BackendEvent::SubscribeFailed { sub, reason }
            });
        }
        Some(w.identifier)
    }

    fn wire_of(&mut self, identifier: Option<&Bytes>) -> Option<&mut Wire> {
        let identifier = identifier?;
        // Rails echoes the identifier byte for byte: the string sent finds it without a
        // parse; another spelling of it is compared canonically.
        let canonical = match self.by_sent.get(&identifier[..]) {
            Some(c) => c.clone(),
            None => codec::identifier(identifier).ok()?.canonical,
        };
        self.wires.get_mut(&canonical)
    }
}

/// The event a broadcast names in its top-level `field` (a string), if any.
fn event_name(message: &Bytes, field: &str) -> Option<Bytes> {
    // The top level only, values left raw: no DOM of the payload.
    let obj: HashMap<std::borrow::Cow<'_, str>, &serde_json::value::RawValue> =
        serde_json::from_slice(message).ok()?;
    let v = obj.get(field)?;
    let s: std::borrow::Cow<'_, str> = serde_json::from_str(v.get()).ok()?;
    Some(match s {
        std::borrow::Cow::Borrowed(b) => message.slice_ref(b.as_bytes()),
        std::borrow::Cow::Owned(o) => Bytes::from(o),
    })
}

impl ClientRole for CableClient {
    fn dial(&self) -> Dial {
        let mut d = Dial::from_credentials(&self.credentials);
        if let Some(o) = &self.settings.origin {
            d.headers.retain(|(k, _)| k != "Origin");
            d.headers.push(("Origin".into(), o.clone()));
        }
        let Some(token) = self
            .credentials
            .token
            .as_ref()
            .and_then(|t| std::str::from_utf8(t).ok())
        else {
            return d;
        };
        match &self.settings.token_as {
            TokenAs::Authorization => d
                .headers
                .push(("Authorization".into(), format!("Bearer {token}"))),
            TokenAs::Query(name) => d.query.push((name.clone(), token.to_owned())),
            TokenAs::Cookie(name) => {
                let pair = format!("{name}={token}");
                match d.headers.iter_mut().find(|(k, _)| k == "Cookie") {
                    Some((_, v)) => {
                        v.push_str("; ");
                        v.push_str(&pair);
                    }
                    None => d.headers.push(("Cookie".into(), pair)),
                }
            }
            TokenAs::None => {}
        }
        d
    }

    fn start(&mut self, _now: Instant, _out: &mut ClientOut) {
        // The server speaks first (`welcome`).
    }

    fn on_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut) {
        let gate = match self.state {
            State::Closed => Gate::Closed("Action Cable connection closed"),
            State::AwaitWelcome => Gate::Handshaking,
            _ => Gate::Open,
        };
        let op = match self.held.admit(gate, op, out) {
            Ok(Some(op)) => op,
            Ok(None) => return,
            Err(e) => return self.fail(e, out),
        };
        match op {
            // Argument-list shapes pass only between legs of that shape, never to this one.
            op @ (ClientOp::Join { .. }
            | ClientOp::Leave { .. }
            | ClientOp::Emit { .. }
            | ClientOp::Answer { .. }) => out.events.extend(op.shape_refusal()),
            ClientOp::Connect { credentials } => self.credentials = credentials,
            // Action Cable authenticates only at the upgrade.
            ClientOp::Reauth { .. } => out.events.push(BackendEvent::Refused(ErrorInfo::new(
                ErrorKind::Untranslatable,
                "an Action Cable backend authenticates only when connecting",
            ))),
            ClientOp::Subscribe {
                sub,
                channel,
                params,
            } => self.subscribe(sub, channel, params, now, out),
            ClientOp::Unsubscribe { sub } => self.unsubscribe(sub, out),
            ClientOp::Publish {
                sub,
                event,
                payload,
                reply,
                ..
            } => self.perform(sub, event, payload, reply, out),
            ClientOp::Ack { .. } => {}
            ClientOp::Disconnect => {
                self.state = State::Closed;
                out.close = Some(Close::normal());
            }
        }
    }

    fn on_backend(&mut self, msg: WsMsg, now: Instant, out: &mut ClientOut) {
        let WsMsg::Text(text) = msg else {
            return out.events.push(BackendEvent::Dropped(ErrorInfo::new(
                ErrorKind::Protocol,
                "binary message from an Action Cable server",
            )));
        };
        match codec::decode(&text) {
            Ok(m) => self.on_message(m, now, out),
            Err(e) => out.events.push(BackendEvent::Dropped(ErrorInfo::new(
                ErrorKind::Protocol,
                e.to_string(),
            ))),
        }
    }

    fn keepalive(&self) -> Keepalive {
        Keepalive {
            send_every: None,
            expect_within: (self.state == State::Open).then_some(self.settings.stale_after),
            periodic: false,
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }

    fn on_peer_silent(&mut self, out: &mut ClientOut) {
        self.fail(
            ErrorInfo::new(
                ErrorKind::Unavailable,
                "Action Cable server stopped pinging",
            ),
            out,
        );
    }

    fn expire(&mut self, now: Instant, out: &mut ClientOut) {
        let late: Vec<String> = self
            .wires
            .iter()
            .filter(|(_, w)| !w.confirmed && w.deadline <= now)
            .map(|(c, _)| c.clone())
            .collect();
        let reason = ErrorInfo::new(
            ErrorKind::Timeout,
            "the Action Cable server neither confirmed nor rejected the subscription",
        );
        for canonical in late {
            if let Some(identifier) = self.end_wire(&canonical, &reason, out) {
                // Should the server confirm it after all, it is not left subscribed.
                Self::text(
                    out,
                    codec::command("unsubscribe", identifier.as_bytes(), None),
                );
            }
        }
    }

    fn on_closed(&mut self, reason: ErrorInfo, out: &mut ClientOut) {
        self.state = State::Closed;
        self.fail_all(&reason, out);
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        std::mem::take(&mut self.copied)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
