//! Writing Socket.IO packets as Engine.IO `message`s: the packet header written once into a
//! buffer of the right size, acks and error acks, and the reserved event names.
//!
//! Must not touch: the role's state; these are pure functions of their arguments.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::ROOT;
use crate::dialect::WsMsg;
use crate::dialect::socketio::packet::{self, PacketType};

/// One Socket.IO packet as an Engine.IO `message`: `4<type>[<n>-][<nsp>,][<id>]` followed by
/// `parts`, written once into a buffer of the right size.
pub(super) fn wire(
    kind: PacketType,
    nsp: &[u8],
    id: Option<u64>,
    attachments: usize,
    parts: &[&[u8]],
) -> WsMsg {
    let has_nsp = !nsp.is_empty() && nsp != ROOT;
    let len = 2
        + if kind.is_binary() { 21 } else { 0 }
        + if has_nsp { nsp.len() + 1 } else { 0 }
        + if id.is_some() { 20 } else { 0 }
        + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(b'4');
    b.put_u8(kind.digit());
    if kind.is_binary() {
        // Writing integers into a BytesMut cannot fail.
        let _ = write!(b, "{attachments}-");
    }
    if has_nsp {
        b.extend_from_slice(nsp);
        b.put_u8(b',');
    }
    if let Some(id) = id {
        let _ = write!(b, "{id}");
    }
    for p in parts {
        b.extend_from_slice(p);
    }
    WsMsg::Text(b.freeze())
}

/// Whether `name` is one of the event names socket.io reserves for itself.
pub(super) fn is_reserved(name: &[u8]) -> bool {
    packet::RESERVED_EVENTS.iter().any(|r| r.as_bytes() == name)
}

/// `43[<nsp>,]<id><array>`.
pub(super) fn ack(nsp: &[u8], id: u64, array: &[u8]) -> WsMsg {
    wire(PacketType::Ack, nsp, Some(id), 0, &[array])
}

/// `43N[{"error":{"name":"<name>","message":".."}}]`.
pub(super) fn named_error_ack(nsp: &[u8], id: u64, name: &str, message: &[u8]) -> WsMsg {
    let args = packet::error_args(name, message);
    wire(PacketType::Ack, nsp, Some(id), 0, &[&args])
}
