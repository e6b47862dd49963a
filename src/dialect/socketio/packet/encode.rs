//! Encoding: a packet's text form in one exact allocation, and the decimal helpers it (and
//! the placeholder builder) writes numbers with.
//!
//! Must not touch: decoding (`decode.rs`); the attachments themselves are the caller's to
//! send.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Packet, ROOT_NSP};

/// Number of decimal digits of `n`.
pub(super) fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal.
pub(super) fn put_decimal(out: &mut BytesMut, mut n: u64) {
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
