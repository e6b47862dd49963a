//! SocketCluster packet decoding (both sides, both versions), its body helpers and the
//! server role on arbitrary bytes: never panics; decoded packets re-encode and decode to
//! the same fields.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::socketcluster::codec::{self, Decoded, Version};
use switchboard::dialect::socketcluster::server;
use switchboard::dialect::{Handshake, ServerOut, ServerRole, WsMsg};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    for side in [true, false] {
        let ps = match codec::decode(&bytes, side) {
            Ok(Decoded::Packets(ps)) => ps,
            Ok(Decoded::Packet(p)) => vec![p],
            _ => Vec::new(),
        };
        for p in ps {
            if let Some(ev) = &p.event {
                let enc = codec::event(ev, p.data.as_deref(), p.cid);
                let Ok(Decoded::Packet(again)) = codec::decode(&enc, side) else {
                    panic!("an encoding decodes to one packet")
                };
                assert_eq!(again.event.as_ref(), Some(ev));
            }
            if let Some(d) = &p.data {
                let _ = codec::channel_of(d);
            }
            if let Some(e) = &p.error {
                let _ = codec::error_fields(e);
            }
        }
    }
    for version in [Version::V1, Version::V2] {
        let settings = server::Settings {
            version,
            ..Default::default()
        };
        let mut role =
            server::ScServer::new(settings, &Handshake::default(), "x".into(), Instant::now());
        let mut out = ServerOut::default();
        role.on_client(
            WsMsg::Text(Bytes::from_static(br##"{"event":"#handshake","cid":1}"##)),
            Instant::now(),
            &mut out,
        );
        role.on_client(WsMsg::Text(bytes.clone()), Instant::now(), &mut out);
        // And as a sequence of messages after the handshake.
        common::drive(&mut role, data, br##"{"event":"#publish","data":{"channel":"a","data":1},"cid":9}"##);
    }
});
