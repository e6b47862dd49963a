//! Socket.IO protocol 5: the packet codec that rides inside Engine.IO `message` packets.
//!
//! Owns: the text form `<type>[<n>-][<nsp>,][<ack id>][<JSON>]` of the seven packet types,
//! gathering a `BINARY_*` packet's attachments (the [`Decoder`] state), splitting and building
//! the JSON argument arrays of events and acks, and attachment placeholders (building them,
//! and finding them at any depth as the reference reconstructor does). JSON payloads are
//! validated without building a DOM and stay [`Bytes`] slices of the received message; only
//! event names are decoded to `String`.
//!
//! Must not touch: tokio, sockets or any other I/O, timers, metrics, configuration, the
//! Engine.IO framing (see [`super::engineio`]), or session state beyond the pending
//! attachments. Deciding what a packet means (reserved event names, namespaces, ack tables)
//! belongs to the roles.

pub use crate::dialect::json::{build_array, json_string};
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Event names an application may not emit; the reference server closes the connection.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The default namespace, used when a packet omits one.
const ROOT_NSP: &[u8] = b"/";

/// Socket.IO packet types (the first character of the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Join a namespace (client) or accept the join (server, with `{"sid":..}`).
    Connect = 0,
    /// Leave a namespace.
    Disconnect = 1,
    /// An event: a non-empty array whose first element is the event name.
    Event = 2,
    /// The reply to an event that carried an ack id: an array of arguments.
    Ack = 3,
    /// The server refused a namespace join.
    ConnectError = 4,
    /// An event with binary attachments.
    BinaryEvent = 5,
    /// An ack with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The type for its wire digit (`b'0'`..=`b'6'`).
    pub fn from_digit(digit: u8) -> Option<Self> {
        Some(match digit {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Whether the type carries an attachment count (`BINARY_EVENT`, `BINARY_ACK`).
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// One Socket.IO packet. Byte fields are slices of the received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The packet type.
    pub kind: PacketType,
    /// The namespace, `/` when the wire omits it.
    pub nsp: Bytes,
    /// The ack id, if the sender wants an ack (EVENT) or this answers one (ACK).
    pub id: Option<u64>,
    /// The JSON payload, raw (surrounding whitespace trimmed).
    pub data: Option<Bytes>,
    /// Binary attachments of a `BINARY_*` packet, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// Errors decoding Socket.IO packets or their payloads.
#[derive(Debug, thiserror::Error)]
pub enum SioError {
    /// An empty packet.
    #[error("empty socket.io packet")]
    Empty,
    /// The first byte is not a packet type digit.
    #[error("unknown socket.io packet type {0:#04x}")]
    UnknownType(u8),
    /// A `BINARY_*` packet without a well-formed `<n>-` attachment count.
    #[error("bad attachment count")]
    BadAttachmentCount,
    /// A `BINARY_*` packet announces more attachments than allowed.
    #[error("too many attachments (max {max})")]
    TooManyAttachments {
        /// The configured limit.
        max: usize,
    },
    /// A namespace without its terminating `,`, or not UTF-8.
    #[error("bad namespace")]
    BadNamespace,
    /// The ack id does not fit in a u64.
    #[error("bad ack id")]
    BadAckId,
    /// The payload is not well-formed JSON.
    #[error("invalid JSON payload")]
    BadJson,
    /// Well-formed JSON of the wrong kind for the packet type: CONNECT data that is not an
    /// object, CONNECT_ERROR data neither object nor string, DISCONNECT with data.
    #[error("payload of the wrong kind for the packet type")]
    BadPayload,
    /// An EVENT or ACK payload (or arguments) that is not a JSON array.
    #[error("payload is not an array")]
    NotAnArray,
    /// An EVENT payload that is an empty array.
    #[error("event without a name")]
    EmptyEvent,
    /// An EVENT payload whose first element is not a string.
    #[error("event name is not a string")]
    EventNameNotString,
    /// A binary attachment arrived while no `BINARY_*` packet was waiting for one.
    #[error("unexpected binary attachment")]
    UnexpectedAttachment,
    /// A text packet arrived while a `BINARY_*` packet was still waiting for attachments.
    #[error("text packet while waiting for binary attachments")]
    AwaitingAttachments,
    /// An EVENT or ACK without a payload.
    #[error("missing payload")]
    MissingData,
}

/// A `BINARY_*` packet waiting for its attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
}

/// Decodes Socket.IO packets, holding a `BINARY_*` packet until its attachments arrive (the
/// reference parser's reconstructor). After an error the decoder is reset; callers close the
/// connection anyway ("parse error").
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    pending: Option<Pending>,
}

impl Decoder {
    /// A decoder accepting at most `max_attachments` per packet (the reference default is 10).
    pub fn new(max_attachments: usize) -> Self {
        Self {
            max_attachments,
            pending: None,
        }
    }

    /// Decodes the text of one Engine.IO `message` packet (what follows the `4`).
    /// `Ok(Some)` when the packet is complete, `Ok(None)` when it now waits for its binary
    /// attachments (feed them to [`Decoder::decode_binary`]).
    pub fn decode_text(&mut self, text: Bytes) -> Result<Option<Packet>, SioError> {
        if self.pending.take().is_some() {
            return Err(SioError::AwaitingAttachments);
        }
        let (packet, expected) = parse(&text, self.max_attachments)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some(Pending { packet, expected });
        Ok(None)
    }

    /// Adds one binary attachment (an Engine.IO binary packet). `Ok(Some)` with the packet
    /// once its last attachment arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, SioError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(SioError::UnexpectedAttachment);
        };
        pending.packet.attachments.push(data);
        if pending.packet.attachments.len() < pending.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| p.packet))
    }

    /// Whether a `BINARY_*` packet is waiting for attachments.
    pub fn awaiting_attachments(&self) -> bool {
        self.pending.is_some()
    }
}

/// Splits leading ASCII digits off `s`.
fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at_checked(n).unwrap_or((s, &[]))
}

/// Parses ASCII digits; `None` on overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))
    })
}

/// Strips JSON whitespace from the front.
fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    s.get(n..).unwrap_or_default()
}

/// Parses one packet; returns it with the number of attachments still to come.
fn parse(text: &Bytes, max_attachments: usize) -> Result<(Packet, usize), SioError> {
    let (&first, mut rest) = text.split_first().ok_or(SioError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(SioError::UnknownType(first))?;

    let mut expected = 0;
    if kind.is_binary() {
        let (digits, after) = split_digits(rest);
        rest = match after.split_first() {
            Some((b'-', after)) if !digits.is_empty() => after,
            _ => return Err(SioError::BadAttachmentCount),
        };
        expected = parse_decimal(digits)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= max_attachments)
            .ok_or(SioError::TooManyAttachments {
                max: max_attachments,
            })?;
    }

    let nsp = if rest.first() == Some(&b'/') {
        let mut parts = rest.splitn(2, |&c| c == b',');
        let nsp = parts.next().unwrap_or_default();
        rest = parts.next().ok_or(SioError::BadNamespace)?;
        std::str::from_utf8(nsp).map_err(|_| SioError::BadNamespace)?;
        text.slice_ref(nsp)
    } else {
        Bytes::from_static(ROOT_NSP)
    };

    let (digits, after) = split_digits(rest);
    let id = if digits.is_empty() {
        None
    } else {
        rest = after;
        Some(parse_decimal(digits).ok_or(SioError::BadAckId)?)
    };

    let data = if rest.is_empty() {
        None
    } else {
        let raw: &RawValue = serde_json::from_slice(rest).map_err(|_| SioError::BadJson)?;
        Some(text.slice_ref(raw.get().as_bytes()))
    };
    check_payload(kind, data.as_deref())?;

    let attachments = Vec::with_capacity(expected);
    Ok((
        Packet {
            kind,
            nsp,
            id,
            data,
            attachments,
        },
        expected,
    ))
}

/// Checks the kind of an already validated (and trimmed) JSON payload against the packet
/// type, as the reference `isPayloadValid` does. Unlike the reference, a number is not
/// accepted as an event name, and reserved names are left to the roles.
fn check_payload(kind: PacketType, data: Option<&[u8]>) -> Result<(), SioError> {
    let first = data.and_then(|d| d.first().copied());
    match kind {
        PacketType::Connect => match first {
            None | Some(b'{') => Ok(()),
            Some(_) => Err(SioError::BadPayload),
        },
        PacketType::Disconnect => match first {
            None => Ok(()),
            Some(_) => Err(SioError::BadPayload),
        },
        PacketType::ConnectError => match first {
            None | Some(b'{' | b'"') => Ok(()),
            Some(_) => Err(SioError::BadPayload),
        },
        PacketType::Ack | PacketType::BinaryAck => match first {
            None => Err(SioError::MissingData),
            Some(b'[') => Ok(()),
            Some(_) => Err(SioError::NotAnArray),
        },
        PacketType::Event | PacketType::BinaryEvent => {
            let d = data.ok_or(SioError::MissingData)?;
            let (&open, elements) = d.split_first().ok_or(SioError::MissingData)?;
            if open != b'[' {
                return Err(SioError::NotAnArray);
            }
            // The JSON is valid, so after `[` comes `]` or the first element's first byte.
            match skip_ws(elements).first() {
                Some(b'"') => Ok(()),
                Some(b']') => Err(SioError::EmptyEvent),
                _ => Err(SioError::EventNameNotString),
            }
        }
    }
}

/// Number of decimal digits of `n`.
fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal.
fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(start..).unwrap_or_default());
}

/// The text form of a packet: type digit, `<n>-` for binary kinds (n =
/// `attachments.len()`), namespace and `,` unless it is `/` (or empty), ack id, JSON data.
/// The attachments themselves are the caller's to send, each as a binary message.
pub fn encode(p: &Packet) -> Bytes {
    let has_nsp = !p.nsp.is_empty() && p.nsp != ROOT_NSP;
    let count = p.attachments.len() as u64;
    let mut len = 1;
    if p.kind.is_binary() {
        len += decimal_len(count) + 1;
    }
    if has_nsp {
        len += p.nsp.len() + 1;
    }
    if let Some(id) = p.id {
        len += decimal_len(id);
    }
    len += p.data.as_ref().map_or(0, Bytes::len);

    let mut out = BytesMut::with_capacity(len);
    out.put_u8(p.kind.digit());
    if p.kind.is_binary() {
        put_decimal(&mut out, count);
        out.put_u8(b'-');
    }
    if has_nsp {
        out.extend_from_slice(&p.nsp);
        out.put_u8(b',');
    }
    if let Some(id) = p.id {
        put_decimal(&mut out, id);
    }
    if let Some(data) = &p.data {
        out.extend_from_slice(data);
    }
    out.freeze()
}

/// Deserializes a JSON array into slices of `base`, one per top-level element.
struct ArraySlices<'b>(&'b Bytes);

impl<'de> DeserializeSeed<'de> for ArraySlices<'_> {
    type Value = Vec<Bytes>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySlices<'_> {
    type Value = Vec<Bytes>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            out.push(self.0.slice_ref(raw.get().as_bytes()));
        }
        Ok(out)
    }
}

/// The top-level elements of a JSON array, as slices of `data` (zero copy).
pub fn split_args(data: &Bytes) -> Result<Vec<Bytes>, SioError> {
    let mut de = serde_json::Deserializer::from_slice(data);
    ArraySlices(data)
        .deserialize(&mut de)
        .and_then(|args| de.end().map(|()| args))
        .map_err(|e| {
            // A type mismatch is reported at the first byte; tell "not an array" apart from
            // "not JSON" only on this error path.
            let valid = serde_json::from_slice::<IgnoredAny>(data).is_ok();
            if e.is_data() && valid {
                SioError::NotAnArray
            } else {
                SioError::BadJson
            }
        })
}

/// For EVENT data: the event name and the remaining arguments (slices of `data`).
pub fn split_event(data: &Bytes) -> Result<(String, Vec<Bytes>), SioError> {
    let mut args = split_args(data)?.into_iter();
    let name = args.next().ok_or(SioError::EmptyEvent)?;
    if name.first() != Some(&b'"') {
        return Err(SioError::EventNameNotString);
    }
    let name: String = serde_json::from_slice(&name).map_err(|_| SioError::BadJson)?;
    Ok((name, args.collect()))
}

/// `[<name as JSON string>,arg0,arg1,..]`, args spliced in raw, in one exact allocation.
pub fn build_event(name: &str, args: &[&[u8]]) -> Bytes {
    use crate::dialect::json::{json_string_len, put_json_string};
    let len =
        2 + json_string_len(name.as_bytes()) + args.iter().map(|a| a.len() + 1).sum::<usize>();
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(b'[');
    put_json_string(&mut out, name.as_bytes());
    for arg in args {
        out.put_u8(b',');
        out.extend_from_slice(arg);
    }
    out.put_u8(b']');
    out.freeze()
}

/// The shape of an attachment placeholder; any other key disqualifies it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Placeholder {
    #[serde(rename = "_placeholder")]
    placeholder: bool,
    num: usize,
}

/// `Some(N)` if `arg` is exactly an attachment placeholder `{"_placeholder":true,"num":N}`
/// (whitespace and key order free). Placeholders nested inside other values are not looked for.
pub fn placeholder_num(arg: &[u8]) -> Option<usize> {
    // A derived struct also accepts a JSON array (`[true,0]`); only objects qualify.
    if skip_ws(arg).first() != Some(&b'{') {
        return None;
    }
    let p: Placeholder = serde_json::from_slice(arg).ok()?;
    p.placeholder.then_some(p.num)
}

/// A placeholder found by [`placeholder_refs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceholderRef {
    /// The attachment it stands for; `None` when `num` is missing or not a non-negative
    /// integer (which the reference reconstructor rejects as "illegal attachments").
    pub num: Option<usize>,
    /// Whether the placeholder is the whole value rather than nested inside it.
    pub root: bool,
}

/// Every attachment placeholder in one JSON value of a `BINARY_*` packet, in document order,
/// found as the reference reconstructor finds them: any object, at any depth, whose
/// `_placeholder` member is `true` (other members allowed; a placeholder's own members are
/// not searched, since the attachment replaces the whole object). Walks the value once,
/// without building a DOM; serde_json's recursion limit bounds the depth.
pub fn placeholder_refs(value: &[u8]) -> Result<Vec<PlaceholderRef>, SioError> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(value);
    Refs {
        found: &mut found,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|_| de.end())
    .map_err(|_| SioError::BadJson)?;
    Ok(found)
}

/// What a walked value was, as far as a placeholder's members care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    True,
    Index(usize),
    Other,
}

/// Walks one JSON value, appending the placeholders inside it to `found`.
struct Refs<'f> {
    found: &'f mut Vec<PlaceholderRef>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Refs<'_> {
    type Value = Scalar;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Refs<'_> {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(if v { Scalar::True } else { Scalar::Other })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(usize::try_from(v).map_or(Scalar::Other, Scalar::Index))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(usize::try_from(v).map_or(Scalar::Other, Scalar::Index))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        // JavaScript indexes `buffers[1.0]` like `buffers[1]`; stay within exact integers.
        let exact = v.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&v);
        Ok(if exact {
            usize::try_from(v as u64).map_or(Scalar::Other, Scalar::Index)
        } else {
            Scalar::Other
        })
    }

    fn visit_str<E>(self, _: &str) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        let depth = self.depth + 1;
        while seq
            .next_element_seed(Refs {
                found: &mut *self.found,
                depth,
            })?
            .is_some()
        {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        // Whether this object is a placeholder is known only after its last member, so
        // nested finds wait in `inner` until then. Duplicate keys: the last wins, as in
        // `JSON.parse`.
        let mut inner = Vec::new();
        let (mut flag, mut num) = (false, None);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let v = map.next_value_seed(Refs {
                found: &mut inner,
                depth: self.depth + 1,
            })?;
            match key {
                Key::Placeholder => flag = v == Scalar::True,
                Key::Num => {
                    num = match v {
                        Scalar::Index(n) => Some(n),
                        _ => None,
                    }
                }
                Key::Other => {}
            }
        }
        if flag {
            self.found.push(PlaceholderRef {
                num,
                root: self.depth == 0,
            });
        } else {
            self.found.append(&mut inner);
        }
        Ok(Scalar::Other)
    }
}

/// The object keys a placeholder is made of, told apart without allocating.
enum Key {
    Placeholder,
    Num,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "_placeholder" => Key::Placeholder,
            "num" => Key::Num,
            _ => Key::Other,
        })
    }
}

/// The ack arguments that report an error, `[{"error":{"name":"<name>","message":"<m>"}}]`:
/// Socket.IO acks have no error slot, so both roles answer refusals in this one shape.
pub fn error_args(name: &str, message: &[u8]) -> Bytes {
    let name = json_string(name.as_bytes());
    let message = json_string(message);
    let mut b = BytesMut::with_capacity(name.len() + message.len() + 32);
    b.extend_from_slice(b"[{\"error\":{\"name\":");
    b.extend_from_slice(&name);
    b.extend_from_slice(b",\"message\":");
    b.extend_from_slice(&message);
    b.extend_from_slice(b"}}]");
    b.freeze()
}

/// The placeholder object `{"_placeholder":true,"num":N}`.
pub fn placeholder(num: usize) -> Bytes {
    const HEAD: &[u8] = br#"{"_placeholder":true,"num":"#;
    let num = num as u64;
    let mut out = BytesMut::with_capacity(HEAD.len() + decimal_len(num) + 1);
    out.extend_from_slice(HEAD);
    put_decimal(&mut out, num);
    out.put_u8(b'}');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::WsMsg;
    use crate::dialect::socketio::engineio;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn pkt(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<&str>) -> Packet {
        Packet {
            kind,
            nsp: b(nsp),
            id,
            data: data.map(b),
            attachments: vec![],
        }
    }

    /// Full stack: a WebSocket text message through Engine.IO into the Socket.IO decoder.
    fn decode_wire(dec: &mut Decoder, wire: &str) -> Result<Option<Packet>, SioError> {
        let msg = WsMsg::Text(b(wire));
        match engineio::decode_ws(&msg).unwrap() {
            engineio::Packet::Message(text) => dec.decode_text(text),
            other => panic!("not a message: {other:?}"),
        }
    }

    fn encode_wire(p: &Packet) -> WsMsg {
        engineio::encode_ws(&engineio::Packet::Message(encode(p)))
    }

    fn decode_one(wire: &str) -> Result<Option<Packet>, SioError> {
        Decoder::new(10).decode_text(b(wire))
    }

    /// Every packet type in its PROTOCOLS.md form, decoded and re-encoded byte for byte.
    #[test]
    fn golden_text_packets() {
        use PacketType::*;
        let cases = [
            ("40", pkt(Connect, "/", None, None)),
            (
                r#"40{"token":"abc"}"#,
                pkt(Connect, "/", None, Some(r#"{"token":"abc"}"#)),
            ),
            (
                r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#,
                pkt(
                    Connect,
                    "/",
                    None,
                    Some(r#"{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
                ),
            ),
            (
                r#"40/admin,{"token":"abc"}"#,
                pkt(Connect, "/admin", None, Some(r#"{"token":"abc"}"#)),
            ),
            (
                r#"40/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
                pkt(
                    Connect,
                    "/admin",
                    None,
                    Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
                ),
            ),
            ("41", pkt(Disconnect, "/", None, None)),
            ("41/admin,", pkt(Disconnect, "/admin", None, None)),
            (
                r#"42["message_created",{"id":17,"text":"hi"}]"#,
                pkt(
                    Event,
                    "/",
                    None,
                    Some(r#"["message_created",{"id":17,"text":"hi"}]"#),
                ),
            ),
            (
                r#"42/chat,["typing",{"room":"r1"}]"#,
                pkt(Event, "/chat", None, Some(r#"["typing",{"room":"r1"}]"#)),
            ),
            (
                r#"4212["get_user",{"id":5}]"#,
                pkt(Event, "/", Some(12), Some(r#"["get_user",{"id":5}]"#)),
            ),
            (
                r#"42/admin,13["foo"]"#,
                pkt(Event, "/admin", Some(13), Some(r#"["foo"]"#)),
            ),
            (
                r#"42["chat",{"t":"hi"},"MzUPkW0"]"#,
                pkt(Event, "/", None, Some(r#"["chat",{"t":"hi"},"MzUPkW0"]"#)),
            ),
            (
                r#"4312[{"id":5,"name":"Ann"}]"#,
                pkt(Ack, "/", Some(12), Some(r#"[{"id":5,"name":"Ann"}]"#)),
            ),
            (
                r#"43/admin,13["bar"]"#,
                pkt(Ack, "/admin", Some(13), Some(r#"["bar"]"#)),
            ),
            ("437[]", pkt(Ack, "/", Some(7), Some("[]"))),
            (
                r#"44{"message":"Not authorized","data":{"reason":"expired"}}"#,
                pkt(
                    ConnectError,
                    "/",
                    None,
                    Some(r#"{"message":"Not authorized","data":{"reason":"expired"}}"#),
                ),
            ),
            (
                r#"44/nope,{"message":"Invalid namespace"}"#,
                pkt(
                    ConnectError,
                    "/nope",
                    None,
                    Some(r#"{"message":"Invalid namespace"}"#),
                ),
            ),
            (
                r#"44"Not authorized""#,
                pkt(ConnectError, "/", None, Some(r#""Not authorized""#)),
            ),
            (
                r#"450-["plain"]"#,
                pkt(BinaryEvent, "/", None, Some(r#"["plain"]"#)),
            ),
            (
                r#"460-/admin,4[]"#,
                pkt(BinaryAck, "/admin", Some(4), Some("[]")),
            ),
            (
                r#"4218446744073709551615["max"]"#,
                pkt(Event, "/", Some(u64::MAX), Some(r#"["max"]"#)),
            ),
        ];
        for (wire, packet) in cases {
            let mut dec = Decoder::new(10);
            assert_eq!(
                decode_wire(&mut dec, wire).unwrap(),
                Some(packet.clone()),
                "decode {wire}"
            );
            assert!(!dec.awaiting_attachments());
            assert_eq!(encode_wire(&packet), WsMsg::Text(b(wire)), "encode {wire}");
        }
    }

    #[test]
    fn golden_binary_event() {
        let mut dec = Decoder::new(10);
        let wire = r#"451-["upload",{"_placeholder":true,"num":0}]"#;
        assert_eq!(decode_wire(&mut dec, wire).unwrap(), None);
        assert!(dec.awaiting_attachments());
        let att = Bytes::from_static(&[1, 2, 3, 4]);
        let eio = engineio::decode_ws(&WsMsg::Binary(att.clone())).unwrap();
        let engineio::Packet::Binary(data) = eio else {
            panic!()
        };
        let packet = dec.decode_binary(data).unwrap().unwrap();
        assert!(!dec.awaiting_attachments());
        assert_eq!(
            packet,
            Packet {
                kind: PacketType::BinaryEvent,
                nsp: b("/"),
                id: None,
                data: Some(b(r#"["upload",{"_placeholder":true,"num":0}]"#)),
                attachments: vec![att.clone()],
            }
        );
        assert_eq!(encode_wire(&packet), WsMsg::Text(b(wire)));
        let (name, args) = split_event(packet.data.as_ref().unwrap()).unwrap();
        assert_eq!(name, "upload");
        assert_eq!(args.len(), 1);
        assert_eq!(placeholder_num(args.first().unwrap()), Some(0));
    }

    #[test]
    fn golden_binary_ack_with_two_attachments() {
        let mut dec = Decoder::new(10);
        let wire = r#"461-/admin,1[{"_placeholder":true,"num":0}]"#;
        assert_eq!(decode_wire(&mut dec, wire).unwrap(), None);
        let packet = dec
            .decode_binary(Bytes::from_static(b"\x00\xff"))
            .unwrap()
            .unwrap();
        assert_eq!(packet.kind, PacketType::BinaryAck);
        assert_eq!(packet.nsp, "/admin");
        assert_eq!(packet.id, Some(1));
        assert_eq!(packet.attachments, [Bytes::from_static(b"\x00\xff")]);
        assert_eq!(encode_wire(&packet), WsMsg::Text(b(wire)));

        let two = r#"62-[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(dec.decode_text(b(two)).unwrap(), None);
        assert_eq!(dec.decode_binary(b("a")).unwrap(), None);
        let packet = dec.decode_binary(b("b")).unwrap().unwrap();
        assert_eq!(packet.attachments, [b("a"), b("b")]);
        assert_eq!(encode(&packet), two.as_bytes());
        assert!(matches!(
            dec.decode_binary(b("c")),
            Err(SioError::UnexpectedAttachment)
        ));
    }

    #[test]
    fn root_namespace_variants_encode_without_nsp() {
        let mut p = pkt(PacketType::Event, "", Some(3), Some(r#"["x"]"#));
        assert_eq!(encode(&p), r#"23["x"]"#.as_bytes());
        p.nsp = b("/");
        assert_eq!(encode(&p), r#"23["x"]"#.as_bytes());
    }

    #[test]
    fn whitespace_around_json_is_trimmed() {
        let p = decode_one("2 [ \"a\" , 1 ] \n").unwrap().unwrap();
        assert_eq!(p.data.unwrap(), r#"[ "a" , 1 ]"#.as_bytes());
    }

    #[test]
    fn decode_is_zero_copy() {
        let text = b(r#"2/admin,13["foo",{"a":[1,2]},"x"]"#);
        let range = text.as_ptr_range();
        let p = Decoder::new(10).decode_text(text.clone()).unwrap().unwrap();
        assert!(range.contains(&p.nsp.as_ptr()));
        let data = p.data.unwrap();
        assert!(range.contains(&data.as_ptr()));
        let (name, args) = split_event(&data).unwrap();
        assert_eq!(name, "foo");
        assert_eq!(args, [b(r#"{"a":[1,2]}"#), b(r#""x""#)]);
        for arg in &args {
            assert!(range.contains(&arg.as_ptr()));
            assert!(range.contains(&(arg.as_ptr_range().end.wrapping_sub(1))));
        }
        let all = split_args(&data).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|a| range.contains(&a.as_ptr())));
    }

    #[test]
    fn malformed_packets() {
        use SioError::*;
        type Check = fn(&SioError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, Empty)),
            ("7", |e| matches!(e, UnknownType(b'7'))),
            ("x", |e| matches!(e, UnknownType(b'x'))),
            ("5x-[\"a\"]", |e| matches!(e, BadAttachmentCount)),
            ("5-[\"a\"]", |e| matches!(e, BadAttachmentCount)),
            ("51[\"a\"]", |e| matches!(e, BadAttachmentCount)),
            ("5", |e| matches!(e, BadAttachmentCount)),
            ("511-[\"a\"]", |e| {
                matches!(e, TooManyAttachments { max: 10 })
            }),
            ("599999999999999999999999-[\"a\"]", |e| {
                matches!(e, TooManyAttachments { max: 10 })
            }),
            ("2/admin[\"a\"]", |e| matches!(e, BadNamespace)),
            ("1/admin", |e| matches!(e, BadNamespace)),
            ("218446744073709551616[\"a\"]", |e| matches!(e, BadAckId)),
            ("2[\"a\"", |e| matches!(e, BadJson)),
            ("2[\"a\"]x", |e| matches!(e, BadJson)),
            ("0{token}", |e| matches!(e, BadJson)),
            ("2[\"a\"] [1]", |e| matches!(e, BadJson)),
            ("0[]", |e| matches!(e, BadPayload)),
            ("0\"x\"", |e| matches!(e, BadPayload)),
            ("1{}", |e| matches!(e, BadPayload)),
            ("1/admin,{}", |e| matches!(e, BadPayload)),
            ("4[]", |e| matches!(e, BadPayload)),
            ("4 42", |e| matches!(e, BadPayload)),
            ("2{\"a\":1}", |e| matches!(e, NotAnArray)),
            ("3\"x\"", |e| matches!(e, NotAnArray)),
            ("2[]", |e| matches!(e, EmptyEvent)),
            ("2/chat,1[ ]", |e| matches!(e, EmptyEvent)),
            ("2[1,\"a\"]", |e| matches!(e, EventNameNotString)),
            ("2[{\"a\":1}]", |e| matches!(e, EventNameNotString)),
            ("50-[]", |e| matches!(e, EmptyEvent)),
            ("2", |e| matches!(e, MissingData)),
            ("2/admin,1", |e| matches!(e, MissingData)),
            ("3/admin,1", |e| matches!(e, MissingData)),
            ("61-", |e| matches!(e, MissingData)),
        ];
        for (wire, check) in cases {
            let err = decode_one(wire).unwrap_err();
            assert!(check(&err), "{wire:?} gave {err:?}");
        }
        let err = Decoder::new(10)
            .decode_text(Bytes::from_static(b"2/\xff,[\"a\"]"))
            .unwrap_err();
        assert!(matches!(err, BadNamespace));
        let err = Decoder::new(0).decode_text(b("51-[\"a\"]")).unwrap_err();
        assert!(matches!(err, TooManyAttachments { max: 0 }));
        assert_eq!(
            Decoder::new(0)
                .decode_text(b("50-[\"a\"]"))
                .unwrap()
                .unwrap()
                .kind,
            PacketType::BinaryEvent
        );
    }

    #[test]
    fn attachment_state_errors() {
        let mut dec = Decoder::new(10);
        assert!(matches!(
            dec.decode_binary(b("x")),
            Err(SioError::UnexpectedAttachment)
        ));
        assert_eq!(
            dec.decode_text(b("51-[\"a\",{\"_placeholder\":true,\"num\":0}]"))
                .unwrap(),
            None
        );
        assert!(matches!(
            dec.decode_text(b("2[\"b\"]")),
            Err(SioError::AwaitingAttachments)
        ));
        // The decoder reset: the next packet decodes normally.
        assert!(!dec.awaiting_attachments());
        assert!(dec.decode_text(b("2[\"b\"]")).unwrap().is_some());
    }

    #[test]
    fn split_args_and_event() {
        assert_eq!(split_args(&b("[]")).unwrap(), Vec::<Bytes>::new());
        assert_eq!(
            split_args(&b(" [1, \"a,b\" ,[2,3],{\"k\":[4]},null] ")).unwrap(),
            [
                b("1"),
                b("\"a,b\""),
                b("[2,3]"),
                b("{\"k\":[4]}"),
                b("null")
            ]
        );
        assert!(matches!(split_args(&b("{}")), Err(SioError::NotAnArray)));
        assert!(matches!(split_args(&b("\"x\"")), Err(SioError::NotAnArray)));
        assert!(matches!(split_args(&b("{\"a\":")), Err(SioError::BadJson)));
        assert!(matches!(split_args(&b("[1,")), Err(SioError::BadJson)));
        assert!(matches!(split_args(&b("[1] 2")), Err(SioError::BadJson)));
        assert!(matches!(split_args(&b("")), Err(SioError::BadJson)));

        let (name, args) = split_event(&b(r#"["a\"b\u00e9",1]"#)).unwrap();
        assert_eq!(name, "a\"bé");
        assert_eq!(args, [b("1")]);
        assert!(matches!(split_event(&b("[]")), Err(SioError::EmptyEvent)));
        assert!(matches!(
            split_event(&b("[1]")),
            Err(SioError::EventNameNotString)
        ));
        assert!(matches!(split_event(&b("{}")), Err(SioError::NotAnArray)));
        assert!(matches!(split_event(&b("[")), Err(SioError::BadJson)));
    }

    #[test]
    fn build_event_and_array() {
        let e = build_event("get_user", &[br#"{"id":5}"#, b"1"]);
        assert_eq!(e, r#"["get_user",{"id":5},1]"#.as_bytes());
        assert_eq!(build_event("x", &[]), r#"["x"]"#.as_bytes());
        let tricky = "q\"\\/\n\r\t\u{8}\u{c}\u{1}\u{1f}é\u{7f}\u{2028}";
        let e = build_event(tricky, &[b"null"]);
        let expected = format!("[{},null]", serde_json::to_string(tricky).unwrap());
        assert_eq!(e, expected.as_bytes());
        assert_eq!(e.len(), expected.len());
        let (name, args) = split_event(&e).unwrap();
        assert_eq!(name, tricky);
        assert_eq!(args, [b("null")]);

        assert_eq!(build_array(&[]), "[]".as_bytes());
        assert_eq!(build_array(&[b"1"]), "[1]".as_bytes());
        assert_eq!(
            build_array(&[br#"{"id":5,"name":"Ann"}"#, b"[]"]),
            r#"[{"id":5,"name":"Ann"},[]]"#.as_bytes()
        );
    }

    #[test]
    fn json_string_escapes_like_serde_json() {
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "\u{0}\u{1f} \u{7f}",
            "line\nbreak\ttab",
            "日本語",
            "</script>",
        ] {
            assert_eq!(
                json_string(s.as_bytes()),
                serde_json::to_string(s).unwrap().as_bytes(),
                "{s:?}"
            );
        }
        assert_eq!(json_string(b"a\xffb"), "\"a\u{fffd}b\"".as_bytes());
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            placeholder(0),
            r#"{"_placeholder":true,"num":0}"#.as_bytes()
        );
        assert_eq!(
            placeholder(12),
            r#"{"_placeholder":true,"num":12}"#.as_bytes()
        );
        for n in [0, 1, 9, 10, 99, 100, 12345] {
            assert_eq!(placeholder_num(&placeholder(n)), Some(n));
        }
        assert_eq!(
            placeholder_num(br#" { "num" : 3 , "_placeholder" : true } "#),
            Some(3)
        );
        assert_eq!(placeholder_num(br#"{"_placeholder":false,"num":0}"#), None);
        assert_eq!(placeholder_num(br#"{"_placeholder":true,"num":-1}"#), None);
        assert_eq!(placeholder_num(br#"{"_placeholder":true,"num":1.5}"#), None);
        assert_eq!(placeholder_num(br#"{"_placeholder":true}"#), None);
        assert_eq!(
            placeholder_num(br#"{"_placeholder":true,"num":0,"x":1}"#),
            None
        );
        assert_eq!(placeholder_num(br#"[true,0]"#), None);
        assert_eq!(placeholder_num(b"\"x\""), None);
        assert_eq!(placeholder_num(b"{"), None);
    }

    #[test]
    fn placeholder_refs_find_what_the_reference_reconstructor_finds() {
        let r = |num, root| PlaceholderRef { num, root };
        assert_eq!(placeholder_refs(br#"{"a":1}"#).unwrap(), []);
        assert_eq!(placeholder_refs(b"\"_placeholder\"").unwrap(), []);
        assert_eq!(
            placeholder_refs(br#"{"_placeholder":true,"num":0}"#).unwrap(),
            [r(Some(0), true)]
        );
        // Extra members and key order do not matter; the value decides.
        assert_eq!(
            placeholder_refs(br#" {"num":2.0,"x":[1],"_placeholder":true} "#).unwrap(),
            [r(Some(2), true)]
        );
        assert_eq!(
            placeholder_refs(br#"{"_placeholder":false,"num":0}"#).unwrap(),
            []
        );
        assert_eq!(placeholder_refs(br#"{"_placeholder":"true"}"#).unwrap(), []);
        // Nested at any depth, in document order; a bad `num` is reported, not skipped.
        assert_eq!(
            placeholder_refs(
                br#"{"a":[{"_placeholder":true,"num":1}],"b":{"c":{"_placeholder":true,"num":-1}},"d":{"_placeholder":true}}"#
            )
            .unwrap(),
            [r(Some(1), false), r(None, false), r(None, false)]
        );
        assert_eq!(
            placeholder_refs(br#"[0,{"_placeholder":true,"num":0.5}]"#).unwrap(),
            [r(None, false)]
        );
        // A placeholder's own members are replaced with it, not searched.
        assert_eq!(
            placeholder_refs(br#"{"_placeholder":true,"num":0,"x":{"_placeholder":true,"num":1}}"#)
                .unwrap(),
            [r(Some(0), true)]
        );
        // Placeholder-looking members of a non-placeholder are still searched.
        assert_eq!(
            placeholder_refs(br#"{"_placeholder":{"_placeholder":true,"num":3}}"#).unwrap(),
            [r(Some(3), false)]
        );
        assert!(matches!(placeholder_refs(b"{"), Err(SioError::BadJson)));
        assert!(matches!(placeholder_refs(b"1 2"), Err(SioError::BadJson)));
    }

    #[test]
    fn reserved_events_listed() {
        assert_eq!(RESERVED_EVENTS.len(), 6);
        assert!(RESERVED_EVENTS.contains(&"disconnecting"));
    }

    #[test]
    fn number_helpers() {
        for n in [0, 7, 9, 10, 11, 99, 100, 999_999, u64::MAX] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(decimal_len(n), n.to_string().len());
        }
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
    }

    /// A small deterministic LCG, so the fuzz loop needs no dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "9",
            "-",
            "/",
            "/admin",
            ",",
            "[",
            "]",
            "{",
            "}",
            "\"",
            "\"ev\"",
            ":",
            "1",
            "12",
            "99999999999999999999",
            " ",
            "true",
            "null",
            r#"{"_placeholder":true,"num":0}"#,
            "\\",
            "\u{e9}",
        ];
        let mut rng = Lcg(42);
        let mut dec = Decoder::new(3);
        let mut completed = 0;
        for _ in 0..600 {
            let n = (rng.next() % 8) as usize;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(PIECES.get((rng.next() as usize) % PIECES.len()).unwrap());
            }
            let input = b(&s);
            if rng.next() % 5 == 0 {
                let _ = dec.decode_binary(input.clone());
            } else if let Ok(Some(p)) = dec.decode_text(input.clone()) {
                completed += 1;
                // Whatever decodes re-encodes to something that decodes to the same packet.
                let again = Decoder::new(3).decode_text(encode(&p));
                if p.attachments.is_empty() {
                    assert_eq!(again.unwrap(), Some(p.clone()));
                }
                if let Some(data) = &p.data {
                    let _ = split_args(data);
                    let _ = split_event(data);
                }
            }
            let _ = split_args(&input);
            let _ = split_event(&input);
            let _ = placeholder_num(&input);
            let _ = placeholder_refs(&input);
            let _ = json_string(&input);
        }
        assert!(completed > 0);
    }
}
