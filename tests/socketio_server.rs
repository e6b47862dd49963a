//! The Socket.IO server side of the proxy (Engine.IO transport + Socket.IO server role) against
//! the real socket.io-client 4.8 (`tests/peers/sio_driver.js`), with a real Socket.IO 4.8
//! backend (`tests/peers/sio_backend.js`) behind a socketio → socketio route.
//!
//! Owns: end-to-end checks of long-polling, the upgrade to WebSocket, WebSocket-only clients,
//! auth refusal, Engine.IO HTTP errors, malformed input isolation and passthrough mode.
//! Must not touch: the harness in `tests/common` (shared with other test files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    Driver, Proxy, free_port, http_request, jwt, sio_control_emit, sio_control_received,
    start_sio_backend,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "sio-server-secret";

/// A proxy config with one Socket.IO route toward the backend on `backend`.
fn config(
    admin: u16,
    listen: u16,
    backend: u16,
    route_extra: &str,
    upstream_extra: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "sio"
listen = "127.0.0.1:{listen}"
path = "/socket.io/"
client = "socketio"
{route_extra}

[route.upstream]
url = "ws://127.0.0.1:{backend}/socket.io/"
dialect = "socketio"
{upstream_extra}
"#
    )
}

struct Setup {
    _backend: common::Child,
    backend_port: u16,
    proxy: Proxy,
    port: u16,
}

impl Setup {
    async fn new(route_extra: &str, upstream_extra: &str) -> Setup {
        Self::with_tables(route_extra, upstream_extra, "").await
    }

    /// `tables` is appended after the upstream table (e.g. a `[route.socketio]` table).
    async fn with_tables(route_extra: &str, upstream_extra: &str, tables: &str) -> Setup {
        let (backend, backend_port) = start_sio_backend(&["--secret", SECRET]);
        let port = free_port();
        let mut text = config(free_port(), port, backend_port, route_extra, upstream_extra);
        text.push_str(tables);
        let proxy = Proxy::start(&text).await;
        Setup {
            _backend: backend,
            backend_port,
            proxy,
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// Subscribe `c` to `topic` with an ack, and check the `[null]` answer.
async fn subscribe(d: &mut Driver, c: &str, topic: &str, req: u64) {
    d.send(json!({"op":"emit","c":c,"event":"subscribe","args":[{"topic":topic}],"ack":true,"reqId":req})).await;
    let ack = d
        .expect(T, |v| v["c"] == c && v["ev"] == "ack" && v["reqId"] == req)
        .await;
    assert_eq!(ack["args"], json!([null]), "{ack}");
}

/// Connect, subscribe, emit with an ack, receive the broadcast: the whole chat flow.
async fn chat_flow(transports: Value) {
    let s = Setup::new("", "acks = true").await;
    let mut d = Driver::sio().await;
    let default_transports = transports.is_null();
    let token = jwt("alice", SECRET);
    d.send(json!({"op":"connect","c":"alice","url":s.url(),"auth":{"token":token},"transports":transports})).await;
    let ev = d.expect_ev(T, "alice", "connect").await;
    assert!(ev["id"].as_str().is_some_and(|id| !id.is_empty()), "{ev}");
    if default_transports {
        let up = d.expect_ev(T, "alice", "transport").await;
        assert_eq!(up["name"], "websocket", "upgrade from polling: {up}");
    } else {
        assert_eq!(ev["transport"], "websocket");
    }

    subscribe(&mut d, "alice", "message_created", 1).await;
    let msg = json!({"conversation":"c1","text":"hello"});
    d.send(json!({"op":"emit","c":"alice","event":"message_created","args":[msg],"ack":true,"reqId":2})).await;
    let ack = d
        .expect(T, |v| {
            v["c"] == "alice" && v["ev"] == "ack" && v["reqId"] == 2
        })
        .await;
    assert_eq!(
        ack["args"],
        json!([{"ok":true,"event":"message_created"}]),
        "{ack}"
    );
    let ev = d
        .expect(T, |v| {
            v["c"] == "alice" && v["ev"] == "event" && v["event"] == "message_created"
        })
        .await;
    assert_eq!(ev["args"], json!([msg]));
    let rec = sio_control_received(s.backend_port).await;
    assert!(
        rec.iter().any(|r| r["sub"] == "alice"
            && r["event"] == "message_created"
            && r["args"] == json!([msg])),
        "{rec:?}"
    );

    // Server pushes reach the client whether or not it subscribed: against a Socket.IO
    // backend the route is transparent, as socket.io clients never subscribe.
    sio_control_emit(s.backend_port, "message_created", json!([{"n":1}]), None).await;
    sio_control_emit(s.backend_port, "other_event", json!([{"n":2}]), None).await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "alice" && v["ev"] == "event" && v["args"] == json!([{"n":1}])
        })
        .await;
    assert_eq!(ev["event"], "message_created");
    let ev = d
        .expect(T, |v| {
            v["c"] == "alice" && v["ev"] == "event" && v["event"] == "other_event"
        })
        .await;
    assert_eq!(ev["args"], json!([{"n":2}]));

    // Binary both ways: subscribe to `echo`, emit a buffer, get the same bytes back.
    subscribe(&mut d, "alice", "echo", 3).await;
    d.send(json!({"op":"emit","c":"alice","event":"echo","args":[{"$bin":"AAEC/w=="}]}))
        .await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "alice" && v["ev"] == "event" && v["event"] == "echo"
        })
        .await;
    assert_eq!(ev["args"], json!([{"$bin":"AAEC/w=="}]));

    // Unsubscribe is acknowledged; the subscription no longer claims the event, which then
    // arrives once, as the backend's plain emit.
    d.send(json!({"op":"emit","c":"alice","event":"unsubscribe","args":[{"topic":"message_created"}],"ack":true,"reqId":4})).await;
    let ack = d
        .expect(T, |v| {
            v["c"] == "alice" && v["ev"] == "ack" && v["reqId"] == 4
        })
        .await;
    assert_eq!(ack["args"], json!([null]));
    sio_control_emit(s.backend_port, "message_created", json!([{"n":3}]), None).await;
    let extra = d.collect(Duration::from_millis(400)).await;
    let n = extra
        .iter()
        .filter(|v| v["event"] == "message_created")
        .count();
    assert_eq!(n, 1, "{extra:?}");

    d.send(json!({"op":"disconnect","c":"alice"})).await;
    let ev = d.expect_ev(T, "alice", "disconnect").await;
    assert_eq!(ev["reason"], "io client disconnect");
    drop(s.proxy);
}

/// (a) Library defaults: long-polling first, then the upgrade to WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_client_polls_then_upgrades() {
    chat_flow(Value::Null).await;
}

/// (b) WebSocket only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_only_client() {
    chat_flow(json!(["websocket"])).await;
}

/// Long-polling only: everything rides on GET/POST, pings included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only_client() {
    let s = Setup::with_tables(
        "",
        "",
        "\n[route.socketio]\nping_interval_ms = 300\nping_timeout_ms = 1000\n",
    )
    .await;
    let mut d = Driver::sio().await;
    let token = jwt("bob", SECRET);
    d.send(json!({"op":"connect","c":"bob","url":s.url(),"auth":{"token":token},"transports":["polling"]})).await;
    let ev = d.expect_ev(T, "bob", "connect").await;
    assert_eq!(ev["transport"], "polling");
    subscribe(&mut d, "bob", "message_updated", 1).await;
    // Several pings go by (300 ms interval); the session must stay up.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Without `acks` upstream, the ack confirms the write: no arguments.
    d.send(json!({"op":"emit","c":"bob","event":"message_updated","args":[{"v":2}],"ack":true,"reqId":2})).await;
    let ack = d
        .expect(T, |v| {
            v["c"] == "bob" && v["ev"] == "ack" && v["reqId"] == 2
        })
        .await;
    assert_eq!(ack["args"], json!([]), "{ack}");
    let ev = d
        .expect(T, |v| {
            v["c"] == "bob" && v["ev"] == "event" && v["event"] == "message_updated"
        })
        .await;
    assert_eq!(ev["args"], json!([{"v":2}]));
    let extra = d.collect(Duration::from_millis(200)).await;
    assert!(!extra.iter().any(|v| v["ev"] == "disconnect"), "{extra:?}");
}

/// (c) A token the backend refuses: `connect_error` with the backend's message and data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_connect_error() {
    let s = Setup::new("", "").await;
    let mut d = Driver::sio().await;
    let wrong = jwt("mallory", "not-the-secret");
    for (c, transports) in [
        ("default", Value::Null),
        ("poll", json!(["polling"])),
        ("ws", json!(["websocket"])),
    ] {
        d.send(json!({"op":"connect","c":c,"url":s.url(),"auth":{"token":wrong},"transports":transports})).await;
        let err = d.expect_ev(T, c, "connect_error").await;
        assert_eq!(err["message"], "invalid token", "{c}: {err}");
        assert_eq!(err["data"], json!({"reason":"jwt"}), "{c}: {err}");
    }
    let extra = d.collect(Duration::from_millis(300)).await;
    assert!(!extra.iter().any(|v| v["ev"] == "connect"), "{extra:?}");
}

/// A long-polling handshake by hand: returns the sid.
async fn handshake(addr: SocketAddr) -> String {
    let (status, body) = http_request(
        addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        None,
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let open = body.strip_prefix('0').expect("open packet");
    let v: Value = serde_json::from_str(open).unwrap();
    assert_eq!(v["upgrades"], json!(["websocket"]));
    assert_eq!(v["pingInterval"], 25000);
    v["sid"].as_str().unwrap().to_owned()
}

/// (d) Engine.IO HTTP errors, byte for byte as the reference server sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engineio_http_errors() {
    let s = Setup::with_tables("", "", "\n[route.socketio]\nmax_payload = 1000\n").await;
    let addr = s.addr();
    let get = |path: &'static str| http_request(addr, "GET", path, None, "text/plain");
    let cases: [(&str, u16, Value); 5] = [
        (
            "/socket.io/?EIO=3&transport=polling",
            400,
            json!({"code":5,"message":"Unsupported protocol version"}),
        ),
        (
            "/socket.io/?EIO=4&transport=foo",
            400,
            json!({"code":0,"message":"Transport unknown"}),
        ),
        (
            "/socket.io/?EIO=4&transport=polling&sid=nope",
            400,
            json!({"code":1,"message":"Session ID unknown"}),
        ),
        (
            "/socket.io/?EIO=4&transport=websocket",
            400,
            json!({"code":3,"message":"Bad request"}),
        ),
        (
            "/socket.io/?EIO=4",
            400,
            json!({"code":0,"message":"Transport unknown"}),
        ),
    ];
    for (path, status, body) in cases {
        let (st, text) = get(path).await.unwrap();
        assert_eq!(st, status, "{path}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            body,
            "{path}"
        );
    }
    let (st, text) = http_request(
        addr,
        "PUT",
        "/socket.io/?EIO=4&transport=polling",
        None,
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(st, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"code":2,"message":"Bad handshake method"})
    );

    // A POST bigger than maxPayload is refused before it is read.
    let sid = handshake(addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let big = format!("42[\"x\",\"{}\"]", "a".repeat(2000));
    let (st, _) = http_request(addr, "POST", &path, Some(&big), "text/plain;charset=UTF-8")
        .await
        .unwrap();
    assert_eq!(st, 413);
    // One that fits is taken.
    let (st, text) = http_request(addr, "POST", &path, Some("40"), "text/plain;charset=UTF-8")
        .await
        .unwrap();
    assert_eq!((st, text.as_str()), (200, "ok"));
    // A malformed body is a 400 and ends the session: its sid is then unknown.
    let (st, _) = http_request(
        addr,
        "POST",
        &path,
        Some("9nope"),
        "text/plain;charset=UTF-8",
    )
    .await
    .unwrap();
    assert_eq!(st, 400);
    let (st, text) = http_request(addr, "GET", &path, None, "text/plain")
        .await
        .unwrap();
    assert_eq!(st, 200, "{text}");
    assert!(
        text.ends_with('1'),
        "the last poll carries the close packet: {text:?}"
    );
    let mut gone = false;
    for _ in 0..50 {
        let (st, text) = http_request(addr, "GET", &path, None, "text/plain")
            .await
            .unwrap();
        if st == 400 {
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                json!({"code":1,"message":"Session ID unknown"})
            );
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the sid of a closed session must be forgotten");
}

/// CORS for browser long-polling: allowed origins get the headers, others a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins() {
    let s = Setup::with_tables(
        "",
        "",
        "\n[route.socketio]\ncors_origins = [\"https://app.example\"]\n",
    )
    .await;
    let raw = |origin: &str, method: &str| {
        format!(
            "{method} /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
        )
    };
    let ok = raw_http(s.addr(), &raw("https://app.example", "GET")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("access-control-allow-origin: https://app.example"),
        "{ok}"
    );
    assert!(
        ok.to_ascii_lowercase()
            .contains("access-control-allow-credentials: true"),
        "{ok}"
    );
    let pre = raw_http(s.addr(), &raw("https://app.example", "OPTIONS")).await;
    assert!(pre.starts_with("HTTP/1.1 204"), "{pre}");
    assert!(
        pre.to_ascii_lowercase()
            .contains("access-control-allow-methods: get, post"),
        "{pre}"
    );
    assert!(
        pre.to_ascii_lowercase()
            .contains("access-control-allow-headers: content-type"),
        "{pre}"
    );
    let no = raw_http(s.addr(), &raw("https://evil.example", "GET")).await;
    assert!(no.starts_with("HTTP/1.1 403"), "{no}");
    assert!(no.contains(r#"{"code":4,"message":"Forbidden"}"#), "{no}");
}

async fn raw_http(addr: SocketAddr, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_ws(port: u16) -> RawWs {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

/// The next text message, skipping Engine.IO pings.
async fn next_text(ws: &mut RawWs) -> String {
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {}
            Some(Ok(Message::Text(t))) => return t.as_str().to_owned(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The close frame's code, once the server closes.
async fn close_code(ws: &mut RawWs) -> u16 {
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// (e) Malformed packets close only the connection that sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_isolated() {
    let s = Setup::new("", "").await;
    let mut d = Driver::sio().await;
    let token = jwt("alice", SECRET);
    d.send(json!({"op":"connect","c":"alice","url":s.url(),"auth":{"token":token},"transports":["websocket"]})).await;
    d.expect_ev(T, "alice", "connect").await;
    subscribe(&mut d, "alice", "message_created", 1).await;

    let bad: [(&str, u16); 5] = [
        ("42[\"unterminated", 1002),
        ("9", 1002),
        ("42{\"not\":\"an array\"}", 1002),
        ("4511-[\"too\",\"many\"]", 1009),
        ("", 1002),
    ];
    for (packet, code) in bad {
        let mut ws = raw_ws(s.port).await;
        let open = next_text(&mut ws).await;
        assert!(open.starts_with("0{"), "{open}");
        let v: Value = serde_json::from_str(&open[1..]).unwrap();
        assert_eq!(v["upgrades"], json!([]));
        ws.send(Message::text(format!("40{{\"token\":\"{token}\"}}")))
            .await
            .unwrap();
        let reply = next_text(&mut ws).await;
        assert!(reply.starts_with("40{\"sid\":"), "{reply}");
        ws.send(Message::text(packet)).await.unwrap();
        assert_eq!(close_code(&mut ws).await, code, "{packet:?}");
    }
    // A namespace the route does not serve is refused, the connection stays.
    let mut ws = raw_ws(s.port).await;
    next_text(&mut ws).await;
    ws.send(Message::text("40/nope,")).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    // A garbage long-polling body only ends that session.
    let sid = handshake(s.addr()).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (st, _) = http_request(s.addr(), "POST", &path, Some("bnot*base64"), "text/plain")
        .await
        .unwrap();
    assert_eq!(st, 400);

    // Alice is untouched.
    d.send(json!({"op":"emit","c":"alice","event":"message_created","args":[{"still":"here"}]}))
        .await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "alice" && v["ev"] == "event" && v["event"] == "message_created"
        })
        .await;
    assert_eq!(ev["args"], json!([{"still":"here"}]));
    let extra = d.collect(Duration::from_millis(200)).await;
    assert!(!extra.iter().any(|v| v["ev"] == "disconnect"), "{extra:?}");
}

/// (f) Passthrough: the backend's own Engine.IO session, forwarded message for message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_mode() {
    let s = Setup::new("mode = \"passthrough\"", "").await;
    let mut d = Driver::sio().await;
    let token = jwt("carol", SECRET);
    d.send(json!({"op":"connect","c":"carol","url":s.url(),"auth":{"token":token},"transports":["websocket"]})).await;
    d.expect_ev(T, "carol", "connect").await;
    d.send(json!({"op":"emit","c":"carol","event":"message_deleted","args":[{"id":9}],"ack":true,"reqId":1})).await;
    let ack = d.expect(T, |v| v["c"] == "carol" && v["ev"] == "ack").await;
    assert_eq!(ack["args"], json!([{"ok":true,"event":"message_deleted"}]));
    // No subscription needed: the backend's broadcast reaches the client as-is.
    let ev = d
        .expect(T, |v| {
            v["c"] == "carol" && v["ev"] == "event" && v["event"] == "message_deleted"
        })
        .await;
    assert_eq!(ev["args"], json!([{"id":9}]));
    let clients = common::http_json(s.backend_port, "GET", "/control/clients", None).await;
    assert_eq!(clients[0]["sub"], "carol", "{clients}");
    // Long-polling cannot be passed through.
    let (st, text) = http_request(
        s.addr(),
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        None,
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(st, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"code":0,"message":"Transport unknown"})
    );
}
