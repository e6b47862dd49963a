//! The dialect-neutral frame model that every server role and client role meets in.
//!
//! Owns: the operations a client asks of a backend ([`ClientOp`]) and the events a backend
//! produces ([`BackendEvent`]), with channel, event and payload kept as `Bytes` slices of the
//! WebSocket message they were received in.
//!
//! Must not touch: parsing, I/O, configuration. Nothing here knows a wire format.

use std::sync::Arc;

use bytes::Bytes;

/// A subscription id, allocated by the downstream (server-role) leg, unique within a session.
pub type SubId = u64;

/// Headers a dialect carries beside the payload (STOMP user headers such as `reply-to`,
/// `correlation-id` or custom ones); passed between legs that have headers, dropped by legs
/// that have none.
pub type Meta = Vec<(Bytes, Bytes)>;

/// The meta key of a client event's sender on a presence channel (its member's user id, as
/// a plain string): set only from a verified identity (member data the app signed, a
/// Pusher server's own `user_id`, the hub's member record), never from a client's headers.
/// It starts with a NUL byte, which no header read off any wire can hold, so a client
/// cannot claim it; and it is never written on a wire as a header (see [`is_internal`]).
pub const SENDER: &[u8] = b"\0sender";

/// Whether a meta key is the proxy's own ([`SENDER`]) rather than a header to pass on.
pub fn is_internal(key: &[u8]) -> bool {
    key.first() == Some(&0)
}

/// A correlation id for a publish that wants an answer, allocated by the downstream leg.
/// Each leg keeps its own wire ids (STOMP receipt, Socket.IO ack id) in its own table.
pub type ReplyId = u64;

/// A publish that wants an answer: which one, and what kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The downstream leg's id, echoed in [`BackendEvent::Reply`].
    pub id: ReplyId,
    /// The client expects data back (a Socket.IO ack's arguments, an SC emit callback): an
    /// upstream that can answer with data always asks its backend for the answer. `false`
    /// for a receipt-style confirmation (STOMP `receipt`), which is confirmed once written
    /// upstream unless the route sets `upstream.acks`, or the backend's own receipt where
    /// its dialect has one.
    pub data: bool,
}

impl Reply {
    /// A request for the backend's answer.
    pub fn data(id: ReplyId) -> Self {
        Self { id, data: true }
    }
    /// A request for a confirmation.
    pub fn receipt(id: ReplyId) -> Self {
        Self { id, data: false }
    }
}

/// What a subscription carries besides its channel, for backends that authorize or
/// parameterize subscriptions.
// Debug is written out below: `auth` is a signature and never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SubParams {
    /// A channel authorization (Pusher `auth`: `<key>:<hmac>`), checked by the leg that
    /// issued the socket id it is bound to; never forwarded as is.
    pub auth: Option<Bytes>,
    /// Presence member data (Pusher `channel_data`: a JSON string with `user_id`, `user_info`).
    pub channel_data: Option<Bytes>,
    /// Free subscription data, raw JSON: SocketCluster `#subscribe` data, the params of an
    /// Action Cable identifier (`{"channel":"ChatChannel","room":7}` without `channel`).
    pub data: Option<Payload>,
    /// The server role verified a channel authorization for this subscription itself (a
    /// Pusher signature made with the route's app secret over its own socket id): an
    /// in-process backend (the embedded hub) takes it as the channel's authorization. Never
    /// set from anything a client merely claims.
    pub signed: bool,
}

impl SubParams {
    fn held_bytes(&self) -> usize {
        self.auth.as_ref().map_or(0, Bytes::len)
            + self.channel_data.as_ref().map_or(0, Bytes::len)
            + self.data.as_ref().map_or(0, |p| p.data.len())
    }
}

/// How a payload's bytes are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// One complete, valid JSON value.
    Json,
    /// UTF-8 text that is not (known to be) JSON.
    Text,
    /// Opaque octets.
    Binary,
}

/// A message body: raw bytes plus how to read them. Never re-parsed unless a wire forces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The bytes, a slice of the received WebSocket message where possible.
    pub data: Bytes,
    /// How `data` is to be read.
    pub kind: PayloadKind,
}

impl Payload {
    /// A JSON payload.
    pub fn json(data: Bytes) -> Self {
        Self {
            data,
            kind: PayloadKind::Json,
        }
    }
    /// A text payload.
    pub fn text(data: Bytes) -> Self {
        Self {
            data,
            kind: PayloadKind::Text,
        }
    }
    /// A binary payload.
    pub fn binary(data: Bytes) -> Self {
        Self {
            data,
            kind: PayloadKind::Binary,
        }
    }
    /// The JSON `null`, used where a wire needs an argument but none was given.
    pub fn null() -> Self {
        Self::json(Bytes::from_static(b"null"))
    }
}

/// Credentials found in the client's handshake, to be presented to the backend.
// Debug is written out below: secrets print as their length only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// A bearer token (`Authorization: Bearer`, STOMP `passcode`, Socket.IO `auth.token`, query `token`).
    pub token: Option<Bytes>,
    /// A login name (STOMP `login`).
    pub login: Option<Bytes>,
    /// A password (STOMP `passcode` when a login is given as well).
    pub passcode: Option<Bytes>,
    /// The raw auth object a Socket.IO client sent in CONNECT, when it was one (JSON).
    pub auth_json: Option<Bytes>,
    /// The `Cookie` header of the client's upgrade, for backends that authenticate at their
    /// own upgrade (Action Cable, a Socket.IO server behind session cookies).
    pub cookie: Option<Bytes>,
    /// The `Origin` header of the client's upgrade (Rails refuses upgrades without one).
    pub origin: Option<Bytes>,
    /// Who the client is, as verified at the edge (`[route.auth]`): set by the session once
    /// the client's token was verified, never taken from the client's frames as is.
    pub identity: Option<Arc<Identity>>,
}

/// A client identity verified at the edge from a token's claims: what an in-process backend
/// (the embedded hub) authorizes private and presence channels with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the presence member id.
    pub user_id: Option<Bytes>,
    /// The token's `info` claim, raw JSON: the presence member info.
    pub user_info: Option<Bytes>,
    /// Channel patterns from the token's `channels` claim; `*` matches any run of bytes.
    pub channels: Vec<Bytes>,
}

impl Identity {
    /// Whether one of the `channels` patterns grants `channel`.
    pub fn allows(&self, channel: &[u8]) -> bool {
        self.channels.iter().any(|p| glob(p, channel))
    }
}

/// `*`-only glob match, iterative with one backtrack point (linear in practice, no recursion).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// What the client side asks of the backend, in the downstream dialect's naming until the
/// translator rewrites `channel` into the upstream dialect's naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Open the upstream session with these credentials.
    Connect {
        /// Credentials collected from the downstream handshake.
        credentials: Credentials,
    },
    /// Start receiving what is published on `channel`.
    Subscribe {
        /// Downstream-allocated id.
        sub: SubId,
        /// Channel, destination or event name.
        channel: Bytes,
        /// Authorization and data the subscription carries.
        params: SubParams,
    },
    /// Stop a subscription.
    Unsubscribe {
        /// The id given in `Subscribe`.
        sub: SubId,
    },
    /// Publish (send, emit, perform) a payload.
    Publish {
        /// Channel, destination or event name.
        channel: Bytes,
        /// An explicit event name where the dialect carries one apart from the channel.
        event: Option<Bytes>,
        /// Leading arguments filled from a route template (Socket.IO extra args), raw JSON.
        args: Vec<Bytes>,
        /// The body.
        payload: Payload,
        /// User headers.
        meta: Meta,
        /// Set when the client wants to hear that the publish was done, or its answer.
        reply: Option<Reply>,
        /// A publish to the channel's subscribers (SocketCluster `#publish`, a STOMP SEND to
        /// a subscription's destination) rather than an event for the backend's application
        /// (an emit, an RPC, a SEND to `/app/..`). Dialects that do not tell them apart send
        /// both the same way.
        broadcast: bool,
        /// The client's subscription the publish is made on, when there is one: the
        /// translator sets it when `channel` is a subscribed name, so that a backend that
        /// takes actions on a subscription (Action Cable `perform`) knows which one.
        sub: Option<SubId>,
    },
    /// Acknowledge (or refuse) a delivered message: for upstreams with client acks, and for
    /// backends that asked for an ack when they emitted it (Socket.IO).
    Ack {
        /// The upstream's own ack token as it was handed down in `BackendEvent::Message`.
        token: Bytes,
        /// `false` for a NACK.
        positive: bool,
        /// What the client answered, where its dialect answers with data (a Socket.IO ack's
        /// argument array); `None` for a plain ACK/NACK.
        result: Option<Payload>,
    },
    /// Authenticate again on the open session (SocketCluster `#authenticate`, Pusher
    /// `pusher:signin`, a second Socket.IO-style CONNECT). A backend dialect that cannot
    /// re-authenticate refuses it ([`BackendEvent::Refused`]); the session stays as it was.
    Reauth {
        /// The new credentials.
        credentials: Credentials,
    },
    /// The client is leaving.
    Disconnect,
    /// Join a scope of the open upstream session with its own auth (a Socket.IO namespace,
    /// multiplexed over the session's one connection). Only sent to an upstream of the same
    /// shape as the client (see [`Shaped`]); answered by [`BackendEvent::Joined`] or
    /// [`BackendEvent::JoinFailed`].
    Join {
        /// The scope's name, as the client gave it.
        scope: Bytes,
        /// The scope's auth object, raw JSON, as the client gave it.
        auth: Option<Bytes>,
    },
    /// Leave a scope joined with [`ClientOp::Join`].
    Leave {
        /// The scope's name.
        scope: Bytes,
    },
    /// A publish kept in its argument-list shape, for an upstream of the same shape: every
    /// value where the client put it, attachments in place, the list's first value naming
    /// the event. Answered, when `reply` is set, by [`BackendEvent::Answered`] (or a failed
    /// [`BackendEvent::Reply`]).
    Emit {
        /// The scope it is made in.
        scope: Bytes,
        /// The values.
        values: Shaped,
        /// The downstream leg's id for the answer, when one is wanted.
        reply: Option<ReplyId>,
    },
    /// The client's answer, in argument-list shape, to a [`BackendEvent::Emit`] that asked
    /// for one.
    Answer {
        /// The upstream's token from [`BackendEvent::Emit`]'s `ack`.
        token: Bytes,
        /// The answer's values.
        values: Shaped,
    },
}

/// `b` in a buffer of its own (see [`ClientOp::detach`]); its length.
pub(crate) fn own(b: &mut Bytes) -> usize {
    *b = Bytes::copy_from_slice(b);
    b.len()
}

fn own_opt(b: &mut Option<Bytes>) -> usize {
    b.as_mut().map_or(0, own)
}

impl ClientOp {
    /// Moves every byte string this operation holds into buffers of its own, and returns the
    /// bytes copied. An operation read off the wire holds slices of the message it came in,
    /// and a slice keeps that whole message alive: a 20-byte header of a 1 MiB WebSocket
    /// message held 1 MiB. Queues that hold operations for long (a STOMP transaction, ops
    /// waiting for a backend's handshake) detach what they hold, so that their byte budget,
    /// [`ClientOp::held_bytes`], is what they keep.
    pub fn detach(&mut self) -> usize {
        match self {
            Self::Publish {
                channel,
                event,
                args,
                payload,
                meta,
                ..
            } => {
                own(channel)
                    + own_opt(event)
                    + args.iter_mut().map(own).sum::<usize>()
                    + own(&mut payload.data)
                    + meta.iter_mut().map(|(k, v)| own(k) + own(v)).sum::<usize>()
            }
            Self::Subscribe {
                channel, params, ..
            } => {
                own(channel)
                    + own_opt(&mut params.auth)
                    + own_opt(&mut params.channel_data)
                    + params.data.as_mut().map_or(0, |p| own(&mut p.data))
            }
            Self::Ack { token, result, .. } => {
                own(token) + result.as_mut().map_or(0, |p| own(&mut p.data))
            }
            Self::Connect { credentials } | Self::Reauth { credentials } => {
                own_opt(&mut credentials.token)
                    + own_opt(&mut credentials.login)
                    + own_opt(&mut credentials.passcode)
                    + own_opt(&mut credentials.auth_json)
                    + own_opt(&mut credentials.cookie)
                    + own_opt(&mut credentials.origin)
            }
            Self::Unsubscribe { .. } | Self::Disconnect => 0,
            Self::Join { scope, auth } => own(scope) + own_opt(auth),
            Self::Leave { scope } => own(scope),
            Self::Emit { scope, values, .. }
            | Self::Answer {
                token: scope,
                values,
            } => {
                own(scope)
                    + own(&mut values.list)
                    + values.attachments.iter_mut().map(own).sum::<usize>()
            }
        }
    }

    /// The bytes this operation keeps alive while it waits (for a backend being dialed, or a
    /// CONNECT in flight): what bounds such queues besides their length.
    pub fn held_bytes(&self) -> usize {
        match self {
            Self::Publish {
                channel,
                event,
                args,
                payload,
                meta,
                ..
            } => {
                channel.len()
                    + event.as_ref().map_or(0, Bytes::len)
                    + args.iter().map(Bytes::len).sum::<usize>()
                    + payload.data.len()
                    + meta.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            }
            Self::Subscribe {
                channel, params, ..
            } => channel.len() + params.held_bytes(),
            Self::Ack { token, result, .. } => {
                token.len() + result.as_ref().map_or(0, |p| p.data.len())
            }
            Self::Connect { credentials } | Self::Reauth { credentials } => [
                &credentials.token,
                &credentials.login,
                &credentials.passcode,
                &credentials.auth_json,
                &credentials.cookie,
                &credentials.origin,
            ]
            .iter()
            .map(|b| b.as_ref().map_or(0, Bytes::len))
            .sum(),
            Self::Unsubscribe { .. } | Self::Disconnect => 0,
            Self::Join { scope, auth } => scope.len() + auth.as_ref().map_or(0, Bytes::len),
            Self::Leave { scope } => scope.len(),
            Self::Emit { scope, values, .. } => scope.len() + values.held_bytes(),
            Self::Answer { token, values } => token.len() + values.held_bytes(),
        }
    }
}

impl ClientOp {
    /// What a leg without argument-list shapes answers one of those operations with
    /// ([`ClientOp::Join`], [`ClientOp::Leave`], [`ClientOp::Emit`], [`ClientOp::Answer`]):
    /// a failed reply for an emit that wants one, a refusal for a join, nothing otherwise.
    pub fn shape_refusal(self) -> Option<BackendEvent> {
        let e = || {
            ErrorInfo::new(
                ErrorKind::Untranslatable,
                "the backend's dialect has no argument lists or scopes",
            )
        };
        match self {
            Self::Emit {
                reply: Some(id), ..
            } => Some(BackendEvent::Reply {
                id,
                result: Err(e()),
            }),
            Self::Join { scope, .. } => Some(BackendEvent::JoinFailed { scope, data: None }),
            _ => None,
        }
    }
}

/// Why a backend refused or ended something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Credentials refused.
    Unauthorized,
    /// The backend could not be reached or went away.
    Unavailable,
    /// The backend broke its protocol, or refused ours.
    Protocol,
    /// A request timed out.
    Timeout,
    /// A frame could not be translated to the other dialect.
    Untranslatable,
    /// A size or count limit was exceeded.
    Limit,
}

impl ErrorKind {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::Untranslatable => "untranslatable",
            Self::Limit => "limit",
        }
    }
}

/// An error that ends or refuses something, with the backend's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Human-readable message, in the backend's words where it gave some.
    pub message: Bytes,
    /// Extra detail (a JSON value or text), e.g. Socket.IO `data`, STOMP ERROR body.
    pub detail: Option<Payload>,
    /// The dialect's own error code where it has one (Pusher 4001–4301, SocketCluster
    /// 4000–4008, a WebSocket close code), so a leg of the same family can pass it on.
    pub code: Option<u16>,
}

impl ErrorInfo {
    /// An error with a static message.
    pub fn new(kind: ErrorKind, message: impl Into<Bytes>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
            code: None,
        }
    }

    /// The same error with the dialect's code.
    pub fn with_code(mut self, code: u16) -> Self {
        self.code = Some(code);
        self
    }
}

/// What the backend side tells the client side, in the upstream dialect's naming until the
/// translator rewrites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// The upstream session is open.
    Ready {
        /// The backend's session id, if it gave one.
        session: Option<Bytes>,
    },
    /// A subscription was confirmed.
    Subscribed {
        /// The id from `ClientOp::Subscribe`.
        sub: SubId,
        /// What the confirmation carries, raw JSON: a Pusher presence snapshot
        /// (`{"presence":{"ids":[..],"hash":{..},"count":n}}`), SocketCluster's answer data.
        data: Option<Payload>,
    },
    /// A subscription was refused.
    SubscribeFailed {
        /// The id from `ClientOp::Subscribe`.
        sub: SubId,
        /// Why.
        reason: ErrorInfo,
    },
    /// The backend ended a subscription it had confirmed (SocketCluster `#kickOut`, an Action
    /// Cable `reject_subscription` after `confirm_subscription`). The subscription is gone:
    /// nothing more is delivered on it.
    Unsubscribed {
        /// The id from `ClientOp::Subscribe`.
        sub: SubId,
        /// Why, in the backend's words.
        reason: ErrorInfo,
    },
    /// The backend changed the session's authentication (SocketCluster `#setAuthToken`,
    /// `#removeAuthToken`); a client dialect that can hold a token is told.
    AuthChanged {
        /// The new token, `None` when it was removed.
        token: Option<Bytes>,
    },
    /// How many connections are subscribed to a channel (Pusher `subscription_count`).
    SubscriptionCount {
        /// The channel.
        channel: Bytes,
        /// The count.
        count: u64,
    },
    /// A published message.
    Message {
        /// The subscription it was delivered for, when the upstream wire says.
        sub: Option<SubId>,
        /// Channel, destination or event name.
        channel: Bytes,
        /// Explicit event name, where the upstream dialect carries one apart from the channel.
        event: Option<Bytes>,
        /// Leading arguments before the payload (Socket.IO extra args), raw JSON.
        args: Vec<Bytes>,
        /// The body.
        payload: Payload,
        /// User headers.
        meta: Meta,
        /// The upstream's ack token when it expects the client to acknowledge.
        ack: Option<Bytes>,
    },
    /// The answer to a publish that asked for one.
    Reply {
        /// The id from `ClientOp::Publish`.
        id: ReplyId,
        /// `Ok` with the backend's answer (if any), or the failure.
        result: Result<Option<Payload>, ErrorInfo>,
    },
    /// A presence change on a channel.
    Presence {
        /// The channel.
        channel: Bytes,
        /// The member that came or went, raw JSON.
        member: Bytes,
        /// `true` when added, `false` when removed.
        added: bool,
    },
    /// A publish nobody asked an answer for could not be carried out (untranslatable,
    /// too large). Not fatal: the client's dialect decides (STOMP must send ERROR; Socket.IO
    /// has nothing to answer with and drops it).
    Refused(ErrorInfo),
    /// The backend sent something the route cannot carry to the client (say, binary in a
    /// shape one neutral payload cannot hold); it was dropped. Not an answer to anything the
    /// client did: the session counts it and no server role acts on it.
    Dropped(ErrorInfo),
    /// A fatal error: the upstream session is over.
    Error(ErrorInfo),
    /// The backend is closing the session.
    Closing {
        /// Why.
        reason: ErrorInfo,
        /// Whether a client may reconnect at once.
        retry: bool,
    },
    /// A scope asked for with [`ClientOp::Join`] was joined.
    Joined {
        /// The scope's name.
        scope: Bytes,
        /// What the backend answered the join with, raw JSON (a Socket.IO `{"sid":..}`).
        data: Option<Bytes>,
    },
    /// A scope asked for with [`ClientOp::Join`] was refused; the session goes on.
    JoinFailed {
        /// The scope's name.
        scope: Bytes,
        /// The backend's refusal, raw JSON (a Socket.IO `{"message":..,"data":..}`).
        data: Option<Bytes>,
    },
    /// The backend ended a joined scope; the session goes on.
    Left {
        /// The scope's name.
        scope: Bytes,
    },
    /// A message kept in its argument-list shape (see [`ClientOp::Emit`]), from an upstream
    /// of the same shape as the client.
    Emit {
        /// The scope it was sent in.
        scope: Bytes,
        /// The values; the first one names the event.
        values: Shaped,
        /// The upstream's token when the backend asked for an answer
        /// ([`ClientOp::Answer`]).
        ack: Option<Bytes>,
    },
    /// The backend's answer, in argument-list shape, to a [`ClientOp::Emit`] with a reply id.
    Answered {
        /// The id from `ClientOp::Emit`.
        id: ReplyId,
        /// The answer's values.
        values: Shaped,
    },
}

/// Values in the shape a wire with argument lists gave them (Socket.IO events and acks):
/// carried between two legs of that shape unchanged, so nothing is packed, unpacked or
/// renumbered on the way. Other legs never see it: a server role whose upstream has another
/// shape publishes single payloads instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shaped {
    /// The values as one raw JSON array, each value where the sender put it; a binary value
    /// is the wire's own reference to its attachment (by index), kept as it came.
    pub list: Bytes,
    /// The binary attachments the list refers to, in index order.
    pub attachments: Vec<Bytes>,
}

impl Shaped {
    /// The bytes held: the list and every attachment.
    pub fn held_bytes(&self) -> usize {
        self.list.len() + self.attachments.iter().map(Bytes::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_channel_patterns() {
        let id = Identity {
            channels: vec![
                Bytes::from("private-user-42"),
                Bytes::from("presence-room-*"),
                Bytes::from("*-public"),
            ],
            ..Default::default()
        };
        assert!(id.allows(b"private-user-42"));
        assert!(!id.allows(b"private-user-421"));
        assert!(id.allows(b"presence-room-"));
        assert!(id.allows(b"presence-room-7"));
        assert!(!id.allows(b"presence-roo"));
        assert!(id.allows(b"a-b-public"));
        assert!(!id.allows(b"a-b-public-x"));
        assert!(!Identity::default().allows(b"anything"));
        let all = Identity {
            channels: vec![Bytes::from("*")],
            ..Default::default()
        };
        assert!(all.allows(b""));
        assert!(all.allows(b"private-x"));
    }

    #[test]
    fn held_bytes_counts_what_the_client_sized() {
        let op = ClientOp::Publish {
            meta: vec![(Bytes::from("k"), Bytes::from("vv"))],
            channel: Bytes::from("ch"),
            event: Some(Bytes::from("ev")),
            args: vec![Bytes::from("[1]")],
            payload: Payload::json(Bytes::from("{}")),
            reply: None,
            broadcast: false,
            sub: None,
        };
        assert_eq!(op.held_bytes(), 3 + 2 + 2 + 3 + 2);
        let sub = ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/topic/a"),
            params: SubParams {
                auth: Some(Bytes::from("k:sig")),
                ..Default::default()
            },
        };
        assert_eq!(sub.held_bytes(), 8 + 5);
        let ack = ClientOp::Ack {
            token: Bytes::from("t-1"),
            positive: true,
            result: Some(Payload::json(Bytes::from("[true]"))),
        };
        assert_eq!(ack.held_bytes(), 3 + 6);
        assert_eq!(ClientOp::Unsubscribe { sub: 1 }.held_bytes(), 0);
        assert_eq!(ClientOp::Disconnect.held_bytes(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Redacting Debug (issue 14): no log line at any level, and no `{:?}` of an operation that
// carries them, prints a token, passcode, cookie, signature or auth object. Their Debug shows
// whether each is there and how long it is, nothing else.
// ---------------------------------------------------------------------------------------------

/// `{:?}` of a secret: `None`, or `Some(<redacted N bytes>)`.
pub struct Redacted<'a>(pub Option<&'a [u8]>);

impl<'a> Redacted<'a> {
    /// Of an optional `Bytes` field.
    pub fn of(b: &'a Option<Bytes>) -> Self {
        Self(b.as_deref())
    }
}

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(b) => write!(f, "Some(<redacted {} bytes>)", b.len()),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &Redacted::of(&self.token))
            .field("login", &Redacted::of(&self.login))
            .field("passcode", &Redacted::of(&self.passcode))
            .field("auth_json", &Redacted::of(&self.auth_json))
            .field("cookie", &Redacted::of(&self.cookie))
            .field("origin", &self.origin)
            .field("identity", &self.identity)
            .finish()
    }
}

impl std::fmt::Debug for SubParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubParams")
            .field("auth", &Redacted::of(&self.auth))
            .field("channel_data", &self.channel_data)
            .field("data", &self.data)
            .finish()
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn credentials_and_sub_params_debug_print_no_secret() {
        let c = Credentials {
            token: Some(Bytes::from_static(b"tok-SECRET-1")),
            login: Some(Bytes::from_static(b"user")),
            passcode: Some(Bytes::from_static(b"pass-SECRET-2")),
            auth_json: Some(Bytes::from_static(br#"{"token":"SECRET-3"}"#)),
            cookie: Some(Bytes::from_static(b"sid=SECRET-4")),
            origin: Some(Bytes::from_static(b"https://app.example")),
            identity: None,
        };
        let op = ClientOp::Connect { credentials: c };
        let p = SubParams {
            auth: Some(Bytes::from_static(b"key:SECRET-5")),
            ..SubParams::default()
        };
        let printed = format!("{op:?} {op:#?} {p:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(printed.contains("<redacted 12 bytes>"), "{printed}");
        assert!(printed.contains("https://app.example"), "{printed}");
    }
}
