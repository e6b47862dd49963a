//! Logs at the most verbose level carry no credential (issue 14): the real binary runs with
//! Switchboard at `trace` and every third-party target (tungstenite, hyper, rustls, ...)
//! named at `trace` too, once through `[log]` (text) and once through `RUST_LOG` (JSON).
//! Real clients carry planted secrets through routes to a real `socket.io` 4.8 backend that
//! checks them: stomp.js (a JWT as `Authorization` header and as STOMP `passcode`, a
//! `Cookie`) and socket.io-client (a JWT in `auth.token`, a `Cookie`, long-polling then
//! WebSocket); and pusher-js through a Pusher route to soketi, subscribing to a private
//! channel with a signature the proxy checks and signs anew for soketi. The whole log must not contain any of them, must carry no ANSI escape (the
//! log is a file, not a terminal, and `NO_COLOR` is unset), and must have the one
//! session-end line per session with its fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);
/// The sio_backend.js default secret: the backend verifies the planted JWTs with it.
const SECRET: &str = "test-secret";
/// Every third-party target in the dependency tree that logs, asked for at `trace`.
const THIRD_PARTY_TRACE: &str = "tungstenite=trace,tokio_tungstenite=trace,hyper=trace,hyper_util=trace,rustls=trace,tokio_rustls=trace,h2=trace,mio=trace,tokio=trace,runtime=trace,log=trace";

fn config(ports: &Ports, log: &str) -> String {
    let Ports {
        backend,
        stomp: stomp_port,
        sio: sio_port,
        pusher: pusher_port,
        admin,
        ..
    } = ports;
    let soketi = &ports.soketi_url;
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[shutdown]
grace_period_ms = 2000

{log}

[[route]]
name = "stomp-chat"
listen = "127.0.0.1:{stomp_port}"
path = "/ws"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:{backend}/socket.io/"
dialect = "socketio"

[[route]]
name = "sio-chat"
listen = "127.0.0.1:{sio_port}"
path = "/socket.io/"
client = "socketio"
[route.upstream]
url = "ws://127.0.0.1:{backend}/socket.io/"
dialect = "socketio"

[[route]]
name = "pusher-chat"
listen = "127.0.0.1:{pusher_port}"
client = "pusher"
[route.pusher]
app_key = "{PUSHER_APP_KEY}"
app_secret = "{PUSHER_APP_SECRET}"
[route.upstream]
url = "{soketi}"
dialect = "pusher"
app_secret = "{PUSHER_APP_SECRET}"
"#
    )
}

struct Ports {
    backend: u16,
    soketi_url: String,
    stomp: u16,
    sio: u16,
    pusher: u16,
    admin: u16,
}

/// The proxy binary run as an operator would: no `NO_COLOR`, no `RUST_LOG` unless given,
/// stderr to a file (the harness's log file).
struct Run {
    child: Child,
    _config: tempfile::NamedTempFile,
    stomp_url: String,
    sio_url: String,
    pusher_port: u16,
}

async fn start(backend: u16, soketi: &Soketi, log: &str, env: &[(&str, &str)]) -> Run {
    let ports = Ports {
        backend,
        soketi_url: format!("ws://127.0.0.1:{}/app/{PUSHER_APP_KEY}", soketi.port),
        stomp: free_port(),
        sio: free_port(),
        pusher: free_port(),
        admin: free_port(),
    };
    let (stomp_port, sio_port, admin_port) = (ports.stomp, ports.sio, ports.admin);
    let mut file = tempfile::Builder::new()
        .prefix("switchboard-logs-")
        .suffix(".toml")
        .tempfile()
        .unwrap();
    file.write_all(config(&ports, log).as_bytes()).unwrap();
    file.flush().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("--config").arg(file.path());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("SWITCHBOARD_") || k == "NO_COLOR" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Child::spawn("switchboard", cmd);
    child.discard_lines();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait() {
            panic!("switchboard exited ({status}):\n{}", child.log_tail(40));
        }
        if let Ok((200, _)) = http_get(admin, "/readyz").await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready:\n{}",
            child.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Run {
        child,
        _config: file,
        stomp_url: format!("ws://127.0.0.1:{stomp_port}/ws"),
        sio_url: format!("http://127.0.0.1:{sio_port}"),
        pusher_port: ports.pusher,
    }
}

/// The planted secrets of one run: two JWTs the backend accepts, two cookies.
struct Secrets {
    stomp_jwt: String,
    sio_jwt: String,
    stomp_cookie: String,
    sio_cookie: String,
}

impl Secrets {
    fn new(tag: &str) -> Self {
        Secrets {
            stomp_jwt: jwt(&format!("stomp-user-{tag}"), SECRET),
            sio_jwt: jwt(&format!("sio-user-{tag}"), SECRET),
            stomp_cookie: format!("sid=PLANTEDCOOKIE{tag}stomp"),
            sio_cookie: format!("sid=PLANTEDCOOKIE{tag}sio"),
        }
    }

    /// Each secret and the part of it that is secret on its own (a JWT's signature).
    fn needles(&self) -> Vec<String> {
        let mut v = Vec::new();
        for t in [&self.stomp_jwt, &self.sio_jwt] {
            v.push(t.clone());
            v.push(t.rsplit('.').next().unwrap().to_owned());
        }
        for c in [&self.stomp_cookie, &self.sio_cookie] {
            v.push(c.trim_start_matches("sid=").to_owned());
        }
        v.push(PUSHER_APP_SECRET.to_owned());
        v
    }
}

/// Both clients through both routes: connect with the planted credentials, subscribe,
/// publish, get the message back, leave gracefully.
async fn traffic(run: &Run, s: &Secrets) {
    let mut stomp = Driver::stomp().await;
    stomp
        .send(json!({
            "op": "connect", "c": "a", "url": run.stomp_url,
            "headers": { "passcode": s.stomp_jwt },
            "wsHeaders": {
                "Authorization": format!("Bearer {}", s.stomp_jwt),
                "Cookie": s.stomp_cookie,
            },
        }))
        .await;
    stomp.expect_ev(T, "a", "connected").await;
    stomp
        .send(
            json!({"op":"subscribe","c":"a","id":"s1","destination":"/topic/message_created",
            "headers":{"receipt":"r-sub"}}),
        )
        .await;
    stomp
        .expect(T, |v| v["ev"] == "receipt" && v["id"] == "r-sub")
        .await;

    let mut sio = Driver::sio().await;
    sio.send(json!({
        "op": "connect", "c": "b", "url": run.sio_url,
        "auth": { "token": s.sio_jwt },
        "extraHeaders": { "Cookie": s.sio_cookie },
    }))
    .await;
    sio.expect_ev(T, "b", "connect").await;
    sio.send(
        json!({"op":"emit","c":"b","event":"message_created","args":[{"text":"hello from b"}]}),
    )
    .await;

    stomp
        .send(
            json!({"op":"send","c":"a","destination":"/app/message_created",
            "body":"{\"text\":\"hello from a\"}",
            "headers":{"content-type":"application/json","receipt":"r-send"}}),
        )
        .await;
    stomp
        .expect(T, |v| v["ev"] == "receipt" && v["id"] == "r-send")
        .await;
    stomp
        .expect(T, |v| {
            v["ev"] == "message" && v["body"].as_str().is_some_and(|b| b.contains("hello from"))
        })
        .await;
    sio.expect(T, |v| v["ev"] == "event" && v["event"] == "message_created")
        .await;

    // pusher-js: a private channel, signed by the client (with the app secret, as an auth
    // endpoint would) and checked by the proxy, which signs its own subscription to soketi.
    let mut pusher = Driver::pusher().await;
    pusher.send(pusher_connect_cmd("p", run.pusher_port)).await;
    pusher_connected(&mut pusher, "p").await;
    pusher
        .send(json!({"op":"subscribe","c":"p","channel":"private-room-1"}))
        .await;
    let ok = pusher_subscribed(&mut pusher, "p", "private-room-1").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    pusher.send(json!({"op":"disconnect","c":"p"})).await;

    stomp.send(json!({"op":"disconnect","c":"a"})).await;
    stomp.expect_ev(T, "a", "disconnected").await;
    sio.send(json!({"op":"disconnect","c":"b"})).await;
    sio.expect_ev(T, "b", "disconnect").await;
}

/// The log once the three session-end lines are in it (or after 10 s).
async fn log_with_all_ends(run: &Run) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log =
            String::from_utf8_lossy(&std::fs::read(run.child.log_path()).unwrap()).into_owned();
        let ends = log.lines().filter(|l| l.contains("session ended")).count();
        if ends >= 3 || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_clean(log: &str, s: &Secrets, path: &std::path::Path) {
    for needle in s.needles() {
        assert!(
            !log.contains(&needle),
            "a planted secret ({needle}) is in the log {}",
            path.display()
        );
    }
    // A Pusher channel signature: `<app key>:<64 hex digits>`.
    let mut rest = log;
    while let Some(i) = rest.find(&format!("{PUSHER_APP_KEY}:")) {
        let tail = &rest[i + PUSHER_APP_KEY.len() + 1..];
        let hex = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        assert!(
            hex < 64,
            "a Pusher signature is in the log {}",
            path.display()
        );
        rest = tail;
    }
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a log that is not a terminal: {}",
        path.display()
    );
    // The levels asked for are in force: Switchboard's own debug lines are there, so the
    // secrets were not kept out by logging nothing. (No third-party crate in the proxy's
    // path logs at debug any more: hyper does both handshakes and logs only with its
    // unstable `tracing` feature, and the WebSocket framing is Switchboard's own.)
    assert!(log.contains("session started"), "{}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_log_at_trace_with_third_party_trace_has_no_secret_no_ansi_and_session_ends() {
    ensure_npm();
    let (_backend, backend_port) = start_sio_backend(&[]);
    let soketi = start_soketi();
    let log =
        format!("[log]\nlevel = \"trace\"\nformat = \"text\"\nfilter = \"{THIRD_PARTY_TRACE}\"");
    let mut run = start(backend_port, &soketi, &log, &[]).await;
    let secrets = Secrets::new("text");
    traffic(&run, &secrets).await;
    let text = log_with_all_ends(&run).await;
    assert_clean(&text, &secrets, run.child.log_path());
    // The ceiling was reported.
    assert!(
        text.contains("third-party targets log at most at debug"),
        "{}",
        run.child.log_path().display()
    );
    for route in ["stomp-chat", "sio-chat", "pusher-chat"] {
        let line = text
            .lines()
            .find(|l| l.contains("session ended") && l.contains(&format!("route={route} ")))
            .unwrap_or_else(|| panic!("no session-end line for {route}:\n{text}"));
        for field in [
            "client=",
            "upstream=",
            "mode=\"translate\"",
            "peer=127.0.0.1:",
            "duration_ms=",
            "client_frames_in=",
            "client_bytes_in=",
            "upstream_frames_out=",
            "upstream_bytes_out=",
            "upstream_frames_in=",
            "upstream_bytes_in=",
            "client_frames_out=",
            "client_bytes_out=",
            "outcome=\"client_closed\"",
        ] {
            assert!(line.contains(field), "{field} missing from: {line}");
        }
    }
    run.child.signal("TERM");
    run.child.wait_exit(Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&std::fs::read(run.child.log_path()).unwrap()).into_owned();
    assert_clean(&text, &secrets, run.child.log_path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_from_rust_log_trace_has_no_secret_and_structured_session_ends() {
    ensure_npm();
    let (_backend, backend_port) = start_sio_backend(&[]);
    let soketi = start_soketi();
    let rust_log = format!("trace,{THIRD_PARTY_TRACE}");
    let mut run = start(
        backend_port,
        &soketi,
        "[log]\nformat = \"json\"",
        &[("RUST_LOG", rust_log.as_str())],
    )
    .await;
    let secrets = Secrets::new("json");
    traffic(&run, &secrets).await;
    let text = log_with_all_ends(&run).await;
    assert_clean(&text, &secrets, run.child.log_path());
    let ends: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "session ended")
        .collect();
    assert_eq!(ends.len(), 3, "{text}");
    for (route, client, upstream) in [
        ("stomp-chat", "stomp", "socketio"),
        ("sio-chat", "socketio", "socketio"),
        ("pusher-chat", "pusher", "pusher"),
    ] {
        let f = &ends
            .iter()
            .find(|v| v["fields"]["route"] == route)
            .unwrap_or_else(|| panic!("no session end for {route}: {ends:?}"))["fields"];
        assert_eq!(f["client"], client, "{f}");
        assert_eq!(f["upstream"], upstream, "{f}");
        assert_eq!(f["outcome"], "client_closed", "{f}");
        assert!(f["duration_ms"].as_u64().is_some(), "{f}");
        // Both legs carried messages both ways: the handshake, a subscription or an emit,
        // the message back.
        for k in [
            "client_frames_in",
            "client_bytes_in",
            "upstream_frames_out",
            "upstream_bytes_out",
            "upstream_frames_in",
            "upstream_bytes_in",
            "client_frames_out",
            "client_bytes_out",
        ] {
            assert!(f[k].as_u64().is_some_and(|n| n > 0), "{k} in {f}");
        }
        assert!(
            f["client_bytes_in"].as_u64() >= f["client_frames_in"].as_u64(),
            "{f}"
        );
    }
    run.child.signal("TERM");
    run.child.wait_exit(Duration::from_secs(5)).await;
}
