//! Pusher Channels protocol 7: the envelope codec, signatures, and both roles.

pub mod auth;
pub mod client;
pub mod codec;
pub mod server;

use crate::dialect::{Caps, Dialect, Naming, Spec};

/// The registry's data for this dialect.
pub const SPEC: Spec = Spec {
    dialect: Dialect::Pusher,
    offers: &[],
    requests: &[],
    // pusher-js builds `/app/<key>`; the key is the rest of the path.
    default_path: "/app",
    path_takes_key: true,
    backend_query: &[
        ("protocol", "7"),
        ("client", "switchboard"),
        ("version", env!("CARGO_PKG_VERSION")),
    ],
    backend_trailing_slash: false,
    // Pusher's limit on event data.
    max_message_size: Some(10 * 1024),
    naming: Naming {
        subscribe: &["{name}"],
        publish: &["{name}"],
    },
    caps: Caps {
        event_names: true,
        client_subscriptions: true,
        replies_with_data: false,
        presence: true,
        speaks_first: true,
        events_without_subscribe: false,
        acks_deliveries: false,
        echoes_sender: false,
    },
};
