//! Writing Socket.IO packets as Engine.IO `message`s: the packet header written once into a
//! buffer of the right size, acks and error acks, and the reserved event names.
//!
//! Must not touch: the role's state; these are pure functions of their arguments.

use crate::dialect::WsMsg;
use crate::dialect::socketio::packet::{self, PacketType};

/// One Socket.IO packet as an Engine.IO `message`: `4<type>[<n>-][<nsp>,][<id>]` followed by
/// `parts`, written once into a buffer of its exact length.
pub(super) fn wire(
    kind: PacketType,
    nsp: &[u8],
    id: Option<u64>,
    attachments: usize,
    parts: &[&[u8]],
) -> WsMsg {
    let head = packet::Head {
        kind,
        nsp,
        id,
        attachments,
    };
    wire_data(&head, &packet::Data::Parts(parts))
}

/// A packet's header and data as an Engine.IO `message` (`4` written into the same buffer).
pub(super) fn wire_data(head: &packet::Head<'_>, data: &packet::Data<'_>) -> WsMsg {
    WsMsg::Text(packet::encode_parts(b"4", head, data))
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
