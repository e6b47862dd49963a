//! Socket.IO protocol 5: the packet codec that rides inside Engine.IO `message` packets.
//!
//! Owns: the text form `<type>[<n>-][<nsp>,][<ack id>][<JSON>]` of the seven packet types,
//! gathering a `BINARY_*` packet's attachments (the [`Decoder`] state), splitting and building
//! the JSON argument arrays of events and acks, and attachment placeholders (building them,
//! and finding them at any depth as the reference reconstructor does). JSON payloads are
//! validated without building a DOM and stay [`Bytes`] slices of the received message; only
//! event names are decoded to `String`.
//!
//! Must not touch: tokio, sockets or any other I/O, timers, metrics, configuration, the
//! Engine.IO framing (see [`super::engineio`]), or session state beyond the pending
//! attachments. Deciding what a packet means (reserved event names, namespaces, ack tables)
//! belongs to the roles.
//!
//! # Layout
//!
//! - `mod.rs`: [`PacketType`], [`Packet`], [`SioError`] and the reserved event names.
//! - `decode.rs`: the [`Decoder`] (attachment gathering) and parsing one packet's text, with
//!   the payload checks of the reference `isPayloadValid`.
//! - `encode.rs`: [`encode()`], a packet's text form in one exact allocation, and
//!   [`encode_parts`], header and data (an event array built in place) after the Engine.IO
//!   prefix in that same allocation.
//! - `args.rs`: the JSON argument arrays of events and acks, split into zero-copy slices or
//!   built ([`split_args`], [`split_event`], [`build_event`], [`error_args`]).
//! - `placeholders.rs`: attachment placeholders: building one, recognising one, and finding
//!   them at any depth ([`placeholder_refs`]).

mod args;
mod decode;
mod encode;
mod placeholders;
#[cfg(test)]
mod tests;

pub use args::{Args, build_event, error_args, split_args, split_event};
pub use decode::Decoder;
pub use encode::{Arg, Data, Head, encode, encode_parts, encode_prefixed, encoded_len};
pub use placeholders::{
    PLACEHOLDER_0, PlaceholderRef, placeholder, placeholder_num, placeholder_refs,
};

pub use crate::dialect::json::{build_array, json_string};
use bytes::Bytes;

/// Event names an application may not emit; the reference server closes the connection.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The default namespace, used when a packet omits one.
const ROOT_NSP: &[u8] = b"/";

/// Socket.IO packet types (the first character of the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Join a namespace (client) or accept the join (server, with `{"sid":..}`).
    Connect = 0,
    /// Leave a namespace.
    Disconnect = 1,
    /// An event: a non-empty array whose first element is the event name.
    Event = 2,
    /// The reply to an event that carried an ack id: an array of arguments.
    Ack = 3,
    /// The server refused a namespace join.
    ConnectError = 4,
    /// An event with binary attachments.
    BinaryEvent = 5,
    /// An ack with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The type for its wire digit (`b'0'`..=`b'6'`).
    pub fn from_digit(digit: u8) -> Option<Self> {
        Some(match digit {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Whether the type carries an attachment count (`BINARY_EVENT`, `BINARY_ACK`).
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// One Socket.IO packet. Byte fields are slices of the received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The packet type.
    pub kind: PacketType,
    /// The namespace, `/` when the wire omits it.
    pub nsp: Bytes,
    /// The ack id, if the sender wants an ack (EVENT) or this answers one (ACK).
    pub id: Option<u64>,
    /// The JSON payload, raw (surrounding whitespace trimmed).
    pub data: Option<Bytes>,
    /// Binary attachments of a `BINARY_*` packet, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// Errors decoding Socket.IO packets or their payloads.
#[derive(Debug, thiserror::Error)]
pub enum SioError {
    /// An empty packet.
    #[error("empty socket.io packet")]
    Empty,
    /// The first byte is not a packet type digit.
    #[error("unknown socket.io packet type {0:#04x}")]
    UnknownType(u8),
    /// A `BINARY_*` packet without a well-formed `<n>-` attachment count.
    #[error("bad attachment count")]
    BadAttachmentCount,
    /// A `BINARY_*` packet announces more attachments than allowed.
    #[error("too many attachments (max {max})")]
    TooManyAttachments {
        /// The configured limit.
        max: usize,
    },
    /// A namespace without its terminating `,`, or not UTF-8.
    #[error("bad namespace")]
    BadNamespace,
    /// The ack id does not fit in a u64.
    #[error("bad ack id")]
    BadAckId,
    /// The payload is not well-formed JSON.
    #[error("invalid JSON payload")]
    BadJson,
    /// Well-formed JSON of the wrong kind for the packet type: CONNECT data that is not an
    /// object, CONNECT_ERROR data neither object nor string, DISCONNECT with data.
    #[error("payload of the wrong kind for the packet type")]
    BadPayload,
    /// An EVENT or ACK payload (or arguments) that is not a JSON array.
    #[error("payload is not an array")]
    NotAnArray,
    /// An EVENT payload that is an empty array.
    #[error("event without a name")]
    EmptyEvent,
    /// An EVENT payload whose first element is not a string.
    #[error("event name is not a string")]
    EventNameNotString,
    /// A binary attachment arrived while no `BINARY_*` packet was waiting for one.
    #[error("unexpected binary attachment")]
    UnexpectedAttachment,
    /// A text packet arrived while a `BINARY_*` packet was still waiting for attachments.
    #[error("text packet while waiting for binary attachments")]
    AwaitingAttachments,
    /// An EVENT or ACK without a payload.
    #[error("missing payload")]
    MissingData,
}
