//! The listener on its own (no peers needed): several routes on one port by path, HTTP
//! answers for what is not a WebSocket upgrade, the handshake timeout, the connection limit,
//! and `/readyz` during the drain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(port: u16, admin: u16, limits: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[limits]
{limits}
[shutdown]
grace_period_ms = 500
[[route]]
name = "a"
listen = "127.0.0.1:{port}"
path = "/a"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:9/socket.io/"
dialect = "socketio"
[[route]]
name = "b"
listen = "127.0.0.1:{port}"
path = "/b"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:9/"
dialect = "stomp"
"#
    )
}

async fn upgrade(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v11.stomp, v12.stomp\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_share_a_port_and_non_websocket_requests_get_http_answers() {
    let port = free_port();
    let proxy = Proxy::start(&config(port, free_port(), "")).await;
    for path in ["/a", "/b"] {
        let r = upgrade(port, path).await;
        assert!(r.starts_with("HTTP/1.1 101"), "{path}: {r}");
        assert!(
            r.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{r}"
        );
        assert!(r.contains("sec-websocket-protocol: v12.stomp"), "{r}");
    }
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _) = http_get(addr, "/nowhere").await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = http_get(addr, "/a").await.unwrap();
    assert_eq!(status, 426);
    let (status, _) = http_get(proxy.admin_addr(), "/healthz").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_after_the_handshake_timeout() {
    let port = free_port();
    let _proxy = Proxy::start(&config(port, free_port(), "handshake_timeout_ms = 300")).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let _ = n;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "closed after {:?}",
        t0.elapsed()
    );
    // Others are served meanwhile.
    assert!(upgrade(port, "/a").await.starts_with("HTTP/1.1 101"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_further_clients_until_one_leaves() {
    let port = free_port();
    let _proxy = Proxy::start(&config(
        port,
        free_port(),
        "max_connections = 2\nhandshake_timeout_ms = 2000",
    ))
    .await;
    let a = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _b = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The third waits in the backlog: no answer while two are held.
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    c.write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf))
            .await
            .is_err()
    );
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_then_the_drain_tells_an_idle_session() {
    let port = free_port();
    let mut proxy = Proxy::start(&config(port, free_port(), "")).await;
    let (status, _) = http_get(proxy.admin_addr(), "/readyz").await.unwrap();
    assert_eq!(status, 200);
    // A client that never sends CONNECT keeps a session open through the drain.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf).await.unwrap();
    proxy.terminate();
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits within the grace period");
    assert!(status.success());
    // The session was told in STOMP before the close.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await;
    assert!(
        String::from_utf8_lossy(&rest).contains("server shutting down"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}
