//! SocketCluster through Switchboard, against real peers (`tests/peers`):
//! socketcluster-client 9.0.4 and 20.0.2 (sc_driver.js), socketcluster-server 9.1.3 (legacy
//! protocol 1) and 20.0.1 (protocol 2) as backends (sc_backend.js, the SMS vendor's
//! procedures), the socket.io 4.8 test backend, @stomp/stompjs 7.5, socket.io-client 4.8 and
//! RabbitMQ web-stomp.
//!
//! One sc9 backend, one sc20 backend, one socket.io backend and one proxy serve the main
//! test, whose scenarios run concurrently, each with its own driver and names. RabbitMQ and
//! the killed backend have tests of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

/// Routes on one listener:
/// - `/socketcluster/`: SocketCluster v1 clients → the sc9 backend (calls time out in 1 s);
/// - `/v2/socketcluster/`: SocketCluster v2 clients → the sc9 backend (legacy);
/// - `/to20/socketcluster/`: v1 clients → the sc20 backend (protocol 2);
/// - `/sio/socketcluster/`: v1 clients → the socket.io backend;
/// - `/ws`: STOMP clients → sc9, receipts waiting for the backend's answer;
/// - `/socket.io/`: Socket.IO clients → sc9.
fn config(proxy: u16, sc9: u16, sc20: u16, sio: u16) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "sc-sc9"
listen = "127.0.0.1:{proxy}"
client = "socketcluster"
[route.upstream]
url = "ws://127.0.0.1:{sc9}/socketcluster/"
dialect = "socketcluster"
ack_timeout_ms = 1000

[[route]]
name = "sc2-sc9"
listen = "127.0.0.1:{proxy}"
path = "/v2/socketcluster/"
client = "socketcluster"
[route.socketcluster]
protocol_version = 2
[route.upstream]
url = "ws://127.0.0.1:{sc9}/socketcluster/"
dialect = "socketcluster"

[[route]]
name = "sc-sc20"
listen = "127.0.0.1:{proxy}"
path = "/to20/socketcluster/"
client = "socketcluster"
[route.upstream]
url = "ws://127.0.0.1:{sc20}/socketcluster/"
dialect = "socketcluster"
protocol_version = 2

[[route]]
name = "sc-sio"
listen = "127.0.0.1:{proxy}"
path = "/sio/socketcluster/"
client = "socketcluster"
[route.upstream]
url = "ws://127.0.0.1:{sio}/socket.io/"
dialect = "socketio"

[[route]]
name = "stomp-sc"
listen = "127.0.0.1:{proxy}"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:{sc9}/socketcluster/"
dialect = "socketcluster"
acks = true

[[route]]
name = "sio-sc"
listen = "127.0.0.1:{proxy}"
client = "socketio"
[route.upstream]
url = "ws://127.0.0.1:{sc9}/socketcluster/"
dialect = "socketcluster"
"#,
        admin = free_port(),
    )
}

struct Env {
    proxy: u16,
    sc9: u16,
    sc20: u16,
    sio: u16,
}

/// A SocketCluster client of the proxy on `path`.
fn connect(c: &str, e: &Env, path: &str, version: u32, protocol: u32) -> Value {
    let mut cmd = sc_connect_cmd(c, e.proxy, version, protocol);
    cmd["path"] = json!(path);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketcluster_through_switchboard() {
    ensure_npm();
    let (_sc9, sc9) = start_sc_backend(9, 1, &[]);
    let (_sc20, sc20) = start_sc_backend(20, 2, &[]);
    let (_sio, sio) = start_sio_backend(&[]);
    let proxy = free_port();
    let p = Proxy::start(&config(proxy, sc9, sc20, sio)).await;
    let e = Env {
        proxy,
        sc9,
        sc20,
        sio,
    };
    let e = &e;
    tokio::join!(
        sms_flow(e),
        rpc_errors_and_timeouts(e),
        kick_out_and_tokens(e),
        v2_client_to_legacy_server(e),
        v1_client_to_v2_server(e),
        sc_to_socketio_backend(e),
        stomp_to_sc(e),
        socketio_to_sc(e),
        bad_input(e),
    );
    let m = p.metrics().await;
    assert!(m.contains("route=\"sc-sc9\""), "{m}");
}

/// The SMS vendor's flow through the proxy: `registerUser`'s urn in the error slot as a
/// JSON string (both answer slots pass unchanged between SocketCluster legs), a
/// subscription to the urn's channel, `sendMessageToChannel` coming back on it.
async fn sms_flow(e: &Env) {
    let mut d = Driver::sc().await;
    d.send(connect("sms", e, "/socketcluster/", 9, 1)).await;
    sc_connected(&mut d, "sms").await;
    d.send(json!({"op":"emit","c":"sms","event":"registerUser","data":{},"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, "sms", 1).await;
    let res: Value =
        serde_json::from_str(ack["error"].as_str().unwrap_or_else(|| panic!("{ack}"))).unwrap();
    let urn = res["urn"].as_str().unwrap().to_owned();
    assert!(urn.starts_with("urn:session:"), "{urn}");
    d.send(json!({"op":"subscribe","c":"sms","channel":urn}))
        .await;
    d.expect(T, |v| v["c"] == "sms" && v["ev"] == "subscribe")
        .await;
    d.send(json!({"op":"emit","c":"sms","event":"sendMessageToChannel",
        "data":{"text":"hello","userUrn":"urn:user:1"},"reqId":2}))
        .await;
    let ack = sc_ack(&mut d, "sms", 2).await;
    assert_eq!(ack["data"], json!({"ok": true}), "{ack}");
    let m = d
        .expect(T, |v| v["c"] == "sms" && v["ev"] == "channel")
        .await;
    assert_eq!(m["channel"], urn.as_str());
    assert_eq!(m["data"]["to"], urn.as_str(), "{m}");
    assert_eq!(m["data"]["text"], "hello");
}

/// An RPC error passes as it was; a call the backend never answers times out with a
/// SocketCluster `TimeoutError` (the route's `ack_timeout_ms`).
async fn rpc_errors_and_timeouts(e: &Env) {
    let mut d = Driver::sc().await;
    d.send(connect("rpc", e, "/socketcluster/", 9, 1)).await;
    sc_connected(&mut d, "rpc").await;
    d.send(json!({"op":"emit","c":"rpc","event":"reject","data":{},"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, "rpc", 1).await;
    assert_eq!(ack["error"]["name"], "FailError", "{ack}");
    assert_eq!(ack["error"]["message"], "failed on purpose", "{ack}");
    d.send(json!({"op":"emit","c":"rpc","event":"slow","data":{},"reqId":2}))
        .await;
    let ack = sc_ack(&mut d, "rpc", 2).await;
    assert_eq!(ack["error"]["name"], "TimeoutError", "{ack}");
}

/// The backend kicks the client out of a channel; it sets a token, then removes it.
async fn kick_out_and_tokens(e: &Env) {
    let mut d = Driver::sc().await;
    d.send(connect("kick", e, "/socketcluster/", 9, 1)).await;
    sc_connected(&mut d, "kick").await;
    d.send(json!({"op":"subscribe","c":"kick","channel":"room-k"}))
        .await;
    d.expect(T, |v| v["c"] == "kick" && v["ev"] == "subscribe")
        .await;
    let r = sc_control(
        e.sc9,
        "POST",
        "/control/kick-out",
        Some(json!({"channel":"room-k","message":"bye"})),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let k = d.expect_ev(T, "kick", "kickOut").await;
    assert_eq!(k["channel"], "room-k", "{k}");
    assert_eq!(k["message"], "bye", "{k}");

    d.send(json!({"op":"emit","c":"kick","event":"login","data":{"sub":"ann"},"reqId":3}))
        .await;
    assert_eq!(sc_ack(&mut d, "kick", 3).await["data"], json!({"ok": true}));
    let a = d.expect_ev(T, "kick", "authenticate").await;
    assert_eq!(a["authToken"]["sub"], "ann", "{a}");
    d.send(json!({"op":"emit","c":"kick","event":"logout","data":{},"reqId":4}))
        .await;
    sc_ack(&mut d, "kick", 4).await;
    d.expect_ev(T, "kick", "removeAuthToken").await;
    // The client authenticates again on the open connection: #authenticate upstream.
    let token = jwt("bea", SC_SECRET);
    d.send(json!({"op":"authenticate","c":"kick","token":token,"reqId":5}))
        .await;
    let ack = sc_ack(&mut d, "kick", 5).await;
    assert_eq!(ack["data"]["isAuthenticated"], true, "{ack}");
    let clients = sc_clients(e.sc9).await;
    assert!(
        clients.iter().any(|c| c["authToken"]["sub"] == "bea"),
        "the backend took the token: {clients:?}"
    );
}

/// A protocol-2 client (socketcluster-client 20) on a legacy backend (server 9): the proxy
/// bridges the versions (empty-string pings one side, #1/#2 the other).
async fn v2_client_to_legacy_server(e: &Env) {
    let mut d = Driver::sc().await;
    d.send(connect("v2", e, "/v2/socketcluster/", 20, 2)).await;
    sc_connected(&mut d, "v2").await;
    d.send(json!({"op":"emit","c":"v2","event":"echo","data":{"n":1},"reqId":1}))
        .await;
    assert_eq!(sc_ack(&mut d, "v2", 1).await["data"], json!({"n": 1}));
    d.send(json!({"op":"subscribe","c":"v2","channel":"bridge-2"}))
        .await;
    d.expect(T, |v| v["c"] == "v2" && v["ev"] == "subscribe")
        .await;
    sc_control(
        e.sc9,
        "POST",
        "/control/publish",
        Some(json!({"channel":"bridge-2","data":{"via":9}})),
    )
    .await;
    let m = d
        .expect(T, |v| v["c"] == "v2" && v["ev"] == "channel")
        .await;
    assert_eq!(m["data"], json!({"via": 9}));
    // The client publishes on a channel: a #publish upstream, confirmed.
    d.send(json!({"op":"publish","c":"v2","channel":"bridge-2","data":{"from":"v2"},"reqId":2}))
        .await;
    let ack = sc_ack(&mut d, "v2", 2).await;
    assert!(ack["error"].is_null(), "{ack}");
    let m = d
        .expect(T, |v| {
            v["c"] == "v2" && v["ev"] == "channel" && v["data"]["from"] == "v2"
        })
        .await;
    assert_eq!(m["channel"], "bridge-2");
    // Pings cross versions for longer than a ping interval without a close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !d.backlog()
            .iter()
            .any(|v| v["c"] == "v2" && v["ev"] == "close"),
        "closed"
    );
}

/// A legacy client (v9) on a protocol-2 backend (server 20).
async fn v1_client_to_v2_server(e: &Env) {
    let mut d = Driver::sc().await;
    d.send(connect("v1", e, "/to20/socketcluster/", 9, 1)).await;
    sc_connected(&mut d, "v1").await;
    d.send(json!({"op":"emit","c":"v1","event":"echo","data":[1,2],"reqId":1}))
        .await;
    assert_eq!(sc_ack(&mut d, "v1", 1).await["data"], json!([1, 2]));
    d.send(json!({"op":"subscribe","c":"v1","channel":"bridge-1"}))
        .await;
    d.expect(T, |v| v["c"] == "v1" && v["ev"] == "subscribe")
        .await;
    sc_control(
        e.sc20,
        "POST",
        "/control/publish",
        Some(json!({"channel":"bridge-1","data":"hi"})),
    )
    .await;
    let m = d
        .expect(T, |v| v["c"] == "v1" && v["ev"] == "channel")
        .await;
    assert_eq!(m["data"], "hi");
}

/// A SocketCluster v9 client on the socket.io backend: `registerUser` answered through the
/// Socket.IO ack (its first argument is the data slot); a channel is an event name.
async fn sc_to_socketio_backend(e: &Env) {
    let mut d = Driver::sc().await;
    let mut cmd = connect("sio", e, "/sio/socketcluster/", 9, 1);
    // The socket.io backend checks a JWT: the handshake's token goes upstream.
    cmd["authToken"] = json!(jwt("scuser", SC_SECRET));
    d.send(cmd).await;
    sc_connected(&mut d, "sio").await;
    // The guide's flow against a Socket.IO backend: its ack's error field is SocketCluster's
    // first slot, where the guide's client reads the urn.
    d.send(json!({"op":"emit","c":"sio","event":"registerUser","data":{},"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, "sio", 1).await;
    let res: Value =
        serde_json::from_str(ack["error"].as_str().unwrap_or_else(|| panic!("{ack}"))).unwrap();
    let urn = res["urn"].as_str().unwrap().to_owned();
    d.send(json!({"op":"subscribe","c":"sio","channel":urn}))
        .await;
    d.expect(T, |v| {
        v["c"] == "sio" && v["ev"] == "subscribe" && v["channel"] == urn.as_str()
    })
    .await;
    d.send(json!({"op":"emit","c":"sio","event":"sendMessageToChannel",
        "data":{"text":"via socket.io","userUrn":"urn:user:9"},"reqId":2}))
        .await;
    assert_eq!(sc_ack(&mut d, "sio", 2).await["data"], json!({"ok": true}));
    let m = d
        .expect(T, |v| {
            v["c"] == "sio" && v["ev"] == "channel" && v["channel"] == urn.as_str()
        })
        .await;
    assert_eq!(m["data"]["to"], urn.as_str(), "{m}");
    // Any other call is answered in the data slot.
    d.send(json!({"op":"emit","c":"sio","event":"lookup","data":{},"reqId":3}))
        .await;
    let ack = sc_ack(&mut d, "sio", 3).await;
    assert!(ack["error"].is_null(), "{ack}");
    assert_eq!(ack["data"]["ok"], true, "{ack}");
    d.send(json!({"op":"subscribe","c":"sio","channel":"message_created"}))
        .await;
    d.expect(T, |v| v["c"] == "sio" && v["ev"] == "subscribe")
        .await;
    sio_control_emit(e.sio, "message_created", json!([{"id": 9}]), Some("scuser")).await;
    let m = d
        .expect(T, |v| v["c"] == "sio" && v["ev"] == "channel")
        .await;
    assert_eq!(m["channel"], "message_created");
    assert_eq!(m["data"], json!({"id": 9}));
}

/// @stomp/stompjs on the sc9 backend: SEND /app/<event> is a call (RECEIPT when answered,
/// ERROR on an RPC error: the route waits for answers), /topic/<ch> a channel.
async fn stomp_to_sc(e: &Env) {
    let mut s = Driver::stomp_connected(
        json!({"op":"connect","c":"st","url":format!("ws://127.0.0.1:{}/ws", e.proxy)}),
    )
    .await;
    s.send(json!({"op":"subscribe","c":"st","id":"0","destination":"/topic/stomp-room","headers":{"receipt":"sub"}}))
        .await;
    s.expect(T, |v| {
        v["c"] == "st" && v["ev"] == "receipt" && v["id"] == "sub"
    })
    .await;
    sc_control(
        e.sc9,
        "POST",
        "/control/publish",
        Some(json!({"channel":"stomp-room","data":{"n":1}})),
    )
    .await;
    let m = s.expect_ev(T, "st", "message").await;
    assert_eq!(m["destination"], "/topic/stomp-room", "{m}");
    assert_eq!(
        serde_json::from_str::<Value>(m["body"].as_str().unwrap()).unwrap(),
        json!({"n": 1})
    );
    // A SEND to the channel's destination is a #publish: the subscriber (itself) hears it.
    s.send(
        json!({"op":"send","c":"st","destination":"/topic/stomp-room","body":"{\"n\":2}",
        "headers":{"content-type":"application/json","receipt":"pub"}}),
    )
    .await;
    s.expect(T, |v| {
        v["c"] == "st" && v["ev"] == "receipt" && v["id"] == "pub"
    })
    .await;
    s.expect(T, |v| {
        v["c"] == "st" && v["ev"] == "message" && v["body"] == "{\"n\":2}"
    })
    .await;
    s.send(
        json!({"op":"send","c":"st","destination":"/app/echo","body":"{}",
        "headers":{"content-type":"application/json","receipt":"call"}}),
    )
    .await;
    s.expect(T, |v| {
        v["c"] == "st" && v["ev"] == "receipt" && v["id"] == "call"
    })
    .await;
    let got = sc_received(e.sc9).await;
    assert!(got.iter().any(|r| r["event"] == "echo"), "{got:?}");
    s.send(
        json!({"op":"send","c":"st","destination":"/app/reject","body":"{}",
        "headers":{"content-type":"application/json","receipt":"bad"}}),
    )
    .await;
    let err = s.expect_ev(T, "st", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap()
            .contains("failed on purpose"),
        "{err}"
    );
}

/// socket.io-client on the sc9 backend: an emit with an ack is a call (the data slot is
/// the ack's first argument, an error `{error:{name,message}}`); subscriptions by topic.
async fn socketio_to_sc(e: &Env) {
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"io","url":format!("http://127.0.0.1:{}", e.proxy),
        "transports":["websocket"]}),
    )
    .await;
    d.expect_ev(T, "io", "connect").await;
    d.send(json!({"op":"emit","c":"io","event":"echo","args":[{"x":1}],"ack":true,"reqId":1}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 1)
        .await;
    assert_eq!(ack["args"], json!([{"x": 1}]), "{ack}");
    d.send(json!({"op":"emit","c":"io","event":"reject","args":[{}],"ack":true,"reqId":2}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 2)
        .await;
    assert_eq!(
        ack["args"][0]["error"]["message"], "failed on purpose",
        "{ack}"
    );
    // The SMS flow from Socket.IO: registerUser answers in SocketCluster's error slot, which
    // reaches the ack as {error:{message}} holding the urn.
    d.send(json!({"op":"emit","c":"io","event":"registerUser","args":[{}],"ack":true,"reqId":10}))
        .await;
    let ack = d
        .expect(T, |v| {
            v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 10
        })
        .await;
    let res: Value =
        serde_json::from_str(ack["args"][0]["error"]["message"].as_str().unwrap()).unwrap();
    let urn = res["urn"].as_str().unwrap().to_owned();
    d.send(json!({"op":"emit","c":"io","event":"subscribe","args":[{"topic":urn}],"ack":true,"reqId":11}))
        .await;
    d.expect(T, |v| {
        v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 11
    })
    .await;
    d.send(json!({"op":"emit","c":"io","event":"sendMessageToChannel","args":[{"text":"hey","userUrn":"urn:user:io"}],"ack":true,"reqId":12}))
        .await;
    d.expect(T, |v| {
        v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 12
    })
    .await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "io" && v["ev"] == "event" && v["event"] == urn.as_str()
        })
        .await;
    assert_eq!(ev["args"][0]["to"], urn.as_str(), "{ev}");
    d.send(json!({"op":"emit","c":"io","event":"subscribe","args":[{"topic":"io-room"}],"ack":true,"reqId":3}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 3)
        .await;
    assert_eq!(ack["args"], json!([null]), "{ack}");
    sc_control(
        e.sc9,
        "POST",
        "/control/publish",
        Some(json!({"channel":"io-room","data":{"n":5}})),
    )
    .await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "io" && v["ev"] == "event" && v["event"] == "io-room"
        })
        .await;
    assert_eq!(ev["args"], json!([{"n": 5}]), "{ev}");
}

/// Bad input: a reserved event gets an `InvalidActionError`, bad JSON closes that client
/// (1007) and nobody else.
async fn bad_input(e: &Env) {
    let mut d = Driver::sc().await;
    let mut cmd = connect("bad", e, "/socketcluster/", 9, 1);
    cmd["rawFrames"] = json!(true);
    d.send(cmd).await;
    sc_connected(&mut d, "bad").await;
    d.send(json!({"op":"raw_send","c":"bad","data":"{\"event\":\"#bogus\",\"cid\":900}"}))
        .await;
    let f = d
        .expect(T, |v| {
            v["c"] == "bad"
                && v["ev"] == "frame"
                && v["dir"] == "in"
                && v["data"]
                    .as_str()
                    .is_some_and(|s| s.contains("\"rid\":900"))
        })
        .await;
    assert!(
        f["data"].as_str().unwrap().contains("InvalidActionError"),
        "{f}"
    );
    // A flood of calls past the 1024 that may wait: the rest are refused at once.
    let flood: Vec<Value> = (1000..2030)
        .map(|cid| json!({"event":"slow","data":null,"cid":cid}))
        .collect();
    d.send(json!({"op":"raw_send","c":"bad","data":Value::Array(flood).to_string()}))
        .await;
    let f = d
        .expect(T, |v| {
            v["c"] == "bad"
                && v["ev"] == "frame"
                && v["dir"] == "in"
                && v["data"]
                    .as_str()
                    .is_some_and(|s| s.contains("\"rid\":2029"))
        })
        .await;
    assert!(
        f["data"].as_str().unwrap().contains("BadConnectionError"),
        "{f}"
    );
    // Another client is unaffected by what comes next.
    d.send(connect("good", e, "/socketcluster/", 9, 1)).await;
    sc_connected(&mut d, "good").await;
    d.send(json!({"op":"raw_send","c":"bad","data":"not json"}))
        .await;
    let c = d
        .expect(T, |v| {
            v["c"] == "bad" && (v["ev"] == "disconnect" || v["ev"] == "close")
        })
        .await;
    assert_eq!(c["code"], 1007, "{c}");
    d.send(json!({"op":"emit","c":"good","event":"echo","data":"still here","reqId":1}))
        .await;
    assert_eq!(sc_ack(&mut d, "good", 1).await["data"], "still here");
}

/// The backend killed mid-session: a SocketCluster client gets a retryable close (1011,
/// after v1's `#disconnect`) and reconnects; a STOMP client its ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_gets_each_client_a_retryable_close() {
    ensure_npm();
    let (mut sc9, sc9_port) = start_sc_backend(9, 1, &[]);
    let (_sio, sio) = start_sio_backend(&[]);
    let proxy = free_port();
    let p = Proxy::start(&config(proxy, sc9_port, sc9_port, sio)).await;
    let e = Env {
        proxy,
        sc9: sc9_port,
        sc20: sc9_port,
        sio,
    };
    let mut d = Driver::sc().await;
    let mut cmd = connect("ann", &e, "/socketcluster/", 9, 1);
    cmd["autoReconnect"] = json!(true);
    cmd["reconnectDelay"] = json!(300);
    d.send(cmd).await;
    sc_connected(&mut d, "ann").await;
    let mut s = Driver::stomp_connected(
        json!({"op":"connect","c":"st","url":format!("ws://127.0.0.1:{proxy}/ws")}),
    )
    .await;
    sc9.kill();
    let c = d.expect_ev(T, "ann", "disconnect").await;
    let code = c["code"].as_u64().unwrap();
    assert!(code != 1000 && code < 4500, "a retryable close: {c}");
    d.expect(T, |v| v["c"] == "ann" && v["ev"] == "connecting")
        .await;
    let err = s.expect_ev(T, "st", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream"),
        "{err}"
    );
    // Counted as the backend's doing, whatever close code told each client.
    for route in ["sc-sc9", "stomp-sc"] {
        let series =
            format!("switchboard_sessions_total{{route=\"{route}\",outcome=\"upstream_lost\"}}");
        assert!(p.metric_reaches(&series, 1.0, T).await >= 1.0, "{series}");
        let series =
            format!("switchboard_sessions_total{{route=\"{route}\",outcome=\"protocol_error\"}}");
        assert_eq!(p.metric(&series).await.unwrap_or(0.0), 0.0, "{series}");
    }
}

/// A SocketCluster client on RabbitMQ web-stomp: a channel is a topic; what a STOMP client
/// publishes there is channel data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketcluster_hears_a_stomp_broker() {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let proxy = free_port();
    let _p = Proxy::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "sc-rabbit"
listen = "127.0.0.1:{proxy}"
client = "socketcluster"
{upstream}"#,
        admin = free_port(),
        upstream = rabbit.upstream_toml(),
    ))
    .await;
    let mut d = Driver::sc().await;
    d.send(sc_connect_cmd("rb", proxy, 9, 1)).await;
    sc_connected(&mut d, "rb").await;
    d.send(json!({"op":"subscribe","c":"rb","channel":"desk.alerts"}))
        .await;
    d.expect(T, |v| v["c"] == "rb" && v["ev"] == "subscribe")
        .await;
    let mut s = rabbit.publisher("pub").await;
    s.send(
        json!({"op":"send","c":"pub","destination":"/topic/desk.alerts",
        "headers":{"content-type":"application/json","receipt":"r"},"body":"{\"level\":2}"}),
    )
    .await;
    s.expect(T, |v| v["c"] == "pub" && v["ev"] == "receipt")
        .await;
    let m = d
        .expect(T, |v| v["c"] == "rb" && v["ev"] == "channel")
        .await;
    assert_eq!(m["channel"], "desk.alerts");
    assert_eq!(m["data"], json!({"level": 2}));
}

/// A SocketCluster client on soketi: channels are Pusher channels; an emit (not a client
/// event) is refused with a clear SocketCluster error, never a made-up answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketcluster_on_pusher() {
    ensure_npm();
    let soketi = start_soketi();
    let proxy = free_port();
    let _p = Proxy::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "sc-pusher"
listen = "127.0.0.1:{proxy}"
client = "socketcluster"
[route.upstream]
url = "ws://127.0.0.1:{port}/app/{PUSHER_APP_KEY}"
dialect = "pusher"
app_secret = "{PUSHER_APP_SECRET}"
"#,
        admin = free_port(),
        port = soketi.port,
    ))
    .await;
    let mut d = Driver::sc().await;
    d.send(sc_connect_cmd("pp", proxy, 9, 1)).await;
    sc_connected(&mut d, "pp").await;
    d.send(json!({"op":"subscribe","c":"pp","channel":"private-ward"}))
        .await;
    d.expect(T, |v| v["c"] == "pp" && v["ev"] == "subscribe")
        .await;
    soketi
        .trigger("private-ward", "round", json!({"bed": 1}))
        .await;
    let m = d
        .expect(T, |v| v["c"] == "pp" && v["ev"] == "channel")
        .await;
    assert_eq!(m["channel"], "private-ward");
    assert_eq!(m["data"], json!({"bed": 1}));
    d.send(json!({"op":"emit","c":"pp","event":"registerUser","data":{},"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, "pp", 1).await;
    assert_eq!(ack["error"]["name"], "InvalidActionError", "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client-"),
        "{ack}"
    );
}

/// pusher-js and @rails/actioncable on a SocketCluster backend: channels are SocketCluster
/// channels; a Pusher client event is a channel publish (#publish) the other subscribers get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_and_actioncable_on_socketcluster() {
    ensure_npm();
    let (_sc9, sc9) = start_sc_backend(9, 1, &[]);
    let proxy = free_port();
    let _p = Proxy::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "pusher-sc"
listen = "127.0.0.1:{proxy}"
client = "pusher"
[route.pusher]
app_key = "{PUSHER_APP_KEY}"
app_secret = "{PUSHER_APP_SECRET}"
[route.upstream]
url = "ws://127.0.0.1:{sc9}/socketcluster/"
dialect = "socketcluster"

[[route]]
name = "ac-sc"
listen = "127.0.0.1:{proxy}"
client = "actioncable"
[route.upstream]
url = "ws://127.0.0.1:{sc9}/socketcluster/"
dialect = "socketcluster"
"#,
        admin = free_port(),
    ))
    .await;
    let mut p = Driver::pusher().await;
    p.send(pusher_connect_cmd("pa", proxy)).await;
    pusher_connected(&mut p, "pa").await;
    p.send(json!({"op":"subscribe","c":"pa","channel":"private-sc-room"}))
        .await;
    assert_eq!(
        pusher_subscribed(&mut p, "pa", "private-sc-room").await["ev"],
        "subscription_succeeded"
    );
    let mut d = Driver::sc().await;
    d.send(sc_connect_cmd("direct", sc9, 9, 1)).await;
    sc_connected(&mut d, "direct").await;
    d.send(json!({"op":"subscribe","c":"direct","channel":"private-sc-room"}))
        .await;
    d.expect(T, |v| v["c"] == "direct" && v["ev"] == "subscribe")
        .await;
    sc_control(
        sc9,
        "POST",
        "/control/publish",
        Some(json!({"channel":"private-sc-room","data":{"n":1}})),
    )
    .await;
    let ev = p
        .expect(T, |v| {
            v["c"] == "pa" && v["ev"] == "event" && v["channel"] == "private-sc-room"
        })
        .await;
    assert_eq!(ev["data"], json!({"n": 1}), "{ev}");
    p.send(json!({"op":"trigger","c":"pa","channel":"private-sc-room","event":"client-note","data":{"from":"pusher"}}))
        .await;
    let m = d
        .expect(T, |v| {
            v["c"] == "direct" && v["ev"] == "channel" && v["data"]["from"] == "pusher"
        })
        .await;
    assert_eq!(m["channel"], "private-sc-room");

    let mut a = Driver::cable().await;
    a.send(json!({"op":"connect","c":"ac","url":format!("ws://127.0.0.1:{proxy}/cable")}))
        .await;
    cable_connected(&mut a, "ac").await;
    let id = json!({"channel": "sc-news"});
    cable_subscribe(&mut a, "ac", id.clone()).await;
    sc_control(
        sc9,
        "POST",
        "/control/publish",
        Some(json!({"channel":"sc-news","data":{"event":"headline","n":2}})),
    )
    .await;
    let got = cable_received(&mut a, "ac", &id, |m| m["event"] == "headline").await;
    assert_eq!(got["n"], 2);
}
