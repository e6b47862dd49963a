//! The Debian package (issue 14): `cargo deb --locked --strip` builds it from the release profile, and it holds
//! the binary in /usr/bin, `config.toml` as a conffile in /etc/switchboard/, the systemd unit
//! (enabled by its maintainer scripts) and the README. The packaged binary runs and accepts
//! the packaged config, and the packaged unit's exposure stays at or below 2.0 in
//! `systemd-analyze security --offline=true` (checked when systemd-analyze is installed).
//!
//! cargo-deb comes from `cargo install cargo-deb --locked` (tests/run.sh does it). The build
//! is the ordinary release build in the ordinary target directory, so it is done once and
//! shared with `cargo build --release` / `cargo run --release`; later runs only relink.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::*;

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(repo_dir())
        .env("CARGO_TARGET_DIR", target_dir());
    c
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo deb`: the release build and the package. Returns the .deb's path.
fn build_package() -> PathBuf {
    let probe = cargo().args(["deb", "--version"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "cargo-deb is not installed: tests/run.sh installs it (`cargo install cargo-deb --locked`)"
    );
    let started = Instant::now();
    let mut cmd = cargo();
    cmd.args(["deb", "--locked", "--strip"]);
    let out = run(cmd, "cargo deb");
    let took = started.elapsed();
    // The path of the .deb is cargo-deb's last line on stdout.
    let deb = text(&out)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no .deb path in cargo deb's output:\n{}", text(&out)));
    eprintln!(
        "cargo deb (release build included) took {:.1} s: {}",
        took.as_secs_f64(),
        deb.display()
    );
    assert!(deb.is_file(), "{} missing", deb.display());
    deb
}

/// The unit's "Overall exposure level" from `systemd-analyze security --offline=true`, or
/// `None` when systemd-analyze is not installed.
fn exposure(unit: &Path) -> Option<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .ok()?;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in systemd-analyze's output:\n{all}"));
    let level = line
        .rsplit(':')
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the level in: {line}"));
    Some(level)
}

#[test]
fn cargo_deb_packages_binary_conffile_unit_and_readme() {
    let deb = build_package();

    // Control fields and conffiles.
    let info = text(&run(
        {
            let mut c = Command::new("dpkg-deb");
            c.arg("-I").arg(&deb);
            c
        },
        "dpkg-deb -I",
    ));
    for field in [
        "Package: switchboard",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
        "Section: net",
        "Depends: libc6",
    ] {
        assert!(info.contains(field), "{field} missing from:\n{info}");
    }
    let conffiles = text(&run(
        {
            let mut c = Command::new("dpkg-deb");
            c.arg("-I").arg(&deb).arg("conffiles");
            c
        },
        "dpkg-deb -I conffiles",
    ));
    assert_eq!(
        conffiles.lines().map(str::trim).collect::<Vec<_>>(),
        vec!["/etc/switchboard/config.toml"],
        "conffiles"
    );
    // The maintainer scripts enable the unit (deb-systemd-helper), as dh_installsystemd does.
    let postinst = text(&run(
        {
            let mut c = Command::new("dpkg-deb");
            c.arg("-I").arg(&deb).arg("postinst");
            c
        },
        "dpkg-deb -I postinst",
    ));
    assert!(
        postinst.contains("deb-systemd-helper") && postinst.contains("switchboard.service"),
        "postinst does not enable the unit:\n{postinst}"
    );

    // Contents.
    let listing = text(&run(
        {
            let mut c = Command::new("dpkg-deb");
            c.arg("-c").arg(&deb);
            c
        },
        "dpkg-deb -c",
    ));
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .map(str::to_owned)
    };
    let bin = entry("/usr/bin/switchboard").unwrap_or_else(|| panic!("no binary:\n{listing}"));
    assert!(bin.starts_with("-rwxr-xr-x"), "{bin}");
    // Stripped: the release build's line tables stay out of the package (tens of MB).
    let size: u64 = bin
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no size in {bin}"));
    assert!(
        size < 30 << 20,
        "binary of {size} bytes: not stripped? {bin}"
    );
    assert!(
        !listing.contains("/usr/lib/debug/"),
        "debug symbols packaged:\n{listing}"
    );
    let conf =
        entry("/etc/switchboard/config.toml").unwrap_or_else(|| panic!("no config:\n{listing}"));
    assert!(conf.starts_with("-rw-r--r--"), "{conf}");
    assert!(
        entry("/usr/share/doc/switchboard/README.md").is_some(),
        "no README:\n{listing}"
    );
    let unit_path = [
        "/usr/lib/systemd/system/switchboard.service",
        "/lib/systemd/system/switchboard.service",
    ]
    .into_iter()
    .find(|p| entry(p).is_some())
    .unwrap_or_else(|| panic!("no systemd unit:\n{listing}"));

    // The files themselves, extracted.
    let root = tempfile::tempdir().unwrap();
    run(
        {
            let mut c = Command::new("dpkg-deb");
            c.arg("-x").arg(&deb).arg(root.path());
            c
        },
        "dpkg-deb -x",
    );
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    for (packaged, source) in [
        ("/etc/switchboard/config.toml", "config.toml"),
        ("/usr/share/doc/switchboard/README.md", "README.md"),
        (unit_path, "systemd/switchboard.service"),
    ] {
        assert_eq!(
            std::fs::read(at(packaged)).unwrap(),
            std::fs::read(repo_dir().join(source)).unwrap(),
            "{packaged} is not {source}"
        );
    }
    // The unit starts the packaged binary with the packaged config.
    let unit = std::fs::read_to_string(at(unit_path)).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/switchboard --config /etc/switchboard/config.toml"),
        "{unit}"
    );
    // The packaged binary runs, and accepts the packaged config.
    let version = text(&run(
        {
            let mut c = Command::new(at("/usr/bin/switchboard"));
            c.arg("--version");
            c
        },
        "switchboard --version",
    ));
    assert_eq!(
        version.trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
    run(
        {
            let mut c = Command::new(at("/usr/bin/switchboard"));
            c.arg("check").arg(at("/etc/switchboard/config.toml"));
            c
        },
        "switchboard check /etc/switchboard/config.toml",
    );

    // The sandbox: exposure at or below 2.0 (1.4 when this test was written).
    match exposure(&at(unit_path)) {
        Some(level) => {
            eprintln!("systemd-analyze security --offline=true: exposure {level}");
            assert!(level <= 2.0, "exposure {level} > 2.0");
        }
        None => eprintln!("systemd-analyze not installed: unit exposure not checked"),
    }
}
