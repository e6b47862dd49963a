//! Translation between the downstream dialect's naming and the upstream dialect's naming.
//!
//! Owns: route templates (`[[route.map]]`), the per-dialect default conventions, and the
//! session's subscription table (which backend events a client subscription receives).
//!
//! Must not touch: wire bytes, I/O, timers. It sees neutral frames only and is pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::MapRule;
use crate::dialect::Dialect;
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Payload, SubId};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

/// A name template such as `/v1/topic/conversation/{id}` or `conversation:{id}`.
/// A `{var}` matches one or more characters other than `/`, up to the next literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Captured template variables.
pub type Captures = BTreeMap<String, String>;

impl Template {
    /// Parse a template; `{` and `}` delimit variable names.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed `{{` in `{s}`"))?;
                    let name = rest.get(1..end).unwrap_or_default();
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!("bad variable name `{name}` in `{s}`"));
                    }
                    if matches!(parts.last(), Some(Part::Var(_))) {
                        return Err(format!("two variables must be separated by text in `{s}`"));
                    }
                    parts.push(Part::Var(name.to_owned()));
                    rest = rest.get(end + 1..).unwrap_or_default();
                }
                Some(i) => {
                    parts.push(Part::Lit(rest.get(..i).unwrap_or_default().to_owned()));
                    rest = rest.get(i..).unwrap_or_default();
                }
                None => {
                    if rest.contains('}') {
                        return Err(format!("stray `}}` in `{s}`"));
                    }
                    parts.push(Part::Lit(rest.to_owned()));
                    rest = "";
                }
            }
        }
        if parts.is_empty() {
            return Err("empty template".into());
        }
        Ok(Self { parts })
    }

    /// Check that a map rule's two sides agree on their variables.
    pub fn check_pair(rule: &MapRule) -> Result<(), String> {
        let client = Self::parse(&rule.client)?;
        let upstream = Self::parse(&rule.upstream)?;
        let mut up_vars = upstream.vars();
        for a in &rule.upstream_args {
            up_vars.extend(Self::parse(a)?.vars());
        }
        for v in client.vars() {
            if !up_vars.contains(&v) {
                return Err(format!(
                    "variable `{{{v}}}` of `client` is not used on the upstream side"
                ));
            }
        }
        for v in &up_vars {
            if !client.vars().contains(v) {
                return Err(format!("variable `{{{v}}}` is not captured by `client`"));
            }
        }
        Ok(())
    }

    fn vars(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(v) => Some(v.clone()),
                Part::Lit(_) => None,
            })
            .collect()
    }

    /// Match a name, returning the captures.
    pub fn matches(&self, name: &str) -> Option<Captures> {
        let mut caps = Captures::new();
        let mut rest = name;
        let mut parts = self.parts.iter().peekable();
        while let Some(p) = parts.next() {
            match p {
                Part::Lit(l) => rest = rest.strip_prefix(l.as_str())?,
                Part::Var(v) => {
                    let end = match parts.peek() {
                        Some(Part::Lit(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    let value = rest.get(..end)?;
                    if value.is_empty() || value.contains('/') {
                        return None;
                    }
                    caps.insert(v.clone(), value.to_owned());
                    rest = rest.get(end..)?;
                }
            }
        }
        rest.is_empty().then_some(caps)
    }

    /// Fill the template from captures.
    pub fn fill(&self, caps: &Captures) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => out.push_str(caps.get(v)?),
            }
        }
        Some(out)
    }
}

/// A compiled `[[route.map]]` entry.
#[derive(Debug, Clone)]
struct Rule {
    client: Template,
    upstream: Template,
    upstream_args: Vec<Template>,
    event_from_key: bool,
}

/// Whether a name is used to subscribe or to publish (dialects like STOMP name them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Subscribe,
    Publish,
}

/// The default convention of a dialect for turning its names into neutral ones and back.
fn default_template(d: Dialect, use_: Use) -> &'static [&'static str] {
    match (d, use_) {
        (Dialect::Stomp, Use::Subscribe) => &["/topic/{name}"],
        (Dialect::Stomp, Use::Publish) => &["/app/{name}", "/topic/{name}"],
        _ => &["{name}"],
    }
}

/// Route-level mapping rules, shared by every session of a route.
#[derive(Debug, Clone)]
pub struct Mapping {
    rules: Arc<[Rule]>,
    down: Dialect,
    up: Dialect,
}

impl Mapping {
    /// Compile a route's rules. Rules were checked by `Config::validate`.
    pub fn new(rules: &[MapRule], down: Dialect, up: Dialect) -> Result<Self, String> {
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
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            rules: rules.into(),
            down,
            up,
        })
    }

    /// Map a downstream name to (upstream name, leading args as JSON strings, whether the
    /// event is named by the body's key).
    fn to_upstream(&self, name: &str, use_: Use) -> Option<(String, Vec<Bytes>, bool)> {
        for r in self.rules.iter() {
            if let Some(caps) = r.client.matches(name) {
                let up = r.upstream.fill(&caps)?;
                let args = r
                    .upstream_args
                    .iter()
                    .map(|a| a.fill(&caps).map(|s| json_str(&s)))
                    .collect::<Option<Vec<_>>>()?;
                return Some((up, args, r.event_from_key));
            }
        }
        // Same dialect on both legs: names mean the same thing on both sides.
        if self.down == self.up {
            return Some((name.to_owned(), Vec::new(), false));
        }
        let neutral = default_template(self.down, use_)
            .iter()
            .find_map(|t| Template::parse(t).ok()?.matches(name)?.remove("name"))?;
        let mut caps = Captures::new();
        caps.insert("name".into(), neutral);
        let up = Template::parse(default_template(self.up, use_).first()?)
            .ok()?
            .fill(&caps)?;
        Some((up, Vec::new(), false))
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
        if self.down == self.up {
            return Some(name.to_owned());
        }
        let neutral = default_template(self.up, Use::Subscribe)
            .iter()
            .find_map(|t| Template::parse(t).ok()?.matches(name)?.remove("name"))?;
        let mut caps = Captures::new();
        caps.insert("name".into(), neutral);
        Template::parse(default_template(self.down, Use::Subscribe).first()?)
            .ok()?
            .fill(&caps)
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
            ClientOp::Subscribe { sub, channel } => {
                let name = utf8(&channel)?;
                let (up, args, event_from_key) = self
                    .mapping
                    .to_upstream(name, Use::Subscribe)
                    .ok_or_else(|| {
                        ErrorInfo::new(
                            ErrorKind::Untranslatable,
                            format!("no route for destination {name}"),
                        )
                    })?;
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
                Ok(ClientOp::Subscribe { sub, channel: up })
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
            } => {
                let name = utf8(&channel)?;
                let (up, mut rule_args, _) = self
                    .mapping
                    .to_upstream(name, Use::Publish)
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
                })
            }
            other => Ok(other),
        }
    }

    /// Whether any subscription is still active on `sub`'s upstream name (so an upstream
    /// leg without wire subscriptions knows nothing more is needed).
    pub fn has_sub(&self, sub: SubId) -> bool {
        self.subs.contains_key(&sub)
    }

    /// Rewrite an upstream event into the downstream's naming, fanning a message out to
    /// every subscription it matches. Messages nobody subscribed to are dropped.
    pub fn up_event(&self, ev: BackendEvent, out: &mut Vec<BackendEvent>) {
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
                if matched.is_empty() && self.mapping.down == Dialect::Socketio {
                    // Socket.IO clients have no subscribe on the wire: they listen to what
                    // their backend emits. Events no subscription claims go to them as-is.
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
    use crate::frame::Payload;

    fn mapping(rules: &[(&str, &str, &[&str])]) -> Mapping {
        let rules: Vec<MapRule> = rules
            .iter()
            .map(|(c, u, a)| MapRule {
                client: (*c).into(),
                upstream: (*u).into(),
                upstream_args: a.iter().map(|s| (*s).to_owned()).collect(),
                event_from_key: false,
            })
            .collect();
        Mapping::new(&rules, Dialect::Stomp, Dialect::Socketio).unwrap()
    }

    #[test]
    fn template_matches_and_fills() {
        let t = Template::parse("/v1/topic/conversation/{id}").unwrap();
        let caps = t.matches("/v1/topic/conversation/28cc-f5").unwrap();
        assert_eq!(caps["id"], "28cc-f5");
        assert!(t.matches("/v1/topic/conversation/a/b").is_none());
        assert!(t.matches("/v1/topic/conversation/").is_none());
        let u = Template::parse("conversation:{id}").unwrap();
        assert_eq!(u.fill(&caps).unwrap(), "conversation:28cc-f5");
        let two = Template::parse("/v1/app/conversation/{id}/typing/{what}").unwrap();
        let c = two.matches("/v1/app/conversation/7/typing/start").unwrap();
        assert_eq!((c["id"].as_str(), c["what"].as_str()), ("7", "start"));
    }

    #[test]
    fn template_errors() {
        assert!(Template::parse("a{b").is_err());
        assert!(Template::parse("{a}{b}").is_err());
        assert!(Template::parse("a}").is_err());
        assert!(Template::parse("{}").is_err());
    }

    #[test]
    fn default_stomp_to_socketio() {
        let mut t = Translator::new(mapping(&[]));
        let op = t
            .down_op(ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/topic/message_created"),
            })
            .unwrap();
        assert_eq!(
            op,
            ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("message_created")
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
            })
            .unwrap();
        assert!(matches!(op, ClientOp::Publish { channel, .. } if channel == "message_deleted"));
        let err = t
            .down_op(ClientOp::Subscribe {
                sub: 2,
                channel: Bytes::from("/queue/x"),
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
        })
        .unwrap();
        t.down_op(ClientOp::Subscribe {
            sub: 2,
            channel: Bytes::from("/v1/topic/conversation/b"),
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
        }];
        let mut t =
            Translator::new(Mapping::new(&rules, Dialect::Socketio, Dialect::Stomp).unwrap());
        let op = t
            .down_op(ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("conversation:7"),
            })
            .unwrap();
        assert_eq!(
            op,
            ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/v1/topic/conversation/7")
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
        let mut t =
            Translator::new(Mapping::new(&[], Dialect::Socketio, Dialect::Socketio).unwrap());
        t.down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("a"),
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
