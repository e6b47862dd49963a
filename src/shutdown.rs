//! Process signals: one future that resolves on SIGTERM or SIGINT.
//!
//! Knows no protocol; the runtime decides what draining means.

/// Wait for SIGTERM or SIGINT.
pub async fn signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// SIGHUP, the conventional "re-read your config" signal, as a stream. Installing it replaces
/// SIGHUP's default action (terminate) for the rest of the process's life, so it is installed
/// before readiness is reported.
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
}
