//! Unit tests of the session: a translating session end to end over in-memory sockets (a
//! role that speaks first, a second Connect that reauthenticates, what the dial carries), and
//! how one WebSocket read is taken.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

use super::link::{Link, LinkError, inbound_item};
use super::{RouteCtx, Session};
use crate::dialect::{
    ClientOut, ClientRole, Close, Dial, Handshake, Keepalive, ServerOut, ServerRole, WsMsg, stomp,
};
use crate::frame::{BackendEvent, ClientOp, Credentials, ErrorInfo};
use crate::metrics::{LegCounters, RouteMetrics};
use crate::translate::Mapping;
use crate::upstream::Dialer;

/// A server role that greets first and hands two Connects and a Subscribe upstream.
struct Greeter;

impl ServerRole for Greeter {
    fn on_start(&mut self, _: Instant, out: &mut ServerOut) {
        out.to_client
            .push(WsMsg::Text(Bytes::from_static(b"welcome")));
    }
    fn on_client(&mut self, msg: WsMsg, _: Instant, out: &mut ServerOut) {
        let token = Some(msg.bytes().clone());
        out.ops.push(ClientOp::Connect {
            credentials: Credentials {
                token,
                ..Default::default()
            },
        });
    }
    fn on_backend(&mut self, ev: BackendEvent, _: Instant, out: &mut ServerOut) {
        let text = format!("{ev:?}");
        out.to_client.push(WsMsg::Text(Bytes::from(text)));
    }
    fn on_upstream_lost(&mut self, _: ErrorInfo, out: &mut ServerOut) {
        out.close = Some(Close::new(1011, "lost"));
    }
    fn on_shutdown(&mut self, out: &mut ServerOut) {
        out.close = Some(Close::new(1001, "bye"));
    }
    fn on_too_big(&mut self, _: ErrorInfo, out: &mut ServerOut) {
        out.close = Some(Close::new(1009, "big"));
    }
    fn keepalive(&self) -> Keepalive {
        Keepalive::default()
    }
    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }
    fn on_peer_silent(&mut self, _: &mut ServerOut) {}
    fn expire(&mut self, _: Instant, _: &mut ServerOut) {}
}

/// A client role that dials with a path, query and header of its own and reports every
/// operation it gets.
struct Recorder(UnboundedSender<ClientOp>, Credentials);

impl ClientRole for Recorder {
    fn dial(&self) -> Dial {
        Dial {
            path_suffix: "k1".into(),
            query: vec![("token".into(), "t1".into())],
            headers: vec![("Cookie".into(), "c=1".into())],
        }
    }
    fn start(&mut self, _: Instant, out: &mut ClientOut) {
        let _ = self.0.send(ClientOp::Connect {
            credentials: self.1.clone(),
        });
        out.events.push(BackendEvent::Ready { session: None });
    }
    fn on_op(&mut self, op: ClientOp, _: Instant, out: &mut ClientOut) {
        if let ClientOp::Reauth { .. } = &op {
            out.events.push(BackendEvent::AuthChanged { token: None });
        }
        let _ = self.0.send(op);
    }
    fn on_backend(&mut self, _: WsMsg, _: Instant, _: &mut ClientOut) {}
    fn keepalive(&self) -> Keepalive {
        Keepalive::default()
    }
    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }
    fn on_peer_silent(&mut self, _: &mut ClientOut) {}
    fn expire(&mut self, _: Instant, _: &mut ClientOut) {}
    fn on_closed(&mut self, _: ErrorInfo, _: &mut ClientOut) {}
}

/// A WebSocket backend on 127.0.0.1 that reports the upgrade's URI and `Cookie`.
async fn backend() -> (u16, mpsc::UnboundedReceiver<(String, String)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let seen = tx.clone();
        // The signature is tungstenite's `Callback`.
        #[allow(clippy::result_large_err)]
        let cb = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                       mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            // The dialect's subprotocol, as a STOMP broker answers it.
            resp.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                tokio_tungstenite::tungstenite::http::HeaderValue::from_static("v12.stomp"),
            );
            let cookie = req
                .headers()
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let _ = seen.send((req.uri().to_string(), cookie));
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, cb).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    });
    (port, rx)
}

#[tokio::test]
async fn a_server_role_speaks_first_and_a_second_connect_reauthenticates() {
    let (port, mut seen) = backend().await;
    let text = crate::config::tests::MINIMAL.replace(
        "ws://127.0.0.1:3000/socket.io/",
        &format!("ws://127.0.0.1:{port}/app"),
    );
    let config = crate::config::Config::from_toml(&text).unwrap();
    let route = config.routes[0].clone();
    let (ops_tx, mut ops) = mpsc::unbounded_channel();
    let ctx = Arc::new(RouteCtx {
        new_server: Arc::new(|_, _| Box::new(Greeter)),
        new_client: Arc::new(move |c| Box::new(Recorder(ops_tx.clone(), c))),
        mapping: Mapping::new(&[], &stomp::SPEC, &stomp::SPEC).unwrap(),
        dialer: Dialer::new(
            "t",
            &route.upstream.url,
            &stomp::SPEC,
            None,
            Duration::from_secs(2),
            1 << 20,
            4096,
        )
        .unwrap(),
        metrics: RouteMetrics::new("t", "stomp", "stomp"),
        config: route,
        client_spec: &stomp::SPEC,
        upstream_spec: &stomp::SPEC,
        queue_depth: 8,
        queue_bytes: 1 << 20,
        write_timeout: Duration::from_secs(2),
        max_message_size: 1 << 20,
        client_message_limit: 1 << 20,
        idle_ping: None,
        allowed_origins: Vec::new(),
        read_buffer: 4096,
        write_buffer: 8192,
        auth: None,
        admission: Arc::new(crate::admission::Admission::new(
            &Default::default(),
            1 << 20,
        )),
        hub: None,
    });
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    let link = Link::websocket(
        server,
        8,
        1 << 20,
        Duration::from_secs(2),
        ctx.metrics.down.clone(),
    );
    let hs = Handshake {
        headers: vec![("origin".into(), Bytes::from_static(b"https://a.example"))],
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let session = Session::new(ctx, link, Box::new(Greeter), &hs);
    let run = tokio::spawn(session.run(stop.clone()));
    // Before the client says anything.
    let first = client.next().await.unwrap().unwrap();
    assert_eq!(first, Message::text("welcome"));
    client.send(Message::text("tok-1")).await.unwrap();
    let (uri, cookie) = seen.recv().await.unwrap();
    assert_eq!(uri, "/app/k1?token=t1");
    assert_eq!(cookie, "c=1");
    let op = ops.recv().await;
    let Some(ClientOp::Connect { credentials }) = op else {
        panic!("{op:?}")
    };
    assert_eq!(credentials.token.as_deref(), Some(&b"tok-1"[..]));
    // The upgrade's Origin went into the credentials.
    assert_eq!(
        credentials.origin.as_deref(),
        Some(&b"https://a.example"[..])
    );
    client.send(Message::text("tok-2")).await.unwrap();
    let op = ops.recv().await;
    let Some(ClientOp::Reauth { credentials }) = op else {
        panic!("{op:?}")
    };
    assert_eq!(credentials.token.as_deref(), Some(&b"tok-2"[..]));
    // The backend's answer reaches the server role.
    loop {
        let m = client.next().await.unwrap().unwrap();
        if m.to_text().unwrap().starts_with("AuthChanged") {
            break;
        }
    }
    stop.cancel();
    run.await.unwrap();
}

#[test]
fn an_oversize_message_is_told_apart_from_other_failures() {
    let counters = LegCounters::new("test", "stomp", "downstream");
    let too_long = WsError::Capacity(CapacityError::MessageTooLong {
        size: 11,
        max_size: 10,
    });
    assert!(matches!(
        inbound_item(Err(too_long), &counters),
        Some(Err(LinkError::TooBig { size: 11, max: 10 }))
    ));
    assert!(matches!(
        inbound_item(Err(WsError::ConnectionClosed), &counters),
        Some(Err(LinkError::Transport(_)))
    ));
    assert!(matches!(
        inbound_item(Ok(Message::text("x")), &counters),
        Some(Ok(WsMsg::Text(t))) if t == "x"
    ));
    assert!(inbound_item(Ok(Message::Ping(Bytes::new())), &counters).is_none());
    assert!(matches!(
        inbound_item(Ok(Message::Close(None)), &counters),
        Some(Err(LinkError::Closed(None)))
    ));
}

/// The route of the test above with `[route.auth]` (HS256, `secret`), its client roles
/// reporting their operations to `ops_tx`.
fn auth_ctx(port: u16, ops_tx: UnboundedSender<ClientOp>) -> Arc<RouteCtx> {
    let text = crate::config::tests::MINIMAL.replace(
        "ws://127.0.0.1:3000/socket.io/",
        &format!("ws://127.0.0.1:{port}/app"),
    );
    let config = crate::config::Config::from_toml(&text).unwrap();
    let route = config.routes[0].clone();
    let auth: crate::config::RouteAuth = toml_auth("algorithm = \"HS256\"\nsecret = \"secret\"\n");
    Arc::new(RouteCtx {
        new_server: Arc::new(|_, _| Box::new(Greeter)),
        new_client: Arc::new(move |c| Box::new(Recorder(ops_tx.clone(), c))),
        mapping: Mapping::new(&[], &stomp::SPEC, &stomp::SPEC).unwrap(),
        dialer: Dialer::new(
            "auth-test",
            &route.upstream.url,
            &stomp::SPEC,
            None,
            Duration::from_secs(2),
            1 << 20,
            4096,
        )
        .unwrap(),
        metrics: RouteMetrics::new("auth-test", "stomp", "stomp"),
        config: route,
        client_spec: &stomp::SPEC,
        upstream_spec: &stomp::SPEC,
        queue_depth: 8,
        queue_bytes: 1 << 20,
        write_timeout: Duration::from_secs(2),
        max_message_size: 1 << 20,
        client_message_limit: 1 << 20,
        idle_ping: None,
        allowed_origins: Vec::new(),
        read_buffer: 4096,
        write_buffer: 8192,
        auth: Some(Arc::new(crate::auth::Verifier::new(&auth).unwrap())),
        admission: Arc::new(crate::admission::Admission::new(
            &Default::default(),
            1 << 20,
        )),
        hub: None,
    })
}

fn toml_auth(text: &str) -> crate::config::RouteAuth {
    use figment::providers::Format;
    figment::Figment::from(figment::providers::Toml::string(text))
        .extract()
        .unwrap()
}

fn hs256(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap()
}

type Client = WebSocketStream<tokio::io::DuplexStream>;

async fn start(ctx: Arc<RouteCtx>) -> (Client, tokio::task::JoinHandle<()>, CancellationToken) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    let link = Link::websocket(
        server,
        8,
        1 << 20,
        Duration::from_secs(2),
        ctx.metrics.down.clone(),
    );
    let stop = CancellationToken::new();
    let session = Session::new(ctx, link, Box::new(Greeter), &Handshake::default());
    let run = tokio::spawn(session.run(stop.clone()));
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::text("welcome")
    );
    (client, run, stop)
}

#[tokio::test]
async fn a_refused_token_never_builds_the_client_role_nor_dials() {
    // A listener standing in for the backend: nothing may connect to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ops_tx, mut ops) = mpsc::unbounded_channel();
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "eve", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap();
    let (mut client, run, _stop) = start(auth_ctx(port, ops_tx)).await;
    client.send(Message::text(forged)).await.unwrap();
    // The server role is told in the words a refusing backend would use, then the close.
    let told = client.next().await.unwrap().unwrap();
    let told = told.to_text().unwrap();
    assert!(told.starts_with("Error("), "{told}");
    assert!(
        told.contains("Unauthorized") && told.contains("invalid token"),
        "{told}"
    );
    let Some(Ok(Message::Close(Some(frame)))) = client.next().await else {
        panic!("no close")
    };
    assert_eq!(u16::from(frame.code), 1008);
    run.await.unwrap();
    assert!(ops.try_recv().is_err(), "a client role was built");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the backend was dialed");
}

#[tokio::test]
async fn a_verified_identity_reaches_the_client_role_and_reauth_is_verified_too() {
    let (port, _seen) = backend().await;
    let (ops_tx, mut ops) = mpsc::unbounded_channel();
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let (mut client, run, stop) = start(auth_ctx(port, ops_tx)).await;
    client
        .send(Message::text(hs256(serde_json::json!({
            "sub": "ann", "exp": exp, "info": {"n": 1}, "channels": ["private-ann"]
        }))))
        .await
        .unwrap();
    let Some(ClientOp::Connect { credentials }) = ops.recv().await else {
        panic!()
    };
    let id = credentials.identity.unwrap();
    assert_eq!(id.user_id.as_deref(), Some(&b"ann"[..]));
    assert_eq!(id.user_info.as_deref(), Some(&br#"{"n":1}"#[..]));
    assert!(id.allows(b"private-ann"));
    // A second Connect is a re-authentication: a bad token stays at the edge...
    client.send(Message::text("garbage")).await.unwrap();
    loop {
        let m = client.next().await.unwrap().unwrap();
        if m.to_text().unwrap().starts_with("Refused") {
            assert!(m.to_text().unwrap().contains("Unauthorized"));
            break;
        }
    }
    // ...and a good one goes upstream with its identity.
    client
        .send(Message::text(hs256(
            serde_json::json!({"sub": "bea", "exp": exp}),
        )))
        .await
        .unwrap();
    let Some(ClientOp::Reauth { credentials }) = ops.recv().await else {
        panic!()
    };
    assert_eq!(
        credentials.identity.unwrap().user_id.as_deref(),
        Some(&b"bea"[..])
    );
    stop.cancel();
    run.await.unwrap();
}

/// What one idle session's task holds inline stays small: the pump an idle session waits in
/// is the whole of its task (event handlers are boxed while they run, issue 12), and queue
/// slots stay a few words. A change that inlines a handler again grows these by kilobytes
/// per client, which this catches before a memory run would.
#[tokio::test]
async fn an_idle_sessions_task_holds_only_its_wait() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let ctx = auth_ctx(1, tx);
    let (a, _b) = tokio::io::duplex(1 << 16);
    let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let link = Link::websocket(
        server,
        8,
        1 << 20,
        Duration::from_secs(2),
        ctx.metrics.down.clone(),
    );
    let stop = CancellationToken::new();
    let mut session = Session::new(ctx, link, Box::new(Greeter), &Handshake::default());
    let pump = std::mem::size_of_val(&session.pump(&stop));
    let on_event = std::mem::size_of_val(&session.on_event(super::Ev::Tick));
    // 488 bytes since the session writes its own sockets (one wait per leg); 712 since its
    // timer and shutdown wait live as long as the pump, and messages are handled in place;
    // 776 since those two are gated (`gate.rs`: polled only when woken).
    assert!(pump <= 800, "the idle wait is {pump} bytes inline");
    assert!(
        on_event > 2 * pump,
        "handlers ({on_event} bytes) are larger than the wait ({pump}): why they are boxed"
    );
    assert!(std::mem::size_of::<super::LinkOut>() <= 64);
    assert!(
        std::mem::size_of::<Link>() <= 192,
        "a link is held inline twice: {} bytes",
        std::mem::size_of::<Link>()
    );
    assert!(std::mem::size_of::<Session>() <= 1280);
    let run = std::mem::size_of_val(&session.run(stop.clone()));
    assert!(run <= 2048, "a session's whole future is {run} bytes");
}

/// The synchronous path writes only what [`Link::send`] would have queued without a wait:
/// `takes_now` answers as queuing the messages one after another would, in depth and in
/// bytes, with one message larger than the whole budget taken by an empty queue.
#[tokio::test]
async fn takes_now_agrees_with_queuing_one_at_a_time() {
    let (a, _b) = tokio::io::duplex(1 << 16);
    let ws = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let mut link = Link::websocket(ws, 3, 10, Duration::from_secs(1), LegCounters::detached());
    let msg = |n: usize| WsMsg::Text(Bytes::from(vec![b'x'; n]));
    assert!(link.takes_now(&[]));
    assert!(link.takes_now(&[msg(4), msg(4)]));
    // Over the bytes: the third would make 12 of 10.
    assert!(!link.takes_now(&[msg(4), msg(4), msg(4)]));
    // Over the depth: four of three.
    assert!(!link.takes_now(&[msg(1), msg(1), msg(1), msg(1)]));
    // An empty queue takes one message larger than the whole budget, and nothing after it.
    assert!(link.takes_now(&[msg(50)]));
    assert!(!link.takes_now(&[msg(50), msg(1)]));
    link.push(msg(8));
    assert!(link.takes_now(&[msg(2)]));
    assert!(!link.takes_now(&[msg(3)]));
    // A stalled link takes nothing (its writes are dropped) but an empty list.
    link.stall_now();
    assert!(!link.takes_now(&[msg(1)]));
    assert!(link.takes_now(&[]));
}

/// Counts the reads that reach the socket under a link.
struct CountingIo {
    inner: tokio::io::DuplexStream,
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl tokio::io::AsyncRead for CountingIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A link whose socket had nothing to read is not read again until the socket wakes it; a
/// message that then arrives is read, and so is each one after it.
#[tokio::test]
async fn a_link_reads_its_socket_again_only_once_woken() {
    use futures_util::FutureExt as _;
    use std::sync::atomic::Ordering;
    let (a, b) = tokio::io::duplex(1 << 16);
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let io = CountingIo {
        inner: a,
        reads: reads.clone(),
    };
    let server = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    let mut link = Link::websocket(
        server,
        8,
        1 << 20,
        Duration::from_secs(2),
        LegCounters::detached(),
    );
    assert!(link.event(true).now_or_never().is_none());
    let after_first = reads.load(Ordering::Relaxed);
    assert!(after_first >= 1);
    for _ in 0..10 {
        assert!(link.event(true).now_or_never().is_none());
    }
    assert_eq!(
        reads.load(Ordering::Relaxed),
        after_first,
        "polled while idle"
    );
    for text in ["one", "two"] {
        client.send(Message::text(text)).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(2), link.event(true))
            .await
            .expect("a message that arrived after an idle read is read");
        match ev {
            super::link::Event::In(Some(Ok(WsMsg::Text(b)))) => assert_eq!(b, text),
            other => panic!("unexpected {other:?}"),
        }
    }
    client.send(Message::text("three")).await.unwrap();
    client.send(Message::text("four")).await.unwrap();
    for text in ["three", "four"] {
        match link.recv().await {
            Some(Ok(WsMsg::Text(b))) => assert_eq!(b, text),
            other => panic!("unexpected {other:?}"),
        }
    }
}
