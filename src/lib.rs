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
//! - [`admission`]: per-client limits of a route and its `Origin` allowlist.
//! - [`auth`]: edge authentication (`[route.auth]`): JWT verification, the verified identity.
//! - [`server`]: startup, reload and drain. [`shutdown`]: signals. [`logging`]: tracing setup.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod admission;
pub mod auth;
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
pub mod tcp;
pub mod template;
pub mod tls;
pub mod translate;
pub mod upstream;
pub mod websocket;
pub mod workers;

/// Run the proxy with `config` until SIGTERM/SIGINT, then drain. Without a file to re-read,
/// a reload is refused.
pub async fn run(config: config::Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    run_from(config, None).await
}

/// Run the proxy with `config`, loaded from `path`: SIGHUP or `POST /reload` on the admin
/// listener (`switchboard reload`) re-reads `path` and applies it; SIGTERM/SIGINT drain.
pub async fn run_from(
    config: config::Config,
    path: Option<std::path::PathBuf>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let handle = metrics::install()?;
    let mut hangups = shutdown::hangups()?;
    let mut running = server::start(&config, handle).await?;
    // Readiness for systemd `Type=notify`: every listener is bound.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let signal = shutdown::signal();
    tokio::pin!(signal);
    enum Ev {
        Stop(std::io::Result<&'static str>),
        Hangup,
        Asked(Option<admin::ReloadAsk>),
    }
    let sig = loop {
        let ev = tokio::select! {
            s = &mut signal => Ev::Stop(s),
            _ = hangups.recv() => Ev::Hangup,
            a = running.reload_asked() => Ev::Asked(a),
        };
        match ev {
            Ev::Stop(s) => break s?,
            Ev::Hangup => {
                tracing::info!(signal = "SIGHUP", "reloading the config");
                let _ = reload(&mut running, path.as_deref()).await;
            }
            Ev::Asked(Some(ask)) => {
                tracing::info!(via = "POST /reload", "reloading the config");
                let _ = ask.send(reload(&mut running, path.as_deref()).await);
            }
            // The admin endpoint is gone: only signals are left to wait for.
            Ev::Asked(None) => break signal.as_mut().await?,
        }
    };
    tracing::info!(
        signal = sig,
        grace_ms = running.grace().as_millis() as u64,
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

/// One reload, told to systemd as `RELOADING=1` then `READY=1`.
async fn reload(
    running: &mut server::Running,
    path: Option<&std::path::Path>,
) -> Result<String, String> {
    let Some(path) = path else {
        tracing::error!("reload refused: the proxy was not started from a config file");
        return Err("the proxy was not started from a config file".to_owned());
    };
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading, now]);
    }
    let r = running.reload(path).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    r
}
