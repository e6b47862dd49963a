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
    let err = String::from_utf8_lossy(&out.stderr);
    // Named by the variable that set it, not by the file's line (which holds another value).
    assert!(
        err.contains("key `limits.queue_depth`: ")
            && err.contains("(set by SWITCHBOARD_LIMITS__QUEUE_DEPTH)"),
        "{err}"
    );
}

/// `SWITCHBOARD_*` variables that name no table of ours are not refused (Kubernetes sets
/// `SWITCHBOARD_PORT` and others for a Service named `switchboard`); a wrong key in one of
/// our tables still is.
#[test]
fn foreign_environment_variables_are_left_alone() {
    let out = bin()
        .args(["check", "config.toml"])
        .env("SWITCHBOARD_PORT", "tcp://10.0.0.1:8080")
        .env("SWITCHBOARD_SERVICE_HOST", "10.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = bin()
        .args(["check", "config.toml"])
        .env("SWITCHBOARD_LIMITS__QUEUE_DPETH", "8")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue_dpeth"));
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

/// `check` reads the TLS files the proxy would (a listener's certificate and key, an
/// upstream's CA file): a file it cannot read fails the check as it would fail the start,
/// so the unit's `ExecStartPre` and a deploy script catch it before a restart.
#[test]
fn check_reads_the_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = |pem: &std::path::Path, ca: &std::path::Path| {
        format!(
            r#"
[[route]]
name = "chat"
listen = "127.0.0.1:8443"
client = "stomp"
[route.tls]
cert = "{pem}"
key = "{pem}"
[route.upstream]
url = "wss://127.0.0.1:9443/socket.io/"
dialect = "socketio"
ca_file = "{ca}"
"#,
            pem = pem.display(),
            ca = ca.display()
        )
    };
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = dir.path().join("both.pem");
    std::fs::write(
        &pem,
        format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem()),
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let file = dir.path().join("tls.toml");
    let check = |text: String| {
        std::fs::write(&file, text).unwrap();
        bin().arg("check").arg(&file).output().unwrap()
    };
    let out = check(config(&pem, &pem));
    assert!(out.status.success(), "{out:?}");
    for text in [config(&missing, &pem), config(&pem, &missing)] {
        let out = check(text);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("route chat") && err.contains("missing.pem"),
            "{err}"
        );
    }
}
