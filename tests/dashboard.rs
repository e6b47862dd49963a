//! The Grafana dashboard (`deploy/grafana/switchboard.json`) is built on metrics that exist
//! (issue 14): every metric name its PromQL queries (panel targets, annotations, template
//! variables) is exported on `/metrics` by a freshly started Switchboard, with the labels the
//! queries select and group by; it covers what an operator watches; and it is a dashboard
//! Grafana imports (panels with ids, positions, a Prometheus data source variable).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

fn dashboard() -> Value {
    let path = repo_dir().join("deploy/grafana/switchboard.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every PromQL string in the dashboard: `expr` anywhere (targets, annotations) and the
/// query of each template variable of type `query`.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query" | "definition", Value::String(s)) if s.contains("switchboard_") => {
                        out.push(s.clone())
                    }
                    _ => queries(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression reads: every `switchboard_…` identifier.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("switchboard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Labels an expression selects (`{route=~"$route"}`) or groups by (`by (route, side)`),
/// except `le` (the histogram's own).
fn labels_used(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let tail = &rest[i + 4..];
        let end = tail.find(')').unwrap_or(tail.len());
        out.extend(tail[..end].split(',').map(|l| l.trim().to_owned()));
        rest = &tail[end..];
    }
    let mut rest = expr;
    while let Some(i) = rest.find('{') {
        let tail = &rest[i + 1..];
        let end = tail.find('}').unwrap_or(tail.len());
        for m in tail[..end].split(',') {
            if let Some(l) = m.split(['=', '!']).next() {
                let l = l.trim();
                if !l.is_empty() && !l.starts_with('{') {
                    out.insert(l.to_owned());
                }
            }
        }
        rest = &tail[end..];
    }
    // `{{route}}` legend templates are not in `expr`; `le` belongs to every bucket series.
    out.remove("le");
    out.retain(|l| l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    out
}

/// `/metrics` sample names and, for each, the label names its samples carry.
fn exported(body: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let end = line.find('}').unwrap_or(line.len());
            for pair in line[name_end + 1..end].split(',') {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn dashboard_is_importable_and_covers_what_operators_watch() {
    let d = dashboard();
    assert_eq!(d["uid"], "switchboard");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "no Prometheus data source variable"
    );
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        let g = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(
                g[k].as_u64().is_some(),
                "panel {} has no gridPos.{k}",
                p["title"]
            );
        }
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        if p["type"] != "row" {
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    let mut qs = Vec::new();
    queries(&d, &mut qs);
    let names: BTreeSet<String> = qs.iter().flat_map(|q| metric_names(q)).collect();
    // What issue 14 asks the dashboard to show.
    for needed in [
        "switchboard_sessions_active",
        "switchboard_sessions_total",
        "switchboard_connections_accepted_total",
        "switchboard_handshake_failures_total",
        "switchboard_limit_refusals_total",
        "switchboard_auth_failures_total",
        "switchboard_frames_total",
        "switchboard_bytes_total",
        "switchboard_upstream_connect_seconds_bucket",
        "switchboard_upstream_connect_failures_total",
        "switchboard_translation_errors_total",
        "switchboard_payload_copies_total",
        "switchboard_payload_copied_bytes_total",
        "switchboard_config_reloads_total",
        "switchboard_config_generation",
    ] {
        assert!(
            names.contains(needed),
            "the dashboard does not query {needed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported_with_its_labels() {
    let d = dashboard();
    let mut qs = Vec::new();
    queries(&d, &mut qs);
    assert!(qs.len() > 20, "too few queries found: {qs:?}");
    // A fresh proxy with one route and nothing connected yet: what a dashboard sees the
    // moment Switchboard starts. The backend is never dialed.
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "chat"
listen = "127.0.0.1:{port}"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:{dead}/socket.io/"
dialect = "socketio"
"#,
        admin = free_port(),
        port = free_port(),
        dead = free_port(),
    );
    let proxy = Proxy::start(&cfg).await;
    let body = proxy.metrics().await;
    let have = exported(&body);
    let mut missing = Vec::new();
    for q in &qs {
        let labels = labels_used(q);
        for name in metric_names(q) {
            match have.get(&name) {
                None => missing.push(format!("{name} (in `{q}`)")),
                Some(has) => {
                    for l in &labels {
                        // A label is checked on the metrics that carry labels at all; an
                        // aggregate over several metrics groups by what they share.
                        if !has.is_empty() && !has.contains(l) && selects(q, &name, l) {
                            missing.push(format!("label {l} of {name} (in `{q}`)"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried by the dashboard but not exported:\n  {}\n/metrics:\n{body}",
        missing.join("\n  ")
    );
}

/// Whether `label` is selected on `name` itself (`name{label…}`) or grouped by in the
/// aggregation right around it (`by (…label…) (… name …)`).
fn selects(q: &str, name: &str, label: &str) -> bool {
    let mut rest = q;
    while let Some(i) = rest.find(name) {
        let after = &rest[i + name.len()..];
        let before = &rest[..i];
        // Exact name, not a prefix of a longer one.
        if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            rest = after;
            continue;
        }
        if let Some(sel) = after.strip_prefix('{') {
            let sel = &sel[..sel.find('}').unwrap_or(sel.len())];
            if sel
                .split(',')
                .any(|m| m.split(['=', '!']).next().map(str::trim) == Some(label))
            {
                return true;
            }
        }
        if let Some(j) = before.rfind("by (") {
            let by = &before[j + 4..];
            let by = &by[..by.find(')').unwrap_or(by.len())];
            if by.split(',').any(|l| l.trim() == label) {
                return true;
            }
        }
        rest = after;
    }
    false
}

#[test]
fn name_and_label_extraction() {
    let q = r#"histogram_quantile(0.95, sum by (le, route) (rate(switchboard_upstream_connect_seconds_bucket{route=~"$route"}[$__rate_interval])))"#;
    assert_eq!(
        metric_names(q),
        vec!["switchboard_upstream_connect_seconds_bucket"]
    );
    assert_eq!(
        labels_used(q).into_iter().collect::<Vec<_>>(),
        vec!["route"]
    );
    assert!(selects(
        q,
        "switchboard_upstream_connect_seconds_bucket",
        "route"
    ));
    assert_eq!(
        metric_names("label_values(switchboard_sessions_active, route)"),
        vec!["switchboard_sessions_active"]
    );
}
