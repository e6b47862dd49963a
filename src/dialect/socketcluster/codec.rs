//! SocketCluster packets, legacy protocol v1 (SocketCluster ≤ 14) and v2 (≥ 15): JSON
//! objects `{"event"?,"data"?,"cid"?,"rid"?,"error"?}`, JSON arrays of them (batches), and
//! the pings (`#1`/`#2` in v1, empty text frames in v2).
//!
//! Owns: decoding a WebSocket text message into pings or packets (every field a slice of
//! the message where its JSON has no escapes), encoding events, RPC requests and replies in
//! one exact allocation, and the reserved event names.
//!
//! Must not touch: what the packets mean (the roles'), I/O, time, other dialects.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dialect::json::{decimal, json_string_len, put_json_string, string_field};

/// The protocol version a leg speaks (not negotiated: both ends must agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SocketCluster ≤ 14: `#1`/`#2` pings, `#disconnect`, every `#` event reserved.
    V1,
    /// SocketCluster ≥ 15: empty-string pings.
    V2,
}

impl Version {
    /// The server's ping.
    pub fn ping(self) -> &'static [u8] {
        match self {
            Self::V1 => b"#1",
            Self::V2 => b"",
        }
    }
    /// The client's pong.
    pub fn pong(self) -> &'static [u8] {
        match self {
            Self::V1 => b"#2",
            Self::V2 => b"",
        }
    }
}

/// Why a SocketCluster message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScError {
    /// Not JSON, or not an object or array of objects.
    #[error("invalid SocketCluster packet: {0}")]
    Invalid(String),
}

/// One packet. Fields are raw JSON slices of the received message (strings unescaped where
/// they had escapes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packet {
    /// `event`, unescaped.
    pub event: Option<Bytes>,
    /// `data`, raw JSON.
    pub data: Option<Bytes>,
    /// The sender's call id: it wants an answer.
    pub cid: Option<u64>,
    /// The call id this answers.
    pub rid: Option<u64>,
    /// `error`, raw JSON (an answer's error slot, whatever it holds).
    pub error: Option<Bytes>,
}

/// What one WebSocket message held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// `#1` (v1) or an empty message (v2).
    Ping(Version),
    /// `#2` (v1) or an empty message (v2, the same frame as a ping: the side tells).
    Pong(Version),
    /// One packet (no vector: nearly every message is one).
    Packet(Packet),
    /// A batch.
    Packets(Vec<Packet>),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    cid: Option<u64>,
    #[serde(default)]
    rid: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

fn packet(src: &Bytes, w: Wire<'_>) -> Result<Packet, ScError> {
    Ok(Packet {
        event: string_field(src, w.event)
            .map_err(|_| ScError::Invalid("event is not a string".into()))?,
        data: w.data.map(|d| src.slice_ref(d.get().as_bytes())),
        cid: w.cid,
        rid: w.rid,
        error: w.error.map(|e| src.slice_ref(e.get().as_bytes())),
    })
}

/// Decode one text message. `server` says which side reads it: an empty message is a ping
/// for a client and a pong for a server.
pub fn decode(src: &Bytes, server: bool) -> Result<Decoded, ScError> {
    match &src[..] {
        b"#1" => return Ok(Decoded::Ping(Version::V1)),
        b"#2" => return Ok(Decoded::Pong(Version::V1)),
        b"" if server => return Ok(Decoded::Pong(Version::V2)),
        b"" => return Ok(Decoded::Ping(Version::V2)),
        _ => {}
    }
    if src.first() == Some(&b'[') {
        let batch: Vec<Wire<'_>> =
            serde_json::from_slice(src).map_err(|e| ScError::Invalid(e.to_string()))?;
        return Ok(Decoded::Packets(
            batch
                .into_iter()
                .map(|w| packet(src, w))
                .collect::<Result<_, _>>()?,
        ));
    }
    let w: Wire<'_> = serde_json::from_slice(src).map_err(|e| ScError::Invalid(e.to_string()))?;
    Ok(Decoded::Packet(packet(src, w)?))
}

/// `{"event":..,"data":..,"cid":..}` (no `data` when `None`, no `cid` when `None`).
pub fn event(name: &[u8], data: Option<&[u8]>, cid: Option<u64>) -> Bytes {
    write_event(name, data.map(Body::Raw), cid)
}

/// `{"event":..,"data":{"channel":..,"data":..},"cid":..}`: a channel's call (`#subscribe`,
/// `#publish`) with its body written into the same buffer, not built apart and copied in.
pub fn channel_event(name: &[u8], channel: &[u8], data: Option<&[u8]>, cid: Option<u64>) -> Bytes {
    write_event(name, Some(Body::Channel(channel, data)), cid)
}

/// An event's `data`: raw JSON, or a channel body.
enum Body<'a> {
    Raw(&'a [u8]),
    Channel(&'a [u8], Option<&'a [u8]>),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Body::Raw(d) => d.len(),
            Body::Channel(channel, data) => {
                12 + json_string_len(channel) + data.map_or(0, |d| 8 + d.len())
            }
        }
    }

    fn put(&self, out: &mut BytesMut) {
        match self {
            Body::Raw(d) => out.extend_from_slice(d),
            Body::Channel(channel, data) => {
                out.extend_from_slice(b"{\"channel\":");
                put_json_string(out, channel);
                if let Some(d) = data {
                    out.extend_from_slice(b",\"data\":");
                    out.extend_from_slice(d);
                }
                out.put_u8(b'}');
            }
        }
    }
}

fn write_event(name: &[u8], data: Option<Body<'_>>, cid: Option<u64>) -> Bytes {
    let mut digits = [0u8; 20];
    let cid_s = cid.map(|c| decimal(c, &mut digits));
    let len = 9
        + json_string_len(name)
        + data.as_ref().map_or(0, |d| 8 + d.len())
        + cid_s.map_or(0, |c| 7 + c.len())
        + 1;
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"event\":");
    put_json_string(&mut out, name);
    if let Some(d) = data {
        out.extend_from_slice(b",\"data\":");
        d.put(&mut out);
    }
    if let Some(c) = cid_s {
        out.extend_from_slice(b",\"cid\":");
        out.extend_from_slice(c);
    }
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// `{"rid":N}` or `{"rid":N,"data":..}`.
pub fn reply(rid: u64, data: Option<&[u8]>) -> Bytes {
    let mut digits = [0u8; 20];
    let rid = decimal(rid, &mut digits);
    let len = 8 + rid.len() + data.map_or(0, |d| 8 + d.len());
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"rid\":");
    out.extend_from_slice(rid);
    if let Some(d) = data {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(d);
    }
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// `{"rid":N,"error":..}` with the error slot's raw JSON.
pub fn reply_error(rid: u64, error: &[u8]) -> Bytes {
    let mut digits = [0u8; 20];
    let rid = decimal(rid, &mut digits);
    let len = 17 + rid.len() + error.len();
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"rid\":");
    out.extend_from_slice(rid);
    out.extend_from_slice(b",\"error\":");
    out.extend_from_slice(error);
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// `{"name":..,"message":..}`, SocketCluster's error object.
pub fn error_object(name: &str, message: &[u8]) -> Bytes {
    let len = 20 + json_string_len(name.as_bytes()) + json_string_len(message);
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"name\":");
    put_json_string(&mut out, name.as_bytes());
    out.extend_from_slice(b",\"message\":");
    put_json_string(&mut out, message);
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// The `name` and `message` of an error slot: an error object's fields, or a string (or any
/// other value) as the message.
pub fn error_fields(raw: &[u8]) -> (String, String) {
    #[derive(Deserialize)]
    struct E {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<E>(raw) {
        return (
            e.name.unwrap_or_else(|| "Error".into()),
            e.message.unwrap_or_default(),
        );
    }
    if let Ok(s) = serde_json::from_slice::<String>(raw) {
        return ("Error".into(), s);
    }
    ("Error".into(), String::from_utf8_lossy(raw).into_owned())
}

/// The channel of a `#subscribe`/`#publish`/`#kickOut` body (`{"channel":..}`), or of an
/// `#unsubscribe` (a bare string), with the `data` beside it.
pub fn channel_of(raw: &Bytes) -> Option<(Bytes, Option<Bytes>)> {
    #[derive(Deserialize)]
    struct C<'a> {
        #[serde(borrow)]
        channel: Cow<'a, str>,
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
        #[serde(borrow, default)]
        message: Option<&'a RawValue>,
    }
    let slice = |s: Cow<'_, str>| match s {
        Cow::Borrowed(b) => raw.slice_ref(b.as_bytes()),
        Cow::Owned(o) => Bytes::from(o),
    };
    if let Ok(c) = serde_json::from_slice::<C<'_>>(raw) {
        let data = c
            .data
            .or(c.message)
            .map(|d| raw.slice_ref(d.get().as_bytes()));
        return Some((slice(c.channel), data));
    }
    crate::dialect::json::unescape(raw).map(|(s, _)| (s, None))
}

/// `{"channel":..,"message":..}`, a `#kickOut` body.
pub fn kick_body(channel: &[u8], message: &[u8]) -> Bytes {
    let len = 23 + json_string_len(channel) + json_string_len(message);
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"channel\":");
    put_json_string(&mut out, channel);
    out.extend_from_slice(b",\"message\":");
    put_json_string(&mut out, message);
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// A payload as the JSON SocketCluster carries: JSON as is, text as a JSON string, binary
/// as the default codec's `{"base64":true,"data":..}`. The copies are added to `copied`: the
/// one the caller makes writing the result into its frame, and for text and binary the
/// rewrite before it.
pub fn payload_json(p: &crate::frame::Payload, copied: &mut crate::dialect::Copied) -> Bytes {
    use crate::frame::PayloadKind;
    copied.one(p.data.len());
    match p.kind {
        PayloadKind::Json => p.data.clone(),
        PayloadKind::Text => {
            copied.one(p.data.len());
            crate::dialect::json::json_string(&p.data)
        }
        PayloadKind::Binary => {
            use base64::Engine as _;
            // Base64 written straight into the object's own exactly sized buffer.
            const HEAD: &[u8] = br#"{"base64":true,"data":""#;
            let engine = base64::engine::general_purpose::STANDARD;
            let b64 = base64::encoded_len(p.data.len(), true).unwrap_or(0);
            let mut out = BytesMut::with_capacity(HEAD.len() + b64 + 2);
            out.extend_from_slice(HEAD);
            let start = out.len();
            out.resize(start + b64, 0);
            let written = out
                .get_mut(start..)
                .map_or(0, |dst| engine.encode_slice(&p.data, dst).unwrap_or(0));
            out.truncate(start + written);
            out.extend_from_slice(b"\"}");
            copied.one(p.data.len());
            out.freeze()
        }
    }
}

/// Events SocketCluster itself defines (v2's list; v1 reserves every `#` name).
pub const RESERVED: &[&str] = &[
    "#handshake",
    "#publish",
    "#subscribe",
    "#unsubscribe",
    "#kickOut",
    "#authenticate",
    "#setAuthToken",
    "#removeAuthToken",
    "#disconnect",
];

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
