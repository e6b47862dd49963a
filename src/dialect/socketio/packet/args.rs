//! The JSON argument arrays of events and acks: split into zero-copy slices of the message
//! (the event name decoded), built in one allocation, and the error-ack shape both roles use.
//!
//! Must not touch: placeholders inside the arguments (`placeholders.rs`), packet framing
//! (`decode.rs`, `encode.rs`).

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{SioError, json_string};

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
