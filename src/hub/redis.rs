//! The hub across instances: a [`Bridge`] over Redis (`[hub] redis_url`), so that several
//! Switchboard processes on one Redis are one hub.
//!
//! Owns: the link to Redis (one pub/sub connection subscribed to `{prefix}:bus`, one
//! multiplexed command connection), the encoding of what crosses it, this instance's
//! heartbeat and presence record in Redis, the mirror of the other instances' presence
//! members, the sweep of dead instances, reconnecting with backoff, and the
//! `switchboard_hub_redis_*` metrics.
//!
//! Must not touch: sessions, dialects, wire bytes of any client. The hub's calls into the
//! bridge never wait on Redis: they queue into one bounded channel, which the link task
//! drains. While Redis is down (or the queue is full) publishes are delivered on this
//! instance only and counted as dropped; presence changes are not lost, because the whole
//! record of this instance is written again when the link comes back.
//!
//! # In Redis
//!
//! - `{prefix}:bus`: the pub/sub channel every instance publishes to and listens on. A
//!   message is a kind byte, the sender's instance id (8 bytes, so an instance ignores its
//!   own publishes, which it delivered locally already) and length-prefixed fields: see
//!   `encode_message` and `encode_presence`.
//! - `{prefix}:instances`: the set of instance ids (16 hex digits).
//! - `{prefix}:hb:{id}`: an instance's heartbeat, expiring after `instance_ttl_ms`, renewed
//!   every third of it.
//! - `{prefix}:members:{id}`: an instance's presence members, a hash from (channel, user id)
//!   to the `member_added` JSON.
//!
//! # Presence across instances
//!
//! Each instance writes its own members (a user's first connection on it joins, the last
//! leaves: [`Bridge::joined`], [`Bridge::left`]) and announces the change on the bus; every
//! other instance keeps a mirror of them by instance. A user counts once: an instance
//! tells its subscribers `member_added` only when the user is on no instance it knows of,
//! and `member_removed` only when the user is on none any more. A presence snapshot holds
//! the mirrored members too. Every third of the TTL each instance sweeps: an instance whose
//! heartbeat expired is dead, and its members are removed (and announced as removed) within
//! `instance_ttl_ms * 4 / 3` of its death. After this instance (re)connects, the others get
//! one TTL to renew their heartbeats (a restarted Redis lost them) before any is swept.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use metrics::{counter, gauge};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Bridge, Hub, HubMessage};
use crate::config::HubConfig;
use crate::frame::{Payload, PayloadKind};
use crate::metrics as m;

/// Every Redis connect and command must answer within this, or the link is lost.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// First wait before dialing Redis again; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between dials (well under a TTL, so a Redis restart sweeps nobody).
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Queued publishes and presence changes sent to Redis in one pipeline.
const BATCH: usize = 128;
/// How long a stopping instance spends telling the others it is gone.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the link to Redis is down.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Redis refused or failed a command, or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The pub/sub connection ended.
    #[error("the redis pub/sub connection closed")]
    Closed,
}

/// An instance's id: random per process.
type InstanceId = u64;

/// What the hub asked to tell the other instances.
#[derive(Debug)]
enum Out {
    Publish(Arc<HubMessage>),
    Joined {
        channel: Bytes,
        uid: Bytes,
        member: Bytes,
    },
    Left {
        channel: Bytes,
        uid: Bytes,
    },
}

/// A presence member of other instances.
#[derive(Debug)]
struct RemoteMember {
    /// The user id as JSON, for the snapshot's `ids`.
    id_json: Bytes,
    /// The `user_info` JSON, for the snapshot's `hash`.
    info: Bytes,
    /// The instances the user is a member on.
    on: HashSet<InstanceId>,
}

/// Channel → user id → member, of every other instance.
type Mirror = HashMap<Bytes, HashMap<Bytes, RemoteMember>>;

/// The hub's side of the link: what the hub calls, never waiting on Redis.
#[derive(Debug)]
pub struct RedisBridge {
    id: InstanceId,
    tx: mpsc::Sender<Out>,
    up: Arc<AtomicBool>,
    /// A presence change could not be queued: the link writes the whole record again.
    resync: AtomicBool,
    /// This instance's members: (channel, user id) → `member_added` JSON.
    local: RwLock<HashMap<(Bytes, Bytes), Bytes>>,
    remote: RwLock<Mirror>,
}

/// Most messages from other instances waiting for this instance's link; more are dropped
/// and counted (`switchboard_hub_redis_dropped_total`).
const BUS_QUEUE: usize = 4096;

/// Other instances' messages, read off the Redis subscription as they come by a task of its
/// own: the Redis driver buffers what it reads without bound, and this link's loop spends
/// round trips (publishing, heartbeats) between two reads, so a busy instance's messages
/// piled up in memory. Read at once, they wait here, bounded.
struct Bus {
    rx: mpsc::Receiver<redis::Msg>,
    /// The reading task, stopped with the link.
    _pump: tokio_util::task::AbortOnDropHandle<()>,
}

impl Bus {
    fn new<S>(mut stream: S) -> Self
    where
        S: futures_util::Stream<Item = redis::Msg> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(BUS_QUEUE);
        let pump = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                match tx.try_send(msg) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        counter!(m::HUB_REDIS_DROPPED).increment(1);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
        Self {
            rx,
            _pump: tokio_util::task::AbortOnDropHandle::new(pump),
        }
    }
}

impl RedisBridge {
    /// Whether the link is up (shared with `/readyz`).
    pub fn up(&self) -> Arc<AtomicBool> {
        self.up.clone()
    }

    /// This instance's id.
    pub fn instance(&self) -> u64 {
        self.id
    }

    fn remote_r(&self) -> RwLockReadGuard<'_, Mirror> {
        self.remote.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn remote_w(&self) -> RwLockWriteGuard<'_, Mirror> {
        self.remote.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn local_w(&self) -> RwLockWriteGuard<'_, HashMap<(Bytes, Bytes), Bytes>> {
        self.local.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue_presence(&self, out: Out) {
        // While the link is down (or the queue is full) nothing is queued: the whole record
        // is written again on reconnect, or at the next heartbeat when this change came
        // after the reconnect had read the record.
        if !self.up.load(Ordering::Acquire) || self.tx.try_send(out).is_err() {
            self.resync.store(true, Ordering::Release);
        }
    }
}

impl Bridge for RedisBridge {
    fn published(&self, msg: &Arc<HubMessage>) {
        if !self.up.load(Ordering::Acquire) || self.tx.try_send(Out::Publish(msg.clone())).is_err()
        {
            counter!(m::HUB_REDIS_DROPPED).increment(1);
        }
    }

    fn joined(&self, channel: &Bytes, user_id: &Bytes, member: &Bytes) {
        self.local_w()
            .insert((channel.clone(), user_id.clone()), member.clone());
        self.queue_presence(Out::Joined {
            channel: channel.clone(),
            uid: user_id.clone(),
            member: member.clone(),
        });
    }

    fn left(&self, channel: &Bytes, user_id: &Bytes) {
        self.local_w().remove(&(channel.clone(), user_id.clone()));
        self.queue_presence(Out::Left {
            channel: channel.clone(),
            uid: user_id.clone(),
        });
    }

    fn elsewhere(&self, channel: &Bytes, user_id: &Bytes) -> bool {
        self.remote_r()
            .get(channel)
            .is_some_and(|c| c.contains_key(user_id))
    }

    fn remote_members(&self, channel: &Bytes) -> Vec<(Bytes, Bytes, Bytes)> {
        self.remote_r().get(channel).map_or_else(Vec::new, |c| {
            c.iter()
                .map(|(uid, mb)| (uid.clone(), mb.id_json.clone(), mb.info.clone()))
                .collect()
        })
    }
}

/// Key and channel names.
#[derive(Debug)]
struct Keys {
    prefix: String,
    bus: String,
    instances: String,
}

impl Keys {
    fn hb(&self, id: InstanceId) -> String {
        format!("{}:hb:{id:016x}", self.prefix)
    }
    fn members(&self, id: InstanceId) -> String {
        format!("{}:members:{id:016x}", self.prefix)
    }
}

/// The link task's side: owns the connections to Redis. Run it with [`Link::run`].
#[derive(Debug)]
pub struct Link {
    bridge: Arc<RedisBridge>,
    rx: mpsc::Receiver<Out>,
    client: redis::Client,
    keys: Keys,
    ttl: Duration,
    /// No instance is swept before this: after (re)connecting, the others get a TTL to
    /// renew their heartbeats.
    grace_until: Instant,
    connected_before: bool,
}

/// The bridge for a hub and the link task that serves it, from `[hub]` (which must have a
/// `redis_url`). Nothing is dialed until [`Link::run`].
pub fn bridge(cfg: &HubConfig) -> Result<(Arc<RedisBridge>, Link), LinkError> {
    let client = redis::Client::open(cfg.redis_url.as_deref().unwrap_or_default())?;
    m::hub_redis_describe();
    let (tx, rx) = mpsc::channel(cfg.redis_queue.max(1));
    let bridge = Arc::new(RedisBridge {
        id: rand::random(),
        tx,
        up: Arc::new(AtomicBool::new(false)),
        resync: AtomicBool::new(false),
        local: RwLock::new(HashMap::new()),
        remote: RwLock::new(HashMap::new()),
    });
    let prefix = cfg.redis_prefix.clone();
    let link = Link {
        bridge: bridge.clone(),
        rx,
        client,
        keys: Keys {
            bus: format!("{prefix}:bus"),
            instances: format!("{prefix}:instances"),
            prefix,
        },
        ttl: cfg.instance_ttl(),
        grace_until: Instant::now(),
        connected_before: false,
    };
    Ok((bridge, link))
}

async fn timed<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, LinkError> {
    Ok(tokio::time::timeout(IO_TIMEOUT, f)
        .await
        .map_err(|_| LinkError::Timeout(IO_TIMEOUT))??)
}

impl Link {
    /// Keep the link up until `stop`, then tell the other instances this one is gone.
    pub async fn run(mut self, hub: Arc<Hub>, stop: CancellationToken) {
        tracing::info!(instance = %format!("{:016x}", self.bridge.id), "hub: redis link starting");
        let mut backoff = BACKOFF_MIN;
        // Each outage is logged once as a warning; the dials that fail during it at debug.
        let mut warned = false;
        loop {
            match self.session(&hub, &stop).await {
                Ok(()) => return,
                Err((connected, e)) => {
                    self.set_up(false);
                    if connected {
                        backoff = BACKOFF_MIN;
                        warned = false;
                    }
                    if warned {
                        tracing::debug!(error = %e, ?backoff, "hub: cannot reach redis");
                    } else {
                        warned = true;
                        tracing::warn!(error = %e, "hub: redis link down; local delivery goes on");
                    }
                }
            }
            // Wait, dropping what the hub queues meanwhile: publishes are stale by the time
            // Redis is back, and presence is written whole on reconnect.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = &mut wait => break,
                    out = self.rx.recv() => match out {
                        Some(out) => drop_out(out),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn set_up(&self, up: bool) {
        self.bridge.up.store(up, Ordering::Release);
        gauge!(m::HUB_REDIS_UP).set(if up { 1.0 } else { 0.0 });
    }

    /// One connection's life: `Ok` when stopped, else the error and whether it had connected.
    async fn session(
        &mut self,
        hub: &Hub,
        stop: &CancellationToken,
    ) -> Result<(), (bool, LinkError)> {
        let (mut con, mut bus) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = self.connect() => r.map_err(|e| (false, e))?,
        };
        while let Ok(out) = self.rx.try_recv() {
            drop_out(out);
        }
        // Up (and ready) once this instance's record is written and the others' are read.
        self.register(&mut con).await.map_err(|e| (false, e))?;
        self.load(hub, &mut con).await.map_err(|e| (false, e))?;
        self.set_up(true);
        if self.connected_before {
            counter!(m::HUB_REDIS_RECONNECTS).increment(1);
            tracing::info!("hub: redis link back");
        }
        self.connected_before = true;
        self.serve(hub, stop, &mut con, &mut bus)
            .await
            .map_err(|e| (true, e))
    }

    async fn connect(&self) -> Result<(MultiplexedConnection, Bus), LinkError> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let con = timed(
            self.client
                .get_multiplexed_async_connection_with_config(&cfg),
        )
        .await?;
        let mut ps = timed(self.client.get_async_pubsub()).await?;
        timed(ps.subscribe(&self.keys.bus)).await?;
        Ok((con, Bus::new(ps.into_on_message())))
    }

    async fn serve(
        &mut self,
        hub: &Hub,
        stop: &CancellationToken,
        con: &mut MultiplexedConnection,
        bus: &mut Bus,
    ) -> Result<(), LinkError> {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.goodbye(con)).await;
                    return Ok(());
                }
                msg = bus.rx.recv() => {
                    let msg = msg.ok_or(LinkError::Closed)?;
                    self.on_bus(hub, con, msg.get_payload_bytes()).await?;
                }
                out = self.rx.recv() => {
                    if let Some(out) = out {
                        self.send(con, out).await?;
                    }
                }
                _ = tick.tick() => self.heartbeat(hub, con).await?,
            }
        }
    }

    /// Write this instance's whole record (members, heartbeat, membership of the instance
    /// set) at once, and ask the others to read it.
    async fn register(&mut self, con: &mut MultiplexedConnection) -> Result<(), LinkError> {
        self.bridge.resync.store(false, Ordering::Release);
        let members: Vec<(Vec<u8>, Bytes)> = self
            .bridge
            .local
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((c, u), mb)| (member_field(c, u), mb.clone()))
            .collect();
        let id = self.bridge.id;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(self.keys.members(id)).ignore();
        if !members.is_empty() {
            let mut hset = redis::cmd("HSET");
            hset.arg(self.keys.members(id));
            for (f, mb) in &members {
                hset.arg(f.as_slice()).arg(mb.as_ref());
            }
            pipe.add_command(hset).ignore();
        }
        self.heartbeat_cmds(&mut pipe);
        pipe.cmd("PUBLISH")
            .arg(&self.keys.bus)
            .arg(header(b'S', id).as_ref())
            .ignore();
        timed(pipe.query_async::<()>(con)).await
    }

    fn heartbeat_cmds(&self, pipe: &mut redis::Pipeline) {
        let id = self.bridge.id;
        pipe.cmd("SET")
            .arg(self.keys.hb(id))
            .arg(1)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .ignore();
        pipe.cmd("SADD")
            .arg(&self.keys.instances)
            .arg(format!("{id:016x}"))
            .ignore();
    }

    /// Read every live instance's members after (re)connecting.
    async fn load(&mut self, hub: &Hub, con: &mut MultiplexedConnection) -> Result<(), LinkError> {
        self.grace_until = Instant::now() + self.ttl;
        let ids: Vec<String> = timed(
            redis::cmd("SMEMBERS")
                .arg(&self.keys.instances)
                .query_async(con),
        )
        .await?;
        for id in ids.iter().filter_map(|s| u64::from_str_radix(s, 16).ok()) {
            if id != self.bridge.id {
                self.reload(hub, con, id).await?;
            }
        }
        Ok(())
    }

    /// Replace the mirror of instance `id` by its record in Redis, when it is alive (a
    /// record without a heartbeat is kept until the sweep decides).
    async fn reload(
        &self,
        hub: &Hub,
        con: &mut MultiplexedConnection,
        id: InstanceId,
    ) -> Result<(), LinkError> {
        let (alive, record): (bool, HashMap<Vec<u8>, Vec<u8>>) = timed(
            redis::pipe()
                .cmd("EXISTS")
                .arg(self.keys.hb(id))
                .cmd("HGETALL")
                .arg(self.keys.members(id))
                .query_async(con),
        )
        .await?;
        if !alive {
            return Ok(());
        }
        let mut now = HashMap::new();
        for (f, mb) in record {
            if let Some((c, u)) = split_member_field(&f) {
                now.insert((c, u), Bytes::from(mb));
            }
        }
        let before: Vec<(Bytes, Bytes)> = self.members_of(id);
        for key in before {
            if !now.contains_key(&key) {
                self.apply_leave(hub, id, &key.0, &key.1);
            }
        }
        for ((c, u), mb) in now {
            self.apply_join(hub, id, c, u, mb);
        }
        Ok(())
    }

    fn members_of(&self, id: InstanceId) -> Vec<(Bytes, Bytes)> {
        self.bridge
            .remote_r()
            .iter()
            .flat_map(|(c, users)| {
                users
                    .iter()
                    .filter(|(_, mb)| mb.on.contains(&id))
                    .map(|(u, _)| (c.clone(), u.clone()))
            })
            .collect()
    }

    /// Instance `from` has user `uid` on `channel`.
    fn apply_join(&self, hub: &Hub, from: InstanceId, channel: Bytes, uid: Bytes, member: Bytes) {
        let Some((id_json, info)) = parse_member(&member) else {
            tracing::debug!("hub: redis: a member record that is not a member_added object");
            return;
        };
        // Asked before the mirror knows the user: a local join racing this one then makes
        // the user announced twice (clients keep members by id), never not at all.
        let here = hub.is_member(&channel, &uid);
        let first = {
            let mut remote = self.bridge.remote_w();
            let users = remote.entry(channel.clone()).or_default();
            let first = !users.contains_key(&uid);
            users
                .entry(uid.clone())
                .or_insert_with(|| RemoteMember {
                    id_json,
                    info,
                    on: HashSet::new(),
                })
                .on
                .insert(from);
            first
        };
        if first && !here {
            hub.remote_presence(&channel, member, true);
        }
    }

    /// Instance `from` no longer has user `uid` on `channel`.
    fn apply_leave(&self, hub: &Hub, from: InstanceId, channel: &Bytes, uid: &Bytes) {
        let gone = {
            let mut remote = self.bridge.remote_w();
            let Some(users) = remote.get_mut(channel) else {
                return;
            };
            let gone = users
                .get_mut(uid)
                .is_some_and(|mb| mb.on.remove(&from) && mb.on.is_empty());
            if gone {
                users.remove(uid);
                if users.is_empty() {
                    remote.remove(channel);
                }
            }
            gone
        };
        if gone && !hub.is_member(channel, uid) {
            let mut json = b"{\"user_id\":".to_vec();
            json.extend_from_slice(&crate::dialect::json::json_string(uid));
            json.push(b'}');
            hub.remote_presence(channel, Bytes::from(json), false);
        }
    }

    fn drop_instance(&self, hub: &Hub, id: InstanceId) {
        for (c, u) in self.members_of(id) {
            self.apply_leave(hub, id, &c, &u);
        }
    }

    async fn on_bus(
        &self,
        hub: &Hub,
        con: &mut MultiplexedConnection,
        raw: &[u8],
    ) -> Result<(), LinkError> {
        // The one copy of a message received from Redis; every field is a slice of it.
        let data = Bytes::copy_from_slice(raw);
        let Some((kind, from, mut body)) = split_header(data) else {
            tracing::debug!("hub: redis: a bus message without a header");
            return Ok(());
        };
        if from == self.bridge.id {
            return Ok(());
        }
        match kind {
            b'M' => match decode_message(&mut body) {
                Some(msg) => {
                    counter!(m::HUB_REDIS_RECEIVED).increment(1);
                    hub.deliver(Arc::new(msg));
                }
                None => tracing::debug!("hub: redis: a message that does not decode"),
            },
            b'J' => {
                if let (Some(c), Some(u), Some(mb)) =
                    (field(&mut body), field(&mut body), field(&mut body))
                {
                    self.apply_join(hub, from, c, u, mb);
                }
            }
            b'L' => {
                if let (Some(c), Some(u)) = (field(&mut body), field(&mut body)) {
                    self.apply_leave(hub, from, &c, &u);
                }
            }
            b'S' => self.reload(hub, con, from).await?,
            b'X' => self.drop_instance(hub, from),
            _ => tracing::debug!(kind, "hub: redis: an unknown bus message"),
        }
        Ok(())
    }

    /// Send `first` and whatever else is queued (up to [`BATCH`]) in one pipeline.
    async fn send(&mut self, con: &mut MultiplexedConnection, first: Out) -> Result<(), LinkError> {
        let mut pipe = redis::pipe();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(out) = next {
            self.add(&mut pipe, out);
            n += 1;
            next = if n < BATCH {
                self.rx.try_recv().ok()
            } else {
                None
            };
        }
        timed(pipe.query_async::<()>(con)).await
    }

    fn add(&self, pipe: &mut redis::Pipeline, out: Out) {
        let id = self.bridge.id;
        match out {
            Out::Publish(msg) => {
                pipe.cmd("PUBLISH")
                    .arg(&self.keys.bus)
                    .arg(encode_message(id, &msg).as_ref())
                    .ignore();
            }
            Out::Joined {
                channel,
                uid,
                member,
            } => {
                pipe.cmd("HSET")
                    .arg(self.keys.members(id))
                    .arg(member_field(&channel, &uid))
                    .arg(member.as_ref())
                    .ignore();
                pipe.cmd("PUBLISH")
                    .arg(&self.keys.bus)
                    .arg(encode_presence(b'J', id, &[&channel, &uid, &member]).as_ref())
                    .ignore();
            }
            Out::Left { channel, uid } => {
                pipe.cmd("HDEL")
                    .arg(self.keys.members(id))
                    .arg(member_field(&channel, &uid))
                    .ignore();
                pipe.cmd("PUBLISH")
                    .arg(&self.keys.bus)
                    .arg(encode_presence(b'L', id, &[&channel, &uid]).as_ref())
                    .ignore();
            }
        }
    }

    /// Renew the heartbeat, and sweep instances whose heartbeat expired.
    async fn heartbeat(
        &mut self,
        hub: &Hub,
        con: &mut MultiplexedConnection,
    ) -> Result<(), LinkError> {
        if self.bridge.resync.load(Ordering::Acquire) {
            self.register(con).await?;
        }
        let mut pipe = redis::pipe();
        self.heartbeat_cmds(&mut pipe);
        pipe.cmd("SMEMBERS").arg(&self.keys.instances);
        let (listed,): (Vec<String>,) = timed(pipe.query_async(con)).await?;
        if Instant::now() < self.grace_until {
            return Ok(());
        }
        let mut ids: HashSet<InstanceId> = listed
            .iter()
            .filter_map(|s| u64::from_str_radix(s, 16).ok())
            .collect();
        for users in self.bridge.remote_r().values() {
            for mb in users.values() {
                ids.extend(mb.on.iter().copied());
            }
        }
        ids.remove(&self.bridge.id);
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<InstanceId> = ids.into_iter().collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("EXISTS").arg(self.keys.hb(*id));
        }
        let alive: Vec<bool> = timed(pipe.query_async(con)).await?;
        let mut sweep = redis::pipe();
        let mut dead = 0;
        for (id, alive) in ids.iter().zip(alive) {
            if alive {
                continue;
            }
            dead += 1;
            tracing::info!(instance = %format!("{id:016x}"), "hub: redis: instance heartbeat expired; removing its members");
            self.drop_instance(hub, *id);
            counter!(m::HUB_REDIS_SWEPT).increment(1);
            sweep.cmd("DEL").arg(self.keys.members(*id)).ignore();
            sweep
                .cmd("SREM")
                .arg(&self.keys.instances)
                .arg(format!("{id:016x}"))
                .ignore();
        }
        if dead > 0 {
            timed(sweep.query_async::<()>(con)).await?;
        }
        Ok(())
    }

    /// Send what is still queued (the sessions' last leaves), then remove this instance's
    /// record and tell the others it is gone.
    async fn goodbye(&mut self, con: &mut MultiplexedConnection) {
        while let Ok(out) = self.rx.try_recv() {
            if self.send(con, out).await.is_err() {
                return;
            }
        }
        let id = self.bridge.id;
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.keys.members(id)).ignore();
        pipe.cmd("DEL").arg(self.keys.hb(id)).ignore();
        pipe.cmd("SREM")
            .arg(&self.keys.instances)
            .arg(format!("{id:016x}"))
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(&self.keys.bus)
            .arg(header(b'X', id).as_ref())
            .ignore();
        let _ = timed(pipe.query_async::<()>(con)).await;
        self.set_up(false);
    }
}

fn drop_out(out: Out) {
    if let Out::Publish(_) = out {
        counter!(m::HUB_REDIS_DROPPED).increment(1);
    }
}

/// A member's hash field: the channel's length (4 bytes), the channel, the user id.
fn member_field(channel: &[u8], uid: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + channel.len() + uid.len());
    f.put_u32(channel.len() as u32);
    f.extend_from_slice(channel);
    f.extend_from_slice(uid);
    f
}

fn split_member_field(f: &[u8]) -> Option<(Bytes, Bytes)> {
    let (len, rest) = f.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let channel = rest.get(..len)?;
    let uid = rest.get(len..)?;
    Some((Bytes::copy_from_slice(channel), Bytes::copy_from_slice(uid)))
}

/// The user id JSON and `user_info` JSON of a `member_added` object.
fn parse_member(member: &Bytes) -> Option<(Bytes, Bytes)> {
    #[derive(serde::Deserialize)]
    struct M<'a> {
        #[serde(borrow)]
        user_id: &'a serde_json::value::RawValue,
        #[serde(borrow)]
        user_info: Option<&'a serde_json::value::RawValue>,
    }
    let m: M<'_> = serde_json::from_slice(member).ok()?;
    let id = member.slice_ref(m.user_id.get().as_bytes());
    let info = m.user_info.map_or_else(
        || Bytes::from_static(b"null"),
        |i| member.slice_ref(i.get().as_bytes()),
    );
    Some((id, info))
}

// --- The bus encoding ----------------------------------------------------------------------
//
// kind (1 byte) | instance id (8 bytes, big endian) | fields. A field is its length (4 bytes,
// big endian) and its bytes. Kinds: `M` a message, `J` a member joined (channel, user id,
// member JSON), `L` a member left (channel, user id), `S` read my record again, `X` I am gone.

fn header(kind: u8, id: InstanceId) -> Bytes {
    let mut b = BytesMut::with_capacity(9);
    b.put_u8(kind);
    b.put_u64(id);
    b.freeze()
}

fn put_field(b: &mut BytesMut, f: &[u8]) {
    b.put_u32(f.len() as u32);
    b.extend_from_slice(f);
}

/// A presence change: `kind` and its fields.
fn encode_presence(kind: u8, id: InstanceId, fields: &[&Bytes]) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
    b.put_u8(kind);
    b.put_u64(id);
    for f in fields {
        put_field(&mut b, f);
    }
    b.freeze()
}

/// A published message: channel, event (a presence byte, then the field), the leading
/// arguments (a count, then fields), the payload (a kind byte, then the field) and the meta
/// (a count, then name and value fields).
fn encode_message(id: InstanceId, msg: &HubMessage) -> Bytes {
    let meta: usize = msg.meta.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let args: usize = msg.args.iter().map(|a| 4 + a.len()).sum();
    let event = msg.event.as_ref().map_or(0, |e| 4 + e.len());
    let mut b = BytesMut::with_capacity(
        9 + 4 + msg.channel.len() + 1 + event + 4 + args + 5 + msg.payload.data.len() + 4 + meta,
    );
    b.put_u8(b'M');
    b.put_u64(id);
    put_field(&mut b, &msg.channel);
    match &msg.event {
        Some(e) => {
            b.put_u8(1);
            put_field(&mut b, e);
        }
        None => b.put_u8(0),
    }
    b.put_u32(msg.args.len() as u32);
    for a in &msg.args {
        put_field(&mut b, a);
    }
    b.put_u8(match msg.payload.kind {
        PayloadKind::Json => 0,
        PayloadKind::Text => 1,
        PayloadKind::Binary => 2,
    });
    put_field(&mut b, &msg.payload.data);
    b.put_u32(msg.meta.len() as u32);
    for (k, v) in &msg.meta {
        put_field(&mut b, k);
        put_field(&mut b, v);
    }
    b.freeze()
}

fn split_header(mut data: Bytes) -> Option<(u8, InstanceId, Bytes)> {
    if data.len() < 9 {
        return None;
    }
    let kind = data.get_u8();
    let id = data.get_u64();
    Some((kind, id, data))
}

/// A length-prefixed field, sliced (not copied) out of `b`.
fn field(b: &mut Bytes) -> Option<Bytes> {
    if b.len() < 4 {
        return None;
    }
    let len = b.get_u32() as usize;
    (b.len() >= len).then(|| b.split_to(len))
}

fn count(b: &mut Bytes) -> Option<usize> {
    (b.len() >= 4).then(|| b.get_u32() as usize)
}

fn byte(b: &mut Bytes) -> Option<u8> {
    (!b.is_empty()).then(|| b.get_u8())
}

fn decode_message(b: &mut Bytes) -> Option<HubMessage> {
    let channel = field(b)?;
    let event = match byte(b)? {
        0 => None,
        1 => Some(field(b)?),
        _ => return None,
    };
    let n = count(b)?;
    // Each argument takes at least its 4-byte length: a count beyond that is corrupt.
    if n > b.len() / 4 {
        return None;
    }
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        args.push(field(b)?);
    }
    let kind = match byte(b)? {
        0 => PayloadKind::Json,
        1 => PayloadKind::Text,
        2 => PayloadKind::Binary,
        _ => return None,
    };
    let data = field(b)?;
    let n = count(b)?;
    if n > b.len() / 8 {
        return None;
    }
    let mut meta = Vec::with_capacity(n);
    for _ in 0..n {
        meta.push((field(b)?, field(b)?));
    }
    if !b.is_empty() {
        return None;
    }
    let mut msg = HubMessage::new(channel, event, Payload { data, kind }, meta);
    msg.args = args;
    Some(msg)
}

#[cfg(test)]
mod tests {

    /// Other instances' messages wait for the link in a bounded queue, read off the
    /// subscription as they come; past the bound they are dropped, not buffered.
    #[tokio::test]
    async fn the_bus_is_read_at_once_into_a_bounded_queue() {
        let msgs = (0..BUS_QUEUE + 100).map(|i| {
            redis::Msg::from_owned_value(redis::Value::Array(vec![
                redis::Value::BulkString(b"message".to_vec()),
                redis::Value::BulkString(b"bus".to_vec()),
                redis::Value::BulkString(i.to_string().into_bytes()),
            ]))
            .unwrap()
        });
        let mut bus = Bus::new(futures_util::stream::iter(msgs.collect::<Vec<_>>()));
        let mut n = 0;
        while let Some(m) = bus.rx.recv().await {
            assert_eq!(m.get_payload_bytes(), n.to_string().as_bytes());
            n += 1;
        }
        assert_eq!(n, BUS_QUEUE);
    }
    use super::*;

    #[test]
    fn a_message_round_trips_and_its_fields_slice_the_received_bytes() {
        let mut msg = HubMessage::new(
            Bytes::from_static(b"presence-room"),
            Some(Bytes::from_static(b"message_created")),
            Payload {
                data: Bytes::from_static("{\"t\":\"héllo ✓\"}".as_bytes()),
                kind: PayloadKind::Json,
            },
            vec![(
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"application/json"),
            )],
        );
        msg.args = vec![Bytes::from_static(b"1"), Bytes::from_static(b"\"x\"")];
        let wire = encode_message(42, &msg);
        let (kind, from, mut body) = split_header(wire.clone()).unwrap();
        assert_eq!((kind, from), (b'M', 42));
        let back = decode_message(&mut body).unwrap();
        assert_eq!(back.channel, msg.channel);
        assert_eq!(back.event, msg.event);
        assert_eq!(back.args, msg.args);
        assert_eq!(back.payload, msg.payload);
        assert_eq!(back.meta, msg.meta);
        // Zero-copy from the received buffer.
        let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
        assert!(range.contains(&(back.payload.data.as_ptr() as usize)));

        let bare = HubMessage::new(
            Bytes::from_static(b"c"),
            None,
            Payload {
                data: Bytes::from_static(&[0, 255, 1]),
                kind: PayloadKind::Binary,
            },
            Vec::new(),
        );
        let (_, _, mut body) = split_header(encode_message(1, &bare)).unwrap();
        let back = decode_message(&mut body).unwrap();
        assert_eq!(back.event, None);
        assert_eq!(back.payload, bare.payload);
    }

    #[test]
    fn truncated_or_corrupt_messages_do_not_decode() {
        let msg = HubMessage::new(
            Bytes::from_static(b"ch"),
            Some(Bytes::from_static(b"ev")),
            Payload::json(Bytes::from_static(b"{}")),
            vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
        );
        let wire = encode_message(7, &msg);
        for cut in 0..wire.len() {
            if let Some((_, _, mut body)) = split_header(wire.slice(..cut)) {
                assert!(decode_message(&mut body).is_none(), "cut at {cut}");
            }
        }
        let mut huge = BytesMut::new();
        put_field(&mut huge, b"ch");
        huge.put_u8(0);
        huge.put_u32(u32::MAX);
        assert!(decode_message(&mut huge.freeze()).is_none());
    }

    #[test]
    fn presence_fields_and_member_records() {
        let c = Bytes::from_static(b"presence-room");
        let u = Bytes::from_static(b"ann");
        let mb = Bytes::from_static(
            b"{\"user_id\":\"ann\",\"user_info\":{\"name\":\"Ann \xE2\x9C\x93\"}}",
        );
        let (_, from, mut body) = split_header(encode_presence(b'J', 9, &[&c, &u, &mb])).unwrap();
        assert_eq!(from, 9);
        assert_eq!(field(&mut body).unwrap(), c);
        assert_eq!(field(&mut body).unwrap(), u);
        assert_eq!(field(&mut body).unwrap(), mb);
        assert!(field(&mut body).is_none());
        assert_eq!(split_member_field(&member_field(&c, &u)), Some((c, u)));
        let (id, info) = parse_member(&mb).unwrap();
        assert_eq!(&id[..], b"\"ann\"");
        assert_eq!(&info[..], "{\"name\":\"Ann ✓\"}".as_bytes());
    }
}
