//! STOMP 1.0, 1.1 and 1.2 over WebSocket: the frame codec and both roles.

pub mod client;
pub mod codec;
pub mod server;

use crate::dialect::{Caps, Dialect, Naming, Spec};

/// The registry's data for STOMP.
pub const SPEC: Spec = Spec {
    dialect: Dialect::Stomp,
    offers: &["v12.stomp", "v11.stomp", "v10.stomp"],
    requests: &["v12.stomp", "v11.stomp", "v10.stomp"],
    // RabbitMQ Web-STOMP's and Spring's usual endpoint.
    default_path: "/ws",
    path_takes_key: false,
    backend_query: &[],
    backend_trailing_slash: false,
    max_message_size: None,
    // Spring's convention: subscribe to `/topic/x`, send to `/app/x` (or the topic itself).
    naming: Naming {
        subscribe: &["/topic/{name}"],
        publish: &["/app/{name}", "/topic/{name}"],
    },
    caps: Caps {
        event_names: false,
        client_subscriptions: true,
        replies_with_data: false,
        presence: false,
        speaks_first: false,
        events_without_subscribe: false,
        acks_deliveries: true,
        echoes_sender: true,
    },
};

use bytes::Bytes;

use crate::dialect::json::is_json;
use crate::frame::{Meta, PayloadKind};

/// How to read a STOMP body, from its `content-type` (and, when absent, its bytes: STOMP
/// says octets, but stomp-js omits the header for strings).
pub(crate) fn payload_kind(content_type: Option<&str>, body: &[u8]) -> PayloadKind {
    // The media type, compared without case and without allocating.
    let ct = content_type.map(|c| c.split(';').next().unwrap_or_default().trim());
    let is = |c: &str, t: &str| c.eq_ignore_ascii_case(t);
    let ends_with = |c: &str, t: &str| {
        c.len() >= t.len() && c.get(c.len() - t.len()..).is_some_and(|e| is(e, t))
    };
    let starts_with = |c: &str, t: &str| c.get(..t.len()).is_some_and(|s| is(s, t));
    match ct {
        Some(c) if is(c, "application/json") || ends_with(c, "+json") => PayloadKind::Json,
        Some(c) if starts_with(c, "text/") => PayloadKind::Text,
        Some(c) if is(c, "application/octet-stream") => PayloadKind::Binary,
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

/// Headers the proxy sets itself on SEND and MESSAGE frames; every other header is a user
/// header and travels as [`Meta`] (STOMP: "user headers must pass from SEND to MESSAGE").
const OWN_HEADERS: &[&str] = &[
    "destination",
    "content-type",
    "content-length",
    "receipt",
    "transaction",
    "event",
    "subscription",
    "message-id",
    "ack",
];

/// The user headers of a SEND or MESSAGE frame, in order.
pub(crate) fn user_headers(f: &codec::Frame) -> Meta {
    f.headers
        .iter()
        .filter(|(k, _)| !OWN_HEADERS.iter().any(|o| o.as_bytes() == k.as_ref()))
        .cloned()
        .collect()
}

/// The user headers of a SEND or MESSAGE, plus its `content-type` when the one the proxy
/// would derive from `kind` says less (`application/xml`, `text/csv`): a STOMP → STOMP route
/// keeps the sender's type. Dialects without headers ignore [`Meta`].
pub(crate) fn meta_of(f: &codec::Frame, kind: PayloadKind) -> Meta {
    let mut meta = user_headers(f);
    if let Some(ct) = f.header("content-type") {
        if ct.as_ref() != content_type(kind).as_bytes() {
            meta.insert(0, (Bytes::from_static(b"content-type"), ct.clone()));
        }
    }
    meta
}

/// Sets `content-type` from `kind`, unless `meta` carries the sender's own.
pub(crate) fn push_content_type(f: &mut codec::Frame, kind: PayloadKind, meta: &Meta) {
    if !meta.iter().any(|(k, _)| k.as_ref() == b"content-type") {
        f.push_header("content-type", content_type(kind));
    }
}
