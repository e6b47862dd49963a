//! The session pump under pressure, against a real socket.io 4.8 backend (`tests/peers`):
//! a client that publishes without pause starves neither the backend's pings nor the ack
//! timers; a client that stops reading is closed as a slow consumer and its backend left
//! cleanly; a half-open client with STOMP heart-beats off is found by WebSocket pings; one
//! backend message that many subscriptions match is delivered within the queue's byte budget.
//!
//! The STOMP clients are raw tokio-tungstenite sockets, so a test decides exactly when they
//! read (a library client always reads).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "test-secret";

fn config(backend: u16, proxy: u16, limits: &str, upstream: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[limits]
{limits}

[[route]]
name = "chat"
listen = "127.0.0.1:{proxy}"
client = "stomp"

[route.upstream]
url = "ws://127.0.0.1:{backend}/socket.io/"
dialect = "socketio"
{upstream}
"#,
        admin = free_port(),
    )
}

struct Setup {
    proxy: Proxy,
    _backend: Child,
    backend: u16,
    url: String,
}

async fn setup(backend_args: &[&str], limits: &str, upstream: &str) -> Setup {
    ensure_npm();
    let (child, backend) = start_sio_backend(backend_args);
    let port = free_port();
    let proxy = Proxy::start(&config(backend, port, limits, upstream)).await;
    Setup {
        proxy,
        _backend: child,
        backend,
        // The route sets no path: STOMP's default from the registry.
        url: format!("ws://127.0.0.1:{port}/ws"),
    }
}

/// A STOMP client of user `sub`, connected without heart-beats.
async fn client(url: &str, sub: &str) -> RawWs {
    let mut ws = raw_stomp_ws(url, Some(&jwt(sub, SECRET))).await;
    stomp_connect(&mut ws).await;
    ws
}

fn send_frame(dest: &str, body: &str, receipt: Option<&str>) -> Message {
    let receipt = receipt
        .map(|r| format!("receipt:{r}\n"))
        .unwrap_or_default();
    Message::text(format!(
        "SEND\ndestination:{dest}\ncontent-type:application/json\n{receipt}\n{body}\0"
    ))
}

/// Waits until `series` reads `want`, or fails after `T`.
async fn metric_reaches(proxy: &Proxy, series: &str, want: f64) {
    let until = Instant::now() + T;
    loop {
        if proxy.metric(series).await == Some(want) {
            return;
        }
        assert!(Instant::now() < until, "{series} never reached {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The backend's connected sockets of user `sub`.
async fn backend_sockets(backend: u16, sub: &str) -> usize {
    let clients = http_json(backend, "GET", "/control/clients", None).await;
    clients
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["sub"] == sub)
        .count()
}

/// Publishes 4 KiB bodies to `/app/flood` without pause until `stop`, from its own task.
fn flood(
    mut sink: futures_util::stream::SplitSink<RawWs, Message>,
    stop: Instant,
) -> tokio::task::JoinHandle<(u64, futures_util::stream::SplitSink<RawWs, Message>)> {
    tokio::spawn(async move {
        let mut sent = 0u64;
        let body = format!(r#"{{"pad":"{}"}}"#, "p".repeat(4096));
        while Instant::now() < stop {
            // Batches of feeds, one flush: as fast as the socket takes them.
            for _ in 0..64 {
                if sink
                    .feed(send_frame("/app/flood", &body, None))
                    .await
                    .is_err()
                {
                    return (sent, sink);
                }
                sent += 1;
            }
            if sink.flush().await.is_err() {
                return (sent, sink);
            }
        }
        (sent, sink)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publishing_without_pause_keeps_the_upstream_alive() {
    // The backend pings every 200 ms and gives up after 200 ms more: the proxy must read its
    // pings while the client floods it.
    let s = setup(&["--ping-interval", "200", "--ping-timeout", "200"], "", "").await;
    let ws = client(&s.url, "ann").await;
    let (sink, mut stream) = ws.split();
    let (sent, mut sink) = flood(sink, Instant::now() + Duration::from_secs(3))
        .await
        .unwrap();
    assert!(sent > 1000, "the client published only {sent} frames");
    sink.send(send_frame("/app/message_created", "{}", Some("after")))
        .await
        .unwrap();
    // Everything the proxy said meanwhile: only the receipt, no ERROR (an upstream lost to a
    // ping timeout would be one).
    let f = loop {
        match tokio::time::timeout(T, stream.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.trim().is_empty() => {}
            Some(Ok(Message::Text(t))) => break t.as_str().to_owned(),
            other => panic!("expected a frame, got {other:?}"),
        }
    };
    assert!(f.starts_with("RECEIPT\nreceipt-id:after\n"), "{f}");
    assert_eq!(backend_sockets(s.backend, "ann").await, 1);
    let counts = http_json(s.backend, "GET", "/control/counts", None).await;
    assert_eq!(
        counts["flood"].as_u64(),
        Some(sent),
        "every publish reached the backend, in one session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_ack_expires_on_time_while_the_client_floods() {
    let s = setup(&[], "", "acks = true\nack_timeout_ms = 1000").await;
    let ws = client(&s.url, "bob").await;
    let (mut sink, mut stream) = ws.split();
    // The backend never acks `no_ack`: the receipt fails after the ack timeout.
    sink.send(send_frame("/app/no_ack", "{}", Some("never")))
        .await
        .unwrap();
    let asked = Instant::now();
    let flood_for = Duration::from_secs(6);
    let flooding = flood(sink, asked + flood_for);
    let f = loop {
        match tokio::time::timeout(T, stream.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.trim().is_empty() => {}
            Some(Ok(Message::Text(t))) => break t.as_str().to_owned(),
            other => panic!("expected a frame, got {other:?}"),
        }
    };
    let waited = asked.elapsed();
    assert!(f.starts_with("ERROR\n"), "{f}");
    assert!(f.contains("receipt-id:never\n"), "{f}");
    // The failure came while the client was still publishing (1 s after the request, with
    // the expiry tick), not once it stopped.
    assert!(
        waited < flood_for - Duration::from_secs(1),
        "the ack expired only after {waited:?}"
    );
    flooding.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_as_a_slow_consumer() {
    let s = setup(
        &[],
        "write_timeout_ms = 1000\nqueue_depth = 16\nqueue_bytes = 262144",
        "",
    )
    .await;
    let mut ws = client(&s.url, "carl").await;
    ws.send(Message::text(
        "SUBSCRIBE\nid:0\ndestination:/topic/message_created\nreceipt:sub\n\n\0",
    ))
    .await
    .unwrap();
    let f = next_frame(&mut ws).await;
    assert!(f.starts_with("RECEIPT\nreceipt-id:sub\n"), "{f}");
    // A reader that stays, to show the others are not hurt.
    let mut other = client(&s.url, "dora").await;
    // The backend broadcasts ~32 MiB; `carl` reads none of it.
    let text = "x".repeat(64 * 1024);
    for i in 0..512 {
        let r = http_json(
            s.backend,
            "POST",
            "/control/emit",
            Some(json!({"event":"message_created","args":[{"i":i,"text":text}],"to":"carl"})),
        )
        .await;
        assert_eq!(r["ok"], true);
        if backend_sockets(s.backend, "carl").await == 0 {
            break;
        }
    }
    // The proxy gave up on `carl` and left the backend cleanly.
    let until = Instant::now() + T;
    while backend_sockets(s.backend, "carl").await > 0 {
        assert!(
            Instant::now() < until,
            "the backend still has carl's socket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Reading again: what the kernel held, then the last words (ERROR), then the close.
    let mut saw_error = false;
    let code = loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.starts_with("ERROR\n") => {
                assert!(t.contains("slow consumer"), "{t}");
                saw_error = true;
            }
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(saw_error, "no ERROR before the close ({code:?})");
    assert_eq!(code, Some(1008));
    metric_reaches(
        &s.proxy,
        "switchboard_sessions_total{route=\"chat\",outcome=\"slow_consumer\"}",
        1.0,
    )
    .await;
    // The other client goes on.
    other
        .send(send_frame("/app/message_created", "{}", Some("ok")))
        .await
        .unwrap();
    let f = next_frame(&mut other).await;
    assert!(f.starts_with("RECEIPT\nreceipt-id:ok\n"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_client_without_heartbeats_is_found_by_websocket_pings() {
    let s = setup(&[], "idle_ping_ms = 300", "").await;
    // `eve` never reads again, so she never answers a ping: as a half-open TCP connection.
    let mut eve = client(&s.url, "eve").await;
    // `fay` reads (tungstenite answers pings while reading) and stays.
    let fay = client(&s.url, "fay").await;
    let (mut fay_sink, mut fay_stream) = fay.split();
    let (tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = fay_stream.next().await {
            if let Message::Text(t) = m
                && !t.trim().is_empty()
            {
                let _ = tx.send(t.as_str().to_owned());
            }
        }
    });
    metric_reaches(
        &s.proxy,
        "switchboard_sessions_total{route=\"chat\",outcome=\"timeout\"}",
        1.0,
    )
    .await;
    // The proxy left the backend before it counted the session; the backend hears the close
    // on its own time (its count is read over HTTP, which can come first).
    let until = Instant::now() + T;
    while backend_sockets(s.backend, "eve").await > 0 {
        assert!(Instant::now() < until, "the backend still has eve's socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Fay outlived several ping intervals.
    tokio::time::sleep(Duration::from_millis(700)).await;
    fay_sink
        .send(send_frame("/app/message_created", "{}", Some("alive")))
        .await
        .unwrap();
    let f = tokio::time::timeout(T, frames.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(f.starts_with("RECEIPT\nreceipt-id:alive\n"), "{f}");
    // Eve's socket was closed by the proxy (what she reads now ends in a close).
    let code = loop {
        match tokio::time::timeout(T, eve.next()).await.unwrap() {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(code.is_some_and(|c| c != 1000), "{code:?}");
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_for_many_subscriptions_stays_within_the_queue_budget() {
    const SUBS: usize = 200;
    let mut s = setup(&[], "queue_bytes = 1048576", "").await;
    let mut ws = client(&s.url, "gus").await;
    for i in 0..SUBS {
        ws.feed(Message::text(format!(
            "SUBSCRIBE\nid:{i}\ndestination:/topic/message_created\n\n\0"
        )))
        .await
        .unwrap();
    }
    ws.send(send_frame("/app/ping", "{}", Some("subscribed")))
        .await
        .unwrap();
    let f = next_frame(&mut ws).await;
    assert!(f.starts_with("RECEIPT\nreceipt-id:subscribed\n"), "{f}");
    let pid = s.proxy.child().pid();
    let before = peak_rss_kib(pid);
    // One ~700 KB message that all 200 subscriptions match: 140 MB once copied into frames.
    let text = "y".repeat(700 * 1024);
    let r = http_json(
        s.backend,
        "POST",
        "/control/emit",
        Some(json!({"event":"message_created","args":[{"text":text}],"to":"gus"})),
    )
    .await;
    assert_eq!(r["ok"], true);
    let mut subs = std::collections::BTreeSet::new();
    while subs.len() < SUBS {
        let f = next_frame(&mut ws).await;
        assert!(f.starts_with("MESSAGE\n"), "{}", &f[..f.len().min(200)]);
        assert!(f.len() > 700 * 1024);
        let sub = f
            .lines()
            .find_map(|l| l.strip_prefix("subscription:"))
            .unwrap()
            .to_owned();
        assert!(subs.insert(sub), "a subscription got the message twice");
    }
    let grown_mib = (peak_rss_kib(pid).saturating_sub(before)) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB for {SUBS} copies of one message");
    // Encoded one copy at a time behind a 1 MiB queue: a few MiB, not all 140 at once.
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");
    let v: Value = s
        .proxy
        .metric("switchboard_sessions_active")
        .await
        .map(Value::from)
        .unwrap();
    assert_eq!(v, json!(1.0));
}
