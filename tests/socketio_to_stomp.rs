//! socket.io-client 4.8 → Switchboard (socketio → stomp) → RabbitMQ web-stomp, in the
//! medical-chat vendor's terms: conversation topics whose events are keyed by name, typing
//! start/stop sends, receipts as acks, broker errors, and a broker that restarts mid-session.
//! A plain stompjs client on the broker plays the vendor's backend side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

fn config(rabbit: &Rabbit, port: u16, credentials: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "chat"
listen = "127.0.0.1:{port}"
path = "/socket.io/"
client = "socketio"
[route.socketio]
auto_subscribe = ["conversation:{{conversation}}"]
[route.upstream]
url = "{url}"
dialect = "stomp"
heartbeat_ms = [1000, 1000]
ack_timeout_ms = 3000
{credentials}

# Rules are tried in order: the more specific first.
# Typing start/stop sends.
[[route.map]]
client = "conversation:{{id}}:typing:{{what}}"
upstream = "/topic/conversation.{{id}}.typing.{{what}}"

# Conversation topics: events are keyed by name in the body ({{"message":{{..}}}} → "message").
[[route.map]]
client = "conversation:{{id}}"
upstream = "/topic/conversation.{{id}}"
event_from_key = true
"#,
        admin = free_port(),
        url = rabbit.ws_url(),
    )
}

const GUEST: &str = "[route.upstream.credentials]\nlogin = \"guest\"\npasscode = \"guest\"";

/// The vendor's side: a STOMP client straight on the broker.
async fn vendor(d: &mut Driver, rabbit: &Rabbit) {
    d.send(json!({"op":"connect","c":"vendor","url":rabbit.ws_url(),"headers":{"login":"guest","passcode":"guest","host":"/"}})).await;
    d.expect_ev(T, "vendor", "connected").await;
}

async fn vendor_publish(d: &mut Driver, dest: &str, body: Value, n: &str) {
    d.send(
        json!({"op":"send","c":"vendor","destination":dest,"body":body.to_string(),
        "headers":{"content-type":"application/json","receipt":n}}),
    )
    .await;
    d.expect(T, |v| {
        v["c"] == "vendor" && v["ev"] == "receipt" && v["id"] == n
    })
    .await;
}

async fn flows(transports: Value) {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let port = free_port();
    let _proxy = Proxy::start(&config(&rabbit, port, GUEST)).await;
    let mut st = Driver::stomp().await;
    vendor(&mut st, &rabbit).await;
    st.send(json!({"op":"subscribe","c":"vendor","id":"typing","destination":"/topic/conversation.c1.typing.*","headers":{"receipt":"vt"}})).await;
    st.expect(T, |v| v["ev"] == "receipt" && v["id"] == "vt")
        .await;

    let mut io = Driver::sio().await;
    io.send(
        json!({"op":"connect","c":"emp","url":format!("http://127.0.0.1:{port}"),
        "auth":{"token":"jwt-abc","conversation":"c1"},"transports":transports}),
    )
    .await;
    io.expect_ev(T, "emp", "connect").await;
    if transports.is_null() {
        let t = io.expect_ev(T, "emp", "transport").await;
        assert_eq!(t["name"], "websocket");
    }
    // Explicit subscription to a second conversation, answered by an ack.
    io.send(json!({"op":"emit","c":"emp","event":"subscribe","args":[{"topic":"conversation:c2"}],"ack":true,"reqId":"sub"})).await;
    let ack = io
        .expect(T, |v| v["ev"] == "ack" && v["reqId"] == "sub")
        .await;
    assert_eq!(ack["args"], json!([null]));
    // The auto-subscription (from auth.conversation) may still be confirming: wait for the
    // broker to see both subscriptions by publishing until one arrives.
    let mut got = None;
    for i in 0..20 {
        vendor_publish(
            &mut st,
            "/topic/conversation.c1",
            json!({"message":{"message":"Hello","n":i}}),
            &format!("m{i}"),
        )
        .await;
        if let Some(v) = io
            .try_expect(Duration::from_millis(300), |v| {
                v["ev"] == "event" && v["event"] == "message"
            })
            .await
        {
            got = Some(v);
            break;
        }
    }
    let got = got.expect("conversation message delivered");
    assert_eq!(got["args"][0]["message"], "Hello");
    vendor_publish(
        &mut st,
        "/topic/conversation.c1",
        json!({"read":{"userId":"u1","readAt":"2021-07-26T12:06:34Z"}}),
        "r",
    )
    .await;
    let ev = io
        .expect(T, |v| v["ev"] == "event" && v["event"] == "read")
        .await;
    assert_eq!(
        ev["args"],
        json!([{"userId":"u1","readAt":"2021-07-26T12:06:34Z"}])
    );
    vendor_publish(
        &mut st,
        "/topic/conversation.c2",
        json!({"startTyping":{"userId":"u2"}}),
        "t2",
    )
    .await;
    let ev = io
        .expect(T, |v| v["ev"] == "event" && v["event"] == "startTyping")
        .await;
    assert_eq!(ev["args"], json!([{"userId":"u2"}]));
    // Typing start and stop: emits with acks become SENDs with receipts.
    for what in ["start", "stop"] {
        io.send(json!({"op":"emit","c":"emp","event":format!("conversation:c1:typing:{what}"),"args":[{}],"ack":true,"reqId":what})).await;
        let ack = io
            .expect(T, |v| v["ev"] == "ack" && v["reqId"] == what)
            .await;
        assert_eq!(ack["args"], json!([]), "{ack}");
        let m = st
            .expect(T, |v| {
                v["c"] == "vendor" && v["ev"] == "message" && v["sub"] == "typing"
            })
            .await;
        assert_eq!(
            m["destination"],
            format!("/topic/conversation.c1.typing.{what}")
        );
        assert_eq!(m["body"], "{}");
    }
    // Unsubscribe stops deliveries.
    io.send(json!({"op":"emit","c":"emp","event":"unsubscribe","args":[{"topic":"conversation:c2"}],"ack":true,"reqId":"unsub"})).await;
    io.expect(T, |v| v["ev"] == "ack" && v["reqId"] == "unsub")
        .await;
    vendor_publish(
        &mut st,
        "/topic/conversation.c2",
        json!({"stopTyping":{"userId":"u2"}}),
        "t3",
    )
    .await;
    let rest = io.collect(Duration::from_millis(500)).await;
    assert!(rest.iter().all(|v| v["event"] != "stopTyping"), "{rest:?}");

    // A name without a mapping is refused locally; the session goes on.
    io.send(
        json!({"op":"emit","c":"emp","event":"/nonsense","args":[{}],"ack":true,"reqId":"local"}),
    )
    .await;
    let ack = io
        .expect(T, |v| v["ev"] == "ack" && v["reqId"] == "local")
        .await;
    assert_eq!(
        ack["args"][0]["error"]["message"],
        "no route for destination /nonsense"
    );
    // A broker ERROR (default mapping `/app/<event>`, which RabbitMQ refuses) answers the
    // ack with the broker's error; the broker then drops its connection, and the client is
    // disconnected so that it reconnects.
    io.send(
        json!({"op":"emit","c":"emp","event":"typing_start","args":[{}],"ack":true,"reqId":"bad"}),
    )
    .await;
    let ack = io
        .expect(T, |v| v["ev"] == "ack" && v["reqId"] == "bad")
        .await;
    assert!(ack["args"][0]["error"]["message"].is_string(), "{ack}");
    let d = io.expect_ev(T, "emp", "disconnect").await;
    assert_ne!(d["reason"], "io server disconnect", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_default_transports_reach_rabbitmq() {
    flows(Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_websocket_only_reaches_rabbitmq() {
    flows(json!(["websocket"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_and_refused_credentials() {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let port = free_port();
    let _proxy = Proxy::start(&config(&rabbit, port, GUEST)).await;
    let mut io = Driver::sio().await;
    io.send(
        json!({"op":"connect","c":"a","url":format!("http://127.0.0.1:{port}"),
        "auth":{"conversation":"c9"},"transports":["websocket"],"reconnection":true}),
    )
    .await;
    io.expect_ev(T, "a", "connect").await;
    // The broker application restarts: the client is told (transport closed, not a server
    // disconnect) and reconnects by itself once the broker is back.
    let out = rabbit.ctl(&["stop_app"]);
    assert!(out.status.success(), "{out:?}");
    let d = io.expect_ev(T, "a", "disconnect").await;
    assert_ne!(d["reason"], "io server disconnect", "{d}");
    let out = rabbit.ctl(&["start_app"]);
    assert!(out.status.success(), "{out:?}");
    io.expect_ev(Duration::from_secs(60), "a", "connect").await;
    let mut st = Driver::stomp().await;
    vendor(&mut st, &rabbit).await;
    let mut delivered = false;
    for i in 0..20 {
        vendor_publish(
            &mut st,
            "/topic/conversation.c9",
            json!({"message":{"n":i}}),
            &format!("x{i}"),
        )
        .await;
        if io
            .try_expect(Duration::from_millis(300), |v| {
                v["ev"] == "event" && v["event"] == "message"
            })
            .await
            .is_some()
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no delivery after the broker came back");

    // A route that presents the client's token as the passcode: RabbitMQ refuses it and the
    // client gets a connect_error with the broker's words.
    let port2 = free_port();
    let _proxy2 = Proxy::start(&config(
        &rabbit,
        port2,
        "[route.upstream.credentials]\nlogin = \"guest\"",
    ))
    .await;
    io.send(json!({"op":"connect","c":"b","url":format!("http://127.0.0.1:{port2}"),"auth":{"token":"not-the-password"},"transports":["websocket"]})).await;
    let e = io.expect_ev(T, "b", "connect_error").await;
    assert!(!e["message"].as_str().unwrap_or_default().is_empty(), "{e}");
}
