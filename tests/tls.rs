//! TLS both ways: a STOMP client reaches a plain listener whose passthrough route dials a
//! `wss://` upstream (trusting a configured CA file), which is the same proxy's rustls
//! listener translating to the Socket.IO backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_upstream_and_tls_listener() {
    ensure_npm();
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let (_backend, backend_port) = start_sio_backend(&[]);
    let (front, back) = (free_port(), free_port());
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "back"
listen = "127.0.0.1:{back}"
path = "/ws"
client = "stomp"
[route.tls]
cert = "{cert}"
key = "{key}"
[route.upstream]
url = "ws://127.0.0.1:{backend_port}/socket.io/"
dialect = "socketio"

[[route]]
name = "front"
listen = "127.0.0.1:{front}"
path = "/ws"
client = "stomp"
mode = "passthrough"
[route.upstream]
url = "wss://127.0.0.1:{back}/ws"
dialect = "stomp"
ca_file = "{cert}"
"#,
        admin = free_port(),
        cert = cert.display(),
        key = key.display(),
    );
    let proxy = Proxy::start(&cfg).await;
    let mut d = Driver::stomp().await;
    d.send(
        json!({"op":"connect","c":"a","url":format!("ws://127.0.0.1:{front}/ws"),
        "wsHeaders":{"Authorization":format!("Bearer {}", jwt("ann", "test-secret"))}}),
    )
    .await;
    d.expect_ev(T, "a", "connected").await;
    d.send(json!({"op":"subscribe","c":"a","id":"s","destination":"/topic/message_created","headers":{"receipt":"r"}})).await;
    d.expect_ev(T, "a", "receipt").await;
    sio_control_emit(
        backend_port,
        "message_created",
        json!([{"over":"tls"}]),
        Some("ann"),
    )
    .await;
    let m = d.expect_ev(T, "a", "message").await;
    assert_eq!(m["body"], r#"{"over":"tls"}"#);
    let body = proxy.metrics().await;
    assert!(
        body.contains(
            "switchboard_upstream_connect_seconds_count{route=\"front\",dialect=\"stomp\"} 1"
        ),
        "{body}"
    );

    // A plain-text client on the TLS listener fails the handshake; nothing else is disturbed.
    d.send(json!({"op":"connect","c":"plain","url":format!("ws://127.0.0.1:{back}/ws")}))
        .await;
    d.expect(T, |v| {
        v["c"] == "plain" && (v["ev"] == "close" || v["ev"] == "wserror")
    })
    .await;
    let body = proxy.metrics().await;
    assert!(
        body.contains("switchboard_handshake_failures_total{reason=\"tls\"}"),
        "{body}"
    );
}
