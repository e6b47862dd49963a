//! The STOMP server role fed arbitrary client messages after a valid CONNECT: never panics,
//! and once it decides to close it emits nothing more.
#![no_main]
use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::stomp::server::{Settings, StompServer};
use switchboard::dialect::{ServerOut, ServerRole, WsMsg};
use switchboard::frame::BackendEvent;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut role = StompServer::new(Settings::default(), None, "fuzz".into(), now);
    let mut out = ServerOut::default();
    role.on_client(WsMsg::Text(Bytes::from_static(b"CONNECT\naccept-version:1.2\n\n\0")), now, &mut out);
    role.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
    for chunk in data.split(|b| *b == 0xff) {
        let mut out = ServerOut::default();
        role.on_client(WsMsg::Binary(Bytes::copy_from_slice(chunk)), now, &mut out);
        if out.close.is_some() {
            let mut after = ServerOut::default();
            role.on_client(WsMsg::Text(Bytes::from_static(b"SEND\ndestination:/app/x\n\n\0")), now, &mut after);
            assert!(after.to_client.is_empty() && after.ops.is_empty());
            break;
        }
    }
});
