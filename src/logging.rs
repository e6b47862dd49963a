//! Log setup: which targets log at which level, the format, colour.
//!
//! Owns: turning `[log] level` and `filter` (or `RUST_LOG`) into one `tracing` filter, the
//! ceiling that keeps third-party crates off `trace`, and the choice of ANSI colour.
//!
//! Must not touch: what is logged. Call sites log identifiers, sizes and outcomes, never a
//! message body or a credential; the types that carry credentials (`Credentials`,
//! `SubParams`, `Handshake`, `Dial`, `AuthRequest`) print them redacted in `{:?}`.
//!
//! # The rules
//! - `log.level` is Switchboard's own: a bare level (`debug`) applies to the `switchboard`
//!   targets only; directives naming Switchboard's modules (`switchboard::session=trace`)
//!   are taken as written.
//! - Every other target (tungstenite, hyper, rustls, ...) logs at `warn` unless `log.filter`
//!   names it (`tungstenite=debug`).
//! - Third-party targets never log at `trace`, named or not: at `trace` tungstenite prints
//!   every frame and the client upgrade request (a bearer token, a cookie, a Socket.IO auth
//!   object), rustls the handshake messages. Switchboard cannot redact inside their output,
//!   so the ceiling is `debug`, and a `trace` asked for them is reported once at start.
//! - `RUST_LOG`, when set, replaces `log.level` and `log.filter`, read as `log.level` is.
//! - ANSI colour only when the log's stream (stderr) is a terminal and `NO_COLOR` is unset:
//!   a file or the journal gets plain text.

use std::io::IsTerminal;

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The crate's own target prefix.
const OWN: &str = "switchboard";

/// A `[log]` setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `log.level` (or `RUST_LOG`) does not parse.
    #[error("not a level or a filter directive: {0}")]
    Level(String),
    /// `log.filter` has a bare level or does not parse.
    #[error("{0}")]
    Filter(String),
}

impl LogError {
    /// The `[log]` key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Level(_) => "level",
            Self::Filter(_) => "filter",
        }
    }
}

/// Whether `target` is one of Switchboard's own (`switchboard`, `switchboard::…`).
fn is_own(target: &str) -> bool {
    target == OWN
        || target
            .strip_prefix(OWN)
            .is_some_and(|r| r.starts_with("::"))
}

/// A bare level (`info`, `TRACE`, `off`), as opposed to a directive naming a target.
fn bare_level(part: &str) -> Option<LevelFilter> {
    if part.contains(['=', '[', ':']) {
        return None;
    }
    part.parse::<LevelFilter>().ok()
}

fn parts(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// The `tracing` filter for `level` (Switchboard's own) and `filter` (third-party targets by
/// name): `warn` for everything, then Switchboard's level, then the named targets.
pub fn directives(level: &str, filter: &str) -> Result<String, LogError> {
    let mut out = vec!["warn".to_owned()];
    for p in parts(level) {
        match bare_level(p) {
            Some(l) => out.push(format!("{OWN}={l}")),
            None if is_own(directive_target(p)) => out.push(p.to_owned()),
            None => {
                return Err(LogError::Level(format!(
                    "`{p}` is not a level nor a directive for Switchboard's modules; third-party targets go in `log.filter`"
                )));
            }
        }
    }
    for p in parts(filter) {
        if bare_level(p).is_some() {
            return Err(LogError::Filter(format!(
                "`{p}` is a bare level: name the targets (`tungstenite={p}`); Switchboard's own level is `log.level`"
            )));
        }
        out.push(p.to_owned());
    }
    let joined = out.join(",");
    EnvFilter::builder()
        .parse(&joined)
        .map_err(|e| match parts(filter).next() {
            Some(_) if EnvFilter::builder().parse(level).is_ok() => {
                LogError::Filter(format!("not a filter directive: {e}"))
            }
            _ => LogError::Level(e.to_string()),
        })?;
    Ok(joined)
}

/// The target a directive names (`hyper::proto[span{f}]=debug` → `hyper::proto`).
fn directive_target(p: &str) -> &str {
    let t = p.rsplit_once('=').map_or(p, |(t, _)| t);
    t.split(['[', '{']).next().unwrap_or(t).trim()
}

/// `RUST_LOG` read as `[log]` is: bare levels and Switchboard's modules as `level`, every
/// other target as `filter`.
fn split_env(env: &str) -> (String, String) {
    let (own, other): (Vec<&str>, Vec<&str>) =
        parts(env).partition(|p| bare_level(p).is_some() || is_own(directive_target(p)));
    (own.join(","), other.join(","))
}

/// Third-party directives asking for `trace` (a bare target means `trace` too): what the
/// ceiling will cut, to say so at start.
fn third_party_trace(directives: &str) -> Vec<String> {
    parts(directives)
        .filter(|p| bare_level(p).is_none())
        .filter_map(|p| {
            let lvl = p.rsplit_once('=').map_or("trace", |(_, l)| l.trim());
            let target = directive_target(p);
            let own = !target.is_empty() && is_own(target);
            (!own && lvl.eq_ignore_ascii_case("trace")).then(|| p.to_owned())
        })
        .collect()
}

/// Whether log lines get ANSI colour: only on a terminal, and never with `NO_COLOR` set.
pub fn use_ansi() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Install the global subscriber (stderr; `text` or `json`). A `RUST_LOG` that does not parse
/// is reported and the config's settings are used.
pub fn init(log: &crate::config::Log) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut warning = None;
    let chosen = match &from_env {
        Some(env) => {
            let (level, filter) = split_env(env);
            directives(&level, &filter)
        }
        .map_err(|e| {
            warning = Some(format!("RUST_LOG ignored: {e}"));
        }),
        None => Err(()),
    };
    let spec = match chosen {
        Ok(s) => s,
        // `check` validated the config's settings; `warn` is the last resort.
        Err(()) => directives(&log.level, &log.filter).unwrap_or_else(|_| "warn".into()),
    };
    let env_filter = EnvFilter::builder()
        .parse(&spec)
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    // Records of crates that log through `log` (tungstenite logs every frame at `trace`)
    // are built and forwarded only up to what some directive can show: with `log`'s
    // ceiling left at `trace`, formatting and dropping them was a tenth of the proxy's CPU
    // per message. Third-party `trace` is never shown (below), so `debug` at most.
    let log_ceiling = match env_filter.max_level_hint() {
        Some(l) if l >= LevelFilter::DEBUG => log::LevelFilter::Debug,
        Some(l) if l >= LevelFilter::INFO => log::LevelFilter::Info,
        Some(l) if l >= LevelFilter::WARN => log::LevelFilter::Warn,
        Some(l) if l >= LevelFilter::ERROR => log::LevelFilter::Error,
        Some(_) => log::LevelFilter::Off,
        None => log::LevelFilter::Debug,
    };
    // The ceiling: third-party events at `trace` never reach the output.
    let ceiling = filter_fn(|meta| *meta.level() != Level::TRACE || is_own(meta.target()));
    let filter = env_filter.and(ceiling);
    let ansi = use_ansi();
    let layer = if log.format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    if tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_err()
    {
        return;
    }
    // After `try_init`, which sets `log`'s ceiling from the subscriber's (unbounded here:
    // the filters are per layer).
    log::set_max_level(log_ceiling);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let capped = third_party_trace(&spec);
    if !capped.is_empty() {
        tracing::warn!(
            directives = %capped.join(","),
            "third-party targets log at most at debug: their trace output carries wire bytes and credentials"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_level_is_switchboards_own_and_the_rest_stays_at_warn() {
        assert_eq!(directives("trace", "").unwrap(), "warn,switchboard=trace");
        assert_eq!(
            directives("info, switchboard::session=debug", "tungstenite=debug").unwrap(),
            "warn,switchboard=info,switchboard::session=debug,tungstenite=debug"
        );
    }

    #[test]
    fn filter_must_name_targets_and_parse() {
        let e = directives("info", "trace").unwrap_err();
        assert_eq!(e.key(), "filter");
        assert!(e.to_string().contains("bare level"), "{e}");
        assert_eq!(
            directives("info", "hyper=loud").unwrap_err().key(),
            "filter"
        );
        assert_eq!(directives("chatty", "").unwrap_err().key(), "level");
        assert_eq!(directives("hyper=debug", "").unwrap_err().key(), "level");
    }

    #[test]
    fn rust_log_is_read_as_the_config_is() {
        let (level, filter) = split_env("debug,switchboard::session=trace,tungstenite=trace");
        assert_eq!(level, "debug,switchboard::session=trace");
        assert_eq!(filter, "tungstenite=trace");
        assert_eq!(
            directives(&level, &filter).unwrap(),
            "warn,switchboard=debug,switchboard::session=trace,tungstenite=trace"
        );
    }

    #[test]
    fn third_party_trace_is_found() {
        let spec = directives("trace", "tungstenite=trace,rustls,hyper=debug").unwrap();
        assert_eq!(
            third_party_trace(&spec),
            vec!["tungstenite=trace", "rustls"]
        );
        assert!(third_party_trace("warn,switchboard=trace,switchboard::x=trace").is_empty());
    }

    #[test]
    fn own_targets() {
        assert!(is_own("switchboard"));
        assert!(is_own("switchboard::session"));
        assert!(!is_own("switchboard_load"));
        assert!(!is_own("tungstenite::protocol"));
    }
}
