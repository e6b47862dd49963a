//! Encoding: a packet's text form (after the Engine.IO `4`, when asked) in one exact
//! allocation, event arrays written in place, and the decimal helpers it (and
//! the placeholder builder) writes numbers with.
//!
//! Must not touch: decoding (`decode.rs`); the attachments themselves are the caller's to
//! send.

use bytes::{BufMut, Bytes, BytesMut};

use super::{PLACEHOLDER_0, Packet, PacketType, ROOT_NSP};
use crate::dialect::json::{decimal, json_string_len, put_json_string};
use crate::frame::{Payload, PayloadKind};

/// Number of decimal digits of `n`.
pub(super) fn decimal_len(n: u64) -> usize {
    decimal(n, &mut [0u8; 20]).len()
}

/// Appends `n` in decimal.
pub(super) fn put_decimal(out: &mut BytesMut, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0u8; 20]));
}

/// One argument of an event or ack array, written in place.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// Raw JSON, spliced as is.
    Raw(&'a [u8]),
    /// Text, written as a JSON string (quoted and escaped as serde_json escapes; invalid
    /// UTF-8 replaced by U+FFFD).
    Text(&'a [u8]),
}

impl<'a> Arg<'a> {
    /// A payload as one argument: JSON raw, text as a JSON string, binary as the placeholder
    /// of attachment 0, returned with it (sent as is, never copied).
    pub fn of_payload(p: &'a Payload) -> (Self, Option<&'a Bytes>) {
        match p.kind {
            PayloadKind::Json => (Self::Raw(&p.data), None),
            PayloadKind::Text => (Self::Text(&p.data), None),
            PayloadKind::Binary => (Self::Raw(PLACEHOLDER_0), Some(&p.data)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Raw(b) => b.len(),
            Self::Text(s) => json_string_len(String::from_utf8_lossy(s).as_bytes()),
        }
    }

    fn put(&self, out: &mut BytesMut) {
        match self {
            Self::Raw(b) => out.extend_from_slice(b),
            Self::Text(s) => put_json_string(out, String::from_utf8_lossy(s).as_bytes()),
        }
    }
}

/// A packet's data, written in place after its header.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// No data.
    None,
    /// Raw bytes (a JSON value, or a ready argument array), as is.
    Raw(&'a [u8]),
    /// Raw pieces, one after the other.
    Parts(&'a [&'a [u8]]),
    /// An argument array, `[<name>,a0,a1,..,<last>]` (an event's; an ack's has no name):
    /// the name as a JSON string, `args` spliced raw, then `last` when there is one.
    Array {
        /// The event name (written as a JSON string).
        name: Option<&'a str>,
        /// Raw JSON arguments.
        args: &'a [Bytes],
        /// The final argument (the payload).
        last: Option<Arg<'a>>,
    },
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Raw(b) => b.len(),
            Self::Parts(p) => p.iter().map(|b| b.len()).sum(),
            Self::Array { name, args, last } => {
                let items = usize::from(name.is_some()) + args.len() + usize::from(last.is_some());
                2 + items.saturating_sub(1)
                    + name.map_or(0, |n| json_string_len(n.as_bytes()))
                    + args.iter().map(Bytes::len).sum::<usize>()
                    + last.as_ref().map_or(0, Arg::len)
            }
        }
    }

    fn put(&self, out: &mut BytesMut) {
        match self {
            Self::None => {}
            Self::Raw(b) => out.extend_from_slice(b),
            Self::Parts(p) => p.iter().for_each(|b| out.extend_from_slice(b)),
            Self::Array { name, args, last } => {
                out.put_u8(b'[');
                let mut first = true;
                let mut sep = |out: &mut BytesMut| {
                    if !std::mem::take(&mut first) {
                        out.put_u8(b',');
                    }
                };
                if let Some(n) = name {
                    sep(out);
                    put_json_string(out, n.as_bytes());
                }
                for a in *args {
                    sep(out);
                    out.extend_from_slice(a);
                }
                if let Some(l) = last {
                    sep(out);
                    l.put(out);
                }
                out.put_u8(b']');
            }
        }
    }
}

/// A packet's header: `<type>[<n>-][<nsp>,][<ack id>]`.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// The packet type.
    pub kind: PacketType,
    /// The namespace; `/` (or empty) is not written.
    pub nsp: &'a [u8],
    /// The ack id.
    pub id: Option<u64>,
    /// The attachment count, written for binary kinds.
    pub attachments: usize,
}

impl Head<'_> {
    fn has_nsp(&self) -> bool {
        !self.nsp.is_empty() && self.nsp != ROOT_NSP
    }

    fn len(&self) -> usize {
        let mut len = 1;
        if self.kind.is_binary() {
            len += decimal_len(self.attachments as u64) + 1;
        }
        if self.has_nsp() {
            len += self.nsp.len() + 1;
        }
        if let Some(id) = self.id {
            len += decimal_len(id);
        }
        len
    }

    fn put(&self, out: &mut BytesMut) {
        out.put_u8(self.kind.digit());
        if self.kind.is_binary() {
            put_decimal(out, self.attachments as u64);
            out.put_u8(b'-');
        }
        if self.has_nsp() {
            out.extend_from_slice(self.nsp);
            out.put_u8(b',');
        }
        if let Some(id) = self.id {
            put_decimal(out, id);
        }
    }
}

/// `prefix`, then the packet's header and data, written once into a buffer of exactly their
/// length: with `prefix` `b"4"` this is the Engine.IO `message` a WebSocket carries, with no
/// second buffer for the prefix.
pub fn encode_parts(prefix: &[u8], head: &Head<'_>, data: &Data<'_>) -> Bytes {
    let len = encoded_len(prefix, head, data);
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(prefix);
    head.put(&mut out);
    data.put(&mut out);
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// The length [`encode_parts`] writes.
pub fn encoded_len(prefix: &[u8], head: &Head<'_>, data: &Data<'_>) -> usize {
    prefix.len() + head.len() + data.len()
}

/// The header of packet `p`.
fn head_of(p: &Packet) -> Head<'_> {
    Head {
        kind: p.kind,
        nsp: &p.nsp,
        id: p.id,
        attachments: p.attachments.len(),
    }
}

/// The text form of a packet: type digit, `<n>-` for binary kinds (n =
/// `attachments.len()`), namespace and `,` unless it is `/` (or empty), ack id, JSON data.
/// The attachments themselves are the caller's to send, each as a binary message.
pub fn encode(p: &Packet) -> Bytes {
    encode_prefixed(b"", p)
}

/// [`encode`] after `prefix` (the Engine.IO `4`), in the same one exact allocation.
pub fn encode_prefixed(prefix: &[u8], p: &Packet) -> Bytes {
    let data = p.data.as_deref().map_or(Data::None, Data::Raw);
    encode_parts(prefix, &head_of(p), &data)
}
