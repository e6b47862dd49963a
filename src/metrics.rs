//! Metric names, descriptions, the Prometheus recorder, and typed helpers.
//!
//! Owns: every `switchboard_*` name and its labels (route, dialect, direction, side, kind,
//! outcome). Labels never carry user data.
//!
//! Must not touch: protocol logic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{
    Counter, Gauge, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Sessions open now.
pub const SESSIONS_ACTIVE: &str = "switchboard_sessions_active";
/// Sessions ended, by outcome.
pub const SESSIONS_TOTAL: &str = "switchboard_sessions_total";
/// WebSocket messages, by route, dialect, side and direction.
pub const FRAMES: &str = "switchboard_frames_total";
/// WebSocket message bytes, by route, dialect, side and direction.
pub const BYTES: &str = "switchboard_bytes_total";
/// Payload copies: each write of payload bytes into a new buffer (the one write into the frame
/// that carries it, escaping as it goes; base64, reassembly and unescaping before it).
pub const PAYLOAD_COPIES: &str = "switchboard_payload_copies_total";
/// Bytes copied by those copies.
pub const PAYLOAD_COPIED_BYTES: &str = "switchboard_payload_copied_bytes_total";
/// Frames that could not be translated, by kind.
pub const TRANSLATION_ERRORS: &str = "switchboard_translation_errors_total";
/// Failed upstream connects, by reason.
pub const UPSTREAM_CONNECT_FAILURES: &str = "switchboard_upstream_connect_failures_total";
/// Upstream connect latency (TCP + TLS + WebSocket handshake), seconds.
pub const UPSTREAM_CONNECT_SECONDS: &str = "switchboard_upstream_connect_seconds";
/// Handshakes refused at the listener, by reason.
pub const HANDSHAKE_FAILURES: &str = "switchboard_handshake_failures_total";
/// Connections accepted by listeners.
pub const CONNECTIONS_ACCEPTED: &str = "switchboard_connections_accepted_total";

/// Channels of the embedded hub with at least one subscriber on this instance.
pub const HUB_CHANNELS: &str = "switchboard_hub_channels";
/// Subscriptions to the embedded hub's channels on this instance.
pub const HUB_SUBSCRIBERS: &str = "switchboard_hub_subscribers";
/// Messages published to the embedded hub on this instance.
pub const HUB_PUBLISHES: &str = "switchboard_hub_publishes_total";
/// Deliveries the embedded hub queued to connections (one per subscription reached).
pub const HUB_DELIVERIES: &str = "switchboard_hub_deliveries_total";
/// Presence members (distinct users per channel) on this instance.
pub const HUB_PRESENCE_MEMBERS: &str = "switchboard_hub_presence_members";

/// Install the Prometheus recorder and describe every metric.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(UPSTREAM_CONNECT_SECONDS.into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    describe_ops();
    Ok(handle)
}

fn describe() {
    describe_gauge!(SESSIONS_ACTIVE, "Sessions open now");
    describe_counter!(SESSIONS_TOTAL, "Sessions ended, by outcome");
    describe_counter!(
        FRAMES,
        "WebSocket messages by route, dialect, side and direction"
    );
    describe_counter!(
        BYTES,
        "WebSocket message bytes by route, dialect, side and direction"
    );
    describe_counter!(
        PAYLOAD_COPIES,
        "Payload copies: each write of payload bytes into a new buffer"
    );
    describe_counter!(PAYLOAD_COPIED_BYTES, "Payload bytes copied by those copies");
    describe_counter!(
        TRANSLATION_ERRORS,
        "Frames that could not be translated, by kind"
    );
    describe_counter!(
        UPSTREAM_CONNECT_FAILURES,
        "Failed upstream connects, by reason"
    );
    describe_histogram!(
        UPSTREAM_CONNECT_SECONDS,
        metrics::Unit::Seconds,
        "Upstream connect latency"
    );
    describe_counter!(HANDSHAKE_FAILURES, "Client handshakes refused, by reason");
    describe_counter!(CONNECTIONS_ACCEPTED, "TCP connections accepted");
    describe_counter!(
        AUTH_FAILURES,
        "Clients refused by edge authentication, by reason"
    );
}

/// Record a successful upstream connect.
pub fn upstream_connected(route: &str, dialect: &'static str, took: Duration) {
    histogram!(UPSTREAM_CONNECT_SECONDS, "route" => route.to_owned(), "dialect" => dialect)
        .record(took.as_secs_f64());
}

/// Record a failed upstream connect.
pub fn upstream_connect_failed(route: &str, dialect: &'static str, reason: &'static str) {
    counter!(UPSTREAM_CONNECT_FAILURES, "route" => route.to_owned(), "dialect" => dialect, "reason" => reason).increment(1);
}

/// Record a refused client handshake.
pub fn handshake_failed(reason: &'static str) {
    counter!(HANDSHAKE_FAILURES, "reason" => reason).increment(1);
}

/// Record a translation error.
pub fn translation_error(route: &str, kind: &'static str) {
    counter!(TRANSLATION_ERRORS, "route" => route.to_owned(), "kind" => kind).increment(1);
}

/// Record an accepted connection.
pub fn accepted() {
    counter!(CONNECTIONS_ACCEPTED).increment(1);
}

/// Per-direction counters of one leg, resolved once per route.
#[derive(Clone)]
pub struct LegCounters {
    /// The route's series: behind one pointer, as every link holds a copy.
    series: Arc<LegSeries>,
    /// This leg's own counts, for the session-end log line: counted only by the handles
    /// [`LegCounters::for_session`] makes (the route's own handles leave it at 0).
    pub tally: LegTally,
    /// Whether `tally` counts (a session's handles).
    own: bool,
}

/// A route's message and byte series for one side, each way.
struct LegSeries {
    frames_in: Counter,
    bytes_in: Counter,
    frames_out: Counter,
    bytes_out: Counter,
}

impl LegCounters {
    /// Counters for `side` (`downstream`/`upstream`) of a route.
    pub fn new(route: &str, dialect: &'static str, side: &'static str) -> Self {
        let c = |name: &'static str, dir: &'static str| counter!(name, "route" => route.to_owned(), "dialect" => dialect, "side" => side, "direction" => dir);
        Self {
            series: Arc::new(LegSeries {
                frames_in: c(FRAMES, "in"),
                bytes_in: c(BYTES, "in"),
                frames_out: c(FRAMES, "out"),
                bytes_out: c(BYTES, "out"),
            }),
            tally: LegTally::default(),
            own: false,
        }
    }

    /// Counters that count nothing: a transport that counts itself (Engine.IO).
    pub fn detached() -> Self {
        Self {
            series: Arc::new(LegSeries {
                frames_in: Counter::noop(),
                bytes_in: Counter::noop(),
                frames_out: Counter::noop(),
                bytes_out: Counter::noop(),
            }),
            tally: LegTally::default(),
            own: false,
        }
    }
}

/// Session-level metric handles of one route.
#[derive(Clone)]
pub struct RouteMetrics {
    /// Route name (label).
    pub route: String,
    /// Downstream leg counters.
    pub down: LegCounters,
    /// Upstream leg counters.
    pub up: LegCounters,
    /// Active sessions gauge.
    pub active: Gauge,
    /// Payload copies.
    pub copies: Counter,
    /// Copied bytes.
    pub copied_bytes: Counter,
}

impl RouteMetrics {
    /// Resolve the handles of a route.
    pub fn new(route: &str, client: &'static str, upstream: &'static str) -> Self {
        Self {
            route: route.to_owned(),
            down: LegCounters::new(route, client, "downstream"),
            up: LegCounters::new(route, upstream, "upstream"),
            active: gauge!(SESSIONS_ACTIVE, "route" => route.to_owned()),
            copies: counter!(PAYLOAD_COPIES, "route" => route.to_owned()),
            copied_bytes: counter!(PAYLOAD_COPIED_BYTES, "route" => route.to_owned()),
        }
        .with_ops_series(upstream)
    }

    /// A session ended with `outcome`.
    pub fn session_ended(&self, outcome: &'static str) {
        counter!(SESSIONS_TOTAL, "route" => self.route.clone(), "outcome" => outcome).increment(1);
    }

    /// Record the payload copies a role reported: each copy counts once, with its bytes.
    pub fn copied(&self, c: crate::dialect::Copied) {
        if c.copies > 0 {
            self.copies.increment(c.copies);
        }
        if c.bytes > 0 {
            self.copied_bytes.increment(c.bytes);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's kit (issue 14): reloads, per-client limits, edge auth, and the per-session
// tallies behind the session-end log line. Registered at start-up (and per route when a route
// is built) so every series is on `/metrics` at 0 before anything happens: a dashboard and an
// alert can tell "nothing yet" from "not exported".
// ---------------------------------------------------------------------------------------------

/// The config generation being served: 1 at start, +1 per successful reload.
pub const CONFIG_GENERATION: &str = "switchboard_config_generation";
/// Reloads attempted, by outcome (`ok`, `error`).
pub const CONFIG_RELOADS: &str = "switchboard_config_reloads_total";
/// Clients refused by a per-client limit or the Origin allowlist, by route and reason
/// (one of [`LIMIT_REASONS`]).
pub const LIMIT_REFUSALS: &str = "switchboard_limit_refusals_total";
/// Clients refused by edge authentication, by route and reason (see [`AUTH_REASONS`]).
pub const AUTH_FAILURES: &str = "switchboard_auth_failures_total";

/// Reload outcomes, the `outcome` label of [`CONFIG_RELOADS`].
pub const RELOAD_OUTCOMES: [&str; 2] = ["ok", "error"];
/// Why a limit refused a client, the `reason` label of [`LIMIT_REFUSALS`].
pub const LIMIT_REASONS: [&str; 5] = [
    "connections_per_address",
    "connection_rate",
    "message_rate",
    "byte_rate",
    "origin",
];
/// Why edge authentication refused a client, the `reason` label of [`AUTH_FAILURES`]: no
/// token, a token that does not verify, an expired one, a wrong issuer or audience
/// (`auth::Refusal::label`). Other `&'static str` reasons are allowed; these are the
/// ones exported at 0 from the start.
pub const AUTH_REASONS: [&str; 5] = ["missing", "invalid", "expired", "issuer", "audience"];

/// `reason` labels of [`UPSTREAM_CONNECT_FAILURES`] (`upstream::failure_reason`).
const UPSTREAM_FAILURE_REASONS: [&str; 6] = [
    "url",
    "connect",
    "tls",
    "handshake",
    "timeout",
    "protocol_timeout",
];
/// `kind` labels of [`TRANSLATION_ERRORS`] (`frame::ErrorKind::label`).
const TRANSLATION_ERROR_KINDS: [&str; 6] = [
    "unauthorized",
    "unavailable",
    "protocol",
    "timeout",
    "untranslatable",
    "limit",
];
/// `reason` labels of [`HANDSHAKE_FAILURES`] the listener and the upgrade use.
const HANDSHAKE_FAILURE_REASONS: [&str; 8] = [
    "no_route",
    "not_websocket",
    "origin",
    "tls",
    "tls_timeout",
    "upgrade",
    "ws_key",
    "ws_version",
];

fn describe_ops() {
    describe_gauge!(
        CONFIG_GENERATION,
        "Config generation being served (1 at start, +1 per successful reload)"
    );
    describe_counter!(CONFIG_RELOADS, "Config reloads, by outcome (ok, error)");
    describe_counter!(
        LIMIT_REFUSALS,
        "Clients refused by a per-client limit or the Origin allowlist, by route and reason"
    );
    describe_counter!(
        AUTH_FAILURES,
        "Clients refused by edge authentication, by route and reason"
    );
    gauge!(CONFIG_GENERATION).set(1.0);
    for outcome in RELOAD_OUTCOMES {
        let _ = counter!(CONFIG_RELOADS, "outcome" => outcome);
    }
    for reason in HANDSHAKE_FAILURE_REASONS {
        let _ = counter!(HANDSHAKE_FAILURES, "reason" => reason);
    }
    let _ = counter!(CONNECTIONS_ACCEPTED);
}

/// Record the config generation now being served.
pub fn config_generation(generation: u64) {
    // Generations stay far below 2^53: exact as a gauge's f64.
    gauge!(CONFIG_GENERATION).set(generation as f64);
}

/// Record a reload attempt; `outcome` is `ok` or `error`.
pub fn config_reloaded(outcome: &'static str) {
    counter!(CONFIG_RELOADS, "outcome" => outcome).increment(1);
}

/// Record a client refused by a limit; `reason` is one of [`LIMIT_REASONS`].
pub fn limit_refused(route: &str, reason: &'static str) {
    counter!(LIMIT_REFUSALS, "route" => route.to_owned(), "reason" => reason).increment(1);
}

/// Record a client refused by edge authentication; see [`AUTH_REASONS`].
pub fn auth_failed(route: &str, reason: &'static str) {
    counter!(AUTH_FAILURES, "route" => route.to_owned(), "reason" => reason).increment(1);
}

/// Describe the embedded hub's metrics (and make them appear at zero once a hub exists).
pub fn hub_describe() {
    describe_gauge!(
        HUB_CHANNELS,
        "Hub channels with subscribers on this instance"
    );
    describe_gauge!(HUB_SUBSCRIBERS, "Hub subscriptions on this instance");
    describe_counter!(HUB_PUBLISHES, "Messages published to the hub");
    describe_counter!(HUB_DELIVERIES, "Hub deliveries queued to connections");
    describe_gauge!(
        HUB_PRESENCE_MEMBERS,
        "Presence members (distinct users per channel) on this instance"
    );
    gauge!(HUB_CHANNELS).increment(0.0);
    gauge!(HUB_SUBSCRIBERS).increment(0.0);
    counter!(HUB_PUBLISHES).increment(0);
    counter!(HUB_DELIVERIES).increment(0);
    gauge!(HUB_PRESENCE_MEMBERS).increment(0.0);
}

impl RouteMetrics {
    /// Registers at 0 the route's series that only appear when something goes wrong
    /// (refusals, failed connects, translation errors) and its connect-latency histogram,
    /// so `/metrics` names them from the start. Called by [`RouteMetrics::new`].
    fn with_ops_series(self, upstream: &'static str) -> Self {
        for reason in LIMIT_REASONS {
            let _ = counter!(LIMIT_REFUSALS, "route" => self.route.clone(), "reason" => reason);
        }
        for reason in AUTH_REASONS {
            let _ = counter!(AUTH_FAILURES, "route" => self.route.clone(), "reason" => reason);
        }
        let _ =
            counter!(SESSIONS_TOTAL, "route" => self.route.clone(), "outcome" => "client_closed");
        for reason in UPSTREAM_FAILURE_REASONS {
            let _ = counter!(UPSTREAM_CONNECT_FAILURES, "route" => self.route.clone(), "dialect" => upstream, "reason" => reason);
        }
        for kind in TRANSLATION_ERROR_KINDS {
            let _ = counter!(TRANSLATION_ERRORS, "route" => self.route.clone(), "kind" => kind);
        }
        let _ = histogram!(UPSTREAM_CONNECT_SECONDS, "route" => self.route.clone(), "dialect" => upstream);
        self
    }
}

/// One leg's messages and bytes each way over one session: what the session-end log line
/// reports. Cheap to clone (one shared allocation).
#[derive(Debug, Clone, Default)]
pub struct LegTally(Arc<[AtomicU64; 4]>);

/// Indexes into a [`LegTally`].
const FRAMES_IN: usize = 0;
const BYTES_IN: usize = 1;
const FRAMES_OUT: usize = 2;
const BYTES_OUT: usize = 3;

/// A [`LegTally`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounts {
    /// Messages received from the peer.
    pub frames_in: u64,
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Messages sent to the peer.
    pub frames_out: u64,
    /// Bytes sent to the peer.
    pub bytes_out: u64,
}

impl LegTally {
    /// The counts now.
    pub fn get(&self) -> LegCounts {
        let r = |i: usize| self.0.get(i).map_or(0, |a| a.load(Ordering::Relaxed));
        LegCounts {
            frames_in: r(FRAMES_IN),
            bytes_in: r(BYTES_IN),
            frames_out: r(FRAMES_OUT),
            bytes_out: r(BYTES_OUT),
        }
    }
}

impl LegCounters {
    /// Handles for one session's leg: they count into the route's series and into a fresh
    /// [`LegTally`] (`self.tally` of the result). The route's handles are shared, so a leg
    /// costs one small allocation.
    pub fn for_session(&self) -> Self {
        Self {
            own: true,
            tally: LegTally::default(),
            ..self.clone()
        }
    }

    /// `frames` messages of `bytes` in all came from the peer.
    pub fn count_in(&self, frames: u64, bytes: u64) {
        self.series.frames_in.increment(frames);
        self.series.bytes_in.increment(bytes);
        if self.own {
            self.tally.add(FRAMES_IN, frames);
            self.tally.add(BYTES_IN, bytes);
        }
    }

    /// `frames` messages of `bytes` in all went to the peer.
    pub fn count_out(&self, frames: u64, bytes: u64) {
        self.series.frames_out.increment(frames);
        self.series.bytes_out.increment(bytes);
        if self.own {
            self.tally.add(FRAMES_OUT, frames);
            self.tally.add(BYTES_OUT, bytes);
        }
    }

    /// Add what a link counted on its own since it last did (`pending`, left at zero): a
    /// session's link counts with plain additions and hands the sums on at its ticks and
    /// when it ends, because two route counters and the tally, each way, were a dozen atomic
    /// read-modify-writes per round trip. `/metrics` lags a live session by at most a tick.
    pub fn add(&self, pending: &mut LegCounts) {
        let p = std::mem::take(pending);
        if p.frames_in > 0 {
            self.count_in(p.frames_in, p.bytes_in);
        }
        if p.frames_out > 0 {
            self.count_out(p.frames_out, p.bytes_out);
        }
    }
}

impl LegCounts {
    /// One message of `bytes` came from the peer.
    pub fn count_in(&mut self, bytes: u64) {
        self.frames_in += 1;
        self.bytes_in += bytes;
    }

    /// One message of `bytes` went to the peer.
    pub fn count_out(&mut self, bytes: u64) {
        self.frames_out += 1;
        self.bytes_out += bytes;
    }
}

impl LegTally {
    fn add(&self, index: usize, n: u64) {
        if let Some(a) = self.0.get(index) {
            a.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// 1 while the hub's Redis link (`[hub] redis_url`) is up, 0 while it is down.
pub const HUB_REDIS_UP: &str = "switchboard_hub_redis_up";
/// Times the hub's Redis link was lost and dialed again.
pub const HUB_REDIS_RECONNECTS: &str = "switchboard_hub_redis_reconnects_total";
/// Publishes delivered on this instance only (Redis was down or its queue full), and other
/// instances' messages dropped because this one fell 4,096 behind.
pub const HUB_REDIS_DROPPED: &str = "switchboard_hub_redis_dropped_total";
/// Messages other instances published, received through Redis.
pub const HUB_REDIS_RECEIVED: &str = "switchboard_hub_redis_received_total";
/// Instances found dead (heartbeat expired) whose presence members were removed.
pub const HUB_REDIS_SWEPT: &str = "switchboard_hub_redis_swept_instances_total";

/// Describe the hub's Redis link metrics (and make them appear at zero).
pub fn hub_redis_describe() {
    describe_gauge!(HUB_REDIS_UP, "1 while the hub's Redis link is up");
    describe_counter!(
        HUB_REDIS_RECONNECTS,
        "Times the hub's Redis link was lost and dialed again"
    );
    describe_counter!(
        HUB_REDIS_DROPPED,
        "Publishes delivered locally only (Redis down or its queue full), or received ones dropped (too far behind)"
    );
    describe_counter!(
        HUB_REDIS_RECEIVED,
        "Messages other instances published, received through Redis"
    );
    describe_counter!(
        HUB_REDIS_SWEPT,
        "Dead instances whose presence members were removed"
    );
    gauge!(HUB_REDIS_UP).set(0.0);
    counter!(HUB_REDIS_RECONNECTS).increment(0);
    counter!(HUB_REDIS_DROPPED).increment(0);
    counter!(HUB_REDIS_RECEIVED).increment(0);
    counter!(HUB_REDIS_SWEPT).increment(0);
}

#[cfg(test)]
mod ops_tests {
    use super::*;

    #[test]
    fn session_tally_counts_its_own_leg_only() {
        let route = LegCounters::new("r", "stomp", "downstream");
        let a = route.for_session();
        let b = route.for_session();
        a.count_in(1, 10);
        a.count_out(2, 7);
        b.count_in(0, 3);
        assert_eq!(
            a.tally.get(),
            LegCounts {
                frames_in: 1,
                bytes_in: 10,
                frames_out: 2,
                bytes_out: 7
            }
        );
        assert_eq!(b.tally.get().bytes_in, 3);
        assert_eq!(route.tally.get(), LegCounts::default());
    }
}
