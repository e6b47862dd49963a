//! Attachment placeholders `{"_placeholder":true,"num":N}`: building one, recognising an
//! argument that is exactly one, and finding every one inside a JSON value at any depth, as
//! the reference reconstructor does, in one walk without a DOM.
//!
//! Must not touch: gathering the attachments (`decode.rs`), splitting arguments (`args.rs`).

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};

use super::SioError;
use super::decode::skip_ws;
use super::encode::{decimal_len, put_decimal};

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
    // Most objects are payloads: without the key (or an escape that could spell it) there is
    // nothing to parse, and the refusal of an unknown field would allocate its message.
    if !arg.contains(&b'\\') && !arg.windows(12).any(|w| w == b"_placeholder") {
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

/// The placeholder of attachment 0, the one a single binary payload uses.
pub const PLACEHOLDER_0: &[u8] = br#"{"_placeholder":true,"num":0}"#;

/// The placeholder object `{"_placeholder":true,"num":N}`.
pub fn placeholder(num: usize) -> Bytes {
    if num == 0 {
        return Bytes::from_static(PLACEHOLDER_0);
    }
    const HEAD: &[u8] = br#"{"_placeholder":true,"num":"#;
    let num = num as u64;
    let mut out = BytesMut::with_capacity(HEAD.len() + decimal_len(num) + 1);
    out.extend_from_slice(HEAD);
    put_decimal(&mut out, num);
    out.put_u8(b'}');
    out.freeze()
}
