//! Socket.IO protocol 5 over Engine.IO 4: the packet codecs and both roles.

pub mod client;
pub mod engineio;
pub mod packet;
pub mod server;
