//! Proves the test harness against the real peers alone, without the proxy:
//! socket.io-client (sio_driver) -> sio_backend, and @stomp/stompjs (stomp_driver) -> RabbitMQ.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    Driver, jwt, sio_control_emit, sio_control_received, start_rabbitmq, start_sio_backend,
};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sio_driver_against_sio_backend() {
    let (_backend, port) = start_sio_backend(&["--secret", "smoke-secret"]);
    let url = format!("http://127.0.0.1:{port}");
    let mut d = Driver::sio().await;

    // Two clients over pure WebSocket, one with the library default (polling, then upgrade).
    let alice = jwt("alice", "smoke-secret");
    let bob = jwt("bob", "smoke-secret");
    d.send(json!({"op":"connect","c":"alice","url":url,"auth":{"token":alice},"transports":["websocket"]})).await;
    d.send(json!({"op":"connect","c":"bob","url":url,"auth":{"token":bob},"transports":null}))
        .await;
    let ev = d.expect_ev(T, "alice", "connect").await;
    assert!(ev["id"].as_str().is_some_and(|s| !s.is_empty()), "{ev}");
    assert_eq!(ev["transport"], "websocket");
    d.expect_ev(T, "bob", "connect").await;
    let up = d.expect_ev(T, "bob", "transport").await;
    assert_eq!(up["name"], "websocket", "bob upgrades from polling");

    // message_created: ack to the sender, broadcast to everyone (sender included).
    let msg = json!({"conversation":"c1","text":"hello"});
    d.send(json!({"op":"emit","c":"alice","event":"message_created","args":[msg],"ack":true,"reqId":7})).await;
    let ack = d.expect_ev(T, "alice", "ack").await;
    assert_eq!(ack["reqId"], 7);
    assert_eq!(ack["args"], json!([{"ok":true,"event":"message_created"}]));
    for c in ["alice", "bob"] {
        let ev = d
            .expect(T, |v| {
                v["c"] == c && v["ev"] == "event" && v["event"] == "message_created"
            })
            .await;
        assert_eq!(ev["args"], json!([msg]), "{c}");
    }
    let rec = sio_control_received(port).await;
    assert!(
        rec.iter().any(|r| r["sub"] == "alice"
            && r["event"] == "message_created"
            && r["args"] == json!([msg])),
        "{rec:?}"
    );

    // echo with a binary argument comes back to the sender only, bytes intact.
    d.send(json!({"op":"emit","c":"bob","event":"echo","args":["b", {"$bin":"AAEC/w=="}]}))
        .await;
    let ev = d
        .expect(T, |v| v["c"] == "bob" && v["event"] == "echo")
        .await;
    assert_eq!(ev["args"], json!(["b", {"$bin":"AAEC/w=="}]));

    // Server-initiated emit to one user through the control API.
    sio_control_emit(port, "notification", json!([{"n":1}]), Some("bob")).await;
    let ev = d
        .expect(T, |v| v["c"] == "bob" && v["event"] == "notification")
        .await;
    assert_eq!(ev["args"], json!([{"n":1}]));
    let extra = d.collect(Duration::from_millis(300)).await;
    assert!(
        !extra
            .iter()
            .any(|v| v["c"] == "alice" && v["event"] == "notification"),
        "alice must not get bob's notification: {extra:?}"
    );

    // The /admin namespace has the same middleware and handlers.
    d.send(json!({"op":"connect","c":"adm","url":url,"namespace":"/admin","auth":{"token":alice},"transports":["websocket"]})).await;
    d.expect_ev(T, "adm", "connect").await;
    d.send(json!({"op":"emit","c":"adm","event":"whatever","args":[1,"two"],"ack":true}))
        .await;
    let ack = d.expect_ev(T, "adm", "ack").await;
    assert_eq!(
        ack["args"],
        json!([{"ok":true,"event":"whatever","args":[1,"two"]}])
    );

    // A bad token is refused with the middleware's error.
    let wrong = jwt("mallory", "not-the-secret");
    d.send(json!({"op":"connect","c":"mallory","url":url,"auth":{"token":wrong},"transports":["websocket"]})).await;
    let err = d.expect_ev(T, "mallory", "connect_error").await;
    assert_eq!(err["message"], "invalid token");
    assert_eq!(err["data"], json!({"reason":"jwt"}));

    // Client-side disconnect.
    d.send(json!({"op":"disconnect","c":"alice"})).await;
    let ev = d.expect_ev(T, "alice", "disconnect").await;
    assert_eq!(ev["reason"], "io client disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_driver_against_rabbitmq() {
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let url = rabbit.ws_url();
    let mut d = Driver::stomp().await;

    d.send(json!({"op":"connect","c":"a","url":url,"headers":{"login":"guest","passcode":"guest","host":"/"}})).await;
    let ev = d.expect_ev(T, "a", "connected").await;
    assert_eq!(ev["headers"]["version"], "1.2");
    assert_eq!(ev["protocol"], "v12.stomp");

    d.send(json!({"op":"subscribe","c":"a","id":"s1","destination":"/topic/smoke","headers":{"receipt":"r-sub"}})).await;
    let r = d.expect_ev(T, "a", "receipt").await;
    assert_eq!(r["id"], "r-sub");

    d.send(json!({"op":"send","c":"a","destination":"/topic/smoke","body":"hello stomp","headers":{"content-type":"text/plain","receipt":"r-send"}})).await;
    d.expect(T, |v| {
        v["c"] == "a" && v["ev"] == "receipt" && v["id"] == "r-send"
    })
    .await;
    let m = d.expect_ev(T, "a", "message").await;
    assert_eq!(m["sub"], "s1");
    assert_eq!(m["destination"], "/topic/smoke");
    assert_eq!(m["body"], "hello stomp");

    // Bad credentials: an ERROR frame.
    d.send(
        json!({"op":"connect","c":"b","url":url,"headers":{"login":"guest","passcode":"wrong"}}),
    )
    .await;
    let e = d.expect_ev(T, "b", "error").await;
    assert_eq!(e["headers"]["message"], "Bad CONNECT");

    // Malformed input over a bare WebSocket.
    d.send(json!({"op":"raw","c":"r","url":url,"frames":["CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\u{0}", "NONSENSE\n\n\u{0}"]})).await;
    d.expect(T, |v| {
        v["c"] == "r"
            && v["ev"] == "raw"
            && v["data"]
                .as_str()
                .is_some_and(|s| s.starts_with("CONNECTED\n"))
    })
    .await;
    d.expect(T, |v| {
        v["c"] == "r"
            && v["ev"] == "raw"
            && v["data"].as_str().is_some_and(|s| s.starts_with("ERROR\n"))
    })
    .await;
    // RabbitMQ 3.10 leaves this socket open after the ERROR (it does not even answer a
    // WebSocket close), so drop it from our side.
    d.send(json!({"op":"raw_terminate","c":"r"})).await;
    let c = d.expect_ev(T, "r", "close").await;
    assert_eq!(c["code"], 1006);

    d.send(json!({"op":"disconnect","c":"a"})).await;
    d.expect_ev(T, "a", "close").await;
}
