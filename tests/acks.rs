//! A Socket.IO backend's ack requests (`socket.timeout(ms).emit(ev, data, cb)`) answered across
//! the proxy: by a socket.io-client's own ack (socketio → socketio), by a STOMP client's
//! ACK/NACK under `ack:client-individual`, and by the proxy once delivered to an `ack:auto`
//! STOMP subscriber (stomp → socketio). Real peers: socket.io 4.8 backend, socket.io-client
//! 4.8 and @stomp/stompjs 7.5.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "test-secret";

fn config(client: &str, path: &str, proxy: u16, backend: u16) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "acks"
listen = "127.0.0.1:{proxy}"
path = "{path}"
client = "{client}"

[route.upstream]
url = "ws://127.0.0.1:{backend}/socket.io/"
dialect = "socketio"
"#,
        admin = free_port(),
    )
}

/// The backend emits `event` to user `to` asking for an ack (answered within `ms`); the
/// control call returns once the ack (or the timeout) is in.
fn emit_with_ack(
    backend: u16,
    event: &str,
    args: Value,
    to: &str,
    ms: u64,
) -> tokio::task::JoinHandle<Value> {
    let body = json!({"event": event, "args": args, "to": to, "ack": true, "timeoutMs": ms});
    tokio::spawn(async move { http_json(backend, "POST", "/control/emit", Some(body)).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socketio_ack_gets_the_backends_answer_with_no_configuration() {
    ensure_npm();
    let (_backend, backend) = start_sio_backend(&[]);
    let proxy = free_port();
    // No `upstream.acks`: a client that expects data back still gets the backend's.
    let _p = Proxy::start(&config("socketio", "/socket.io/", proxy, backend)).await;
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"ivy","url":format!("http://127.0.0.1:{proxy}"),
        "auth":{"token":jwt("ivy", SECRET)},"transports":["websocket"]}),
    )
    .await;
    d.expect_ev(T, "ivy", "connect").await;
    d.send(json!({"op":"emit","c":"ivy","event":"lookup","args":[{"id":3}],"ack":true,"reqId":1}))
        .await;
    let ack = d
        .expect(T, |v| {
            v["c"] == "ivy" && v["ev"] == "ack" && v["reqId"] == 1
        })
        .await;
    assert_eq!(
        ack["args"],
        json!([{"ok": true, "event": "lookup", "args": [{"id": 3}]}]),
        "{ack}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_client_answers_the_backends_ack_request() {
    ensure_npm();
    let (_backend, backend) = start_sio_backend(&[]);
    let proxy = free_port();
    let _p = Proxy::start(&config("socketio", "/socket.io/", proxy, backend)).await;
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"ann","url":format!("http://127.0.0.1:{proxy}"),
        "auth":{"token":jwt("ann", SECRET)},"transports":["websocket"]}),
    )
    .await;
    d.expect_ev(T, "ann", "connect").await;

    let call = emit_with_ack(backend, "confirm", json!([{"id": 7}]), "ann", 5000);
    let ev = d
        .expect(T, |v| {
            v["c"] == "ann" && v["ev"] == "event" && v["event"] == "confirm"
        })
        .await;
    assert_eq!(ev["args"], json!([{"id": 7}]));
    let ack_id = ev["ackId"].clone();
    assert!(
        ack_id.is_number(),
        "the proxy asked the client for an ack: {ev}"
    );
    d.send(json!({"op":"ack","c":"ann","ackId":ack_id,"args":[{"seen":true}]}))
        .await;
    let answer = call.await.unwrap();
    assert_eq!(answer, json!({"ok": true, "responses": [{"seen": true}]}));

    // An event emitted without an ack request asks the client for none.
    sio_control_emit(backend, "plain", json!([1]), Some("ann")).await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "ann" && v["ev"] == "event" && v["event"] == "plain"
        })
        .await;
    assert!(ev.get("ackId").is_none(), "{ev}");

    // A client that never answers: the backend's own timeout reports it.
    let call = emit_with_ack(backend, "confirm", json!([{"id": 8}]), "ann", 500);
    d.expect(T, |v| {
        v["c"] == "ann" && v["ev"] == "event" && v["event"] == "confirm"
    })
    .await;
    let answer = call.await.unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_subscribers_answer_the_backends_ack_request() {
    ensure_npm();
    let (_backend, backend) = start_sio_backend(&[]);
    let proxy = free_port();
    let _p = Proxy::start(&config("stomp", "/ws", proxy, backend)).await;
    let mut d = Driver::stomp().await;
    for (c, mode) in [("auto", "auto"), ("indiv", "client-individual")] {
        d.send(
            json!({"op":"connect","c":c,"url":format!("ws://127.0.0.1:{proxy}/ws"),
            "wsHeaders":{"Authorization":format!("Bearer {}", jwt(c, SECRET))}}),
        )
        .await;
        d.expect_ev(T, c, "connected").await;
        d.send(
            json!({"op":"subscribe","c":c,"id":"s","destination":"/topic/confirm",
            "headers":{"ack":mode,"receipt":format!("{c}-sub")}}),
        )
        .await;
        d.expect(T, |v| v["c"] == c && v["ev"] == "receipt").await;
    }

    // `auto`: the proxy answers once the MESSAGE is on its way to the client.
    let call = emit_with_ack(backend, "confirm", json!([{"id": 1}]), "auto", 5000);
    let m = d
        .expect(T, |v| v["c"] == "auto" && v["ev"] == "message")
        .await;
    assert_eq!(m["body"], r#"{"id":1}"#);
    assert_eq!(
        call.await.unwrap(),
        json!({"ok": true, "responses": [null]})
    );

    // `client-individual`: the client's ACK is the answer, and nothing before it.
    let call = emit_with_ack(backend, "confirm", json!([{"id": 2}]), "indiv", 5000);
    d.expect(T, |v| v["c"] == "indiv" && v["ev"] == "message")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "no answer before the client's ACK");
    d.send(json!({"op":"ack","c":"indiv","sub":"s"})).await;
    assert_eq!(
        call.await.unwrap(),
        json!({"ok": true, "responses": [null]})
    );

    // A NACK answers with an error the backend can tell apart.
    let call = emit_with_ack(backend, "confirm", json!([{"id": 3}]), "indiv", 5000);
    d.expect(T, |v| v["c"] == "indiv" && v["ev"] == "message")
        .await;
    d.send(json!({"op":"nack","c":"indiv","sub":"s"})).await;
    let answer = call.await.unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["responses"][0]["error"]["name"], "nack", "{answer}");
}
