//! Metric names, descriptions, the Prometheus recorder, and typed helpers.
//!
//! Owns: every `switchboard_*` name and its labels (route, dialect, direction, side, kind,
//! outcome). Labels never carry user data.
//!
//! Must not touch: protocol logic.

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
/// Payload copies the wire forced (reassembly, escaping, re-encoding into a string).
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
    describe_counter!(PAYLOAD_COPIES, "Payload copies forced by a wire format");
    describe_counter!(
        PAYLOAD_COPIED_BYTES,
        "Bytes copied by forced payload copies"
    );
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

/// Per-direction counters of one leg, resolved once per session.
#[derive(Clone)]
pub struct LegCounters {
    /// Messages received from the peer.
    pub frames_in: Counter,
    /// Bytes received from the peer.
    pub bytes_in: Counter,
    /// Messages sent to the peer.
    pub frames_out: Counter,
    /// Bytes sent to the peer.
    pub bytes_out: Counter,
}

impl LegCounters {
    /// Counters for `side` (`downstream`/`upstream`) of a route.
    pub fn new(route: &str, dialect: &'static str, side: &'static str) -> Self {
        let c = |name: &'static str, dir: &'static str| counter!(name, "route" => route.to_owned(), "dialect" => dialect, "side" => side, "direction" => dir);
        Self {
            frames_in: c(FRAMES, "in"),
            bytes_in: c(BYTES, "in"),
            frames_out: c(FRAMES, "out"),
            bytes_out: c(BYTES, "out"),
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
    }

    /// A session ended with `outcome`.
    pub fn session_ended(&self, outcome: &'static str) {
        counter!(SESSIONS_TOTAL, "route" => self.route.clone(), "outcome" => outcome).increment(1);
    }

    /// Record `n` copied bytes (one copy per call when `n > 0`).
    pub fn copied(&self, n: u64) {
        if n > 0 {
            self.copies.increment(1);
            self.copied_bytes.increment(n);
        }
    }
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

/// 1 while the hub's Redis link (`[hub] redis_url`) is up, 0 while it is down.
pub const HUB_REDIS_UP: &str = "switchboard_hub_redis_up";
/// Times the hub's Redis link was lost and dialed again.
pub const HUB_REDIS_RECONNECTS: &str = "switchboard_hub_redis_reconnects_total";
/// Publishes delivered on this instance only: Redis was down or its queue full.
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
        "Publishes delivered locally only (Redis down or its queue full)"
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
