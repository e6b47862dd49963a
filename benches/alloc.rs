//! Heap allocations per forwarded message on the translate paths, counted by a
//! `#[global_allocator]` wrapper around the system allocator (no timing: the figure is exact
//! and repeatable). Each path warms up (tables and out-buffers reach their steady size), then
//! forwards [`MESSAGES`] messages through server role, translator and client role (or back)
//! and prints allocations and payload copies per message.
//!
//! Run: `cargo bench --bench alloc`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::time::Instant;

use bytes::Bytes;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use switchboard::config::MapRule;
use switchboard::dialect::pusher::server::{self as pusher_server, PusherServer};
use switchboard::dialect::socketio::client::{self as sio, SocketioClient};
use switchboard::dialect::socketio::server::{self as sio_server, SocketioServer};
use switchboard::dialect::stomp::server::{self as stomp, StompServer};
use switchboard::dialect::{
    ClientOut, ClientRole, Copied, Handshake, ServerOut, ServerRole, Spec, WsMsg,
};
use switchboard::frame::{BackendEvent, ClientOp, Credentials};
use switchboard::translate::{Mapping, Translator};

/// The system allocator, counting every allocation and reallocation (a `realloc` is an
/// allocation the caller could have avoided with the right capacity). `stats_alloc` holds the
/// one `unsafe impl GlobalAlloc`; the crate forbids unsafe code.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations plus reallocations so far.
fn allocs() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

const BODY: &str = r#"{"id":17,"thread":"t-42","text":"Hello, the results are in. Please call me back.","author":{"id":5,"name":"Ann"}}"#;
const WARMUP: u64 = 1_000;
const MESSAGES: u64 = 10_000;

/// Reused buffers, as the session keeps them: one message through the route allocates only
/// what the roles and the translator allocate.
#[derive(Default)]
struct Bufs {
    out: ServerOut,
    cout: ClientOut,
    evs: Vec<BackendEvent>,
}

/// One client message down: server role, translator, client role. Returns what went to the
/// backend (dropped by the caller) and the copies both roles reported.
fn down(
    server: &mut dyn ServerRole,
    t: &mut Translator,
    client: &mut dyn ClientRole,
    msg: &Bytes,
    b: &mut Bufs,
) -> usize {
    let now = Instant::now();
    server.on_client(WsMsg::Text(msg.clone()), now, &mut b.out);
    for op in b.out.ops.drain(..) {
        let op: ClientOp = t.down_op(op).unwrap();
        client.on_op(op, now, &mut b.cout);
    }
    let n = b.cout.to_backend.len() + b.out.to_client.len();
    b.cout.to_backend.clear();
    b.out.to_client.clear();
    n
}

/// One backend message up: client role, translator, server role.
fn up(
    client: &mut dyn ClientRole,
    t: &mut Translator,
    server: &mut dyn ServerRole,
    msg: &Bytes,
    b: &mut Bufs,
) -> usize {
    let now = Instant::now();
    client.on_backend(WsMsg::Text(msg.clone()), now, &mut b.cout);
    for ev in b.cout.events.drain(..) {
        t.up_event(ev, &mut b.evs);
    }
    for ev in b.evs.drain(..) {
        server.on_backend(ev, now, &mut b.out);
    }
    let n = b.out.to_client.len() + b.cout.to_backend.len();
    b.out.to_client.clear();
    b.cout.to_backend.clear();
    n
}

/// Runs `step` for the warm-up, then counts allocations over [`MESSAGES`] calls (with the
/// out-buffers reused, then with new ones each message); prints allocations and copies per
/// message.
fn measure(
    name: &str,
    server: &mut dyn ServerRole,
    client: &mut dyn ClientRole,
    mut step: impl FnMut(&mut dyn ServerRole, &mut dyn ClientRole, &mut Bufs) -> usize,
) {
    // `cargo bench --bench alloc -- <filter>`: only the paths whose name contains it (to
    // look at one path's allocation sites under a heap profiler).
    if let Some(f) = std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        if !name.contains(f.as_str()) {
            return;
        }
    }
    let mut b = Bufs::default();
    for _ in 0..WARMUP {
        assert!(
            step(server, client, &mut b) > 0,
            "{name}: nothing forwarded"
        );
    }
    let _ = server.take_copied();
    let _ = client.take_copied();
    let before = allocs();
    let mut sent = 0;
    for _ in 0..MESSAGES {
        sent += step(server, client, &mut b);
    }
    let allocs_reused = allocs() - before;
    let mut c: Copied = server.take_copied();
    c.add(client.take_copied());
    // The same with new out-buffers per message, as the session builds them today (each
    // out vector that gets a push allocates once).
    let before = allocs();
    for _ in 0..MESSAGES {
        step(server, client, &mut Bufs::default());
    }
    let allocs_fresh = allocs() - before;
    let _ = (server.take_copied(), client.take_copied());
    let per = |n: u64| n as f64 / MESSAGES as f64;
    println!(
        "{name:<42} {:>5.2} allocs/msg ({:>5.2} with fresh out-buffers)  {:.2} copies/msg of {:.1} bytes  {:.2} out/msg",
        per(allocs_reused),
        per(allocs_fresh),
        per(c.copies),
        c.bytes as f64 / c.copies.max(1) as f64,
        per(sent as u64),
    );
}

/// Both directions of one route: `msgs.0` from the client down, `msgs.1` from the backend
/// up, named `names`.
fn both_ways(
    names: [&str; 2],
    server: &mut dyn ServerRole,
    client: &mut dyn ClientRole,
    t: &mut Translator,
    msgs: (&Bytes, &Bytes),
) {
    measure(names[0], server, client, |s, c, b| down(s, t, c, msgs.0, b));
    measure(names[1], server, client, |s, c, b| up(c, t, s, msgs.1, b));
}

fn translator(server: &'static Spec, client: &'static Spec, rules: &[MapRule]) -> Translator {
    Translator::new(Mapping::new(rules, server, client).unwrap())
}

fn stomp_server() -> StompServer {
    let now = Instant::now();
    let mut server = StompServer::new(stomp::Settings::default(), None, "bench".into(), now);
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(b"CONNECT\naccept-version:1.2\n\n\0")),
        now,
        &mut out,
    );
    server.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
    server
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

/// Feeds the server role's ops for `msg` through the translator into the client role, and
/// the acks (`Subscribed`) back: a subscription made on both legs.
fn subscribe(
    server: &mut dyn ServerRole,
    t: &mut Translator,
    client: &mut dyn ClientRole,
    msg: &[u8],
) {
    let now = Instant::now();
    let mut out = ServerOut::default();
    server.on_client(WsMsg::Text(Bytes::copy_from_slice(msg)), now, &mut out);
    let mut cout = ClientOut::default();
    for op in out.ops {
        let op = t.down_op(op).unwrap();
        if let ClientOp::Subscribe { sub, .. } = &op {
            server.on_backend(
                BackendEvent::Subscribed {
                    sub: *sub,
                    data: None,
                },
                now,
                &mut ServerOut::default(),
            );
        }
        client.on_op(op, now, &mut cout);
    }
}

fn stomp_socketio() {
    let mut server = stomp_server();
    let mut client = opened_socketio();
    let mut t = translator(
        &switchboard::dialect::stomp::SPEC,
        &switchboard::dialect::socketio::SPEC,
        &[],
    );
    subscribe(
        &mut server,
        &mut t,
        &mut client,
        b"SUBSCRIBE\nid:0\ndestination:/topic/message_created\n\n\0",
    );
    let send = Bytes::from(format!(
        "SEND\ndestination:/app/message_created\ncontent-type:application/json\ncontent-length:{}\n\n{BODY}\0",
        BODY.len()
    ));
    let packet = Bytes::from(format!(r#"42["message_created",{BODY}]"#));
    both_ways(
        [
            "stomp SEND -> socketio emit",
            "socketio event -> stomp MESSAGE",
        ],
        &mut server,
        &mut client,
        &mut t,
        (&send, &packet),
    );
}

/// Socket.IO on both legs, as the registry builds the roles for a Socket.IO → Socket.IO route:
/// the server role with `shapes`, the client role `scoped`, namespaces joined one for one,
/// arrays carried in their shape.
fn socketio_socketio() {
    let now = Instant::now();
    let mut server = SocketioServer::new(
        sio_server::Settings {
            shapes: true,
            ..Default::default()
        },
        None,
        String::new(),
        "s".into(),
        now,
    );
    server.on_start(now, &mut ServerOut::default());
    let mut client = SocketioClient::new(
        sio::Settings {
            scoped: true,
            ..Default::default()
        },
        Credentials::default(),
    );
    let mut t = translator(
        &switchboard::dialect::socketio::SPEC,
        &switchboard::dialect::socketio::SPEC,
        &[],
    );
    let mut b = Bufs::default();
    client.on_backend(
        WsMsg::Text(Bytes::from_static(
            br#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )),
        now,
        &mut b.cout,
    );
    let events: Vec<BackendEvent> = b.cout.events.drain(..).collect();
    for ev in events {
        t.up_event(ev, &mut b.evs);
    }
    for ev in b.evs.drain(..) {
        server.on_backend(ev, now, &mut b.out);
    }
    down(
        &mut server,
        &mut t,
        &mut client,
        &Bytes::from_static(b"40"),
        &mut b,
    );
    up(
        &mut client,
        &mut t,
        &mut server,
        &Bytes::from_static(br#"40{"sid":"y"}"#),
        &mut b,
    );
    let emit = Bytes::from(format!(r#"42["message_created",{BODY}]"#));
    both_ways(
        [
            "socketio emit -> socketio emit",
            "socketio event -> socketio event",
        ],
        &mut server,
        &mut client,
        &mut t,
        (&emit, &emit),
    );
}

fn pusher_socketio() {
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
    let now = Instant::now();
    let mut server = PusherServer::new(settings, &hs, "1.2".into());
    server.on_start(now, &mut ServerOut::default());
    let mut client = opened_socketio();
    let mut t = translator(
        &switchboard::dialect::pusher::SPEC,
        &switchboard::dialect::socketio::SPEC,
        &[],
    );
    let sig = auth::sign(
        "key",
        "secret",
        &auth::channel_string("1.2", b"private-chat", None),
    )
    .unwrap();
    subscribe(
        &mut server,
        &mut t,
        &mut client,
        format!(
            r#"{{"event":"pusher:subscribe","data":{{"channel":"private-chat","auth":"{sig}"}}}}"#
        )
        .as_bytes(),
    );
    let client_event = Bytes::from(format!(
        r#"{{"event":"client-message","channel":"private-chat","data":{BODY}}}"#
    ));
    let packet = Bytes::from(format!(r#"42["private-chat",{BODY}]"#));
    both_ways(
        [
            "pusher client event -> socketio emit",
            "socketio event -> pusher event",
        ],
        &mut server,
        &mut client,
        &mut t,
        (&client_event, &packet),
    );
}

/// A SocketCluster client (protocol v2, as socketcluster-client 19 speaks) on a Socket.IO
/// backend: `#publish` on a subscribed channel down, the channel's event up.
fn socketcluster_socketio() {
    use switchboard::dialect::socketcluster::codec::Version;
    use switchboard::dialect::socketcluster::server::{self as sc_server, ScServer};
    let now = Instant::now();
    let hs = Handshake {
        path: "/socketcluster/".into(),
        ..Default::default()
    };
    let settings = sc_server::Settings {
        version: Version::V2,
        ..Default::default()
    };
    let mut server = ScServer::new(settings, &hs, "sock-1".into(), now);
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(
            br##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##,
        )),
        now,
        &mut out,
    );
    server.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
    let mut client = opened_socketio();
    let mut t = translator(
        &switchboard::dialect::socketcluster::SPEC,
        &switchboard::dialect::socketio::SPEC,
        &[],
    );
    subscribe(
        &mut server,
        &mut t,
        &mut client,
        br##"{"event":"#subscribe","data":{"channel":"message_created"},"cid":2}"##,
    );
    let publish = Bytes::from(format!(
        r##"{{"event":"#publish","data":{{"channel":"message_created","data":{BODY}}}}}"##
    ));
    let packet = Bytes::from(format!(r#"42["message_created",{BODY}]"#));
    both_ways(
        [
            "socketcluster #publish -> socketio emit",
            "socketio event -> socketcluster #publish",
        ],
        &mut server,
        &mut client,
        &mut t,
        (&publish, &packet),
    );
}

/// An Action Cable client (`@rails/actioncable`) on a Socket.IO backend: a channel action
/// (`perform`) down, a broadcast to the subscribed channel up.
fn actioncable_socketio() {
    use switchboard::dialect::actioncable::server::{self as cable_server, CableServer};
    let now = Instant::now();
    let hs = Handshake {
        path: "/cable".into(),
        subprotocol: Some("actioncable-v1-json"),
        ..Default::default()
    };
    let mut server = CableServer::new(cable_server::Settings::default(), &hs, 1_700_000_000, now);
    let mut out = ServerOut::default();
    server.on_start(now, &mut out);
    server.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
    let mut client = opened_socketio();
    let mut t = translator(
        &switchboard::dialect::actioncable::SPEC,
        &switchboard::dialect::socketio::SPEC,
        &[],
    );
    let identifier = r#"{\"channel\":\"ChatChannel\",\"room\":7}"#;
    subscribe(
        &mut server,
        &mut t,
        &mut client,
        format!(r#"{{"command":"subscribe","identifier":"{identifier}"}}"#).as_bytes(),
    );
    let body = BODY.replace('"', "\\\"");
    let action = body.replacen('{', r#"{\"action\":\"speak\","#, 1);
    let perform = Bytes::from(format!(
        r#"{{"command":"message","identifier":"{identifier}","data":"{action}"}}"#
    ));
    let packet = Bytes::from(format!(r#"42["ChatChannel",{BODY}]"#));
    both_ways(
        [
            "actioncable perform -> socketio emit",
            "socketio event -> actioncable broadcast",
        ],
        &mut server,
        &mut client,
        &mut t,
        (&perform, &packet),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter on nothing here.
    stomp_socketio();
    socketio_socketio();
    pusher_socketio();
    socketcluster_socketio();
    actioncable_socketio();
}
