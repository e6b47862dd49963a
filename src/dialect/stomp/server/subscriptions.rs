//! SUBSCRIBE and UNSUBSCRIBE: the client's subscription ids (the destination under STOMP 1.0),
//! ack modes, the subscription limit, and a RECEIPT waiting for the upstream's confirmation.
//!
//! Must not touch: MESSAGE delivery and acks (`delivery.rs`), the RECEIPT queue itself
//! (`receipts.rs`).

use std::collections::VecDeque;

use bytes::Bytes;

use super::{AckMode, StompServer, Sub, Wait};
use crate::dialect::ServerOut;
use crate::dialect::stomp::codec::{Frame, Version};
use crate::frame::{ClientOp, SubId};

impl StompServer {
    pub(super) fn on_subscribe(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        let Some(dest) = f.header("destination").cloned() else {
            return self.fatal(
                "missing destination",
                b"SUBSCRIBE needs a destination header",
                receipt,
                1002,
                out,
            );
        };
        // STOMP 1.0 allows SUBSCRIBE without an id: the destination then names it.
        let id = match f.header("id") {
            Some(id) => id.clone(),
            None if self.version == Version::V1_0 => dest.clone(),
            None => {
                return self.fatal(
                    "missing id",
                    b"SUBSCRIBE needs an id header",
                    receipt,
                    1002,
                    out,
                );
            }
        };
        if self.by_stomp_id.contains_key(&id) {
            return self.fatal("duplicate subscription id", &id, receipt, 1002, out);
        }
        if self.subs.len() >= self.settings.max_subscriptions {
            return self.fatal("too many subscriptions", b"", receipt, 1008, out);
        }
        let ack = match f.header_str("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => {
                let detail = format!("unknown ack mode {other}");
                return self.fatal("bad ack mode", detail.as_bytes(), receipt, 1002, out);
            }
        };
        let sub = self.next_sub;
        self.next_sub += 1;
        if let Some(r) = receipt {
            if !self.queue_receipt(r, Wait::Subscribed(sub), out) {
                return;
            }
        }
        // Its own copy: kept for the subscription's life, where a slice would keep the
        // whole message it came in (an id, not payload: not a counted copy).
        let id = Bytes::copy_from_slice(&id);
        self.by_stomp_id.insert(id.clone(), sub);
        self.subs.insert(
            sub,
            Sub {
                stomp_id: id,
                ack,
                unacked: VecDeque::new(),
                tokens: 0,
            },
        );
        out.ops.push(ClientOp::Subscribe {
            sub,
            channel: dest,
            params: Default::default(),
        });
    }

    pub(super) fn on_unsubscribe(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        // Only STOMP 1.0 names a subscription by its destination.
        let id = match f.header("id") {
            Some(id) => Some(id.clone()),
            None if self.version == Version::V1_0 => f.header("destination").cloned(),
            None => None,
        };
        let Some(id) = id else {
            return self.fatal(
                "missing id",
                b"UNSUBSCRIBE needs an id header",
                receipt,
                1002,
                out,
            );
        };
        if let Some(sub) = self.by_stomp_id.remove(&id) {
            if let Some(s) = self.subs.remove(&sub) {
                // The broker takes back what was not acknowledged when the subscription ends.
                self.forget_tokens(sub, s);
            }
            // Its confirmation no longer matters; a receipt waiting on it must not block.
            self.resolve(Wait::Subscribed(sub), out);
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }

    /// Drops the ack tokens of an ended subscription: by its own list in `client` mode,
    /// else by a scan, made only when it holds any (a SUBSCRIBE and UNSUBSCRIBE repeated
    /// against a full table cost a scan of 65,536 entries each).
    pub(super) fn forget_tokens(&mut self, sub: SubId, s: Sub) {
        if s.tokens == 0 {
            return;
        }
        if s.ack == AckMode::Client {
            for id in &s.unacked {
                self.ack_tokens.remove(id);
            }
        } else {
            self.ack_tokens.retain(|_, (t, _)| *t != sub);
        }
    }
}
