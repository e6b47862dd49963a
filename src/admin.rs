//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (alive) and
//! `/readyz` (listeners bound, not draining, and every watched link up: the hub's Redis).
//!
//! Must not touch: proxy sessions.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
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

/// Serve the admin endpoints until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Arc<Health>,
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
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
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
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
