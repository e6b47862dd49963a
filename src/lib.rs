//! Switchboard: a reverse proxy that translates real-time WebSocket sub-protocols at the
//! frame level.
//!
//! # Layout
//! - [`config`]: figment layering, validation, `check`. Opens no sockets.
//! - [`frame`]: the dialect-neutral operations and events. No parsing, no I/O.
//! - [`dialect`]: per-dialect codecs (bytes ⇄ dialect frames) and role state machines
//!   (dialect frames ⇄ neutral frames). Pure and synchronous.
//! - [`translate`]: route templates and the per-session subscription table. Pure.
//! - [`session`]: the session pump, the only `select!` loops; bounded queues and writers.
//! - [`hub`]: the embedded hub, an in-process backend (`upstream.dialect = "hub"`).
//! - [`engine`]: the Engine.IO server transport (long-polling and WebSocket) of Socket.IO routes.
//! - [`listener`]: accept, TLS, HTTP upgrade, routing by path.
//! - [`upstream`]: dialing backends. [`tls`]: rustls configs.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`. [`metrics`]: names and handles.
//! - [`server`]: startup and drain. [`shutdown`]: signals. [`logging`]: tracing setup.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod config;
pub mod dialect;
pub mod engine;
pub mod frame;
pub mod handshake;
pub mod hub;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod template;
pub mod tls;
pub mod translate;
pub mod upstream;

/// Run the proxy with `config` until SIGTERM/SIGINT, then drain.
pub async fn run(config: config::Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let handle = metrics::install()?;
    let running = server::start(&config, handle).await?;
    // Readiness for systemd `Type=notify`: every listener is bound.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let sig = shutdown::signal().await?;
    tracing::info!(
        signal = sig,
        grace_ms = config.shutdown.grace_period_ms,
        "draining"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let left = running.shutdown().await;
    if left > 0 {
        tracing::warn!(
            sessions = left,
            "grace period over; dropping remaining sessions"
        );
    }
    tracing::info!("stopped");
    Ok(())
}
