//! stompjs → Switchboard (stomp → stomp) → RabbitMQ web-stomp, with full termination
//! (translate) and in passthrough mode, on one broker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_to_rabbitmq_translate_and_passthrough() {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let (translate, passthrough) = (free_port(), free_port());
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "translate"
listen = "127.0.0.1:{translate}"
path = "/ws"
client = "stomp"
[route.stomp]
heartbeat_ms = [500, 500]
[route.upstream]
url = "{url}"
dialect = "stomp"
ack_mode = "client-individual"
heartbeat_ms = [500, 500]

[[route]]
name = "passthrough"
listen = "127.0.0.1:{passthrough}"
path = "/ws"
client = "stomp"
mode = "passthrough"
[route.upstream]
url = "{url}"
dialect = "stomp"
"#,
        admin = free_port(),
        url = rabbit.ws_url(),
    );
    let proxy = Proxy::start(&cfg).await;
    let mut d = Driver::stomp().await;
    for (c, port) in [("t", translate), ("p", passthrough)] {
        d.send(json!({"op":"connect","c":c,"url":format!("ws://127.0.0.1:{port}/ws"),
            "headers":{"login":"guest","passcode":"guest","host":"/"},"heartbeatIncoming":500,"heartbeatOutgoing":500}))
        .await;
        let con = d.expect_ev(T, c, "connected").await;
        assert_eq!(con["headers"]["version"], "1.2");
        d.send(
            json!({"op":"subscribe","c":c,"id":"s","destination":format!("/topic/chat.{c}"),
            "headers":{"receipt":format!("{c}-sub"),"ack":"client-individual"}}),
        )
        .await;
        d.expect(T, |v| v["c"] == c && v["ev"] == "receipt").await;
        d.send(json!({"op":"send","c":c,"destination":format!("/topic/chat.{c}"),"body":"{\"message\":{\"text\":\"hi\"}}",
            "headers":{"content-type":"application/json","receipt":format!("{c}-send"),"event":"message","x-trace":"t-42","correlation-id":"c-7"}}))
        .await;
        d.expect(T, |v| {
            v["c"] == c && v["ev"] == "receipt" && v["id"] == format!("{c}-send")
        })
        .await;
        let m = d.expect(T, |v| v["c"] == c && v["ev"] == "message").await;
        assert_eq!(m["body"], r#"{"message":{"text":"hi"}}"#);
        assert_eq!(m["destination"], format!("/topic/chat.{c}"));
        assert_eq!(
            m["headers"]["event"], "message",
            "user headers pass SEND → MESSAGE"
        );
        assert_eq!(m["headers"]["x-trace"], "t-42", "{m}");
        assert_eq!(m["headers"]["correlation-id"], "c-7", "{m}");
        d.send(json!({"op":"ack","c":c,"sub":"s","headers":{"receipt":format!("{c}-ack")}}))
            .await;
        d.expect(T, |v| {
            v["c"] == c && v["ev"] == "receipt" && v["id"] == format!("{c}-ack")
        })
        .await;
        if c == "t" {
            // Each leg keeps its own heart-beat: idle for several intervals.
            let idle = d.collect(Duration::from_secs(2)).await;
            assert!(
                idle.iter()
                    .all(|v| v["ev"] != "close" && v["ev"] != "error"),
                "{idle:?}"
            );
        }
    }
    // A broker ERROR (bad destination) becomes the client's ERROR and close.
    d.send(json!({"op":"subscribe","c":"t","id":"bad","destination":"/nonsense/x","headers":{"receipt":"bad"}})).await;
    let e = d.expect_ev(T, "t", "error").await;
    assert!(
        !e["headers"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{e}"
    );
    d.expect_ev(T, "t", "close").await;
    // Wrong credentials are refused by the broker, reported in STOMP.
    d.send(json!({"op":"connect","c":"w","url":format!("ws://127.0.0.1:{translate}/ws"),"headers":{"login":"guest","passcode":"nope"}})).await;
    let e = d.expect_ev(T, "w", "error").await;
    assert!(
        !e["headers"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    // Counts of sessions still open reach `/metrics` within a tick: the passthrough client
    // sent CONNECT, SUBSCRIBE, SEND and ACK, the broker answered CONNECTED, three RECEIPTs
    // and the MESSAGE (heart-beats come on top).
    for (series, at_least) in [
        (
            "switchboard_frames_total{route=\"passthrough\",dialect=\"stomp\",side=\"downstream\",direction=\"in\"}",
            4.0,
        ),
        (
            "switchboard_frames_total{route=\"passthrough\",dialect=\"stomp\",side=\"upstream\",direction=\"in\"}",
            5.0,
        ),
        (
            "switchboard_bytes_total{route=\"passthrough\",dialect=\"stomp\",side=\"downstream\",direction=\"out\"}",
            100.0,
        ),
    ] {
        let v = proxy
            .metric_reaches(series, at_least, Duration::from_secs(3))
            .await;
        assert!(v >= at_least, "{series} is {v}");
    }
    let body = proxy.metrics().await;
    assert!(
        body.contains("route=\"passthrough\",dialect=\"stomp\",side=\"upstream\""),
        "{body}"
    );
    assert!(
        body.contains("route=\"translate\",dialect=\"stomp\",side=\"upstream\""),
        "{body}"
    );
    drop(rabbit);
}

/// Messages unacknowledged on the broker, per queue, from `rabbitmqctl list_queues`.
fn unacked(rabbit: &Rabbit) -> Vec<(String, u64)> {
    let out = rabbit.ctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_unacknowledged",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// The broker subscription is `client-individual`; what the STOMP client chose decides when
/// the proxy acks upstream: at once for `auto`, cumulatively for `client`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_ack_modes_reach_a_client_individual_broker_subscription() {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let port = free_port();
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "acks"
listen = "127.0.0.1:{port}"
path = "/ws"
client = "stomp"
[route.upstream]
url = "{url}"
dialect = "stomp"
ack_mode = "client-individual"
"#,
        admin = free_port(),
        url = rabbit.ws_url(),
    );
    let _proxy = Proxy::start(&cfg).await;
    let mut d = Driver::stomp().await;
    for (c, mode) in [("auto", "auto"), ("client", "client")] {
        d.send(
            json!({"op":"connect","c":c,"url":format!("ws://127.0.0.1:{port}/ws"),
            "headers":{"login":"guest","passcode":"guest","host":"/"}}),
        )
        .await;
        d.expect_ev(T, c, "connected").await;
        d.send(
            json!({"op":"subscribe","c":c,"id":"s","destination":format!("/queue/acks.{c}"),
            "headers":{"receipt":format!("{c}-sub"),"ack":mode}}),
        )
        .await;
        d.expect(T, |v| v["c"] == c && v["ev"] == "receipt").await;
        for i in 0..3 {
            d.send(json!({"op":"send","c":c,"destination":format!("/queue/acks.{c}"),"body":format!("m{i}")}))
                .await;
        }
        for i in 0..3 {
            let m = d.expect(T, |v| v["c"] == c && v["ev"] == "message").await;
            assert_eq!(m["body"], format!("m{i}"));
        }
    }
    let queue = |c: &str| format!("acks.{c}");
    let count =
        |q: &str, list: &[(String, u64)]| list.iter().find(|(n, _)| n == q).map(|(_, u)| *u);
    // Before any client ACK: `auto` was acked by the proxy, `client` waits for the client.
    let mut list = Vec::new();
    for _ in 0..20 {
        list = unacked(&rabbit);
        if count(&queue("auto"), &list) == Some(0) && count(&queue("client"), &list) == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(count(&queue("auto"), &list), Some(0), "{list:?}");
    assert_eq!(count(&queue("client"), &list), Some(3), "{list:?}");
    // One ACK of the last message covers all three under `client`.
    d.send(json!({"op":"ack","c":"client","sub":"s","headers":{"receipt":"acked"}}))
        .await;
    d.expect(T, |v| v["c"] == "client" && v["ev"] == "receipt")
        .await;
    for _ in 0..20 {
        list = unacked(&rabbit);
        if count(&queue("client"), &list) == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(count(&queue("client"), &list), Some(0), "{list:?}");
    drop(rabbit);
}
