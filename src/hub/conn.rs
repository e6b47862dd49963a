//! One session's attachment to the hub: the client operations it hands over (already in the
//! hub's neutral naming) and the events they come to, the authorization of `private-` and
//! `presence-` channels, and leaving everything when it is dropped.
//!
//! Must not touch: wire bytes, the session's queues (deliveries arrive on [`Conn::recv`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ConnId, Delivery, Hub, HubMessage};
use crate::frame::{
    BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind, Identity, Payload, SubId, SubParams,
};

/// Who a connection is: what the edge verified of it.
pub type Who = Option<Arc<Identity>>;

/// What a channel's name makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// `private-`: needs authorization.
    Private,
    /// `presence-`: needs authorization and a user id; keeps membership.
    Presence,
}

/// The kind of a channel, by its prefix (Pusher's convention, which the hub takes for every
/// dialect).
pub fn channel_kind(channel: &[u8]) -> ChannelKind {
    if channel.starts_with(b"presence-") {
        ChannelKind::Presence
    } else if channel.starts_with(b"private-") {
        ChannelKind::Private
    } else {
        ChannelKind::Public
    }
}

/// A presence member: (user id, `member_added` JSON, `user_info` JSON, user id as JSON).
pub(crate) type MemberData = (Bytes, Bytes, Bytes, Bytes);

/// Whether a subscription may be made, and as which presence member. A `private-` or
/// `presence-` channel needs a signature the server role verified (`params.signed`: a
/// Pusher client's, made with the route's app secret) or an edge-verified identity whose
/// `channels` patterns allow it. The presence member is the signed `channel_data` when
/// there is one, else the identity's `user_id` and `user_info`.
pub fn authorize(
    channel: &[u8],
    params: &SubParams,
    who: Option<&Identity>,
) -> Result<Option<MemberData>, ErrorInfo> {
    let kind = channel_kind(channel);
    if kind == ChannelKind::Public {
        return Ok(None);
    }
    let allowed = params.signed || who.is_some_and(|i| i.allows(channel));
    if !allowed {
        return Err(ErrorInfo::new(
            ErrorKind::Unauthorized,
            format!(
                "subscription to {} needs authorization",
                String::from_utf8_lossy(channel)
            ),
        ));
    }
    if kind == ChannelKind::Private {
        return Ok(None);
    }
    let member = match (&params.channel_data, who) {
        (Some(cd), _) if params.signed => member_from_channel_data(cd),
        (_, Some(i)) => i
            .user_id
            .as_ref()
            .map(|u| member(u.clone(), i.user_info.clone())),
        _ => None,
    };
    member.map(Some).ok_or_else(|| {
        ErrorInfo::new(
            ErrorKind::Unauthorized,
            "presence channels need a user id (signed channel_data, or a token's sub)",
        )
    })
}

fn member_from_channel_data(cd: &[u8]) -> Option<MemberData> {
    #[derive(serde::Deserialize)]
    struct Cd<'a> {
        #[serde(borrow)]
        user_id: &'a serde_json::value::RawValue,
        #[serde(borrow, default)]
        user_info: Option<&'a serde_json::value::RawValue>,
    }
    let cd: Cd<'_> = serde_json::from_slice(cd).ok()?;
    // Pusher member ids are strings on the wire (`"ids":["10"]`) whether the app signed a
    // number or a string.
    let id = match serde_json::from_str::<serde_json::Value>(cd.user_id.get()).ok()? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let info = cd.user_info.map(|i| Bytes::from(i.get().to_owned()));
    Some(member(Bytes::from(id), info))
}

fn member(uid: Bytes, info: Option<Bytes>) -> MemberData {
    let id_json = crate::dialect::json::json_string(&uid);
    let info = info
        .filter(|i| crate::dialect::json::is_json(i))
        .unwrap_or_else(|| Bytes::from_static(b"null"));
    let mut added = b"{\"user_id\":".to_vec();
    added.extend_from_slice(&id_json);
    added.extend_from_slice(b",\"user_info\":");
    added.extend_from_slice(&info);
    added.push(b'}');
    (uid, Bytes::from(added), info, id_json)
}

#[derive(Debug)]
struct Sub {
    channel: Bytes,
    user: Option<Bytes>,
}

/// One session's attachment. Dropping it leaves every channel (presence members removed,
/// counts updated) and detaches the connection.
#[derive(Debug)]
pub struct Conn {
    hub: Arc<Hub>,
    id: ConnId,
    rx: mpsc::Receiver<Delivery>,
    lagged: CancellationToken,
    /// The bytes charged for what `rx` holds, given back here as deliveries are taken.
    queued: Arc<AtomicUsize>,
    who: Who,
    subs: HashMap<SubId, Sub>,
}

impl Conn {
    pub(super) fn new(
        hub: Arc<Hub>,
        id: ConnId,
        rx: mpsc::Receiver<Delivery>,
        lagged: CancellationToken,
        queued: Arc<AtomicUsize>,
        who: Who,
    ) -> Self {
        Self {
            hub,
            id,
            rx,
            lagged,
            queued,
            who,
            subs: HashMap::new(),
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The next delivery (cancel-safe).
    pub async fn recv(&mut self) -> Option<Delivery> {
        let d = self.rx.recv().await;
        self.taken(d)
    }

    /// A delivery already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let d = self.rx.try_recv().ok();
        self.taken(d)
    }

    fn taken(&self, d: Option<Delivery>) -> Option<Delivery> {
        if let Some(d) = &d {
            self.queued.fetch_sub(d.held_bytes(), Ordering::Relaxed);
        }
        d
    }

    /// Cancelled when a publish found this connection's queue full: it is a slow consumer.
    pub fn lagged(&self) -> &CancellationToken {
        &self.lagged
    }

    /// Carry out one client operation (in the hub's naming); the events it comes to.
    pub fn op(&mut self, op: ClientOp, out: &mut Vec<BackendEvent>) {
        match op {
            ClientOp::Connect { credentials } | ClientOp::Reauth { credentials } => {
                self.reauth(credentials, out)
            }
            ClientOp::Subscribe {
                sub,
                channel,
                params,
            } => self.subscribe(sub, channel, &params, out),
            // Argument-list shapes pass only between Socket.IO legs, never to the hub.
            op @ (ClientOp::Join { .. }
            | ClientOp::Leave { .. }
            | ClientOp::Emit { .. }
            | ClientOp::Answer { .. }) => out.extend(op.shape_refusal()),
            ClientOp::Unsubscribe { sub } => {
                if let Some(s) = self.subs.remove(&sub) {
                    self.hub
                        .unsubscribe(self.id, sub, &s.channel, s.user.as_ref());
                }
            }
            ClientOp::Publish {
                channel,
                event,
                args,
                payload,
                mut meta,
                reply,
                ..
            } => {
                // Who sent it is the hub's to say, from its member record.
                meta.retain(|(k, _)| !crate::frame::is_internal(k));
                if channel_kind(&channel) != ChannelKind::Public {
                    // As for reading: a private or presence channel takes messages from a
                    // connection subscribed to it (authorized then) or whose identity
                    // allows it, as Pusher takes client events only from members.
                    let held = self.subs.values().find(|s| s.channel == channel);
                    let allowed =
                        held.is_some() || self.who.as_deref().is_some_and(|i| i.allows(&channel));
                    if !allowed {
                        let e = ErrorInfo::new(
                            ErrorKind::Unauthorized,
                            format!(
                                "publishing to {} needs a subscription to it",
                                String::from_utf8_lossy(&channel)
                            ),
                        );
                        out.push(match reply {
                            Some(r) => BackendEvent::Reply {
                                id: r.id,
                                result: Err(e),
                            },
                            None => BackendEvent::Refused(e),
                        });
                        return;
                    }
                    if let Some(user) = held.and_then(|s| s.user.clone()) {
                        meta.push((Bytes::from_static(crate::frame::SENDER), user));
                    }
                }
                let mut msg = HubMessage::new(channel, event, payload, meta);
                msg.args = args;
                self.hub.publish(Some(self.id), msg);
                // Accepted by the hub: that is all a confirmation says (no application
                // result is invented, PROTOCOLS §6.2).
                if let Some(r) = reply {
                    out.push(BackendEvent::Reply {
                        id: r.id,
                        result: Ok(None),
                    });
                }
            }
            // Nothing is redelivered: acks are no-ops.
            ClientOp::Ack { .. } => {}
            ClientOp::Disconnect => self.leave_all(),
        }
    }

    /// New credentials on the open session: the identity they carry is who this
    /// connection is from now on (subscriptions made before stay).
    fn reauth(&mut self, c: Credentials, out: &mut Vec<BackendEvent>) {
        if c.identity.is_some() {
            self.who = c.identity;
        }
        out.push(BackendEvent::AuthChanged { token: c.token });
    }

    fn subscribe(
        &mut self,
        sub: SubId,
        channel: Bytes,
        params: &SubParams,
        out: &mut Vec<BackendEvent>,
    ) {
        let member = match authorize(&channel, params, self.who.as_deref()) {
            Ok(m) => m,
            Err(reason) => {
                out.push(BackendEvent::SubscribeFailed { sub, reason });
                return;
            }
        };
        if let Some(old) = self.subs.remove(&sub) {
            self.hub
                .unsubscribe(self.id, sub, &old.channel, old.user.as_ref());
        }
        let user = member.as_ref().map(|m| m.0.clone());
        let joined = self.hub.subscribe(self.id, sub, &channel, member);
        self.subs.insert(
            sub,
            Sub {
                channel: channel.clone(),
                user,
            },
        );
        let presence = joined.snapshot.is_some();
        out.push(BackendEvent::Subscribed {
            sub,
            data: joined.snapshot.map(Payload::json),
        });
        if !presence {
            out.push(BackendEvent::SubscriptionCount {
                channel,
                count: joined.count as u64,
            });
        }
    }

    fn leave_all(&mut self) {
        for (sub, s) in self.subs.drain() {
            self.hub
                .unsubscribe(self.id, sub, &s.channel, s.user.as_ref());
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.leave_all();
        self.hub.detach(self.id);
    }
}
