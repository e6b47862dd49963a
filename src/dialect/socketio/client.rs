//! The Socket.IO client role: the proxy plays a socket.io-client toward a Socket.IO v4 backend.
//!
//! Owns: the Engine.IO open/ping/pong exchange and its liveness deadline, the namespace CONNECT
//! with the auth payload, emit with or without ack ids, the ack correlation table with
//! timeouts, binary attachments both ways (refusing binary that one neutral payload cannot
//! carry), stripping connection-state-recovery offsets, and turning CONNECT_ERROR/DISCONNECT
//! into neutral errors.
//!
//! Must not touch: I/O, timers, naming (the translator has already rewritten names).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::engineio::{self, Packet as Eio};
use super::packet::{self, Decoder, Packet, PacketType};
use crate::dialect::hold::HoldQueue;
use crate::dialect::pending::{self, Pending};
use crate::dialect::{ClientOut, ClientRole, Close, Dial, Keepalive, WsMsg};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, PayloadKind, Reply, ReplyId,
};

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
    copied: u64,
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
            copied: 0,
        }
    }

    fn send_packet(&self, p: &Packet, out: &mut ClientOut) -> Result<(), ErrorInfo> {
        let text = packet::encode(p);
        // maxPayload is the backend's `ws` maxPayload: it bounds each WebSocket message on its
        // own (the `4`-prefixed text packet, and every attachment frame), not their sum.
        let size = p
            .attachments
            .iter()
            .map(Bytes::len)
            .fold(text.len() + 1, usize::max);
        if size > self.max_payload {
            return Err(ErrorInfo::new(
                ErrorKind::Limit,
                format!(
                    "message of {size} bytes exceeds the backend's maxPayload of {}",
                    self.max_payload
                ),
            ));
        }
        let mut b = BytesMut::with_capacity(text.len() + 1);
        b.extend_from_slice(b"4");
        b.extend_from_slice(&text);
        out.to_backend.push(WsMsg::Text(b.freeze()));
        for a in &p.attachments {
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
            } = op
            {
                out.events.push(BackendEvent::Reply {
                    id,
                    result: Err(e.clone()),
                });
            }
        }
    }

    fn publish(
        &mut self,
        event: Bytes,
        args: Vec<Bytes>,
        payload: Payload,
        reply: Option<Reply>,
        now: Instant,
        out: &mut ClientOut,
    ) {
        // The client wants the backend's answer (its data), or the route waits for the
        // backend's ack on every confirmation; otherwise a confirmation is given once the
        // emit is written.
        let ack = reply.filter(|r| r.data || self.settings.acks);
        let reply = reply.map(|r| r.id);
        let Ok(name) = std::str::from_utf8(&event) else {
            return reply_err(
                reply,
                ErrorInfo::new(ErrorKind::Untranslatable, "event name is not UTF-8"),
                out,
            );
        };
        if packet::RESERVED_EVENTS.contains(&name) {
            let e = ErrorInfo::new(
                ErrorKind::Untranslatable,
                format!("`{name}` is a reserved Socket.IO event"),
            );
            return reply_err(reply, e, out);
        }
        let mut attachments = Vec::new();
        let last = match payload.kind {
            PayloadKind::Json => payload.data,
            PayloadKind::Text => {
                let s = packet::json_string(&payload.data);
                self.copied += s.len() as u64;
                s
            }
            PayloadKind::Binary => {
                attachments.push(payload.data);
                packet::placeholder(0)
            }
        };
        let mut parts: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
        parts.push(&last);
        let data = packet::build_event(name, &parts);
        let id = match ack {
            Some(Reply { id: rid, .. }) => {
                let id = self.next_ack;
                let deadline = pending::deadline(now, self.settings.ack_timeout);
                if let Err(e) = self.pending.insert(id, rid, deadline) {
                    return reply_err(reply, ErrorInfo::new(ErrorKind::Limit, e.to_string()), out);
                }
                self.next_ack += 1;
                Some(id)
            }
            _ => None,
        };
        let kind = if attachments.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        };
        let p = Packet {
            kind,
            nsp: self.nsp.clone(),
            id,
            data: Some(data),
            attachments,
        };
        match self.send_packet(&p, out) {
            Ok(()) => {
                // Without backend acks the publish is confirmed once written upstream; the
                // session delivers events only after `to_backend` is written.
                if let (Some(rid), None) = (reply, id) {
                    out.events.push(BackendEvent::Reply {
                        id: rid,
                        result: Ok(None),
                    });
                }
            }
            Err(e) => {
                if let Some(id) = id {
                    self.pending.remove(&id);
                }
                reply_err(reply, e, out);
            }
        }
    }

    /// Answer the backend's ack request `id` with the arguments array `args`.
    fn ack(&self, id: u64, args: Bytes, out: &mut ClientOut) {
        let ack = Packet {
            kind: PacketType::Ack,
            nsp: self.nsp.clone(),
            id: Some(id),
            data: Some(args),
            attachments: vec![],
        };
        // Only a backend with a maxPayload below a few dozen bytes refuses this; it then
        // times the ack out itself.
        let _ = self.send_packet(&ack, out);
    }

    /// Answer the backend's ack request named by `token` (its ack id): with the client's own
    /// ack arguments, `[]` for a plain ACK, or an error for a NACK.
    fn answer(
        &mut self,
        token: &[u8],
        positive: bool,
        result: Option<Payload>,
        out: &mut ClientOut,
    ) {
        let Some(id) = std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return;
        };
        if !positive {
            let array = packet::error_args("nack", b"the client refused the message");
            return self.ack(id, array, out);
        }
        match result {
            None => self.ack(id, Bytes::from_static(b"[]"), out),
            // A Socket.IO client's ack arrives as its argument array.
            Some(r) if r.kind == PayloadKind::Json && r.data.first() == Some(&b'[') => {
                self.ack(id, r.data, out)
            }
            Some(r) => {
                let (arg, attachments) = match r.kind {
                    PayloadKind::Binary => (packet::placeholder(0), vec![r.data]),
                    PayloadKind::Text => (packet::json_string(&r.data), vec![]),
                    PayloadKind::Json => (r.data, vec![]),
                };
                let data = crate::dialect::json::build_array(&[&arg]);
                self.copied += data.len() as u64;
                let ack = Packet {
                    kind: if attachments.is_empty() {
                        PacketType::Ack
                    } else {
                        PacketType::BinaryAck
                    },
                    nsp: self.nsp.clone(),
                    id: Some(id),
                    data: Some(data),
                    attachments,
                };
                let _ = self.send_packet(&ack, out);
            }
        }
    }

    /// Refuse the backend's ack request `id`: `[{"error":{"name":"<kind>","message":".."}}]`,
    /// the error-ack convention the server role uses too (Socket.IO acks have no error slot).
    fn ack_error(&self, id: u64, e: &ErrorInfo, out: &mut ClientOut) {
        self.ack(id, packet::error_args(e.kind.label(), &e.message), out);
    }

    fn on_sio(&mut self, p: Packet, out: &mut ClientOut) {
        if p.nsp != self.nsp {
            return;
        }
        match p.kind {
            PacketType::Connect => {
                if self.state != State::Connecting {
                    return;
                }
                let info = p
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_slice::<ConnectReply>(d).ok());
                self.recovery = info.as_ref().is_some_and(|i| i.pid.is_some());
                self.state = State::Connected;
                out.events.push(BackendEvent::Ready {
                    session: info.and_then(|i| i.sid).map(Bytes::from),
                });
                let now = Instant::now();
                while let Some(op) = self.queued.pop_front() {
                    self.on_op(op, now, out);
                }
            }
            PacketType::ConnectError => {
                let (message, detail) = connect_error(p.data.as_ref());
                self.fail(
                    ErrorInfo {
                        kind: ErrorKind::Unauthorized,
                        message,
                        detail,
                        code: None,
                    },
                    out,
                );
            }
            PacketType::Disconnect => {
                self.fail(
                    ErrorInfo::new(ErrorKind::Unavailable, "backend disconnected the namespace"),
                    out,
                );
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(data) = p.data else { return };
                let Ok((name, mut args)) = packet::split_event(&data) else {
                    return self.fail(
                        ErrorInfo::new(ErrorKind::Protocol, "malformed event from backend"),
                        out,
                    );
                };
                // Connection-state recovery appends a string offset as the last argument of
                // every stored event (broadcasts without an ack id); the backend application
                // never sent it. A direct emit ending in a string looks the same on the wire;
                // the reference client reads that same position as the offset.
                if self.recovery
                    && p.id.is_none()
                    && args.last().is_some_and(|a| a.first() == Some(&b'"'))
                {
                    args.pop();
                }
                let binary = if p.kind.is_binary() {
                    match resolve_binary(&args, &p.attachments) {
                        Ok(b) => b,
                        Err(e) if e.kind == ErrorKind::Protocol => return self.fail(e, out),
                        Err(mut e) => {
                            if let Some(id) = p.id {
                                self.ack_error(id, &e, out);
                            }
                            // Name what was dropped, for the session's count and log.
                            let why = String::from_utf8_lossy(&e.message);
                            e.message = Bytes::from(format!("backend event `{name}`: {why}"));
                            out.events.push(BackendEvent::Dropped(e));
                            return;
                        }
                    }
                } else {
                    None
                };
                let payload = match (binary, args.pop()) {
                    // The placeholder it replaces was the last argument.
                    (Some(bin), _) => Payload::binary(bin),
                    (None, Some(last)) => Payload::json(last),
                    (None, None) => Payload::null(),
                };
                out.events.push(BackendEvent::Message {
                    meta: Vec::new(),
                    sub: None,
                    channel: Bytes::from(name),
                    event: None,
                    args,
                    payload,
                    // The backend asked for an ack: the downstream answers it (a Socket.IO
                    // client's own ack, a STOMP client's ACK/NACK, or its server role once
                    // delivered), as `ClientOp::Ack` with this id as the token.
                    ack: p.id.map(|id| Bytes::from(id.to_string())),
                });
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let Some(id) = p.id else { return };
                let Some(rid) = self.pending.remove(&id) else {
                    return;
                };
                let result = match p.data {
                    Some(d) => ack_payload(p.kind, d, &p.attachments).map(Some),
                    None => Ok(None),
                };
                if let Err(e) = &result
                    && e.kind == ErrorKind::Protocol
                {
                    let e = e.clone();
                    out.events.push(BackendEvent::Reply { id: rid, result });
                    return self.fail(e, out);
                }
                out.events.push(BackendEvent::Reply { id: rid, result });
            }
        }
    }
}

/// The one attachment of a `BINARY_*` packet, when it maps to a neutral binary payload: it
/// must be the whole last argument. `Ok(None)` when the packet has no binary at all.
///
/// A placeholder that names no attachment is a protocol error (the reference parser's
/// "illegal attachments", which closes the connection). Anything else with binary in it
/// (several attachments, a nested or non-final placeholder, an attachment no placeholder
/// names) is valid Socket.IO that one payload cannot carry: untranslatable.
fn resolve_binary(args: &[Bytes], attachments: &[Bytes]) -> Result<Option<Bytes>, ErrorInfo> {
    let mut refs = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let found = packet::placeholder_refs(a).map_err(|e| {
            ErrorInfo::new(ErrorKind::Protocol, format!("bad Socket.IO packet: {e}"))
        })?;
        refs.extend(found.into_iter().map(|r| (i, r)));
    }
    if refs
        .iter()
        .any(|(_, r)| r.num.is_none_or(|n| n >= attachments.len()))
    {
        return Err(ErrorInfo::new(
            ErrorKind::Protocol,
            format!(
                "binary packet from backend has a placeholder naming none of its {} attachments",
                attachments.len()
            ),
        ));
    }
    match (attachments, refs.as_slice()) {
        ([], []) => Ok(None),
        ([bin], [(i, r)]) if r.root && *i + 1 == args.len() => Ok(Some(bin.clone())),
        _ => Err(ErrorInfo::new(
            ErrorKind::Untranslatable,
            format!(
                "binary data must be the last argument, alone ({} attachments, {} placeholders)",
                attachments.len(),
                refs.len()
            ),
        )),
    }
}

/// The payload of an ACK's arguments array `data`: its single argument, or the whole array
/// when there are several (or none); binary when the single argument is the attachment.
fn ack_payload(kind: PacketType, data: Bytes, attachments: &[Bytes]) -> Result<Payload, ErrorInfo> {
    let Ok(mut args) = packet::split_args(&data) else {
        return Ok(Payload::json(data));
    };
    let binary = if kind.is_binary() {
        resolve_binary(&args, attachments)?
    } else {
        None
    };
    match (binary, args.len()) {
        (Some(bin), 1) => Ok(Payload::binary(bin)),
        (Some(_), n) => Err(ErrorInfo::new(
            ErrorKind::Untranslatable,
            format!("binary data must be the ack's only argument (got {n})"),
        )),
        (None, 1) => Ok(args.pop().map_or(Payload::json(data), Payload::json)),
        (None, _) => Ok(Payload::json(data)),
    }
}

#[derive(serde::Deserialize)]
struct ConnectReply {
    sid: Option<String>,
    pid: Option<String>,
}

fn connect_error(data: Option<&Bytes>) -> (Bytes, Option<Payload>) {
    #[derive(serde::Deserialize)]
    struct E<'a> {
        #[serde(borrow)]
        message: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    let Some(d) = data else {
        return (Bytes::from_static(b"connection refused"), None);
    };
    if let Ok(e) = serde_json::from_slice::<E<'_>>(d) {
        let message = e
            .message
            .map(|m| Bytes::from(m.into_owned()))
            .unwrap_or_else(|| Bytes::from_static(b"connection refused"));
        let detail = e
            .data
            .map(|r| Payload::json(d.slice_ref(r.get().as_bytes())));
        return (message, detail);
    }
    // Legacy servers send a bare string.
    match serde_json::from_slice::<String>(d) {
        Ok(s) => (Bytes::from(s), None),
        Err(_) => (Bytes::from_static(b"connection refused"), None),
    }
}

fn reply_err(reply: Option<ReplyId>, e: ErrorInfo, out: &mut ClientOut) {
    match reply {
        Some(id) => out.events.push(BackendEvent::Reply { id, result: Err(e) }),
        // Nobody asked for an answer; the client's dialect decides what a refusal means.
        None => out.events.push(BackendEvent::Refused(e)),
    }
}

impl ClientRole for SocketioClient {
    fn dial(&self) -> Dial {
        // The client's cookie and origin go along, as any reverse proxy forwards them:
        // backends behind session cookies or Origin checks see their own client.
        Dial::from_credentials(&self.credentials)
    }

    fn start(&mut self, _now: Instant, _out: &mut ClientOut) {
        // The server speaks first (Engine.IO open packet).
    }

    fn on_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut) {
        match self.state {
            State::Closed => {
                if let ClientOp::Publish {
                    reply: Some(Reply { id, .. }),
                    ..
                } = op
                {
                    out.events.push(BackendEvent::Reply {
                        id,
                        result: Err(ErrorInfo::new(
                            ErrorKind::Unavailable,
                            "backend connection closed",
                        )),
                    });
                }
                return;
            }
            State::AwaitOpen | State::Connecting if !matches!(op, ClientOp::Connect { .. }) => {
                // One wording for either limit.
                if self.queued.push(op).is_err() {
                    return self.fail(
                        ErrorInfo::new(
                            ErrorKind::Limit,
                            "too many operations before the backend was ready",
                        ),
                        out,
                    );
                }
                return;
            }
            _ => {}
        }
        match op {
            ClientOp::Connect { credentials } => self.credentials = credentials,
            // Socket.IO has no subscribe on the wire: every event the backend sends reaches us,
            // and the translator delivers it to the subscriptions that match.
            ClientOp::Subscribe { sub, .. } => out
                .events
                .push(BackendEvent::Subscribed { sub, data: None }),
            ClientOp::Unsubscribe { .. } => {}
            // A namespace's auth is fixed at its CONNECT.
            ClientOp::Reauth { .. } => out.events.push(BackendEvent::Refused(ErrorInfo::new(
                ErrorKind::Untranslatable,
                "a Socket.IO backend cannot re-authenticate an open session",
            ))),
            ClientOp::Ack {
                token,
                positive,
                result,
            } => self.answer(&token, positive, result, out),
            ClientOp::Publish {
                meta: _,
                channel,
                event: _,
                args,
                payload,
                reply,
            } => {
                self.publish(channel, args, payload, reply, now, out);
            }
            ClientOp::Disconnect => {
                let p = Packet {
                    kind: PacketType::Disconnect,
                    nsp: self.nsp.clone(),
                    id: None,
                    data: None,
                    attachments: vec![],
                };
                let _ = self.send_packet(&p, out);
                self.state = State::Closed;
                self.fail_pending(
                    &ErrorInfo::new(ErrorKind::Unavailable, "client disconnected"),
                    out,
                );
                out.close = Some(Close::normal());
            }
        }
    }

    fn on_backend(&mut self, msg: WsMsg, _now: Instant, out: &mut ClientOut) {
        if self.state == State::Closed {
            return;
        }
        let eio = match engineio::decode_ws(&msg) {
            Ok(p) => p,
            Err(e) => {
                return self.fail(
                    ErrorInfo::new(ErrorKind::Protocol, format!("bad Engine.IO packet: {e}")),
                    out,
                );
            }
        };
        match eio {
            Eio::Open(json) => {
                if self.state != State::AwaitOpen {
                    return;
                }
                let info = match engineio::parse_open(&json) {
                    Ok(i) => i,
                    Err(e) => {
                        return self.fail(
                            ErrorInfo::new(ErrorKind::Protocol, format!("bad open packet: {e}")),
                            out,
                        );
                    }
                };
                self.max_payload = usize::try_from(info.max_payload).unwrap_or(usize::MAX);
                // The server pings every pingInterval; no ping for pingInterval + pingTimeout
                // means the link is dead.
                self.keepalive.expect_within = Some(Duration::from_millis(
                    info.ping_interval.saturating_add(info.ping_timeout),
                ));
                self.state = State::Connecting;
                let p = Packet {
                    kind: PacketType::Connect,
                    nsp: self.nsp.clone(),
                    id: None,
                    data: self.auth_payload(),
                    attachments: vec![],
                };
                if let Err(e) = self.send_packet(&p, out) {
                    self.fail(e, out);
                }
            }
            Eio::Ping(data) => out.to_backend.push(engineio::encode_ws(&Eio::Pong(data))),
            Eio::Pong(_) | Eio::Noop | Eio::Upgrade => {}
            Eio::Close => self.fail(
                ErrorInfo::new(ErrorKind::Unavailable, "backend closed the connection"),
                out,
            ),
            Eio::Message(text) => match self.decoder.decode_text(text) {
                Ok(Some(p)) => self.on_sio(p, out),
                Ok(None) => {}
                Err(e) => self.fail(
                    ErrorInfo::new(ErrorKind::Protocol, format!("bad Socket.IO packet: {e}")),
                    out,
                ),
            },
            Eio::Binary(data) => match self.decoder.decode_binary(data) {
                Ok(Some(p)) => self.on_sio(p, out),
                Ok(None) => {}
                Err(e) => self.fail(
                    ErrorInfo::new(
                        ErrorKind::Protocol,
                        format!("bad Socket.IO attachment: {e}"),
                    ),
                    out,
                ),
            },
        }
    }

    fn keepalive(&self) -> Keepalive {
        self.keepalive
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }

    fn on_peer_silent(&mut self, out: &mut ClientOut) {
        self.fail(
            ErrorInfo::new(ErrorKind::Timeout, "backend ping timeout"),
            out,
        );
    }

    fn expire(&mut self, now: Instant, out: &mut ClientOut) {
        // Deadline order is ack-id order: each ack waits `ack_timeout` from a `now` that never
        // goes back.
        for (_, rid) in self.pending.expire(now) {
            out.events.push(BackendEvent::Reply {
                id: rid,
                result: Err(ErrorInfo::new(
                    ErrorKind::Timeout,
                    "backend did not acknowledge in time",
                )),
            });
        }
    }

    fn on_closed(&mut self, reason: ErrorInfo, out: &mut ClientOut) {
        self.state = State::Closed;
        self.fail_pending(&reason, out);
    }

    fn take_copied(&mut self) -> u64 {
        std::mem::take(&mut self.copied)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A publish with no event, extra arguments or headers.
    fn publish(channel: &'static str, payload: Payload, reply: Option<ReplyId>) -> ClientOp {
        ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from(channel),
            event: None,
            args: vec![],
            payload,
            reply: reply.map(Reply::receipt),
        }
    }

    fn txt(s: &str) -> WsMsg {
        WsMsg::Text(Bytes::from(s.to_owned()))
    }
    fn s(m: &WsMsg) -> String {
        String::from_utf8(m.bytes().to_vec()).unwrap()
    }
    const OPEN: &str =
        r#"0{"sid":"x","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}"#;

    fn connected(settings: Settings) -> SocketioClient {
        let creds = Credentials {
            token: Some(Bytes::from("t\"k")),
            ..Default::default()
        };
        let mut c = SocketioClient::new(settings, creds);
        let mut out = ClientOut::default();
        c.on_backend(txt(OPEN), Instant::now(), &mut out);
        assert_eq!(s(&out.to_backend[0]), r#"40{"token":"t\"k"}"#);
        assert_eq!(
            c.keepalive().expect_within,
            Some(Duration::from_millis(500))
        );
        let mut out = ClientOut::default();
        c.on_backend(txt(r#"40{"sid":"abc"}"#), Instant::now(), &mut out);
        assert_eq!(
            out.events,
            vec![BackendEvent::Ready {
                session: Some(Bytes::from("abc"))
            }]
        );
        c
    }

    #[test]
    fn ping_is_answered_with_pong() {
        let mut c = connected(Settings::default());
        let mut out = ClientOut::default();
        c.on_backend(txt("2"), Instant::now(), &mut out);
        assert_eq!(s(&out.to_backend[0]), "3");
    }

    #[test]
    fn ops_before_ready_are_queued() {
        let mut c = SocketioClient::new(Settings::default(), Credentials::default());
        let mut out = ClientOut::default();
        c.on_op(
            publish("a", Payload::json(Bytes::from("1")), None),
            Instant::now(),
            &mut out,
        );
        assert!(out.to_backend.is_empty());
        c.on_backend(txt(OPEN), Instant::now(), &mut out);
        assert_eq!(s(&out.to_backend[0]), "40");
        let mut out = ClientOut::default();
        c.on_backend(txt(r#"40{"sid":"abc"}"#), Instant::now(), &mut out);
        assert_eq!(s(&out.to_backend[0]), r#"42["a",1]"#);
    }

    #[test]
    fn connect_error_is_unauthorized_with_backend_message() {
        let mut c = SocketioClient::new(Settings::default(), Credentials::default());
        let mut out = ClientOut::default();
        c.on_backend(txt(OPEN), Instant::now(), &mut out);
        let mut out = ClientOut::default();
        c.on_backend(
            txt(r#"44{"message":"invalid token","data":{"reason":"jwt"}}"#),
            Instant::now(),
            &mut out,
        );
        let BackendEvent::Error(e) = &out.events[0] else {
            panic!("{:?}", out.events)
        };
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(e.message, "invalid token");
        assert_eq!(e.detail.as_ref().unwrap().data, r#"{"reason":"jwt"}"#);
    }

    #[test]
    fn event_becomes_message_with_zero_copy_payload() {
        let mut c = connected(Settings::default());
        let mut out = ClientOut::default();
        let msg = Bytes::from(r#"42["message_created",{"id":17}]"#);
        c.on_backend(WsMsg::Text(msg.clone()), Instant::now(), &mut out);
        let BackendEvent::Message {
            channel, payload, ..
        } = &out.events[0]
        else {
            panic!()
        };
        assert_eq!(channel, "message_created");
        assert_eq!(payload.data, r#"{"id":17}"#);
        let range = msg.as_ptr() as usize..msg.as_ptr() as usize + msg.len();
        assert!(range.contains(&(payload.data.as_ptr() as usize)));
    }

    #[test]
    fn publish_with_ack_waits_for_backend_ack_and_times_out() {
        let mut c = connected(Settings {
            acks: true,
            ack_timeout: Duration::from_millis(50),
            ..Default::default()
        });
        let now = Instant::now();
        let mut out = ClientOut::default();
        c.on_op(
            publish("m", Payload::json(Bytes::from("{}")), Some(7)),
            now,
            &mut out,
        );
        assert_eq!(s(&out.to_backend[0]), r#"420["m",{}]"#);
        assert!(out.events.is_empty());
        let mut out = ClientOut::default();
        c.on_backend(txt(r#"430[{"ok":true}]"#), now, &mut out);
        assert_eq!(
            out.events,
            vec![BackendEvent::Reply {
                id: 7,
                result: Ok(Some(Payload::json(Bytes::from(r#"{"ok":true}"#))))
            }]
        );
        let mut out = ClientOut::default();
        c.on_op(
            publish("m", Payload::json(Bytes::from("{}")), Some(8)),
            now,
            &mut out,
        );
        let mut out = ClientOut::default();
        c.expire(now + Duration::from_millis(60), &mut out);
        assert!(
            matches!(&out.events[0], BackendEvent::Reply { id: 8, result: Err(e) } if e.kind == ErrorKind::Timeout)
        );
    }

    #[test]
    fn a_full_ack_table_refuses_the_emit_instead_of_sending_it() {
        let mut c = connected(Settings {
            acks: true,
            ..Default::default()
        });
        c.pending = Pending::new(1);
        let now = Instant::now();
        let mut out = ClientOut::default();
        for reply in [7, 8] {
            c.on_op(publish("m", Payload::null(), Some(reply)), now, &mut out);
        }
        assert_eq!(
            out.to_backend.iter().map(s).collect::<Vec<_>>(),
            [r#"420["m",null]"#]
        );
        assert!(
            matches!(&out.events[..], [BackendEvent::Reply { id: 8, result: Err(e) }] if e.kind == ErrorKind::Limit),
            "{out:?}"
        );
        assert!(out.close.is_none(), "the leg goes on");
        // The next emit that fits gets the next ack id.
        let mut out = ClientOut::default();
        c.on_backend(txt("430[]"), now, &mut out);
        assert!(
            matches!(
                &out.events[..],
                [BackendEvent::Reply {
                    id: 7,
                    result: Ok(_)
                }]
            ),
            "{out:?}"
        );
        let mut out = ClientOut::default();
        c.on_op(publish("m", Payload::null(), Some(9)), now, &mut out);
        assert_eq!(s(&out.to_backend[0]), r#"421["m",null]"#);
    }

    #[test]
    fn publish_without_acks_is_confirmed_after_write() {
        let mut c = connected(Settings::default());
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Publish {
                meta: Vec::new(),
                channel: Bytes::from("m"),
                event: None,
                args: vec![Bytes::from("\"42\"")],
                payload: Payload::text(Bytes::from("hi")),
                reply: Some(Reply::receipt(1)),
            },
            Instant::now(),
            &mut out,
        );
        assert_eq!(s(&out.to_backend[0]), r#"42["m","42","hi"]"#);
        assert_eq!(
            out.events,
            vec![BackendEvent::Reply {
                id: 1,
                result: Ok(None)
            }]
        );
    }

    #[test]
    fn a_request_for_data_waits_for_the_backends_answer_without_acks() {
        // `upstream.acks` is off: receipts are confirmed on write, but a client that expects
        // data (a Socket.IO ack) gets the backend's ack arguments.
        let mut c = connected(Settings::default());
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Publish {
                meta: Vec::new(),
                channel: Bytes::from("m"),
                event: None,
                args: vec![],
                payload: Payload::json(Bytes::from("1")),
                reply: Some(Reply::data(5)),
            },
            Instant::now(),
            &mut out,
        );
        assert_eq!(s(&out.to_backend[0]), r#"420["m",1]"#);
        assert!(out.events.is_empty(), "{:?}", out.events);
        let mut out = ClientOut::default();
        c.on_backend(txt(r#"430[{"ok":true}]"#), Instant::now(), &mut out);
        assert_eq!(
            out.events,
            vec![BackendEvent::Reply {
                id: 5,
                result: Ok(Some(Payload::json(Bytes::from(r#"{"ok":true}"#))))
            }]
        );
    }

    #[test]
    fn binary_payload_becomes_binary_event_and_back() {
        let mut c = connected(Settings::default());
        let mut out = ClientOut::default();
        c.on_op(
            publish("up", Payload::binary(Bytes::from_static(&[1, 2])), None),
            Instant::now(),
            &mut out,
        );
        assert_eq!(
            s(&out.to_backend[0]),
            r#"451-["up",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            out.to_backend[1],
            WsMsg::Binary(Bytes::from_static(&[1, 2]))
        );
        let mut out = ClientOut::default();
        c.on_backend(
            txt(r#"451-["echo",{"_placeholder":true,"num":0}]"#),
            Instant::now(),
            &mut out,
        );
        assert!(out.events.is_empty());
        c.on_backend(
            WsMsg::Binary(Bytes::from_static(&[9])),
            Instant::now(),
            &mut out,
        );
        assert!(
            matches!(&out.events[0], BackendEvent::Message { payload, .. } if payload.kind == PayloadKind::Binary && payload.data == [9][..])
        );
    }

    #[test]
    fn oversize_publish_is_refused_locally() {
        let mut c = connected(Settings::default());
        let mut out = ClientOut::default();
        let big = Bytes::from(format!("\"{}\"", "x".repeat(2000)));
        c.on_op(
            publish("m", Payload::json(big), Some(3)),
            Instant::now(),
            &mut out,
        );
        assert!(out.to_backend.is_empty());
        assert!(
            matches!(&out.events[0], BackendEvent::Reply { id: 3, result: Err(e) } if e.kind == ErrorKind::Limit)
        );
    }

    fn feed(c: &mut SocketioClient, wire: &str) -> ClientOut {
        let mut out = ClientOut::default();
        c.on_backend(txt(wire), Instant::now(), &mut out);
        out
    }

    fn feed_bin(c: &mut SocketioClient, data: &'static [u8]) -> ClientOut {
        let mut out = ClientOut::default();
        c.on_backend(
            WsMsg::Binary(Bytes::from_static(data)),
            Instant::now(),
            &mut out,
        );
        out
    }

    /// Connected with a CONNECT reply of our choosing (e.g. with a recovery `pid`).
    fn connected_with(settings: Settings, reply: &str) -> SocketioClient {
        let mut c = SocketioClient::new(settings, Credentials::default());
        feed(&mut c, OPEN);
        let out = feed(&mut c, reply);
        assert!(matches!(out.events[..], [BackendEvent::Ready { .. }]));
        c
    }

    /// The one Message of `out`: (args, payload).
    fn message(out: &ClientOut) -> (Vec<Bytes>, Payload) {
        match &out.events[..] {
            [BackendEvent::Message { args, payload, .. }] => (args.clone(), payload.clone()),
            other => panic!("{other:?}"),
        }
    }

    const P0: &str = r#"{"_placeholder":true,"num":0}"#;

    #[test]
    fn recovery_offset_is_stripped_when_the_last_argument_is_a_string() {
        let mut c = connected_with(Settings::default(), r#"40{"sid":"abc","pid":"p-1"}"#);
        // The offset alone: the application emitted no argument at all.
        let (args, payload) = message(&feed(&mut c, r#"42["ev","MzUPkW0"]"#));
        assert!(args.is_empty());
        assert_eq!(payload, Payload::null());
        let (args, payload) = message(&feed(&mut c, r#"42["ev",1,{"t":"hi"},"MzUPkW1"]"#));
        assert_eq!(args, [Bytes::from("1")]);
        assert_eq!(payload.data, r#"{"t":"hi"}"#);
        // Not a string: not an offset (an event the server did not store).
        let (_, payload) = message(&feed(&mut c, r#"42["ev",{"t":"hi"}]"#));
        assert_eq!(payload.data, r#"{"t":"hi"}"#);
        // Events with an ack id are never stored, so carry no offset.
        let (_, payload) = message(&feed(&mut c, r#"427["ev","x"]"#));
        assert_eq!(payload.data, r#""x""#);
        // Binary events are stored too: the offset follows the placeholder.
        assert!(
            feed(&mut c, &format!(r#"451-["ev",{P0},"MzUPkW2"]"#))
                .events
                .is_empty()
        );
        let (args, payload) = message(&feed_bin(&mut c, &[7]));
        assert!(args.is_empty());
        assert_eq!(payload, Payload::binary(Bytes::from_static(&[7])));

        // Without a pid nothing is stripped.
        let mut c = connected_with(Settings::default(), r#"40{"sid":"abc"}"#);
        let (_, payload) = message(&feed(&mut c, r#"42["ev","MzUPkW0"]"#));
        assert_eq!(payload.data, r#""MzUPkW0""#);
    }

    #[test]
    fn binary_that_one_payload_cannot_carry_is_refused_not_dropped() {
        let mut c = connected(Settings::default());
        let cases: &[(String, &[&'static [u8]])] = &[
            // Nested inside an argument.
            (format!(r#"451-["ev",{{"file":{P0}}}]"#), &[b"a"]),
            // Not the last argument.
            (format!(r#"451-["ev",{P0},"x"]"#), &[b"a"]),
            // Two binaries.
            (
                format!(r#"452-["ev",{P0},{{"_placeholder":true,"num":1}}]"#),
                &[b"a", b"b"],
            ),
            // An attachment no placeholder names.
            (r#"451-["ev","x"]"#.to_owned(), &[b"a"]),
            (format!(r#"452-["ev",{P0}]"#), &[b"a", b"b"]),
        ];
        for (wire, atts) in cases {
            let mut out = feed(&mut c, wire);
            for a in *atts {
                assert!(out.events.is_empty(), "{wire}: {:?}", out.events);
                out = feed_bin(&mut c, a);
            }
            assert!(
                matches!(&out.events[..], [BackendEvent::Dropped(e)] if e.kind == ErrorKind::Untranslatable),
                "{wire}: {:?}",
                out.events
            );
            assert!(out.close.is_none(), "{wire}: refusing is not fatal");
        }
        // The backend asked for an ack: it hears the refusal, not a receipt.
        feed(&mut c, &format!(r#"451-7["ev",{{"a":{P0}}}]"#));
        let out = feed_bin(&mut c, b"a");
        assert!(
            matches!(&out.events[..], [BackendEvent::Dropped(e)] if e.message.starts_with(b"backend event `ev`: binary data"))
        );
        let ack = s(&out.to_backend[0]);
        assert!(
            ack.starts_with(r#"437[{"error":{"name":"untranslatable","message":"binary data"#),
            "{ack}"
        );
        // The session goes on.
        let (_, payload) = message(&feed(&mut c, r#"42["ev",1]"#));
        assert_eq!(payload.data, "1");
        // What the reference reconstructor takes for a placeholder (extra members allowed)
        // maps when it is the whole last argument.
        feed(
            &mut c,
            r#"451-["ev","id",{"num":0,"_placeholder":true,"x":1}]"#,
        );
        let (args, payload) = message(&feed_bin(&mut c, b"z"));
        assert_eq!(args, [Bytes::from(r#""id""#)]);
        assert_eq!(payload, Payload::binary(Bytes::from("z")));
        // Placeholders in a plain EVENT are just data, as in the reference parser.
        let (_, payload) = message(&feed(&mut c, &format!(r#"42["ev",{P0}]"#)));
        assert_eq!(payload, Payload::json(Bytes::from(P0)));
    }

    #[test]
    fn placeholder_naming_no_attachment_is_a_protocol_error() {
        for (wire, att) in [
            (r#"451-["ev",{"_placeholder":true,"num":1}]"#, Some(b"a")),
            (r#"451-["ev",{"_placeholder":true,"num":"0"}]"#, Some(b"a")),
            // Declares no attachment but refers to one.
            (r#"450-["ev",{"_placeholder":true,"num":0}]"#, None),
        ] {
            let mut c = connected(Settings::default());
            let mut out = feed(&mut c, wire);
            if let Some(a) = att {
                out = feed_bin(&mut c, a);
            }
            assert!(
                matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Protocol),
                "{wire}: {:?}",
                out.events
            );
            assert!(out.close.is_some());
        }
        // More attachments than the limit: refused at the count, before any is buffered.
        let mut c = connected(Settings {
            max_attachments: 2,
            ..Default::default()
        });
        let out = feed(&mut c, r#"453-["ev",1]"#);
        assert!(
            matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Protocol)
        );
    }

    #[test]
    fn binary_acks_map_only_a_lone_attachment() {
        let publish = |c: &mut SocketioClient, rid| {
            let mut out = ClientOut::default();
            c.on_op(
                publish("m", Payload::null(), Some(rid)),
                Instant::now(),
                &mut out,
            );
        };
        let mut c = connected(Settings {
            acks: true,
            ..Default::default()
        });
        publish(&mut c, 1);
        feed(&mut c, &format!("461-0[{P0}]"));
        let out = feed_bin(&mut c, b"bin");
        assert_eq!(
            out.events,
            [BackendEvent::Reply {
                id: 1,
                result: Ok(Some(Payload::binary(Bytes::from("bin"))))
            }]
        );
        publish(&mut c, 2);
        feed(&mut c, &format!("461-1[1,{P0}]"));
        let out = feed_bin(&mut c, b"bin");
        assert!(
            matches!(&out.events[..], [BackendEvent::Reply { id: 2, result: Err(e) }] if e.kind == ErrorKind::Untranslatable),
            "{:?}",
            out.events
        );
        assert!(out.close.is_none());
        publish(&mut c, 3);
        publish(&mut c, 4);
        feed(&mut c, r#"461-2[{"_placeholder":true,"num":5}]"#);
        let out = feed_bin(&mut c, b"bin");
        assert!(
            matches!(&out.events[..], [
                BackendEvent::Reply { id: 3, result: Err(e) },
                BackendEvent::Reply { id: 4, result: Err(_) },
                BackendEvent::Error(_),
            ] if e.kind == ErrorKind::Protocol),
            "{:?}",
            out.events
        );
    }

    #[test]
    fn max_payload_limits_each_message_not_their_sum() {
        // OPEN says maxPayload 1000.
        let mut c = connected(Settings::default());
        let publish = |c: &mut SocketioClient, data: Bytes| {
            let mut out = ClientOut::default();
            c.on_op(
                publish("up", Payload::binary(data), Some(1)),
                Instant::now(),
                &mut out,
            );
            out
        };
        // Text packet (43 bytes) plus a 1000-byte attachment: over 1000 together, but each
        // WebSocket message fits.
        let out = publish(&mut c, Bytes::from(vec![0u8; 1000]));
        assert_eq!(out.to_backend.len(), 2);
        assert_eq!(out.to_backend[1].len(), 1000);
        assert!(matches!(
            &out.events[..],
            [BackendEvent::Reply { result: Ok(_), .. }]
        ));
        let out = publish(&mut c, Bytes::from(vec![0u8; 1001]));
        assert!(out.to_backend.is_empty());
        assert!(
            matches!(&out.events[..], [BackendEvent::Reply { result: Err(e), .. }] if e.kind == ErrorKind::Limit)
        );
    }

    #[test]
    fn namespace_disconnect_and_close_fail_pending() {
        let mut c = connected(Settings {
            acks: true,
            ..Default::default()
        });
        let mut out = ClientOut::default();
        c.on_op(
            publish("m", Payload::null(), Some(5)),
            Instant::now(),
            &mut out,
        );
        let mut out = ClientOut::default();
        c.on_backend(txt("41"), Instant::now(), &mut out);
        assert!(matches!(
            &out.events[0],
            BackendEvent::Reply {
                id: 5,
                result: Err(_)
            }
        ));
        assert!(
            matches!(&out.events[1], BackendEvent::Error(e) if e.kind == ErrorKind::Unavailable)
        );
    }

    #[test]
    fn a_backends_ack_request_is_answered_by_the_downstream() {
        let mut c = connected(Settings::default());
        let mut out = ClientOut::default();
        c.on_backend(txt(r#"4212["confirm",{"id":7}]"#), Instant::now(), &mut out);
        assert!(out.to_backend.is_empty(), "no answer of its own: {out:?}");
        let Some(BackendEvent::Message {
            ack: Some(token), ..
        }) = out.events.pop()
        else {
            panic!("{out:?}")
        };
        assert_eq!(token, "12");
        let answer = |c: &mut SocketioClient, positive, result| {
            let mut out = ClientOut::default();
            c.on_op(
                ClientOp::Ack {
                    token: token.clone(),
                    positive,
                    result,
                },
                Instant::now(),
                &mut out,
            );
            out.to_backend.iter().map(s).collect::<Vec<_>>()
        };
        assert_eq!(answer(&mut c, true, None), ["4312[]"]);
        assert_eq!(
            answer(
                &mut c,
                true,
                Some(Payload::json(Bytes::from(r#"[{"seen":true},2]"#)))
            ),
            [r#"4312[{"seen":true},2]"#]
        );
        assert_eq!(
            answer(&mut c, false, None),
            [r#"4312[{"error":{"name":"nack","message":"the client refused the message"}}]"#]
        );
        assert_eq!(
            answer(
                &mut c,
                true,
                Some(Payload::binary(Bytes::from_static(&[1, 2])))
            ),
            [r#"461-12[{"_placeholder":true,"num":0}]"#, "\u{1}\u{2}"]
        );
        // A token that is not one of ours is ignored.
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Ack {
                token: Bytes::from("x"),
                positive: true,
                result: None,
            },
            Instant::now(),
            &mut out,
        );
        assert!(out.to_backend.is_empty());
    }

    #[test]
    fn ops_before_ready_are_held_within_a_byte_budget() {
        let settings = Settings {
            max_queued_bytes: 10,
            ..Settings::default()
        };
        let mut c = SocketioClient::new(settings, Credentials::default());
        let text_of = |n: usize| publish("ch", Payload::text(Bytes::from("x".repeat(n))), None);
        let mut out = ClientOut::default();
        c.on_op(text_of(6), Instant::now(), &mut out);
        assert!(out.events.is_empty(), "8 of 10 bytes held: {out:?}");
        c.on_op(text_of(1), Instant::now(), &mut out);
        assert!(
            matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Limit),
            "{out:?}"
        );
    }
}
