//! The five client roles (the backend-facing side, which parses what a backend sends) fed
//! arbitrary backend messages: the first byte picks the dialect, the rest is split on 0xff
//! into messages, text when UTF-8. A subscription and a publish wait in the role first,
//! so that replies, confirmations and deliveries have something to match; deadlines and
//! the connection's loss are run at the end. Never panics.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::{ClientOut, ClientRole};
use switchboard::dialect::{actioncable, pusher, socketcluster, socketio, stomp};
use switchboard::frame::{
    ClientOp, Credentials, ErrorInfo, ErrorKind, Payload, Reply, SubParams,
};

fn role(pick: u8) -> Box<dyn ClientRole> {
    let c = Credentials::default();
    match pick % 5 {
        0 => Box::new(stomp::client::StompClient::new(Default::default(), c)),
        1 => Box::new(socketio::client::SocketioClient::new(Default::default(), c)),
        2 => Box::new(pusher::client::PusherClient::new(Default::default(), c)),
        3 => Box::new(socketcluster::client::ScClient::new(Default::default(), c)),
        _ => Box::new(actioncable::client::CableClient::new(Default::default(), c)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let now = Instant::now();
    let mut role = role(pick);
    let mut out = ClientOut::default();
    role.start(now, &mut out);
    role.on_op(
        ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from_static(b"news"),
            params: SubParams::default(),
        },
        now,
        &mut out,
    );
    role.on_op(
        ClientOp::Publish {
            channel: Bytes::from_static(b"news"),
            event: Some(Bytes::from_static(b"said")),
            args: Vec::new(),
            payload: Payload::json(Bytes::from_static(br#"{"a":1}"#)),
            meta: Vec::new(),
            reply: Some(Reply { id: 7, data: true }),
            broadcast: false,
            sub: None,
        },
        now,
        &mut out,
    );
    for msg in common::messages(rest) {
        let mut out = ClientOut::default();
        role.on_backend(msg, now, &mut out);
    }
    let mut out = ClientOut::default();
    role.expire(now + Duration::from_secs(120), &mut out);
    role.on_closed(ErrorInfo::new(ErrorKind::Unavailable, "gone"), &mut out);
});
