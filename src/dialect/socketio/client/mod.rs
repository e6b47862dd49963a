//! The Socket.IO client role: the proxy plays a socket.io-client toward a Socket.IO v4 backend.
//!
//! Owns: the Engine.IO open/ping/pong exchange and its liveness deadline, the namespace CONNECT
//! with the auth payload, emit with or without ack ids, the ack correlation table with
//! timeouts, binary attachments both ways (refusing binary that one neutral payload cannot
//! carry), stripping connection-state-recovery offsets, and turning CONNECT_ERROR/DISCONNECT
//! into neutral errors.
//!
//! Toward a Socket.IO client ([`Settings::scoped`]) the client's namespaces and packet shapes
//! are carried instead of one namespace and single payloads (`scoped.rs`).
//!
//! Must not touch: I/O, timers, naming (the translator has already rewritten names).
//!
//! # Layout
//!
//! - `mod.rs`: [`Settings`], the role's state ([`SocketioClient`]), writing a packet within the
//!   backend's maxPayload, the CONNECT auth payload, failing the session and its pending acks.
//! - `emit.rs`: toward the backend: publishes as emits (with an ack id when an answer is
//!   awaited), and the answers to the backend's own ack requests.
//! - `inbound.rs`: Socket.IO packets from the backend: the CONNECT reply or refusal, events
//!   (recovery offsets stripped, binary resolved to one payload), acks of our emits.
//! - `scoped.rs`: toward a Socket.IO client ([`Settings::scoped`]): its namespaces joined
//!   one for one over the one connection, events and acks forwarded in their shape.
//! - `role.rs`: the [`ClientRole`](crate::dialect::ClientRole) impl: Engine.IO packets, ops
//!   held until the namespace is joined, keepalive and ack timeouts.

mod emit;
mod inbound;
mod role;
mod scoped;
#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::engineio::{self, Packet as Eio};
use super::packet::{self, Decoder, Packet};
use crate::dialect::hold::HoldQueue;
use crate::dialect::pending::Pending;
use crate::dialect::{ClientOut, Close, Keepalive, WsMsg};
use crate::frame::{BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Reply, ReplyId};

/// Settings of the Socket.IO client role, from `[route.upstream]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace to join.
    pub namespace: String,
    /// Ask the backend to ack publishes that want a reply.
    pub acks: bool,
    /// Pending acks fail after this long.
    pub ack_timeout: Duration,
    /// Most attachments accepted in one binary packet.
    pub max_attachments: usize,
    /// Most operations held while the namespace CONNECT is in flight.
    pub max_queued_ops: usize,
    /// Most bytes of those operations ([`ClientOp::held_bytes`]).
    pub max_queued_bytes: usize,
    /// The downstream client speaks Socket.IO too: the session is the Engine.IO connection,
    /// its namespaces are joined one for one as the client joins them (`namespace` is not
    /// used), and events and acks keep their shape, ack ids always carried.
    pub scoped: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "/".into(),
            acks: false,
            ack_timeout: Duration::from_secs(10),
            max_attachments: 10,
            max_queued_ops: 1024,
            max_queued_bytes: 4 << 20,
            scoped: false,
        }
    }
}

/// Most emits waiting for the backend's ack at once. Far above what a downstream leg has in
/// flight (the server roles cap their own acks and receipts in the low thousands); an emit
/// past it is refused rather than sent with an ack id nobody would correlate.
const MAX_PENDING_ACKS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the Engine.IO open packet.
    AwaitOpen,
    /// Namespace CONNECT sent.
    Connecting,
    Connected,
    Closed,
}

/// The Socket.IO client role of one session.
#[derive(Debug)]
pub struct SocketioClient {
    settings: Settings,
    credentials: Credentials,
    state: State,
    nsp: Bytes,
    decoder: Decoder,
    keepalive: Keepalive,
    max_payload: usize,
    /// Set when the CONNECT reply had a `pid`: stored events then carry a trailing offset.
    recovery: bool,
    /// Ops held until the namespace is joined.
    queued: HoldQueue,
    next_ack: u64,
    /// Our ack id → the reply it answers.
    pending: Pending<u64, ReplyId>,
    /// Scoped mode: the namespaces joined (or being joined) on the backend.
    scopes: Vec<Bytes>,
    copied: crate::dialect::Copied,
}

impl SocketioClient {
    /// A client role that will authenticate with `credentials`.
    pub fn new(settings: Settings, credentials: Credentials) -> Self {
        let nsp = Bytes::from(settings.namespace.clone());
        Self {
            decoder: Decoder::new(settings.max_attachments),
            queued: HoldQueue::new(settings.max_queued_ops, settings.max_queued_bytes),
            settings,
            credentials,
            state: State::AwaitOpen,
            nsp,
            keepalive: Keepalive::default(),
            max_payload: 1_000_000,
            recovery: false,
            next_ack: 0,
            pending: Pending::new(MAX_PENDING_ACKS),
            scopes: Vec::new(),
            copied: crate::dialect::Copied::default(),
        }
    }

    fn send_packet(&self, p: &Packet, out: &mut ClientOut) -> Result<(), ErrorInfo> {
        let data = p
            .data
            .as_deref()
            .map_or(packet::Data::None, packet::Data::Raw);
        let head = packet::Head {
            kind: p.kind,
            nsp: &p.nsp,
            id: p.id,
            attachments: p.attachments.len(),
        };
        self.send_parts(&head, &data, &p.attachments, out)
    }

    /// Writes one packet as an Engine.IO `message` (`4` + header + data, built once in a
    /// buffer of its exact length), then its attachments, each a binary message.
    fn send_parts(
        &self,
        head: &packet::Head<'_>,
        data: &packet::Data<'_>,
        attachments: &[Bytes],
        out: &mut ClientOut,
    ) -> Result<(), ErrorInfo> {
        // maxPayload is the backend's `ws` maxPayload: it bounds each WebSocket message on its
        // own (the `4`-prefixed text packet, and every attachment frame), not their sum.
        let size = attachments
            .iter()
            .map(Bytes::len)
            .fold(packet::encoded_len(b"4", head, data), usize::max);
        if size > self.max_payload {
            return Err(ErrorInfo::new(
                ErrorKind::Limit,
                format!(
                    "message of {size} bytes exceeds the backend's maxPayload of {}",
                    self.max_payload
                ),
            ));
        }
        out.to_backend.reserve(1 + attachments.len());
        out.to_backend
            .push(WsMsg::Text(packet::encode_parts(b"4", head, data)));
        for a in attachments {
            out.to_backend
                .push(engineio::encode_ws(&Eio::Binary(a.clone())));
        }
        Ok(())
    }

    fn auth_payload(&mut self) -> Option<Bytes> {
        if let Some(a) = &self.credentials.auth_json {
            return Some(a.clone());
        }
        let token = self.credentials.token.as_ref()?;
        let s = packet::json_string(token);
        let mut b = BytesMut::with_capacity(s.len() + 10);
        b.extend_from_slice(b"{\"token\":");
        b.extend_from_slice(&s);
        b.extend_from_slice(b"}");
        Some(b.freeze())
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
        // Insertion order is ack-id order: ids only grow.
        for (_, id) in self.pending.drain() {
            out.events.push(BackendEvent::Reply {
                id,
                result: Err(e.clone()),
            });
        }
        for op in self.queued.drain() {
            if let ClientOp::Publish {
                reply: Some(Reply { id, .. }),
                ..
            }
            | ClientOp::Emit {
                reply: Some(id), ..
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
