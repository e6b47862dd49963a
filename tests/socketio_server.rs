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
    Driver, Proxy, RawWs, free_port, http_request, jwt, sio_control_emit, sio_control_received,
    start_sio_backend,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

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

/// Emit `subscribe` for `topic` with an ack. Toward a Socket.IO backend the route is
/// transparent: the event is the backend's, and so is its answer (`sio_backend.js` acks any
/// event it has no handler for with `{ok, event, args}`).
async fn subscribe(d: &mut Driver, c: &str, topic: &str, req: u64) {
    emit_convention(d, c, "subscribe", topic, req).await;
}

async fn emit_convention(d: &mut Driver, c: &str, event: &str, topic: &str, req: u64) {
    d.send(
        json!({"op":"emit","c":c,"event":event,"args":[{"topic":topic}],"ack":true,"reqId":req}),
    )
    .await;
    let ack = d
        .expect(T, |v| v["c"] == c && v["ev"] == "ack" && v["reqId"] == req)
        .await;
    assert_eq!(
        ack["args"],
        json!([{"ok":true,"event":event,"args":[{"topic":topic}]}]),
        "{ack}"
    );
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

    // `unsubscribe` is the backend's event too; the backend's emit arrives once.
    emit_convention(&mut d, "alice", "unsubscribe", "message_created", 4).await;
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
    // Without `acks` upstream the ack still carries the backend's answer: the client
    // expects data back, and a Socket.IO backend gives it.
    d.send(json!({"op":"emit","c":"bob","event":"message_updated","args":[{"v":2}],"ack":true,"reqId":2})).await;
    let ack = d
        .expect(T, |v| {
            v["c"] == "bob" && v["ev"] == "ack" && v["reqId"] == 2
        })
        .await;
    assert_eq!(
        ack["args"],
        json!([{"ok": true, "event": "message_updated"}]),
        "{ack}"
    );
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

async fn raw_ws(port: u16) -> RawWs {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

/// A raw WebSocket client that has joined the main namespace with `token`.
async fn joined_ws(port: u16, token: &str) -> RawWs {
    let mut ws = raw_ws(port).await;
    next_text(&mut ws).await;
    ws.send(Message::text(format!("40{{\"token\":\"{token}\"}}")))
        .await
        .unwrap();
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
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
    // Text that is not UTF-8 is relayed as it came, as a plain proxy does: the backend's
    // WebSocket (`ws` under Engine.IO) refuses it with 1007, and that close reaches the
    // client (the proxy had closed with 1000 itself).
    let mut ws = ws_with_origin(s.port, None, "").await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("0{"));
    let bad = Frame::message(
        &b"42[\"x\",\"\xff\xfe\"]"[..],
        OpCode::Data(Data::Text),
        true,
    );
    ws.send(Message::Frame(bad)).await.unwrap();
    assert_eq!(common::close_code(&mut ws).await, 1007);
}

/// A WebSocket handshake to the route, with `origin` and `query` (after `EIO=4&transport=websocket`).
async fn ws_with_origin(
    port: u16,
    origin: Option<&str>,
    query: &str,
) -> Result<RawWs, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket{query}");
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status of a refused WebSocket handshake.
fn refused_status(r: Result<RawWs, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

/// A polling request with an Origin: the raw response (status line, headers, body).
async fn polling_with_origin(
    addr: SocketAddr,
    method: &str,
    query: &str,
    origin: &str,
    body: &str,
) -> String {
    raw_http(
        addr,
        &format!(
            "{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// The sid of a long-polling handshake's raw response.
fn sid_of(raw: &str) -> String {
    let body = raw.split("\r\n\r\n").nth(1).unwrap();
    let v: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    v["sid"].as_str().unwrap().to_owned()
}

/// Origin checks: a page of the listener's own origin needs no allowlist (long-polling and
/// WebSocket); a foreign one is refused, its WebSocket upgrade included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_same_origin_and_refused_upgrade() {
    let s = Setup::new("", "").await;
    let own = format!("http://127.0.0.1:{}", s.port);
    let open = polling_with_origin(s.addr(), "GET", "", &own, "").await;
    assert!(open.starts_with("HTTP/1.1 200"), "{open}");
    let lower = open.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("access-control-allow-origin: {own}")),
        "{open}"
    );
    assert!(
        lower.contains("access-control-allow-credentials: true"),
        "{open}"
    );
    let sid = sid_of(&open);
    let token = jwt("alice", SECRET);
    let post = polling_with_origin(
        s.addr(),
        "POST",
        &format!("&sid={sid}"),
        &own,
        &format!("40{{\"token\":\"{token}\"}}"),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 200"), "{post}");
    assert!(post.ends_with("ok"), "{post}");
    let poll = polling_with_origin(s.addr(), "GET", &format!("&sid={sid}"), &own, "").await;
    assert!(poll.starts_with("HTTP/1.1 200"), "{poll}");
    assert!(poll.contains("40{\"sid\":"), "{poll}");

    // Foreign origins: long-polling and the WebSocket upgrade alike.
    let evil = "https://evil.example";
    let no = polling_with_origin(s.addr(), "GET", "", evil, "").await;
    assert!(no.starts_with("HTTP/1.1 403"), "{no}");
    assert!(no.contains(r#"{"code":4,"message":"Forbidden"}"#), "{no}");
    assert_eq!(
        refused_status(ws_with_origin(s.port, Some(evil), "").await),
        403
    );
    // Another port of the same host is another origin.
    let other_port = format!("http://127.0.0.1:{}", s.port.wrapping_add(1));
    assert_eq!(
        refused_status(ws_with_origin(s.port, Some(&other_port), "").await),
        403
    );
    // An upgrade of a polling session is checked too.
    let sid = sid_of(&polling_with_origin(s.addr(), "GET", "", &own, "").await);
    assert_eq!(
        refused_status(ws_with_origin(s.port, Some(evil), &format!("&sid={sid}")).await),
        403
    );
    // The listener's own origin, and no Origin at all (Node clients), may open a WebSocket.
    for origin in [Some(own.as_str()), None] {
        let mut ws = ws_with_origin(s.port, origin, "").await.unwrap();
        assert!(next_text(&mut ws).await.starts_with("0{"), "{origin:?}");
    }
}

/// `cors_origins = ["*"]`: any origin, answered `*` without credentials; a listed origin's
/// WebSocket upgrade is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_wildcard_and_listed_upgrade() {
    let s = Setup::with_tables("", "", "\n[route.socketio]\ncors_origins = [\"*\"]\n").await;
    let any = "https://anywhere.example";
    let open = polling_with_origin(s.addr(), "GET", "", any, "").await;
    assert!(open.starts_with("HTTP/1.1 200"), "{open}");
    let lower = open.to_ascii_lowercase();
    assert!(
        lower.contains("access-control-allow-origin: *\r\n"),
        "{open}"
    );
    assert!(
        !lower.contains("access-control-allow-credentials"),
        "{open}"
    );
    let sid = sid_of(&open);
    let post = polling_with_origin(s.addr(), "POST", &format!("&sid={sid}"), any, "6").await;
    assert!(post.starts_with("HTTP/1.1 200"), "{post}");
    assert!(
        post.to_ascii_lowercase()
            .contains("access-control-allow-origin: *\r\n"),
        "{post}"
    );
    let mut ws = ws_with_origin(s.port, Some(any), "").await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("0{"));

    let s = Setup::with_tables(
        "",
        "",
        "\n[route.socketio]\ncors_origins = [\"https://app.example\"]\n",
    )
    .await;
    let mut ws = ws_with_origin(s.port, Some("https://app.example"), "")
        .await
        .unwrap();
    assert!(next_text(&mut ws).await.starts_with("0{"));
    assert_eq!(
        refused_status(ws_with_origin(s.port, Some("https://evil.example"), "").await),
        403
    );
}

/// Polling session upgraded by hand (`2probe`, `3probe`, `5`): the WebSocket.
async fn upgraded_ws(port: u16, sid: &str) -> RawWs {
    let mut ws = ws_with_origin(port, None, &format!("&sid={sid}"))
        .await
        .unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::text("5")).await.unwrap();
    ws
}

/// A WebSocket message over the route's `max_payload` is refused by the WebSocket layer
/// before it is buffered, and closes with 1009, on a WebSocket-first session and on an
/// upgraded one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_websocket_message_closes_1009() {
    let s = Setup::with_tables("", "", "\n[route.socketio]\nmax_payload = 1000\n").await;
    let token = jwt("alice", SECRET);
    let big = format!("42[\"x\",\"{}\"]", "a".repeat(1000));
    // Before CONNECT, after CONNECT, and as a binary message.
    for (connect, msg) in [
        (false, Message::text(big.clone())),
        (true, Message::text(big.clone())),
        (true, Message::binary(vec![7u8; 1001])),
    ] {
        let mut ws = raw_ws(s.port).await;
        next_text(&mut ws).await;
        if connect {
            ws.send(Message::text(format!("40{{\"token\":\"{token}\"}}")))
                .await
                .unwrap();
            assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
        }
        ws.send(msg).await.unwrap();
        assert_eq!(close_code(&mut ws).await, 1009, "connect={connect}");
    }
    // Exactly max_payload is fine.
    let mut ws = joined_ws(s.port, &token).await;
    let fits = format!("42[\"x\",\"{}\"]", "a".repeat(1000 - 10));
    assert_eq!(fits.len(), 1000);
    ws.send(Message::text(fits)).await.unwrap();
    ws.send(Message::text("2")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3");

    // Upgraded from long-polling.
    let sid = handshake(s.addr()).await;
    let mut ws = upgraded_ws(s.port, &sid).await;
    ws.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
}

/// A long-polling POST carries at most `max_packets_per_post` packets; more is the
/// documented 400 and ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_packets_in_one_post() {
    let s = Setup::new("", "").await;
    let addr = s.addr();
    let post = |sid: String, body: String| async move {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        http_request(addr, "POST", &path, Some(&body), "text/plain;charset=UTF-8")
            .await
            .unwrap()
    };
    let noops = |n: usize| vec!["6"; n].join("\u{1e}");
    // The default limit, 1024, fits.
    let sid = handshake(addr).await;
    assert_eq!(post(sid.clone(), noops(1024)).await, (200, "ok".to_owned()));
    // One more is refused, and the session is over.
    let (st, text) = post(sid.clone(), noops(1025)).await;
    assert_eq!(st, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"code":3,"message":"Bad request"})
    );
    let (st, text) = http_request(
        addr,
        "GET",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        None,
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{text}");
    assert!(text.ends_with('1'), "the close packet: {text:?}");
    // Half a megabyte of noops (within maxPayload) is refused the same way.
    let sid = handshake(addr).await;
    let (st, _) = post(sid, noops(250_000)).await;
    assert_eq!(st, 400);

    // The key is configurable.
    let s = Setup::with_tables("", "", "\n[route.socketio]\nmax_packets_per_post = 2\n").await;
    let addr = s.addr();
    let post = |sid: String, body: String| async move {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        http_request(addr, "POST", &path, Some(&body), "text/plain;charset=UTF-8")
            .await
            .unwrap()
    };
    let sid = handshake(addr).await;
    assert_eq!(post(sid.clone(), noops(2)).await, (200, "ok".to_owned()));
    assert_eq!(post(sid, noops(3)).await.0, 400);
}

/// The connect timeout runs from the Engine.IO handshake: a client that answers every ping
/// (and sends a noop just before the deadline) but never CONNECTs is closed on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_absolute() {
    let s = Setup::with_tables(
        "",
        "",
        "\n[route.socketio]\nconnect_timeout_ms = 2000\nping_interval_ms = 1000\nping_timeout_ms = 1000\n",
    )
    .await;
    let start = std::time::Instant::now();
    let mut ws = raw_ws(s.port).await;
    assert!(next_text(&mut ws).await.starts_with("0{"));
    let mut noop_sent = false;
    let mut pongs = 0;
    let (code, reason) = loop {
        assert!(start.elapsed() < T, "never closed");
        if !noop_sent && start.elapsed() >= Duration::from_millis(1500) {
            ws.send(Message::text("6")).await.unwrap();
            noop_sent = true;
        }
        match tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.unwrap();
                pongs += 1;
            }
            Ok(Some(Ok(Message::Close(Some(f))))) => break (u16::from(f.code), f.reason),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let took = start.elapsed();
    assert_eq!((code, reason.as_str()), (1000, "connect timeout"));
    assert!(pongs >= 1, "the client answered pings: {pongs}");
    // Counted from the handshake (2 s), not from the first message (the pong at 1 s, so
    // 3 s) nor from the last (the noop at 1.5 s, so 3.5 s).
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_millis(2950), "{took:?}");
}

/// Each namespace is joined upstream with its own auth, as socket.io checks auth per
/// namespace: the backend's refusal (`44` with its message and data) reaches the client and
/// the connection goes on. A reserved event name from the client closes the connection, as
/// socket.io does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_auth_and_reserved_events() {
    let s = Setup::with_tables(
        "",
        "",
        "\n[route.socketio]\nnamespaces = [\"/\", \"/admin\"]\n",
    )
    .await;
    let token = jwt("alice", SECRET);
    let other = jwt("mallory", SECRET);
    let mut ws = joined_ws(s.port, &token).await;
    ws.send(Message::text("40/admin,")).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/admin,{"message":"invalid token","data":{"reason":"jwt"}}"#
    );
    ws.send(Message::text(format!("40/admin,{{\"token\":\"{other}\"}}")))
        .await
        .unwrap();
    assert!(next_text(&mut ws).await.starts_with("40/admin,{\"sid\":"));
    ws.send(Message::text(r#"42/admin,["disconnect","bye"]"#))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 1002);
}

/// One server frame off a raw socket: (opcode, payload). Server frames are unmasked.
async fn read_frame(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    s.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

/// The limit is checked against the frame header, before the payload is read: a frame that
/// announces more than `max_payload` is answered with 1009 while its payload is still
/// missing (a limit checked after buffering would wait for it forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_is_refused_from_its_header() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Setup::with_tables("", "", "\n[route.socketio]\nmax_payload = 1000\n").await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let req = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        s.addr()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (op, open) = tokio::time::timeout(T, read_frame(&mut tcp)).await.unwrap();
    assert_eq!(op, 1);
    assert!(open.starts_with(b"0{"));
    // A masked text frame announcing 5000 bytes, and only 10 of them.
    let mut frame = vec![0x81, 0x80 | 126];
    frame.extend_from_slice(&5000u16.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(b"42[\"x\",\"aa");
    tcp.write_all(&frame).await.unwrap();
    let (op, payload) = tokio::time::timeout(T, read_frame(&mut tcp)).await.unwrap();
    assert_eq!(op, 8, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
}
