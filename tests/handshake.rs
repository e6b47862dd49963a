//! What the client's HTTP upgrade carries reaches the backend: the proxy dials a real
//! socket.io 4.8 backend (`tests/peers`) with the client's `Cookie` and `Origin`, as a
//! reverse proxy forwards them, so a backend behind session cookies or Origin checks sees
//! its own client; the route's path defaults to the client dialect's (the registry's).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SECRET: &str = "test-secret";

/// The socket.io backend (and its port), and a STOMP → Socket.IO route in front of it (and
/// its port); no `path`: STOMP's default, `/ws`.
async fn stomp_to_socketio() -> (Child, u16, Proxy, u16) {
    ensure_npm();
    let (backend_child, backend) = start_sio_backend(&[]);
    let proxy = free_port();
    let p = Proxy::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "chat"
listen = "127.0.0.1:{proxy}"
client = "stomp"

[route.upstream]
url = "ws://127.0.0.1:{backend}/socket.io/"
dialect = "socketio"
"#,
        admin = free_port()
    ))
    .await;
    (backend_child, backend, p, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_and_origin_of_the_upgrade_reach_the_backend() {
    let (_backend, backend, _p, proxy) = stomp_to_socketio().await;
    let mut req = format!("ws://127.0.0.1:{proxy}/ws")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v10.stomp, v12.stomp"),
    );
    h.insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {}", jwt("hal", SECRET))).unwrap(),
    );
    h.insert(
        "Cookie",
        HeaderValue::from_static("session=s3cr3t; theme=dark"),
    );
    h.insert("Origin", HeaderValue::from_static("https://app.example"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    // The highest version the client offered, whatever its order.
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "v12.stomp"
    );
    stomp_connect(&mut ws).await;
    let clients = http_json(backend, "GET", "/control/clients", None).await;
    let hal = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["sub"] == "hal")
        .unwrap_or_else(|| panic!("no socket of hal: {clients}"))
        .clone();
    assert_eq!(hal["cookie"], "session=s3cr3t; theme=dark", "{hal}");
    assert_eq!(hal["origin"], "https://app.example", "{hal}");
}

/// A client that sends its first frame in the same write as its upgrade request (hyper reads
/// both at once) has that frame read: the WebSocket starts from what hyper had read past the
/// request, then reads the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_with_the_upgrade_request_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_backend, _, _p, proxy) = stomp_to_socketio().await;
    let connect = b"CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0";
    let key = [0x12u8, 0x34, 0x56, 0x78];
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{proxy}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v12.stomp\r\nAuthorization: Bearer {}\r\n\r\n",
        jwt("hal", SECRET)
    )
    .into_bytes();
    bytes.extend_from_slice(&[0x81, 0x80 | u8::try_from(connect.len()).unwrap()]);
    bytes.extend_from_slice(&key);
    bytes.extend(connect.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .unwrap();
    tcp.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !got.windows(10).any(|w| w == b"CONNECTED\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no CONNECTED: {}", String::from_utf8_lossy(&got)));
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// An upgrade whose `Sec-WebSocket-Key` is not one base64 of 16 bytes is answered 400
/// (RFC 6455 §4.2.1), not 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_with_a_bad_key_is_answered_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_backend, _, _p, proxy) = stomp_to_socketio().await;
    let good = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for keys in [
        "Sec-WebSocket-Key: \r\n".to_owned(),
        "Sec-WebSocket-Key: abc\r\n".to_owned(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n".to_owned(),
        format!("{good}{good}"),
    ] {
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{proxy}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{keys}\
             Sec-WebSocket-Protocol: v12.stomp\r\n\r\n"
        );
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
            .await
            .unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut got = [0u8; 12];
        tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"HTTP/1.1 400", "{keys:?}");
    }
}

/// A client that breaks the WebSocket protocol (a reserved bit set, no extension agreed)
/// hears why: the connection is failed with 1002, not just dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_protocol_violation_is_answered_with_1002() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
    let (_backend, _, _p, proxy) = stomp_to_socketio().await;
    let token = jwt("ivy", SECRET);
    let mut ws = raw_stomp_ws(&format!("ws://127.0.0.1:{proxy}/ws"), Some(&token)).await;
    stomp_connect(&mut ws).await;
    let header = FrameHeader {
        rsv1: true,
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let frame = Frame::from_payload(header, bytes::Bytes::from_static(b"SEND\n\n\0"));
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1002);
}
