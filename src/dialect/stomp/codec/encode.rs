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
    out.reserve(encoded_len(frame));
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
    let mut out = BytesMut::with_capacity(encoded_len(frame));
    encode(frame, version, &mut out);
    out.freeze()
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
