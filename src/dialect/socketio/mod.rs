//! Socket.IO protocol 5 over Engine.IO 4: the packet codecs and both roles.

pub mod client;
pub mod engineio;
pub mod packet;
pub mod server;

use crate::dialect::{Caps, Dialect, Naming, Spec};

/// The registry's data for Socket.IO.
pub const SPEC: Spec = Spec {
    dialect: Dialect::Socketio,
    offers: &[],
    requests: &[],
    default_path: "/socket.io/",
    path_takes_key: false,
    backend_query: &[("EIO", "4"), ("transport", "websocket")],
    backend_trailing_slash: true,
    // The route's `max_payload` (Engine.IO's own limit) is the one that applies.
    max_message_size: None,
    naming: Naming {
        subscribe: &["{name}"],
        publish: &["{name}"],
    },
    caps: Caps {
        event_names: true,
        client_subscriptions: false,
        replies_with_data: true,
        presence: false,
        // Engine.IO's `open`, sent by the transport before anything else.
        speaks_first: true,
        events_without_subscribe: true,
        acks_deliveries: false,
        echoes_sender: true,
    },
};
