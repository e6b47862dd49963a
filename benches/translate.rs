//! Decode + translate + encode throughput, in frames per second, for both directions of the
//! STOMP ⇄ Socket.IO route, plus the STOMP codec alone as the floor.
//!
//! Run: `cargo bench --bench translate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::config::MapRule;
use switchboard::dialect::socketio::client::{self as sio, SocketioClient};
use switchboard::dialect::stomp::codec::{Decoder, Limits};
use switchboard::dialect::stomp::server::{self as stomp, StompServer};
use switchboard::dialect::{ClientOut, ClientRole, ServerOut, ServerRole, WsMsg};
use switchboard::frame::{BackendEvent, ClientOp, Credentials};
use switchboard::translate::{Mapping, Translator};

const BODY: &str = r#"{"id":17,"thread":"t-42","text":"Hello, the results are in. Please call me back.","author":{"id":5,"name":"Ann"}}"#;

struct Route {
    server: StompServer,
    client: SocketioClient,
    translator: Translator,
}

fn route() -> Route {
    let mut server = StompServer::new(
        stomp::Settings::default(),
        None,
        "bench".into(),
        Instant::now(),
    );
    let mut client = SocketioClient::new(sio::Settings::default(), Credentials::default());
    let rules: Vec<MapRule> = Vec::new();
    let mut translator = Translator::new(
        Mapping::new(
            &rules,
            &switchboard::dialect::stomp::SPEC,
            &switchboard::dialect::socketio::SPEC,
        )
        .unwrap(),
    );
    let now = Instant::now();
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(b"CONNECT\naccept-version:1.2\n\n\0")),
        now,
        &mut out,
    );
    server.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(
            b"SUBSCRIBE\nid:0\ndestination:/topic/message_created\n\n\0",
        )),
        now,
        &mut out,
    );
    for op in out.ops {
        translator.down_op(op).unwrap();
    }
    let mut cout = ClientOut::default();
    client.on_backend(
        WsMsg::Text(Bytes::from_static(
            br#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )),
        now,
        &mut cout,
    );
    client.on_backend(
        WsMsg::Text(Bytes::from_static(br#"40{"sid":"y"}"#)),
        now,
        &mut cout,
    );
    Route {
        server,
        client,
        translator,
    }
}

fn stomp_to_socketio(c: &mut Criterion) {
    let mut r = route();
    let frame = Bytes::from(format!(
        "SEND\ndestination:/app/message_created\ncontent-type:application/json\ncontent-length:{}\n\n{BODY}\0",
        BODY.len()
    ));
    let mut g = c.benchmark_group("stomp_to_socketio");
    g.throughput(Throughput::Elements(1));
    g.bench_function("send_to_emit", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut out = ServerOut::default();
            r.server
                .on_client(WsMsg::Text(frame.clone()), now, &mut out);
            let mut cout = ClientOut::default();
            for op in out.ops {
                let op: ClientOp = r.translator.down_op(op).unwrap();
                r.client.on_op(op, now, &mut cout);
            }
            std::hint::black_box(cout.to_backend);
        })
    });
    g.finish();
}

fn socketio_to_stomp(c: &mut Criterion) {
    let mut r = route();
    let packet = Bytes::from(format!(r#"42["message_created",{BODY}]"#));
    let mut g = c.benchmark_group("socketio_to_stomp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("event_to_message", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut cout = ClientOut::default();
            r.client
                .on_backend(WsMsg::Text(packet.clone()), now, &mut cout);
            let mut evs = Vec::new();
            for ev in cout.events {
                r.translator.up_event(ev, &mut evs);
            }
            let mut out = ServerOut::default();
            for ev in evs {
                r.server.on_backend(ev, now, &mut out);
            }
            std::hint::black_box(out.to_client);
        })
    });
    g.finish();
}

fn stomp_decode_only(c: &mut Criterion) {
    let frame = Bytes::from(format!(
        "SEND\ndestination:/app/message_created\ncontent-type:application/json\ncontent-length:{}\n\n{BODY}\0",
        BODY.len()
    ));
    let mut dec = Decoder::new(Limits::default());
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("stomp_decode_send", |b| {
        b.iter(|| {
            let mut items = Vec::new();
            dec.decode(frame.clone(), &mut items).unwrap();
            std::hint::black_box(items);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    stomp_to_socketio,
    socketio_to_stomp,
    stomp_decode_only
);
criterion_main!(benches);
