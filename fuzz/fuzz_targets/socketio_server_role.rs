//! The Socket.IO server role fed a sequence of arbitrary client messages (split on 0xff;
//! text when UTF-8, binary attachments otherwise) after the Engine.IO open, with a
//! backend that is ready and confirms what it is asked: never panics, and once it closes
//! the connection it says nothing more.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::socketio::server::{Settings, SocketioServer};
use switchboard::dialect::{ServerOut, ServerRole};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut role = SocketioServer::new(Settings::default(), None, String::new(), "sid".into(), now);
    let mut out = ServerOut::default();
    role.on_start(now, &mut out);
    common::drive(&mut role, data, b"42[\"x\"]");
});
