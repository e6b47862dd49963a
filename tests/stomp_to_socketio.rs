//! STOMP clients (`@stomp/stompjs` 7.5 over `ws`) → Switchboard → a `socket.io` 4.8 backend
//! with a JWT-checking middleware: the health-records vendor's flows, auth, receipts,
//! heartbeats on both legs, backend death, fan-out to 100 clients, bad input, metrics and
//! the drain on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "test-secret";

struct Setup {
    proxy: Proxy,
    backend: Child,
    backend_port: u16,
    url: String,
}

fn config(
    backend_port: u16,
    proxy_port: u16,
    admin_port: u16,
    extra: &str,
    upstream_extra: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin_port}"

[shutdown]
grace_period_ms = 3000

[[route]]
name = "chat"
listen = "127.0.0.1:{proxy_port}"
path = "/ws"
client = "stomp"
{extra}

[route.upstream]
url = "ws://127.0.0.1:{backend_port}/socket.io/"
dialect = "socketio"
{upstream_extra}
"#
    )
}

async fn setup_with(backend_args: &[&str], extra: &str, upstream_extra: &str) -> Setup {
    ensure_npm();
    let (backend, backend_port) = start_sio_backend(backend_args);
    let proxy_port = free_port();
    let cfg = config(backend_port, proxy_port, free_port(), extra, upstream_extra);
    let proxy = Proxy::start(&cfg).await;
    Setup {
        proxy,
        backend,
        backend_port,
        url: format!("ws://127.0.0.1:{proxy_port}/ws"),
    }
}

async fn setup() -> Setup {
    setup_with(&[], "", "").await
}

async fn connect(d: &mut Driver, c: &str, url: &str, sub: &str) -> Value {
    d.send(json!({
        "op": "connect", "c": c, "url": url,
        "wsHeaders": { "Authorization": format!("Bearer {}", jwt(sub, SECRET)) },
    }))
    .await;
    d.expect_ev(T, c, "connected").await
}

async fn subscribe(d: &mut Driver, c: &str, id: &str, dest: &str) {
    let receipt = format!("r-{c}-{id}");
    d.send(
        json!({"op":"subscribe","c":c,"id":id,"destination":dest,"headers":{"receipt":receipt}}),
    )
    .await;
    d.expect(T, |v| {
        v["c"] == c && v["ev"] == "receipt" && v["id"] == receipt.as_str()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_flows_deliver_and_emit_with_receipts() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    let connected = connect(&mut d, "a", &s.url, "ann").await;
    assert_eq!(connected["headers"]["version"], "1.2");
    assert_eq!(connected["protocol"], "v12.stomp");
    assert!(
        connected["headers"]["server"]
            .as_str()
            .unwrap()
            .starts_with("switchboard/")
    );
    for ev in ["message_created", "message_updated", "message_deleted"] {
        subscribe(&mut d, "a", ev, &format!("/topic/{ev}")).await;
    }
    for (i, ev) in ["message_created", "message_updated", "message_deleted"]
        .iter()
        .enumerate()
    {
        let body = json!({"id": i, "thread": "t-1", "text": format!("hello {i}")}).to_string();
        let receipt = format!("send-{i}");
        d.send(
            json!({"op":"send","c":"a","destination":format!("/app/{ev}"),"body":body,
            "headers":{"content-type":"application/json","receipt":receipt}}),
        )
        .await;
        d.expect(T, |v| v["ev"] == "receipt" && v["id"] == receipt.as_str())
            .await;
        // The backend re-emits to every socket, the sender included.
        let m = d
            .expect(T, |v| v["ev"] == "message" && v["sub"] == *ev)
            .await;
        assert_eq!(m["body"], body.as_str());
        assert_eq!(m["destination"], format!("/topic/{ev}"));
        assert_eq!(m["headers"]["content-type"], "application/json");
        assert_eq!(m["headers"]["subscription"], *ev);
    }
    // The backend saw the events as emitted by user `ann` (the token reached auth.token).
    let received = sio_control_received(s.backend_port).await;
    let events: Vec<(&str, &str)> = received
        .iter()
        .map(|r| (r["sub"].as_str().unwrap(), r["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        vec![
            ("ann", "message_created"),
            ("ann", "message_updated"),
            ("ann", "message_deleted")
        ]
    );
    assert_eq!(received[0]["args"][0]["text"], "hello 0");

    // A backend-originated event reaches only subscribers of that event.
    sio_control_emit(
        s.backend_port,
        "message_updated",
        json!([{"id": 99}]),
        Some("ann"),
    )
    .await;
    let m = d.expect(T, |v| v["ev"] == "message").await;
    assert_eq!(m["sub"], "message_updated");
    assert_eq!(m["body"], r#"{"id":99}"#);
    sio_control_emit(s.backend_port, "not_subscribed", json!([1]), Some("ann")).await;
    d.send(json!({"op":"disconnect","c":"a","headers":{"receipt":"bye"}}))
        .await;
    d.expect_ev(T, "a", "disconnected").await;
    let stray = d.collect(Duration::from_millis(300)).await;
    assert!(
        stray.iter().all(|v| v["ev"] != "message"),
        "unexpected delivery: {stray:?}"
    );
    drop(s.backend);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_connect_headers_and_wrong_token_gets_error() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    // STOMP CONNECT `Authorization` header.
    d.send(json!({"op":"connect","c":"h","url":s.url,"headers":{"Authorization":format!("Bearer {}", jwt("hal", SECRET))}})).await;
    d.expect_ev(T, "h", "connected").await;
    // STOMP CONNECT `passcode`.
    d.send(json!({"op":"connect","c":"p","url":s.url,"headers":{"passcode":jwt("pia", SECRET)}}))
        .await;
    d.expect_ev(T, "p", "connected").await;
    for c in ["h", "p"] {
        d.send(json!({"op":"send","c":c,"destination":"/app/ping","body":"{}","headers":{"content-type":"application/json","receipt":format!("{c}-1")}})).await;
        d.expect(T, |v| v["c"] == c && v["ev"] == "receipt").await;
    }
    let mut subs: Vec<String> = sio_control_received(s.backend_port)
        .await
        .iter()
        .map(|r| r["sub"].as_str().unwrap().to_owned())
        .collect();
    // A receipt says the SEND was written upstream, not that the backend read it: two
    // connections' messages reach it in either order.
    subs.sort();
    assert_eq!(subs, vec!["hal", "pia"]);

    // A token signed with another secret: the backend's CONNECT_ERROR message as STOMP ERROR.
    d.send(json!({"op":"connect","c":"bad","url":s.url,"wsHeaders":{"Authorization":format!("Bearer {}", jwt("eve", "wrong"))}})).await;
    let e = d.expect_ev(T, "bad", "error").await;
    assert_eq!(e["headers"]["message"], "invalid token");
    d.expect_ev(T, "bad", "close").await;
    // No token at all is refused the same way.
    d.send(json!({"op":"connect","c":"none","url":s.url})).await;
    let e = d.expect_ev(T, "none", "error").await;
    assert_eq!(e["headers"]["message"], "invalid token");
    assert!(s.proxy.metric("switchboard_sessions_total").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_wait_for_backend_acks_when_the_route_asks() {
    let s = setup_with(&[], "", "acks = true\nack_timeout_ms = 2000").await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "a", &s.url, "ann").await;
    d.send(
        json!({"op":"send","c":"a","destination":"/app/message_created","body":"{\"id\":1}",
        "headers":{"content-type":"application/json","receipt":"r1"}}),
    )
    .await;
    d.expect(T, |v| v["ev"] == "receipt" && v["id"] == "r1")
        .await;
    // The backend acked with {ok:true}: it must have seen the event before the receipt.
    assert_eq!(sio_control_received(s.backend_port).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_on_both_legs_keep_an_idle_session_alive() {
    let s = setup_with(
        &["--ping-interval", "200", "--ping-timeout", "300"],
        "[route.stomp]\nheartbeat_ms = [200, 200]",
        "",
    )
    .await;
    let mut d = Driver::stomp().await;
    d.send(
        json!({"op":"connect","c":"a","url":s.url,"heartbeatIncoming":200,"heartbeatOutgoing":200,
        "wsHeaders":{"Authorization":format!("Bearer {}", jwt("ann", SECRET))}}),
    )
    .await;
    let c = d.expect_ev(T, "a", "connected").await;
    assert_eq!(c["headers"]["heart-beat"], "200,200");
    subscribe(&mut d, "a", "s", "/topic/message_created").await;
    // Idle for many intervals of both legs: Engine.IO pings answered upstream, STOMP EOLs
    // both ways downstream.
    let idle = d.collect(Duration::from_secs(3)).await;
    assert!(
        idle.iter()
            .all(|v| v["ev"] != "close" && v["ev"] != "error"),
        "{idle:?}"
    );
    sio_control_emit(
        s.backend_port,
        "message_created",
        json!([{"after":"idle"}]),
        None,
    )
    .await;
    let m = d.expect(T, |v| v["ev"] == "message").await;
    assert_eq!(m["body"], r#"{"after":"idle"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_disconnected() {
    let s = setup_with(&[], "[route.stomp]\nheartbeat_ms = [0, 100]", "").await;
    let mut d = Driver::stomp().await;
    let token = jwt("ann", SECRET);
    // Promises a heart-beat every 100 ms, then sends nothing.
    d.send(json!({"op":"raw","c":"r","url":s.url,"protocols":["v12.stomp"],
        "frames":[format!("CONNECT\naccept-version:1.2\nheart-beat:100,0\nAuthorization:Bearer {token}\n\n\u{0}")]}))
    .await;
    let connected = d
        .expect(T, |v| {
            v["ev"] == "raw"
                && v["data"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("CONNECTED"))
        })
        .await;
    assert!(
        connected["data"]
            .as_str()
            .unwrap()
            .contains("heart-beat:0,100")
    );
    let started = Instant::now();
    let err = d
        .expect(T, |v| {
            v["ev"] == "raw" && v["data"].as_str().is_some_and(|s| s.starts_with("ERROR"))
        })
        .await;
    assert!(
        err["data"]
            .as_str()
            .unwrap()
            .contains("message:heart-beat timeout")
    );
    d.expect_ev(T, "r", "close").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_mid_session_gets_clients_an_error_within_a_second() {
    let mut s = setup().await;
    let mut d = Driver::stomp().await;
    for c in ["a", "b"] {
        connect(&mut d, c, &s.url, c).await;
        subscribe(&mut d, c, "s", "/topic/message_created").await;
    }
    let t0 = Instant::now();
    s.backend.kill();
    for c in ["a", "b"] {
        let e = d.expect_ev(Duration::from_secs(2), c, "error").await;
        assert!(
            e["headers"]["message"]
                .as_str()
                .unwrap()
                .starts_with("upstream unavailable"),
            "{e}"
        );
        d.expect_ev(Duration::from_secs(2), c, "close").await;
    }
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "clients told after {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backend_means_error_then_close_not_a_hang() {
    ensure_npm();
    let dead = free_port();
    let port = free_port();
    let proxy = Proxy::start(&config(
        dead,
        port,
        free_port(),
        "",
        "connect_timeout_ms = 1000",
    ))
    .await;
    let mut d = Driver::stomp().await;
    d.send(json!({"op":"connect","c":"a","url":format!("ws://127.0.0.1:{port}/ws")}))
        .await;
    let e = d.expect_ev(Duration::from_secs(3), "a", "error").await;
    assert!(
        e["headers"]["message"]
            .as_str()
            .unwrap()
            .starts_with("upstream unavailable"),
        "{e}"
    );
    d.expect_ev(Duration::from_secs(3), "a", "close").await;
    let failures = proxy
        .metric("switchboard_upstream_connect_failures_total")
        .await;
    assert_eq!(failures, Some(1.0));
    let (status, _) = http_get(proxy.admin_addr(), "/healthz").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_each_receive_exactly_their_messages() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    const N: usize = 100;
    for i in 0..N {
        d.send(json!({"op":"connect","c":format!("c{i}"),"url":s.url,
            "wsHeaders":{"Authorization":format!("Bearer {}", jwt(&format!("u{i}"), SECRET))}}))
            .await;
    }
    for i in 0..N {
        d.expect_ev(Duration::from_secs(30), &format!("c{i}"), "connected")
            .await;
    }
    for i in 0..N {
        let c = format!("c{i}");
        d.send(json!({"op":"subscribe","c":c,"id":"s","destination":"/topic/message_created","headers":{"receipt":format!("{c}-sub")}})).await;
    }
    for i in 0..N {
        let r = format!("c{i}-sub");
        d.expect(Duration::from_secs(30), |v| {
            v["ev"] == "receipt" && v["id"] == r.as_str()
        })
        .await;
    }
    for round in 0..3 {
        for i in 0..N {
            sio_control_emit(
                s.backend_port,
                "message_created",
                json!([{"to": format!("u{i}"), "n": round}]),
                Some(&format!("u{i}")),
            )
            .await;
        }
    }
    let mut got = vec![Vec::new(); N];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut total = 0;
    while total < 3 * N && Instant::now() < deadline {
        let v = d
            .expect(Duration::from_secs(30), |v| v["ev"] == "message")
            .await;
        let i: usize = v["c"].as_str().unwrap()[1..].parse().unwrap();
        let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        got[i].push(body);
        total += 1;
    }
    let extra = d.collect(Duration::from_millis(500)).await;
    assert!(
        extra.iter().all(|v| v["ev"] != "message"),
        "extra deliveries: {extra:?}"
    );
    for (i, msgs) in got.iter().enumerate() {
        let want: Vec<Value> = (0..3)
            .map(|n| json!({"to": format!("u{i}"), "n": n}))
            .collect();
        assert_eq!(msgs, &want, "client c{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_errors_and_do_not_disturb_others() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "good", &s.url, "ann").await;
    subscribe(&mut d, "good", "s", "/topic/message_created").await;
    let token = jwt("bob", SECRET);
    let cases: &[(&str, Vec<String>, &str)] = &[
        ("nocmd", vec!["BOGUS\n\n\u{0}".into()], "message:"),
        (
            "before",
            vec!["SEND\ndestination:/app/x\n\nhi\u{0}".into()],
            "message:expected CONNECT",
        ),
        (
            "version",
            vec!["CONNECT\naccept-version:9.9\n\n\u{0}".into()],
            "version:1.0,1.1,1.2",
        ),
        (
            "escape",
            vec![
                format!("CONNECT\naccept-version:1.2\nAuthorization:Bearer {token}\n\n\u{0}"),
                "SEND\ndestination:/app/a\\tb\n\nx\u{0}".into(),
            ],
            "message:",
        ),
        (
            "json",
            vec![
                format!("CONNECT\naccept-version:1.2\nAuthorization:Bearer {token}\n\n\u{0}"),
                "SEND\ndestination:/app/x\ncontent-type:application/json\n\n{oops\u{0}".into(),
            ],
            "message:invalid JSON body",
        ),
        (
            "noroute",
            vec![
                format!("CONNECT\naccept-version:1.2\nAuthorization:Bearer {token}\n\n\u{0}"),
                "SUBSCRIBE\nid:0\ndestination:/queue/nowhere\nreceipt:r\n\n\u{0}".into(),
            ],
            "message:subscription refused\\c no route for destination /queue/nowhere",
        ),
        (
            "huge",
            vec![
                format!("CONNECT\naccept-version:1.2\nAuthorization:Bearer {token}\n\n\u{0}"),
                "SEND\ndestination:/app/x\ncontent-length:999999999\n\n".into(),
            ],
            "message:",
        ),
    ];
    for (c, frames, want) in cases {
        d.send(json!({"op":"raw","c":c,"url":s.url,"protocols":["v12.stomp"],"frames":frames}))
            .await;
        let err = d
            .expect(T, |v| {
                v["c"] == *c
                    && v["ev"] == "raw"
                    && v["data"].as_str().is_some_and(|s| s.starts_with("ERROR"))
            })
            .await;
        assert!(err["data"].as_str().unwrap().contains(want), "{c}: {err}");
        d.expect_ev(T, c, "close").await;
    }
    // The well-behaved client is unaffected.
    sio_control_emit(
        s.backend_port,
        "message_created",
        json!([{"still":"here"}]),
        Some("ann"),
    )
    .await;
    let m = d
        .expect(T, |v| v["c"] == "good" && v["ev"] == "message")
        .await;
    assert_eq!(m["body"], r#"{"still":"here"}"#);
    assert!(
        s.proxy
            .metric("switchboard_translation_errors_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_map_conversation_topics_both_ways() {
    let extra = r#"
[[route.map]]
client = "/v1/topic/conversation/{id}"
upstream = "conversation:{id}"

[[route.map]]
client = "/v1/app/conversation/{id}/typing/{what}"
upstream = "typing"
upstream_args = ["{id}", "{what}"]

[[route.map]]
client = "/v1/topic/online-employees"
upstream = "presence_event"
upstream_args = ["online-employees"]
"#;
    let s = setup_with(&[], extra, "").await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "a", &s.url, "ann").await;
    subscribe(&mut d, "a", "c1", "/v1/topic/conversation/28ccd489").await;
    subscribe(&mut d, "a", "oe", "/v1/topic/online-employees").await;
    sio_control_emit(
        s.backend_port,
        "conversation:28ccd489",
        json!([{"message":{"message":"Hello"}}]),
        None,
    )
    .await;
    sio_control_emit(
        s.backend_port,
        "conversation:other",
        json!([{"message":{"message":"no"}}]),
        None,
    )
    .await;
    sio_control_emit(
        s.backend_port,
        "presence_event",
        json!(["online-employees", {"online": 42}]),
        None,
    )
    .await;
    let m = d
        .expect(T, |v| v["ev"] == "message" && v["sub"] == "c1")
        .await;
    assert_eq!(m["destination"], "/v1/topic/conversation/28ccd489");
    assert_eq!(m["body"], r#"{"message":{"message":"Hello"}}"#);
    let m = d
        .expect(T, |v| v["ev"] == "message" && v["sub"] == "oe")
        .await;
    assert_eq!(m["body"], r#"{"online":42}"#);
    d.send(json!({"op":"send","c":"a","destination":"/v1/app/conversation/6b92/typing/start","body":"","headers":{"receipt":"t"}})).await;
    d.expect(T, |v| v["ev"] == "receipt" && v["id"] == "t")
        .await;
    let received = sio_control_received(s.backend_port).await;
    assert_eq!(received[0]["event"], "typing");
    assert_eq!(received[0]["args"], json!(["6b92", "start", ""]));
    let extra = d.collect(Duration::from_millis(300)).await;
    assert!(extra.iter().all(|v| v["ev"] != "message"), "{extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_round_trip_as_socketio_attachments() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "a", &s.url, "ann").await;
    d.send(json!({"op":"subscribe","c":"a","id":"e","destination":"/topic/echo","binary":true,"headers":{"receipt":"r"}})).await;
    d.expect(T, |v| v["ev"] == "receipt").await;
    let bytes = [0u8, 1, 2, 255, 254, 0, 10];
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    d.send(
        json!({"op":"send","c":"a","destination":"/app/echo","binaryBodyBase64":b64,
        "headers":{"content-type":"application/octet-stream"}}),
    )
    .await;
    let m = d.expect(T, |v| v["ev"] == "message").await;
    assert_eq!(m["binaryBase64"], b64.as_str());
    assert_eq!(m["headers"]["content-type"], "application/octet-stream");
    let received = sio_control_received(s.backend_port).await;
    assert_eq!(received[0]["args"][0]["$bin"], b64.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_1_0_and_1_1_clients_are_served() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    for (c, v, proto) in [("v10", "1.0", "v10.stomp"), ("v11", "1.1", "v11.stomp")] {
        d.send(
            json!({"op":"connect","c":c,"url":s.url,"versions":[v],"protocols":[proto],
            "wsHeaders":{"Authorization":format!("Bearer {}", jwt(c, SECRET))}}),
        )
        .await;
        let con = d.expect_ev(T, c, "connected").await;
        assert_eq!(con["headers"]["version"], v);
        assert_eq!(con["protocol"], proto);
        subscribe(&mut d, c, "s", "/topic/message_created").await;
    }
    sio_control_emit(
        s.backend_port,
        "message_created",
        json!([{"k":"a:b"}]),
        None,
    )
    .await;
    for c in ["v10", "v11"] {
        let m = d.expect(T, |v| v["c"] == c && v["ev"] == "message").await;
        assert_eq!(m["body"], r#"{"k":"a:b"}"#);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_frames_bytes_sessions_and_connects() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "a", &s.url, "ann").await;
    subscribe(&mut d, "a", "s", "/topic/message_created").await;
    let body = s.proxy.metrics().await;
    for name in [
        "switchboard_sessions_active{route=\"chat\"} 1",
        "switchboard_frames_total{route=\"chat\",dialect=\"stomp\",side=\"downstream\",direction=\"in\"}",
        "switchboard_bytes_total{route=\"chat\",dialect=\"socketio\",side=\"upstream\",direction=\"out\"}",
        "switchboard_upstream_connect_seconds_bucket",
        "switchboard_connections_accepted_total",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    // The open session's CONNECT and SUBSCRIBE are counted within a tick.
    let series = "switchboard_frames_total{route=\"chat\",dialect=\"stomp\",side=\"downstream\",direction=\"in\"}";
    let v = s
        .proxy
        .metric_reaches(series, 2.0, Duration::from_secs(3))
        .await;
    assert!(v >= 2.0, "{series} is {v}");
    d.send(json!({"op":"disconnect","c":"a"})).await;
    d.expect_ev(T, "a", "close").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = s.proxy.metrics().await;
    assert!(
        body.contains("switchboard_sessions_active{route=\"chat\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("switchboard_sessions_total{route=\"chat\",outcome=\"client_closed\"} 1"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_with_an_error_frame_and_exits() {
    let mut s = setup().await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "a", &s.url, "ann").await;
    let t0 = Instant::now();
    s.proxy.terminate();
    let e = d.expect_ev(T, "a", "error").await;
    assert_eq!(e["headers"]["message"], "server shutting down");
    d.expect_ev(T, "a", "close").await;
    let status = s
        .proxy
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("proxy exits");
    assert!(status.success(), "{status}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drain took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_namespace_is_joined() {
    let s = setup_with(&[], "", "namespace = \"/admin\"").await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "a", &s.url, "ann").await;
    subscribe(&mut d, "a", "s", "/topic/message_created").await;
    // An event on `/` is not for this session; one on `/admin` is.
    sio_control_emit(
        s.backend_port,
        "message_created",
        json!([{"nsp":"/"}]),
        Some("ann"),
    )
    .await;
    http_json(s.backend_port, "POST", "/control/emit",
        Some(json!({"event":"message_created","args":[{"nsp":"/admin"}],"to":"ann","namespace":"/admin"}))).await;
    let m = d.expect(T, |v| v["ev"] == "message").await;
    assert_eq!(m["body"], r#"{"nsp":"/admin"}"#);
    d.send(json!({"op":"send","c":"a","destination":"/app/message_created","body":"{}","headers":{"content-type":"application/json","receipt":"r"}})).await;
    d.expect(T, |v| v["ev"] == "receipt").await;
    let received = sio_control_received(s.backend_port).await;
    assert_eq!(received[0]["namespace"], "/admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_payload_write_is_one_counted_copy() {
    let s = setup().await;
    let mut d = Driver::stomp().await;
    connect(&mut d, "a", &s.url, "ann").await;
    subscribe(&mut d, "a", "s", "/topic/message_created").await;
    for i in 0..5 {
        d.send(json!({"op":"send","c":"a","destination":"/app/message_created","body":format!("{{\"n\":{i}}}"),
            "headers":{"content-type":"application/json","receipt":format!("j{i}")}}))
        .await;
        d.expect(T, |v| v["ev"] == "receipt" && v["id"] == format!("j{i}"))
            .await;
        d.expect(T, |v| v["ev"] == "message").await;
    }
    // A JSON body is spliced into the emit, and the echo's payload into the MESSAGE: one
    // write each, so one copy of the body's 7 bytes each way per round trip. The payload is
    // never copied on its way through the roles (slices of the received messages).
    // Counted at the session's next tick: waited for, then taken exactly.
    let proxy = &s.proxy;
    let copies = |n: f64| {
        proxy.metric_reaches(
            "switchboard_payload_copies_total",
            n,
            Duration::from_secs(3),
        )
    };
    assert_eq!(copies(10.0).await, 10.0);
    assert_eq!(
        s.proxy
            .metric_reaches(
                "switchboard_payload_copied_bytes_total",
                70.0,
                Duration::from_secs(3)
            )
            .await,
        70.0
    );
    // A text body becomes a JSON string argument as it is written: still one copy, and
    // one for the MESSAGE that brings the echo back.
    d.send(
        json!({"op":"send","c":"a","destination":"/app/message_created","body":"plain text",
        "headers":{"content-type":"text/plain","receipt":"t"}}),
    )
    .await;
    d.expect(T, |v| v["ev"] == "receipt" && v["id"] == "t")
        .await;
    let m = d.expect(T, |v| v["ev"] == "message").await;
    assert_eq!(m["body"], "\"plain text\"");
    assert_eq!(copies(12.0).await, 12.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_without_hurting_others() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let s = setup_with(
        &[],
        "[limits]\nqueue_depth = 8\nwrite_timeout_ms = 1000",
        "",
    )
    .await;
    // The slow client: subscribes, then never reads again.
    let mut req = s.url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", jwt("slow", SECRET)).parse().unwrap(),
    );
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
    let (mut slow, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    slow.send(Message::text("CONNECT\naccept-version:1.2\n\n\u{0}"))
        .await
        .unwrap();
    let first = slow.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().starts_with("CONNECTED"));
    slow.send(Message::text(
        "SUBSCRIBE\nid:0\ndestination:/topic/flood\nreceipt:r\n\n\u{0}",
    ))
    .await
    .unwrap();
    let receipt = slow.next().await.unwrap().unwrap();
    assert!(receipt.to_text().unwrap().starts_with("RECEIPT"));
    // A normal client on the same proxy.
    let mut d = Driver::stomp().await;
    connect(&mut d, "ok", &s.url, "ok").await;
    subscribe(&mut d, "ok", "s", "/topic/message_created").await;
    // Flood the slow client with far more than socket buffers and the queue can hold.
    let big = "x".repeat(256 * 1024);
    for _ in 0..64 {
        sio_control_emit(s.backend_port, "flood", json!([{"pad": big}]), Some("slow")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = s.proxy.metrics().await;
        // Counted as what it is: a slow consumer, not a client that left.
        if body.contains("switchboard_sessions_total{route=\"chat\",outcome=\"slow_consumer\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slow client never cut off:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sio_control_emit(
        s.backend_port,
        "message_created",
        json!([{"fine": true}]),
        Some("ok"),
    )
    .await;
    let m = d
        .expect(T, |v| v["c"] == "ok" && v["ev"] == "message")
        .await;
    assert_eq!(m["body"], r#"{"fine":true}"#);
    drop(slow);
}
