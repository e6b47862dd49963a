//! Pusher Channels through Switchboard, against real peers (`tests/peers`): pusher-js 8.6
//! clients (pusher_driver.js), soketi 1.6.1 as the Pusher backend (events triggered through
//! its HTTP API with the `pusher` library), @stomp/stompjs 7.5, socket.io-client 4.8 and the
//! socket.io 4.8 test backend.
//!
//! One soketi, one socket.io backend and one proxy serve the file's main test, whose
//! scenarios run concurrently, each with its own driver and channels:
//! - pusher-js → Switchboard (pusher → pusher) → soketi: the tele-consultation flow;
//! - @stomp/stompjs → Switchboard → soketi, and socket.io-client → Switchboard → soketi;
//! - pusher-js → Switchboard → the socket.io backend;
//! - bad input answered with `pusher:error`, other sessions untouched.
//!
//! soketi killed mid-session and the RabbitMQ backend have tests of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "test-secret";

/// The proxy's routes on one listener: pusher → soketi at `/app`, stomp → soketi at `/ws`
/// (signing with the app secret) and at `/ws-endpoint` (asking the app's auth endpoint),
/// socketio → soketi at `/socket.io/`, pusher → socket.io at `/sio/app`.
fn config(proxy: u16, soketi: u16, sio: u16, auth: u16) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "pusher-soketi"
listen = "127.0.0.1:{proxy}"
client = "pusher"
[route.pusher]
app_key = "{PUSHER_APP_KEY}"
app_secret = "{PUSHER_APP_SECRET}"
[route.upstream]
url = "ws://127.0.0.1:{soketi}/app/{PUSHER_APP_KEY}"
dialect = "pusher"
app_secret = "{PUSHER_APP_SECRET}"

[[route]]
name = "stomp-soketi"
listen = "127.0.0.1:{proxy}"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:{soketi}/app/{PUSHER_APP_KEY}"
dialect = "pusher"
app_secret = "{PUSHER_APP_SECRET}"

[[route]]
name = "stomp-soketi-endpoint"
listen = "127.0.0.1:{proxy}"
path = "/ws-endpoint"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:{soketi}/app/{PUSHER_APP_KEY}"
dialect = "pusher"
auth_endpoint = "http://127.0.0.1:{auth}/pusher/auth"

[[route]]
name = "socketio-soketi"
listen = "127.0.0.1:{proxy}"
client = "socketio"
[route.upstream]
url = "ws://127.0.0.1:{soketi}/app/{PUSHER_APP_KEY}"
dialect = "pusher"
app_secret = "{PUSHER_APP_SECRET}"

[[route]]
name = "pusher-sio"
listen = "127.0.0.1:{proxy}"
path = "/sio/app"
client = "pusher"
[route.pusher]
app_key = "{PUSHER_APP_KEY}"
app_secret = "{PUSHER_APP_SECRET}"
[route.upstream]
url = "ws://127.0.0.1:{sio}/socket.io/"
dialect = "socketio"
"#,
        admin = free_port(),
    )
}

/// The app's authorization endpoint, as a vendor runs it: `POST socket_id, channel_name`
/// with the user's bearer token; a known token gets a signature for that socket id (and
/// presence member data naming the user), anything else 403.
async fn auth_endpoint() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                let (head, body) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break (head.to_owned(), body.to_owned());
                        }
                    }
                };
                let form: std::collections::HashMap<String, String> =
                    url::form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                let user = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Authorization: Bearer ")
                            .or_else(|| l.strip_prefix("authorization: Bearer "))
                    })
                    .filter(|t| *t == "good-token")
                    .map(|_| "u-good");
                let resp = match (user, form.get("socket_id"), form.get("channel_name")) {
                    (Some(user), Some(sid), Some(ch)) => {
                        use switchboard::dialect::pusher::auth;
                        let data = ch.starts_with("presence-").then(|| format!(r#"{{"user_id":"{user}"}}"#));
                        let string = auth::channel_string(sid, ch.as_bytes(), data.as_deref().map(str::as_bytes));
                        let sig = auth::sign(PUSHER_APP_KEY, PUSHER_APP_SECRET, &string).unwrap();
                        let mut answer = json!({"auth": sig});
                        if let Some(d) = data {
                            answer["channel_data"] = json!(d);
                        }
                        let b = answer.to_string();
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}", b.len())
                    }
                    _ => "HTTP/1.1 403 Forbidden\r\ncontent-length: 9\r\nconnection: close\r\n\r\nforbidden".to_owned(),
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

struct Env {
    soketi: Soketi,
    proxy_port: u16,
    sio: u16,
    proxy: Proxy,
}

impl Env {
    /// A pusher-js client of the proxy's pusher → soketi route.
    fn connect(&self, c: &str) -> Value {
        pusher_connect_cmd(c, self.proxy_port)
    }
}

async fn event(d: &mut Driver, c: &str, name: &str) -> Value {
    d.expect(T, |v| {
        v["c"] == c && v["ev"] == "event" && v["event"] == name
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_through_switchboard() {
    ensure_npm();
    let soketi = start_soketi();
    let (_sio_child, sio) = start_sio_backend(&[]);
    let proxy_port = free_port();
    let auth = auth_endpoint().await;
    let proxy = Proxy::start(&config(proxy_port, soketi.port, sio, auth)).await;
    let env = Env {
        soketi,
        proxy_port,
        sio,
        proxy,
    };
    let e = &env;
    tokio::join!(
        consultation(e),
        presence(e),
        private_signatures_and_client_events(e),
        wrong_key(e),
        stomp_to_soketi(e),
        stomp_signed_by_the_apps_endpoint(e),
        socketio_to_soketi(e),
        pusher_to_socketio(e),
        bad_input(e),
    );
    // Every session was the proxy's own, one per client, on the routes they named.
    let m = env.proxy.metrics().await;
    assert!(m.contains("route=\"pusher-soketi\""), "{m}");
}

/// The vendor guide's flow: a per-consultation channel, `call-status` whose data arrives as
/// an object, triggered through the Pusher HTTP API on the backend.
async fn consultation(e: &Env) {
    let mut d = Driver::pusher().await;
    d.send(e.connect("doctor")).await;
    pusher_connected(&mut d, "doctor").await;
    d.send(json!({"op":"subscribe","c":"doctor","channel":"consultation-7"}))
        .await;
    let ok = pusher_subscribed(&mut d, "doctor", "consultation-7").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    e.soketi
        .trigger(
            "consultation-7",
            "call-status",
            json!({"status": "in_progress"}),
        )
        .await;
    let ev = event(&mut d, "doctor", "call-status").await;
    assert_eq!(ev["channel"], "consultation-7");
    assert_eq!(ev["data"], json!({"status": "in_progress"}), "{ev}");
    // On the wire, JSON in a string, as Pusher sends it.
    assert!(ev["rawData"].is_string(), "{ev}");
}

/// Presence through the proxy: members with user info and count, member_added to others,
/// member_removed when the last connection of a user leaves.
async fn presence(e: &Env) {
    let mut d = Driver::pusher().await;
    let mut a = e.connect("patient");
    a["userId"] = json!("u-patient");
    a["userInfo"] = json!({"name": "Pat"});
    d.send(a).await;
    pusher_connected(&mut d, "patient").await;
    d.send(json!({"op":"subscribe","c":"patient","channel":"presence-consultation-7"}))
        .await;
    let ok = pusher_subscribed(&mut d, "patient", "presence-consultation-7").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    assert_eq!(ok["count"], 1, "{ok}");
    assert_eq!(ok["members"], json!({"u-patient": {"name": "Pat"}}), "{ok}");

    let mut b = e.connect("nurse");
    b["userId"] = json!("u-nurse");
    b["userInfo"] = json!({"name": "Nia"});
    d.send(b).await;
    pusher_connected(&mut d, "nurse").await;
    d.send(json!({"op":"subscribe","c":"nurse","channel":"presence-consultation-7"}))
        .await;
    let ok = pusher_subscribed(&mut d, "nurse", "presence-consultation-7").await;
    assert_eq!(ok["count"], 2, "{ok}");
    assert_eq!(
        ok["members"],
        json!({"u-patient": {"name": "Pat"}, "u-nurse": {"name": "Nia"}}),
        "{ok}"
    );
    let added = d.expect_ev(T, "patient", "member_added").await;
    assert_eq!(added["id"], "u-nurse");
    assert_eq!(added["info"], json!({"name": "Nia"}));
    assert_eq!(added["count"], 2);
    // A member's client event says who sent it (pusher-js reads `user_id` off the message).
    d.send(json!({"op":"trigger","c":"nurse","channel":"presence-consultation-7","event":"client-typing","data":{"on":true}}))
        .await;
    let typing = event(&mut d, "patient", "client-typing").await;
    assert_eq!(typing["userId"], "u-nurse", "{typing}");
    d.send(json!({"op":"disconnect","c":"nurse"})).await;
    let removed = d.expect_ev(T, "patient", "member_removed").await;
    assert_eq!(removed["id"], "u-nurse", "{removed}");
    assert_eq!(removed["count"], 1, "{removed}");
}

/// A valid private signature (for the socket id the proxy issued) is accepted, a forged one
/// refused; client events reach the other client and are not echoed.
async fn private_signatures_and_client_events(e: &Env) {
    let mut d = Driver::pusher().await;
    d.send(e.connect("carol")).await;
    d.send(e.connect("dave")).await;
    pusher_connected(&mut d, "carol").await;
    pusher_connected(&mut d, "dave").await;
    for c in ["carol", "dave"] {
        d.send(json!({"op":"subscribe","c":c,"channel":"private-room-1"}))
            .await;
    }
    for c in ["carol", "dave"] {
        let ok = pusher_subscribed(&mut d, c, "private-room-1").await;
        assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    }
    d.send(json!({"op":"subscribe","c":"carol","channel":"private-vault","forgeAuth":true}))
        .await;
    let err = pusher_subscribed(&mut d, "carol", "private-vault").await;
    assert_eq!(err["ev"], "subscription_error", "{err}");
    assert_eq!(err["type"], "AuthError", "{err}");
    assert_eq!(err["status"], 401, "{err}");

    let msg = json!({"text": "hi dave"});
    d.send(json!({"op":"trigger","c":"carol","channel":"private-room-1","event":"client-msg","data":msg}))
        .await;
    let ev = event(&mut d, "dave", "client-msg").await;
    assert_eq!(ev["data"], msg, "{ev}");
    d.send(json!({"op":"trigger","c":"dave","channel":"private-room-1","event":"client-ack","data":{"ok":true}}))
        .await;
    event(&mut d, "carol", "client-ack").await;
    // Carol's own event would have come before Dave's answer.
    let echoed = d
        .backlog()
        .iter()
        .any(|v| v["c"] == "carol" && v["ev"] == "event" && v["event"] == "client-msg");
    assert!(!echoed, "a client event was echoed to its sender");
}

/// Another app key: pusher:error 4001 and close 4001; pusher-js does not retry.
async fn wrong_key(e: &Env) {
    let mut d = Driver::pusher().await;
    let mut cmd = e.connect("mallory");
    cmd["key"] = json!("not-the-key");
    d.send(cmd).await;
    let close = d.expect_ev(T, "mallory", "close").await;
    assert_eq!(close["code"], 4001, "{close}");
    // pusher-js reports the pusher:error (and the close) as connection errors.
    d.expect(T, |v| {
        v["c"] == "mallory"
            && v["ev"] == "error"
            && (v["data"]["code"] == 4001 || v["error"]["data"]["code"] == 4001)
    })
    .await;
}

/// @stomp/stompjs on soketi: public and private deliveries carry the Pusher event name in
/// the `event` header; a SEND with `event:client-<x>` is a client event that a pusher-js
/// client connected directly to soketi receives.
async fn stomp_to_soketi(e: &Env) {
    let mut p = Driver::pusher().await;
    p.send(e.soketi.connect_cmd("direct")).await;
    pusher_connected(&mut p, "direct").await;
    p.send(json!({"op":"subscribe","c":"direct","channel":"private-desk"}))
        .await;
    assert_eq!(
        pusher_subscribed(&mut p, "direct", "private-desk").await["ev"],
        "subscription_succeeded"
    );

    let mut s = Driver::stomp_connected(
        json!({"op":"connect","c":"st","url":format!("ws://127.0.0.1:{}/ws", e.proxy_port)}),
    )
    .await;
    for (id, dest) in [("0", "/topic/desk-news"), ("1", "/topic/private-desk")] {
        let receipt = format!("sub-{id}");
        s.send(json!({"op":"subscribe","c":"st","id":id,"destination":dest,"headers":{"receipt":receipt}}))
            .await;
        s.expect(T, |v| {
            v["c"] == "st" && v["ev"] == "receipt" && v["id"] == receipt.as_str()
        })
        .await;
    }
    e.soketi
        .trigger("desk-news", "bulletin", json!({"n": 1}))
        .await;
    let m = s.expect_ev(T, "st", "message").await;
    assert_eq!(m["destination"], "/topic/desk-news", "{m}");
    assert_eq!(m["headers"]["event"], "bulletin", "{m}");
    assert_eq!(
        serde_json::from_str::<Value>(m["body"].as_str().unwrap()).unwrap(),
        json!({"n": 1})
    );
    e.soketi
        .trigger("private-desk", "assigned", json!({"to": "st"}))
        .await;
    let m = s
        .expect(T, |v| {
            v["c"] == "st" && v["ev"] == "message" && v["headers"]["event"] == "assigned"
        })
        .await;
    assert_eq!(m["destination"], "/topic/private-desk", "{m}");

    s.send(
        json!({"op":"send","c":"st","destination":"/topic/private-desk",
        "headers":{"event":"client-typing","content-type":"application/json","receipt":"typed"},
        "body":"{\"who\":\"st\"}"}),
    )
    .await;
    s.expect(T, |v| {
        v["c"] == "st" && v["ev"] == "receipt" && v["id"] == "typed"
    })
    .await;
    let ev = event(&mut p, "direct", "client-typing").await;
    assert_eq!(ev["data"], json!({"who": "st"}), "{ev}");
    // Anything but a client event cannot be sent to Pusher: an ERROR in STOMP's words.
    s.send(json!({"op":"send","c":"st","destination":"/topic/private-desk","body":"{}"}))
        .await;
    let err = s.expect_ev(T, "st", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap()
            .contains("client-"),
        "{err}"
    );
}

/// Without the app secret, the proxy asks the app's auth endpoint with the client's bearer
/// token: a known user gets private and presence channels (the member is who the endpoint
/// says), an unknown one a STOMP ERROR.
async fn stomp_signed_by_the_apps_endpoint(e: &Env) {
    let url = format!("ws://127.0.0.1:{}/ws-endpoint", e.proxy_port);
    let mut s = Driver::stomp_connected(
        json!({"op":"connect","c":"good","url":url,"wsHeaders":{"Authorization":"Bearer good-token"}}),
    )
    .await;
    for (id, dest) in [("0", "/topic/private-ward"), ("1", "/topic/presence-ward")] {
        let receipt = format!("good-{id}");
        s.send(json!({"op":"subscribe","c":"good","id":id,"destination":dest,"headers":{"receipt":receipt}}))
            .await;
        s.expect(T, |v| {
            v["c"] == "good" && v["ev"] == "receipt" && v["id"] == receipt.as_str()
        })
        .await;
    }
    e.soketi
        .trigger("private-ward", "round", json!({"bed": 4}))
        .await;
    let m = s
        .expect(T, |v| {
            v["c"] == "good" && v["ev"] == "message" && v["headers"]["event"] == "round"
        })
        .await;
    assert_eq!(m["destination"], "/topic/private-ward", "{m}");
    let (status, users) = e
        .soketi
        .rest(json!({"op":"get","path":"/channels/presence-ward/users"}))
        .await;
    assert_eq!(status, 200, "{users}");
    assert_eq!(users["users"], json!([{"id": "u-good"}]), "{users}");
    // Presence reaches STOMP as documented events on the channel's subscription.
    let mut p = Driver::pusher().await;
    let mut v = e.soketi.connect_cmd("visitor");
    v["userId"] = json!("u-visitor");
    v["userInfo"] = json!({"name": "Vi"});
    p.send(v).await;
    pusher_connected(&mut p, "visitor").await;
    p.send(json!({"op":"subscribe","c":"visitor","channel":"presence-ward"}))
        .await;
    assert_eq!(
        pusher_subscribed(&mut p, "visitor", "presence-ward").await["count"],
        2
    );
    let m = s
        .expect(T, |v| {
            v["c"] == "good"
                && v["ev"] == "message"
                && v["headers"]["event"] == "presence:member_added"
        })
        .await;
    assert_eq!(m["destination"], "/topic/presence-ward", "{m}");
    let member: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        member,
        json!({"user_id": "u-visitor", "user_info": {"name": "Vi"}})
    );

    s.send(
        json!({"op":"connect","c":"bad","url":url,"wsHeaders":{"Authorization":"Bearer stolen"}}),
    )
    .await;
    s.expect_ev(T, "bad", "connected").await;
    s.send(json!({"op":"subscribe","c":"bad","id":"0","destination":"/topic/private-ward","headers":{"receipt":"bad-0"}}))
        .await;
    let err = s.expect_ev(T, "bad", "error").await;
    assert!(
        err["headers"]["message"].as_str().unwrap().contains("403"),
        "{err}"
    );
}

/// socket.io-client on soketi: subscribe with the convention, receive Pusher events by name
/// with their decoded data.
async fn socketio_to_soketi(e: &Env) {
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"io","url":format!("http://127.0.0.1:{}", e.proxy_port),
        "auth":{"token":"x"},"transports":["websocket"]}),
    )
    .await;
    d.expect_ev(T, "io", "connect").await;
    d.send(json!({"op":"emit","c":"io","event":"subscribe","args":[{"topic":"io-news"}],"ack":true,"reqId":1}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 1)
        .await;
    assert_eq!(ack["args"], json!([null]), "{ack}");
    e.soketi
        .trigger("io-news", "headline", json!({"title": "t"}))
        .await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "io" && v["ev"] == "event" && v["event"] == "headline"
        })
        .await;
    assert_eq!(ev["args"][0], json!({"title": "t"}), "{ev}");
    // A private channel needs no client auth here: the proxy signs for its own socket id.
    d.send(json!({"op":"emit","c":"io","event":"subscribe","args":[{"topic":"private-io"}],"ack":true,"reqId":2}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 2)
        .await;
    assert_eq!(ack["args"], json!([null]), "{ack}");
    // Presence needs an identity the socket.io client did not give: refused, in its words.
    d.send(json!({"op":"emit","c":"io","event":"subscribe","args":[{"topic":"presence-io"}],"ack":true,"reqId":3}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 3)
        .await;
    assert!(ack["args"][0]["error"].is_object(), "{ack}");
}

/// pusher-js against a Socket.IO backend: a channel is an event name; presence is refused
/// (the backend has none) rather than faked.
async fn pusher_to_socketio(e: &Env) {
    let mut d = Driver::pusher().await;
    let mut cmd = pusher_connect_cmd("sam", e.proxy_port);
    cmd["wsPath"] = json!("/sio");
    cmd["headers"] = json!({"Authorization": format!("Bearer {}", jwt("sam", SECRET))});
    d.send(cmd).await;
    pusher_connected(&mut d, "sam").await;
    d.send(json!({"op":"subscribe","c":"sam","channel":"message_created"}))
        .await;
    let ok = pusher_subscribed(&mut d, "sam", "message_created").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    sio_control_emit(e.sio, "message_created", json!([{"id": 5}]), Some("sam")).await;
    let ev = event(&mut d, "sam", "message_created").await;
    assert_eq!(ev["data"], json!({"id": 5}), "{ev}");
    d.send(json!({"op":"subscribe","c":"sam","channel":"presence-x","userId":"sam"}))
        .await;
    let err = pusher_subscribed(&mut d, "sam", "presence-x").await;
    assert_eq!(err["ev"], "subscription_error", "{err}");
    assert_eq!(err["type"], "PresenceUnavailable", "{err}");
}

/// Bad input gets `pusher:error` and the connection (and everyone else's) goes on.
async fn bad_input(e: &Env) {
    let mut d = Driver::pusher().await;
    d.send(e.connect("fuzz")).await;
    pusher_connected(&mut d, "fuzz").await;
    for raw in [
        "not json".to_owned(),
        r#"{"event":"pusher:hello","data":{}}"#.to_owned(),
        r#"{"event":"client-x","channel":"news","data":{}}"#.to_owned(),
        format!(
            r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
            "a".repeat(12 * 1024)
        ),
    ] {
        d.send(json!({"op":"raw_send","c":"fuzz","data":raw})).await;
        let err = d
            .expect(T, |v| {
                v["c"] == "fuzz" && v["ev"] == "conn_event" && v["event"] == "pusher:error"
            })
            .await;
        assert!(err["data"]["message"].is_string(), "{err}");
    }
    // Still connected: a subscription works.
    d.send(json!({"op":"subscribe","c":"fuzz","channel":"after-fuzz"}))
        .await;
    assert_eq!(
        pusher_subscribed(&mut d, "fuzz", "after-fuzz").await["ev"],
        "subscription_succeeded"
    );
    let closed = d
        .backlog()
        .iter()
        .any(|v| v["c"] == "fuzz" && v["ev"] == "close");
    assert!(!closed, "bad input closed the connection");
}

/// soketi killed mid-session: pusher-js clients get a close code in 4100–4299 and reconnect
/// (and get in again once a backend is back on the same port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_closes_with_a_reconnect_code() {
    ensure_npm();
    let mut soketi = start_soketi();
    let proxy_port = free_port();
    let (_sio_child, sio) = start_sio_backend(&[]);
    let proxy = Proxy::start(&config(proxy_port, soketi.port, sio, free_port())).await;
    let mut d = Driver::pusher().await;
    d.send(pusher_connect_cmd("ann", proxy_port)).await;
    pusher_connected(&mut d, "ann").await;
    d.send(json!({"op":"subscribe","c":"ann","channel":"news"}))
        .await;
    assert_eq!(
        pusher_subscribed(&mut d, "ann", "news").await["ev"],
        "subscription_succeeded"
    );
    soketi.child().kill();
    let close = d.expect_ev(T, "ann", "close").await;
    let code = close["code"].as_u64().unwrap();
    assert!((4100..4300).contains(&code), "{close}");
    // pusher-js tries again on its own.
    d.expect(T, |v| v["c"] == "ann" && v["ev"] == "open").await;
    // Counted as the backend's doing, not the client's (the close code is the client's
    // dialect's way of saying so): once lost, and again for each try while it is down.
    for outcome in ["upstream_lost", "upstream_unavailable"] {
        let series =
            format!("switchboard_sessions_total{{route=\"pusher-soketi\",outcome=\"{outcome}\"}}");
        assert!(
            proxy.metric_reaches(&series, 1.0, T).await >= 1.0,
            "{series}"
        );
    }
    let series = "switchboard_sessions_total{route=\"pusher-soketi\",outcome=\"protocol_error\"}";
    assert_eq!(proxy.metric(series).await.unwrap_or(0.0), 0.0);
}

/// pusher-js against RabbitMQ web-stomp: what a STOMP client publishes on the broker
/// arrives as Pusher events named by the `event` header (else by the channel), data decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_hears_a_stomp_broker() {
    ensure_npm();
    let Some(rabbit) = start_rabbitmq() else {
        return;
    };
    let proxy_port = free_port();
    let _proxy = Proxy::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "pusher-rabbit"
listen = "127.0.0.1:{proxy_port}"
client = "pusher"
[route.pusher]
app_key = "{PUSHER_APP_KEY}"
app_secret = "{PUSHER_APP_SECRET}"
{upstream}
# RabbitMQ takes publishes on /topic/ (the default is Spring's /app/): a template sends
# private channels' client events there, and subscribes there too.
[[route.map]]
client = "private-{{room}}"
upstream = "/topic/private-{{room}}"
"#,
        admin = free_port(),
        upstream = rabbit.upstream_toml(),
    ))
    .await;
    let mut p = Driver::pusher().await;
    p.send(pusher_connect_cmd("pia", proxy_port)).await;
    pusher_connected(&mut p, "pia").await;
    p.send(json!({"op":"subscribe","c":"pia","channel":"desk.news"}))
        .await;
    assert_eq!(
        pusher_subscribed(&mut p, "pia", "desk.news").await["ev"],
        "subscription_succeeded"
    );
    let mut s = rabbit.publisher("pub").await;
    s.send(
        json!({"op":"send","c":"pub","destination":"/topic/desk.news",
        "headers":{"content-type":"application/json","event":"bulletin","receipt":"r1"},
        "body":"{\"n\":1}"}),
    )
    .await;
    s.expect(T, |v| v["c"] == "pub" && v["ev"] == "receipt")
        .await;
    let ev = event(&mut p, "pia", "bulletin").await;
    assert_eq!(ev["channel"], "desk.news");
    assert_eq!(ev["data"], json!({"n": 1}), "{ev}");
    // A client event on a private channel: the broker's topic hands it to every
    // subscriber, but never back to the pusher-js client that sent it.
    let mut peer = pusher_connect_cmd("pat", proxy_port);
    peer["userId"] = json!("pat");
    p.send(peer).await;
    pusher_connected(&mut p, "pat").await;
    for c in ["pia", "pat"] {
        p.send(json!({"op":"subscribe","c":c,"channel":"private-desk"}))
            .await;
        assert_eq!(
            pusher_subscribed(&mut p, c, "private-desk").await["ev"],
            "subscription_succeeded"
        );
    }
    p.send(json!({"op":"trigger","c":"pia","channel":"private-desk","event":"client-note","data":{"n":2}}))
        .await;
    let ev = event(&mut p, "pat", "client-note").await;
    assert_eq!(ev["data"], json!({"n": 2}), "{ev}");
    p.send(json!({"op":"trigger","c":"pat","channel":"private-desk","event":"client-reply","data":{"n":3}}))
        .await;
    event(&mut p, "pia", "client-reply").await;
    let echoed = p
        .backlog()
        .iter()
        .any(|v| v["c"] == "pia" && v["ev"] == "event" && v["event"] == "client-note");
    assert!(!echoed, "a client event was echoed to its sender");

    // No `event` header: named after the channel; text stays text.
    s.send(
        json!({"op":"send","c":"pub","destination":"/topic/desk.news",
        "headers":{"content-type":"text/plain"},"body":"plain words"}),
    )
    .await;
    let ev = event(&mut p, "pia", "desk.news").await;
    assert_eq!(ev["data"], "plain words", "{ev}");
}

/// @rails/actioncable on soketi: an identifier's channel is a Pusher channel; the Pusher
/// event's data is the Action Cable message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actioncable_on_pusher() {
    ensure_npm();
    let soketi = start_soketi();
    let proxy = free_port();
    let _p = Proxy::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "ac-pusher"
listen = "127.0.0.1:{proxy}"
client = "actioncable"
[route.upstream]
url = "ws://127.0.0.1:{port}/app/{PUSHER_APP_KEY}"
dialect = "pusher"
app_secret = "{PUSHER_APP_SECRET}"
"#,
        admin = free_port(),
        port = soketi.port,
    ))
    .await;
    let mut a = Driver::cable().await;
    a.send(json!({"op":"connect","c":"ac","url":format!("ws://127.0.0.1:{proxy}/cable")}))
        .await;
    cable_connected(&mut a, "ac").await;
    let id = json!({"channel": "consultation-9"});
    cable_subscribe(&mut a, "ac", id.clone()).await;
    soketi
        .trigger("consultation-9", "call-status", json!({"status": "ended"}))
        .await;
    let got = cable_received(&mut a, "ac", &id, |m| m["status"] == "ended").await;
    assert_eq!(got, json!({"status": "ended"}));
}
