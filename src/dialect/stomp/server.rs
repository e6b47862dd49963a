//! The STOMP server role: the proxy plays a STOMP 1.0/1.1/1.2 broker for downstream clients.
//!
//! Owns: version and heart-beat negotiation, the CONNECT → CONNECTED handshake (held until the
//! upstream is ready), subscription ids and ack modes, receipts, transactions (buffered until
//! COMMIT), and turning fatal conditions into `ERROR` then close.
//!
//! Must not touch: I/O, timers (the session asks [`ServerRole::keepalive`]), other dialects,
//! channel naming (the translator rewrites destinations).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{self, Command, Decoder, Frame, Item, Limits, Version};
use super::payload_kind;
use crate::dialect::json::{self, is_json};
use crate::dialect::{Close, Keepalive, ServerOut, ServerRole, WsMsg, stat, strip_bearer};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, PayloadKind, Reply,
    ReplyId, SubId,
};

/// Settings of the STOMP server role, from `[route.stomp]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Heart-beat the proxy offers: (send every, expect every) in ms.
    pub heartbeat: (u64, u64),
    /// Frame limits.
    pub limits: Limits,
    /// Most subscriptions per session.
    pub max_subscriptions: usize,
    /// CONNECT must arrive within this.
    pub connect_timeout: Duration,
    /// The `server` header.
    pub server_name: &'static str,
    /// Most SEND/ACK frames buffered in one transaction.
    pub max_transaction_frames: usize,
    /// Most body bytes buffered across all open transactions of a session.
    pub max_transaction_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            heartbeat: (10_000, 10_000),
            limits: Limits::default(),
            max_subscriptions: 256,
            connect_timeout: Duration::from_secs(10),
            server_name: concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            max_transaction_frames: 1024,
            max_transaction_bytes: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitConnect,
    /// CONNECT forwarded; CONNECTED waits for the upstream.
    Connecting,
    Connected,
    /// DISCONNECT with a receipt arrived while earlier receipts were pending: its RECEIPT
    /// (and the close) wait for them.
    Disconnecting,
    Closed,
}

/// Most transactions open at once in one session.
const MAX_TRANSACTIONS: usize = 16;
/// Most messages delivered under `client`/`client-individual` and not yet acknowledged.
const MAX_UNACKED: usize = 65_536;
/// Most RECEIPTs waiting for earlier frames to complete.
const MAX_PENDING_RECEIPTS: usize = 4096;

/// What a queued RECEIPT still waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing: it goes out once every earlier receipt has.
    Nothing,
    /// The upstream's answer to a publish.
    Reply(ReplyId),
    /// The upstream's confirmation of a subscription.
    Subscribed(SubId),
}

/// One frame held in an open transaction.
#[derive(Debug)]
enum TxItem {
    /// A SEND (its `reply` unset) and its own `receipt`.
    Publish {
        op: ClientOp,
        receipt: Option<Bytes>,
    },
    /// An ACK or NACK of one of our `ack` ids.
    Ack { id: Bytes, positive: bool },
}

#[derive(Debug, Default)]
struct Tx {
    items: Vec<TxItem>,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

#[derive(Debug)]
struct Sub {
    stomp_id: Bytes,
    ack: AckMode,
    /// `client` mode: ack ids with an upstream token, oldest first (an ACK covers every
    /// earlier one).
    unacked: VecDeque<Bytes>,
}

/// The STOMP server role of one session.
#[derive(Debug)]
pub struct StompServer {
    settings: Settings,
    decoder: Decoder,
    state: State,
    version: Version,
    /// The WebSocket upgrade's bearer token, if any.
    upgrade_token: Option<Bytes>,
    session_id: String,
    keepalive: Keepalive,
    connect_receipt: Option<Bytes>,
    subs: HashMap<SubId, Sub>,
    by_stomp_id: HashMap<Bytes, SubId>,
    next_sub: SubId,
    /// RECEIPTs in the order their frames arrived: a RECEIPT tells the client that every
    /// earlier frame was processed, so a ready one waits behind earlier ones still pending.
    receipts: VecDeque<(Bytes, Wait)>,
    next_reply: ReplyId,
    next_message: u64,
    /// Our MESSAGE `ack` value → its subscription and the upstream's own ack token.
    ack_tokens: HashMap<Bytes, (SubId, Bytes)>,
    transactions: HashMap<Bytes, Tx>,
    /// Body bytes held in all open transactions.
    tx_bytes: usize,
    /// CONNECT must arrive by then: a deadline from the session's start that traffic
    /// (heart-beat EOLs) does not push back.
    connect_by: Instant,
    copied: u64,
}

impl StompServer {
    /// A new session's server role. `upgrade_token` is the bearer token from the HTTP
    /// upgrade's `Authorization` header; `started` is when the connection was accepted (the
    /// CONNECT deadline counts from it).
    pub fn new(
        settings: Settings,
        upgrade_token: Option<Bytes>,
        session_id: String,
        started: Instant,
    ) -> Self {
        let connect_by = started + settings.connect_timeout;
        let keepalive = Keepalive {
            send_every: None,
            expect_within: Some(settings.connect_timeout),
            periodic: false,
        };
        Self {
            decoder: Decoder::new(settings.limits.clone()).pausing_after_handshake(),
            settings,
            state: State::AwaitConnect,
            version: Version::V1_2,
            upgrade_token,
            session_id,
            keepalive,
            connect_receipt: None,
            subs: HashMap::new(),
            by_stomp_id: HashMap::new(),
            next_sub: 1,
            receipts: VecDeque::new(),
            next_reply: 1,
            next_message: 1,
            ack_tokens: HashMap::new(),
            transactions: HashMap::new(),
            tx_bytes: 0,
            connect_by,
            copied: 0,
        }
    }

    /// The negotiated version (1.2 until CONNECT says otherwise).
    pub fn version(&self) -> Version {
        self.version
    }

    fn send(&self, frame: &Frame, out: &mut ServerOut) {
        let bytes = codec::encode_to_bytes(frame, self.version);
        // A body that is not UTF-8 cannot ride in a text message.
        if frame.body.is_empty() || std::str::from_utf8(&frame.body).is_ok() {
            out.to_client.push(WsMsg::Text(bytes));
        } else {
            out.to_client.push(WsMsg::Binary(bytes));
        }
    }

    /// Send `ERROR` and close: STOMP errors are always fatal.
    fn fatal(
        &mut self,
        message: &str,
        detail: &[u8],
        receipt: Option<Bytes>,
        code: u16,
        out: &mut ServerOut,
    ) {
        if self.state == State::Closed {
            return;
        }
        let mut f = Frame::new(Command::Error).with_header("message", sanitize(message));
        if let Some(r) = receipt {
            f.push_header("receipt-id", r);
        }
        f.push_header("content-type", "text/plain");
        f.push_header("content-length", detail.len().to_string());
        let f = f.with_body(Bytes::copy_from_slice(detail));
        self.send(&f, out);
        self.state = State::Closed;
        out.close = Some(Close::new(code, truncate(message)));
    }

    fn receipt(&self, id: Bytes, out: &mut ServerOut) {
        let f = Frame::new(Command::Receipt).with_header("receipt-id", id);
        self.send(&f, out);
    }

    /// Queues a RECEIPT behind earlier ones; `false` (after a fatal ERROR) when too many wait.
    fn queue_receipt(&mut self, id: Bytes, wait: Wait, out: &mut ServerOut) -> bool {
        if self.receipts.len() >= MAX_PENDING_RECEIPTS {
            self.fatal("too many pending receipts", b"", Some(id), 1008, out);
            return false;
        }
        self.receipts.push_back((id, wait));
        self.flush_receipts(out);
        true
    }

    /// Marks what `wait` stood for as done and writes every RECEIPT that is now due.
    fn resolve(&mut self, wait: Wait, out: &mut ServerOut) {
        if let Some(e) = self.receipts.iter_mut().find(|(_, w)| *w == wait) {
            e.1 = Wait::Nothing;
            self.flush_receipts(out);
        }
    }

    /// Removes the RECEIPT waiting on `wait` (it failed): its id goes into the ERROR.
    fn take_receipt(&mut self, wait: Wait) -> Option<Bytes> {
        let i = self.receipts.iter().position(|(_, w)| *w == wait)?;
        self.receipts.remove(i).map(|(id, _)| id)
    }

    fn flush_receipts(&mut self, out: &mut ServerOut) {
        while let Some((_, Wait::Nothing)) = self.receipts.front() {
            if let Some((id, _)) = self.receipts.pop_front() {
                self.receipt(id, out);
            }
        }
        if self.state == State::Disconnecting && self.receipts.is_empty() {
            out.ops.push(ClientOp::Disconnect);
            self.state = State::Closed;
            out.close = Some(Close::normal());
        }
    }

    /// Sends `op` upstream; its RECEIPT, if any, waits for the upstream's answer.
    fn publish(&mut self, mut op: ClientOp, receipt: Option<Bytes>, out: &mut ServerOut) {
        if let Some(r) = receipt {
            let id = self.next_reply;
            self.next_reply += 1;
            if let ClientOp::Publish { reply, .. } = &mut op {
                // A receipt asks for a confirmation, not data.
                *reply = Some(Reply::receipt(id));
            }
            if !self.queue_receipt(r, Wait::Reply(id), out) {
                return;
            }
        }
        out.ops.push(op);
    }

    fn on_frame(&mut self, f: Frame, out: &mut ServerOut) {
        let receipt = f.header("receipt").cloned();
        match (self.state, f.command) {
            (State::Closed | State::Disconnecting, _) => {}
            (State::AwaitConnect, Command::Connect | Command::Stomp) => self.on_connect(f, out),
            (State::AwaitConnect, c) => self.fatal(
                "expected CONNECT",
                format!("{} before CONNECT", c.as_str()).as_bytes(),
                receipt,
                1002,
                out,
            ),
            (_, Command::Connect | Command::Stomp) => {
                self.fatal("already connected", b"", receipt, 1002, out);
            }
            (_, Command::Subscribe) => self.on_subscribe(f, receipt, out),
            (_, Command::Unsubscribe) => self.on_unsubscribe(f, receipt, out),
            (_, Command::Send) => self.on_send(f, receipt, out),
            (_, Command::Ack | Command::Nack) => self.on_ack(f, receipt, out),
            (_, Command::Begin) => self.on_begin(f, receipt, out),
            (_, Command::Commit | Command::Abort) => self.on_end_tx(f, receipt, out),
            (_, Command::Disconnect) => match receipt {
                // Its RECEIPT must confirm every earlier frame: wait for them first.
                Some(r) if !self.receipts.is_empty() => {
                    self.state = State::Disconnecting;
                    self.receipts.push_back((r, Wait::Nothing));
                    self.flush_receipts(out);
                }
                receipt => {
                    out.ops.push(ClientOp::Disconnect);
                    if let Some(r) = receipt {
                        self.receipt(r, out);
                    }
                    self.state = State::Closed;
                    out.close = Some(Close::normal());
                }
            },
            (_, c) => self.fatal(
                "unexpected frame",
                format!("a client may not send {}", c.as_str()).as_bytes(),
                receipt,
                1002,
                out,
            ),
        }
    }

    fn on_connect(&mut self, f: Frame, out: &mut ServerOut) {
        let offered = f.header_str("accept-version").unwrap_or("1.0");
        let best = offered
            .split(',')
            .filter_map(|v| Version::parse(v.trim().as_bytes()))
            .max();
        let Some(version) = best else {
            let mut e = Frame::new(Command::Error)
                .with_header("version", "1.0,1.1,1.2")
                .with_header("message", "unsupported protocol version")
                .with_header("content-type", "text/plain");
            let body = Bytes::from_static(b"Supported protocol versions are 1.0 1.1 1.2");
            e.push_header("content-length", body.len().to_string());
            let e = e.with_body(body);
            self.send(&e, out);
            self.state = State::Closed;
            out.close = Some(Close::new(1002, "unsupported protocol version"));
            return;
        };
        self.version = version;
        self.decoder.set_version(version);
        let (cx, cy) = f
            .header_str("heart-beat")
            .map(parse_heartbeat)
            .unwrap_or(Some((0, 0)))
            .unwrap_or((0, 0));
        let (sx, sy) = self.settings.heartbeat;
        // Client → server every max(cx, sy); server → client every max(sx, cy); 0 disables.
        let recv = (cx != 0 && sy != 0).then(|| cx.max(sy));
        let send = (sx != 0 && cy != 0).then(|| sx.max(cy));
        self.keepalive = Keepalive {
            send_every: send.map(Duration::from_millis),
            // Lenient, like stomp-js: allow twice the interval before calling the peer dead.
            expect_within: recv.map(|ms| Duration::from_millis(ms.saturating_mul(2))),
            periodic: false,
        };
        let bearer = f
            .header("Authorization")
            .or_else(|| f.header("authorization"))
            .map(strip_bearer);
        let login = f.header("login").cloned();
        let passcode = f.header("passcode").cloned();
        let token = bearer.or_else(|| self.upgrade_token.clone()).or_else(|| {
            if login.is_none() {
                passcode.clone()
            } else {
                None
            }
        });
        let credentials = Credentials {
            token,
            login,
            passcode,
            auth_json: None,
            ..Default::default()
        };
        self.connect_receipt = f.header("receipt").cloned();
        self.state = State::Connecting;
        out.ops.push(ClientOp::Connect { credentials });
    }

    fn on_subscribe(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
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
        self.by_stomp_id.insert(id.clone(), sub);
        self.subs.insert(
            sub,
            Sub {
                stomp_id: id,
                ack,
                unacked: VecDeque::new(),
            },
        );
        out.ops.push(ClientOp::Subscribe {
            sub,
            channel: dest,
            params: Default::default(),
        });
    }

    fn on_unsubscribe(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
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
            self.subs.remove(&sub);
            // The broker takes back what was not acknowledged when the subscription ends.
            self.ack_tokens.retain(|_, (s, _)| *s != sub);
            // Its confirmation no longer matters; a receipt waiting on it must not block.
            self.resolve(Wait::Subscribed(sub), out);
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }

    fn on_send(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        let Some(dest) = f.header("destination").cloned() else {
            return self.fatal(
                "missing destination",
                b"SEND needs a destination header",
                receipt,
                1002,
                out,
            );
        };
        let kind = payload_kind(f.header_str("content-type"), &f.body);
        if kind == PayloadKind::Json && f.header_str("content-type").is_some() && !is_json(&f.body)
        {
            return self.fatal(
                "invalid JSON body",
                b"content-type is application/json but the body is not JSON",
                receipt,
                1007,
                out,
            );
        }
        let size = f.body.len();
        let op = ClientOp::Publish {
            meta: super::meta_of(&f, kind),
            channel: dest,
            event: f.header("event").cloned(),
            args: Vec::new(),
            payload: Payload {
                data: f.body.clone(),
                kind,
            },
            reply: None,
        };
        match f.header("transaction") {
            None => self.publish(op, receipt, out),
            Some(tx) => self.buffer(tx, TxItem::Publish { op, receipt }, size, out),
        }
    }

    /// Holds `item` in transaction `tx` until COMMIT or ABORT.
    fn buffer(&mut self, tx: &Bytes, item: TxItem, size: usize, out: &mut ServerOut) {
        let Some(t) = self.transactions.get_mut(tx) else {
            return self.fatal("unknown transaction", tx.clone().as_ref(), None, 1002, out);
        };
        if t.items.len() >= self.settings.max_transaction_frames
            || self.tx_bytes.saturating_add(size) > self.settings.max_transaction_bytes
        {
            return self.fatal(
                "transaction too large",
                tx.clone().as_ref(),
                None,
                1008,
                out,
            );
        }
        t.items.push(item);
        t.bytes += size;
        self.tx_bytes += size;
    }

    /// Acknowledges our ack id `id` upstream: alone under `client-individual`, with every
    /// earlier message of its subscription under `client`.
    fn apply_ack(&mut self, id: &Bytes, positive: bool, out: &mut ServerOut) {
        // Upstreams without client acks redeliver nothing: the ACK is a no-op there.
        let Some(&(sub, _)) = self.ack_tokens.get(id) else {
            return;
        };
        match self.subs.get_mut(&sub) {
            Some(s) if s.ack == AckMode::Client => {
                while let Some(front) = s.unacked.pop_front() {
                    if let Some((_, token)) = self.ack_tokens.remove(&front) {
                        out.ops.push(ClientOp::Ack {
                            token,
                            positive,
                            result: None,
                        });
                    }
                    if front == id {
                        break;
                    }
                }
            }
            _ => {
                if let Some((_, token)) = self.ack_tokens.remove(id) {
                    out.ops.push(ClientOp::Ack {
                        token,
                        positive,
                        result: None,
                    });
                }
            }
        }
    }

    fn on_ack(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        // 1.2 acks by `id`; 1.0/1.1 by `message-id`.
        let id = f.header("id").or_else(|| f.header("message-id")).cloned();
        let Some(id) = id else {
            return self.fatal(
                "missing id",
                b"ACK/NACK needs an id header",
                receipt,
                1002,
                out,
            );
        };
        let positive = f.command == Command::Ack;
        match f.header("transaction") {
            // Acked only on COMMIT: after an ABORT the message can still be acknowledged.
            Some(tx) => self.buffer(tx, TxItem::Ack { id, positive }, 0, out),
            None => self.apply_ack(&id, positive, out),
        }
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }

    fn on_begin(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        let Some(tx) = f.header("transaction").cloned() else {
            return self.fatal("missing transaction", b"", receipt, 1002, out);
        };
        if self.transactions.len() >= MAX_TRANSACTIONS || self.transactions.contains_key(&tx) {
            return self.fatal("bad transaction", tx.as_ref(), receipt, 1002, out);
        }
        self.transactions.insert(tx, Tx::default());
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }

    fn on_end_tx(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        let Some(tx) = f.header("transaction").cloned() else {
            return self.fatal("missing transaction", b"", receipt, 1002, out);
        };
        let Some(t) = self.transactions.remove(&tx) else {
            return self.fatal("unknown transaction", tx.as_ref(), receipt, 1002, out);
        };
        self.tx_bytes = self.tx_bytes.saturating_sub(t.bytes);
        let mut receipt = receipt;
        if f.command == Command::Abort {
            // Discarded frames were processed all the same: their receipts are due now.
            for item in t.items {
                if let TxItem::Publish {
                    receipt: Some(r), ..
                } = item
                {
                    self.queue_receipt(r, Wait::Nothing, out);
                }
            }
        } else {
            let last_publish = t
                .items
                .iter()
                .rposition(|i| matches!(i, TxItem::Publish { .. }));
            for (i, item) in t.items.into_iter().enumerate() {
                match item {
                    // The COMMIT's receipt rides on the last SEND when that has none, so it
                    // is answered only once the committed frames were taken upstream.
                    TxItem::Publish { op, receipt: None } if Some(i) == last_publish => {
                        self.publish(op, receipt.take(), out);
                    }
                    TxItem::Publish { op, receipt: r } => self.publish(op, r, out),
                    TxItem::Ack { id, positive } => self.apply_ack(&id, positive, out),
                }
                if self.state == State::Closed {
                    return;
                }
            }
        }
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }

    fn deliver(&mut self, ev: BackendEvent, out: &mut ServerOut) {
        let BackendEvent::Message {
            meta,
            sub: Some(sub),
            channel,
            event,
            args,
            payload,
            ack,
        } = ev
        else {
            return;
        };
        let Some(s) = self.subs.get(&sub) else { return };
        let (body, kind) = if args.is_empty() {
            (payload.data, payload.kind)
        } else {
            // Several arguments become one JSON array body.
            let arr = json::pack(&args, &payload);
            self.copied += arr.len() as u64;
            (arr, PayloadKind::Json)
        };
        let message_id = format!("{}-{}", self.session_id, self.next_message);
        self.next_message += 1;
        let mut f = Frame::new(Command::Message)
            .with_header("subscription", s.stomp_id.clone())
            .with_header("message-id", message_id.clone())
            .with_header("destination", channel);
        // An `auto` subscriber never acks: the proxy acks upstream once the MESSAGE is queued.
        let mut auto_ack = None;
        match (s.ack, ack) {
            (AckMode::Auto, token) => auto_ack = token,
            (mode, token) => {
                let ack_id = Bytes::from(message_id);
                if self.version == Version::V1_2 {
                    f.push_header("ack", ack_id.clone());
                }
                if let Some(token) = token {
                    if self.ack_tokens.len() >= MAX_UNACKED {
                        return self.fatal(
                            "too many unacknowledged messages",
                            b"acknowledge messages before receiving more",
                            None,
                            1008,
                            out,
                        );
                    }
                    if mode == AckMode::Client {
                        if let Some(s) = self.subs.get_mut(&sub) {
                            s.unacked.push_back(ack_id.clone());
                        }
                    }
                    self.ack_tokens.insert(ack_id, (sub, token));
                }
            }
        }
        super::push_content_type(&mut f, kind, &meta);
        f.push_header("content-length", body.len().to_string());
        if let Some(e) = event {
            f.push_header("event", e);
        }
        f.headers.extend(meta);
        let f = f.with_body(body);
        if kind == PayloadKind::Binary {
            out.to_client
                .push(WsMsg::Binary(codec::encode_to_bytes(&f, self.version)));
        } else {
            self.send(&f, out);
        }
        if let Some(token) = auto_ack {
            out.ops.push(ClientOp::Ack {
                token,
                positive: true,
                result: None,
            });
        }
    }
}

impl ServerRole for StompServer {
    fn on_client(&mut self, msg: WsMsg, _now: Instant, out: &mut ServerOut) {
        let mut next = Some(match msg {
            WsMsg::Text(b) | WsMsg::Binary(b) => b,
        });
        // A CONNECT pauses the decoder: what follows it is decoded under its version.
        while let Some(bytes) = next.take() {
            let mut items = Vec::new();
            let res = self.decoder.decode(bytes, &mut items);
            self.copied += self.decoder.take_copied_bytes();
            for item in items {
                if let Item::Frame(f) = item {
                    self.on_frame(f, out);
                }
                if out.close.is_some() {
                    return;
                }
            }
            if let Err(e) = res {
                let detail = e.to_string();
                return self.fatal(&e.message(), detail.as_bytes(), None, 1002, out);
            }
            next = self.decoder.take_held();
        }
    }

    fn on_backend(&mut self, ev: BackendEvent, _now: Instant, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        match ev {
            BackendEvent::Ready { session } => {
                if self.state != State::Connecting {
                    return;
                }
                self.state = State::Connected;
                if let Some(s) = session.and_then(|s| String::from_utf8(s.to_vec()).ok()) {
                    self.session_id = s;
                }
                let (sx, sy) = self.settings.heartbeat;
                let hb = format!(
                    "{},{}",
                    self.keepalive.send_every.map_or(0, |_| sx),
                    self.keepalive.expect_within.map_or(0, |_| sy)
                );
                let mut f =
                    Frame::new(Command::Connected).with_header("version", self.version.as_str());
                f.push_header("heart-beat", hb);
                f.push_header("session", self.session_id.clone());
                f.push_header("server", self.settings.server_name);
                self.send(&f, out);
                if let Some(r) = self.connect_receipt.take() {
                    self.receipt(r, out);
                }
            }
            BackendEvent::Subscribed { sub, .. } => self.resolve(Wait::Subscribed(sub), out),
            BackendEvent::SubscribeFailed { sub, reason } => {
                let receipt = self.take_receipt(Wait::Subscribed(sub));
                let msg = String::from_utf8_lossy(&reason.message).into_owned();
                self.fatal(
                    &format!("subscription refused: {msg}"),
                    &detail_bytes(&reason),
                    receipt,
                    1008,
                    out,
                );
            }
            ev @ BackendEvent::Message { sub: Some(_), .. } => self.deliver(ev, out),
            BackendEvent::Message { sub: None, .. } => {}
            BackendEvent::Reply { id, result: Ok(_) } => self.resolve(Wait::Reply(id), out),
            BackendEvent::Reply { id, result: Err(e) } => {
                let Some(r) = self.take_receipt(Wait::Reply(id)) else {
                    return;
                };
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                self.fatal(&msg, &detail_bytes(&e), Some(r), 1011, out);
            }
            // The backend ended the subscription (kicked out): STOMP has no frame for that, so
            // delivery stops; the client's later UNSUBSCRIBE of that id is a no-op.
            BackendEvent::Unsubscribed { sub, .. } => {
                if let Some(s) = self.subs.remove(&sub) {
                    self.by_stomp_id.remove(&s.stomp_id);
                    self.ack_tokens.retain(|_, (t, _)| *t != sub);
                }
            }
            // Nothing in STOMP carries these.
            BackendEvent::Presence { .. }
            | BackendEvent::Dropped(_)
            | BackendEvent::AuthChanged { .. }
            | BackendEvent::SubscriptionCount { .. } => {}
            // STOMP: "a SEND that fails must produce an ERROR", and ERROR is fatal.
            BackendEvent::Refused(e) => {
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                self.fatal(&msg, &detail_bytes(&e), None, 1008, out);
            }
            BackendEvent::Error(e) | BackendEvent::Closing { reason: e, .. } => {
                let msg = String::from_utf8_lossy(&e.message).into_owned();
                let code = if e.kind == ErrorKind::Unauthorized {
                    1008
                } else {
                    1011
                };
                self.fatal(&msg, &detail_bytes(&e), None, code, out);
            }
        }
    }

    fn on_upstream_lost(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        let msg = String::from_utf8_lossy(&reason.message).into_owned();
        let text = if reason.kind == ErrorKind::Unauthorized {
            msg
        } else {
            format!("upstream unavailable: {msg}")
        };
        self.fatal(&text, &detail_bytes(&reason), None, 1011, out);
    }

    fn on_shutdown(&mut self, out: &mut ServerOut) {
        self.fatal(
            "server shutting down",
            b"the proxy is restarting; reconnect",
            None,
            1001,
            out,
        );
    }

    fn on_too_big(&mut self, reason: ErrorInfo, out: &mut ServerOut) {
        let msg = String::from_utf8_lossy(&reason.message).into_owned();
        self.fatal(&msg, &detail_bytes(&reason), None, 1009, out);
    }

    fn on_slow_consumer(&mut self, out: &mut ServerOut) {
        // 1008: the client broke the (implicit) policy of reading what it subscribed to.
        self.fatal(
            "slow consumer: messages were not read in time",
            b"",
            None,
            1008,
            out,
        );
    }

    fn keepalive(&self) -> Keepalive {
        match self.state {
            State::AwaitConnect | State::Connecting => Keepalive {
                send_every: None,
                expect_within: Some(self.settings.connect_timeout),
                periodic: false,
            },
            _ => self.keepalive,
        }
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        matches!(self.state, State::Connected | State::Disconnecting)
            .then(|| WsMsg::Text(stat("\n")))
    }

    fn on_peer_silent(&mut self, out: &mut ServerOut) {
        match self.state {
            State::AwaitConnect => self.fatal("no CONNECT received in time", b"", None, 1002, out),
            State::Connecting => self.fatal(
                "upstream unavailable: no answer in time",
                b"",
                None,
                1011,
                out,
            ),
            _ => self.fatal("heart-beat timeout", b"", None, 1002, out),
        }
    }

    fn expire(&mut self, now: Instant, out: &mut ServerOut) {
        if self.state == State::AwaitConnect && now >= self.connect_by {
            self.fatal("no CONNECT received in time", b"", None, 1002, out);
        }
    }

    fn take_copied(&mut self) -> u64 {
        std::mem::take(&mut self.copied)
    }
}

/// Parse `cx,cy`.
fn parse_heartbeat(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn detail_bytes(e: &ErrorInfo) -> Vec<u8> {
    match &e.detail {
        Some(p) => p.data.to_vec(),
        None => e.message.to_vec(),
    }
}

/// Header values may not carry line breaks even escaped in CONNECT-era parsers; keep it plain.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

fn truncate(s: &str) -> String {
    let mut t: String = s.chars().take(100).collect();
    while t.len() > 120 {
        t.pop();
    }
    t
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn role() -> StompServer {
        StompServer::new(Settings::default(), None, "s1".into(), Instant::now())
    }

    fn feed(r: &mut StompServer, s: &str) -> ServerOut {
        let mut out = ServerOut::default();
        r.on_client(
            WsMsg::Text(Bytes::from(s.to_owned())),
            Instant::now(),
            &mut out,
        );
        out
    }

    fn text(m: &WsMsg) -> String {
        String::from_utf8(m.bytes().to_vec()).unwrap()
    }

    fn connected(r: &mut StompServer) {
        let out = feed(
            r,
            "CONNECT\naccept-version:1.1,1.2\nheart-beat:5000,20000\nAuthorization:Bearer tok\n\n\0",
        );
        assert_eq!(out.ops.len(), 1);
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Ready { session: None },
            Instant::now(),
            &mut o,
        );
        assert_eq!(
            text(&o.to_client[0]),
            format!(
                "CONNECTED\nversion:1.2\nheart-beat:10000,10000\nsession:s1\nserver:{}\n\n\0",
                Settings::default().server_name
            )
        );
    }

    #[test]
    fn connect_negotiates_version_heartbeat_and_token() {
        let mut r = role();
        let out = feed(
            &mut r,
            "CONNECT\naccept-version:1.0,1.1\nheart-beat:5000,20000\npasscode:pw\n\n\0",
        );
        assert_eq!(r.version(), Version::V1_1);
        match &out.ops[0] {
            ClientOp::Connect { credentials } => {
                assert_eq!(credentials.token.as_deref(), Some(&b"pw"[..]))
            }
            o => panic!("{o:?}"),
        }
        // server sends every max(10000, 20000); expects every max(5000, 10000) (×2 leniency)
        let k = r.keepalive;
        assert_eq!(k.send_every, Some(Duration::from_millis(20_000)));
        assert_eq!(k.expect_within, Some(Duration::from_millis(20_000)));
        connected(&mut role());
    }

    #[test]
    fn no_common_version_is_an_error() {
        let mut r = role();
        let out = feed(&mut r, "CONNECT\naccept-version:2.1\n\n\0");
        assert!(text(&out.to_client[0]).starts_with("ERROR\nversion:1.0,1.1,1.2\n"));
        assert!(out.close.is_some());
    }

    #[test]
    fn frame_before_connect_is_fatal() {
        let mut r = role();
        let out = feed(&mut r, "SEND\ndestination:/app/x\n\nhi\0");
        assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:expected CONNECT\n"));
        assert!(out.close.is_some() && out.ops.is_empty());
    }

    #[test]
    fn subscribe_receipt_waits_for_subscribed_and_message_is_encoded() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "SUBSCRIBE\nid:sub-0\ndestination:/topic/message_created\nack:client-individual\nreceipt:r1\n\n\0",
        );
        assert_eq!(
            out.ops,
            vec![ClientOp::Subscribe {
                sub: 1,
                channel: Bytes::from("/topic/message_created"),
                params: Default::default(),
            }]
        );
        assert!(out.to_client.is_empty());
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Subscribed { sub: 1, data: None },
            Instant::now(),
            &mut o,
        );
        assert_eq!(text(&o.to_client[0]), "RECEIPT\nreceipt-id:r1\n\n\0");
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: Some(1),
                channel: Bytes::from("/topic/message_created"),
                event: None,
                args: vec![],
                payload: Payload::json(Bytes::from("{\"id\":17}")),
                ack: None,
            },
            Instant::now(),
            &mut o,
        );
        assert_eq!(
            text(&o.to_client[0]),
            "MESSAGE\nsubscription:sub-0\nmessage-id:s1-1\ndestination:/topic/message_created\nack:s1-1\ncontent-type:application/json\ncontent-length:9\n\n{\"id\":17}\0"
        );
        // ACK of a message from an upstream without acks is a no-op that still answers receipts.
        let out = feed(&mut r, "ACK\nid:s1-1\nreceipt:r2\n\n\0");
        assert!(out.ops.is_empty());
        assert_eq!(text(&out.to_client[0]), "RECEIPT\nreceipt-id:r2\n\n\0");
    }

    #[test]
    fn send_with_receipt_becomes_publish_with_reply() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "SEND\ndestination:/app/message_created\ncontent-type:application/json\nreceipt:77\n\n{\"a\":1}\0",
        );
        let ClientOp::Publish {
            reply: Some(id),
            payload,
            ..
        } = &out.ops[0]
        else {
            panic!()
        };
        assert_eq!(payload.kind, PayloadKind::Json);
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Reply {
                id: id.id,
                result: Ok(None),
            },
            Instant::now(),
            &mut o,
        );
        assert_eq!(text(&o.to_client[0]), "RECEIPT\nreceipt-id:77\n\n\0");
    }

    #[test]
    fn user_headers_travel_as_meta_both_ways() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "SEND\ndestination:/app/a\nreply-to:/temp-queue/x\nx-trace:t1\nreceipt:9\n\n{}\0",
        );
        let ClientOp::Publish { meta, .. } = &out.ops[0] else {
            panic!()
        };
        assert_eq!(
            meta,
            &vec![
                (Bytes::from("reply-to"), Bytes::from("/temp-queue/x")),
                (Bytes::from("x-trace"), Bytes::from("t1"))
            ]
        );
        feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Message {
                meta: vec![(Bytes::from("x-trace"), Bytes::from("t1"))],
                sub: Some(1),
                channel: Bytes::from("/topic/a"),
                event: None,
                args: vec![],
                payload: Payload::json(Bytes::from("1")),
                ack: None,
            },
            Instant::now(),
            &mut o,
        );
        assert!(
            text(&o.to_client[0]).ends_with("content-length:1\nx-trace:t1\n\n1\0"),
            "{}",
            text(&o.to_client[0])
        );
    }

    #[test]
    fn invalid_json_body_is_refused() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "SEND\ndestination:/app/x\ncontent-type:application/json\n\n{nope\0",
        );
        assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:invalid JSON body\n"));
        assert!(out.ops.is_empty());
    }

    #[test]
    fn transactions_buffer_until_commit() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "BEGIN\ntransaction:t1\n\n\0SEND\ndestination:/app/a\ntransaction:t1\n\nx\0",
        );
        assert!(out.ops.is_empty());
        let out = feed(&mut r, "COMMIT\ntransaction:t1\n\n\0");
        assert_eq!(out.ops.len(), 1);
        let out = feed(
            &mut r,
            "BEGIN\ntransaction:t2\n\n\0SEND\ndestination:/app/a\ntransaction:t2\n\nx\0ABORT\ntransaction:t2\n\n\0",
        );
        assert!(out.ops.is_empty());
    }

    #[test]
    fn disconnect_with_receipt_then_close() {
        let mut r = role();
        connected(&mut r);
        let out = feed(&mut r, "DISCONNECT\nreceipt:9\n\n\0");
        assert_eq!(text(&out.to_client[0]), "RECEIPT\nreceipt-id:9\n\n\0");
        assert_eq!(out.close, Some(Close::normal()));
        assert_eq!(out.ops, vec![ClientOp::Disconnect]);
    }

    #[test]
    fn backend_auth_error_becomes_error_frame() {
        let mut r = role();
        feed(&mut r, "CONNECT\naccept-version:1.2\n\n\0");
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Error(ErrorInfo::new(ErrorKind::Unauthorized, "invalid token")),
            Instant::now(),
            &mut o,
        );
        assert_eq!(
            text(&o.to_client[0]),
            "ERROR\nmessage:invalid token\ncontent-type:text/plain\ncontent-length:13\n\ninvalid token\0"
        );
        assert_eq!(o.close.unwrap().code, 1008);
    }

    #[test]
    fn header_escaping_follows_version() {
        let mut r = role();
        feed(&mut r, "CONNECT\naccept-version:1.0\n\n\0");
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Ready { session: None },
            Instant::now(),
            &mut o,
        );
        feed(&mut r, "SUBSCRIBE\ndestination:/topic/a\n\n\0");
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: Some(1),
                channel: Bytes::from("/topic/a:b"),
                event: None,
                args: vec![],
                payload: Payload::text(Bytes::from("hi")),
                ack: None,
            },
            Instant::now(),
            &mut o,
        );
        // 1.0: no escaping of ':' in values.
        assert!(text(&o.to_client[0]).contains("destination:/topic/a:b\n"));
    }

    #[test]
    fn binary_payload_goes_out_as_binary_message() {
        let mut r = role();
        connected(&mut r);
        feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/f\n\n\0");
        let mut o = ServerOut::default();
        r.on_backend(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: Some(1),
                channel: Bytes::from("/topic/f"),
                event: None,
                args: vec![],
                payload: Payload::binary(Bytes::from_static(&[0xff, 0, 1])),
                ack: None,
            },
            Instant::now(),
            &mut o,
        );
        let WsMsg::Binary(b) = &o.to_client[0] else {
            panic!()
        };
        assert!(b.ends_with(
            b"content-type:application/octet-stream\ncontent-length:3\n\n\xff\x00\x01\x00"
        ));
    }

    fn msg_with_ack(sub: SubId, token: &str) -> BackendEvent {
        BackendEvent::Message {
            meta: Vec::new(),
            sub: Some(sub),
            channel: Bytes::from("/topic/a"),
            event: None,
            args: vec![],
            payload: Payload::json(Bytes::from("1")),
            ack: Some(Bytes::from(token.to_owned())),
        }
    }

    fn backend(r: &mut StompServer, ev: BackendEvent) -> ServerOut {
        let mut o = ServerOut::default();
        r.on_backend(ev, Instant::now(), &mut o);
        o
    }

    fn acks(out: &ServerOut) -> Vec<(String, bool)> {
        out.ops
            .iter()
            .filter_map(|op| match op {
                ClientOp::Ack {
                    token, positive, ..
                } => Some((String::from_utf8(token.to_vec()).unwrap(), *positive)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn auto_subscriber_messages_are_acked_upstream_after_delivery() {
        let mut r = role();
        connected(&mut r);
        feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
        let o = backend(&mut r, msg_with_ack(1, "up-1"));
        assert!(text(&o.to_client[0]).starts_with("MESSAGE\n"));
        assert!(!text(&o.to_client[0]).contains("\nack:"));
        assert_eq!(acks(&o), vec![("up-1".into(), true)]);
    }

    #[test]
    fn client_mode_ack_is_cumulative_and_client_individual_is_not() {
        let mut r = role();
        connected(&mut r);
        feed(
            &mut r,
            "SUBSCRIBE\nid:c\ndestination:/topic/a\nack:client\n\n\0",
        );
        feed(
            &mut r,
            "SUBSCRIBE\nid:i\ndestination:/topic/b\nack:client-individual\n\n\0",
        );
        for (sub, token) in [(1, "c1"), (2, "i1"), (1, "c2"), (2, "i2"), (1, "c3")] {
            let o = backend(&mut r, msg_with_ack(sub, token));
            assert!(acks(&o).is_empty(), "no ack before the client's");
        }
        // Our ack ids are s1-1 … s1-5 in delivery order.
        let out = feed(&mut r, "ACK\nid:s1-3\n\n\0");
        assert_eq!(acks(&out), vec![("c1".into(), true), ("c2".into(), true)]);
        let out = feed(&mut r, "NACK\nid:s1-4\n\n\0");
        assert_eq!(acks(&out), vec![("i2".into(), false)]);
        // Already covered: a no-op.
        assert!(acks(&feed(&mut r, "ACK\nid:s1-1\n\n\0")).is_empty());
        let out = feed(&mut r, "ACK\nid:s1-5\n\n\0");
        assert_eq!(acks(&out), vec![("c3".into(), true)]);
        let out = feed(&mut r, "ACK\nid:s1-2\nreceipt:k\n\n\0");
        assert_eq!(acks(&out), vec![("i1".into(), true)]);
        assert_eq!(text(&out.to_client[0]), "RECEIPT\nreceipt-id:k\n\n\0");
    }

    #[test]
    fn unsubscribe_forgets_unacked_messages() {
        let mut r = role();
        connected(&mut r);
        feed(
            &mut r,
            "SUBSCRIBE\nid:c\ndestination:/topic/a\nack:client\n\n\0",
        );
        backend(&mut r, msg_with_ack(1, "c1"));
        feed(&mut r, "UNSUBSCRIBE\nid:c\n\n\0");
        assert!(r.ack_tokens.is_empty());
        assert!(acks(&feed(&mut r, "ACK\nid:s1-1\n\n\0")).is_empty());
    }

    #[test]
    fn unsubscribe_needs_an_id_after_1_0() {
        let mut r = role();
        connected(&mut r);
        feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
        let out = feed(&mut r, "UNSUBSCRIBE\ndestination:/topic/a\n\n\0");
        assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:missing id\n"));
    }

    #[test]
    fn a_receipt_waits_for_earlier_frames() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "SEND\ndestination:/app/a\nreceipt:s\n\n{}\0SUBSCRIBE\nid:0\ndestination:/topic/a\nreceipt:b\n\n\0UNSUBSCRIBE\nid:9\nreceipt:u\n\n\0",
        );
        assert!(
            out.to_client.is_empty(),
            "every receipt waits for the SEND's"
        );
        let ClientOp::Publish {
            reply: Some(id), ..
        } = &out.ops[0]
        else {
            panic!("{:?}", out.ops)
        };
        let o = backend(&mut r, BackendEvent::Subscribed { sub: 1, data: None });
        assert!(o.to_client.is_empty());
        let o = backend(
            &mut r,
            BackendEvent::Reply {
                id: id.id,
                result: Ok(None),
            },
        );
        let got: Vec<String> = o.to_client.iter().map(text).collect();
        assert_eq!(
            got,
            [
                "RECEIPT\nreceipt-id:s\n\n\0",
                "RECEIPT\nreceipt-id:b\n\n\0",
                "RECEIPT\nreceipt-id:u\n\n\0"
            ]
        );
    }

    #[test]
    fn disconnect_receipt_waits_for_pending_receipts_then_closes() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "SEND\ndestination:/app/a\nreceipt:s\n\nx\0DISCONNECT\nreceipt:d\n\n\0",
        );
        assert_eq!(out.ops.len(), 1, "no Disconnect yet: {:?}", out.ops);
        assert!(out.close.is_none() && out.to_client.is_empty());
        let o = backend(
            &mut r,
            BackendEvent::Reply {
                id: 1,
                result: Ok(None),
            },
        );
        let got: Vec<String> = o.to_client.iter().map(text).collect();
        assert_eq!(
            got,
            ["RECEIPT\nreceipt-id:s\n\n\0", "RECEIPT\nreceipt-id:d\n\n\0"]
        );
        assert_eq!(o.ops, vec![ClientOp::Disconnect]);
        assert_eq!(o.close, Some(Close::normal()));
    }

    #[test]
    fn abort_answers_receipts_and_keeps_acks_open() {
        let mut r = role();
        connected(&mut r);
        feed(
            &mut r,
            "SUBSCRIBE\nid:i\ndestination:/topic/a\nack:client-individual\n\n\0",
        );
        backend(&mut r, msg_with_ack(1, "i1"));
        let out = feed(
            &mut r,
            "BEGIN\ntransaction:t\n\n\0SEND\ndestination:/app/a\ntransaction:t\nreceipt:s\n\nx\0ACK\nid:s1-1\ntransaction:t\n\n\0ABORT\ntransaction:t\nreceipt:a\n\n\0",
        );
        assert!(out.ops.is_empty());
        let got: Vec<String> = out.to_client.iter().map(text).collect();
        assert_eq!(
            got,
            ["RECEIPT\nreceipt-id:s\n\n\0", "RECEIPT\nreceipt-id:a\n\n\0"]
        );
        // The aborted ACK did not consume the message: it can still be acknowledged.
        assert_eq!(
            acks(&feed(&mut r, "ACK\nid:s1-1\n\n\0")),
            vec![("i1".into(), true)]
        );
    }

    #[test]
    fn commit_receipt_waits_for_the_committed_sends() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "BEGIN\ntransaction:t\n\n\0SEND\ndestination:/app/a\ntransaction:t\n\nx\0SEND\ndestination:/app/b\ntransaction:t\n\ny\0COMMIT\ntransaction:t\nreceipt:c\n\n\0",
        );
        assert_eq!(out.ops.len(), 2);
        assert!(out.to_client.is_empty());
        let ClientOp::Publish {
            reply: Some(id), ..
        } = &out.ops[1]
        else {
            panic!("{:?}", out.ops)
        };
        let o = backend(
            &mut r,
            BackendEvent::Reply {
                id: id.id,
                result: Ok(None),
            },
        );
        assert_eq!(text(&o.to_client[0]), "RECEIPT\nreceipt-id:c\n\n\0");
    }

    #[test]
    fn transactions_are_capped_in_bytes() {
        let settings = Settings {
            max_transaction_bytes: 8,
            ..Settings::default()
        };
        let mut r = StompServer::new(settings, None, "s1".into(), Instant::now());
        connected(&mut r);
        let out = feed(
            &mut r,
            "BEGIN\ntransaction:t\n\n\0SEND\ndestination:/a\ntransaction:t\n\n12345\0SEND\ndestination:/a\ntransaction:t\n\n12345\0",
        );
        assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:transaction too large\n"));
        assert!(out.close.is_some());
    }

    #[test]
    fn connect_deadline_is_not_pushed_back_by_heartbeats() {
        let t0 = Instant::now();
        let mut r = StompServer::new(Settings::default(), None, "s1".into(), t0);
        let mut out = ServerOut::default();
        r.on_client(WsMsg::Text(Bytes::from("\n")), t0, &mut out);
        r.expire(t0 + Duration::from_secs(5), &mut out);
        r.on_client(
            WsMsg::Text(Bytes::from("\n")),
            t0 + Duration::from_secs(9),
            &mut out,
        );
        assert!(out.close.is_none());
        r.expire(t0 + Duration::from_secs(10), &mut out);
        assert!(
            text(&out.to_client[0]).starts_with("ERROR\nmessage:no CONNECT received in time\n")
        );
        assert!(out.close.is_some());
    }

    #[test]
    fn a_senders_own_content_type_is_kept_as_meta() {
        let mut r = role();
        connected(&mut r);
        let out = feed(
            &mut r,
            "SEND\ndestination:/app/a\ncontent-type:application/xml\n\n<a/>\0",
        );
        let ClientOp::Publish { meta, .. } = &out.ops[0] else {
            panic!()
        };
        assert_eq!(
            meta,
            &vec![(Bytes::from("content-type"), Bytes::from("application/xml"))]
        );
        feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
        let o = backend(
            &mut r,
            BackendEvent::Message {
                meta: meta.clone(),
                sub: Some(1),
                channel: Bytes::from("/topic/a"),
                event: None,
                args: vec![],
                payload: Payload::text(Bytes::from("<a/>")),
                ack: None,
            },
        );
        let t = text(&o.to_client[0]);
        assert_eq!(t.matches("content-type:").count(), 1, "{t}");
        assert!(t.contains("content-type:application/xml\n"), "{t}");
    }

    #[test]
    fn frames_behind_connect_are_decoded_under_the_negotiated_version() {
        let mut r = role();
        // 1.0 has no escapes: the backslash is literal, not a bad 1.2 escape.
        let out = feed(
            &mut r,
            "CONNECT\naccept-version:1.0\n\n\0SEND\ndestination:/app/a\\tb\n\nx\0",
        );
        assert!(out.close.is_none(), "{:?}", out.to_client);
        let channels: Vec<&Bytes> = out
            .ops
            .iter()
            .filter_map(|op| match op {
                ClientOp::Publish { channel, .. } => Some(channel),
                _ => None,
            })
            .collect();
        assert_eq!(channels, [&Bytes::from("/app/a\\tb")]);
    }
}
