//! The upstream connect deadline covers the backend's protocol handshake, not only the TCP
//! dial and WebSocket upgrade: a STOMP client in front of a backend that accepts the upgrade
//! and then never completes its handshake gets `ERROR message:upstream unavailable: ..` and
//! a close within `connect_timeout_ms`, instead of hanging.
//!
//! The backends are fakes written here with tokio-tungstenite, each stuck at a different
//! step: a Socket.IO server that never sends the Engine.IO open packet, one that opens and
//! answers pings but never answers the namespace CONNECT, and a STOMP broker that keeps the
//! link alive with heart-beat EOLs but never sends CONNECTED. No Node.js or RabbitMQ needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Proxy, RawWs, free_port, raw_stomp_ws, stomp_subprotocol};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The route's `connect_timeout_ms`.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How much later than the connect timeout the client may hear about it.
const SLACK: Duration = Duration::from_secs(1);

/// What a fake backend saw on its one WebSocket connection.
#[derive(Debug)]
enum Seen {
    /// The proxy's WebSocket upgrade completed.
    Upgraded,
    /// A text message from the proxy.
    Text(String),
    /// The proxy closed the connection (close frame, EOF or error).
    Closed,
}

/// How a fake backend behaves after the upgrade.
#[derive(Debug, Clone, Copy)]
enum Fake {
    /// Socket.IO: send nothing at all (no Engine.IO open packet).
    SioSilent,
    /// Socket.IO: send the open packet, ping every 200 ms, never answer `40`.
    SioNoConnectReply,
    /// Socket.IO: open at once, answer `40` only after this long.
    SioSlowConnectReply(Duration),
    /// STOMP: negotiate `v12.stomp`, send a heart-beat EOL every 200 ms, never CONNECTED.
    StompNoConnected,
}

/// Starts a fake backend on 127.0.0.1:0 accepting one connection; returns its port and a
/// channel reporting what it saw.
async fn fake_backend(kind: Fake) -> (u16, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, stomp_subprotocol).await else {
            let _ = tx.send(Seen::Closed);
            return;
        };
        let _ = tx.send(Seen::Upgraded);
        let open = r#"0{"sid":"fake","upgrades":[],"pingInterval":200,"pingTimeout":200,"maxPayload":1000000}"#;
        let mut connect_reply_at = None;
        match kind {
            Fake::SioSilent => {}
            Fake::SioNoConnectReply => {
                ws.send(Message::text(open)).await.unwrap();
            }
            Fake::SioSlowConnectReply(after) => {
                ws.send(Message::text(open)).await.unwrap();
                connect_reply_at = Some(tokio::time::Instant::now() + after);
            }
            Fake::StompNoConnected => {}
        }
        let keepalive = match kind {
            Fake::SioSilent => None,
            Fake::SioNoConnectReply | Fake::SioSlowConnectReply(_) => Some("2"),
            Fake::StompNoConnected => Some("\n"),
        };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let _ = tx.send(Seen::Text(t.to_string()));
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        let _ = tx.send(Seen::Closed);
                        return;
                    }
                    Some(Ok(_)) => {}
                },
                _ = tick.tick(), if keepalive.is_some() => {
                    if let Some(k) = keepalive
                        && ws.send(Message::text(k)).await.is_err()
                    {
                        let _ = tx.send(Seen::Closed);
                        return;
                    }
                }
                _ = tokio::time::sleep_until(connect_reply_at.unwrap_or(far)), if connect_reply_at.is_some() => {
                    connect_reply_at = None;
                    ws.send(Message::text(r#"40{"sid":"nsp-sid"}"#)).await.unwrap();
                }
            }
        }
    });
    (port, rx)
}

fn config(proxy_port: u16, backend_port: u16, dialect: &str, path: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "hs"
listen = "127.0.0.1:{proxy_port}"
path = "/ws"
client = "stomp"
[route.stomp]
heartbeat_ms = [0, 0]

[route.upstream]
url = "ws://127.0.0.1:{backend_port}{path}"
dialect = "{dialect}"
connect_timeout_ms = {timeout}
"#,
        admin = free_port(),
        timeout = CONNECT_TIMEOUT.as_millis(),
    )
}

/// A raw STOMP-over-WebSocket client: upgrade with `v12.stomp` and send CONNECT. Returns the
/// socket and the instant CONNECT was sent.
async fn stomp_connect(proxy_port: u16) -> (RawWs, Instant) {
    let mut ws = raw_stomp_ws(&format!("ws://127.0.0.1:{proxy_port}/ws"), None).await;
    let sent = Instant::now();
    ws.send(Message::Text(Utf8Bytes::from_static(
        "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0",
    )))
    .await
    .unwrap();
    (ws, sent)
}

/// Reads until the proxy closes; returns every STOMP frame's text and when the close came.
async fn read_until_close(ws: &mut RawWs, limit: Duration) -> (Vec<String>, Instant) {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => frames.push(t.to_string()),
            Ok(Some(Ok(Message::Binary(b)))) => {
                frames.push(String::from_utf8_lossy(&b).into_owned())
            }
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => return (frames, Instant::now()),
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the proxy did not close within {limit:?}; got {frames:?}"),
        }
    }
}

/// A STOMP 1.2 header's value, unescaped (`\\c` is `:`), from a frame's text.
fn header(frame: &str, name: &str) -> Option<String> {
    let head = frame.split("\n\n").next()?;
    let raw = head
        .lines()
        .skip(1)
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?;
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('c') => out.push(':'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}

/// Waits for the fake backend to report `pred`; panics with what it saw otherwise.
async fn backend_saw(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Seen) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) if pred(&s) => return,
            Ok(Some(s)) => seen.push(s),
            Ok(None) | Err(_) => panic!("backend never saw {what}; saw {seen:?}"),
        }
    }
}

/// Runs one stuck backend behind a STOMP route and checks the client is told in time.
async fn client_gets_error_in_time(kind: Fake, dialect: &str, path: &str) {
    let (backend_port, mut seen) = fake_backend(kind).await;
    let proxy_port = free_port();
    let proxy = Proxy::start(&config(proxy_port, backend_port, dialect, path)).await;

    let (mut ws, sent) = stomp_connect(proxy_port).await;
    backend_saw(&mut seen, CONNECT_TIMEOUT, "the upgrade", |s| {
        matches!(s, Seen::Upgraded)
    })
    .await;
    let (frames, closed) = read_until_close(&mut ws, CONNECT_TIMEOUT + SLACK * 2).await;
    let took = closed - sent;

    let error = frames
        .iter()
        .find(|f| f.starts_with("ERROR\n"))
        .unwrap_or_else(|| panic!("no ERROR frame before the close: {frames:?}"));
    let message = header(error, "message").unwrap_or_default();
    assert!(
        message.starts_with("upstream unavailable: "),
        "ERROR names the upstream: {error:?}\nproxy log {}",
        proxy.log_path().display()
    );
    assert!(
        !frames.iter().any(|f| f.starts_with("CONNECTED")),
        "{frames:?}"
    );
    assert!(
        took <= CONNECT_TIMEOUT + SLACK,
        "closed {took:?} after CONNECT; allowed {:?}",
        CONNECT_TIMEOUT + SLACK
    );
    // Not some other, earlier failure: the deadline is what ended it.
    assert!(
        took >= CONNECT_TIMEOUT - Duration::from_millis(100),
        "closed only {took:?} after CONNECT: {frames:?}"
    );
    // The stuck backend connection is not leaked either.
    backend_saw(&mut seen, SLACK, "the proxy close its connection", |s| {
        matches!(s, Seen::Closed)
    })
    .await;
    let metrics = proxy.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("switchboard_upstream_connect_failures_total")
                && l.contains(r#"reason="protocol_timeout""#)
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_backend_that_never_opens_times_out() {
    client_gets_error_in_time(Fake::SioSilent, "socketio", "/socket.io/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_backend_that_pings_but_never_answers_connect_times_out() {
    // The backend's pings keep the Engine.IO liveness deadline satisfied; only the connect
    // deadline can end this.
    client_gets_error_in_time(Fake::SioNoConnectReply, "socketio", "/socket.io/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_broker_that_never_sends_connected_times_out() {
    // Heart-beat EOLs keep the broker link "alive"; only the connect deadline can end this.
    client_gets_error_in_time(Fake::StompNoConnected, "stomp", "/ws").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_finished_in_time_clears_the_deadline() {
    let (backend_port, mut seen) =
        fake_backend(Fake::SioSlowConnectReply(CONNECT_TIMEOUT / 2)).await;
    let proxy_port = free_port();
    let _proxy = Proxy::start(&config(proxy_port, backend_port, "socketio", "/socket.io/")).await;
    let (mut ws, _) = stomp_connect(proxy_port).await;
    backend_saw(
        &mut seen,
        CONNECT_TIMEOUT,
        "the namespace CONNECT",
        |s| matches!(s, Seen::Text(t) if t.starts_with("40")),
    )
    .await;
    let first = tokio::time::timeout(CONNECT_TIMEOUT + SLACK, ws.next())
        .await
        .expect("CONNECTED in time");
    let Some(Ok(Message::Text(t))) = first else {
        panic!("{first:?}")
    };
    assert!(t.starts_with("CONNECTED\n"), "{t:?}");
    // Well past the connect deadline, the session is still up and quiet (heart-beats are
    // off on the STOMP leg).
    let later = tokio::time::timeout(CONNECT_TIMEOUT * 2, ws.next()).await;
    assert!(later.is_err(), "session ended or spoke: {later:?}");
}
