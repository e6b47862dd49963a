//! Dialing upstream backends: TCP, TLS for `wss://`, the WebSocket handshake with the
//! dialect's own query parameters and subprotocols, all under one timeout.
//!
//! Owns: building the backend URL from `upstream.url`, the dial part of the connect timeout,
//! the connect-latency and failure metrics. The rest of `connect_timeout_ms`, the protocol
//! handshake after the upgrade (Engine.IO open and namespace CONNECT, STOMP CONNECTED), is
//! the session's to enforce: it needs the client role's state, which is not dialing.
//!
//! Must not touch: frames or translation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use url::Url;

use crate::dialect::{AuthRequest, Dial, Spec};
use crate::handshake::has_token;
use crate::metrics as m;
use crate::websocket::{Io, Socket};

/// Why an upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Bad URL.
    #[error("bad upstream url: {0}")]
    Url(String),
    /// TCP connect failed.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS handshake failed.
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        /// Host.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// WebSocket handshake failed.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    /// Took too long.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
}

/// How to reach one route's backend.
#[derive(Clone)]
pub struct Dialer {
    url: Url,
    spec: &'static Spec,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    ws_config: WebSocketConfig,
    route: Arc<str>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("url", &self.url.as_str())
            .field("dialect", &self.spec.dialect)
            .finish()
    }
}

/// Add the dialect's own query parameters (and trailing slash) to the URL its users know.
pub fn backend_url(url: &str, spec: &Spec) -> Result<Url, UpstreamError> {
    let mut u = Url::parse(url).map_err(|e| UpstreamError::Url(e.to_string()))?;
    if spec.backend_trailing_slash && !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    if !spec.backend_query.is_empty() {
        let mut q = u.query_pairs_mut();
        for (k, v) in spec.backend_query {
            q.append_pair(k, v);
        }
    }
    Ok(u)
}

/// The URL one session dials: the route's backend URL plus what its client role adds.
fn session_url(base: &Url, dial: &Dial) -> Url {
    let mut u = base.clone();
    if !dial.path_suffix.is_empty() {
        let p = format!(
            "{}/{}",
            u.path().trim_end_matches('/'),
            dial.path_suffix.trim_start_matches('/')
        );
        u.set_path(&p);
    }
    if !dial.query.is_empty() {
        let mut q = u.query_pairs_mut();
        for (k, v) in &dial.query {
            q.append_pair(k, v);
        }
    }
    u
}

impl Dialer {
    /// A dialer for `url` speaking the dialect of `spec`.
    pub fn new(
        route: &str,
        url: &str,
        spec: &'static Spec,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
        max_message_size: usize,
        read_buffer: usize,
    ) -> Result<Self, UpstreamError> {
        let url = backend_url(url, spec)?;
        // `[limits]`'s default write buffer until told otherwise (`with_write_buffer`).
        let write_buffer = crate::config::Limits::default().write_buffer_bytes;
        let ws_config = ws_config(max_message_size, read_buffer, write_buffer);
        Ok(Self {
            url,
            spec,
            tls,
            timeout,
            ws_config,
            route: route.into(),
        })
    }

    /// The same dialer, gathering this many bytes of frames before writing
    /// (`limits.write_buffer_bytes`).
    #[must_use]
    pub fn with_write_buffer(mut self, bytes: usize) -> Self {
        self.ws_config = ws_config(
            self.ws_config.max_message_size.unwrap_or(usize::MAX),
            self.ws_config.read_buffer_size,
            bytes,
        );
        self
    }

    /// The WebSocket settings every dial of this dialer uses.
    pub fn ws_config(&self) -> &WebSocketConfig {
        &self.ws_config
    }

    /// Whether the backend URL is `wss://`.
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "wss"
    }

    /// Dial as the client role asks (path and query additions, headers). Records latency
    /// and failures. Bounds TCP, TLS and the WebSocket upgrade by the connect timeout; the
    /// session holds the protocol handshake to what is left of it.
    pub async fn connect(&self, dial: &Dial) -> Result<Socket, UpstreamError> {
        let started = Instant::now();
        let res = tokio::time::timeout(self.timeout, self.connect_inner(dial))
            .await
            .unwrap_or(Err(UpstreamError::Timeout(self.timeout)));
        let dialect = self.spec.dialect.label();
        match &res {
            Ok(_) => m::upstream_connected(&self.route, dialect, started.elapsed()),
            Err(e) => m::upstream_connect_failed(&self.route, dialect, failure_reason(e)),
        }
        res
    }

    async fn connect_inner(&self, dial: &Dial) -> Result<Socket, UpstreamError> {
        let host = self
            .url
            .host_str()
            .ok_or_else(|| UpstreamError::Url("no host".into()))?
            .to_owned();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let addr = format!(
            "{}:{port}",
            host.trim_start_matches('[').trim_end_matches(']')
        );
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: addr.clone(),
                source,
            })?;
        crate::tcp::configure(&tcp);
        let io: Box<dyn Io> = match (&self.tls, self.is_tls()) {
            (Some(cfg), true) => {
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                )
                .map_err(|e| UpstreamError::Url(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls {
                        host: host.clone(),
                        source,
                    })?;
                Box::new(tls)
            }
            (None, true) => return Err(UpstreamError::Url("wss:// without a TLS config".into())),
            _ => Box::new(tcp),
        };
        let mut req = session_url(&self.url, dial)
            .as_str()
            .into_client_request()
            .map_err(|e| UpstreamError::Handshake(e.to_string()))?;
        if !self.spec.requests.is_empty() {
            let v = HeaderValue::from_str(&self.spec.requests.join(", "))
                .map_err(|e| UpstreamError::Handshake(e.to_string()))?;
            req.headers_mut().insert("Sec-WebSocket-Protocol", v);
        }
        for (k, v) in &dial.headers {
            let v =
                HeaderValue::from_str(v).map_err(|e| UpstreamError::Handshake(e.to_string()))?;
            if let Ok(name) =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            {
                req.headers_mut().insert(name, v);
            }
        }
        let upgraded = upgrade(io, req, self.spec.requests).await?;
        Ok(Socket::upgraded(upgraded, Role::Client, &self.ws_config))
    }
}

/// The largest answer an authorization endpoint may give.
const MAX_AUTH_BODY: usize = 64 * 1024;

impl Dialer {
    /// POST a client role's [`AuthRequest`] (a form, with the downstream client's
    /// credentials as headers) and return the body of a 2xx answer, all within `limit`.
    /// `https://` uses the route's TLS client config.
    pub async fn authorize(&self, req: &AuthRequest, limit: Duration) -> Result<Bytes, String> {
        tokio::time::timeout(limit, self.authorize_inner(req))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
    }

    async fn authorize_inner(&self, req: &AuthRequest) -> Result<Bytes, String> {
        use http_body_util::{BodyExt, Full, Limited};
        let url = Url::parse(&req.url).map_err(|e| e.to_string())?;
        let host = url.host_str().ok_or("no host")?.to_owned();
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().ok_or("no port")?;
        let tcp = TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
        let io: Box<dyn Io> = match (url.scheme(), &self.tls) {
            ("http", _) => Box::new(tcp),
            ("https", Some(cfg)) => {
                let name =
                    rustls::pki_types::ServerName::try_from(bare).map_err(|e| e.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}: {e}"))?;
                Box::new(tls)
            }
            (s, _) => return Err(format!("cannot POST to a {s} URL")),
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| e.to_string())?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&req.form)
            .finish();
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut r = hyper::Request::post(path)
            .header(hyper::header::HOST, url.authority())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::CONNECTION, "close");
        for (k, v) in &req.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        let r = r
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let work = async {
            let resp = sender.send_request(r).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_AUTH_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or_default())
                ))
            }
        };
        tokio::pin!(work);
        tokio::pin!(conn);
        // The connection is driven until the answer is read; its end first is no answer.
        tokio::select! {
            r = &mut work => r,
            c = &mut conn => match c {
                Ok(()) => work.await,
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

fn failure_reason(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Url(_) => "url",
        UpstreamError::Connect { .. } => "connect",
        UpstreamError::Tls { .. } => "tls",
        UpstreamError::Handshake(_) => "handshake",
        UpstreamError::Timeout(_) => "timeout",
    }
}

/// The WebSocket settings of one leg, client or upstream: the message limit (checked from
/// the frame header, before buffering), the read buffer (allocated per socket when it opens)
/// and the write buffer (what is gathered before a write; nothing caps it beyond that
/// because the session's queue already bounds what reaches it: at most this plus what one
/// flush of the queue encodes).
pub fn ws_config(max_message: usize, read_buffer: usize, write_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .read_buffer_size(read_buffer)
        .write_buffer_size(write_buffer)
}

/// The WebSocket upgrade of `req` (as tungstenite builds a client request: key, version,
/// `Host`) over `io`, by hyper's HTTP/1.1 client; the answer checked as RFC 6455 §4.1 asks.
/// hyper's upgraded connection replays whatever the backend sent right behind its `101`
/// (Engine.IO's `open` often is), so the framing reads it first.
async fn upgrade(
    io: Box<dyn Io>,
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
    offered: &'static [&'static str],
) -> Result<hyper::upgrade::Upgraded, UpstreamError> {
    let fail = |e: String| UpstreamError::Handshake(e);
    let (mut parts, ()) = req.into_parts();
    let accept = parts
        .headers
        .get("Sec-WebSocket-Key")
        .map(|k| derive_accept_key(k.as_bytes()))
        .ok_or_else(|| fail("no Sec-WebSocket-Key".into()))?;
    // The request line carries the path, not the absolute URL tungstenite keeps.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| fail(e.to_string()))?;
    let req = hyper::Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| fail(e.to_string()))?;
    // Driven apart until it hands its socket to the upgrade (it ends once it has read the
    // 101, or with the connection); aborted with this future (a backend that never answers,
    // the connect timeout).
    let conn = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(conn.with_upgrades()));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail(e.to_string()))?;
    check_answer(&resp, &accept, offered).map_err(fail)?;
    let upgraded = hyper::upgrade::on(resp).await;
    drop(conn);
    upgraded.map_err(|e| fail(e.to_string()))
}

/// Whether a backend's answer to the upgrade accepts it: `101`, `Upgrade: websocket`,
/// `Connection: upgrade`, the accept key for our key, and a subprotocol among those offered
/// (one when any was offered).
fn check_answer<B>(
    resp: &hyper::Response<B>,
    accept: &str,
    offered: &[&str],
) -> Result<(), String> {
    use hyper::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
    let status = resp.status();
    if status != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("HTTP error: {status}"));
    }
    let h = resp.headers();
    let text = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if !has_token(h, UPGRADE, "websocket") {
        return Err("no `Upgrade: websocket` in the answer".into());
    }
    if !has_token(h, CONNECTION, "upgrade") {
        return Err("no `Connection: upgrade` in the answer".into());
    }
    if text(SEC_WEBSOCKET_ACCEPT) != Some(accept) {
        return Err("Sec-WebSocket-Accept does not match the key".into());
    }
    match (text(SEC_WEBSOCKET_PROTOCOL), offered.is_empty()) {
        (None, true) => Ok(()),
        (None, false) => Err("the backend chose no subprotocol of those offered".into()),
        (Some(p), _) if offered.iter().any(|o| o.eq_ignore_ascii_case(p.trim())) => Ok(()),
        (Some(p), _) => Err(format!("the backend chose subprotocol {p:?}, not offered")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dialect::{pusher, socketio, stomp};

    #[test]
    fn backend_urls_get_the_dialects_params() {
        let u = backend_url("ws://127.0.0.1:3000/socket.io", &socketio::SPEC).unwrap();
        assert_eq!(
            u.as_str(),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        let u = backend_url("ws://127.0.0.1:15674/ws", &stomp::SPEC).unwrap();
        assert_eq!(u.as_str(), "ws://127.0.0.1:15674/ws");
        let u = backend_url("ws://127.0.0.1:6001/app/key", &pusher::SPEC).unwrap();
        assert!(
            u.as_str()
                .starts_with("ws://127.0.0.1:6001/app/key?protocol=7&client=switchboard&version=")
        );
    }

    #[test]
    fn the_read_buffer_setting_reaches_the_upstream_socket() {
        let d = Dialer::new(
            "r",
            "ws://127.0.0.1:1/ws",
            &stomp::SPEC,
            None,
            Duration::from_secs(1),
            1 << 20,
            4096,
        )
        .unwrap();
        assert_eq!(d.ws_config.read_buffer_size, 4096);
        assert_eq!(d.ws_config.max_message_size, Some(1 << 20));
    }

    #[test]
    fn a_client_role_adds_path_query_and_headers() {
        let base = backend_url("ws://127.0.0.1:6001/app", &pusher::SPEC).unwrap();
        let dial = Dial {
            path_suffix: "/k1".into(),
            query: vec![("token".into(), "a b".into())],
            headers: Vec::new(),
        };
        let u = session_url(&base, &dial);
        assert_eq!(u.path(), "/app/k1");
        assert!(u.query().unwrap_or_default().ends_with("&token=a+b"));
    }

    /// A raw backend: reads the upgrade request, answers `101` and, in the same write, a
    /// first text frame (as Engine.IO's `open` often arrives).
    async fn raw_backend(protocol: Option<&'static str>, status: &'static str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                req.push(b[0]);
            }
            let req = String::from_utf8(req).unwrap();
            let line = req.lines().next().unwrap_or_default();
            assert!(
                line.starts_with("GET /ws") && line.ends_with(" HTTP/1.1"),
                "{req}"
            );
            assert!(line.contains("x=1"), "{req}");
            let key = req
                .lines()
                .find_map(|l| {
                    l.strip_prefix("sec-websocket-key: ")
                        .or(l.strip_prefix("Sec-WebSocket-Key: "))
                })
                .unwrap();
            let mut answer = format!(
                "HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
                derive_accept_key(key.trim().as_bytes())
            );
            if let Some(p) = protocol {
                answer.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
            }
            answer.push_str("\r\n");
            let mut bytes = answer.into_bytes();
            bytes.extend_from_slice(&[0x81, 5]);
            bytes.extend_from_slice(b"hello");
            s.write_all(&bytes).await.unwrap();
            // Held open until the client is done.
            let _ = s.read(&mut [0u8; 64]).await;
        });
        port
    }

    fn dialer(port: u16, spec: &'static Spec) -> Dialer {
        Dialer::new(
            "r",
            &format!("ws://127.0.0.1:{port}/ws?x=1"),
            spec,
            None,
            Duration::from_secs(5),
            1 << 20,
            2048,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn an_upgrade_keeps_the_bytes_right_behind_the_101() {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let port = raw_backend(Some("v12.stomp"), "101 Switching Protocols").await;
        let mut ws = dialer(port, &stomp::SPEC)
            .connect(&Dial::default())
            .await
            .unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    }

    #[tokio::test]
    async fn an_answer_that_does_not_accept_the_upgrade_is_refused() {
        let cases: [(Option<&'static str>, &'static str, &'static Spec, &str); 4] = [
            (
                None,
                "404 Not Found",
                &socketio::SPEC,
                "HTTP error: 404 Not Found",
            ),
            // STOMP offers subprotocols: one must be chosen, and only one of those.
            (
                None,
                "101 Switching Protocols",
                &stomp::SPEC,
                "no subprotocol",
            ),
            (
                Some("mqtt"),
                "101 Switching Protocols",
                &stomp::SPEC,
                "\"mqtt\", not offered",
            ),
            (
                Some("v12.stomp"),
                "101 Switching Protocols",
                &socketio::SPEC,
                "not offered",
            ),
        ];
        for (protocol, status, spec, expected) in cases {
            let port = raw_backend(protocol, status).await;
            match dialer(port, spec).connect(&Dial::default()).await {
                Err(UpstreamError::Handshake(e)) => assert!(e.contains(expected), "{e}"),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted: {protocol:?} {status}"),
            }
        }
    }
}
