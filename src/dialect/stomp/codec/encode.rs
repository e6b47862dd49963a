//! Encoding [`Frame`]s to bytes: header escaping per version (none for 1.0 or for CONNECT /
//! STOMP / CONNECTED) and the replacement of header bytes the version cannot represent.
//!
//! Must not touch: decoding (`scan.rs`, `decode.rs`), adding headers the caller did not set.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{Frame, Version};

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
    out.reserve(encoded_len_exact(frame, version));
    let escaping = frame.command.escapes(version);
    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (name, value) in &frame.headers {
        put_header_part(out, name, escaping, version, true);
        out.put_u8(b':');
        put_header_part(out, value, escaping, version, false);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// [`encode`] into a fresh buffer.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Bytes {
    let len = encoded_len_exact(frame, version);
    let mut out = BytesMut::with_capacity(len);
    encode(frame, version, &mut out);
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// The encoded size of `frame` under `version`, exactly: [`encode_to_bytes`] fills a buffer of
/// this capacity with no slack (so freezing it allocates nothing more).
pub fn encoded_len_exact(frame: &Frame, version: Version) -> usize {
    let escaping = frame.command.escapes(version);
    let headers: usize = frame
        .headers
        .iter()
        .map(|(n, v)| {
            header_part_len(n, escaping, version) + header_part_len(v, escaping, version) + 2
        })
        .sum();
    frame.command.as_str().len() + 1 + headers + 1 + frame.body.len() + 1
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

/// What [`put_header_part`] writes for `part`, in bytes.
fn header_part_len(part: &[u8], escaping: bool, version: Version) -> usize {
    if !escaping {
        return part.len();
    }
    part.iter()
        .map(|&b| match b {
            b'\\' | b'\n' | b':' => 2,
            b'\r' if version >= Version::V1_2 => 2,
            _ => 1,
        })
        .sum()
}

fn put_header_part(
    out: &mut BytesMut,
    part: &[u8],
    escaping: bool,
    version: Version,
    is_name: bool,
) {
    let special = |b: u8| matches!(b, b'\\' | b'\n' | b'\r' | b':' | 0);
    if !part.iter().any(|&b| special(b)) {
        out.put_slice(part);
        return;
    }
    for &b in part {
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
