//! Raw-JSON helpers shared by every dialect: validation without a DOM, and building JSON
//! strings and arrays from raw JSON slices in one exact allocation.
//!
//! Must not touch: any dialect's framing, I/O.

use bytes::{BufMut, Bytes, BytesMut};

/// Whether `b` is one well-formed JSON value (validated without building a DOM, and without
/// allocating unless a string has escapes).
pub fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<Valid>(b).is_ok()
}

/// `n` in decimal, written at the end of `buf` (no allocation).
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

/// JSON's insignificant whitespace.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `b` without the JSON whitespace around it.
pub fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ws(c)).map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

/// The top-level elements of `b`, a JSON array already known to be well-formed ([`is_json`]),
/// as ranges of `b` (whitespace around each trimmed), handed to `each`. `None` if `b` is not
/// an array. Allocates nothing: a byte scan that tracks strings and nesting.
pub fn array_elements(b: &[u8], mut each: impl FnMut(std::ops::Range<usize>)) -> Option<()> {
    let open = b.iter().position(|&c| !is_ws(c))?;
    if b.get(open) != Some(&b'[') {
        return None;
    }
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let mut start: Option<usize> = None;
    let mut last = 0;
    for (i, &c) in b.iter().enumerate().skip(open + 1) {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            last = i;
            continue;
        }
        match c {
            b',' | b']' if depth == 0 => {
                if let Some(s) = start.take() {
                    each(s..last + 1);
                }
                if c == b']' {
                    return Some(());
                }
            }
            _ if is_ws(c) => {}
            _ => {
                match c {
                    b'"' => in_str = true,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                start.get_or_insert(i);
                last = i;
            }
        }
    }
    Some(())
}

/// A JSON value walked and dropped. Unlike `IgnoredAny` (whose serde_json path keeps a heap
/// stack of the open brackets), nesting recurses through the visitor, within serde_json's
/// recursion limit of 128.
struct Valid;

impl<'de> serde::Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Valid)
    }
}

impl<'de> serde::de::Visitor<'de> for Valid {
    type Value = Valid;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Valid, A::Error> {
        while a.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Valid, A::Error> {
        while a.next_entry::<serde::de::IgnoredAny, Valid>()?.is_some() {}
        Ok(Valid)
    }
}

/// Bytes one input byte takes inside a JSON string (as serde_json escapes).
fn escaped_width(c: u8) -> usize {
    match c {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0x00..=0x1f => 6,
        _ => 1,
    }
}

/// Length of `s` as a JSON string, quotes included.
pub(crate) fn json_string_len(s: &[u8]) -> usize {
    2 + s.iter().map(|&c| escaped_width(c)).sum::<usize>()
}

/// Appends `s` (UTF-8) as a JSON string, escaping exactly what serde_json escapes.
pub(crate) fn put_json_string(out: &mut BytesMut, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    let mut run = s;
    while let Some(pos) = run.iter().position(|&c| escaped_width(c) != 1) {
        let Some((plain, rest)) = run.split_at_checked(pos) else {
            break;
        };
        out.extend_from_slice(plain);
        let Some((&c, rest)) = rest.split_first() else {
            break;
        };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                let hi = HEX.get(usize::from(c >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(c & 0xf)).copied().unwrap_or(b'0');
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
        }
        run = rest;
    }
    out.extend_from_slice(run);
    out.put_u8(b'"');
}

/// Appends `,`-separated raw JSON values.
fn put_joined(out: &mut BytesMut, args: &[&[u8]]) {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.extend_from_slice(arg);
    }
}

/// `[arg0,arg1,..]`, args spliced in raw, in one exact allocation.
pub fn build_array(args: &[&[u8]]) -> Bytes {
    let len = 2 + args.iter().map(|a| a.len()).sum::<usize>() + args.len().saturating_sub(1);
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(b'[');
    put_joined(&mut out, args);
    out.put_u8(b']');
    out.freeze()
}

/// The JSON string for `s` (invalid UTF-8 is replaced by U+FFFD).
pub fn json_string(s: &[u8]) -> Bytes {
    let s = String::from_utf8_lossy(s);
    let mut out = BytesMut::with_capacity(json_string_len(s.as_bytes()));
    put_json_string(&mut out, s.as_bytes());
    out.freeze()
}

/// Arguments plus a final payload as one JSON array `[a0,a1,..,payload]`: how several
/// Socket.IO arguments travel on single-body wires. Text becomes a JSON string; binary is
/// carried as a (lossy) string too, since a JSON body cannot hold octets.
pub fn pack(args: &[Bytes], payload: &crate::frame::Payload) -> Bytes {
    let tail = match payload.kind {
        crate::frame::PayloadKind::Json => payload.data.clone(),
        _ => json_string(&payload.data),
    };
    let mut parts: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
    parts.push(&tail);
    build_array(&parts)
}
