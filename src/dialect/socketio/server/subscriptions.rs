//! Subscriptions: the `subscribe`/`unsubscribe` event convention (`{"topic":"<name>"}` or a
//! bare string, answered through the emit's ack), the subscription table and its limit,
//! reserved topics, and the auto-subscriptions filled from the auth object and query once the
//! upstream is ready.
//!
//! Must not touch: namespace joins (`namespaces.rs`), deliveries on a subscription
//! (`delivery.rs`), the backend's `Subscribed`/`SubscribeFailed` answers (`role.rs`).

use bytes::Bytes;

use super::namespaces::auth_fields;
use super::wire::{ack, is_reserved, named_error_ack};
use super::{SocketioServer, Sub};
use crate::dialect::ServerOut;
use crate::frame::{ClientOp, SubId};
use crate::template::Captures;

/// Most repeats of one subscribe that wait for the backend's answer; more are answered at
/// once with an error (each waiting one is an answer to build when the backend answers).
const MAX_WAITING_ACKS: usize = 64;

impl SocketioServer {
    pub(super) fn on_subscribe(
        &mut self,
        nsp: &Bytes,
        id: Option<u64>,
        arg: Option<&Bytes>,
        out: &mut ServerOut,
    ) {
        let Some(topic) = arg.and_then(|a| topic_of(a)) else {
            if let Some(id) = id {
                out.to_client.push(named_error_ack(
                    nsp,
                    id,
                    "SubscribeError",
                    br#"subscribe needs a topic: {"topic":"<name>"}"#,
                ));
            }
            return;
        };
        self.subscribe(nsp, topic, id, out);
    }

    pub(super) fn subscribe(
        &mut self,
        nsp: &Bytes,
        topic: Bytes,
        id: Option<u64>,
        out: &mut ServerOut,
    ) {
        if is_reserved(&topic) {
            // Its deliveries would be named after the topic, and socket.io-client treats
            // those names as its own lifecycle events (`42["disconnect"]` would fake one).
            if let Some(id) = id {
                let mut msg = b"`".to_vec();
                msg.extend_from_slice(&topic);
                msg.extend_from_slice(b"` is a reserved event name");
                out.to_client
                    .push(named_error_ack(nsp, id, "SubscribeError", &msg));
            }
            return;
        }
        if let Some(s) = self
            .subs
            .values_mut()
            .find(|s| s.nsp == nsp && s.topic == topic)
        {
            // A repeat: answered with the first one's outcome (at once once confirmed).
            if let Some(id) = id {
                if s.confirmed {
                    out.to_client.push(ack(nsp, id, b"[null]"));
                } else if s.acks.len() >= MAX_WAITING_ACKS {
                    out.to_client.push(named_error_ack(
                        nsp,
                        id,
                        "SubscribeError",
                        b"too many subscribe requests waiting for this topic",
                    ));
                } else {
                    s.acks.push(id);
                }
            }
            return;
        }
        if self.subs.len() >= self.settings.max_subscriptions {
            if let Some(id) = id {
                out.to_client.push(named_error_ack(
                    nsp,
                    id,
                    "SubscribeError",
                    b"too many subscriptions",
                ));
            }
            return;
        }
        let sub = self.next_sub;
        self.next_sub += 1;
        self.subs.insert(
            sub,
            Sub {
                nsp: Bytes::copy_from_slice(nsp),
                // Its own copy: kept for the subscription's life, where a slice would keep
                // the whole message it came in.
                topic: Bytes::copy_from_slice(&topic),
                acks: id.into_iter().collect(),
                confirmed: false,
            },
        );
        out.ops.push(ClientOp::Subscribe {
            sub,
            channel: topic,
            params: Default::default(),
        });
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        nsp: &Bytes,
        id: Option<u64>,
        arg: Option<&Bytes>,
        out: &mut ServerOut,
    ) {
        let Some(topic) = arg.and_then(|a| topic_of(a)) else {
            if let Some(id) = id {
                out.to_client.push(named_error_ack(
                    nsp,
                    id,
                    "SubscribeError",
                    br#"unsubscribe needs a topic: {"topic":"<name>"}"#,
                ));
            }
            return;
        };
        let mut gone: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.nsp == nsp && s.topic == topic)
            .map(|(id, _)| *id)
            .collect();
        gone.sort_unstable();
        for sub in gone {
            // Its subscribes' acks would otherwise never come: the backend's answer finds no
            // subscription.
            for waiting in self.subs.remove(&sub).map(|s| s.acks).unwrap_or_default() {
                out.to_client.push(named_error_ack(
                    nsp,
                    waiting,
                    "SubscribeError",
                    b"unsubscribed before the subscription was confirmed",
                ));
            }
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
        if let Some(id) = id {
            out.to_client.push(ack(nsp, id, b"[null]"));
        }
    }

    pub(super) fn auto_subscribe(&mut self, out: &mut ServerOut) {
        if self.settings.auto_subscribe.is_empty() {
            return;
        }
        let Some(nsp) = self.primary.clone() else {
            return;
        };
        if self.nsp_index(&nsp).is_none() {
            return;
        }
        let caps = captures(&self.query, self.auth.as_deref());
        let topics: Vec<String> = self
            .settings
            .auto_subscribe
            .iter()
            .filter_map(|t| t.fill(&caps))
            .collect();
        for topic in topics {
            self.subscribe(&nsp, Bytes::from(topic), None, out);
        }
    }
}

/// The topic of a `subscribe`/`unsubscribe` argument: `{"topic":"<name>"}` or `"<name>"`.
pub(super) fn topic_of(arg: &[u8]) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct T {
        topic: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Arg {
        Bare(String),
        Object(T),
    }
    let topic = match serde_json::from_slice::<Arg>(arg).ok()? {
        Arg::Bare(s) => s,
        Arg::Object(t) => t.topic,
    };
    (!topic.is_empty()).then(|| Bytes::from(topic))
}

/// Template variables from the handshake query and the auth object (auth wins). Only
/// non-empty strings and numbers count; a template missing a variable is not filled.
fn captures(query: &str, auth: Option<&[u8]>) -> Captures {
    let mut caps = Captures::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if !v.is_empty() {
            caps.insert(k.into_owned(), v.into_owned());
        }
    }
    if let Some(fields) = auth.and_then(auth_fields) {
        for (k, raw) in fields {
            let text = raw.get();
            let value = match text.as_bytes().first() {
                Some(b'"') => serde_json::from_str::<String>(text).ok(),
                Some(b'-' | b'0'..=b'9') => Some(text.to_owned()),
                _ => None,
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                caps.insert(k, v);
            }
        }
    }
    caps
}
