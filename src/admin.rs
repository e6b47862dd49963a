//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (alive), `/readyz`
//! (listeners bound, not draining, and every watched link up: the hub's Redis) and
//! `POST /reload` (re-read the config file; what `switchboard reload` calls). Bind it to
//! loopback: whoever reaches it can make the process re-read its own file, nothing more.
//!
//! Must not touch: proxy sessions.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::handshake::text;

/// Readiness shared with the runtime.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    /// Links whose loss makes the process not ready (the hub's Redis link), with the body
    /// `/readyz` answers while one is down.
    links: std::sync::RwLock<Vec<(&'static str, Arc<AtomicBool>)>>,
}

impl Health {
    /// Mark ready (listeners bound) or not (draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    /// Report `down` on `/readyz` (with a 503) whenever `up` is false.
    pub fn watch_link(&self, down: &'static str, up: Arc<AtomicBool>) {
        self.links
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((down, up));
    }
    /// What `/readyz` says of the first link that is down, if any.
    pub fn link_down(&self) -> Option<&'static str> {
        self.links
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(_, up)| !up.load(Ordering::Acquire))
            .map(|(down, _)| *down)
    }
}

/// A reload asked over `POST /reload`: the runtime answers with its summary or the reason it
/// refused the file.
pub type ReloadAsk = oneshot::Sender<Result<String, String>>;

/// How long `POST /reload` waits for the runtime (binding, reading TLS files).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `POST /reload`: 200 with the summary, 422 with the reason a file was refused; 403 for a
/// request a browser sent on a web page's behalf (it carries `Origin`; `switchboard reload`
/// and `curl` do not), so a page the operator has open cannot reload the proxy.
async fn reload(
    method: &Method,
    cross_site: bool,
    asks: mpsc::Sender<ReloadAsk>,
) -> Response<Full<Bytes>> {
    if cross_site {
        return text(StatusCode::FORBIDDEN, "POST /reload is not for browsers\n");
    }
    if method != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "POST /reload\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let (tx, rx) = oneshot::channel();
    if asks.send(tx).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    let (status, body) = match tokio::time::timeout(RELOAD_WAIT, rx).await {
        Ok(Ok(Ok(summary))) => (StatusCode::OK, summary),
        Ok(Ok(Err(why))) => (StatusCode::UNPROCESSABLE_ENTITY, why),
        Ok(Err(_)) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_owned()),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "the reload did not finish in time".to_owned(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serve the admin endpoints until `shutdown`; `POST /reload` asks go to `reloads`.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    reloads: mpsc::Sender<ReloadAsk>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(50)).await; continue; }
            },
        };
        let (metrics, health, reloads) = (metrics.clone(), health.clone(), reloads.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                if req.uri().path() == "/reload" {
                    let (method, reloads) = (req.method().clone(), reloads.clone());
                    let cross_site = req.headers().contains_key(header::ORIGIN);
                    return futures_util::future::Either::Left(async move {
                        Ok::<_, Infallible>(reload(&method, cross_site, reloads).await)
                    });
                }
                let resp = match req.uri().path() {
                    "/metrics" => {
                        let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        );
                        r
                    }
                    "/healthz" => text(StatusCode::OK, "ok\n"),
                    "/readyz" if !health.is_ready() => {
                        text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                    // Serving goes on (local delivery works); the instance is not whole.
                    "/readyz" => match health.link_down() {
                        Some(down) => text(StatusCode::SERVICE_UNAVAILABLE, down),
                        None => text(StatusCode::OK, "ready\n"),
                    },
                    _ => text(StatusCode::NOT_FOUND, "not found\n"),
                };
                futures_util::future::Either::Right(async move { Ok::<_, Infallible>(resp) })
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
