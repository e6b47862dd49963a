//! Translation between the downstream dialect's naming and the upstream dialect's naming.
//!
//! Owns: route templates (`[[route.map]]`), the per-dialect default conventions, and the
//! session's subscription table (which backend events a client subscription receives).
//!
//! Must not touch: wire bytes, I/O, timers. It sees neutral frames only and is pure.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::MapRule;
use crate::dialect::{Naming, Spec};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Payload, SubId};
use crate::template::{Captures, Template};

/// A compiled `[[route.map]]` entry.
#[derive(Debug, Clone)]
struct Rule {
    client: Template,
    upstream: Template,
    upstream_args: Vec<Template>,
    event_from_key: bool,
    client_params: Vec<(String, Template)>,
    upstream_params: Vec<(String, Template)>,
}

/// What a name maps to upstream.
struct Mapped {
    name: String,
    /// Leading arguments (raw JSON strings).
    args: Vec<Bytes>,
    event_from_key: bool,
    /// Subscription parameters built by the rule (a JSON object), if it has any.
    params: Option<Bytes>,
}

/// The string form of a parameter value: a string's content, a number or boolean as written.
fn param_str(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a name is used to subscribe or to publish (dialects like STOMP name them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Subscribe,
    Publish,
}

/// A dialect's default naming ([`Naming`]), parsed once per route.
#[derive(Debug)]
struct Defaults {
    subscribe: Vec<Template>,
    publish: Vec<Template>,
}

impl Defaults {
    fn new(n: &Naming) -> Result<Self, String> {
        let parse = |ts: &[&str]| {
            ts.iter()
                .map(|t| Template::parse(t))
                .collect::<Result<Vec<_>, _>>()
        };
        let d = Self {
            subscribe: parse(n.subscribe)?,
            publish: parse(n.publish)?,
        };
        if d.subscribe.is_empty() || d.publish.is_empty() {
            return Err("a dialect's naming needs at least one template per use".into());
        }
        Ok(d)
    }

    fn of(&self, use_: Use) -> &[Template] {
        match use_ {
            Use::Subscribe => &self.subscribe,
            Use::Publish => &self.publish,
        }
    }

    /// The neutral `{name}` of a name in this dialect's convention.
    fn neutral(&self, name: &str, use_: Use) -> Option<String> {
        self.of(use_)
            .iter()
            .find_map(|t| t.matches(name)?.remove("name"))
    }

    /// Whether `name` is in this dialect's channel form and not in its event form: where
    /// the two differ (STOMP `/topic/x` against `/app/x`), a publish there goes to the
    /// channel's subscribers.
    fn is_channel_name(&self, name: &str) -> bool {
        let event = self
            .publish
            .first()
            .is_some_and(|t| t.matches(name).is_some());
        !event && self.subscribe.iter().any(|t| t.matches(name).is_some())
    }

    /// This dialect's name for a neutral `{name}`.
    fn build(&self, neutral: String, use_: Use) -> Option<String> {
        let mut caps = Captures::new();
        caps.insert("name".into(), neutral);
        self.of(use_).first()?.fill(&caps)
    }
}

/// Route-level mapping rules, shared by every session of a route.
#[derive(Debug, Clone)]
pub struct Mapping {
    rules: Arc<[Rule]>,
    down: Arc<Defaults>,
    up: Arc<Defaults>,
    /// Both legs speak the same dialect: names mean the same on both sides.
    same: bool,
    /// The client dialect hears events nobody subscribed to (Socket.IO clients hear
    /// `io.emit`).
    deliver_unclaimed: bool,
    /// The client dialect has presence of its own (Pusher); otherwise presence changes
    /// reach it as `presence:member_added` / `presence:member_removed` events on the
    /// subscriptions of that channel (PROTOCOLS §6.5).
    down_presence: bool,
}

impl Mapping {
    /// Compile a route's rules and both dialects' naming. Rules were checked by
    /// `Config::validate`.
    pub fn new(rules: &[MapRule], down: &Spec, up: &Spec) -> Result<Self, String> {
        let rules = rules
            .iter()
            .map(|r| {
                Ok(Rule {
                    client: Template::parse(&r.client)?,
                    upstream: Template::parse(&r.upstream)?,
                    upstream_args: r
                        .upstream_args
                        .iter()
                        .map(|a| Template::parse(a))
                        .collect::<Result<_, String>>()?,
                    event_from_key: r.event_from_key,
                    client_params: r
                        .client_params
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), Template::parse(t)?)))
                        .collect::<Result<_, String>>()?,
                    upstream_params: r
                        .upstream_params
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), Template::parse(t)?)))
                        .collect::<Result<_, String>>()?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            rules: rules.into(),
            down: Arc::new(Defaults::new(&down.naming)?),
            up: Arc::new(Defaults::new(&up.naming)?),
            same: down.dialect == up.dialect,
            deliver_unclaimed: down.caps.events_without_subscribe,
            down_presence: down.caps.presence,
        })
    }

    /// Map a downstream name to (upstream name, leading args as JSON strings, whether the
    /// event is named by the body's key).
    fn to_upstream(&self, name: &str, params: Option<&Payload>, use_: Use) -> Option<Mapped> {
        // The subscription's parameters, when its dialect has them (an Action Cable
        // identifier's keys besides `channel`).
        let given: Option<serde_json::Map<String, serde_json::Value>> =
            params.and_then(|p| serde_json::from_slice(&p.data).ok());
        'rules: for r in self.rules.iter() {
            let Some(mut caps) = r.client.matches(name) else {
                continue;
            };
            for (k, t) in &r.client_params {
                let v = given.as_ref().and_then(|g| g.get(k)).and_then(param_str);
                match v.and_then(|v| t.matches(&v)) {
                    Some(c) => caps.extend(c),
                    None => continue 'rules,
                }
            }
            let up = r.upstream.fill(&caps)?;
            let args = r
                .upstream_args
                .iter()
                .map(|a| a.fill(&caps).map(|s| json_str(&s)))
                .collect::<Option<Vec<_>>>()?;
            let params = if r.upstream_params.is_empty() {
                None
            } else {
                let mut obj = serde_json::Map::new();
                for (k, t) in &r.upstream_params {
                    obj.insert(k.clone(), serde_json::Value::String(t.fill(&caps)?));
                }
                Some(Bytes::from(serde_json::Value::Object(obj).to_string()))
            };
            return Some(Mapped {
                name: up,
                args,
                event_from_key: r.event_from_key,
                params,
            });
        }
        // Same dialect on both legs: names mean the same thing on both sides.
        let name = if self.same {
            name.to_owned()
        } else {
            let neutral = self.down.neutral(name, use_)?;
            self.up.build(neutral, use_)?
        };
        Some(Mapped {
            name,
            args: Vec::new(),
            event_from_key: false,
            params: None,
        })
    }

    /// Map an upstream name back to the downstream name (for deliveries without a
    /// subscription id, e.g. an event on a Socket.IO backend nobody subscribed to by name).
    fn to_downstream(&self, name: &str) -> Option<String> {
        for r in self.rules.iter() {
            if r.upstream_args.is_empty()
                && let Some(caps) = r.upstream.matches(name)
            {
                return r.client.fill(&caps);
            }
        }
        if self.same {
            return Some(name.to_owned());
        }
        let neutral = self.up.neutral(name, Use::Subscribe)?;
        self.down.build(neutral, Use::Subscribe)
    }
}

fn json_str(s: &str) -> Bytes {
    Bytes::from(serde_json::Value::String(s.to_owned()).to_string())
}

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
}

impl Translator {
    /// A translator for a new session.
    pub fn new(mapping: Mapping) -> Self {
        Self {
            mapping,
            subs: HashMap::new(),
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
                        down_channel: channel,
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
                let sub = sub.filter(|s| self.subs.contains_key(s)).or_else(|| {
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
                let on_sub = sub.and_then(|s| self.subs.get(&s)).map(|e| Mapped {
                    name: String::from_utf8_lossy(&e.up_channel).into_owned(),
                    args: e.up_args.clone(),
                    event_from_key: false,
                    params: None,
                });
                let Mapped {
                    name: up,
                    args: mut rule_args,
                    ..
                } = self
                    .mapping
                    .to_upstream(name, None, use_)
                    .or(on_sub)
                    .ok_or_else(|| {
                        ErrorInfo::new(
                            ErrorKind::Untranslatable,
                            format!("no route for destination {name}"),
                        )
                    })?;
                rule_args.extend(args);
                Ok(ClientOp::Publish {
                    meta,
                    channel: Bytes::from(up),
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
                let mut matched: Vec<(SubId, &SubEntry)> = self
                    .subs
                    .iter()
                    .filter(|(_, e)| {
                        e.up_channel == channel
                            && e.up_args.len() <= args.len()
                            && e.up_args
                                .iter()
                                .zip(args.iter())
                                .all(|(a, b)| json_eq(a, b))
                    })
                    .map(|(id, e)| (*id, e))
                    .collect();
                matched.sort_by_key(|(id, _)| *id);
                if matched.is_empty() && self.mapping.deliver_unclaimed {
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
                for (id, e) in matched {
                    let (event, payload) = if e.event_from_key {
                        keyed(event.clone(), payload.clone())
                    } else {
                        (event.clone(), payload.clone())
                    };
                    out.push(BackendEvent::Message {
                        meta: meta.clone(),
                        sub: Some(id),
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
            }
            BackendEvent::SubscribeFailed { sub, reason } => {
                // A refused subscription is no subscription: it must not claim events nor
                // stay in the table.
                self.subs.remove(&sub);
                out.push(BackendEvent::SubscribeFailed { sub, reason });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::{socketio, stomp};
    use crate::frame::Payload;

    fn mapping(rules: &[(&str, &str, &[&str])]) -> Mapping {
        let rules: Vec<MapRule> = rules
            .iter()
            .map(|(c, u, a)| MapRule {
                client: (*c).into(),
                upstream: (*u).into(),
                upstream_args: a.iter().map(|s| (*s).to_owned()).collect(),
                event_from_key: false,
                client_params: Default::default(),
                upstream_params: Default::default(),
            })
            .collect();
        Mapping::new(&rules, &stomp::SPEC, &socketio::SPEC).unwrap()
    }

    #[test]
    fn default_stomp_to_socketio() {
        let mut t = Translator::new(mapping(&[]));
        let op = t
            .down_op(ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/topic/message_created"),
                params: Default::default(),
            })
            .unwrap();
        assert_eq!(
            op,
            ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("message_created"),
                params: Default::default(),
            }
        );
        let op = t
            .down_op(ClientOp::Publish {
                meta: Vec::new(),
                channel: Bytes::from("/app/message_deleted"),
                event: None,
                args: vec![],
                payload: Payload::null(),
                reply: None,
                broadcast: false,
                sub: None,
            })
            .unwrap();
        assert!(matches!(op, ClientOp::Publish { channel, .. } if channel == "message_deleted"));
        let err = t
            .down_op(ClientOp::Subscribe {
                sub: 2,
                channel: Bytes::from("/queue/x"),
                params: Default::default(),
            })
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Untranslatable);
    }

    #[test]
    fn fan_out_to_matching_subscriptions_only() {
        let mut t = Translator::new(mapping(&[(
            "/v1/topic/conversation/{id}",
            "conversation:{id}",
            &[],
        )]));
        t.down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/v1/topic/conversation/a"),
            params: Default::default(),
        })
        .unwrap();
        t.down_op(ClientOp::Subscribe {
            sub: 2,
            channel: Bytes::from("/v1/topic/conversation/b"),
            params: Default::default(),
        })
        .unwrap();
        let mut out = Vec::new();
        t.up_event(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: None,
                channel: Bytes::from("conversation:b"),
                event: None,
                args: vec![],
                payload: Payload::json(Bytes::from("{}")),
                ack: None,
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0], BackendEvent::Message { sub: Some(2), channel, .. } if channel == "/v1/topic/conversation/b")
        );
    }

    #[test]
    fn fixed_event_with_id_argument() {
        let mut t = Translator::new(mapping(&[
            (
                "/v1/topic/conversation/{id}",
                "conversation_event",
                &["{id}"],
            ),
            (
                "/v1/app/conversation/{id}/typing/start",
                "typing_start",
                &["{id}"],
            ),
        ]));
        t.down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/v1/topic/conversation/42"),
            params: Default::default(),
        })
        .unwrap();
        let op = t
            .down_op(ClientOp::Publish {
                meta: Vec::new(),
                channel: Bytes::from("/v1/app/conversation/42/typing/start"),
                event: None,
                args: vec![],
                payload: Payload::null(),
                reply: None,
                broadcast: false,
                sub: None,
            })
            .unwrap();
        assert!(
            matches!(&op, ClientOp::Publish { channel, args, .. } if channel == "typing_start" && args == &vec![Bytes::from("\"42\"")])
        );
        let mut out = Vec::new();
        for id in ["\"41\"", "\"42\""] {
            t.up_event(
                BackendEvent::Message {
                    meta: Vec::new(),
                    sub: None,
                    channel: Bytes::from("conversation_event"),
                    event: None,
                    args: vec![Bytes::from(id)],
                    payload: Payload::json(Bytes::from("{\"read\":{}}")),
                    ack: None,
                },
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], BackendEvent::Message { args, .. } if args.is_empty()));
    }

    #[test]
    fn event_named_by_body_key() {
        let rules = vec![MapRule {
            client: "conversation:{id}".into(),
            upstream: "/v1/topic/conversation/{id}".into(),
            upstream_args: vec![],
            event_from_key: true,
            client_params: Default::default(),
            upstream_params: Default::default(),
        }];
        let mut t = Translator::new(Mapping::new(&rules, &socketio::SPEC, &stomp::SPEC).unwrap());
        let op = t
            .down_op(ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("conversation:7"),
                params: Default::default(),
            })
            .unwrap();
        assert_eq!(
            op,
            ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/v1/topic/conversation/7"),
                params: Default::default(),
            }
        );
        let body = Bytes::from(r#"{"read":{"userId":"u"}}"#);
        let mut out = Vec::new();
        t.up_event(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: Some(1),
                channel: Bytes::from("/v1/topic/conversation/7"),
                event: None,
                args: vec![],
                payload: Payload::json(body.clone()),
                ack: None,
            },
            &mut out,
        );
        let BackendEvent::Message {
            event,
            payload,
            channel,
            ..
        } = &out[0]
        else {
            panic!()
        };
        assert_eq!(event.as_deref(), Some(&b"read"[..]));
        assert_eq!(payload.data, r#"{"userId":"u"}"#);
        assert_eq!(channel, "conversation:7");
        assert!(body.as_ptr() <= payload.data.as_ptr());
    }

    #[test]
    fn socketio_clients_get_unclaimed_socketio_events() {
        let mut t = Translator::new(Mapping::new(&[], &socketio::SPEC, &socketio::SPEC).unwrap());
        t.down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("a"),
            params: Default::default(),
        })
        .unwrap();
        let mut out = Vec::new();
        for name in ["a", "b"] {
            t.up_event(
                BackendEvent::Message {
                    meta: Vec::new(),
                    sub: None,
                    channel: Bytes::from(name),
                    event: None,
                    args: vec![],
                    payload: Payload::null(),
                    ack: None,
                },
                &mut out,
            );
        }
        assert!(
            matches!(&out[0], BackendEvent::Message { sub: Some(1), channel, .. } if channel == "a")
        );
        assert!(
            matches!(&out[1], BackendEvent::Message { sub: None, channel, .. } if channel == "b")
        );
    }

    #[test]
    fn unsubscribed_events_are_dropped() {
        let mut t = Translator::new(mapping(&[]));
        t.down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/topic/a"),
            params: Default::default(),
        })
        .unwrap();
        t.down_op(ClientOp::Unsubscribe { sub: 1 }).unwrap();
        let mut out = Vec::new();
        t.up_event(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: None,
                channel: Bytes::from("a"),
                event: None,
                args: vec![],
                payload: Payload::null(),
                ack: None,
            },
            &mut out,
        );
        assert!(out.is_empty());
    }
}

#[cfg(test)]
mod refused {
    use super::*;
    use crate::dialect::{socketio, stomp};
    use crate::frame::Payload;

    #[test]
    fn presence_reaches_dialects_without_it_as_documented_events() {
        let mut t = Translator::new(
            Mapping::new(&[], &stomp::SPEC, &crate::dialect::pusher::SPEC).unwrap(),
        );
        t.down_op(ClientOp::Subscribe {
            sub: 4,
            channel: Bytes::from("/topic/presence-ward"),
            params: Default::default(),
        })
        .unwrap();
        let mut out = Vec::new();
        t.up_event(
            BackendEvent::Presence {
                channel: Bytes::from("presence-ward"),
                member: Bytes::from(r#"{"user_id":"11"}"#),
                added: true,
            },
            &mut out,
        );
        let [
            BackendEvent::Message {
                sub: Some(4),
                channel,
                event,
                payload,
                ..
            },
        ] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(channel, "/topic/presence-ward");
        assert_eq!(event.as_deref(), Some(&b"presence:member_added"[..]));
        assert_eq!(payload.data, r#"{"user_id":"11"}"#);
        // A Pusher client gets Pusher's own presence events.
        let mut t = Translator::new(
            Mapping::new(
                &[],
                &crate::dialect::pusher::SPEC,
                &crate::dialect::pusher::SPEC,
            )
            .unwrap(),
        );
        let mut out = Vec::new();
        t.up_event(
            BackendEvent::Presence {
                channel: Bytes::from("presence-ward"),
                member: Bytes::from("{}"),
                added: false,
            },
            &mut out,
        );
        assert!(matches!(
            &out[..],
            [BackendEvent::Presence { added: false, .. }]
        ));
    }

    #[test]
    fn rules_with_parameters_build_and_match_identifiers() {
        use std::collections::BTreeMap;
        let to_ac = MapRule {
            client: "/topic/chat-room/{id}".into(),
            upstream: "Chats::RoomChannel".into(),
            upstream_args: vec![],
            event_from_key: false,
            client_params: BTreeMap::new(),
            upstream_params: BTreeMap::from([("id".into(), "{id}".into())]),
        };
        let ac = &crate::dialect::actioncable::SPEC;
        let mut t = Translator::new(Mapping::new(&[to_ac], &stomp::SPEC, ac).unwrap());
        let op = t
            .down_op(ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/topic/chat-room/7"),
                params: Default::default(),
            })
            .unwrap();
        let ClientOp::Subscribe {
            channel, params, ..
        } = op
        else {
            panic!()
        };
        assert_eq!(channel, "Chats::RoomChannel");
        assert_eq!(params.data.unwrap().data, r#"{"id":"7"}"#);
        // A SEND to the subscribed destination is made on that subscription.
        let op = t
            .down_op(ClientOp::Publish {
                meta: vec![],
                channel: Bytes::from("/topic/chat-room/7"),
                event: Some(Bytes::from("sendMessage")),
                args: vec![],
                payload: Payload::null(),
                reply: None,
                broadcast: false,
                sub: None,
            })
            .unwrap();
        assert!(matches!(op, ClientOp::Publish { sub: Some(1), .. }));
        // An Action Cable client's identifier, matched with its parameters.
        let from_ac = MapRule {
            client: "Chats::RoomChannel".into(),
            upstream: "chat-room-{id}".into(),
            upstream_args: vec![],
            event_from_key: false,
            client_params: BTreeMap::from([("id".into(), "{id}".into())]),
            upstream_params: BTreeMap::new(),
        };
        let mut t = Translator::new(Mapping::new(&[from_ac], ac, &socketio::SPEC).unwrap());
        let op = t
            .down_op(ClientOp::Subscribe {
                sub: 2,
                channel: Bytes::from("Chats::RoomChannel"),
                params: crate::frame::SubParams {
                    data: Some(Payload::json(Bytes::from(r#"{"id":7}"#))),
                    ..Default::default()
                },
            })
            .unwrap();
        assert!(matches!(op, ClientOp::Subscribe { channel, .. } if channel == "chat-room-7"));
    }

    #[test]
    fn subscription_parameters_travel_with_the_subscription() {
        let mut t = Translator::new(Mapping::new(&[], &stomp::SPEC, &socketio::SPEC).unwrap());
        let params = crate::frame::SubParams {
            channel_data: Some(Bytes::from(r#"{"user_id":"1"}"#)),
            ..Default::default()
        };
        let op = t
            .down_op(ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/topic/presence-x"),
                params: params.clone(),
            })
            .unwrap();
        assert!(matches!(op, ClientOp::Subscribe { params: p, .. } if p == params));
    }

    #[test]
    fn a_refused_subscription_leaves_the_table_and_claims_nothing() {
        let mut t = Translator::new(Mapping::new(&[], &socketio::SPEC, &stomp::SPEC).unwrap());
        t.down_op(ClientOp::Subscribe {
            sub: 7,
            channel: Bytes::from("news"),
            params: Default::default(),
        })
        .unwrap();
        assert!(t.has_sub(7));
        let mut out = Vec::new();
        t.up_event(
            BackendEvent::SubscribeFailed {
                sub: 7,
                reason: ErrorInfo::new(ErrorKind::Unauthorized, "no"),
            },
            &mut out,
        );
        assert!(matches!(
            &out[0],
            BackendEvent::SubscribeFailed { sub: 7, .. }
        ));
        assert!(!t.has_sub(7));
        // An event on that channel is no longer delivered on the refused subscription.
        out.clear();
        t.up_event(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: None,
                channel: Bytes::from("/topic/news"),
                event: None,
                args: vec![],
                payload: Payload::null(),
                ack: None,
            },
            &mut out,
        );
        assert!(
            out.iter()
                .all(|e| !matches!(e, BackendEvent::Message { sub: Some(7), .. }))
        );
    }
}
