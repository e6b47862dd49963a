//! STOMP 1.0 / 1.1 / 1.2 frame codec: bytes of WebSocket messages to and from [`Frame`]s.
//!
//! Owns: splitting a stream of WebSocket messages into frames and heart-beat EOLs (several
//! frames per message, frames split across messages), header escaping per version (none for
//! 1.0 or for CONNECT / STOMP / CONNECTED), `content-length` bodies, the size limits (checked
//! before anything is buffered), and encoding frames back to bytes.
//!
//! Zero copy: if a frame lies inside one message, its header names and values (unless they
//! contain escapes) and its body are `Bytes::slice`s of that message. Only reassembly across
//! messages and unescaping copy. [`Decoder::take_copied`] reports the copies and their
//! bytes.
//!
//! Must not touch: tokio, I/O, metrics, configuration, or protocol semantics (which headers are
//! required, heart-beat negotiation, receipts). Those belong to the STOMP roles.
//!
//! We do not use the `stomp-parser` crate here. `docs/stomp-parser.md` says why.
//!
//! # Layout
//!
//! - `frame.rs`: [`Version`], [`Command`] and [`Frame`], the types both directions share.
//! - `scan.rs`: parsing one frame (or heart-beat EOL) at the start of a byte slice, as ranges
//!   of that slice; header unescaping; the limits checked while parsing.
//! - `decode.rs`: the streaming [`Decoder`] over WebSocket messages (reassembly across
//!   messages, zero-copy slicing, the handshake pause), its [`Item`]s and [`Limits`].
//! - `encode.rs`: [`encode()`] and header escaping.
//! - `error.rs`: [`StompError`].

mod decode;
mod encode;
mod error;
mod frame;
mod scan;
#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;

pub use decode::{Decoder, Item, Limits};
pub use encode::{encode, encode_to_bytes, encoded_len, encoded_len_exact};
pub use error::StompError;
pub use frame::{Command, Frame, Version};
