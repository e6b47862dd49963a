//! Encoding [`Frame`]s to bytes: header escaping per version (none for 1.0 or for CONNECT /
//! STOMP / CONNECTED) and the replacement of header bytes the version cannot represent.
//!
//! Must not touch: decoding (`scan.rs`, `decode.rs`), adding headers the caller did not set.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{Frame, Version};
use crate::dialect::swar;

/// Written instead of a header byte that the target version cannot represent (LF, CR or `:`
/// where there is no escaping, a NUL anywhere). This keeps peer-supplied values from injecting
/// headers or ending the frame early.
const REPLACEMENT: u8 = b'?';

/// Encodes one frame: command, headers (escaped per `version`, never for CONNECT / STOMP /
/// CONNECTED or in 1.0), a blank line, the body and a NUL. Nothing is added implicitly:
/// callers add `content-length`.
///
/// A header byte the context cannot represent is written as `?`: a NUL anywhere, LF (and CR
/// before 1.2) where there is no escaping, and `:` in a name where there is no escaping.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    let plan = plan(frame, version);
    out.reserve(plan.len);
    write(frame, version, plan.plain, out);
}

/// [`encode`] into a fresh buffer.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Bytes {
    let plan = plan(frame, version);
    let mut out = BytesMut::with_capacity(plan.len);
    write(frame, version, plan.plain, &mut out);
    debug_assert_eq!(out.len(), plan.len, "length computed exactly");
    out.freeze()
}

/// The encoded size of `frame` under `version`, exactly: [`encode_to_bytes`] fills a buffer of
/// this capacity with no slack (so freezing it allocates nothing more).
pub fn encoded_len_exact(frame: &Frame, version: Version) -> usize {
    plan(frame, version).len
}

/// An upper bound on the encoded size of `frame` (every header byte counted as escaped).
pub fn encoded_len(frame: &Frame) -> usize {
    let headers: usize = frame
        .headers
        .iter()
        .map(|(n, v)| 2 * n.len() + 2 * v.len() + 2)
        .sum();
    frame.command.as_str().len() + 1 + headers + 1 + frame.body.len() + 1
}

/// The first byte of `part` that may be written as something else (escaped or replaced,
/// depending on the context): `\`, LF, CR, `:` or NUL. Eight bytes at a time, since nearly
/// every header has none and every header byte of every frame is looked at.
fn first_special(part: &[u8]) -> Option<usize> {
    let i = swar::find_any(part, 0, [0, b'\\', b'\n', b'\r', b':']);
    (i < part.len()).then_some(i)
}

/// What one scan of the headers learned: the exact encoded length, and which header parts
/// (bit `2i` the name of header `i`, bit `2i + 1` its value; the first 64 parts) hold no
/// special byte, so [`write`] copies them without looking at their bytes again.
struct Plan {
    len: usize,
    plain: u64,
}

fn plan(frame: &Frame, version: Version) -> Plan {
    let escaping = frame.command.escapes(version);
    let mut plain = 0u64;
    let mut headers = 0;
    for (i, (name, value)) in frame.headers.iter().enumerate() {
        for (j, part) in [name, value].into_iter().enumerate() {
            headers += match first_special(part) {
                None => {
                    if let Some(bit) = u32::try_from(2 * i + j).ok().filter(|&b| b < 64) {
                        plain |= 1 << bit;
                    }
                    part.len()
                }
                Some(_) if !escaping => part.len(),
                Some(first) => part.len() + escapes_from(part, first, version),
            };
        }
        headers += 2;
    }
    Plan {
        len: frame.command.as_str().len() + 1 + headers + 1 + frame.body.len() + 1,
        plain,
    }
}

/// How many bytes escaping adds to `part`, whose first special byte is at `first`.
fn escapes_from(part: &[u8], first: usize, version: Version) -> usize {
    part.get(first..)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| match b {
            b'\\' | b'\n' | b':' => true,
            b'\r' => version >= Version::V1_2,
            _ => false,
        })
        .count()
}

fn write(frame: &Frame, version: Version, plain: u64, out: &mut BytesMut) {
    let escaping = frame.command.escapes(version);
    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (i, (name, value)) in frame.headers.iter().enumerate() {
        let bit = |j: usize| {
            u32::try_from(2 * i + j)
                .ok()
                .and_then(|b| 1u64.checked_shl(b))
                .is_some_and(|m| plain & m != 0)
        };
        if bit(0) {
            out.put_slice(name);
        } else {
            put_header_part(out, name, escaping, version, true);
        }
        out.put_u8(b':');
        if bit(1) {
            out.put_slice(value);
        } else {
            put_header_part(out, value, escaping, version, false);
        }
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// Writes a part that may hold special bytes (a part past the first 64 may not).
fn put_header_part(
    out: &mut BytesMut,
    part: &[u8],
    escaping: bool,
    version: Version,
    is_name: bool,
) {
    let Some(first) = first_special(part) else {
        out.put_slice(part);
        return;
    };
    let (plain, rest) = part.split_at_checked(first).unwrap_or((&[], part));
    out.put_slice(plain);
    for &b in rest {
        match b {
            0 => out.put_u8(REPLACEMENT),
            b'\\' if escaping => out.put_slice(b"\\\\"),
            b'\n' if escaping => out.put_slice(b"\\n"),
            b':' if escaping => out.put_slice(b"\\c"),
            b'\r' if escaping && version >= Version::V1_2 => out.put_slice(b"\\r"),
            b'\n' | b'\r' => out.put_u8(REPLACEMENT),
            b':' if is_name => out.put_u8(REPLACEMENT),
            _ => out.put_u8(b),
        }
    }
}
