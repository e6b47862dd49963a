//! Rails Action Cable (`actioncable-v1-json`): the message codec and both roles.

pub mod client;
pub mod codec;
pub mod server;

use crate::dialect::{Caps, Dialect, Naming, Spec};

/// The registry's data for this dialect.
pub const SPEC: Spec = Spec {
    dialect: Dialect::Actioncable,
    offers: &["actioncable-v1-json", "actioncable-unsupported"],
    requests: &["actioncable-v1-json", "actioncable-unsupported"],
    default_path: "/cable",
    path_takes_key: false,
    backend_query: &[],
    backend_trailing_slash: false,
    max_message_size: None,
    naming: Naming {
        subscribe: &["{name}"],
        publish: &["{name}"],
    },
    caps: Caps {
        event_names: false,
        client_subscriptions: true,
        replies_with_data: false,
        presence: false,
        // `welcome`.
        speaks_first: true,
        events_without_subscribe: false,
        acks_deliveries: false,
        echoes_sender: true,
    },
};
