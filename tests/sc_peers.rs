//! Proves the SocketCluster harness against the real peers alone, without the proxy:
//! socketcluster-client 9.0.4 on socketcluster-server 9.1.3 (legacy protocol 1) and
//! socketcluster-client 20.0.2 on socketcluster-server 20.0.1 (protocol 2), through
//! sc_driver.js and sc_backend.js. One backend per generation; the scenarios of a generation run
//! concurrently, each with its own driver, clients and channels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Driver, SC_SECRET, jwt, sc_ack, sc_clients, sc_connect_cmd, sc_connected, sc_control,
    sc_received, start_sc_backend,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sc9_client_on_sc9_server() {
    let (_backend, port) = start_sc_backend(9, 1, &[]);
    tokio::join!(
        sms_flow(port, 9, 1),
        rpc_error_and_timeout(port),
        kick_out(port, 9, 1),
        login_logout(port, 9, 1),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sc20_client_on_sc20_server() {
    let (_backend, port) = start_sc_backend(20, 2, &[]);
    tokio::join!(
        echo_and_publish_v20(port),
        sms_flow(port, 20, 2),
        kick_out(port, 20, 2),
        login_logout(port, 20, 2),
    );
}

/// The vendor's SMS flow: `registerUser` answers a JSON string holding the session urn in the
/// callback's first (error) slot; the client subscribes to the urn's channel; a
/// `sendMessageToChannel` comes back on it addressed `to` the urn.
async fn sms_flow(port: u16, version: u32, protocol: u32) {
    let c = "sms";
    let mut d = Driver::sc().await;
    d.send(sc_connect_cmd(c, port, version, protocol)).await;
    let ev = sc_connected(&mut d, c).await;
    assert_eq!(ev["isAuthenticated"], false, "{ev}");
    assert!(ev["authError"].is_null(), "{ev}");

    d.send(json!({"op":"emit","c":c,"event":"registerUser","data":{},"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, c, 1).await;
    assert!(ack["data"].is_null(), "nothing in the data slot: {ack}");
    let res: Value = serde_json::from_str(
        ack["error"]
            .as_str()
            .unwrap_or_else(|| panic!("a JSON string in the error slot: {ack}")),
    )
    .unwrap();
    let urn = res["urn"].as_str().unwrap().to_owned();
    assert!(urn.starts_with("urn:session:"), "{res}");

    d.send(json!({"op":"subscribe","c":c,"channel":urn})).await;
    let sub = d
        .expect(T, |v| {
            v["c"] == c && (v["ev"] == "subscribe" || v["ev"] == "subscribeFail")
        })
        .await;
    assert_eq!(sub["ev"], "subscribe", "{sub}");
    assert_eq!(sub["channel"], urn.as_str());

    d.send(json!({"op":"emit","c":c,"event":"sendMessageToChannel",
        "data":{"text":"Hello","userUrn":urn},"reqId":2}))
        .await;
    let msg = d.expect(T, |v| v["c"] == c && v["ev"] == "channel").await;
    assert_eq!(msg["channel"], urn.as_str(), "{msg}");
    assert_eq!(
        msg["data"]["to"],
        urn.as_str(),
        "data.to === sessionUrn: {msg}"
    );
    assert_eq!(msg["data"]["text"], "Hello");
    assert_eq!(msg["data"]["from"], urn.as_str());
    let ack = sc_ack(&mut d, c, 2).await;
    assert!(ack["error"].is_null(), "{ack}");
    assert_eq!(ack["data"], json!({"ok": true}));

    // The backend saw both RPCs (with cids) and holds the subscription.
    let rec = sc_received(port).await;
    assert!(
        rec.iter().any(|r| r["urn"] == urn.as_str()
            && r["event"] == "sendMessageToChannel"
            && r["data"] == json!({"text":"Hello","userUrn":urn})
            && r["cid"].is_u64()),
        "{rec:?}"
    );
    let me = sc_clients(port)
        .await
        .into_iter()
        .find(|s| s["urn"] == urn.as_str())
        .unwrap();
    assert_eq!(me["subscriptions"], json!([urn]), "{me}");
}

/// An RPC answered with an error, one never answered (the client's ackTimeout), and the v9
/// client's local event names, which it never sends.
async fn rpc_error_and_timeout(port: u16) {
    let c = "rpc";
    let mut d = Driver::sc().await;
    let mut connect = sc_connect_cmd(c, port, 9, 1);
    connect["ackTimeout"] = json!(800);
    d.send(connect).await;
    sc_connected(&mut d, c).await;

    d.send(json!({"op":"emit","c":c,"event":"reject","data":{"n":1},"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, c, 1).await;
    assert_eq!(
        ack["error"],
        json!({"name":"FailError","message":"failed on purpose"})
    );
    assert!(ack["data"].is_null(), "{ack}");

    let started = Instant::now();
    d.send(json!({"op":"emit","c":c,"event":"slow","data":{},"reqId":2}))
        .await;
    let ack = sc_ack(&mut d, c, 2).await;
    assert_eq!(ack["error"]["name"], "TimeoutError", "{ack}");
    assert!(ack["data"].is_null(), "{ack}");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "after ackTimeout"
    );

    // socketcluster-client 9 keeps `fail` for itself: the driver refuses it.
    d.send(json!({"op":"emit","c":c,"event":"fail","data":{},"reqId":3}))
        .await;
    let err = d.expect(T, |v| v["c"] == c && v["ev"] == "cmd_error").await;
    assert!(
        err["message"].as_str().unwrap().contains("local event"),
        "{err}"
    );

    // A batched channel: `#subscribe` travels as a one-packet JSON array.
    d.send(json!({"op":"subscribe","c":c,"channel":"batched9","batch":true}))
        .await;
    d.expect_ev(T, c, "subscribe").await;
    let rec = sc_received(port).await;
    assert!(
        rec.iter().any(|r| r["event"] == "#subscribe"
            && r["data"] == json!({"channel":"batched9","batch":true})
            && r["batch"] == true),
        "{rec:?}"
    );

    // The link survives: echo answers in the data slot.
    d.send(json!({"op":"emit","c":c,"event":"echo","data":{"a":[1,"x"]},"reqId":4}))
        .await;
    let ack = sc_ack(&mut d, c, 4).await;
    assert!(ack["error"].is_null(), "{ack}");
    assert_eq!(ack["data"], json!({"a":[1,"x"]}));
}

/// A server-side publish reaches the subscriber; a kick-out from the control API arrives as
/// `kickOut` with its message, unsubscribes the client, and stops the channel's data.
async fn kick_out(port: u16, version: u32, protocol: u32) {
    let c = "kick";
    let channel = format!("kick-room-{version}");
    let mut d = Driver::sc().await;
    d.send(sc_connect_cmd(c, port, version, protocol)).await;
    let id = sc_connected(&mut d, c).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.send(json!({"op":"subscribe","c":c,"channel":channel}))
        .await;
    d.expect_ev(T, c, "subscribe").await;

    sc_control(
        port,
        "POST",
        "publish",
        Some(json!({"channel":channel,"data":{"n":1}})),
    )
    .await;
    let got = d.expect_ev(T, c, "channel").await;
    assert_eq!(got["data"], json!({"n":1}), "{got}");

    let r = sc_control(
        port,
        "POST",
        "kick-out",
        Some(json!({"channel":channel,"socket":id,"message":"go away"})),
    )
    .await;
    assert_eq!(r["count"], 1, "{r}");
    let k = d.expect_ev(T, c, "kickOut").await;
    assert_eq!(k["channel"], channel.as_str(), "{k}");
    assert_eq!(k["message"], "go away", "{k}");
    let u = d.expect_ev(T, c, "unsubscribe").await;
    assert_eq!(u["channel"], channel.as_str(), "{u}");
    let me = sc_clients(port)
        .await
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap();
    assert_eq!(me["subscriptions"], json!([]), "{me}");

    // No longer subscribed: a publish is not delivered.
    sc_control(
        port,
        "POST",
        "publish",
        Some(json!({"channel":channel,"data":{"n":2}})),
    )
    .await;
    let late = d
        .try_expect(Duration::from_millis(300), |v| {
            v["c"] == c && v["ev"] == "channel"
        })
        .await;
    assert!(late.is_none(), "{late:?}");
}

/// A JWT in the handshake authenticates; a bad one is a soft error; the `login` RPC sets a
/// token (`#setAuthToken`, without and with a cid) and `logout` removes it.
async fn login_logout(port: u16, version: u32, protocol: u32) {
    let mut d = Driver::sc().await;

    // Handshake tokens: good and bad.
    let mut good = sc_connect_cmd("tok", port, version, protocol);
    good["authToken"] = json!(jwt("alice", SC_SECRET));
    d.send(good).await;
    let mut bad = sc_connect_cmd("badtok", port, version, protocol);
    bad["authToken"] = json!(jwt("mallory", "wrong-secret"));
    d.send(bad).await;
    let ev = sc_connected(&mut d, "tok").await;
    assert_eq!(ev["isAuthenticated"], true, "{ev}");
    let a = d.expect_ev(T, "tok", "authenticate").await;
    assert_eq!(a["authToken"]["sub"], "alice", "{a}");
    let ev = sc_connected(&mut d, "badtok").await;
    assert_eq!(ev["isAuthenticated"], false, "{ev}");
    assert_eq!(ev["authError"]["name"], "AuthTokenInvalidError", "{ev}");

    // login / logout.
    let c = "login";
    d.send(sc_connect_cmd(c, port, version, protocol)).await;
    let id = sc_connected(&mut d, c).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.send(json!({"op":"emit","c":c,"event":"login","data":{"sub":"bob"},"reqId":1}))
        .await;
    let a = d.expect_ev(T, c, "authenticate").await;
    assert_eq!(a["authToken"]["sub"], "bob", "{a}");
    let signed = a["signedAuthToken"].as_str().unwrap();
    assert_eq!(signed.split('.').count(), 3, "a JWT: {a}");
    let ack = sc_ack(&mut d, c, 1).await;
    assert_eq!(ack["data"], json!({"ok": true}), "{ack}");
    let me = sc_clients(port)
        .await
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap();
    assert_eq!(me["authToken"]["sub"], "bob", "{me}");

    d.send(json!({"op":"emit","c":c,"event":"logout","data":{},"reqId":2}))
        .await;
    d.expect_ev(T, c, "deauthenticate").await;
    let ack = sc_ack(&mut d, c, 2).await;
    assert_eq!(ack["data"], json!({"ok": true}), "{ack}");
    let me = sc_clients(port)
        .await
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap();
    assert!(me["authToken"].is_null(), "{me}");

    // With ack:true the server asks the client to confirm the token: `#setAuthToken` carries a
    // cid and the client's `{"rid":N}` reaches the backend before the login answer.
    d.send(json!({"op":"emit","c":c,"event":"login","data":{"sub":"carol","ack":true},"reqId":3}))
        .await;
    let a = d.expect_ev(T, c, "authenticate").await;
    assert_eq!(a["authToken"]["sub"], "carol", "{a}");
    let ack = sc_ack(&mut d, c, 3).await;
    assert_eq!(ack["data"], json!({"ok": true}), "{ack}");
    let rec = sc_received(port).await;
    assert!(
        rec.iter()
            .any(|r| r["id"] == id.as_str() && r["rid"].is_u64()),
        "the client acknowledged #setAuthToken: {rec:?}"
    );
}

/// v20 on protocol 2: echo RPC, server events through a receiver, a client publish seen by
/// another subscriber (and by the publisher), a server publish.
async fn echo_and_publish_v20(port: u16) {
    let mut d = Driver::sc().await;
    let mut a = sc_connect_cmd("a", port, 20, 2);
    a["events"] = json!(["notice"]);
    a["rawFrames"] = json!(true);
    d.send(a).await;
    let mut b = sc_connect_cmd("b", port, 20, 2);
    b["batching"] = json!(true);
    d.send(b).await;
    let ev = sc_connected(&mut d, "a").await;
    let a_id = ev["id"].as_str().unwrap().to_owned();
    let b_id = sc_connected(&mut d, "b").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    d.send(json!({"op":"emit","c":"a","event":"echo","data":{"hello":[1,2,3]},"reqId":1}))
        .await;
    let ack = sc_ack(&mut d, "a", 1).await;
    assert!(ack["error"].is_null(), "{ack}");
    assert_eq!(ack["data"], json!({"hello":[1,2,3]}));
    // b batches (startBatching): its packets reach the server inside JSON arrays.
    d.send(json!({"op":"emit","c":"b","event":"echo","data":"batched","reqId":9}))
        .await;
    let ack = sc_ack(&mut d, "b", 9).await;
    assert_eq!(ack["data"], "batched", "{ack}");
    let rec = sc_received(port).await;
    assert!(
        rec.iter()
            .any(|r| r["id"] == b_id.as_str() && r["event"] == "echo" && r["batch"] == true),
        "{rec:?}"
    );

    for c in ["a", "b"] {
        d.send(json!({"op":"subscribe","c":c,"channel":"news20"}))
            .await;
    }
    for c in ["a", "b"] {
        let s = d.expect_ev(T, c, "subscribe").await;
        assert_eq!(s["channel"], "news20");
    }
    d.send(json!({"op":"publish","c":"a","channel":"news20","data":{"id":17},"reqId":2}))
        .await;
    for c in ["a", "b"] {
        let m = d.expect_ev(T, c, "channel").await;
        assert_eq!(m["channel"], "news20", "{m}");
        assert_eq!(m["data"], json!({"id":17}), "{m}");
    }
    let ack = sc_ack(&mut d, "a", 2).await;
    assert!(ack["error"].is_null(), "{ack}");

    sc_control(
        port,
        "POST",
        "publish",
        Some(json!({"channel":"news20","data":"from server"})),
    )
    .await;
    for c in ["a", "b"] {
        let m = d.expect_ev(T, c, "channel").await;
        assert_eq!(m["data"], "from server", "{m}");
    }

    // A server event to one socket, transmitted and then invoked (answered by the driver).
    sc_control(
        port,
        "POST",
        "emit",
        Some(json!({"event":"notice","data":{"n":1},"to":a_id})),
    )
    .await;
    let e = d.expect_ev(T, "a", "event").await;
    assert_eq!(e["event"], "notice");
    assert_eq!(e["data"], json!({"n":1}));
    assert_eq!(e["rpc"], false, "{e}");
    let r = sc_control(
        port,
        "POST",
        "emit",
        Some(json!({"event":"notice","data":{"n":2},"to":a_id,"ack":true})),
    )
    .await;
    assert_eq!(r["responses"], json!([{"id": a_id, "data": null}]), "{r}");
    let e = d.expect_ev(T, "a", "event").await;
    assert_eq!(e["rpc"], true, "{e}");

    // Protocol 2 on the wire: the handshake carries a cid; frames are plain JSON.
    let frames: Vec<Value> = d
        .collect(Duration::from_millis(100))
        .await
        .into_iter()
        .filter(|v| v["c"] == "a" && v["ev"] == "frame")
        .collect();
    let hs = frames
        .iter()
        .find(|f| f["dir"] == "out")
        .unwrap_or_else(|| panic!("{frames:?}"));
    let hs: Value = serde_json::from_str(hs["data"].as_str().unwrap()).unwrap();
    assert_eq!(hs["event"], "#handshake", "{hs}");
    assert_eq!(hs["cid"], 1, "{hs}");
}
