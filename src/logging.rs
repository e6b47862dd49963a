//! Log setup: `tracing` with an env filter (`RUST_LOG` wins over `[log] level`).

use tracing_subscriber::EnvFilter;

/// Install the global subscriber.
pub fn init(log: &crate::config::Log) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
