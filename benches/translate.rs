//! Decode + translate + encode throughput, in frames per second, for both directions of the
//! STOMP ⇄ Socket.IO, Pusher ⇄ Socket.IO and STOMP ⇄ Pusher routes, plus the STOMP codec
//! alone as the floor.
//!
//! Run: `cargo bench --bench translate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::config::MapRule;
use switchboard::dialect::pusher::client::{self as pusher_client, PusherClient};
use switchboard::dialect::pusher::server::{self as pusher_server, PusherServer};
use switchboard::dialect::socketio::client::{self as sio, SocketioClient};
use switchboard::dialect::stomp::codec::{Decoder, Limits};
use switchboard::dialect::stomp::server::{self as stomp, StompServer};
use switchboard::dialect::{ClientOut, ClientRole, Handshake, ServerOut, ServerRole, WsMsg};
use switchboard::frame::{BackendEvent, ClientOp, Credentials, SubId};
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

/// One client message through the route: server role, translator, client role; what goes
/// to the backend.
fn down(
    server: &mut dyn ServerRole,
    t: &mut Translator,
    client: &mut dyn ClientRole,
    msg: &Bytes,
) -> Vec<WsMsg> {
    let now = Instant::now();
    let mut out = ServerOut::default();
    server.on_client(WsMsg::Text(msg.clone()), now, &mut out);
    let mut cout = ClientOut::default();
    for op in out.ops {
        let op: ClientOp = t.down_op(op).unwrap();
        client.on_op(op, now, &mut cout);
    }
    cout.to_backend.into_vec()
}

/// One backend message through the route: client role, translator, server role; what goes
/// to the client.
fn up(
    client: &mut dyn ClientRole,
    t: &mut Translator,
    server: &mut dyn ServerRole,
    msg: &Bytes,
) -> Vec<WsMsg> {
    let now = Instant::now();
    let mut cout = ClientOut::default();
    client.on_backend(WsMsg::Text(msg.clone()), now, &mut cout);
    let mut evs = Vec::new();
    for ev in cout.events {
        t.up_event(ev, &mut evs);
    }
    let mut out = ServerOut::default();
    for ev in evs {
        server.on_backend(ev, now, &mut out);
    }
    out.to_client.into_vec()
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
            std::hint::black_box(down(
                &mut r.server,
                &mut r.translator,
                &mut r.client,
                &frame,
            ))
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
            std::hint::black_box(up(&mut r.client, &mut r.translator, &mut r.server, &packet))
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

/// A Pusher client (server role) on a private channel, signed for its socket id.
fn pusher_server() -> (PusherServer, SubId) {
    use switchboard::dialect::pusher::auth;
    let hs = Handshake {
        path: "/app/key".into(),
        query: "protocol=7".into(),
        ..Default::default()
    };
    let settings = pusher_server::Settings {
        app_key: "key".into(),
        app_secret: "secret".into(),
        ..Default::default()
    };
    let mut s = PusherServer::new(settings, &hs, "1.2".into());
    let now = Instant::now();
    let mut out = ServerOut::default();
    s.on_start(now, &mut out);
    let sig = auth::sign(
        "key",
        "secret",
        &auth::channel_string("1.2", b"private-chat", None),
    )
    .unwrap();
    let mut out = ServerOut::default();
    s.on_client(
        WsMsg::Text(Bytes::from(format!(
            r#"{{"event":"pusher:subscribe","data":{{"channel":"private-chat","auth":"{sig}"}}}}"#
        ))),
        now,
        &mut out,
    );
    let Some(ClientOp::Subscribe { sub, .. }) = out.ops.first().cloned() else {
        panic!("{:?}", out.to_client)
    };
    s.on_backend(BackendEvent::Subscribed { sub, data: None }, now, &mut out);
    (s, sub)
}

fn opened_socketio() -> SocketioClient {
    let now = Instant::now();
    let mut client = SocketioClient::new(sio::Settings::default(), Credentials::default());
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
    client
}

fn pusher_and_socketio(c: &mut Criterion) {
    let (mut server, sub) = pusher_server();
    let mut client = opened_socketio();
    let mut t = Translator::new(
        Mapping::new(
            &[],
            &switchboard::dialect::pusher::SPEC,
            &switchboard::dialect::socketio::SPEC,
        )
        .unwrap(),
    );
    t.down_op(ClientOp::Subscribe {
        sub,
        channel: Bytes::from_static(b"private-chat"),
        params: Default::default(),
    })
    .unwrap();
    let client_event = Bytes::from(format!(
        r#"{{"event":"client-message","channel":"private-chat","data":{BODY}}}"#
    ));
    let packet = Bytes::from(format!(r#"42["private-chat",{BODY}]"#));
    let mut g = c.benchmark_group("pusher_socketio");
    g.throughput(Throughput::Elements(1));
    g.bench_function("client_event_to_emit", |b| {
        b.iter(|| std::hint::black_box(down(&mut server, &mut t, &mut client, &client_event)))
    });
    g.bench_function("event_to_pusher_event", |b| {
        b.iter(|| std::hint::black_box(up(&mut client, &mut t, &mut server, &packet)))
    });
    g.finish();
}

fn stomp_and_pusher(c: &mut Criterion) {
    let now = Instant::now();
    let mut r = route();
    let mut client = PusherClient::new(
        pusher_client::Settings {
            app_key: "key".into(),
            app_secret: Some("secret".into()),
            ..Default::default()
        },
        Credentials::default(),
    );
    let mut cout = ClientOut::default();
    client.on_backend(
        WsMsg::Text(Bytes::from_static(
            br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#,
        )),
        now,
        &mut cout,
    );
    let mut t = Translator::new(
        Mapping::new(
            &[],
            &switchboard::dialect::stomp::SPEC,
            &switchboard::dialect::pusher::SPEC,
        )
        .unwrap(),
    );
    let mut out = ServerOut::default();
    r.server.on_client(
        WsMsg::Text(Bytes::from_static(
            b"SUBSCRIBE\nid:1\ndestination:/topic/private-chat\n\n\0",
        )),
        now,
        &mut out,
    );
    for op in out.ops {
        client.on_op(t.down_op(op).unwrap(), now, &mut cout);
    }
    let mut cout = ClientOut::default();
    client.on_backend(
        WsMsg::Text(Bytes::from_static(
            br#"{"event":"pusher_internal:subscription_succeeded","channel":"private-chat","data":"{}"}"#,
        )),
        now,
        &mut cout,
    );
    for ev in cout.events {
        let mut evs = Vec::new();
        t.up_event(ev, &mut evs);
        for ev in evs {
            r.server.on_backend(ev, now, &mut ServerOut::default());
        }
    }
    let send = Bytes::from(format!(
        "SEND\ndestination:/topic/private-chat\nevent:client-message\ncontent-type:application/json\ncontent-length:{}\n\n{BODY}\0",
        BODY.len()
    ));
    let escaped = BODY.replace('"', "\\\"");
    let server_event = Bytes::from(format!(
        r#"{{"event":"message_created","channel":"private-chat","data":"{escaped}"}}"#
    ));
    let mut g = c.benchmark_group("stomp_pusher");
    g.throughput(Throughput::Elements(1));
    g.bench_function("send_to_client_event", |b| {
        b.iter(|| std::hint::black_box(down(&mut r.server, &mut t, &mut client, &send)))
    });
    g.bench_function("server_event_to_message", |b| {
        b.iter(|| std::hint::black_box(up(&mut client, &mut t, &mut r.server, &server_event)))
    });
    g.finish();
}

fn socketcluster_and_socketio(c: &mut Criterion) {
    use switchboard::dialect::socketcluster::server::{self as sc, ScServer};
    let now = Instant::now();
    let mut server = ScServer::new(
        sc::Settings::default(),
        &Handshake::default(),
        "b".into(),
        now,
    );
    let mut client = opened_socketio();
    let mut t = Translator::new(
        Mapping::new(
            &[],
            &switchboard::dialect::socketcluster::SPEC,
            &switchboard::dialect::socketio::SPEC,
        )
        .unwrap(),
    );
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(br##"{"event":"#handshake","cid":1}"##)),
        now,
        &mut out,
    );
    server.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(
            br##"{"event":"#subscribe","data":{"channel":"urn:1"},"cid":2}"##,
        )),
        now,
        &mut out,
    );
    for op in out.ops {
        let op = t.down_op(op).unwrap();
        if let ClientOp::Subscribe { sub, .. } = op {
            server.on_backend(
                BackendEvent::Subscribed { sub, data: None },
                now,
                &mut ServerOut::default(),
            );
        }
    }
    let transmit = Bytes::from(format!(
        r#"{{"event":"sendMessageToChannel","data":{BODY}}}"#
    ));
    let packet = Bytes::from(format!(r#"42["urn:1",{BODY}]"#));
    let mut g = c.benchmark_group("socketcluster_socketio");
    g.throughput(Throughput::Elements(1));
    g.bench_function("emit_to_emit", |b| {
        b.iter(|| std::hint::black_box(down(&mut server, &mut t, &mut client, &transmit)))
    });
    g.bench_function("event_to_channel_publish", |b| {
        b.iter(|| std::hint::black_box(up(&mut client, &mut t, &mut server, &packet)))
    });
    g.finish();
}

fn actioncable_and_stomp(c: &mut Criterion) {
    use switchboard::dialect::actioncable::client::{self as ac, CableClient};
    let now = Instant::now();
    let mut r = route();
    let mut client = CableClient::new(ac::Settings::default(), Credentials::default());
    let mut cout = ClientOut::default();
    client.on_backend(
        WsMsg::Text(Bytes::from_static(br#"{"type":"welcome"}"#)),
        now,
        &mut cout,
    );
    let rules = vec![MapRule {
        client: "/topic/chat-room/{id}".into(),
        upstream: "Chats::RoomChannel".into(),
        upstream_args: vec![],
        event_from_key: false,
        client_params: Default::default(),
        upstream_params: [("id".to_owned(), "{id}".to_owned())].into(),
    }];
    let mut t = Translator::new(
        Mapping::new(
            &rules,
            &switchboard::dialect::stomp::SPEC,
            &switchboard::dialect::actioncable::SPEC,
        )
        .unwrap(),
    );
    let mut out = ServerOut::default();
    r.server.on_client(
        WsMsg::Text(Bytes::from_static(
            b"SUBSCRIBE\nid:1\ndestination:/topic/chat-room/7\n\n\0",
        )),
        now,
        &mut out,
    );
    for op in out.ops {
        client.on_op(t.down_op(op).unwrap(), now, &mut cout);
    }
    let mut cout = ClientOut::default();
    client.on_backend(
        WsMsg::Text(Bytes::from_static(
            br#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}","type":"confirm_subscription"}"#,
        )),
        now,
        &mut cout,
    );
    for ev in cout.events {
        let mut evs = Vec::new();
        t.up_event(ev, &mut evs);
        for ev in evs {
            r.server.on_backend(ev, now, &mut ServerOut::default());
        }
    }
    let send = Bytes::from(format!(
        "SEND\ndestination:/topic/chat-room/7\nevent:sendMessage\ncontent-type:application/json\ncontent-length:{}\n\n{BODY}\0",
        BODY.len()
    ));
    let broadcast = Bytes::from(format!(
        r#"{{"identifier":"{{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}}","message":{{"event":"newMessage","message":{BODY}}}}}"#
    ));
    let mut g = c.benchmark_group("stomp_actioncable");
    g.throughput(Throughput::Elements(1));
    g.bench_function("send_to_perform", |b| {
        b.iter(|| std::hint::black_box(down(&mut r.server, &mut t, &mut client, &send)))
    });
    g.bench_function("broadcast_to_message", |b| {
        b.iter(|| std::hint::black_box(up(&mut client, &mut t, &mut r.server, &broadcast)))
    });
    g.finish();
}

criterion_group!(
    benches,
    actioncable_and_stomp,
    socketcluster_and_socketio,
    stomp_to_socketio,
    socketio_to_stomp,
    pusher_and_socketio,
    stomp_and_pusher,
    stomp_decode_only
);
criterion_main!(benches);
