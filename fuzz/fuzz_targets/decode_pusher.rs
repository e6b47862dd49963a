//! Pusher envelope decoding, its data helpers and the server role on arbitrary bytes: never
//! panics; decoded envelopes re-encode and decode to the same fields.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::pusher::{codec, server};
use switchboard::dialect::{Handshake, ServerOut, ServerRole, WsMsg};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(m) = codec::decode(&bytes) {
        let raw = m.data.clone();
        let enc = codec::encode(
            &m.event,
            m.channel.as_deref(),
            raw.as_deref().map_or(codec::Data::None, codec::Data::Raw),
        );
        let again = codec::decode(&enc).expect("an encoding decodes");
        assert_eq!(again.event, m.event);
        assert_eq!(again.channel, m.channel);
        if let Some(d) = &m.data {
            let _ = codec::data_payload(d);
            let _ = codec::subscribe_data(d);
            let _ = codec::signin_data(d);
        }
        let _ = codec::error_data(m.data.as_ref());
    }
    let hs = Handshake {
        path: "/app/key".into(),
        query: "protocol=7".into(),
        ..Default::default()
    };
    let mut role = server::PusherServer::new(role_settings(), &hs, "1.2".into());
    let mut out = ServerOut::default();
    role.on_start(Instant::now(), &mut out);
    role.on_client(WsMsg::Text(bytes), Instant::now(), &mut out);
    // And as a sequence of messages on a fresh connection.
    let mut role = server::PusherServer::new(role_settings(), &hs, "1.2".into());
    role.on_start(Instant::now(), &mut ServerOut::default());
    common::drive(&mut role, data, br#"{"event":"pusher:ping","data":{}}"#);
});

fn role_settings() -> server::Settings {
    server::Settings {
        app_key: "key".into(),
        app_secret: "secret".into(),
        upstream_presence: true,
        ..Default::default()
    }
}
