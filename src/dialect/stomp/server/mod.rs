//! The STOMP server role: the proxy plays a STOMP 1.0/1.1/1.2 broker for downstream clients.
//!
//! Owns: version and heart-beat negotiation, the CONNECT → CONNECTED handshake (held until the
//! upstream is ready), subscription ids and ack modes, receipts, transactions (buffered until
//! COMMIT), and turning fatal conditions into `ERROR` then close.
//!
//! Must not touch: I/O, timers (the session asks
//! [`ServerRole::keepalive`](crate::dialect::ServerRole::keepalive)), other dialects, channel
//! naming (the translator rewrites destinations).
//!
//! # Layout
//!
//! - `mod.rs`: [`Settings`], the role's state ([`StompServer`] and its tables), writing frames,
//!   fatal `ERROR`s, and the dispatch of a client frame by state and command.
//! - `connect.rs`: CONNECT: version and heart-beat negotiation, credentials.
//! - `subscriptions.rs`: SUBSCRIBE and UNSUBSCRIBE: ids, ack modes, the subscription limit.
//! - `delivery.rs`: MESSAGE delivery (ack ids, `auto` acks upstream) and the client's
//!   ACK/NACK of it (`client` covers earlier messages, `client-individual` one).
//! - `send.rs`: SEND to publish, and a publish's RECEIPT waiting for the upstream's answer.
//! - `receipts.rs`: the RECEIPT queue: each in arrival order, once what it waits for is done.
//! - `transactions.rs`: BEGIN, COMMIT and ABORT, and the frames held until then.
//! - `role.rs`: the [`ServerRole`](crate::dialect::ServerRole) impl: decoding client messages,
//!   backend events (CONNECTED once ready), keepalive and deadlines.

mod connect;
mod delivery;
mod receipts;
mod role;
mod send;
mod subscriptions;
#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
mod transactions;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{self, Command, Decoder, Frame, Limits, Version};
use crate::dialect::{Close, Keepalive, ServerOut, WsMsg};
use crate::frame::{ClientOp, ReplyId, SubId};

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
        op: Box<ClientOp>,
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
    /// How many of `ack_tokens` are this subscription's: ending one that has none (or, in
    /// `client` mode, only those in `unacked`) does not scan the whole table.
    tokens: usize,
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
    copied: crate::dialect::Copied,
    /// Decoded items of the message being handled (kept for its capacity).
    items: Vec<crate::dialect::stomp::codec::Item>,
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
            copied: crate::dialect::Copied::default(),
            items: Vec::new(),
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
