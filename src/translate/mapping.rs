//! The route-level mapping: `[[route.map]]` rules and both dialects' default naming, compiled
//! once per route and shared by every session of it.
//!
//! Owns: [`Mapping`] and what it answers: the upstream name of a client name (by the first
//! rule that matches, with the rule's leading arguments and subscription parameters, else by
//! the two dialects' conventions), the client name of an upstream name, and whether a name is
//! in its dialect's channel form.
//!
//! Must not touch: a session's subscriptions (the translator's, in `mod.rs`), wire bytes, I/O.
//! Nothing here changes once it is built.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::MapRule;
use crate::dialect::{Naming, Spec};
use crate::frame::Payload;
use crate::template::Template;

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
pub(super) struct Mapped {
    pub(super) name: String,
    /// Leading arguments (raw JSON strings).
    pub(super) args: Vec<Bytes>,
    pub(super) event_from_key: bool,
    /// Subscription parameters built by the rule (a JSON object), if it has any.
    pub(super) params: Option<Bytes>,
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
pub(super) enum Use {
    Subscribe,
    Publish,
}

/// A dialect's default naming ([`Naming`]), parsed once per route.
#[derive(Debug)]
pub(super) struct Defaults {
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

    /// The neutral `{name}` of a name in this dialect's convention (a slice of `name`).
    fn neutral<'n>(&self, name: &'n str, use_: Use) -> Option<&'n str> {
        self.of(use_).iter().find_map(|t| t.capture(name, "name"))
    }

    /// Whether `name` is in this dialect's channel form and not in its event form: where
    /// the two differ (STOMP `/topic/x` against `/app/x`), a publish there goes to the
    /// channel's subscribers.
    pub(super) fn is_channel_name(&self, name: &str) -> bool {
        let event = self.publish.first().is_some_and(|t| t.is_match(name));
        !event && self.subscribe.iter().any(|t| t.is_match(name))
    }

    /// This dialect's name for a neutral `{name}`, in one exact allocation.
    fn build(&self, neutral: &str, use_: Use) -> Option<String> {
        self.of(use_).first()?.fill_one("name", neutral)
    }
}

/// Route-level mapping rules, shared by every session of a route.
#[derive(Debug, Clone)]
pub struct Mapping {
    rules: Arc<[Rule]>,
    pub(super) down: Arc<Defaults>,
    up: Arc<Defaults>,
    /// Both legs speak the same dialect: names mean the same on both sides.
    same: bool,
    /// The client dialect hears events nobody subscribed to (Socket.IO clients hear
    /// `io.emit`).
    pub(super) deliver_unclaimed: bool,
    /// The client dialect has presence of its own (Pusher); otherwise presence changes
    /// reach it as `presence:member_added` / `presence:member_removed` events on the
    /// subscriptions of that channel (PROTOCOLS §6.5).
    pub(super) down_presence: bool,
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
    pub(super) fn to_upstream(
        &self,
        name: &str,
        params: Option<&Payload>,
        use_: Use,
    ) -> Option<Mapped> {
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
    pub(super) fn to_downstream(&self, name: &str) -> Option<String> {
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
