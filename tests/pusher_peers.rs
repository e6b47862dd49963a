//! Proves the Pusher Channels harness against the real peers alone, without the proxy:
//! pusher-js 8.6 clients (pusher_driver.js) on soketi 1.6.1, events triggered through its HTTP
//! API with the `pusher` library (pusher_rest.js). One soketi for the whole file; the
//! scenarios run concurrently, each with its own driver and channels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    Driver, Soketi, pusher_channel_auth, pusher_connected, pusher_subscribed, start_soketi,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_clients_on_soketi() {
    let soketi = start_soketi();
    let s = &soketi;
    tokio::join!(
        public_channel_rest_event(s),
        presence_members(s),
        private_client_event(s),
        auth_failures_and_close_codes(s),
    );
    // The HTTP API sees what the clients left behind (GET /apps/app-id/channels).
    let (status, body) = soketi.rest(json!({"op":"get","path":"/channels"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["channels"].is_object(), "{body}");
}

/// A public channel: subscription_succeeded without data, then an event triggered through the
/// HTTP API arrives with its data decoded into an object (on the wire: a JSON string).
async fn public_channel_rest_event(s: &Soketi) {
    let mut d = Driver::pusher().await;
    d.send(s.connect_cmd("pub")).await;
    pusher_connected(&mut d, "pub").await;
    d.send(json!({"op":"subscribe","c":"pub","channel":"news"}))
        .await;
    let ok = pusher_subscribed(&mut d, "pub", "news").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    assert!(ok.get("data").is_none(), "soketi sends no data: {ok}");

    let data = json!({"hello": "world", "n": 1, "nested": {"a": [1, 2]}});
    let answer = s.trigger("news", "greet", data.clone()).await;
    assert!(answer.is_object(), "{answer}");
    let ev = d
        .expect(T, |v| {
            v["c"] == "pub" && v["ev"] == "event" && v["event"] == "greet"
        })
        .await;
    assert_eq!(ev["channel"], "news");
    assert_eq!(ev["data"], data, "{ev}");
    let raw: Value = serde_json::from_str(ev["rawData"].as_str().unwrap()).unwrap();
    assert_eq!(raw, data, "the wire carries data as a JSON string: {ev}");
}

/// A presence channel: the first member sees itself, the second gets both members, the first
/// sees member_added and, when the second disconnects, member_removed.
async fn presence_members(s: &Soketi) {
    let mut d = Driver::pusher().await;
    let mut alice = s.connect_cmd("alice");
    alice["userId"] = json!("u-alice");
    alice["userInfo"] = json!({"name": "Alice"});
    d.send(alice).await;
    pusher_connected(&mut d, "alice").await;
    d.send(json!({"op":"subscribe","c":"alice","channel":"presence-lobby"}))
        .await;
    let ok = pusher_subscribed(&mut d, "alice", "presence-lobby").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    assert_eq!(ok["count"], 1, "{ok}");
    assert_eq!(ok["members"], json!({"u-alice": {"name": "Alice"}}));
    assert_eq!(
        ok["me"],
        json!({"id": "u-alice", "info": {"name": "Alice"}})
    );

    let mut bob = s.connect_cmd("bob");
    bob["userId"] = json!("u-bob");
    bob["userInfo"] = json!({"name": "Bob"});
    d.send(bob).await;
    pusher_connected(&mut d, "bob").await;
    d.send(json!({"op":"subscribe","c":"bob","channel":"presence-lobby"}))
        .await;
    let ok = pusher_subscribed(&mut d, "bob", "presence-lobby").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    assert_eq!(ok["count"], 2, "{ok}");
    assert_eq!(
        ok["members"],
        json!({"u-alice": {"name": "Alice"}, "u-bob": {"name": "Bob"}})
    );
    assert_eq!(ok["myId"], "u-bob");
    let added = d.expect_ev(T, "alice", "member_added").await;
    assert_eq!(added["channel"], "presence-lobby");
    assert_eq!(added["id"], "u-bob");
    assert_eq!(added["info"], json!({"name": "Bob"}));
    assert_eq!(added["count"], 2);

    d.send(json!({"op":"disconnect","c":"bob"})).await;
    let removed = d.expect_ev(T, "alice", "member_removed").await;
    assert_eq!(removed["id"], "u-bob", "{removed}");
    assert_eq!(removed["count"], 1, "{removed}");
}

/// A client event on a private channel reaches the other member, data as sent (an object on
/// the wire, as pusher-js sends it), and is not echoed to the sender: the sender's reply
/// arrives after where an echo would have been.
async fn private_client_event(s: &Soketi) {
    let mut d = Driver::pusher().await;
    d.send(s.connect_cmd("carol")).await;
    d.send(s.connect_cmd("dave")).await;
    let carol_id = pusher_connected(&mut d, "carol").await;
    pusher_connected(&mut d, "dave").await;
    for c in ["carol", "dave"] {
        d.send(json!({"op":"subscribe","c":c,"channel":"private-chat"}))
            .await;
    }
    for c in ["carol", "dave"] {
        let ok = pusher_subscribed(&mut d, c, "private-chat").await;
        assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    }
    let auth = d.expect_ev(T, "carol", "auth").await;
    assert_eq!(auth["socketId"], carol_id.as_str());

    let msg = json!({"text": "hi dave", "n": 7});
    d.send(json!({"op":"trigger","c":"carol","channel":"private-chat","event":"client-msg","data":msg}))
        .await;
    let t = d.expect_ev(T, "carol", "triggered").await;
    assert_eq!(t["ok"], true, "{t}");
    let ev = d
        .expect(T, |v| {
            v["c"] == "dave" && v["ev"] == "event" && v["event"] == "client-msg"
        })
        .await;
    assert_eq!(ev["channel"], "private-chat");
    assert_eq!(ev["data"], msg);
    assert_eq!(ev["rawData"], msg, "{ev}");

    d.send(json!({"op":"trigger","c":"dave","channel":"private-chat","event":"client-reply","data":{"ok":true}}))
        .await;
    let reply = d
        .expect(T, |v| {
            v["c"] == "carol" && v["ev"] == "event" && v["event"] == "client-reply"
        })
        .await;
    assert_eq!(reply["data"], json!({"ok": true}));
    let echoed: Vec<&Value> = d
        .backlog()
        .iter()
        .filter(|v| v["ev"] == "event" && v["event"] == "client-msg" && v["c"] == "carol")
        .collect();
    assert!(
        echoed.is_empty(),
        "client event echoed to its sender: {echoed:?}"
    );
    let echoed = d
        .try_expect(Duration::from_millis(100), |v| {
            v["ev"] == "event" && v["event"] == "client-reply" && v["c"] == "dave"
        })
        .await;
    assert!(
        echoed.is_none(),
        "client event echoed to its sender: {echoed:?}"
    );
}

/// A forged channel signature gets pusher:subscription_error AuthError 401 (the connection
/// stays up and a good subscription still works); an unknown app key is refused with close
/// code 4001, which the driver reports as the WebSocket's close code and as a PusherError.
async fn auth_failures_and_close_codes(s: &Soketi) {
    let mut d = Driver::pusher().await;
    let mut eve = s.connect_cmd("eve");
    eve["forgeAuth"] = json!(true);
    d.send(eve).await;
    let socket_id = pusher_connected(&mut d, "eve").await;
    d.send(json!({"op":"subscribe","c":"eve","channel":"private-vault"}))
        .await;
    let err = pusher_subscribed(&mut d, "eve", "private-vault").await;
    assert_eq!(err["ev"], "subscription_error", "{err}");
    assert_eq!(err["type"], "AuthError", "{err}");
    assert_eq!(err["status"], 401, "{err}");
    d.send(json!({"op":"subscribe","c":"eve","channel":"private-open","forgeAuth":false}))
        .await;
    let ok = pusher_subscribed(&mut d, "eve", "private-open").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");

    // The Rust-side signer agrees with the driver's.
    let auth = pusher_channel_auth(&socket_id, "private-open", None).await;
    assert!(
        auth["auth"]
            .as_str()
            .is_some_and(|a| a.starts_with("app-key:") && a.len() == "app-key:".len() + 64),
        "{auth}"
    );

    d.send(json!({"op":"connect","c":"mallory","port":s.port,"key":"no-such-key"}))
        .await;
    let close = d.expect_ev(T, "mallory", "close").await;
    assert_eq!(close["code"], 4001, "{close}");
    let err = d.expect_ev(T, "mallory", "error").await;
    assert_eq!(err["error"]["data"]["code"], 4001, "{err}");
    let st = d
        .expect(T, |v| {
            v["c"] == "mallory" && v["ev"] == "state" && v["current"] == "disconnected"
        })
        .await;
    assert_eq!(st["previous"], "connecting", "4001 is refused: no retry");
}
