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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::Url;

use crate::dialect::{AuthRequest, Dial, Spec};
use crate::metrics as m;

/// Any byte stream a WebSocket can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket over a boxed stream (plain TCP or TLS).
pub type Ws = WebSocketStream<Box<dyn Io>>;

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
    pub async fn connect(&self, dial: &Dial) -> Result<Ws, UpstreamError> {
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

    async fn connect_inner(&self, dial: &Dial) -> Result<Ws, UpstreamError> {
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
        let _ = tcp.set_nodelay(true);
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
        let (ws, _resp) =
            tokio_tungstenite::client_async_with_config(req, io, Some(self.ws_config))
                .await
                .map_err(|e| UpstreamError::Handshake(e.to_string()))?;
        Ok(ws)
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
/// and the write buffer (what is gathered before a write; the cap on it stays tungstenite's
/// unbounded default because the session's queue already bounds what reaches it: at most
/// this plus one message).
pub fn ws_config(max_message: usize, read_buffer: usize, write_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .read_buffer_size(read_buffer)
        .write_buffer_size(write_buffer)
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
}
