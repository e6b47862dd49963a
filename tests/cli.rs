//! The binary's command line and the shipped files: `check` accepts the shipped config and
//! names key, line and reason for a bad one; env layering; the systemd unit's contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = bin().args(["check", "config.toml"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (5 route(s))"));
}

#[test]
fn check_reports_key_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string("config.toml").unwrap();
    let cases = [
        (
            "client = \"stomp\"",
            "client = \"stmop\"",
            "route.0.client",
            "unknown variant",
        ),
        (
            "queue_depth = 256",
            "queue_depth = \"deep\"",
            "limits.queue_depth",
            "invalid type",
        ),
        (
            "path = \"/ws\"",
            "path = \"ws\"",
            "route.0.path",
            "must start with `/`",
        ),
        (
            "grace_period_ms = 10000",
            "grace_period_ms = 10000\ngrace = 1",
            "shutdown.grace",
            "unknown field",
        ),
    ];
    for (from, to, key, why) in cases {
        let text = shipped.replacen(from, to, 1);
        let name = to.lines().last().unwrap().split('=').next().unwrap().trim();
        let line = text
            .lines()
            .position(|l| {
                l.split('=').next().is_some_and(|k| k.trim() == name)
                    && !l.trim_start().starts_with('#')
            })
            .unwrap()
            + 1;
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, &text).unwrap();
        let out = bin().arg("check").arg(&f).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("key `{key}` (line {line})")),
            "{key}: {err}"
        );
        assert!(err.contains(why), "{key}: {err}");
    }
}

#[test]
fn environment_overrides_the_file() {
    let out = bin()
        .args(["check", "config.toml"])
        .env("SWITCHBOARD_LIMITS__QUEUE_DEPTH", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.queue_depth"));
}

#[test]
fn systemd_unit_contract() {
    let unit = std::fs::read_to_string("systemd/switchboard.service").unwrap();
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(line), "missing {line:?}");
    }
    assert!(unit.lines().any(|l| l.starts_with("LimitNOFILE=")));
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .unwrap();
    let config =
        switchboard::registry::from_toml(&std::fs::read_to_string("config.toml").unwrap()).unwrap();
    assert!(
        stop * 1000 > config.shutdown.grace_period_ms,
        "TimeoutStopSec must exceed the grace period"
    );
}
