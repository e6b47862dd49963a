//! Per-client limits (`[route.client_limits]`) from the outside, with the real client
//! libraries of `tests/peers` in front of one RabbitMQ (web-stomp) behind every route: each
//! limit tripped, the refusal as the client library reports it in its own dialect, the
//! refusals counted in `switchboard_limit_refusals_total{route, reason}`, and clients under the
//! limits carrying on.
//!
//! - @stomp/stompjs 7.5: `ERROR` then close 1013 for a connection over a connection limit
//!   (per address at once, per second per address, per second on the route), `ERROR` then
//!   close 1008 for messages over the message or byte rate, HTTP 403 for a foreign `Origin`.
//! - pusher-js 8.6: `pusher:error` 4301 for client messages over the rate (the connection
//!   stays), 4100 for one connection too many, HTTP 403 for a foreign `Origin`.
//! - socket.io-client 4.8: `connect_error` for one connection too many, `disconnect` ("io server
//!   disconnect") for emits over the rate.
//! - socketcluster-client 20: close 1013 before the handshake for one connection too many,
//!   close 1008 for emits over the rate.
//! - @rails/actioncable 8.1: `disconnect` frames (`too_many_connections`, reconnect; then
//!   `rate_limited`, no reconnect).
//!
//! One proxy serves every route (one per limit and dialect), so the scenarios run at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
/// Where the refused and the allowed page live.
const GOOD_ORIGIN: &str = "https://app.example";
const BAD_ORIGIN: &str = "https://evil.example";

/// RabbitMQ takes publishes on `/topic/` (the default is Spring's `/app/`, which it refuses
/// with an `ERROR` that would end the session for another reason than the one tested).
const TOPICS: &str = "[[route.map]]\nclient = \"{name}\"\nupstream = \"/topic/{name}\"\n";

/// One listener, one route per scenario, every upstream the broker.
fn config(proxy: u16, upstream: &str) -> String {
    let route = |name: &str, path: &str, client: &str, limits: &str, extra: &str| {
        format!(
            "\n[[route]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{proxy}\"\npath = \"{path}\"\n\
             client = \"{client}\"\n{extra}\n[route.client_limits]\n{limits}\n{upstream}\n{TOPICS}"
        )
    };
    let pusher = format!(
        "[route.pusher]\napp_key = \"{PUSHER_APP_KEY}\"\napp_secret = \"{PUSHER_APP_SECRET}\""
    );
    let routes = [
        route(
            "stomp-addr",
            "/addr",
            "stomp",
            "connections_per_address = 2",
            "",
        ),
        route(
            "stomp-addr-rate",
            "/addr-rate",
            "stomp",
            "connections_per_second_per_address = 1",
            "",
        ),
        route(
            "stomp-route-rate",
            "/route-rate",
            "stomp",
            "connections_per_second = 1",
            "",
        ),
        route(
            "stomp-msgs",
            "/msgs",
            "stomp",
            "messages_per_second = 5",
            "",
        ),
        route(
            "stomp-bytes",
            "/bytes",
            "stomp",
            "bytes_per_second = 6000",
            "",
        ),
        route(
            "stomp-origin",
            "/origin",
            "stomp",
            &format!("allowed_origins = [\"{GOOD_ORIGIN}\"]"),
            "",
        ),
        route(
            "stomp-pass",
            "/pass",
            "stomp",
            "connections_per_address = 1\nmessages_per_second = 5",
            "mode = \"passthrough\"",
        ),
        route(
            "pusher",
            "/app",
            "pusher",
            &format!(
                "messages_per_second = 5\nconnections_per_address = 2\nallowed_origins = [\"{GOOD_ORIGIN}\"]"
            ),
            &pusher,
        ),
        route(
            "sio",
            "/socket.io/",
            "socketio",
            "connections_per_address = 1\nmessages_per_second = 5",
            "[route.socketio]\nmax_payload = 8192",
        ),
        route(
            "sc",
            "/socketcluster/",
            "socketcluster",
            "connections_per_address = 1\nmessages_per_second = 5",
            "[route.socketcluster]\nprotocol_version = 2",
        ),
        route(
            "cable",
            "/cable",
            "actioncable",
            "connections_per_address = 1\nmessages_per_second = 5",
            "",
        ),
    ];
    format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[limits]\n# The byte rate's burst is one largest message when that is more than a second's worth.\nmax_message_size = 8192\n{}",
        routes.concat(),
        admin = free_port(),
    )
}

/// `switchboard_limit_refusals_total{route, reason}` (0 when never recorded).
async fn refusals(proxy: &Proxy, route: &str, reason: &str) -> f64 {
    let body = proxy.metrics().await;
    let (r, why) = (format!("route=\"{route}\""), format!("reason=\"{reason}\""));
    body.lines()
        .filter(|l| l.starts_with("switchboard_limit_refusals_total{"))
        .filter(|l| l.contains(&r) && l.contains(&why))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn stomp_cmd(c: &str, port: u16, path: &str) -> Value {
    json!({"op":"connect","c":c,"url":format!("ws://127.0.0.1:{port}{path}"),
        "headers":{"login":"guest","passcode":"guest"}})
}

/// A stomp.js client's first answer: `connected`, or the `ERROR` (whose close follows).
async fn stomp_answer(d: &mut Driver, c: &str) -> Value {
    d.expect(T, |v| {
        v["c"] == c && (v["ev"] == "connected" || v["ev"] == "error" || v["ev"] == "wserror")
    })
    .await
}

/// A refused stomp.js client: `ERROR` with `message`, then the close with `code`.
async fn stomp_refused(d: &mut Driver, c: &str, message: &str, code: u64) {
    let ev = stomp_answer(d, c).await;
    assert_eq!(ev["ev"], "error", "{c}: {ev}");
    assert_eq!(ev["headers"]["message"], message, "{ev}");
    let close = d.expect_ev(T, c, "close").await;
    assert_eq!(close["code"], code, "{close}");
    assert_eq!(close["reason"], message, "{close}");
}

/// A message `body` on `topic` reaches subscriber `c` (subscription `id`).
async fn stomp_hears(d: &mut Driver, c: &str, id: &str, body: &str) {
    let m = d
        .expect(T, |v| v["c"] == c && v["ev"] == "message" && v["sub"] == id)
        .await;
    assert_eq!(m["body"], body, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_answers_in_the_clients_dialect() {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let port = free_port();
    let proxy = Proxy::start(&config(port, &rabbit.upstream_toml())).await;
    let publisher = rabbit.publisher("pub").await;
    let publisher = tokio::sync::Mutex::new(publisher);
    let publish = |topic: &'static str, body: &'static str| {
        let publisher = &publisher;
        async move {
            let mut p = publisher.lock().await;
            let receipt = format!("{topic}-{body}");
            p.send(
                json!({"op":"send","c":"pub","destination":format!("/topic/{topic}"),
                "body":body,"headers":{"receipt":receipt}}),
            )
            .await;
            p.expect(T, |v| v["ev"] == "receipt" && v["id"] == receipt)
                .await;
        }
    };
    tokio::join!(
        stomp_connections(port),
        stomp_rates(port, &publish),
        stomp_origin(port),
        stomp_passthrough(port),
        pusher_limits(port, &publish),
        sio_limits(port),
        sc_limits(port),
        cable_limits(port),
    );

    let expect = [
        ("stomp-addr", "connections_per_address", 1.0),
        ("stomp-addr-rate", "connection_rate", 1.0),
        ("stomp-route-rate", "connection_rate", 1.0),
        ("stomp-msgs", "message_rate", 1.0),
        ("stomp-bytes", "byte_rate", 1.0),
        ("stomp-origin", "origin", 1.0),
        ("stomp-pass", "connections_per_address", 1.0),
        ("stomp-pass", "message_rate", 1.0),
        ("sio", "connections_per_address", 2.0),
        ("pusher", "message_rate", 1.0),
        ("pusher", "connections_per_address", 1.0),
        ("pusher", "origin", 1.0),
        ("sio", "connections_per_address", 1.0),
        ("sio", "message_rate", 1.0),
        ("sc", "connections_per_address", 1.0),
        ("sc", "message_rate", 1.0),
        ("cable", "connections_per_address", 1.0),
        ("cable", "message_rate", 1.0),
    ];
    for (route, reason, at_least) in expect {
        let n = refusals(&proxy, route, reason).await;
        assert!(
            n >= at_least,
            "{route}/{reason}: {n} refusals counted, expected at least {at_least}:\n{}",
            proxy.metrics().await
        );
    }
    // Origins: exactly the two foreign upgrades; a route without limits refuses nothing.
    assert_eq!(refusals(&proxy, "stomp-origin", "origin").await, 1.0);
    assert_eq!(refusals(&proxy, "stomp-msgs", "connection_rate").await, 0.0);
}

/// Two sessions from 127.0.0.1 on `/addr`, the third refused; another address gets in; a
/// freed slot is taken again. One new session a second per address on `/addr-rate`, and one
/// a second in all on `/route-rate`, whatever the address.
async fn stomp_connections(port: u16) {
    let mut d = Driver::stomp().await;
    for c in ["a1", "a2"] {
        d.send(stomp_cmd(c, port, "/addr")).await;
        d.expect_ev(T, c, "connected").await;
    }
    d.send(stomp_cmd("a3", port, "/addr")).await;
    stomp_refused(&mut d, "a3", "too many connections from this address", 1013).await;
    let mut other = stomp_cmd("b1", port, "/addr");
    other["localAddress"] = json!("127.0.0.2");
    d.send(other).await;
    d.expect_ev(T, "b1", "connected").await;
    // The first two carry on; once one leaves, its slot is free again.
    d.send(json!({"op":"disconnect","c":"a1"})).await;
    d.expect_ev(T, "a1", "close").await;
    let mut admitted = false;
    for i in 0..20 {
        let c = format!("a4-{i}");
        d.send(stomp_cmd(&c, port, "/addr")).await;
        if stomp_answer(&mut d, &c).await["ev"] == "connected" {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(admitted, "a freed slot was not given back");

    // Per address: two at once from 127.0.0.1, one of them refused; 127.0.0.2 gets in.
    d.send(stomp_cmd("r1", port, "/addr-rate")).await;
    d.send(stomp_cmd("r2", port, "/addr-rate")).await;
    let mut other = stomp_cmd("r3", port, "/addr-rate");
    other["localAddress"] = json!("127.0.0.2");
    d.send(other).await;
    let answers = [
        stomp_answer(&mut d, "r1").await,
        stomp_answer(&mut d, "r2").await,
    ];
    let refused: Vec<_> = answers.iter().filter(|v| v["ev"] == "error").collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(
        refused[0]["headers"]["message"],
        "too many new connections, try again later"
    );
    d.expect_ev(T, "r3", "connected").await;

    // Per route: the other address is refused too.
    d.send(stomp_cmd("q1", port, "/route-rate")).await;
    d.expect_ev(T, "q1", "connected").await;
    let mut other = stomp_cmd("q2", port, "/route-rate");
    other["localAddress"] = json!("127.0.0.2");
    d.send(other).await;
    d.send(stomp_cmd("q3", port, "/route-rate")).await;
    let answers = [
        stomp_answer(&mut d, "q2").await,
        stomp_answer(&mut d, "q3").await,
    ];
    // q1's `connected` may take the broker most of a second: at least one of the two came
    // within the same second as q1, and both within a second of each other.
    let refused = answers.iter().filter(|v| v["ev"] == "error").count();
    assert!(refused >= 1, "{answers:?}");
}

/// `/msgs`: a client sending faster than 5 messages a second gets `ERROR` and close 1008,
/// while one under it goes on hearing and publishing. `/bytes`: the same for bytes.
async fn stomp_rates<F, Fut>(port: u16, publish: &F)
where
    F: Fn(&'static str, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut d = Driver::stomp().await;
    for c in ["calm", "flood"] {
        d.send(stomp_cmd(c, port, "/msgs")).await;
        d.expect_ev(T, c, "connected").await;
        d.send(
            json!({"op":"subscribe","c":c,"id":"s","destination":"/topic/msgs",
            "headers":{"receipt":format!("{c}-sub")}}),
        )
        .await;
        d.expect(T, |v| v["c"] == c && v["ev"] == "receipt").await;
    }
    // CONNECT and SUBSCRIBE used two of the five; twenty more cannot pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..20 {
        d.send(json!({"op":"send","c":"flood","destination":"/topic/flood","body":format!("{i}")}))
            .await;
    }
    stomp_refused(&mut d, "flood", "message rate limit exceeded", 1008).await;
    // The calm client publishes (twice, well within its rate) and hears the broker.
    for body in ["one", "two"] {
        d.send(json!({"op":"send","c":"calm","destination":"/topic/msgs","body":body}))
            .await;
        stomp_hears(&mut d, "calm", "s", body).await;
    }
    publish("msgs", "from-broker").await;
    stomp_hears(&mut d, "calm", "s", "from-broker").await;

    // Bytes: a second's worth is 6000, the burst one largest message (8192). Two 3000-byte
    // messages pass, the next ones do not.
    d.send(stomp_cmd("heavy", port, "/bytes")).await;
    d.expect_ev(T, "heavy", "connected").await;
    let body = "x".repeat(3000);
    for _ in 0..4 {
        d.send(json!({"op":"send","c":"heavy","destination":"/topic/bytes","body":body}))
            .await;
    }
    stomp_refused(&mut d, "heavy", "byte rate limit exceeded", 1008).await;
}

/// `/origin` allows one page: another is refused at the upgrade with 403 (stomp.js sees the
/// WebSocket fail); the allowed page, and a client sending no `Origin`, connect.
async fn stomp_origin(port: u16) {
    let mut d = Driver::stomp().await;
    let mut bad = stomp_cmd("evil", port, "/origin");
    bad["wsHeaders"] = json!({"Origin": BAD_ORIGIN});
    d.send(bad).await;
    let ev = stomp_answer(&mut d, "evil").await;
    assert_eq!(ev["ev"], "wserror", "{ev}");
    assert!(ev["message"].as_str().unwrap().contains("403"), "{ev}");
    let mut good = stomp_cmd("good", port, "/origin");
    good["wsHeaders"] = json!({"Origin": GOOD_ORIGIN});
    d.send(good).await;
    d.expect_ev(T, "good", "connected").await;
    d.send(stomp_cmd("native", port, "/origin")).await;
    d.expect_ev(T, "native", "connected").await;
}

/// A passthrough route has no role to word a refusal: stomp.js sees the plain close codes,
/// 1013 for one connection too many, 1008 for messages over the rate.
async fn stomp_passthrough(port: u16) {
    let mut d = Driver::stomp().await;
    let mut cmd = stomp_cmd("p1", port, "/pass");
    cmd["headers"]["host"] = json!("/");
    d.send(cmd.clone()).await;
    d.expect_ev(T, "p1", "connected").await;
    cmd["c"] = json!("p2");
    d.send(cmd).await;
    let close = d.expect_ev(T, "p2", "close").await;
    assert_eq!(close["code"], 1013, "{close}");
    assert_eq!(close["reason"], "too many connections from this address");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..20 {
        d.send(json!({"op":"send","c":"p1","destination":"/topic/pass","body":format!("{i}")}))
            .await;
    }
    let close = d.expect_ev(T, "p1", "close").await;
    assert_eq!(close["code"], 1008, "{close}");
    assert_eq!(close["reason"], "message rate limit exceeded");
}

/// pusher-js: client messages over 5 a second get `pusher:error` 4301 and are dropped, and the
/// connection stays (it still hears the broker); a third connection from the address gets
/// 4100; a foreign page's upgrade is refused with 403.
async fn pusher_limits<F, Fut>(port: u16, publish: &F)
where
    F: Fn(&'static str, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut p = Driver::pusher().await;
    for c in ["pa", "pb"] {
        let mut cmd = pusher_connect_cmd(c, port);
        cmd["headers"] = json!({"Origin": GOOD_ORIGIN});
        p.send(cmd).await;
        pusher_connected(&mut p, c).await;
        p.send(json!({"op":"subscribe","c":c,"channel":"news"}))
            .await;
        assert_eq!(
            pusher_subscribed(&mut p, c, "news").await["ev"],
            "subscription_succeeded"
        );
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..20 {
        // Pings: the five that pass get their pong, the rest are refused.
        p.send(json!({"op":"send_event","c":"pa","event":"pusher:ping","data":{"n":i}}))
            .await;
    }
    let err = p
        .expect(T, |v| {
            v["c"] == "pa" && v["ev"] == "conn_event" && v["event"] == "pusher:error"
        })
        .await;
    assert_eq!(err["data"]["code"], 4301, "{err}");
    let pongs = p
        .backlog()
        .iter()
        .filter(|v| v["c"] == "pa" && v["ev"] == "conn_event" && v["event"] == "pusher:pong")
        .count();
    assert!(pongs <= 6, "{pongs} pings answered at 5 a second");
    assert_eq!(
        err["data"]["message"], "message rate limit exceeded",
        "{err}"
    );
    // Still connected: both hear what the broker publishes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    publish("news", "after-burst").await;
    for c in ["pa", "pb"] {
        let ev = p
            .expect(T, |v| {
                v["c"] == c && v["ev"] == "event" && v["channel"] == "news"
            })
            .await;
        assert_eq!(ev["data"], "after-burst", "{ev}");
    }
    let closed = p
        .backlog()
        .iter()
        .any(|v| v["c"] == "pa" && v["ev"] == "close");
    assert!(!closed, "a rate refusal closed the Pusher connection");

    // A third connection from 127.0.0.1: 4100, over capacity (pusher-js backs off).
    p.send(pusher_connect_cmd("pc", port)).await;
    let err = p
        .expect(T, |v| {
            v["c"] == "pc" && v["ev"] == "conn_event" && v["event"] == "pusher:error"
        })
        .await;
    assert_eq!(err["data"]["code"], 4100, "{err}");
    assert_eq!(
        err["data"]["message"], "too many connections from this address",
        "{err}"
    );
    let close = p.expect_ev(T, "pc", "close").await;
    assert_eq!(close["code"], 4100, "{close}");
    p.send(json!({"op":"disconnect","c":"pc"})).await;

    // A foreign page: refused before anything else is counted.
    let mut evil = pusher_connect_cmd("pe", port);
    evil["headers"] = json!({"Origin": BAD_ORIGIN});
    p.send(evil).await;
    let ev = p
        .expect(T, |v| {
            v["c"] == "pe"
                && (v["ev"] == "close" || v["ev"] == "state" && v["current"] == "connected")
        })
        .await;
    assert_eq!(ev["ev"], "close", "{ev}");
    assert!(ev["reason"].as_str().unwrap().contains("403"), "{ev}");
    p.send(json!({"op":"disconnect","c":"pe"})).await;
}

/// socket.io-client: one connection per address, so a second one hears `connect_error` with
/// the reason; emits over 5 a second end the first with "io server disconnect".
async fn sio_limits(port: u16) {
    let mut d = Driver::sio().await;
    let cmd = |c: &str| {
        json!({"op":"connect","c":c,"url":format!("http://127.0.0.1:{port}"),
            "transports":["websocket"],"reconnection":false})
    };
    d.send(cmd("io1")).await;
    d.expect_ev(T, "io1", "connect").await;
    d.send(cmd("io2")).await;
    let err = d.expect_ev(T, "io2", "connect_error").await;
    assert_eq!(
        err["message"], "too many connections from this address",
        "{err}"
    );
    // Long-polling too: the `open` answers the handshake, the refusal the next GET.
    d.send(
        json!({"op":"connect","c":"io3","url":format!("http://127.0.0.1:{port}"),
        "reconnection":false}),
    )
    .await;
    let err = d.expect_ev(T, "io3", "connect_error").await;
    assert_eq!(
        err["message"], "too many connections from this address",
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..20 {
        d.send(json!({"op":"emit","c":"io1","event":"chatter","args":[i]}))
            .await;
    }
    let ev = d.expect_ev(T, "io1", "disconnect").await;
    assert_eq!(ev["reason"], "io server disconnect", "{ev}");
}

/// socketcluster-client 20: one connection per address, so a second one is closed with 1013
/// before its handshake is answered; transmits over 5 a second close the first with 1008.
async fn sc_limits(port: u16) {
    let mut d = Driver::sc().await;
    d.send(sc_connect_cmd("sc1", port, 20, 2)).await;
    sc_connected(&mut d, "sc1").await;
    d.send(sc_connect_cmd("sc2", port, 20, 2)).await;
    let ev = d.expect_ev(T, "sc2", "connectAbort").await;
    assert_eq!(ev["code"], 1013, "{ev}");
    assert_eq!(
        ev["reason"], "too many connections from this address",
        "{ev}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..20 {
        d.send(json!({"op":"emit","c":"sc1","event":"chatter","data":{"n":i}}))
            .await;
    }
    let ev = d.expect_ev(T, "sc1", "disconnect").await;
    assert_eq!(ev["code"], 1008, "{ev}");
    assert_eq!(ev["reason"], "message rate limit exceeded", "{ev}");
}

/// @rails/actioncable: one connection per address, so a second one gets `disconnect`
/// `too_many_connections` (reconnect later); frames over 5 a second end the first with
/// `rate_limited` and no reconnect.
async fn cable_limits(port: u16) {
    let mut d = Driver::cable().await;
    let url = format!("ws://127.0.0.1:{port}/cable");
    d.send(json!({"op":"connect","c":"ac1","url":url})).await;
    d.expect_ev(T, "ac1", "connected").await;
    d.send(json!({"op":"connect","c":"ac2","url":url})).await;
    let ev = d.expect_ev(T, "ac2", "disconnected").await;
    assert_eq!(ev["reason"], "too_many_connections", "{ev}");
    assert_eq!(ev["reconnect"], true, "{ev}");
    assert_eq!(ev["code"], 1013, "{ev}");
    d.send(json!({"op":"disconnect","c":"ac2"})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..20 {
        d.send(json!({"op":"raw_send","c":"ac1",
            "data":{"command":"message"}}))
            .await;
    }
    let ev = d.expect_ev(T, "ac1", "disconnected").await;
    assert_eq!(ev["reason"], "rate_limited", "{ev}");
    assert_eq!(ev["reconnect"], false, "{ev}");
    assert_eq!(ev["code"], 1008, "{ev}");
}

/// `switchboard check` on the shipped config with one `[route.client_limits]` value broken:
/// the key, its line and why.
#[test]
fn check_names_a_bad_client_limit_with_its_line() {
    let shipped = std::fs::read_to_string(repo_dir().join("config.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let origins = "allowed_origins = []";
    // The one in [route.client_limits] (the Action Cable role has its own).
    let table = shipped.find("[route.client_limits]").unwrap();
    let at = table + shipped[table..].find(origins).unwrap();
    let cases = [
        (
            at,
            origins,
            "allowed_origins = [\"https://app.example/login\"]",
            "route.0.client_limits.allowed_origins",
            "not an origin",
        ),
        (
            shipped.find("tracked_addresses = 65536").unwrap(),
            "tracked_addresses = 65536",
            "tracked_addresses = 0",
            "route.0.client_limits.tracked_addresses",
            "at least 1",
        ),
        (
            shipped.find("messages_per_second = 0").unwrap(),
            "messages_per_second = 0",
            "messages_per_second = -5",
            "route.0.client_limits.messages_per_second",
            "invalid value",
        ),
    ];
    for (at, from, to, key, why) in cases {
        let text = format!("{}{to}{}", &shipped[..at], &shipped[at + from.len()..]);
        let line = text[..at].lines().count() + 1;
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, &text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("check")
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("key `{key}` (line {line})")),
            "{key}: {err}"
        );
        assert!(err.contains(why), "{key}: {err}");
    }
}

/// Engine.IO long-polling handshakes refused by the address limit give their connection slot
/// back at once: only what lingers for the client's next poll (the refusal's answer) stays.
/// Before, each refused session held a slot for its linger, and one client's handshakes
/// took every slot of `max_connections` (503 for everyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_long_polling_sessions_hold_no_connection_slot() {
    let port = free_port();
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\n[limits]\nmax_connections = 6\n{}",
        free_port(),
        hub_routes(
            port,
            &["socketio"],
            "[route.client_limits]\nconnections_per_address = 1\n"
        )
    );
    let proxy = Proxy::start(&cfg).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for i in 0..20 {
        let (status, body) = http_get(addr, "/socket.io/?EIO=4&transport=polling")
            .await
            .unwrap();
        assert_eq!(status, 200, "handshake {i}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refusals(&proxy, "socketio", "connections_per_address").await >= 19.0);
}
