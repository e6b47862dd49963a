//! Raw-JSON helpers shared by every dialect: validation without a DOM, and building JSON
//! strings and arrays from raw JSON slices in one exact allocation.
//!
//! Must not touch: any dialect's framing, I/O.

use bytes::{BufMut, Bytes, BytesMut};

/// Whether `b` is one well-formed JSON value: what `serde_json::from_slice` accepts (RFC 8259,
/// UTF-8 strings, paired `\u` surrogates, numbers within `f64`, nesting up to
/// [`MAX_DEPTH`]), checked in one pass without a DOM and without allocating.
pub fn is_json(b: &[u8]) -> bool {
    scan(b, |_| {}).is_some()
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

/// Deepest nesting of arrays and objects accepted: what serde_json's recursion limit (128,
/// counted down before each open bracket and refused at zero) allowed when validation was a
/// serde_json pass.
pub const MAX_DEPTH: usize = 127;

/// Why [`array_elements`] yielded no elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotArray {
    /// `b` is not well-formed JSON (as [`is_json`]).
    BadJson,
    /// `b` is well-formed JSON, but not an array.
    NotAnArray,
}

/// Validates `b` as [`is_json`] does and, in the same pass, hands `each` the top-level
/// elements of the array it is (as ranges of `b`, without the whitespace around them).
/// Allocates nothing. On [`NotArray::BadJson`], `each` may already have seen the elements
/// before the error.
pub fn array_elements(b: &[u8], each: impl FnMut(std::ops::Range<usize>)) -> Result<(), NotArray> {
    match scan(b, each) {
        Some(true) => Ok(()),
        Some(false) => Err(NotArray::NotAnArray),
        None => Err(NotArray::BadJson),
    }
}

/// What a byte is inside a JSON string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// ASCII that stands for itself.
    Plain,
    Quote,
    Backslash,
    /// A control character (below 0x20), which must be escaped.
    Control,
    /// Part of a multi-byte UTF-8 sequence.
    NonAscii,
}

/// [`Class`] per byte: a table because the string loop asks once per byte.
// Indexing in a const initializer: out of bounds would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const CLASS: [Class; 256] = {
    let mut t = [Class::Plain; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i {
            0x00..=0x1f => Class::Control,
            0x22 => Class::Quote,
            0x5c => Class::Backslash,
            0x80..=0xff => Class::NonAscii,
            _ => Class::Plain,
        };
        i += 1;
    }
    t
};

fn class(c: u8) -> Class {
    // A `u8` always indexes a 256-entry table (the check compiles away).
    CLASS.get(usize::from(c)).copied().unwrap_or(Class::Control)
}

/// The index of the first non-whitespace byte at or after `i` (or `b.len()`).
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// The one pass behind [`is_json`] and [`array_elements`]: a strict validator that keeps the
/// kind of each open container in a 128-bit set (so no stack on the heap) and reports the
/// top-level array elements as it closes them. `Some(is_array)` when `b` is valid.
fn scan(b: &[u8], mut each: impl FnMut(std::ops::Range<usize>)) -> Option<bool> {
    let mut i = skip_ws(b, 0);
    let top_array = b.get(i) == Some(&b'[');
    // Bit `d` set: the container at depth `d + 1` is an object.
    let mut objects = 0u128;
    let mut depth = 0usize;
    let mut element = 0;
    loop {
        // A value starts at `i` (after whitespace).
        i = skip_ws(b, i);
        let c = *b.get(i)?;
        if depth == 1 {
            element = i;
        }
        match c {
            b'[' | b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let bit = 1u128.checked_shl(u32::try_from(depth).ok()?)?;
                if c == b'{' {
                    objects |= bit;
                } else {
                    objects &= !bit;
                }
                depth += 1;
                i = skip_ws(b, i + 1);
                let close = if c == b'[' { b']' } else { b'}' };
                if b.get(i) == Some(&close) {
                    depth -= 1;
                    i += 1;
                } else if c == b'{' {
                    i = key(b, i)?;
                    continue;
                } else {
                    continue;
                }
            }
            b'"' => i = string(b, i + 1)?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return None,
        }
        // A value ended at `i`: close containers until a `,` asks for the next value.
        loop {
            if depth == 0 {
                return (skip_ws(b, i) == b.len()).then_some(top_array);
            }
            if depth == 1 && top_array {
                each(element..i);
            }
            i = skip_ws(b, i);
            let in_object = objects & (1u128 << ((depth - 1) & 127)) != 0;
            match (b.get(i)?, in_object) {
                (b',', false) => {
                    i += 1;
                    break;
                }
                (b',', true) => {
                    i = key(b, skip_ws(b, i + 1))?;
                    break;
                }
                (b']', false) | (b'}', true) => {
                    depth -= 1;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// An object key and its `:`, from `i` (at the opening quote); the index after the `:`.
fn key(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let i = skip_ws(b, string(b, i + 1)?);
    (b.get(i) == Some(&b':')).then_some(i + 1)
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let end = i + word.len();
    (b.get(i..end) == Some(word)).then_some(end)
}

/// The rest of a string from `i` (after its opening quote); the index after its closing
/// quote. Unescaped control characters, bad escapes, unpaired `\u` surrogates and invalid
/// UTF-8 are errors, as serde_json has them when it reads a string.
fn string(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = skip_plain(b, i);
        let c = *b.get(i)?;
        if c == b'"' {
            return Some(i + 1);
        }
        match class(c) {
            Class::Plain => i += 1,
            Class::Quote => return Some(i + 1),
            Class::Control => return None,
            Class::Backslash => i = escape(b, i + 1)?,
            Class::NonAscii => {
                // Up to the next quote, backslash or control byte (ASCII, so a character
                // boundary in valid UTF-8): validated as one run by the standard library.
                let rest = b.get(i..)?;
                let run = rest
                    .iter()
                    .position(|&c| !matches!(class(c), Class::Plain | Class::NonAscii))
                    .unwrap_or(rest.len());
                std::str::from_utf8(rest.get(..run)?).ok()?;
                i += run;
            }
        }
    }
}

/// The index of the first byte at or after `i` that is not [`Class::Plain`] (or `b.len()`):
/// eight bytes at a time, since most of a message is string content.
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let special = special_mask(u64::from_le_bytes(chunk));
        if special != 0 {
            // The lowest flagged byte is exact (see `special_mask`).
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|&c| class(c) == Class::Plain) {
        i += 1;
    }
    i
}

/// The high bit of each byte of `x` (little-endian) that may be a quote, a backslash, a
/// control character or non-ASCII: the word-at-a-time tests for a zero byte and for a byte
/// below a bound. They flag every such byte; a flag can be false only above a true one
/// (a borrow runs upwards), so the lowest flag always marks the first special byte.
fn special_mask(x: u64) -> u64 {
    use super::swar::{below, eq_bytes};
    (x & 0x8080_8080_8080_8080) | below(x, 0x20) | eq_bytes(x, b'"') | eq_bytes(x, b'\\')
}

/// One escape from `i` (after its backslash); the index after it.
fn escape(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
        b'u' => {
            let n = hex4(b, i + 1)?;
            match n {
                // A trailing surrogate first is unpaired.
                0xDC00..=0xDFFF => None,
                // A leading one must be followed at once by `\u` and a trailing one.
                0xD800..=0xDBFF => {
                    if b.get(i + 5..i + 7) != Some(b"\\u") {
                        return None;
                    }
                    let low = hex4(b, i + 7)?;
                    (0xDC00..=0xDFFF).contains(&low).then_some(i + 11)
                }
                _ => Some(i + 5),
            }
        }
        _ => None,
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u16> {
    b.get(i..i + 4)?.iter().try_fold(0u16, |n, &c| {
        let d = char::from(c).to_digit(16)?;
        Some(n << 4 | u16::try_from(d).ok()?)
    })
}

/// A number from `i`; the index after it. The grammar is checked here; whether its value
/// fits an `f64` (serde_json refuses infinity) only matters with an exponent or more than
/// 300 integer digits, and those rare numbers are parsed by serde_json itself.
fn number(b: &[u8], start: usize) -> Option<usize> {
    let digits = |i: usize| {
        i + b
            .get(i..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let mut i = start;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    let int_digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    let mut exponent = false;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        exponent = true;
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    if exponent || int_digits > 300 {
        serde_json::from_slice::<Valid>(b.get(start..i)?).ok()?;
    }
    Some(i)
}

/// A JSON value walked and dropped by serde_json: the reference [`scan`] agrees with (the
/// tests compare them), and what reads the rare number whose range only a float parse can
/// tell. Unlike `IgnoredAny` (whose serde_json path skips numbers without parsing them),
/// numbers are parsed, so an `f64` overflow is an error.
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

/// The content of a JSON string token (`raw`, quotes included, as a validating parser gave
/// it), unescaped, with the bytes copied: a slice of `raw` when it holds no escape, else one
/// write into a buffer of exactly its length (a first pass measures it). Why not
/// serde_json: its unescaping grows a scratch vector byte by byte and then copies it out,
/// several allocations per string on paths that carry JSON inside JSON strings (Action
/// Cable's `data` and `identifier`, Pusher's `data`). `None` for a token that is not a
/// well-formed string.
pub(crate) fn unescape(raw: &Bytes) -> Option<(Bytes, usize)> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let first = super::swar::find_any(inner, 0, [b'\\', b'"']);
    if first == inner.len() {
        return Some((raw.slice_ref(inner), 0));
    }
    // Each run of plain bytes and the escape after it, in order.
    let pieces = |each: &mut dyn FnMut(&[u8], Option<char>)| -> Option<()> {
        let mut i = 0;
        while i < inner.len() {
            // A quote not escaped cannot be inside a string.
            let at = super::swar::find_any(inner, i, [b'\\', b'"']);
            let plain = inner.get(i..at)?;
            let escape = if at < inner.len() {
                if inner.get(at) == Some(&b'"') {
                    return None;
                }
                let (c, next) = unescape_one(inner, at)?;
                i = next;
                Some(c)
            } else {
                i = at;
                None
            };
            each(plain, escape);
        }
        Some(())
    };
    let mut len = 0;
    pieces(&mut |plain, c| len += plain.len() + c.map_or(0, char::len_utf8))?;
    let mut out = Vec::with_capacity(len);
    pieces(&mut |plain, c| {
        out.extend_from_slice(plain);
        if let Some(c) = c {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    })?;
    debug_assert_eq!(out.len(), len, "length computed exactly");
    Some((Bytes::from(out), len))
}

/// An optional string field of a serde struct, kept there as its raw token
/// (`Option<&RawValue>`), as its content: a slice of `src` unless it had escapes. Why not
/// `Option<Cow<str>>`: serde borrows a `Cow` field only when it is not in an `Option`, and
/// otherwise allocates a `String` for every message. `Err` for a value that is not a
/// string (the type error serde would have raised).
pub(crate) fn string_field(
    src: &Bytes,
    raw: Option<&serde_json::value::RawValue>,
) -> Result<Option<Bytes>, NotString> {
    raw.map(|r| {
        unescape(&src.slice_ref(r.get().as_bytes()))
            .map(|(b, _)| b)
            .ok_or(NotString)
    })
    .transpose()
}

/// A field that had to be a JSON string was another value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected a JSON string")]
pub struct NotString;

/// The escape whose backslash is at `i`: the character it stands for and the index after it.
fn unescape_one(b: &[u8], i: usize) -> Option<(char, usize)> {
    let simple = |c: u8| Some((char::from(c), i + 2));
    match *b.get(i + 1)? {
        c @ (b'"' | b'\\' | b'/') => simple(c),
        b'b' => simple(0x08),
        b'f' => simple(0x0c),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'u' => {
            let hi = hex4(b, i + 2)?;
            let (code, next) = match hi {
                0xD800..=0xDBFF => {
                    if b.get(i + 6..i + 8) != Some(b"\\u") {
                        return None;
                    }
                    let lo = hex4(b, i + 8)?;
                    if !(0xDC00..=0xDFFF).contains(&lo) {
                        return None;
                    }
                    let code =
                        0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                    (code, i + 12)
                }
                0xDC00..=0xDFFF => return None,
                n => (u32::from(n), i + 6),
            };
            Some((char::from_u32(code)?, next))
        }
        _ => None,
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

#[cfg(test)]
mod tests;
