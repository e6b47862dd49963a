//! STOMP 1.0, 1.1 and 1.2 over WebSocket: the frame codec and both roles.

pub mod client;
pub mod codec;
pub mod server;
