//! Hot reload of the running binary: SIGHUP and `switchboard reload` re-read the config file.
//! Routes are added, changed and removed while stomp.js clients on the other routes keep
//! exchanging messages with RabbitMQ; a bad file is refused with `check`'s line-precise error
//! and the old config keeps serving; a TLS listener's certificate is swapped under a live
//! TLS session; `/metrics` shows the generation and each reload's outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

/// A `[[route]]` of stomp.js clients in front of RabbitMQ, with `extra` lines (map rules).
fn rabbit_route(rabbit: &Rabbit, name: &str, port: u16, path: &str, extra: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\npath = \"{path}\"\n\
         client = \"stomp\"\n{extra}\n{}",
        rabbit.upstream_toml()
    )
}

async fn connect(d: &mut Driver, c: &str, url: String) {
    d.send(json!({"op":"connect","c":c,"url":url,
        "headers":{"login":"guest","passcode":"guest","host":"/"}}))
        .await;
    d.expect_ev(T, c, "connected").await;
}

async fn subscribe(d: &mut Driver, c: &str, id: &str, destination: &str) {
    let receipt = format!("{c}-{id}-sub");
    d.send(
        json!({"op":"subscribe","c":c,"id":id,"destination":destination,
        "headers":{"receipt":receipt}}),
    )
    .await;
    d.expect(T, |v| {
        v["c"] == c && v["ev"] == "receipt" && v["id"] == receipt.as_str()
    })
    .await;
}

/// The next message of client `c` on subscription `sub`.
async fn message(d: &mut Driver, c: &str, sub: &str) -> Value {
    d.expect(T, |v| {
        v["c"] == c && v["ev"] == "message" && v["sub"] == sub
    })
    .await
}

/// Client `c` sends `body` to `destination` through the proxy (confirmed by a receipt) and
/// gets it back on its subscription `sub`: a full round trip through RabbitMQ.
async fn round_trip(d: &mut Driver, c: &str, sub: &str, destination: &str, body: &str) {
    let receipt = format!("{c}-{body}");
    d.send(
        json!({"op":"send","c":c,"destination":destination,"body":body,
        "headers":{"receipt":receipt}}),
    )
    .await;
    d.expect(T, |v| {
        v["c"] == c && v["ev"] == "receipt" && v["id"] == receipt.as_str()
    })
    .await;
    let m = message(d, c, sub).await;
    assert_eq!(m["body"], body, "{c}: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_changes_and_removes_routes_while_clients_stay() {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let (shared, gone, added) = (free_port(), free_port(), free_port());
    let admin = format!("[admin]\nlisten = \"127.0.0.1:{}\"\n", free_port());
    let map = |to: &str| {
        format!(
            "[[route.map]]\nclient = \"/topic/room.{{id}}\"\nupstream = \"/topic/{to}.{{id}}\"\n"
        )
    };
    // Generation 1: `keep` and `change` share a listener; `gone` has its own.
    let gen1 = format!(
        "{admin}{}{}{}",
        rabbit_route(&rabbit, "keep", shared, "/ws", ""),
        rabbit_route(&rabbit, "change", shared, "/chg", &map("a")),
        rabbit_route(&rabbit, "gone", gone, "/ws", ""),
    );
    let mut proxy = Proxy::start(&gen1).await;
    assert_eq!(
        proxy.metric("switchboard_config_generation").await,
        Some(1.0)
    );
    let mut d = Driver::stomp().await;
    let mut publisher = rabbit.publisher("pub").await;
    connect(&mut d, "k", format!("ws://127.0.0.1:{shared}/ws")).await;
    subscribe(&mut d, "k", "s", "/topic/keep").await;
    round_trip(&mut d, "k", "s", "/topic/keep", "k-before").await;
    connect(&mut d, "c1", format!("ws://127.0.0.1:{shared}/chg")).await;
    subscribe(&mut d, "c1", "s", "/topic/room.1").await;
    publisher
        .send(json!({"op":"send","c":"pub","destination":"/topic/a.1","body":"a-1"}))
        .await;
    assert_eq!(message(&mut d, "c1", "s").await["body"], "a-1");
    connect(&mut d, "g", format!("ws://127.0.0.1:{gone}/ws")).await;
    subscribe(&mut d, "g", "s", "/topic/gone").await;
    round_trip(&mut d, "g", "s", "/topic/gone", "g-before").await;

    // Generation 2: `keep` as it was, `change` maps to other broker topics, `gone` removed,
    // `added` on a new address.
    let gen2 = format!(
        "{admin}{}{}{}",
        rabbit_route(&rabbit, "keep", shared, "/ws", ""),
        rabbit_route(&rabbit, "change", shared, "/chg", &map("b")),
        rabbit_route(&rabbit, "added", added, "/ws", ""),
    );
    proxy.rewrite_config(&gen2);
    proxy.sighup_and_wait().await;
    assert_eq!(
        proxy.metric("switchboard_config_generation").await,
        Some(2.0)
    );
    assert_eq!(
        proxy
            .metric("switchboard_config_reloads_total{outcome=\"ok\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        proxy
            .metric("switchboard_config_reloads_total{outcome=\"error\"}")
            .await,
        Some(0.0)
    );

    // The removed route drains as on SIGTERM: its client is closed, its listener is gone.
    let closed = d.expect_ev(T, "g", "close").await;
    assert!(closed["code"] == 1001 || closed["code"] == 1000, "{closed}");
    d.send(json!({"op":"connect","c":"g2","url":format!("ws://127.0.0.1:{gone}/ws")}))
        .await;
    d.expect(T, |v| {
        v["c"] == "g2" && (v["ev"] == "close" || v["ev"] == "wserror")
    })
    .await;

    // The unchanged route's client never noticed.
    round_trip(&mut d, "k", "s", "/topic/keep", "k-after").await;

    // The changed route: the session it had keeps its settings (topic a), a new one gets
    // the new settings (topic b).
    connect(&mut d, "c2", format!("ws://127.0.0.1:{shared}/chg")).await;
    subscribe(&mut d, "c2", "s", "/topic/room.1").await;
    publisher
        .send(json!({"op":"send","c":"pub","destination":"/topic/a.1","body":"a-2"}))
        .await;
    publisher
        .send(json!({"op":"send","c":"pub","destination":"/topic/b.1","body":"b-1"}))
        .await;
    assert_eq!(message(&mut d, "c1", "s").await["body"], "a-2");
    assert_eq!(message(&mut d, "c2", "s").await["body"], "b-1");
    // And neither sees the other's topic.
    let rest = d.collect(Duration::from_millis(500)).await;
    assert!(
        !rest
            .iter()
            .any(|v| v["ev"] == "message" && (v["c"] == "c1" || v["c"] == "c2")),
        "{rest:?}"
    );
    // The old session also still sends through its own mapping.
    round_trip(&mut d, "c1", "s", "/topic/room.1", "c1-after").await;

    // The added route listens on its new address.
    connect(&mut d, "n", format!("ws://127.0.0.1:{added}/ws")).await;
    subscribe(&mut d, "n", "s", "/topic/added").await;
    round_trip(&mut d, "n", "s", "/topic/added", "n-1").await;

    // `switchboard reload` with the file unchanged: every route is kept as it is.
    let (code, out, err) = proxy.reload_cli();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("generation 3") && out.contains("unchanged [keep,change,added]"),
        "{out}"
    );
    round_trip(&mut d, "k", "s", "/topic/keep", "k-after-2").await;
    round_trip(&mut d, "c2", "s", "/topic/room.1", "c2-after-2").await;
    let body = proxy.metrics().await;
    assert!(
        body.contains("switchboard_config_reloads_total{outcome=\"ok\"} 2"),
        "{body}"
    );
    assert!(body.contains("switchboard_config_generation 3"), "{body}");
    let sessions_gone = body
        .lines()
        .find(|l| l.starts_with("switchboard_sessions_total{route=\"gone\",outcome=\"shutdown\"}"));
    assert!(sessions_gone.is_some_and(|l| l.ends_with(" 1")), "{body}");
}

/// A STOMP → Socket.IO route in front of `backend_port`.
fn sio_config(admin: u16, port: u16, backend_port: u16, extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "chat"
listen = "127.0.0.1:{port}"
path = "/ws"
client = "stomp"
{extra}
[route.upstream]
url = "ws://127.0.0.1:{backend_port}/socket.io/"
dialect = "socketio"
"#
    )
}

async fn sio_client(d: &mut Driver, c: &str, url: String) {
    d.send(json!({"op":"connect","c":c,"url":url,
        "wsHeaders":{"Authorization":format!("Bearer {}", jwt("ann", "test-secret"))}}))
        .await;
    d.expect_ev(T, c, "connected").await;
    subscribe(d, c, "s", "/topic/message_created").await;
}

/// Client `c` emits `message_created` through the proxy; the backend re-emits it to every
/// socket, `c` included.
async fn sio_round_trip(d: &mut Driver, c: &str, text: &str) {
    let body = json!({ "text": text }).to_string();
    let receipt = format!("{c}-{text}");
    d.send(
        json!({"op":"send","c":c,"destination":"/app/message_created","body":body,
        "headers":{"content-type":"application/json","receipt":receipt}}),
    )
    .await;
    d.expect(T, |v| {
        v["c"] == c && v["ev"] == "receipt" && v["id"] == receipt.as_str()
    })
    .await;
    let m = d
        .expect(T, |v| {
            v["c"] == c && v["ev"] == "message" && v["body"] == body.as_str()
        })
        .await;
    assert_eq!(m["sub"], "s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_refused_and_the_old_one_keeps_serving() {
    ensure_npm();
    let (_backend, backend_port) = start_sio_backend(&[]);
    let (admin, port) = (free_port(), free_port());
    let good = sio_config(admin, port, backend_port, "");
    let mut proxy = Proxy::start(&good).await;
    let mut d = Driver::stomp().await;
    sio_client(&mut d, "a", format!("ws://127.0.0.1:{port}/ws")).await;
    sio_round_trip(&mut d, "a", "before").await;

    // A value `check` refuses, on a known line.
    let bad = good.replace("path = \"/ws\"", "path = \"ws\"");
    let line = bad.lines().position(|l| l == "path = \"ws\"").unwrap() + 1;
    proxy.rewrite_config(&bad);
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check")
        .arg(proxy.config_path())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let check_err = String::from_utf8_lossy(&check.stderr).trim().to_owned();
    assert!(
        check_err.contains(&format!(
            "key `route.0.path` (line {line}): must start with `/`"
        )),
        "{check_err}"
    );
    // `switchboard reload` exits 2 with the very same message.
    let (code, out, err) = proxy.reload_cli();
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains(&check_err), "{err}\nvs check: {check_err}");
    assert!(err.contains("the running config stays"), "{err}");
    // SIGHUP refuses it too, and says so in the log.
    proxy.sighup_and_wait().await;
    let log = std::fs::read_to_string(proxy.log_path()).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("reload refused") && l.contains(&check_err))
            .count()
            >= 2,
        "{log}"
    );
    // A TOML syntax error: refused, with its line.
    proxy.rewrite_config(&good.replace("[[route]]", "[[route]"));
    let (code, _, err) = proxy.reload_cli();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line"), "{err}");
    let body = proxy.metrics().await;
    assert!(body.contains("switchboard_config_generation 1"), "{body}");
    assert!(
        body.contains("switchboard_config_reloads_total{outcome=\"error\"} 3"),
        "{body}"
    );
    assert!(
        body.contains("switchboard_config_reloads_total{outcome=\"ok\"} 0"),
        "{body}"
    );
    // The old config still serves: the session keeps going, a new client connects.
    sio_round_trip(&mut d, "a", "after-refusal").await;
    sio_client(&mut d, "b", format!("ws://127.0.0.1:{port}/ws")).await;
    sio_round_trip(&mut d, "b", "new-after-refusal").await;

    // A route that cannot be built (its TLS files are missing) is refused as well.
    proxy.rewrite_config(&sio_config(
        admin,
        port,
        backend_port,
        "[route.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"",
    ));
    let (code, _, err) = proxy.reload_cli();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");

    // A good file is applied: exit 0, generation 2.
    proxy.rewrite_config(&sio_config(
        admin,
        port,
        backend_port,
        "[route.stomp]\nmax_subscriptions = 64",
    ));
    let (code, out, err) = proxy.reload_cli();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("generation 2") && out.contains("changed [chat]"),
        "{out}"
    );
    sio_round_trip(&mut d, "a", "after-reload").await;
    sio_round_trip(&mut d, "b", "after-reload").await;
    let body = proxy.metrics().await;
    assert!(body.contains("switchboard_config_generation 2"), "{body}");
    assert!(
        body.contains("switchboard_config_reloads_total{outcome=\"ok\"} 1"),
        "{body}"
    );

    // Nobody listening: exit 1. `GET /reload` does nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["reload", "--admin", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    let (status, _) = http_get(proxy.admin_addr(), "/reload").await.unwrap();
    assert_eq!(status, 405);
    // A browser's POST on a web page's behalf (it says where from) is refused.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(proxy.admin_addr())
            .await
            .unwrap();
        let req = "POST /reload HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\
                   Content-Length: 0\r\nConnection: close\r\n\r\n";
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        assert!(
            got.starts_with(b"HTTP/1.1 403"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(
        proxy.metric("switchboard_config_generation").await,
        Some(2.0)
    );
}

/// A CA and a leaf for 127.0.0.1 named `cn` signed by it: (cert PEM, key PEM, cert DER).
fn leaf(ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>, cn: &str) -> (String, String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// The certificate a fresh TLS handshake with `port` presents (trusting `ca_pem`).
async fn presented(port: u16, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swapped_under_a_tls_route() {
    ensure_npm();
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "switchboard test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (old_cert, old_key, old_der) = leaf(&ca, "old");
    let (new_cert, new_key, new_der) = leaf(&ca, "new");
    std::fs::write(&cert_path, &old_cert).unwrap();
    std::fs::write(&key_path, &old_key).unwrap();

    let (_backend, backend_port) = start_sio_backend(&[]);
    let port = free_port();
    let cfg = sio_config(
        free_port(),
        port,
        backend_port,
        &format!(
            "[route.tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert_path.display(),
            key_path.display()
        ),
    );
    let mut proxy = Proxy::start(&cfg).await;
    assert_eq!(presented(port, &ca.pem()).await, old_der);
    // stomp.js over wss://, trusting the test CA.
    let ca_env = ca_path.display().to_string();
    let mut d =
        Driver::spawn_with_env("stomp_driver.js", &[("NODE_EXTRA_CA_CERTS", &ca_env)]).await;
    let url = format!("wss://127.0.0.1:{port}/ws");
    sio_client(&mut d, "a", url.clone()).await;
    sio_round_trip(&mut d, "a", "old-cert").await;

    // Swap the files and reload: same config text, new material.
    std::fs::write(&cert_path, &new_cert).unwrap();
    std::fs::write(&key_path, &new_key).unwrap();
    proxy.sighup_and_wait().await;
    assert_eq!(
        proxy.metric("switchboard_config_generation").await,
        Some(2.0)
    );
    assert_eq!(presented(port, &ca.pem()).await, new_der);
    // The TLS session opened under the old certificate goes on.
    sio_round_trip(&mut d, "a", "after-swap").await;
    sio_client(&mut d, "b", url.clone()).await;
    sio_round_trip(&mut d, "b", "new-cert").await;
    sio_round_trip(&mut d, "a", "still-old-session").await;

    // A key that does not match its certificate is refused; the new pair stays in use.
    std::fs::write(&key_path, &old_key).unwrap();
    let (code, _, err) = proxy.reload_cli();
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(presented(port, &ca.pem()).await, new_der);
    sio_round_trip(&mut d, "a", "after-bad-key").await;
    assert_eq!(
        proxy
            .metric("switchboard_config_reloads_total{outcome=\"error\"}")
            .await,
        Some(1.0)
    );
}

/// A socketio → socketio route in front of `backend_port`; `upstream_extra` goes in its
/// upstream table.
fn sio_sio_config(admin: u16, port: u16, backend_port: u16, upstream_extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "sio"
listen = "127.0.0.1:{port}"
path = "/socket.io/"
client = "socketio"
[route.upstream]
url = "ws://127.0.0.1:{backend_port}/socket.io/"
dialect = "socketio"
acks = true
{upstream_extra}
"#
    )
}

/// socket.io client `c` emits `message_created` with an ack and gets the backend's re-emit.
async fn sio_emit_round_trip(d: &mut Driver, c: &str, req: u64) {
    let msg = json!({ "from": c, "n": req });
    d.send(
        json!({"op":"emit","c":c,"event":"message_created","args":[msg],"ack":true,"reqId":req}),
    )
    .await;
    let ack = d
        .expect(T, |v| v["c"] == c && v["ev"] == "ack" && v["reqId"] == req)
        .await;
    assert_eq!(
        ack["args"],
        json!([{"ok":true,"event":"message_created"}]),
        "{ack}"
    );
    d.expect(T, |v| {
        v["c"] == c && v["ev"] == "event" && v["args"] == json!([msg])
    })
    .await;
}

/// Engine.IO long-polling sessions are reached by sid on every request: a reload that changes
/// their route hands its session table to the new route, so they keep polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_sessions_survive_a_route_change() {
    ensure_npm();
    let (_backend, backend_port) = start_sio_backend(&[]);
    let (admin, port) = (free_port(), free_port());
    let pings =
        |ms: u32| format!("[route.socketio]\nping_interval_ms = {ms}\nping_timeout_ms = {ms}");
    let mut proxy = Proxy::start(&sio_sio_config(admin, port, backend_port, &pings(1500))).await;
    let mut d = Driver::sio().await;
    let url = format!("http://127.0.0.1:{port}");
    d.send(
        json!({"op":"connect","c":"p","url":url,"auth":{"token":jwt("ann", "test-secret")},
        "transports":["polling"],"reconnection":false}),
    )
    .await;
    let ev = d.expect_ev(T, "p", "connect").await;
    assert_eq!(ev["transport"], "polling");
    sio_emit_round_trip(&mut d, "p", 1).await;

    // Shorter pings from now on: the session opened before keeps its own (its role pings
    // every 1.5 s), and its polls are not judged late by the new 0.3 + 0.3 s.
    proxy.rewrite_config(&sio_sio_config(
        admin,
        port,
        backend_port,
        &format!("connect_timeout_ms = 4000\n{}", pings(300)),
    ));
    proxy.sighup_and_wait().await;
    assert_eq!(
        proxy.metric("switchboard_config_generation").await,
        Some(2.0)
    );
    // Every GET and POST after the reload lands on the changed route.
    sio_emit_round_trip(&mut d, "p", 2).await;
    sio_control_emit(backend_port, "notice", json!([{"after":"reload"}]), None).await;
    d.expect(T, |v| {
        v["c"] == "p" && v["ev"] == "event" && v["event"] == "notice"
    })
    .await;
    d.send(
        json!({"op":"connect","c":"q","url":url,"auth":{"token":jwt("bob", "test-secret")},
        "transports":["polling"],"reconnection":false}),
    )
    .await;
    d.expect_ev(T, "q", "connect").await;
    sio_emit_round_trip(&mut d, "q", 3).await;
    sio_emit_round_trip(&mut d, "p", 4).await;
    let quiet = d.collect(Duration::from_millis(3500)).await;
    assert!(!quiet.iter().any(|v| v["ev"] == "disconnect"), "{quiet:?}");
    sio_emit_round_trip(&mut d, "p", 5).await;
}

#[test]
fn systemd_unit_reloads_through_the_cli() {
    let unit = std::fs::read_to_string("systemd/switchboard.service").unwrap();
    let reload = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecReload="))
        .expect("ExecReload= in the unit");
    let start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let bin = start.split_whitespace().next().unwrap();
    let config = start.split_whitespace().last().unwrap();
    assert_eq!(reload, format!("{bin} reload {config}"));
}

/// A route moved to another address: the new address is bound, the old one stops accepting,
/// and the session opened on the old address goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_moved_to_another_address_keeps_its_sessions() {
    ensure_npm();
    let (_backend, backend_port) = start_sio_backend(&[]);
    let (admin, old_port, new_port) = (free_port(), free_port(), free_port());
    let mut proxy = Proxy::start(&sio_config(admin, old_port, backend_port, "")).await;
    let mut d = Driver::stomp().await;
    sio_client(&mut d, "a", format!("ws://127.0.0.1:{old_port}/ws")).await;
    sio_round_trip(&mut d, "a", "before-move").await;

    proxy.rewrite_config(&sio_config(admin, new_port, backend_port, ""));
    let (code, out, err) = proxy.reload_cli();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("changed [chat]") && out.contains("stopped listening"),
        "{out}"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", old_port))
            .await
            .is_err(),
        "the old address still accepts"
    );
    sio_client(&mut d, "b", format!("ws://127.0.0.1:{new_port}/ws")).await;
    sio_round_trip(&mut d, "b", "on-new-address").await;
    sio_round_trip(&mut d, "a", "moved-away-but-open").await;

    // Draining the process still reaches the session left on the old address.
    proxy.terminate();
    let status = proxy.wait_exit(T).await.expect("exits after the drain");
    assert!(status.success(), "{status}");
    d.expect_ev(T, "a", "close").await;
    d.expect_ev(T, "b", "close").await;
}
