//! Socket.IO fidelity on a socketio → socketio route: the route is invisible to socket.io
//! clients and to a socket.io 4.8 backend (`tests/peers/sio_reference.js`, the reference
//! application of the official Socket.IO protocol test suite).
//!
//! Owns: every argument kept (events and acks, both ways), binary attachments in place with
//! their placeholder numbering, ack ids carried to the backend and its acks back, namespaces
//! multiplexed over one upstream Engine.IO connection each with its own auth, the backend's
//! `40`/`44`/`41` in their namespace, unlisted namespaces refused as socket.io does, and the
//! Engine.IO long-polling points (closed and timed-out sids, a client close, an upgraded
//! session) checked on the raw wire. With socket.io-client 4.8 (`sio_driver.js`) and raw
//! WebSocket/HTTP clients.
//! Must not touch: the harness in `tests/common` (shared with other test files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Child, Driver, Proxy, RawWs, free_port, http_request, node_command};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

struct Setup {
    backend: Child,
    _proxy: Proxy,
    port: u16,
}

impl Setup {
    /// The reference backend, and a socketio → socketio route in front of it configured as
    /// the issue's run was: ping 300/200, connect timeout 1 s, namespaces `/` and `/custom`
    /// (plus `/forbidden`, which the backend refuses with a middleware error).
    async fn new() -> Setup {
        Self::with_ping(300, 200).await
    }

    /// The same with other ping settings on the route, for raw checks that take their time
    /// without answering pings.
    async fn with_ping(interval_ms: u64, timeout_ms: u64) -> Setup {
        let mut cmd = node_command("sio_reference.js");
        cmd.arg("0");
        let mut backend = Child::spawn("sio_reference", cmd);
        let line = backend.wait_line_blocking(T, |l| l.starts_with("READY "));
        let backend_port: u16 = line["READY ".len()..].trim().parse().unwrap();
        let port = free_port();
        let admin = free_port();
        let text = format!(
            r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "sio"
listen = "127.0.0.1:{port}"
path = "/socket.io/"
client = "socketio"

[route.upstream]
url = "ws://127.0.0.1:{backend_port}/socket.io/"
dialect = "socketio"

[route.socketio]
ping_interval_ms = {interval_ms}
ping_timeout_ms = {timeout_ms}
connect_timeout_ms = 1000
namespaces = ["/", "/custom", "/forbidden"]
"#
        );
        let proxy = Proxy::start(&text).await;
        Setup {
            backend,
            _proxy: proxy,
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The backend's next stdout line starting with `prefix`, its JSON parsed.
    async fn backend_line(&mut self, prefix: &str) -> Value {
        loop {
            let line = self
                .backend
                .next_line(T)
                .await
                .unwrap_or_else(|| panic!("no {prefix} line from the backend"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return serde_json::from_str(rest.trim()).unwrap();
            }
        }
    }

    async fn ws(&self, query: &str) -> RawWs {
        let url = format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket{query}",
            self.port
        );
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    async fn get(&self, sid: &str) -> (u16, String) {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        http_request(self.addr(), "GET", &path, None, "text/plain")
            .await
            .unwrap()
    }

    async fn post(&self, sid: &str, body: &str) -> (u16, String) {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        http_request(
            self.addr(),
            "POST",
            &path,
            Some(body),
            "text/plain;charset=UTF-8",
        )
        .await
        .unwrap()
    }

    /// A long-polling handshake; the sid.
    async fn open_polling(&self) -> String {
        let (status, body) = http_request(
            self.addr(),
            "GET",
            "/socket.io/?EIO=4&transport=polling",
            None,
            "text/plain",
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let open: Value = serde_json::from_str(&body[1..]).unwrap();
        assert_eq!(open["upgrades"], json!(["websocket"]));
        open["sid"].as_str().unwrap().to_owned()
    }
}

/// The next message that is not an Engine.IO ping (pings are answered).
async fn next(ws: &mut RawWs) -> Message {
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.unwrap();
            }
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_) | Message::Close(_)))) => {
                return m;
            }
            Some(Ok(_)) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

async fn next_text(ws: &mut RawWs) -> String {
    match next(ws).await {
        Message::Text(t) => t.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn next_binary(ws: &mut RawWs) -> Vec<u8> {
    match next(ws).await {
        Message::Binary(b) => b.to_vec(),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

async fn send(ws: &mut RawWs, text: &str) {
    ws.send(Message::text(text.to_owned())).await.unwrap();
}

/// A WebSocket session joined to `/` with `auth`: past `40{sid}` and the `auth` event.
async fn joined(s: &Setup, auth: &str) -> RawWs {
    let mut ws = s.ws("").await;
    assert!(next_text(&mut ws).await.starts_with("0{"));
    send(&mut ws, &format!("40{auth}")).await;
    let reply = next_text(&mut ws).await;
    let sid: Value = serde_json::from_str(&reply[2..]).unwrap();
    assert!(sid["sid"].is_string(), "{reply}");
    let expected_auth = if auth.is_empty() { "{}" } else { auth };
    assert_eq!(
        next_text(&mut ws).await,
        format!(r#"42["auth",{expected_auth}]"#)
    );
    ws
}

/// Raw wire: several arguments stay several (events and acks), binary attachments keep
/// their placeholders and frames, ack ids go to the backend and its ack comes back as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_keep_their_shape_on_the_wire() {
    let mut s = Setup::new().await;
    let mut ws = joined(&s, r#"{"token":"123"}"#).await;

    send(&mut ws, r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    // No argument at all stays none.
    send(&mut ws, r#"42["message"]"#).await;
    assert_eq!(next_text(&mut ws).await, r#"42["message-back"]"#);

    send(&mut ws, r#"42456["message-with-ack",1,"2",{"3":[false]}]"#).await;
    assert_eq!(next_text(&mut ws).await, r#"43456[1,"2",{"3":[false]}]"#);
    // The backend's handler got a callback: the ack id reached it.
    let ev = loop {
        let ev = s.backend_line("EVENT ").await;
        if ev["event"] != "message" {
            break ev;
        }
    };
    assert_eq!(
        ev,
        json!({"nsp":"/","event":"message-with-ack","args":[1,"2",{"3":[false]}],"ack":true})
    );

    send(
        &mut ws,
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(Message::binary(vec![4u8, 5, 6])).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(next_binary(&mut ws).await, [1, 2, 3]);
    assert_eq!(next_binary(&mut ws).await, [4, 5, 6]);

    // Binary and an ack id, a binary nested in an object among plain arguments.
    send(
        &mut ws,
        r#"452-789["message-with-ack",{"_placeholder":true,"num":0},"x",{"b":{"_placeholder":true,"num":1}}]"#,
    )
    .await;
    ws.send(Message::binary(vec![7u8])).await.unwrap();
    ws.send(Message::binary(vec![8u8, 9])).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"462-789[{"_placeholder":true,"num":0},"x",{"b":{"_placeholder":true,"num":1}}]"#
    );
    assert_eq!(next_binary(&mut ws).await, [7]);
    assert_eq!(next_binary(&mut ws).await, [8, 9]);

    // The backend asks the client for an ack (with binary); the client's answer, binary
    // included, reaches the backend's callback, which emits it back as `answer`.
    send(&mut ws, r#"451-["ask",7,{"_placeholder":true,"num":0}]"#).await;
    ws.send(Message::binary(vec![42u8])).await.unwrap();
    let q = next_text(&mut ws).await;
    let rest = q
        .strip_prefix("451-")
        .unwrap_or_else(|| panic!("a binary event with an ack id: {q}"));
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    assert!(digits > 0, "{q}");
    let (id, array) = rest.split_at(digits);
    assert_eq!(array, r#"["question",7,{"_placeholder":true,"num":0}]"#);
    assert_eq!(next_binary(&mut ws).await, [42]);
    send(
        &mut ws,
        &format!(r#"461-{id}["a",{{"_placeholder":true,"num":0}},3]"#),
    )
    .await;
    ws.send(Message::binary(vec![5u8, 5])).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"451-["answer","a",{"_placeholder":true,"num":0},3]"#
    );
    assert_eq!(next_binary(&mut ws).await, [5, 5]);
}

/// socket.io-client 4.8 through the route over WebSocket: arguments, binary, acks both
/// ways, as the application sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_client_sees_the_backend_unchanged() {
    client_round_trips(json!(["websocket"])).await;
}

/// The same over long-polling only (binary frames as base64 packets in the bodies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_client_over_long_polling() {
    client_round_trips(json!(["polling"])).await;
}

async fn client_round_trips(transports: Value) {
    let s = Setup::new().await;
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"a","url":s.url(),"auth":{"token":"t1"},"transports":transports}),
    )
    .await;
    d.expect_ev(T, "a", "connect").await;
    let ev = d
        .expect(T, |v| v["ev"] == "event" && v["event"] == "auth")
        .await;
    assert_eq!(ev["args"], json!([{"token":"t1"}]));

    let args = json!([1, "2", {"3":[true]}, null, {"$bin":"AQID"}, [{"$bin":"BAUG"}]]);
    d.send(json!({"op":"emit","c":"a","event":"message","args":args}))
        .await;
    let ev = d
        .expect(T, |v| v["ev"] == "event" && v["event"] == "message-back")
        .await;
    assert_eq!(ev["args"], args);

    d.send(
        json!({"op":"emit","c":"a","event":"message-with-ack","args":args,"ack":true,"reqId":1}),
    )
    .await;
    let ack = d.expect(T, |v| v["ev"] == "ack" && v["reqId"] == 1).await;
    assert_eq!(ack["args"], args, "{ack}");

    d.send(json!({"op":"emit","c":"a","event":"ask","args":[{"$bin":"AA=="}, "q"]}))
        .await;
    let q = d
        .expect(T, |v| v["ev"] == "event" && v["event"] == "question")
        .await;
    assert_eq!(q["args"], json!([{"$bin":"AA=="}, "q"]));
    let answer = json!(["yes", {"$bin":"/w=="}, 2]);
    d.send(json!({"op":"ack","c":"a","ackId":q["ackId"],"args":answer}))
        .await;
    let ev = d
        .expect(T, |v| v["ev"] == "event" && v["event"] == "answer")
        .await;
    assert_eq!(ev["args"], answer);
}

/// socket.io-client multiplexes `/` and `/custom` over one Engine.IO connection; the route
/// joins both on the backend over its one upstream connection, each with its own auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_multiplexed_with_their_own_auth() {
    let mut s = Setup::new().await;
    let mut d = Driver::sio().await;
    // Not `forceNew`: both sockets share the client's Manager, hence its connection.
    let shared = json!({"forceNew": false});
    d.send(json!({"op":"connect","c":"root","url":s.url(),"auth":{"token":"r"},"transports":["websocket"],"options":shared})).await;
    d.send(json!({"op":"connect","c":"custom","url":s.url(),"namespace":"/custom","auth":{"token":"c"},"transports":["websocket"],"options":shared})).await;
    d.expect_ev(T, "root", "connect").await;
    d.expect_ev(T, "custom", "connect").await;
    let a = d
        .expect(T, |v| v["c"] == "root" && v["event"] == "auth")
        .await;
    assert_eq!(a["args"], json!([{"token":"r"}]));
    let a = d
        .expect(T, |v| v["c"] == "custom" && v["event"] == "auth")
        .await;
    assert_eq!(a["args"], json!([{"token":"c"}]));
    let one = s.backend_line("CONNECT ").await;
    let two = s.backend_line("CONNECT ").await;
    let mut nsps = [one["nsp"].clone(), two["nsp"].clone()];
    nsps.sort_by_key(ToString::to_string);
    assert_eq!(nsps, [json!("/"), json!("/custom")]);
    assert_eq!(
        one["conn"], two["conn"],
        "one upstream Engine.IO connection"
    );

    d.send(json!({"op":"emit","c":"custom","event":"message","args":["in custom"]}))
        .await;
    let ev = d
        .expect(T, |v| v["ev"] == "event" && v["event"] == "message-back")
        .await;
    assert_eq!(ev["c"], "custom");
    assert_eq!(ev["args"], json!(["in custom"]));
}

/// Raw wire: the backend's `40` per namespace, its `44` with message and data, unlisted
/// namespaces refused as socket.io refuses unknown ones, the backend's `41`, and the
/// connection going on after the client leaves `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_on_the_wire() {
    let s = Setup::new().await;
    let mut ws = s.ws("").await;
    assert!(next_text(&mut ws).await.starts_with("0{"));

    // A custom namespace first, without `/` and without the trailing comma.
    send(&mut ws, r#"40/custom,{"token":"abc"}"#).await;
    let reply = next_text(&mut ws).await;
    assert!(reply.starts_with("40/custom,{\"sid\":"), "{reply}");
    assert_eq!(
        next_text(&mut ws).await,
        r#"42/custom,["auth",{"token":"abc"}]"#
    );
    send(&mut ws, "40/random").await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    send(&mut ws, "40/forbidden,").await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/forbidden,{"message":"nope","data":{"why":"test"}}"#
    );
    send(&mut ws, "40").await;
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);

    // The backend disconnects `/custom`: `41/custom,`; `/` goes on.
    send(&mut ws, r#"42/custom,["leave"]"#).await;
    assert_eq!(next_text(&mut ws).await, "41/custom,");
    send(&mut ws, r#"42["message","main"]"#).await;
    assert_eq!(next_text(&mut ws).await, r#"42["message-back","main"]"#);

    // Join `/custom` again, leave it from the client side, then talk on `/`.
    send(&mut ws, "40/custom").await;
    assert!(next_text(&mut ws).await.starts_with("40/custom,"));
    assert_eq!(next_text(&mut ws).await, r#"42/custom,["auth",{}]"#);
    send(&mut ws, "41/custom").await;
    send(&mut ws, r#"42["message","message to main namespace"]"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["message-back","message to main namespace"]"#
    );

    // Leaving `/`, the last namespace, leaves the Engine.IO connection up: pings go on.
    send(&mut ws, "41").await;
    let ping = tokio::time::timeout(T, ws.next()).await.unwrap();
    assert!(
        matches!(&ping, Some(Ok(Message::Text(t))) if t.as_str() == "2"),
        "{ping:?}"
    );
    send(&mut ws, "3").await;
    send(&mut ws, "40").await;
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
}

/// Raw HTTP: a long-polling sid that missed its ping deadline is unknown (400) to GET and
/// POST alike; a WebSocket session that does not answer pings is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_sids_are_refused() {
    let s = Setup::new().await;
    let sid = s.open_polling().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body) = s.get(&sid).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body, r#"{"code":1,"message":"Session ID unknown"}"#);
    let (status, _) = s.post(&sid, "3").await;
    assert_eq!(status, 400);
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        s.port
    );
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400),
        "{refused:?}"
    );

    let mut ws = s.ws("").await;
    let start = std::time::Instant::now();
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// Raw HTTP: the client's close packet `1` answers the pending GET with a noop, and the sid
/// is gone afterwards on both transports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_answers_the_pending_poll_with_a_noop() {
    let s = Setup::with_ping(2000, 2000).await;
    let sid = s.open_polling().await;
    let addr = s.addr();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let poll = tokio::spawn(async move {
        http_request(addr, "GET", &path, None, "text/plain")
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, body) = s.post(&sid, "1").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(poll.await.unwrap(), (200, "6".to_owned()));
    assert_eq!(s.get(&sid).await.0, 400);
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        s.port
    );
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400),
        "an unknown sid's upgrade is refused: {refused:?}"
    );
}

/// Raw HTTP and WebSocket: once upgraded, the session refuses polling (400) and a second
/// WebSocket with its sid (accepted, then closed at once, as engine.io does), and goes on
/// over the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_session_refuses_polling_and_a_second_websocket() {
    let s = Setup::with_ping(2000, 2000).await;
    let sid = s.open_polling().await;
    let (status, _) = s.post(&sid, "40").await;
    assert_eq!(status, 200);
    let (status, body) = s.get(&sid).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("40{\"sid\":"), "{body}");
    let mut ws = s.ws(&format!("&sid={sid}")).await;
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await, "3probe");
    send(&mut ws, "5").await;
    // `5` is in: what polling had not delivered comes over the socket.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = s.get(&sid).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = s.post(&sid, "3").await;
    assert_eq!(status, 400);

    let mut second = s.ws(&format!("&sid={sid}")).await;
    match tokio::time::timeout(T, second.next()).await.unwrap() {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        other => panic!("the second WebSocket must be closed, got {other:?}"),
    }

    // The first socket still carries the session (its `auth` event was buffered or comes
    // now, whichever transport it was queued on).
    send(&mut ws, r#"42["message",1]"#).await;
    loop {
        let t = next_text(&mut ws).await;
        if t.starts_with("42[\"auth\"") {
            continue;
        }
        assert_eq!(t, r#"42["message-back",1]"#);
        break;
    }
}
