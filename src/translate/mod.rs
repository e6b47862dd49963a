//! Translation between the downstream dialect's naming and the upstream dialect's naming.
//!
//! Owns: route templates (`[[route.map]]`), the per-dialect default conventions, and the
//! session's subscription table (which backend events a client subscription receives).
//!
//! Must not touch: wire bytes, I/O, timers. It sees neutral frames only and is pure.
//!
//! # Layout
//!
//! - `mod.rs`: the [`Translator`] of one session: its subscription table, client operations
//!   renamed for the upstream, backend events renamed and fanned out to subscriptions.
//! - `mapping.rs`: the route's [`Mapping`]: compiled rules and both dialects' naming.

mod mapping;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use bytes::Bytes;

use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Payload, SubId};

pub use mapping::Mapping;
use mapping::{Mapped, Use};

#[derive(Debug, Clone)]
struct SubEntry {
    down_channel: Bytes,
    up_channel: Bytes,
    up_args: Vec<Bytes>,
    event_from_key: bool,
}

/// One session's translator: the route's mapping plus this session's subscriptions.
#[derive(Debug)]
pub struct Translator {
    mapping: Mapping,
    subs: HashMap<SubId, SubEntry>,
    /// The last publish name the route's rules mapped. Why: a client publishes to a few
    /// names over and over, and mapping one builds a new string (matching the templates,
    /// filling the other side's) for every message. Boxed: a session that never publishes
    /// carries a pointer.
    last_publish: Option<Box<PublishName>>,
}

/// A publish name and what the rules made of it (they are the same for the same name and
/// use, whatever the session did in between).
#[derive(Debug)]
struct PublishName {
    /// The client's name (a copy: a slice would keep its whole message alive).
    down: Bytes,
    use_: Use,
    up: Bytes,
    args: Vec<Bytes>,
}

impl Translator {
    /// A translator for a new session.
    pub fn new(mapping: Mapping) -> Self {
        Self {
            mapping,
            subs: HashMap::new(),
            last_publish: None,
        }
    }

    /// Rewrite a client operation into the upstream's naming. An `Err` is refused back
    /// to the client (nothing goes upstream).
    pub fn down_op(&mut self, op: ClientOp) -> Result<ClientOp, ErrorInfo> {
        match op {
            ClientOp::Subscribe {
                sub,
                channel,
                params,
            } => {
                let name = utf8(&channel)?;
                let mapped = self
                    .mapping
                    .to_upstream(name, params.data.as_ref(), Use::Subscribe)
                    .ok_or_else(|| {
                        ErrorInfo::new(
                            ErrorKind::Untranslatable,
                            format!("no route for destination {name}"),
                        )
                    })?;
                let Mapped {
                    name: up,
                    args,
                    event_from_key,
                    params: rule_params,
                } = mapped;
                // A rule's parameters replace the client's (which named the source).
                let mut params = params;
                if let Some(p) = rule_params {
                    params.data = Some(Payload::json(p));
                }
                let up = Bytes::from(up);
                self.subs.insert(
                    sub,
                    SubEntry {
                        // Its own copy: kept for the subscription's life, where a slice
                        // would keep the whole message it came in.
                        down_channel: Bytes::copy_from_slice(&channel),
                        up_channel: up.clone(),
                        up_args: args,
                        event_from_key,
                    },
                );
                // Parameters (authorization, member data) travel with the subscription.
                Ok(ClientOp::Subscribe {
                    sub,
                    channel: up,
                    params,
                })
            }
            ClientOp::Unsubscribe { sub } => {
                self.subs.remove(&sub);
                Ok(ClientOp::Unsubscribe { sub })
            }
            ClientOp::Publish {
                meta,
                channel,
                event,
                args,
                payload,
                reply,
                broadcast,
                sub,
            } => {
                // The subscription the publish is made on: the one named, else the first
                // one on that name.
                let named = sub.filter(|s| self.subs.contains_key(s));
                let sub = named.or_else(|| {
                    self.subs
                        .iter()
                        .filter(|(_, e)| e.down_channel == channel)
                        .map(|(id, _)| *id)
                        .min()
                });
                let name = utf8(&channel)?;
                // A name in the client dialect's channel form (STOMP `/topic/x`, not
                // `/app/x`) is a publish to that channel's subscribers.
                let broadcast = broadcast || self.mapping.down.is_channel_name(name);
                let use_ = if broadcast {
                    Use::Subscribe
                } else {
                    Use::Publish
                };
                // A name no rule maps (one whose rule needs subscription parameters) goes
                // where the subscription it is made on went.
                // Built only when no rule maps the name (it allocates).
                let on_sub = || {
                    sub.and_then(|s| self.subs.get(&s)).map(|e| Mapped {
                        name: String::from_utf8_lossy(&e.up_channel).into_owned(),
                        args: e.up_args.clone(),
                        event_from_key: false,
                        params: None,
                    })
                };
                // A publish made on a subscription it names, to that subscription's own
                // name (an Action Cable `perform`), goes where the subscription went: its
                // rule may have needed the subscription's parameters (`{"id":7}` to
                // `private-room-7`), which the publish does not carry, and the plain name
                // would reach another channel.
                let on_named = named
                    .and_then(|s| self.subs.get(&s))
                    .filter(|e| e.down_channel == channel)
                    .map(|e| (e.up_channel.clone(), e.up_args.clone()));
                let cached = on_named.or_else(|| {
                    self.last_publish
                        .as_deref()
                        .filter(|c| c.down == channel && c.use_ == use_)
                        .map(|c| (c.up.clone(), c.args.clone()))
                });
                let (up, mut rule_args) = match cached {
                    Some(hit) => hit,
                    None => match self.mapping.to_upstream(name, None, use_) {
                        Some(m) => {
                            let up = Bytes::from(m.name);
                            self.last_publish = Some(Box::new(PublishName {
                                down: Bytes::copy_from_slice(&channel),
                                use_,
                                up: up.clone(),
                                args: m.args.clone(),
                            }));
                            (up, m.args)
                        }
                        None => {
                            let m = on_sub().ok_or_else(|| {
                                ErrorInfo::new(
                                    ErrorKind::Untranslatable,
                                    format!("no route for destination {name}"),
                                )
                            })?;
                            (Bytes::from(m.name), m.args)
                        }
                    },
                };
                rule_args.extend(args);
                Ok(ClientOp::Publish {
                    meta,
                    channel: up,
                    event,
                    args: rule_args,
                    payload,
                    reply,
                    broadcast,
                    sub,
                })
            }
            other => Ok(other),
        }
    }

    /// Forget a subscription the client or the backend ended (or that was never made).
    pub fn forget(&mut self, sub: SubId) {
        self.subs.remove(&sub);
    }

    /// Whether any subscription is still active on `sub`'s upstream name (so an upstream
    /// leg without wire subscriptions knows nothing more is needed).
    pub fn has_sub(&self, sub: SubId) -> bool {
        self.subs.contains_key(&sub)
    }

    /// Rewrite an upstream event into the downstream's naming, fanning a message out to
    /// every subscription it matches. Messages nobody subscribed to are dropped.
    pub fn up_event(&mut self, ev: BackendEvent, out: &mut Vec<BackendEvent>) {
        match ev {
            BackendEvent::Message {
                sub: Some(sub),
                event,
                args,
                payload,
                ack,
                meta,
                ..
            } => {
                if let Some(e) = self.subs.get(&sub) {
                    let (event, payload) = if e.event_from_key {
                        keyed(event, payload)
                    } else {
                        (event, payload)
                    };
                    out.push(BackendEvent::Message {
                        meta,
                        sub: Some(sub),
                        channel: e.down_channel.clone(),
                        event,
                        args,
                        payload,
                        ack,
                    });
                }
            }
            BackendEvent::Message {
                meta,
                sub: None,
                channel,
                event,
                args,
                payload,
                ack,
            } => {
                // Every subscription it matches, pushed straight to `out` (no list of
                // matches built), then put in subscription order: the table is a hash map.
                let start = out.len();
                for (id, e) in self.subs.iter().filter(|(_, e)| {
                    e.up_channel == channel
                        && e.up_args.len() <= args.len()
                        && e.up_args
                            .iter()
                            .zip(args.iter())
                            .all(|(a, b)| json_eq(a, b))
                }) {
                    let (event, payload) = if e.event_from_key {
                        keyed(event.clone(), payload.clone())
                    } else {
                        (event.clone(), payload.clone())
                    };
                    out.push(BackendEvent::Message {
                        meta: meta.clone(),
                        sub: Some(*id),
                        channel: e.down_channel.clone(),
                        event,
                        args: args
                            .get(e.up_args.len()..)
                            .map(<[Bytes]>::to_vec)
                            .unwrap_or_default(),
                        payload,
                        ack: ack.clone(),
                    });
                }
                if out.len() == start && self.mapping.deliver_unclaimed {
                    // Clients of this dialect listen to what their backend emits without
                    // subscribing (Socket.IO): events no subscription claims go to them.
                    let channel = std::str::from_utf8(&channel)
                        .ok()
                        .and_then(|c| self.mapping.to_downstream(c))
                        .map(Bytes::from)
                        .unwrap_or(channel);
                    out.push(BackendEvent::Message {
                        meta,
                        sub: None,
                        channel,
                        event,
                        args,
                        payload,
                        ack,
                    });
                    return;
                }
                if let Some(added) = out.get_mut(start..) {
                    // Unstable sort: ids are unique, and it never allocates.
                    added.sort_unstable_by_key(|ev| match ev {
                        BackendEvent::Message { sub, .. } => *sub,
                        _ => None,
                    });
                }
            }
            BackendEvent::SubscribeFailed { sub, reason } => {
                // A refused subscription is no subscription: it must not claim events nor
                // stay in the table.
                self.subs.remove(&sub);
                out.push(BackendEvent::SubscribeFailed { sub, reason });
            }
            BackendEvent::Unsubscribed { sub, reason } => {
                // Ended by the backend (a kick-out): as above, or a subscription made again
                // on the same channel would be delivered each message twice.
                self.subs.remove(&sub);
                out.push(BackendEvent::Unsubscribed { sub, reason });
            }
            BackendEvent::Presence {
                channel,
                member,
                added,
            } if !self.mapping.down_presence => {
                // Documented events on the channel's subscriptions; nothing fabricated.
                let event = Bytes::from_static(if added {
                    b"presence:member_added"
                } else {
                    b"presence:member_removed"
                });
                let mut matched: Vec<(SubId, &SubEntry)> = self
                    .subs
                    .iter()
                    .filter(|(_, e)| e.up_channel == channel)
                    .map(|(id, e)| (*id, e))
                    .collect();
                matched.sort_by_key(|(id, _)| *id);
                for (id, e) in matched {
                    out.push(BackendEvent::Message {
                        meta: Vec::new(),
                        sub: Some(id),
                        channel: e.down_channel.clone(),
                        event: Some(event.clone()),
                        args: Vec::new(),
                        payload: Payload::json(member.clone()),
                        ack: None,
                    });
                }
            }
            BackendEvent::Presence {
                channel,
                member,
                added,
            } => {
                let channel = std::str::from_utf8(&channel)
                    .ok()
                    .and_then(|c| self.mapping.to_downstream(c))
                    .map(Bytes::from)
                    .unwrap_or(channel);
                out.push(BackendEvent::Presence {
                    channel,
                    member,
                    added,
                });
            }
            other => out.push(other),
        }
    }
}

/// `{"message":{..}}` → (event `message`, payload `{..}`), zero copy. Bodies that are not a
/// one-key object pass unchanged.
fn keyed(event: Option<Bytes>, payload: Payload) -> (Option<Bytes>, Payload) {
    if payload.kind != crate::frame::PayloadKind::Json {
        return (event, payload);
    }
    let parsed: Result<HashMap<std::borrow::Cow<'_, str>, &serde_json::value::RawValue>, _> =
        serde_json::from_slice(&payload.data);
    match parsed {
        Ok(map) if map.len() == 1 => match map.into_iter().next() {
            Some((k, v)) => {
                let value = payload.data.slice_ref(v.get().as_bytes());
                (Some(Bytes::from(k.into_owned())), Payload::json(value))
            }
            None => (event, payload),
        },
        _ => (event, payload),
    }
}

fn utf8(b: &Bytes) -> Result<&str, ErrorInfo> {
    std::str::from_utf8(b)
        .map_err(|_| ErrorInfo::new(ErrorKind::Untranslatable, "destination is not UTF-8"))
}

/// Compare two JSON scalars written possibly differently (`"42"` vs `"4\u0032"` is rare;
/// compare by parsed value only when the bytes differ).
fn json_eq(a: &[u8], b: &[u8]) -> bool {
    a == b
        || matches!(
            (serde_json::from_slice::<serde_json::Value>(a), serde_json::from_slice::<serde_json::Value>(b)),
            (Ok(x), Ok(y)) if x == y
        )
}
