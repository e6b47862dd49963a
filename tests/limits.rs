//! Size limits on STOMP routes, from the outside: a client message over
//! `limits.max_message_size` gets `ERROR` and close 1009 (others on the proxy go on), a
//! backend message over it ends the upstream with the client's dialect error, passthrough
//! answers both with 1009 toward the sender, and what a client sends before its backend is
//! ready is held within a byte budget, not only a frame count. A passthrough relays what
//! either side sent right behind its upgrade at once, and lets go of a client that stops
//! reading.
//!
//! The Socket.IO backend is the Node.js one from `tests/peers`; the STOMP brokers are fakes
//! written here with tokio-tungstenite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "test-secret";
/// `limits.max_message_size` of the small-limit proxies.
const LIMIT: usize = 4096;

/// A SEND whose whole WebSocket message is `size` bytes.
fn send_of_size(destination: &str, size: usize) -> String {
    let head = format!("SEND\ndestination:{destination}\ncontent-type:text/plain\n\n");
    let body = "x".repeat(size - head.len() - 1);
    let f = format!("{head}{body}\0");
    assert_eq!(f.len(), size);
    f
}

/// A client message over the limit gets `ERROR` naming the limit, then close 1009, before and
/// after CONNECT; exactly the limit passes; another client on the proxy goes on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_client_message_gets_error_and_1009_and_others_go_on() {
    ensure_npm();
    let (_backend, backend_port) = start_sio_backend(&[]);
    let port = free_port();
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[limits]
max_message_size = {LIMIT}
[[route]]
name = "chat"
listen = "127.0.0.1:{port}"
path = "/ws"
client = "stomp"
[route.stomp]
heartbeat_ms = [0, 0]
[route.upstream]
url = "ws://127.0.0.1:{backend_port}/socket.io/"
dialect = "socketio"
"#,
        admin = free_port(),
    );
    let proxy = Proxy::start(&cfg).await;
    let url = format!("ws://127.0.0.1:{port}/ws");

    // The bystander: subscribed, and hearing its own emits through the backend.
    let ann = jwt("ann", SECRET);
    let mut other = raw_stomp_ws(&url, Some(&ann)).await;
    stomp_connect(&mut other).await;
    other
        .send(Message::text(
            "SUBSCRIBE\nid:s\ndestination:/topic/message_created\nreceipt:r-sub\n\n\0",
        ))
        .await
        .unwrap();
    assert!(
        next_frame(&mut other)
            .await
            .starts_with("RECEIPT\nreceipt-id:r-sub\n")
    );
    let round_trip = |n: u32| {
        format!(
            "SEND\ndestination:/app/message_created\ncontent-type:application/json\nreceipt:r-{n}\n\n{{\"n\":{n}}}\0"
        )
    };
    other.send(Message::text(round_trip(1))).await.unwrap();
    assert!(
        next_frame(&mut other)
            .await
            .starts_with("RECEIPT\nreceipt-id:r-1\n")
    );
    assert!(next_frame(&mut other).await.ends_with("\n\n{\"n\":1}\0"));

    let bob = jwt("bob", SECRET);
    for (connected, msg) in [
        (true, Message::text(send_of_size("/app/x", LIMIT + 1))),
        (true, Message::binary(vec![b'x'; LIMIT * 3])),
        (false, Message::text(send_of_size("/app/x", LIMIT + 1))),
    ] {
        let mut ws = raw_stomp_ws(&url, Some(&bob)).await;
        if connected {
            stomp_connect(&mut ws).await;
        }
        let size = msg.len();
        ws.send(msg).await.unwrap();
        let err = next_frame(&mut ws).await;
        assert!(err.starts_with("ERROR\n"), "{err}");
        assert!(
            err.contains(&format!(
                "message:message of {size} bytes exceeds the limit of {LIMIT} bytes\n"
            )),
            "{err}"
        );
        assert_eq!(close_code(&mut ws).await, 1009, "connected={connected}");
    }

    // Exactly the limit is a message like any other (an event the backend does not echo).
    let mut ws = raw_stomp_ws(&url, Some(&bob)).await;
    stomp_connect(&mut ws).await;
    let mut fits = send_of_size("/app/quiet", LIMIT);
    fits.insert_str("SEND\n".len(), "receipt:r-fit\n");
    fits.truncate(LIMIT - 1);
    fits.push('\0');
    ws.send(Message::text(fits)).await.unwrap();
    assert!(
        next_frame(&mut ws)
            .await
            .starts_with("RECEIPT\nreceipt-id:r-fit\n")
    );

    // The bystander never noticed.
    other.send(Message::text(round_trip(2))).await.unwrap();
    assert!(
        next_frame(&mut other)
            .await
            .starts_with("RECEIPT\nreceipt-id:r-2\n")
    );
    assert!(next_frame(&mut other).await.ends_with("\n\n{\"n\":2}\0"));
    sio_control_emit(
        backend_port,
        "message_created",
        json!([{"n": 3}]),
        Some("ann"),
    )
    .await;
    assert!(next_frame(&mut other).await.ends_with("\n\n{\"n\":3}\0"));
    let outcome = proxy
        .metric("switchboard_sessions_total{route=\"chat\",outcome=\"protocol_error\"}")
        .await;
    assert_eq!(outcome, Some(3.0));
}

/// What a fake STOMP broker saw.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A text message from the proxy.
    Text(String),
    /// The proxy's close frame, with its code.
    Close(Option<u16>),
    /// A ping's payload (tungstenite answers it).
    Ping(Vec<u8>),
}

/// A fake STOMP broker on 127.0.0.1:0, any number of connections: answers CONNECT with
/// CONNECTED and any frame containing `send-me-big` with a message of `big` bytes. Reports
/// what it saw on every connection.
async fn fake_broker(big: usize) -> (u16, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, stomp_subprotocol).await
                else {
                    return;
                };
                while let Some(m) = ws.next().await {
                    match m {
                        Ok(Message::Text(t)) => {
                            let t = t.as_str().to_owned();
                            if t.starts_with("CONNECT\n") {
                                let c = "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0";
                                ws.send(Message::text(c)).await.unwrap();
                            } else if t.contains("send-me-big") {
                                ws.send(Message::text("x".repeat(big))).await.unwrap();
                            } else if t.contains("flood-me") {
                                // Until the proxy lets go of this socket.
                                let x = "x".repeat(64 * 1024);
                                for _ in 0..512 {
                                    if ws.send(Message::text(x.clone())).await.is_err() {
                                        break;
                                    }
                                }
                                let _ = tx.send(Seen::Text("flood ended".into()));
                            } else if t.contains("close-with-4002") {
                                let f = CloseFrame {
                                    code: CloseCode::from(4002),
                                    reason: "asked to".into(),
                                };
                                let _ = ws.close(Some(f)).await;
                            }
                            let _ = tx.send(Seen::Text(t));
                        }
                        Ok(Message::Close(f)) => {
                            let _ = tx.send(Seen::Close(f.map(|f| u16::from(f.code))));
                            return;
                        }
                        Ok(Message::Ping(p)) => {
                            let _ = tx.send(Seen::Ping(p.to_vec()));
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    (port, rx)
}

/// The close code the broker saw next, skipping the frames before it.
async fn broker_close(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Option<u16> {
    loop {
        match tokio::time::timeout(T, rx.recv()).await.unwrap() {
            Some(Seen::Close(code)) => return code,
            Some(Seen::Text(_) | Seen::Ping(_)) => {}
            None => panic!("the broker's channel ended"),
        }
    }
}

fn stomp_route(name: &str, port: u16, backend_port: u16, mode: &str, upstream: &str) -> String {
    format!(
        r#"
[[route]]
name = "{name}"
listen = "127.0.0.1:{port}"
path = "/ws"
client = "stomp"
mode = "{mode}"
[route.stomp]
heartbeat_ms = [0, 0]
[route.upstream]
url = "ws://127.0.0.1:{backend_port}/"
dialect = "stomp"
heartbeat_ms = [0, 0]
{upstream}
"#
    )
}

/// A proxy with one STOMP passthrough route to `backend_port` (`extra`: more configuration
/// ahead of it); the proxy and the route's port.
async fn passthrough_proxy(backend_port: u16, extra: &str) -> (Proxy, u16) {
    let port = free_port();
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n{extra}\n{}",
        stomp_route("passthrough", port, backend_port, "passthrough", ""),
        admin = free_port(),
    );
    (Proxy::start(&cfg).await, port)
}

/// A backend message over the limit ends the upstream (the broker hears 1009) and the client
/// gets its dialect's error, of kind limit; in passthrough the sender of the oversize message
/// hears 1009 and the other side the close it would get had the sender left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_backend_messages_and_passthrough() {
    let (backend_port, mut seen) = fake_broker(LIMIT + 1).await;
    let (translate, passthrough) = (free_port(), free_port());
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[limits]\nmax_message_size = {LIMIT}\n{}{}",
        stomp_route("translate", translate, backend_port, "translate", ""),
        stomp_route("passthrough", passthrough, backend_port, "passthrough", ""),
        admin = free_port(),
    );
    let _proxy = Proxy::start(&cfg).await;
    let ask_big = "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nsend-me-big\0";

    // Translate: the client role reads the oversize message.
    let mut ws = raw_stomp_ws(&format!("ws://127.0.0.1:{translate}/ws"), None).await;
    stomp_connect(&mut ws).await;
    ws.send(Message::text(ask_big)).await.unwrap();
    let err = next_frame(&mut ws).await;
    assert!(err.starts_with("ERROR\n"), "{err}");
    assert!(
        err.contains(&format!(
            "message:upstream unavailable\\c backend sent a message of {} bytes, over the limit of {LIMIT} bytes\n",
            LIMIT + 1
        )),
        "{err}"
    );
    assert_eq!(close_code(&mut ws).await, 1011);
    assert_eq!(broker_close(&mut seen).await, Some(1009));

    // Passthrough, backend to client.
    let pt = format!("ws://127.0.0.1:{passthrough}/ws");
    let mut ws = raw_stomp_ws(&pt, None).await;
    stomp_connect(&mut ws).await;
    ws.send(Message::text(ask_big)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1011);
    assert_eq!(broker_close(&mut seen).await, Some(1009));

    // Passthrough, client to backend.
    let mut ws = raw_stomp_ws(&pt, None).await;
    stomp_connect(&mut ws).await;
    ws.send(Message::text(send_of_size("/queue/a", LIMIT + 1)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
    assert_eq!(broker_close(&mut seen).await, Some(1000));
}

/// A passthrough passes a close on as a plain proxy does: the code the client closed with
/// reaches the backend, the code the backend closed with reaches the client (it had been
/// 1000 and 1011 whatever was sent). A ping goes through too, and the backend's pong comes
/// back (the proxy had answered it itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_passes_close_codes_on() {
    let (backend_port, mut seen) = fake_broker(0).await;
    let (_proxy, port) = passthrough_proxy(backend_port, "").await;
    let pt = format!("ws://127.0.0.1:{port}/ws");

    // The client closes with 4001: the broker hears 4001.
    let mut ws = raw_stomp_ws(&pt, None).await;
    stomp_connect(&mut ws).await;
    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(T, ws.next()).await.unwrap();
    assert!(
        matches!(&pong, Some(Ok(Message::Pong(p))) if p[..] == b"are you there"[..]),
        "{pong:?}"
    );
    loop {
        match tokio::time::timeout(T, seen.recv()).await.unwrap() {
            Some(Seen::Ping(p)) => break assert_eq!(p, b"are you there"),
            Some(Seen::Text(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let f = CloseFrame {
        code: CloseCode::from(4001),
        reason: "done here".into(),
    };
    ws.close(Some(f)).await.unwrap();
    assert_eq!(broker_close(&mut seen).await, Some(4001));

    // The broker closes with 4002: the client hears 4002.
    let mut ws = raw_stomp_ws(&pt, None).await;
    stomp_connect(&mut ws).await;
    let ask = "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nclose-with-4002\0";
    ws.send(Message::text(ask)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 4002);
}

/// While the upstream is dialed, what the client sends is held within a byte budget (4 MiB
/// at the default 1 MiB message limit), not only a count: four SENDs of ~1 MB wait, the fifth
/// gets the dialect's error at once instead of waiting for the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_held_while_dialing_are_bounded_in_bytes() {
    // A backend that accepts TCP and never answers the WebSocket upgrade.
    let stuck = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = stuck.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = stuck.accept().await {
            held.push(tcp);
        }
    });
    let port = free_port();
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        stomp_route(
            "held",
            port,
            backend_port,
            "translate",
            "connect_timeout_ms = 30000"
        ),
        admin = free_port(),
    );
    let _proxy = Proxy::start(&cfg).await;
    let mut ws = raw_stomp_ws(&format!("ws://127.0.0.1:{port}/ws"), None).await;
    ws.send(Message::text(
        "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0",
    ))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        ws.send(Message::text(send_of_size("/queue/a", 1_000_000)))
            .await
            .unwrap();
    }
    let err = next_frame(&mut ws).await;
    assert!(
        err.starts_with(
            "ERROR\nmessage:upstream unavailable\\c too many bytes before the backend was ready\n"
        ),
        "{err}"
    );
    assert!(close_code(&mut ws).await >= 1000);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A passthrough client that stops reading what the backend sends is a slow consumer: after
/// the write timeout the backend is let go (its flood ends) and the client, reading again,
/// gets what the kernel held and then close 1008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_client_that_stops_reading_is_closed_with_1008() {
    let (backend_port, mut seen) = fake_broker(0).await;
    let (proxy, port) = passthrough_proxy(backend_port, "[limits]\nwrite_timeout_ms = 1000").await;
    let mut ws = raw_stomp_ws(&format!("ws://127.0.0.1:{port}/ws"), None).await;
    stomp_connect(&mut ws).await;
    let ask = "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nflood-me\0";
    ws.send(Message::text(ask)).await.unwrap();
    loop {
        match tokio::time::timeout(T, seen.recv()).await.unwrap() {
            Some(Seen::Text(t)) if t == "flood ended" => break,
            Some(_) => {}
            None => panic!("the broker's channel ended"),
        }
    }
    let code = loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(code, Some(1008));
    let series = "switchboard_sessions_total{route=\"passthrough\",outcome=\"slow_consumer\"}";
    let n = proxy.metric_reaches(series, 1.0, T).await;
    assert_eq!(n, 1.0);
}

/// A passthrough relays at once what either side sent in the same segment as its upgrade:
/// the backend's first message right behind its 101, the client's right behind its request.
/// (Both were left in the read buffer until the sender's next message: a Socket.IO
/// backend's open packet waited for its first ping, 25 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_relays_what_came_with_either_upgrade_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

    /// Reads up to the end of an HTTP head; the head, and what came after it.
    async fn head(tcp: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = got.split_off(end + 4);
                return (String::from_utf8(got).unwrap(), rest);
            }
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed in the head: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }
    /// The payload of the text frame `b` starts with, once it is whole (masked or not,
    /// payload < 126).
    fn text_frame(b: &[u8]) -> Option<Vec<u8>> {
        let (&[op, len], rest) = b.split_first_chunk::<2>()?;
        assert_eq!(op, 0x81, "not a whole text frame first: {b:?}");
        let n = usize::from(len & 0x7f);
        let (key, body) = if len & 0x80 != 0 {
            let (k, body) = rest.split_first_chunk::<4>()?;
            (*k, body)
        } else {
            ([0; 4], rest)
        };
        let body = body.get(..n)?;
        Some(
            body.iter()
                .zip(key.iter().cycle())
                .map(|(b, k)| b ^ k)
                .collect(),
        )
    }

    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let (tx, mut relayed) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (mut tcp, _) = backend.accept().await.unwrap();
        let (req, mut got) = head(&mut tcp).await;
        let key = req
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .unwrap();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n",
            derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        out.extend_from_slice(&[0x81, 8]);
        out.extend_from_slice(b"GREETING");
        tcp.write_all(&out).await.unwrap();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(p) = text_frame(&got) {
                let _ = tx.send(p);
                break;
            }
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
        }
        // Open until the test ends: nothing more is sent that could carry the first frame on.
        let _ = tcp.read(&mut buf).await;
    });

    let (_proxy, port) = passthrough_proxy(backend_port, "").await;
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n"
    )
    .into_bytes();
    let key = [0x12u8, 0x34, 0x56, 0x78];
    bytes.extend_from_slice(&[0x81, 0x80 | 5]);
    bytes.extend_from_slice(&key);
    bytes.extend(b"HELLO".iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(&bytes).await.unwrap();

    let (resp, mut got) = tokio::time::timeout(T, head(&mut tcp)).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    let greeting = tokio::time::timeout(T, async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(p) = text_frame(&got) {
                return p;
            }
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the backend's first message, sent with its 101, did not come through");
    assert_eq!(greeting, b"GREETING");
    let hello = tokio::time::timeout(T, relayed.recv())
        .await
        .expect("the client's first message, sent with its request, did not come through");
    assert_eq!(hello.as_deref(), Some(&b"HELLO"[..]));
}
