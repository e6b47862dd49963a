//! The embedded hub: an in-process publish/subscribe backend (`[route.upstream] dialect =
//! "hub"`) that every server role uses through the neutral frame model, with no client role,
//! no wire and no socket.
//!
//! Owns: channels and their subscriptions across every route and dialect of the process, the
//! fan-out of a publish to them (one [`HubMessage`] shared by every delivery, its payload
//! `Bytes` never copied), presence membership (`presence-` channels), subscription counts,
//! the authorization of `private-`/`presence-` channels, the encode cache of a message (one
//! encoding per route and shape, see [`HubMessage::encoded`]), and the hub's metrics.
//!
//! Must not touch: wire bytes (server roles encode; the hub only keeps what they encoded),
//! sockets, a session's timers. Operations are synchronous: a publish is fanned out before
//! it returns, into bounded per-connection queues that never block the publisher (a full
//! queue marks that connection a slow consumer, which its session then closes).
//!
//! # The seam for other instances
//!
//! Everything that must reach beyond this process goes through [`Bridge`]: the hub calls
//! [`Bridge::published`] after delivering a local publish, and [`Bridge::joined`] /
//! [`Bridge::left`] when a user's first connection on this instance joins a presence channel
//! or its last leaves. A bridge ([`redis`], with `[hub] redis_url`) hands what other instances published to
//! [`Hub::deliver`] (local fan-out only, never published again) and their presence changes
//! to [`Hub::remote_presence`]. Without a bridge ([`Local`]) the hub is local to the process.
//!
//! # Layout
//!
//! - `mod.rs`: [`Hub`], its state, fan-out, presence, [`Bridge`], metrics.
//! - `conn.rs`: [`Conn`], one session's attachment: client operations in, events out,
//!   authorization of private and presence channels.
//! - `redis.rs`: the [`Bridge`] over Redis that makes several instances one hub.
//! - `tests.rs`: unit tests.

mod conn;
pub mod redis;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use metrics::{counter, gauge};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dialect::{Caps, Dialect, Naming, ServerOut, ServerRole, Spec, WsMsg};
use crate::frame::{BackendEvent, Meta, Payload, SubId};
use crate::metrics as m;

pub use conn::{ChannelKind, Conn, authorize, channel_kind};

/// What the translator and the server roles know of the hub, as a dialect [`Spec`]: names are
/// neutral (`{name}` both ways), it carries event names, has subscriptions and presence, and
/// delivers a sender's own publishes only to clients whose dialect expects them (decided per
/// connection, so the server roles need no echo filter of their own).
pub static SPEC: Spec = Spec {
    dialect: Dialect::Hub,
    offers: &[],
    requests: &[],
    default_path: "",
    path_takes_key: false,
    backend_query: &[],
    backend_trailing_slash: false,
    max_message_size: None,
    naming: Naming {
        subscribe: &["{name}"],
        publish: &["{name}"],
    },
    caps: Caps {
        event_names: true,
        client_subscriptions: true,
        replies_with_data: false,
        presence: true,
        speaks_first: false,
        events_without_subscribe: false,
        acks_deliveries: false,
        echoes_sender: false,
    },
};

/// A connection's id in the hub, unique within the process.
pub type ConnId = u64;

/// Channels with more subscribers than this get no `SubscriptionCount` on every change (it
/// would make joining a big channel quadratic); the joiner still hears the count once.
pub const COUNT_BROADCAST_MAX: usize = 100;

/// Encodings of one message by (route, shape).
type Encodings = HashMap<(usize, Vec<u8>), Arc<[WsMsg]>>;

/// One published message, shared by every delivery of it.
#[derive(Debug)]
pub struct HubMessage {
    /// The channel, neutral name.
    pub channel: Bytes,
    /// The event name, when the publisher's dialect carried one.
    pub event: Option<Bytes>,
    /// Leading arguments before the body (Socket.IO extra arguments), raw JSON.
    pub args: Vec<Bytes>,
    /// The body, shared (never copied) by every delivery.
    pub payload: Payload,
    /// Headers the publisher's dialect carried.
    pub meta: Meta,
    /// What server roles encoded of it, by (route, shape): see [`HubMessage::encoded`].
    encodings: RwLock<Encodings>,
    /// How many encodings were made (a unit test counts them).
    encodes: AtomicU64,
}

impl HubMessage {
    /// A message to publish.
    pub fn new(channel: Bytes, event: Option<Bytes>, payload: Payload, meta: Meta) -> Self {
        Self {
            channel,
            event,
            args: Vec::new(),
            payload,
            meta,
            encodings: RwLock::new(HashMap::new()),
            encodes: AtomicU64::new(0),
        }
    }

    /// The message as the backend event a session translates, for one of its subscriptions
    /// (`None`: a connection that hears every channel).
    pub fn event_for(&self, sub: Option<SubId>) -> BackendEvent {
        BackendEvent::Message {
            sub,
            channel: self.channel.clone(),
            event: self.event.clone(),
            args: self.args.clone(),
            payload: self.payload.clone(),
            meta: self.meta.clone(),
            ack: None,
        }
    }

    /// How many times a server role encoded this message (once per route and shape).
    pub fn encodes(&self) -> u64 {
        self.encodes.load(Ordering::Relaxed)
    }

    /// Encode `ev` (this message, translated for one session of route `route`) with that
    /// session's server role, once per (route, shape): the first session of a shape encodes,
    /// the others write its messages as they are (`WsMsg` clones share their bytes). A route
    /// fixes the client dialect and the naming, so (route, shape) is (dialect, shape) for one
    /// mapping. What a role cannot give a shape for (or answers with more than messages) is
    /// encoded for that session alone.
    pub fn encoded(
        &self,
        route: usize,
        server: &mut dyn ServerRole,
        ev: BackendEvent,
        now: std::time::Instant,
        out: &mut ServerOut,
    ) {
        let Some(mut shape) = server.shape(&ev) else {
            return server.on_backend(ev, now, out);
        };
        // What a session's translation may have changed of the message (the channel in the
        // client's naming, an event or payload a route rule took from the body's key, the
        // arguments a rule consumed) is part of the shape too.
        if let BackendEvent::Message {
            channel,
            event,
            args,
            payload,
            ..
        } = &ev
        {
            let at = (payload.data.as_ptr() as usize).to_le_bytes();
            let len = payload.data.len().to_le_bytes();
            let mut parts: Vec<&[u8]> = vec![channel, event.as_deref().unwrap_or(b"\0"), &at, &len];
            parts.extend(args.iter().map(|a| a.as_ref()));
            shape.extend_from_slice(&crate::dialect::shape_key(&parts));
        }
        let key = (route, shape);
        let hit = self
            .encodings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(msgs) = hit {
            out.to_client.extend(msgs.iter().cloned());
            return;
        }
        let before = out.to_client.len();
        server.on_backend(ev, now, out);
        self.encodes.fetch_add(1, Ordering::Relaxed);
        if out.ops.is_empty() && out.close.is_none() {
            let msgs: Arc<[WsMsg]> = out.to_client.get(before..).unwrap_or_default().into();
            self.encodings
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_insert(msgs);
        }
    }
}

/// What a connection's session receives from the hub.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A published message, for one subscription (`None`: a connection that hears every
    /// channel, as Socket.IO clients hear `io.emit`).
    Message(Arc<HubMessage>, Option<SubId>),
    /// Presence changes and subscription counts, addressed to this connection.
    Event(BackendEvent),
}

impl Delivery {
    /// What a queue holding it is charged: a message's payload, names and headers (events
    /// are small and bounded by the channels' own limits).
    pub fn held_bytes(&self) -> usize {
        match self {
            Self::Message(m, _) => {
                m.channel.len()
                    + m.event.as_ref().map_or(0, Bytes::len)
                    + m.args.iter().map(Bytes::len).sum::<usize>()
                    + m.payload.data.len()
                    + m.meta.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            }
            Self::Event(_) => 0,
        }
    }
}

/// How a connection takes part, decided from its route's client dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attach {
    /// It hears its own publishes (STOMP topics, `io.emit`, SC `#publish`, Action Cable
    /// broadcasts; not Pusher client events).
    pub echo: bool,
    /// It hears every channel without subscribing (Socket.IO: `io.emit` semantics).
    pub everything: bool,
    /// Its queue's depth: a connection whose queue is full is a slow consumer.
    pub depth: usize,
    /// The payload bytes its queue may hold (one message whatever its size; 0: no bound
    /// beyond `depth`): past them it is a slow consumer too. Deliveries share a message,
    /// but one a slow connection has not taken stays alive for it.
    pub bytes: usize,
}

/// Where a delivery goes: a connection's queue, and how it takes part.
#[derive(Debug, Clone)]
struct Target {
    tx: mpsc::Sender<Delivery>,
    lagged: CancellationToken,
    attach: Attach,
    /// The payload bytes of what is in `tx` ([`Delivery::held_bytes`]), which [`Conn`]
    /// takes back as it receives.
    queued: Arc<AtomicUsize>,
}

impl Target {
    /// Queue without waiting: the publisher never waits for a slow subscriber; a full queue
    /// (in messages or in bytes) makes this connection a slow consumer (its session closes
    /// it).
    fn send(&self, d: Delivery) -> bool {
        let size = d.held_bytes();
        let before = self.queued.fetch_add(size, Ordering::Relaxed);
        if self.attach.bytes > 0 && before > 0 && before.saturating_add(size) > self.attach.bytes {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.lagged.cancel();
            return false;
        }
        match self.tx.try_send(d) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(size, Ordering::Relaxed);
                self.lagged.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued.fetch_sub(size, Ordering::Relaxed);
                false
            }
        }
    }
}

/// A presence member on one channel of this instance.
#[derive(Debug, Clone)]
struct Member {
    /// The `user_info` value, raw JSON, for the snapshot's `hash`.
    info: Bytes,
    /// The `user_id` as a JSON value (a string), for the snapshot's `ids`.
    id_json: Bytes,
    /// Connections of this user on the channel (subscriptions, counted).
    conns: usize,
}

#[derive(Debug, Default)]
struct Channel {
    subs: HashMap<(ConnId, SubId), Target>,
    /// Presence members by user id.
    members: HashMap<Bytes, Member>,
    /// Members by insertion order, for a stable snapshot.
    order: Vec<Bytes>,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnId, Target>,
    channels: HashMap<Bytes, Channel>,
    /// Connections that hear every channel.
    everything: HashMap<ConnId, Target>,
}

/// What other instances are told, and the seam a multi-instance hub plugs into. See the
/// module docs.
pub trait Bridge: Send + Sync + std::fmt::Debug {
    /// A message published on this instance, already delivered locally.
    fn published(&self, msg: &Arc<HubMessage>);
    /// A user's first connection on this instance joined a presence channel. Called under
    /// the hub's lock (joins and leaves go out in the order they happened): must not call
    /// the hub, nor block.
    fn joined(&self, channel: &Bytes, user_id: &Bytes, member: &Bytes);
    /// A user's last connection on this instance left a presence channel. As `joined`.
    fn left(&self, channel: &Bytes, user_id: &Bytes);
    /// Whether `user_id` is a member of presence `channel` on another instance: a user
    /// counts once across instances (no `member_added` here for a user present elsewhere,
    /// no `member_removed` while they still are). Called under the hub's lock: must not call
    /// the hub.
    fn elsewhere(&self, _channel: &Bytes, _user_id: &Bytes) -> bool {
        false
    }
    /// Members of presence `channel` on other instances, as (user id, user id JSON,
    /// `user_info` JSON), for the snapshot a subscription is confirmed with. Called under
    /// the hub's lock: must not call the hub.
    fn remote_members(&self, _channel: &Bytes) -> Vec<(Bytes, Bytes, Bytes)> {
        Vec::new()
    }
}

/// No other instances: the hub is local to the process.
#[derive(Debug, Default)]
pub struct Local;

impl Bridge for Local {
    fn published(&self, _: &Arc<HubMessage>) {}
    fn joined(&self, _: &Bytes, _: &Bytes, _: &Bytes) {}
    fn left(&self, _: &Bytes, _: &Bytes) {}
}

/// The embedded hub. One per process, shared by every route whose upstream is the hub.
#[derive(Debug)]
pub struct Hub {
    state: RwLock<State>,
    next_conn: AtomicU64,
    bridge: Arc<dyn Bridge>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(Arc::new(Local))
    }
}

/// What a subscription came to.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The presence snapshot, for presence channels.
    pub snapshot: Option<Bytes>,
    /// Subscribers now, when the count is the joiner's to hear.
    pub count: usize,
}

impl Hub {
    /// A hub whose changes `bridge` carries to other instances.
    pub fn new(bridge: Arc<dyn Bridge>) -> Self {
        m::hub_describe();
        Self {
            state: RwLock::new(State::default()),
            next_conn: AtomicU64::new(1),
            bridge,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attach a connection: its deliveries arrive on the returned [`Conn`]'s queue until it
    /// is dropped.
    pub fn attach(self: &Arc<Self>, attach: Attach, identity: conn::Who) -> Conn {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(attach.depth.max(1));
        let lagged = CancellationToken::new();
        let queued = Arc::new(AtomicUsize::new(0));
        let t = Target {
            tx,
            lagged: lagged.clone(),
            attach,
            queued: queued.clone(),
        };
        let mut st = self.write();
        if attach.everything {
            st.everything.insert(id, t.clone());
        }
        st.conns.insert(id, t);
        drop(st);
        Conn::new(self.clone(), id, rx, lagged, queued, identity)
    }

    /// Publish from connection `from`: fan out locally, then tell other instances. Returns
    /// the number of deliveries queued here.
    pub fn publish(&self, from: Option<ConnId>, msg: HubMessage) -> usize {
        let msg = Arc::new(msg);
        counter!(m::HUB_PUBLISHES).increment(1);
        let n = self.fan_out(from, &msg);
        self.bridge.published(&msg);
        n
    }

    /// Deliver a message another instance published (local fan-out only).
    pub fn deliver(&self, msg: Arc<HubMessage>) -> usize {
        self.fan_out(None, &msg)
    }

    fn fan_out(&self, from: Option<ConnId>, msg: &Arc<HubMessage>) -> usize {
        let st = self.read();
        let mut n = 0usize;
        let skip = |id: ConnId, t: &Target| Some(id) == from && !t.attach.echo;
        // Connections that hear everything hear public channels only: a private or presence
        // channel reaches a connection through an authorized subscription alone.
        let public = channel_kind(&msg.channel) == ChannelKind::Public;
        if let Some(ch) = st.channels.get(&msg.channel) {
            for ((id, sub), t) in &ch.subs {
                // On a public channel a connection that hears everything gets one delivery
                // below, which its subscriptions claim.
                if (public && t.attach.everything) || skip(*id, t) {
                    continue;
                }
                n += usize::from(t.send(Delivery::Message(msg.clone(), Some(*sub))));
            }
        }
        if public {
            for (id, t) in &st.everything {
                if skip(*id, t) {
                    continue;
                }
                n += usize::from(t.send(Delivery::Message(msg.clone(), None)));
            }
        }
        drop(st);
        counter!(m::HUB_DELIVERIES).increment(n as u64);
        n
    }

    /// Subscribe; `member` is `(user_id, member_added JSON, user_info JSON, user_id JSON)`
    /// for presence channels. Returns the snapshot (presence) and the count.
    pub(crate) fn subscribe(
        &self,
        conn: ConnId,
        sub: SubId,
        channel: &Bytes,
        member: Option<(Bytes, Bytes, Bytes, Bytes)>,
    ) -> Joined {
        let mut st = self.write();
        let Some(target) = st.conns.get(&conn).cloned() else {
            return Joined {
                snapshot: None,
                count: 0,
            };
        };
        let new_channel = !st.channels.contains_key(channel);
        let ch = st.channels.entry(channel.clone()).or_default();
        let mut added = None;
        if let Some((uid, json, info, id_json)) = member {
            match ch.members.get_mut(&uid) {
                Some(mb) => mb.conns += 1,
                None => {
                    added = Some((uid.clone(), json));
                    ch.order.push(uid.clone());
                    ch.members.insert(
                        uid,
                        Member {
                            info,
                            id_json,
                            conns: 1,
                        },
                    );
                    gauge!(m::HUB_PRESENCE_MEMBERS).increment(1.0);
                }
            }
        }
        let snapshot = (!ch.members.is_empty())
            .then(|| snapshot_with(ch, &self.bridge.remote_members(channel)));
        // Tell the others before the joiner is a subscriber: never to the joiner; and not
        // at all when the user is present on another instance (they know of them).
        if let Some((uid, json)) = &added
            && !self.bridge.elsewhere(channel, uid)
        {
            let ev = BackendEvent::Presence {
                channel: channel.clone(),
                member: json.clone(),
                added: true,
            };
            for (id, t) in each_conn(ch) {
                if id != conn {
                    t.send(Delivery::Event(ev.clone()));
                }
            }
        }
        ch.subs.insert((conn, sub), target);
        let count = ch.subs.len();
        if snapshot.is_none() {
            broadcast_count(channel, ch, Some(conn));
        }
        // Told to the bridge under the lock, so that a leave and a join of one user (a page
        // reload) reach other instances in the order they happened here. The bridge's
        // calls do not block and never take the hub's lock.
        if let Some((uid, json)) = added {
            self.bridge.joined(channel, &uid, &json);
        }
        drop(st);
        gauge!(m::HUB_SUBSCRIBERS).increment(1.0);
        if new_channel {
            gauge!(m::HUB_CHANNELS).increment(1.0);
        }
        Joined { snapshot, count }
    }

    /// End one subscription; `user` is the presence user it joined as.
    pub(crate) fn unsubscribe(
        &self,
        conn: ConnId,
        sub: SubId,
        channel: &Bytes,
        user: Option<&Bytes>,
    ) {
        let mut st = self.write();
        let Some(ch) = st.channels.get_mut(channel) else {
            return;
        };
        if ch.subs.remove(&(conn, sub)).is_none() {
            return;
        }
        gauge!(m::HUB_SUBSCRIBERS).decrement(1.0);
        let mut removed = None;
        if let Some(uid) = user
            && let Some(mb) = ch.members.get_mut(uid)
        {
            mb.conns = mb.conns.saturating_sub(1);
            if mb.conns == 0 {
                ch.members.remove(uid);
                ch.order.retain(|u| u != uid);
                gauge!(m::HUB_PRESENCE_MEMBERS).decrement(1.0);
                removed = Some(uid.clone());
                // Still present on another instance: nobody hears of this one leaving.
                if !self.bridge.elsewhere(channel, uid) {
                    let member = removed_json(uid, ch);
                    let ev = BackendEvent::Presence {
                        channel: channel.clone(),
                        member,
                        added: false,
                    };
                    for (_, t) in each_conn(ch) {
                        t.send(Delivery::Event(ev.clone()));
                    }
                }
            }
        }
        if ch.members.is_empty() {
            broadcast_count(channel, ch, None);
        }
        if ch.subs.is_empty() {
            st.channels.remove(channel);
            gauge!(m::HUB_CHANNELS).decrement(1.0);
        }
        // Under the lock, as in `subscribe`.
        if let Some(uid) = removed {
            self.bridge.left(channel, &uid);
        }
        drop(st);
    }

    /// A presence change another instance reported: told to this instance's subscribers of
    /// the channel (membership across instances is the bridge's to keep).
    pub fn remote_presence(&self, channel: &Bytes, member: Bytes, added: bool) {
        let st = self.read();
        let Some(ch) = st.channels.get(channel) else {
            return;
        };
        let ev = BackendEvent::Presence {
            channel: channel.clone(),
            member,
            added,
        };
        for (_, t) in each_conn(ch) {
            t.send(Delivery::Event(ev.clone()));
        }
    }

    fn detach(&self, conn: ConnId) {
        let mut st = self.write();
        st.conns.remove(&conn);
        st.everything.remove(&conn);
    }

    /// Whether `user_id` is a presence member of `channel` on this instance.
    pub fn is_member(&self, channel: &[u8], user_id: &[u8]) -> bool {
        self.read()
            .channels
            .get(channel)
            .is_some_and(|c| c.members.contains_key(user_id))
    }

    /// Subscribers of a channel on this instance.
    pub fn subscribers(&self, channel: &[u8]) -> usize {
        self.read()
            .channels
            .get(channel)
            .map_or(0, |c| c.subs.len())
    }

    /// Channels with at least one subscriber on this instance.
    pub fn channels(&self) -> usize {
        self.read().channels.len()
    }
}

/// `{"presence":{"ids":[..],"hash":{..},"count":n}}`, the snapshot a presence subscription is
/// confirmed with (Pusher's shape; other dialects' roles ignore it or pass it on), with the
/// members of other instances (`(user id, id JSON, info JSON)`) that are not members here.
fn snapshot_with(ch: &Channel, remote: &[(Bytes, Bytes, Bytes)]) -> Bytes {
    let mut ids = Vec::new();
    let mut hash = Vec::new();
    let mut count = ch.members.len();
    for (uid, id_json, info) in remote {
        if ch.members.contains_key(uid) {
            continue;
        }
        count += 1;
        if !ids.is_empty() {
            ids.push(b',');
            hash.push(b',');
        }
        ids.extend_from_slice(id_json);
        hash.extend_from_slice(id_json);
        hash.push(b':');
        hash.extend_from_slice(info);
    }
    for uid in &ch.order {
        if let Some(mb) = ch.members.get(uid) {
            if !ids.is_empty() {
                ids.push(b',');
                hash.push(b',');
            }
            ids.extend_from_slice(&mb.id_json);
            hash.extend_from_slice(&mb.id_json);
            hash.push(b':');
            hash.extend_from_slice(&mb.info);
        }
    }
    let mut s = Vec::with_capacity(ids.len() + hash.len() + 48);
    s.extend_from_slice(b"{\"presence\":{\"ids\":[");
    s.extend_from_slice(&ids);
    s.extend_from_slice(b"],\"hash\":{");
    s.extend_from_slice(&hash);
    s.extend_from_slice(b"},\"count\":");
    s.extend_from_slice(count.to_string().as_bytes());
    s.extend_from_slice(b"}}");
    Bytes::from(s)
}

/// `{"user_id":".."}` for `member_removed`, from the id as the member was added with.
fn removed_json(uid: &Bytes, _ch: &Channel) -> Bytes {
    let mut s = b"{\"user_id\":".to_vec();
    s.extend_from_slice(&crate::dialect::json::json_string(uid));
    s.push(b'}');
    Bytes::from(s)
}

/// Tell a small channel's subscribers (except `but`) how many there are now.
fn broadcast_count(channel: &Bytes, ch: &Channel, but: Option<ConnId>) {
    let n = ch.subs.len();
    if n > COUNT_BROADCAST_MAX {
        return;
    }
    let ev = BackendEvent::SubscriptionCount {
        channel: channel.clone(),
        count: n as u64,
    };
    for (id, t) in each_conn(ch) {
        if Some(id) != but {
            t.send(Delivery::Event(ev.clone()));
        }
    }
}

/// One target per connection subscribed to `ch`: an event about the channel (presence, a
/// count) reaches a connection once however many of its subscriptions are on it, and its
/// translator hands it to each of them.
fn each_conn(ch: &Channel) -> impl Iterator<Item = (ConnId, &Target)> {
    let mut seen = std::collections::HashSet::new();
    ch.subs
        .iter()
        .filter_map(move |((id, _), t)| seen.insert(*id).then_some((*id, t)))
}

/// The client role a hub route's factory hands out: never used (hub sessions attach in
/// process instead of dialing), and refusing everything if it were.
#[derive(Debug)]
pub struct NoClient;

impl crate::dialect::ClientRole for NoClient {
    fn start(&mut self, _: std::time::Instant, out: &mut crate::dialect::ClientOut) {
        out.events
            .push(BackendEvent::Error(crate::frame::ErrorInfo::new(
                crate::frame::ErrorKind::Unavailable,
                "the hub is not dialed",
            )));
    }
    fn on_op(
        &mut self,
        _: crate::frame::ClientOp,
        _: std::time::Instant,
        _: &mut crate::dialect::ClientOut,
    ) {
    }
    fn on_backend(&mut self, _: WsMsg, _: std::time::Instant, _: &mut crate::dialect::ClientOut) {}
    fn keepalive(&self) -> crate::dialect::Keepalive {
        crate::dialect::Keepalive::default()
    }
    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }
    fn on_peer_silent(&mut self, _: &mut crate::dialect::ClientOut) {}
    fn expire(&mut self, _: std::time::Instant, _: &mut crate::dialect::ClientOut) {}
    fn on_closed(&mut self, _: crate::frame::ErrorInfo, _: &mut crate::dialect::ClientOut) {}
}
