//! The STOMP client role: the proxy plays a STOMP 1.2 client (1.0/1.1 accepted) toward a
//! broker.
//!
//! Owns: CONNECT with the client's credentials as the route says, heart-beat negotiation,
//! subscription ids, receipts correlated to replies and subscriptions (with timeouts),
//! ACK/NACK in client ack mode, and turning broker ERROR frames into neutral errors.
//!
//! Must not touch: I/O, timers, naming (destinations arrive already translated).
//!
//! # Layout
//!
//! - `mod.rs`: [`Settings`], [`TokenAs`], the role's state ([`StompClient`]), writing frames,
//!   the receipt table, failing the session and what waits on it.
//! - `connect.rs`: the CONNECT frame: where the client's login, passcode or token go.
//! - `inbound.rs`: frames from the broker: CONNECTED (version and heart-beat negotiation),
//!   RECEIPT, MESSAGE and ERROR.
//! - `acks.rs`: ACK/NACK: the token naming a MESSAGE under each STOMP version, and the frame.
//! - `role.rs`: the [`ClientRole`](crate::dialect::ClientRole) impl: ops to SUBSCRIBE, SEND,
//!   ACK and DISCONNECT frames (held until CONNECTED), decoding, keepalive, receipt timeouts.

mod acks;
mod connect;
mod inbound;
mod role;
#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{self, Decoder, Frame, Limits, Version};
use crate::dialect::hold::HoldQueue;
use crate::dialect::pending::{self, Pending};
use crate::dialect::{ClientOut, Close, Keepalive, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Reply, ReplyId, SubId,
};

/// Where a client's bearer token goes in the broker's CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAs {
    /// `passcode:<token>` (with `login` if one is configured).
    Passcode,
    /// `Authorization:Bearer <token>`.
    Authorization,
    /// Not sent.
    None,
}

/// Settings of the STOMP client role, from `[route.upstream]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The CONNECT `host` header.
    pub host: String,
    /// Heart-beat we offer: (send every, expect every) in ms.
    pub heartbeat: (u64, u64),
    /// Where a bearer token goes.
    pub token_as: TokenAs,
    /// Fixed login when the client gave none.
    pub login: Option<String>,
    /// Fixed passcode when the client gave none.
    pub passcode: Option<String>,
    /// `client-individual` subscriptions (messages acked explicitly) instead of `auto`.
    pub client_ack: bool,
    /// Ack each delivered message as soon as it is handed downstream (downstreams that
    /// cannot ack themselves).
    pub ack_on_delivery: bool,
    /// Receipts fail after this long; also bounds the wait for CONNECTED.
    pub receipt_timeout: Duration,
    /// Frame limits.
    pub limits: Limits,
    /// Most operations held while CONNECT is in flight.
    pub max_queued_ops: usize,
    /// Most bytes of operations held while CONNECT is in flight (see [`ClientOp::held_bytes`]): with
    /// the count alone, 1024 frames of the largest size could wait. The session sets it to
    /// its own budget for ops held while dialing, so whatever it hands over fits.
    pub max_queued_bytes: usize,
}

/// The default of [`Settings::max_queued_bytes`]: hundreds of ordinary frames, and the STOMP
/// server role's transaction budget too.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "/".into(),
            heartbeat: (10_000, 10_000),
            token_as: TokenAs::Passcode,
            login: None,
            passcode: None,
            client_ack: false,
            ack_on_delivery: false,
            receipt_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            max_queued_ops: 1024,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Closed,
}

/// Most receipts awaited at once. Far above what a downstream leg has in flight (the server
/// roles cap their own receipts and acks in the low thousands); a SEND or SUBSCRIBE past it
/// is refused rather than sent without a receipt nobody could answer.
const MAX_PENDING_RECEIPTS: usize = 65_536;

/// What a receipt we asked the broker for answers.
#[derive(Debug, Clone, Copy)]
enum ReceiptFor {
    Reply(ReplyId),
    Subscribe(SubId),
}

impl ReceiptFor {
    /// The event telling the downstream leg this request failed.
    fn failed(self, reason: ErrorInfo) -> BackendEvent {
        match self {
            Self::Reply(id) => BackendEvent::Reply {
                id,
                result: Err(reason),
            },
            Self::Subscribe(sub) => BackendEvent::SubscribeFailed { sub, reason },
        }
    }
}

/// The STOMP client role of one session.
#[derive(Debug)]
pub struct StompClient {
    settings: Settings,
    credentials: Credentials,
    state: State,
    version: Version,
    decoder: Decoder,
    keepalive: Keepalive,
    /// Ops held while CONNECT is in flight.
    queued: HoldQueue,
    next_receipt: u64,
    /// Receipt id → what it answers.
    pending: Pending<Bytes, ReceiptFor>,
    copied: crate::dialect::Copied,
    /// Decoded items of the message being handled (kept for its capacity).
    items: Vec<crate::dialect::stomp::codec::Item>,
}

impl StompClient {
    /// A client role that will CONNECT with `credentials`.
    pub fn new(settings: Settings, credentials: Credentials) -> Self {
        Self {
            decoder: Decoder::new(settings.limits.clone()).pausing_after_handshake(),
            queued: HoldQueue::new(settings.max_queued_ops, settings.max_queued_bytes),
            settings,
            credentials,
            state: State::Connecting,
            version: Version::V1_2,
            keepalive: Keepalive::default(),
            next_receipt: 1,
            pending: Pending::new(MAX_PENDING_RECEIPTS),
            copied: crate::dialect::Copied::default(),
            items: Vec::new(),
        }
    }

    fn send(&self, f: &Frame, out: &mut ClientOut) {
        let bytes = codec::encode_to_bytes(f, self.version);
        if std::str::from_utf8(&f.body).is_ok() {
            out.to_backend.push(WsMsg::Text(bytes));
        } else {
            out.to_backend.push(WsMsg::Binary(bytes));
        }
    }

    /// A fresh receipt id awaited for `p`, or why none can be awaited.
    fn receipt_id(&mut self, p: ReceiptFor, now: Instant) -> Result<Bytes, ErrorInfo> {
        let id = Bytes::from(format!("sb-{}", self.next_receipt));
        let deadline = pending::deadline(now, self.settings.receipt_timeout);
        self.pending
            .insert(id.clone(), p, deadline)
            .map_err(|e| ErrorInfo::new(ErrorKind::Limit, e.to_string()))?;
        self.next_receipt += 1;
        Ok(id)
    }

    fn fail(&mut self, e: ErrorInfo, out: &mut ClientOut) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.fail_pending(&e, out);
        out.events.push(BackendEvent::Error(e));
        out.close = Some(Close::normal());
    }

    fn fail_pending(&mut self, e: &ErrorInfo, out: &mut ClientOut) {
        let mut all = self.pending.drain();
        // Receipt-id byte order (`sb-10` before `sb-2`), as before the table was a `Pending`;
        // its own order is insertion order.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, p) in all {
            out.events.push(p.failed(e.clone()));
        }
        for op in self.queued.drain() {
            if let ClientOp::Publish {
                reply: Some(Reply { id, .. }),
                ..
            } = op
            {
                out.events.push(BackendEvent::Reply {
                    id,
                    result: Err(e.clone()),
                });
            }
        }
    }
}
