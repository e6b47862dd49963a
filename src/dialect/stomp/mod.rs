//! STOMP 1.0, 1.1 and 1.2 over WebSocket: the frame codec and both roles.

pub mod client;
pub mod codec;
pub mod server;

use crate::dialect::json::is_json;
use crate::frame::PayloadKind;

/// How to read a STOMP body, from its `content-type` (and, when absent, its bytes: STOMP
/// says octets, but stomp-js omits the header for strings).
pub(crate) fn payload_kind(content_type: Option<&str>, body: &[u8]) -> PayloadKind {
    let ct = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match ct.as_deref() {
        Some(c) if c == "application/json" || c.ends_with("+json") => PayloadKind::Json,
        Some(c) if c.starts_with("text/") => PayloadKind::Text,
        Some("application/octet-stream") => PayloadKind::Binary,
        None if !body.is_empty() && is_json(body) => PayloadKind::Json,
        _ if std::str::from_utf8(body).is_ok() => PayloadKind::Text,
        _ => PayloadKind::Binary,
    }
}

/// The `content-type` a payload is sent with.
pub(crate) fn content_type(kind: PayloadKind) -> &'static str {
    match kind {
        PayloadKind::Json => "application/json",
        PayloadKind::Text => "text/plain;charset=utf-8",
        PayloadKind::Binary => "application/octet-stream",
    }
}
