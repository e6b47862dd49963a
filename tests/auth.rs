//! Edge authentication (`[route.auth]`) with the real client library of each dialect, on a
//! route in front of a real backend: a valid JWT is accepted (and, forwarded, accepted by the
//! backend too), a forged one is refused in the client's own dialect before the upstream is
//! dialed (the proxy's dial counters stay at zero and the backend sees no client), and each
//! refusal is counted in `switchboard_auth_failures_total{route, reason}`.
//!
//! Backends: the Socket.IO backend of `tests/peers/sio_backend.js` (it verifies the same HS256
//! tokens itself), and RabbitMQ for RS256/ES256 tokens (keys in `tests/fixtures/auth/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "edge-and-backend-secret";

struct Setup {
    proxy: Proxy,
    _backend: Child,
    backend_port: u16,
    port: u16,
}

/// A proxy with one route `r` for `client` clients in front of the Socket.IO backend, whose
/// `[route.auth]` verifies HS256 tokens with the backend's own secret; `extra` goes into the
/// route table (before its sub-tables), `auth_extra` into `[route.auth]`.
async fn setup(client: &str, extra: &str, auth_extra: &str) -> Setup {
    ensure_npm();
    let (backend, backend_port) = start_sio_backend(&["--secret", SECRET]);
    let port = free_port();
    let admin = free_port();
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "r"
listen = "127.0.0.1:{port}"
client = "{client}"
{extra}

[route.upstream]
url = "ws://127.0.0.1:{backend_port}/socket.io/"
dialect = "socketio"

[route.auth]
algorithm = "HS256"
secret = "{SECRET}"
{auth_extra}
"#
    );
    let proxy = Proxy::start(&cfg).await;
    Setup {
        proxy,
        _backend: backend,
        backend_port,
        port,
    }
}

/// Upstream dials route `route` made, successful or not: the connect-latency histogram's
/// count plus the connect-failure counter.
async fn dials(proxy: &Proxy, route: &str) -> f64 {
    let label = format!("route=\"{route}\"");
    proxy
        .metrics()
        .await
        .lines()
        .filter(|l| {
            (l.starts_with("switchboard_upstream_connect_seconds_count")
                || l.starts_with("switchboard_upstream_connect_failures_total"))
                && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn auth_failures(proxy: &Proxy, route: &str, reason: &str) -> f64 {
    proxy
        .metric(&format!(
            "switchboard_auth_failures_total{{route=\"{route}\",reason=\"{reason}\"}}"
        ))
        .await
        .unwrap_or(0.0)
}

/// The backend's connected Socket.IO clients (`sub` of each verified token).
async fn backend_subs(port: u16) -> Vec<String> {
    match http_json(port, "GET", "/control/clients", None).await {
        Value::Array(a) => a
            .iter()
            .filter_map(|c| c["sub"].as_str().map(str::to_owned))
            .collect(),
        other => panic!("unexpected /control/clients answer {other}"),
    }
}

/// After a refusal: nothing was dialed, the backend has no client, and the refusal was
/// counted once with `reason`.
async fn assert_refused_before_dialing(s: &Setup, reason: &str) {
    assert_eq!(dials(&s.proxy, "r").await, 0.0, "the upstream was dialed");
    assert!(backend_subs(s.backend_port).await.is_empty());
    assert_eq!(auth_failures(&s.proxy, "r", reason).await, 1.0);
    assert_eq!(
        s.proxy
            .metric("switchboard_sessions_total{route=\"r\",outcome=\"unauthorized\"}")
            .await,
        Some(1.0)
    );
    let log = std::fs::read_to_string(s.proxy.log_path()).unwrap_or_default();
    assert!(
        log.contains("client refused by edge authentication"),
        "{log}"
    );
}

/// A forged token: the right claims signed with another secret.
fn forged(sub: &str) -> String {
    jwt(sub, "not-the-secret")
}

/// A JWT signed with a PEM private key (`RS256`, `ES256`) by Node's jsonwebtoken.
fn jwt_pem(claims: &Value, alg: &str, key: &str) -> String {
    ensure_npm();
    const JS: &str = "const [c, k, a] = process.argv.slice(1); \
                      process.stdout.write(require('jsonwebtoken').sign(JSON.parse(c), \
                      require('fs').readFileSync(k), { algorithm: a, expiresIn: '1h' }));";
    let out = Command::new("node")
        .args(["-e", JS, &claims.to_string(), &fixture(key), alg])
        .current_dir(peers_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fixture(name: &str) -> String {
    let p: PathBuf = repo_dir().join("tests/fixtures/auth").join(name);
    p.to_string_lossy().into_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// --- STOMP --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_forged_token_is_an_error_frame_and_a_valid_one_reaches_the_backend() {
    let s = setup(
        "stomp",
        "",
        "issuer = \"tests\"\naudience = \"switchboard\"\nleeway_secs = 5",
    )
    .await;
    let url = format!("ws://127.0.0.1:{}/ws", s.port);
    let claims = |sub: &str| json!({"sub": sub, "iss": "tests", "aud": "switchboard"});
    let mut d = Driver::stomp().await;

    // A forged passcode (stomp.js `connectHeaders`): STOMP's ERROR frame, then the close.
    let bad = jwt_claims(&claims("eve"), "not-the-secret", Some("1h"));
    d.send(json!({"op":"connect","c":"eve","url":url,"headers":{"passcode":bad}}))
        .await;
    let err = d.expect_ev(T, "eve", "error").await;
    assert_eq!(err["headers"]["message"], "unauthorized (invalid token)");
    assert_refused_before_dialing(&s, "invalid").await;

    // Every other reason, each in its own words.
    let cases = [
        ("missing", json!({}), "unauthorized (token required)"),
        (
            "expired",
            json!({"passcode": jwt_claims(
                &json!({"sub": "old", "iss": "tests", "aud": "switchboard", "exp": now() - 60}),
                SECRET,
                None,
            )}),
            "unauthorized (token expired or not yet valid)",
        ),
        (
            "issuer",
            json!({"passcode": jwt_claims(
                &json!({"sub": "x", "iss": "elsewhere", "aud": "switchboard"}),
                SECRET,
                Some("1h"),
            )}),
            "unauthorized (token issuer not accepted)",
        ),
        (
            "audience",
            json!({"Authorization": format!("Bearer {}", jwt_claims(
                &json!({"sub": "x", "iss": "tests", "aud": "billing"}),
                SECRET,
                Some("1h"),
            ))}),
            "unauthorized (token audience not accepted)",
        ),
    ];
    for (reason, headers, message) in cases {
        d.send(json!({"op":"connect","c":reason,"url":url,"headers":headers}))
            .await;
        let err = d.expect_ev(T, reason, "error").await;
        assert_eq!(err["headers"]["message"], message, "{reason}");
        assert_eq!(auth_failures(&s.proxy, "r", reason).await, 1.0, "{reason}");
    }
    assert_eq!(dials(&s.proxy, "r").await, 0.0);

    // The valid token: CONNECTED, and the backend (which checks the same token) has the
    // client, so the token was forwarded.
    let good = jwt_claims(&claims("ann"), SECRET, Some("1h"));
    d.send(json!({"op":"connect","c":"ann","url":url,"headers":{"passcode":good}}))
        .await;
    d.expect_ev(T, "ann", "connected").await;
    assert_eq!(backend_subs(s.backend_port).await, ["ann"]);
    assert_eq!(dials(&s.proxy, "r").await, 1.0);
    d.send(
        json!({"op":"subscribe","c":"ann","id":"s1","destination":"/topic/message_created",
        "headers":{"receipt":"sub-1"}}),
    )
    .await;
    d.expect(T, |v| v["ev"] == "receipt" && v["id"] == "sub-1")
        .await;
    d.send(
        json!({"op":"send","c":"ann","destination":"/app/message_created",
        "body":"{\"text\":\"héllo\"}","headers":{"content-type":"application/json"}}),
    )
    .await;
    let m = d.expect_ev(T, "ann", "message").await;
    assert_eq!(m["body"], "{\"text\":\"héllo\"}");
}

// --- Socket.IO ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_forged_token_is_a_connect_error() {
    let s = setup("socketio", "", "").await;
    let url = format!("http://127.0.0.1:{}", s.port);
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"eve","url":url,"auth":{"token":forged("eve")},
        "transports":["websocket"],"reconnection":false}),
    )
    .await;
    let e = d.expect_ev(T, "eve", "connect_error").await;
    assert_eq!(e["message"], "unauthorized (invalid token)");
    assert_refused_before_dialing(&s, "invalid").await;

    d.send(
        json!({"op":"connect","c":"ann","url":url,"auth":{"token":jwt("ann", SECRET)},
        "transports":["websocket"],"reconnection":false}),
    )
    .await;
    d.expect_ev(T, "ann", "connect").await;
    assert_eq!(backend_subs(s.backend_port).await, ["ann"]);
    d.send(json!({"op":"emit","c":"ann","event":"echo","args":[{"n":1}],"ack":true}))
        .await;
    let ack = d.expect_ev(T, "ann", "ack").await;
    assert_eq!(ack["args"][0]["ok"], true, "{ack}");
}

// --- Pusher -------------------------------------------------------------------------------

const PUSHER: &str = "[route.pusher]\napp_key = \"app-key\"\napp_secret = \"app-secret\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_forged_signin_is_pusher_error_4009() {
    let s = setup("pusher", PUSHER, "").await;
    let mut d = Driver::pusher().await;
    let mut cmd = pusher_connect_cmd("eve", s.port);
    cmd["signinAuth"] = json!(forged("eve"));
    cmd["userData"] = json!({"id": "eve"});
    d.send(cmd).await;
    pusher_connected(&mut d, "eve").await;
    // Subscribing before the signin is fine: it waits for the verified upstream.
    d.send(json!({"op":"subscribe","c":"eve","channel":"message_created"}))
        .await;
    d.send(json!({"op":"signin","c":"eve"})).await;
    d.expect_ev(T, "eve", "signin_auth").await;
    let e = d
        .expect(T, |v| {
            v["c"] == "eve" && v["ev"] == "conn_event" && v["event"] == "pusher:error"
        })
        .await;
    assert_eq!(e["data"]["code"], 4009, "{e}");
    assert_eq!(e["data"]["message"], "unauthorized (invalid token)");
    let close = d.expect_ev(T, "eve", "close").await;
    assert_eq!(close["code"], 4009);
    assert_refused_before_dialing(&s, "invalid").await;

    let mut cmd = pusher_connect_cmd("ann", s.port);
    cmd["signinAuth"] = json!(jwt("ann", SECRET));
    cmd["userData"] = json!({"id": "ann"});
    d.send(cmd).await;
    pusher_connected(&mut d, "ann").await;
    d.send(json!({"op":"subscribe","c":"ann","channel":"message_created"}))
        .await;
    d.send(json!({"op":"signin","c":"ann"})).await;
    let ok = d
        .expect(T, |v| {
            v["c"] == "ann" && v["ev"] == "conn_event" && v["event"] == "pusher:signin_success"
        })
        .await;
    assert_eq!(ok["data"]["user_data"], "{\"id\":\"ann\"}");
    let sub = pusher_subscribed(&mut d, "ann", "message_created").await;
    assert_eq!(sub["ev"], "subscription_succeeded", "{sub}");
    assert_eq!(backend_subs(s.backend_port).await, ["ann"]);
    sio_control_emit(
        s.backend_port,
        "message_created",
        json!([{"text": "hi"}]),
        None,
    )
    .await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "ann" && v["ev"] == "event" && v["channel"] == "message_created"
        })
        .await;
    assert_eq!(ev["data"], json!({"text": "hi"}));
}

// --- SocketCluster ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketcluster_forged_token_rejects_the_handshake() {
    let s = setup("socketcluster", "", "").await;
    let mut d = Driver::sc().await;
    let mut cmd = sc_connect_cmd("eve", s.port, 9, 1);
    cmd["authToken"] = json!(forged("eve"));
    d.send(cmd).await;
    let abort = d
        .expect(T, |v| {
            v["c"] == "eve" && (v["ev"] == "connectAbort" || v["ev"] == "connect")
        })
        .await;
    assert_eq!(abort["ev"], "connectAbort", "{abort}");
    // The v9 library closes a handshake answered with an error itself, with its own 4003
    // ("Failed to complete handshake"), and reports the server's error.
    assert_eq!(abort["code"], 4003, "{abort}");
    let e = d.expect_ev(T, "eve", "error").await;
    assert_eq!(e["error"]["name"], "AuthTokenInvalidError", "{e}");
    assert_eq!(e["error"]["message"], "unauthorized (invalid token)", "{e}");
    assert_refused_before_dialing(&s, "invalid").await;

    let mut cmd = sc_connect_cmd("ann", s.port, 9, 1);
    cmd["authToken"] = json!(jwt("ann", SECRET));
    d.send(cmd).await;
    let ok = sc_connected(&mut d, "ann").await;
    assert_eq!(ok["isAuthenticated"], true, "{ok}");
    assert_eq!(backend_subs(s.backend_port).await, ["ann"]);
}

// --- Action Cable -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actioncable_forged_token_is_disconnect_unauthorized() {
    let s = setup("actioncable", "", "").await;
    let mut d = Driver::cable().await;
    let base = format!("ws://127.0.0.1:{}/cable", s.port);
    d.send(json!({"op":"connect","c":"eve","url":format!("{base}?token={}", forged("eve"))}))
        .await;
    let gone = d
        .expect(T, |v| {
            v["c"] == "eve" && (v["ev"] == "disconnected" || v["ev"] == "connected")
        })
        .await;
    assert_eq!(gone["ev"], "disconnected", "{gone}");
    assert_eq!(gone["reason"], "unauthorized", "{gone}");
    assert_eq!(gone["reconnect"], false, "{gone}");
    assert_eq!(gone["willAttemptReconnect"], false, "{gone}");
    assert_refused_before_dialing(&s, "invalid").await;

    // The Rails way with a header instead of the query.
    d.send(json!({"op":"connect","c":"ann","url":base,
        "headers":{"Authorization":format!("Bearer {}", jwt("ann", SECRET))}}))
        .await;
    cable_connected(&mut d, "ann").await;
    assert_eq!(backend_subs(s.backend_port).await, ["ann"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actioncable_token_from_a_cookie() {
    let s = setup("actioncable", "", "cookie = \"jwt\"").await;
    let mut d = Driver::cable().await;
    let url = format!("ws://127.0.0.1:{}/cable", s.port);
    d.send(json!({"op":"connect","c":"eve","url":url,
        "headers":{"Cookie":format!("theme=dark; jwt={}", forged("eve"))}}))
        .await;
    let gone = d.expect_ev(T, "eve", "disconnected").await;
    assert_eq!(gone["reason"], "unauthorized", "{gone}");
    assert_refused_before_dialing(&s, "invalid").await;
    d.send(json!({"op":"connect","c":"ann","url":url,
        "headers":{"Cookie":format!("theme=dark; jwt={}", jwt("ann", SECRET))}}))
        .await;
    cable_connected(&mut d, "ann").await;
    // The backend checks `auth.token`: the cookie's token reached it as the token.
    assert_eq!(backend_subs(s.backend_port).await, ["ann"]);
}

// --- forward_token = false ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_forwarded_never_reaches_the_backend() {
    // Valid at the edge, but kept from the backend: this backend wants a token of its own,
    // so it refuses the client in its own words (not the edge's).
    let s = setup("socketio", "", "forward_token = false").await;
    let url = format!("http://127.0.0.1:{}", s.port);
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"ann","url":url,"auth":{"token":jwt("ann", SECRET)},
        "transports":["websocket"],"reconnection":false}),
    )
    .await;
    let e = d.expect_ev(T, "ann", "connect_error").await;
    assert_eq!(e["message"], "invalid token", "{e}");
    assert_eq!(auth_failures(&s.proxy, "r", "invalid").await, 0.0);
    assert_eq!(dials(&s.proxy, "r").await, 1.0);
}

// --- RS256 and ES256 in front of RabbitMQ -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_in_front_of_rabbitmq() {
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    ensure_npm();
    let port = free_port();
    let upstream = rabbit.upstream_toml();
    let route = |name: &str, alg: &str, key: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\npath = \"/{name}\"\n\
             client = \"stomp\"\n{upstream}\n[route.auth]\nalgorithm = \"{alg}\"\n\
             public_key_file = \"{}\"\n",
            fixture(key)
        )
    };
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\n{}\n{}",
        free_port(),
        route("rs", "RS256", "rs256-public.pem"),
        route("es", "ES256", "es256-public.pem"),
    );
    let proxy = Proxy::start(&cfg).await;
    let claims = json!({"sub": "ann", "channels": ["news"]});
    let rs = jwt_pem(&claims, "RS256", "rs256-private.pem");
    let es = jwt_pem(&claims, "ES256", "es256-private.pem");
    let mut d = Driver::stomp().await;
    // Each route refuses the other's token (another key, another algorithm).
    for (c, path, token) in [("x1", "rs", &es), ("x2", "es", &rs)] {
        let url = format!("ws://127.0.0.1:{port}/{path}");
        d.send(json!({"op":"connect","c":c,"url":url,"headers":{"passcode":token}}))
            .await;
        let err = d.expect_ev(T, c, "error").await;
        assert_eq!(err["headers"]["message"], "unauthorized (invalid token)");
        assert_eq!(auth_failures(&proxy, path, "invalid").await, 1.0);
        assert_eq!(dials(&proxy, path).await, 0.0);
    }
    // And accepts its own: the broker delivers to it.
    let mut publisher = rabbit.publisher("pub").await;
    for (c, path, token) in [("rs-ann", "rs", &rs), ("es-ann", "es", &es)] {
        let url = format!("ws://127.0.0.1:{port}/{path}");
        d.send(json!({"op":"connect","c":c,"url":url,"headers":{"passcode":token}}))
            .await;
        d.expect_ev(T, c, "connected").await;
        let receipt = format!("r-{c}");
        d.send(
            json!({"op":"subscribe","c":c,"id":"1","destination":"/topic/news",
            "headers":{"receipt":receipt}}),
        )
        .await;
        d.expect(T, |v| v["ev"] == "receipt" && v["id"] == receipt.as_str())
            .await;
        let body = format!("{{\"for\":\"{c}\"}}");
        publisher
            .send(json!({"op":"send","c":"pub","destination":"/topic/news","body":body}))
            .await;
        let m = d.expect(T, |v| v["c"] == c && v["ev"] == "message").await;
        assert_eq!(m["body"], body);
        assert_eq!(dials(&proxy, path).await, 1.0);
    }
}

// --- Re-authentication on an open session -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketcluster_authenticate_is_verified_before_it_goes_upstream() {
    ensure_npm();
    let (_backend, backend_port) = start_sc_backend(9, 1, &["--secret", SECRET]);
    let port = free_port();
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\n[[route]]\nname = \"r\"\nlisten = \"127.0.0.1:{port}\"\n\
         client = \"socketcluster\"\n[route.upstream]\n\
         url = \"ws://127.0.0.1:{backend_port}/socketcluster/\"\ndialect = \"socketcluster\"\n\
         [route.auth]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\n",
        free_port()
    );
    let proxy = Proxy::start(&cfg).await;
    let mut d = Driver::sc().await;
    let mut cmd = sc_connect_cmd("a", port, 9, 1);
    cmd["authToken"] = json!(jwt("ann", SECRET));
    d.send(cmd).await;
    sc_connected(&mut d, "a").await;
    let subs = |clients: Vec<Value>| -> Vec<Value> {
        clients
            .iter()
            .map(|c| c["authToken"]["sub"].clone())
            .collect()
    };
    assert_eq!(subs(sc_clients(backend_port).await), [json!("ann")]);

    // A forged #authenticate: refused at the edge as SocketCluster refuses one; the backend
    // never sees it and the session stays as it was.
    d.send(json!({"op":"authenticate","c":"a","token":forged("eve"),"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, "a", 1).await;
    assert_eq!(ack["error"]["name"], "AuthError", "{ack}");
    assert_eq!(ack["error"]["message"], "unauthorized (invalid token)");
    assert_eq!(auth_failures(&proxy, "r", "invalid").await, 1.0);
    assert!(
        !sc_received(backend_port)
            .await
            .iter()
            .any(|p| p["event"] == "#authenticate"),
        "the forged token reached the backend"
    );
    assert_eq!(subs(sc_clients(backend_port).await), [json!("ann")]);

    // A valid one goes upstream.
    d.send(json!({"op":"authenticate","c":"a","token":jwt("bea", SECRET),"reqId":2}))
        .await;
    let ack = sc_ack(&mut d, "a", 2).await;
    assert_eq!(ack["data"]["isAuthenticated"], true, "{ack}");
    assert_eq!(subs(sc_clients(backend_port).await), [json!("bea")]);
}
