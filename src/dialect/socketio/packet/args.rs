//! The JSON argument arrays of events and acks: split into zero-copy slices of the message
//! (the event name decoded), built in one allocation, and the error-ack shape both roles use.
//!
//! Must not touch: placeholders inside the arguments (`placeholders.rs`), packet framing
//! (`decode.rs`, `encode.rs`).

use super::SioError;
use crate::dialect::json::{NotArray, array_elements, json_string_len, put_json_string};
use bytes::{BufMut, Bytes, BytesMut};

/// The elements of an event's or ack's argument array: an event's name and its one argument
/// are held inline (no allocation); more spill to the heap.
pub type Args = smallvec::SmallVec<[Bytes; 2]>;

/// The top-level elements of a JSON array, as slices of `data` (zero copy; no allocation up
/// to two elements), found by the same pass that validates `data`.
pub fn split_args(data: &Bytes) -> Result<Args, SioError> {
    let mut args = Args::new();
    array_elements(data, |r| args.push(data.slice(r))).map_err(|e| match e {
        NotArray::BadJson => SioError::BadJson,
        NotArray::NotAnArray => SioError::NotAnArray,
    })?;
    Ok(args)
}

/// For EVENT data: the event name (decoded, UTF-8) and the remaining arguments (slices of
/// `data`). A name without escapes is a slice of `data` too; only an escaped one is decoded
/// into its own buffer.
pub fn split_event(data: &Bytes) -> Result<(Bytes, Args), SioError> {
    event_parts(split_args(data)?)
}

/// The event name (decoded) and the remaining arguments, from the elements of EVENT data.
pub(super) fn event_parts(mut args: Args) -> Result<(Bytes, Args), SioError> {
    if args.is_empty() {
        return Err(SioError::EmptyEvent);
    }
    // Shifting the rest down keeps the one array.
    let name = args.remove(0);
    if name.first() != Some(&b'"') {
        return Err(SioError::EventNameNotString);
    }
    // `data` is well-formed JSON (so UTF-8): between its quotes, a string without a
    // backslash is its own value.
    let inner = name.len().checked_sub(1).map(|end| name.slice(1..end));
    let name = match inner {
        Some(inner) if !inner.contains(&b'\\') => inner,
        _ => Bytes::from(serde_json::from_slice::<String>(&name).map_err(|_| SioError::BadJson)?),
    };
    Ok((name, args))
}

/// `[<name as JSON string>,arg0,arg1,..]`, args spliced in raw, in one exact allocation.
pub fn build_event(name: &str, args: &[&[u8]]) -> Bytes {
    let len =
        2 + json_string_len(name.as_bytes()) + args.iter().map(|a| a.len() + 1).sum::<usize>();
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(b'[');
    put_json_string(&mut out, name.as_bytes());
    for arg in args {
        out.put_u8(b',');
        out.extend_from_slice(arg);
    }
    out.put_u8(b']');
    out.freeze()
}

/// The ack arguments that report an error, `[{"error":{"name":"<name>","message":"<m>"}}]`:
/// Socket.IO acks have no error slot, so both roles answer refusals in this one shape.
pub fn error_args(name: &str, message: &[u8]) -> Bytes {
    let message = String::from_utf8_lossy(message);
    let len = 32 + json_string_len(name.as_bytes()) + json_string_len(message.as_bytes());
    let mut b = BytesMut::with_capacity(len);
    b.extend_from_slice(b"[{\"error\":{\"name\":");
    put_json_string(&mut b, name.as_bytes());
    b.extend_from_slice(b",\"message\":");
    put_json_string(&mut b, message.as_bytes());
    b.extend_from_slice(b"}}]");
    debug_assert_eq!(b.len(), len, "length computed exactly");
    b.freeze()
}
