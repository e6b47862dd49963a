//! The Pusher Channels protocol 7 envelope: `{"event":..,"channel"?:..,"data"?:..,
//! "user_id"?:..}` in a WebSocket text message, both ways.
//!
//! Owns: decoding an envelope into [`Msg`] (event, channel, raw `data`, all slices of the
//! received message where the JSON has no escapes), reading `data` whether it is an object
//! or the JSON-in-a-string servers send, encoding envelopes with `data` as a raw value or as
//! a JSON string, channel-name rules and the fields of subscribe and error bodies.
//!
//! Must not touch: what the messages mean (the roles'), I/O, time, other dialects.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dialect::json::{is_json, json_string_len, put_json_string};
use crate::frame::Payload;

/// Why a Pusher message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PusherError {
    /// Not a JSON object with a string `event`.
    #[error("not a Pusher message: {0}")]
    Envelope(String),
    /// A `data` field that does not hold what the event needs.
    #[error("bad data for {event}: {why}")]
    Data {
        /// The event.
        event: String,
        /// Why.
        why: String,
    },
    /// A binary WebSocket message: Pusher is text only.
    #[error("Pusher messages are text")]
    Binary,
}

/// One decoded envelope. Every field is a slice of the received message unless its JSON
/// string had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// `event`, unescaped.
    pub event: Bytes,
    /// `channel`, unescaped.
    pub channel: Option<Bytes>,
    /// `data` as the raw JSON value it was (an object, or a string holding JSON).
    pub data: Option<Bytes>,
    /// `user_id` (presence client events), raw JSON.
    pub user_id: Option<Bytes>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
}

/// A string field as a slice of `src` when it had no escapes, else its unescaped copy.
fn field(src: &Bytes, s: Cow<'_, str>) -> Bytes {
    match s {
        Cow::Borrowed(b) => src.slice_ref(b.as_bytes()),
        Cow::Owned(o) => Bytes::from(o),
    }
}

/// A `user_id` (raw JSON: Pusher's are strings; a number is taken as its digits) as the
/// plain string it names.
pub fn user_id_string(raw: &Bytes) -> Option<Bytes> {
    match raw.first()? {
        b'"' => crate::dialect::json::unescape(raw).map(|(b, _)| b),
        b'0'..=b'9' | b'-' if is_json(raw) => Some(raw.clone()),
        _ => None,
    }
}

/// A channel event with the sender's `user_id` (presence channels' client events):
/// `{"event":..,"channel":..,"data":"..","user_id":".."}`.
pub fn encode_from_user(event: &[u8], channel: &[u8], data: &[u8], user_id: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(
        40 + json_string_len(event)
            + json_string_len(channel)
            + json_string_len(data)
            + json_string_len(user_id),
    );
    out.extend_from_slice(b"{\"event\":");
    put_json_string(&mut out, event);
    out.extend_from_slice(b",\"channel\":");
    put_json_string(&mut out, channel);
    out.extend_from_slice(b",\"data\":");
    put_json_string(&mut out, data);
    out.extend_from_slice(b",\"user_id\":");
    put_json_string(&mut out, user_id);
    out.put_u8(b'}');
    out.freeze()
}

/// Decode one text message.
pub fn decode(src: &Bytes) -> Result<Msg, PusherError> {
    let w: Wire<'_> =
        serde_json::from_slice(src).map_err(|e| PusherError::Envelope(e.to_string()))?;
    Ok(Msg {
        event: field(src, w.event),
        channel: crate::dialect::json::string_field(src, w.channel)
            .map_err(|_| PusherError::Envelope("channel is not a string".into()))?,
        data: w.data.map(|d| src.slice_ref(d.get().as_bytes())),
        user_id: w.user_id.map(|u| src.slice_ref(u.get().as_bytes())),
    })
}

/// The JSON value a `data` field carries: a JSON string is unescaped first (servers send
/// JSON in a string) and the bytes copied are returned with it; an object or any other
/// value is a slice. `Err` for a string that is not valid JSON text.
pub fn data_json(raw: &Bytes) -> Result<(Bytes, usize), String> {
    if raw.first() != Some(&b'"') {
        return Ok((raw.clone(), 0));
    }
    // No escapes: the string's content is a slice (between the quotes).
    crate::dialect::json::unescape(raw).ok_or_else(|| "invalid JSON string".to_owned())
}

/// What a subscriber's `data` means as a payload: JSON when the string holds JSON (as
/// pusher-js reads it), else the string as text; an object as JSON. With the bytes copied.
pub fn data_payload(raw: &Bytes) -> (Payload, usize) {
    match data_json(raw) {
        Ok((inner, copied)) if raw.first() == Some(&b'"') => {
            if is_json(&inner) {
                (Payload::json(inner), copied)
            } else {
                (Payload::text(inner), copied)
            }
        }
        Ok((v, copied)) => (Payload::json(v), copied),
        Err(_) => (Payload::json(raw.clone()), 0),
    }
}

/// How `data` goes on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// No `data` field.
    None,
    /// A raw JSON value, as is (client events, `pusher:error`, `pusher:subscribe`).
    Raw(&'a [u8]),
    /// Bytes written as a JSON string (server events: JSON in a string).
    Str(&'a [u8]),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Raw(b) => 8 + b.len(),
            Self::Str(b) => 8 + json_string_len(b),
        }
    }
}

/// Encode one envelope: `{"event":..,"channel":..,"data":..}` in one exact allocation.
pub fn encode(event: &[u8], channel: Option<&[u8]>, data: Data<'_>) -> Bytes {
    // `{"event":` + event + [`,"channel":` + channel] + [`,"data":` + data] + `}`: exact, so
    // freezing the buffer allocates nothing more.
    let len = 9
        + json_string_len(event)
        + channel.map_or(0, |c| 11 + json_string_len(c))
        + data.len()
        + 1;
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"event\":");
    put_json_string(&mut out, event);
    if let Some(c) = channel {
        out.extend_from_slice(b",\"channel\":");
        put_json_string(&mut out, c);
    }
    match data {
        Data::None => {}
        Data::Raw(b) => {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(b);
        }
        Data::Str(b) => {
            out.extend_from_slice(b",\"data\":");
            put_json_string(&mut out, b);
        }
    }
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// A payload as the JSON text a Pusher `data` string holds: JSON as is, text JSON-encoded
/// (so `"hi"` arrives as the string `hi`, not as something pusher-js would parse into a
/// number). `None` for binary, which Pusher cannot carry.
pub fn payload_json(p: &Payload) -> Option<Cow<'_, [u8]>> {
    match p.kind {
        crate::frame::PayloadKind::Json => Some(Cow::Borrowed(&p.data)),
        crate::frame::PayloadKind::Text => {
            let mut b = BytesMut::with_capacity(json_string_len(&p.data));
            put_json_string(&mut b, &p.data);
            // The buffer itself becomes the vector (no second copy).
            Some(Cow::Owned(Vec::from(b)))
        }
        crate::frame::PayloadKind::Binary => None,
    }
}

/// The fields of a `pusher:subscribe` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The channel.
    pub channel: Bytes,
    /// `<key>:<hex signature>`, for private and presence channels.
    pub auth: Option<Bytes>,
    /// Presence member data, a JSON string's content (exact bytes: it is signed).
    pub channel_data: Option<Bytes>,
}

#[derive(Deserialize)]
struct SubscribeWire<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow, default)]
    auth: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    channel_data: Option<Cow<'a, str>>,
}

/// Read a `pusher:subscribe` (or `unsubscribe`) body, an object or a string holding one.
pub fn subscribe_data(raw: &Bytes) -> Result<Subscribe, String> {
    let (json, _) = data_json(raw)?;
    let w: SubscribeWire<'_> = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    Ok(Subscribe {
        channel: field(&json, w.channel),
        // An empty auth (pusher-js sends `"auth":""` on public channels) is no auth.
        auth: w.auth.filter(|a| !a.is_empty()).map(|a| field(&json, a)),
        channel_data: w.channel_data.map(|d| field(&json, d)),
    })
}

/// The fields of a `pusher:signin` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signin {
    /// `<key>:<hex signature>`.
    pub auth: Bytes,
    /// The signed user data (a JSON string's content).
    pub user_data: Bytes,
}

#[derive(Deserialize)]
struct SigninWire<'a> {
    #[serde(borrow)]
    auth: Cow<'a, str>,
    #[serde(borrow)]
    user_data: Cow<'a, str>,
}

/// Read a `pusher:signin` body.
pub fn signin_data(raw: &Bytes) -> Result<Signin, String> {
    let (json, _) = data_json(raw)?;
    let w: SigninWire<'_> = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    Ok(Signin {
        auth: field(&json, w.auth),
        user_data: field(&json, w.user_data),
    })
}

/// An error body, `pusher:error` or `pusher:subscription_error`: message and code (Pusher's
/// `code`, soketi's `status`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// The words.
    pub message: String,
    /// The code, if any.
    pub code: Option<u16>,
    /// soketi's `type` (`AuthError`).
    pub kind: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorWire {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Read an error body (object or string, fields optional).
pub fn error_data(raw: Option<&Bytes>) -> ErrorBody {
    let w: ErrorWire = raw
        .and_then(|r| data_json(r).ok())
        .and_then(|(j, _)| serde_json::from_slice(&j).ok())
        .unwrap_or_default();
    ErrorBody {
        message: w.message.or(w.error).unwrap_or_default(),
        code: w.code.or(w.status),
        kind: w.kind,
    }
}

/// `{"message":..,"code":..}` (`code` `null` when none).
pub fn error_body(message: &str, code: Option<u16>) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + json_string_len(message.as_bytes()));
    out.extend_from_slice(b"{\"message\":");
    put_json_string(&mut out, message.as_bytes());
    out.extend_from_slice(b",\"code\":");
    match code {
        Some(c) => out.extend_from_slice(c.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.put_u8(b'}');
    out.freeze()
}

/// The longest channel name (soketi's limit; Pusher's own is 164).
pub const MAX_CHANNEL_LEN: usize = 200;

/// Whether `name` is a channel name Pusher accepts: 1 to 200 of `[A-Za-z0-9_\-=@,.;]`.
pub fn valid_channel(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_-=@,.;".contains(c))
}

/// What a channel's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No prefix.
    Public,
    /// `private-`.
    Private,
    /// `private-encrypted-`: end-to-end encrypted, no client events.
    Encrypted,
    /// `presence-`.
    Presence,
}

/// The kind of channel `name` is.
pub fn kind(name: &[u8]) -> Kind {
    if name.starts_with(b"private-encrypted-") {
        Kind::Encrypted
    } else if name.starts_with(b"private-") {
        Kind::Private
    } else if name.starts_with(b"presence-") {
        Kind::Presence
    } else {
        Kind::Public
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
