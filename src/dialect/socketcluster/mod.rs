//! SocketCluster, legacy protocol v1 (SocketCluster ≤ 14, the v9-era clients) and v2: the
//! packet codec and both roles.

pub mod client;
pub mod codec;
pub mod server;

use crate::dialect::{Caps, Dialect, Naming, Spec};

/// The registry's data for this dialect.
pub const SPEC: Spec = Spec {
    dialect: Dialect::Socketcluster,
    offers: &[],
    requests: &[],
    default_path: "/socketcluster/",
    path_takes_key: false,
    backend_query: &[],
    backend_trailing_slash: true,
    max_message_size: None,
    naming: Naming {
        subscribe: &["{name}"],
        publish: &["{name}"],
    },
    caps: Caps {
        event_names: true,
        client_subscriptions: true,
        replies_with_data: true,
        presence: false,
        speaks_first: false,
        // A client hears the server's emits without subscribing.
        events_without_subscribe: true,
        acks_deliveries: false,
        echoes_sender: true,
    },
};
