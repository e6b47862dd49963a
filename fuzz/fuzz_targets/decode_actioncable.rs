//! Action Cable message decoding, identifier parsing and the server role on arbitrary
//! bytes: never panics; a parsed identifier rebuilds to the same canonical form.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::actioncable::{codec, server};
use switchboard::dialect::{Handshake, ServerOut, ServerRole, WsMsg};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(m) = codec::decode(&bytes) {
        if let Some(id) = m
            .identifier()
            .as_ref()
            .and_then(|i| codec::identifier(i).ok())
        {
            let rebuilt = codec::build_identifier(id.channel.as_bytes(), id.params.as_deref())
                .expect("a parsed identifier rebuilds");
            let again = codec::identifier(rebuilt.as_bytes()).expect("and parses again");
            assert_eq!(again.canonical, id.canonical);
        }
    }
    let _ = codec::identifier(data);
    let mut role = server::CableServer::new(
        server::Settings::default(),
        &Handshake::default(),
        0,
        Instant::now(),
    );
    let mut out = ServerOut::default();
    role.on_start(Instant::now(), &mut out);
    role.on_client(WsMsg::Text(bytes), Instant::now(), &mut out);
    // And as a sequence of messages on a fresh connection.
    let mut role = server::CableServer::new(
        server::Settings::default(),
        &Handshake::default(),
        0,
        Instant::now(),
    );
    role.on_start(Instant::now(), &mut ServerOut::default());
    common::drive(
        &mut role,
        data,
        br#"{"command":"subscribe","identifier":"{\"channel\":\"X\"}"}"#,
    );
});
