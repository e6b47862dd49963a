//! Rails Action Cable through Switchboard, against real peers (`tests/peers`): a standalone
//! Rails Action Cable 6.1 server on puma with the community vendor's channels
//! (tests/peers/actioncable), @rails/actioncable 8.1 clients (cable_driver.js),
//! @stomp/stompjs 7.5, socket.io-client 4.8, the socket.io 4.8 test backend and RabbitMQ.
//!
//! One Rails server, one socket.io backend and one proxy serve the main test, whose
//! scenarios run concurrently with their own drivers and names; RabbitMQ and the killed
//! server have tests of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "test-secret";

/// Routes on one listener:
/// - `/cable`: Action Cable clients → Rails (token in `?token=`, as the client gave it);
/// - `/ws`: STOMP clients → Rails, token as `Authorization`, identifier templates;
/// - `/socket.io/`: Socket.IO clients → Rails, token in the `member_token` cookie;
/// - `/sio/cable`: Action Cable clients → the socket.io backend.
fn config(proxy: u16, cable: u16, sio: u16) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[[route]]
name = "ac-ac"
listen = "127.0.0.1:{proxy}"
client = "actioncable"
[route.actioncable]
allowed_origins = ["http://127.0.0.1"]
[route.upstream]
url = "ws://127.0.0.1:{cable}/cable"
dialect = "actioncable"
origin = "http://127.0.0.1"
[route.upstream.credentials]
token_as = "query:token"

[[route]]
name = "stomp-ac"
listen = "127.0.0.1:{proxy}"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:{cable}/cable"
dialect = "actioncable"
origin = "http://127.0.0.1"
[route.upstream.credentials]
token_as = "authorization"
[[route.map]]
client = "/topic/chat-room/{{id}}"
upstream = "Chats::RoomChannel"
upstream_params = {{ id = "{{id}}" }}
[[route.map]]
client = "/topic/notifications"
upstream = "NotificationChannel"

[[route]]
name = "sio-ac"
listen = "127.0.0.1:{proxy}"
client = "socketio"
[route.upstream]
url = "ws://127.0.0.1:{cable}/cable"
dialect = "actioncable"
origin = "http://127.0.0.1"
[route.upstream.credentials]
token_as = "cookie:member_token"
[[route.map]]
client = "chat-room-{{id}}"
upstream = "Chats::RoomChannel"
upstream_params = {{ id = "{{id}}" }}

[[route]]
name = "sc-ac"
listen = "127.0.0.1:{proxy}"
client = "socketcluster"
[route.upstream]
url = "ws://127.0.0.1:{cable}/cable"
dialect = "actioncable"
origin = "http://127.0.0.1"
[[route.map]]
client = "chat-room-{{id}}"
upstream = "Chats::RoomChannel"
upstream_params = {{ id = "{{id}}" }}

[[route]]
name = "pusher-ac"
listen = "127.0.0.1:{proxy}"
client = "pusher"
[route.pusher]
app_key = "{PUSHER_APP_KEY}"
app_secret = "{PUSHER_APP_SECRET}"
[route.upstream]
url = "ws://127.0.0.1:{cable}/cable"
dialect = "actioncable"
origin = "http://127.0.0.1"
[route.upstream.credentials]
token_as = "authorization"
[[route.map]]
client = "chat-room-{{id}}"
upstream = "Chats::RoomChannel"
upstream_params = {{ id = "{{id}}" }}

[[route]]
name = "ac-sio"
listen = "127.0.0.1:{proxy}"
path = "/sio/cable"
client = "actioncable"
[route.upstream]
url = "ws://127.0.0.1:{sio}/socket.io/"
dialect = "socketio"
[[route.map]]
client = "Chats::RoomChannel"
client_params = {{ id = "{{id}}" }}
upstream = "chat-room-{{id}}"
"#,
        admin = free_port(),
    )
}

struct Env {
    cable: Cable,
    proxy: u16,
    sio: u16,
}

impl Env {
    /// An @rails/actioncable consumer of the proxy's Action Cable → Rails route.
    fn connect(&self, c: &str, token: &str) -> Value {
        json!({"op":"connect","c":c,"url":format!("ws://127.0.0.1:{}/cable?token={token}", self.proxy)})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actioncable_through_switchboard() {
    ensure_npm();
    let cable = start_cable();
    let (_sio, sio) = start_sio_backend(&[]);
    let proxy = free_port();
    let _p = Proxy::start(&config(proxy, cable.port, sio)).await;
    let e = Env { cable, proxy, sio };
    let e = &e;
    tokio::join!(
        notifications(e),
        chat_room(e),
        rejected_room_and_bad_token(e),
        stomp_with_templates(e),
        socketio_with_templates(e),
        actioncable_to_socketio(e),
        bad_commands(e),
    );
}

/// The guide's notifications through the proxy: per-member stream, events as sent.
async fn notifications(e: &Env) {
    let mut d = Driver::cable().await;
    d.send(e.connect("n1", CABLE_TOKEN_M1)).await;
    cable_connected(&mut d, "n1").await;
    let id = json!({"channel": "NotificationChannel"});
    cable_subscribe(&mut d, "n1", id.clone()).await;
    let n = json!({"event": "newNotification", "notification": {"id": 101, "text": "Ann replied"}});
    e.cable.broadcast("notifications:m1", n.clone()).await;
    assert_eq!(
        cable_received(&mut d, "n1", &id, |m| m["event"] == "newNotification").await,
        n
    );
    e.cable
        .broadcast(
            "notification-channel-m1",
            json!({"event": "updateNewNotificationCount", "new_notifications_count": 3}),
        )
        .await;
    let got = cable_received(&mut d, "n1", &id, |m| {
        m["event"] == "updateNewNotificationCount"
    })
    .await;
    assert_eq!(got["new_notifications_count"], 3);
}

/// A chat room: a perform reaches Rails with the member's identity; the broadcast reaches
/// both members; a re-subscribe with the id as a number is the same subscription.
async fn chat_room(e: &Env) {
    let mut d = Driver::cable().await;
    d.send(e.connect("r1", CABLE_TOKEN_M1)).await;
    d.send(e.connect("r2", CABLE_TOKEN_M2)).await;
    cable_connected(&mut d, "r1").await;
    cable_connected(&mut d, "r2").await;
    let room = json!({"channel": "Chats::RoomChannel", "id": "77"});
    cable_subscribe(&mut d, "r1", room.clone()).await;
    cable_subscribe(&mut d, "r2", room.clone()).await;
    d.send(
        json!({"op":"perform","c":"r1","identifier":room,"action":"sendMessage",
        "data":{"body":"hello room","creation_uuid":"u-77"}}),
    )
    .await;
    for c in ["r2", "r1"] {
        let got = cable_received(&mut d, c, &room, |m| m["event"] == "newMessage").await;
        assert_eq!(got["message"]["body"], "hello room", "{got}");
        assert_eq!(got["message"]["sender"]["id"], "m1", "{got}");
    }
    let performed = e.cable.performed().await;
    assert!(
        performed
            .iter()
            .any(|p| p["member"] == "m1" && p["data"]["creation_uuid"] == "u-77"),
        "{performed:?}"
    );
}

/// A rejected room and a bad token, each in Action Cable's own words.
async fn rejected_room_and_bad_token(e: &Env) {
    let mut d = Driver::cable().await;
    d.send(e.connect("x", CABLE_TOKEN_M3)).await;
    cable_connected(&mut d, "x").await;
    let forbidden = json!({"channel": "Chats::RoomChannel", "id": "forbidden"});
    d.send(json!({"op":"subscribe","c":"x","identifier":forbidden}))
        .await;
    let a = cable_subscription_answer(&mut d, "x", &forbidden).await;
    assert_eq!(a["ev"], "reject", "{a}");
    d.send(e.connect("bad", "stolen")).await;
    let gone = d.expect_ev(T, "bad", "disconnected").await;
    assert_eq!(gone["reason"], "unauthorized", "{gone}");
    assert_eq!(gone["reconnect"], false, "{gone}");
    // The route's allowed origins, checked at the upgrade as Rails does.
    for (c, origin) in [
        ("noorigin", Value::Null),
        ("foreign", json!("https://evil.example")),
    ] {
        let mut cmd = e.connect(c, CABLE_TOKEN_M1);
        cmd["origin"] = origin;
        d.send(cmd).await;
        let ev = d.expect_ev(T, c, "http_error").await;
        assert_eq!(ev["status"], 404, "{ev}");
    }
    // A SocketCluster client's rejected room is an rid error.
    let mut sc = Driver::sc().await;
    let mut cmd = sc_connect_cmd("scx", e.proxy, 9, 1);
    // The handshake's token is what Rails authenticates.
    cmd["authToken"] = json!(CABLE_TOKEN_M1);
    sc.send(cmd).await;
    sc_connected(&mut sc, "scx").await;
    sc.send(json!({"op":"subscribe","c":"scx","channel":"chat-room-forbidden"}))
        .await;
    let f = sc.expect_ev(T, "scx", "subscribeFail").await;
    assert!(
        f["error"]["message"].as_str().unwrap().contains("rejected"),
        "{f}"
    );
    // A Pusher client's: subscription_error; its allowed room delivers Rails' broadcasts.
    let mut p = Driver::pusher().await;
    let mut cmd = pusher_connect_cmd("px", e.proxy);
    cmd["headers"] = json!({"Authorization": format!("Bearer {CABLE_TOKEN_M2}")});
    p.send(cmd).await;
    pusher_connected(&mut p, "px").await;
    p.send(json!({"op":"subscribe","c":"px","channel":"chat-room-forbidden"}))
        .await;
    let r = pusher_subscribed(&mut p, "px", "chat-room-forbidden").await;
    assert_eq!(r["ev"], "subscription_error", "{r}");
    p.send(json!({"op":"subscribe","c":"px","channel":"chat-room-55"}))
        .await;
    let ok = pusher_subscribed(&mut p, "px", "chat-room-55").await;
    assert_eq!(ok["ev"], "subscription_succeeded", "{ok}");
    e.cable
        .broadcast(
            "chat_room:55",
            json!({"event": "newMessage", "message": {"id": 3}}),
        )
        .await;
    let ev = p
        .expect(T, |v| {
            v["c"] == "px" && v["ev"] == "event" && v["event"] == "newMessage"
        })
        .await;
    assert_eq!(ev["data"]["message"]["id"], 3, "{ev}");
}

/// @stomp/stompjs on Rails with identifier templates: subscribe, deliveries named by the
/// broadcast's event, perform by SEND with `event:<action>`, a rejected room as ERROR.
async fn stomp_with_templates(e: &Env) {
    let mut s = Driver::stomp_connected(
        json!({"op":"connect","c":"st","url":format!("ws://127.0.0.1:{}/ws", e.proxy),
        "wsHeaders":{"Authorization":format!("Bearer {CABLE_TOKEN_M2}")}}),
    )
    .await;
    for (id, dest) in [("0", "/topic/chat-room/88"), ("1", "/topic/notifications")] {
        let r = format!("sub-{id}");
        s.send(
            json!({"op":"subscribe","c":"st","id":id,"destination":dest,"headers":{"receipt":r}}),
        )
        .await;
        s.expect(T, |v| {
            v["c"] == "st" && v["ev"] == "receipt" && v["id"] == r.as_str()
        })
        .await;
    }
    s.send(
        json!({"op":"send","c":"st","destination":"/topic/chat-room/88",
        "headers":{"event":"sendMessage","content-type":"application/json","receipt":"said"},
        "body":"{\"body\":\"from stomp\"}"}),
    )
    .await;
    s.expect(T, |v| {
        v["c"] == "st" && v["ev"] == "receipt" && v["id"] == "said"
    })
    .await;
    let m = s
        .expect(T, |v| {
            v["c"] == "st" && v["ev"] == "message" && v["headers"]["event"] == "newMessage"
        })
        .await;
    assert_eq!(m["destination"], "/topic/chat-room/88", "{m}");
    let body: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"]["body"], "from stomp", "{body}");
    assert_eq!(body["message"]["sender"]["id"], "m2", "{body}");
    e.cable
        .broadcast(
            "notifications:m2",
            json!({"event": "newNotification", "n": 1}),
        )
        .await;
    let m = s
        .expect(T, |v| {
            v["c"] == "st" && v["ev"] == "message" && v["headers"]["event"] == "newNotification"
        })
        .await;
    assert_eq!(m["destination"], "/topic/notifications", "{m}");
    s.send(json!({"op":"subscribe","c":"st","id":"2","destination":"/topic/chat-room/forbidden"}))
        .await;
    let err = s.expect_ev(T, "st", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{err}"
    );
    // A token Rails refuses at its `connect`: the STOMP client's own auth error.
    s.send(
        json!({"op":"connect","c":"st2","url":format!("ws://127.0.0.1:{}/ws", e.proxy),
        "wsHeaders":{"Authorization":"Bearer stolen"}}),
    )
    .await;
    let err = s.expect_ev(T, "st2", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap()
            .contains("unauthorized"),
        "{err}"
    );
}

/// socket.io-client on Rails (token in a cookie): subscribe with the convention, the
/// broadcast's event as the Socket.IO event, an emit as a perform.
async fn socketio_with_templates(e: &Env) {
    let mut d = Driver::sio().await;
    d.send(
        json!({"op":"connect","c":"io","url":format!("http://127.0.0.1:{}", e.proxy),
        "auth":{"token":CABLE_TOKEN_M3},"transports":["websocket"]}),
    )
    .await;
    d.expect_ev(T, "io", "connect").await;
    d.send(json!({"op":"emit","c":"io","event":"subscribe","args":[{"topic":"chat-room-99"}],"ack":true,"reqId":1}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 1)
        .await;
    assert_eq!(ack["args"], json!([null]), "{ack}");
    d.send(json!({"op":"emit","c":"io","event":"chat-room-99","args":[{"body":"from io"}]}))
        .await;
    // A rejected room is an ack error.
    d.send(json!({"op":"emit","c":"io","event":"subscribe","args":[{"topic":"chat-room-forbidden"}],"ack":true,"reqId":2}))
        .await;
    let ack = d
        .expect(T, |v| v["c"] == "io" && v["ev"] == "ack" && v["reqId"] == 2)
        .await;
    assert!(ack["args"][0]["error"].is_object(), "{ack}");
    // Without an event name the emit performs `receive`; a named one is the action.
    e.cable
        .broadcast(
            "chat_room:99",
            json!({"event": "chatRoomCreated", "room": {"id": 99}}),
        )
        .await;
    let ev = d
        .expect(T, |v| {
            v["c"] == "io" && v["ev"] == "event" && v["event"] == "chatRoomCreated"
        })
        .await;
    assert_eq!(ev["args"][0]["room"]["id"], 99, "{ev}");
    let performed = e.cable.performed().await;
    assert!(
        performed
            .iter()
            .any(|p| p["member"] == "m3" && p["data"]["body"] == "from io"),
        "the emit was performed on the room: {performed:?}"
    );
}

/// @rails/actioncable on the socket.io backend: an identifier template names the event.
async fn actioncable_to_socketio(e: &Env) {
    let mut d = Driver::cable().await;
    let token = jwt("acuser", SECRET);
    d.send(json!({"op":"connect","c":"as","url":format!("ws://127.0.0.1:{}/sio/cable?token={token}", e.proxy)}))
        .await;
    cable_connected(&mut d, "as").await;
    let room = json!({"channel": "Chats::RoomChannel", "id": 5});
    cable_subscribe(&mut d, "as", room.clone()).await;
    sio_control_emit(
        e.sio,
        "chat-room-5",
        json!([{"event":"newMessage","body":"x"}]),
        Some("acuser"),
    )
    .await;
    let got = cable_received(&mut d, "as", &room, |m| m["event"] == "newMessage").await;
    assert_eq!(got["body"], "x");
    // A perform on that subscription goes where the subscription went (its rule needed the
    // identifier's `id`), not to the channel class's plain name.
    d.send(json!({"op":"perform","c":"as","identifier":room,"action":"speak","data":{"body":"y"}}))
        .await;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = sio_control_received(e.sio)
            .await
            .into_iter()
            .filter(|r| r["sub"] == "acuser")
            .collect();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["event"], "chat-room-5", "{seen:?}");
}

/// Malformed commands get Action Cable's answers; others go on.
async fn bad_commands(e: &Env) {
    let mut d = Driver::cable().await;
    d.send(e.connect("bad2", CABLE_TOKEN_M1)).await;
    cable_connected(&mut d, "bad2").await;
    d.send(json!({"op":"raw_send","c":"bad2","data":"{\"command\":\"subscribe\",\"identifier\":\"not json\"}"}))
        .await;
    d.send(
        json!({"op":"raw_send","c":"bad2","data":"{\"command\":\"dance\",\"identifier\":\"{}\"}"}),
    )
    .await;
    // Still serving this client.
    cable_subscribe(&mut d, "bad2", json!({"channel": "NotificationChannel"})).await;
    d.send(json!({"op":"raw_send","c":"bad2","data":"not json at all"}))
        .await;
    let gone = d.expect_ev(T, "bad2", "disconnected").await;
    assert_eq!(gone["reason"], "invalid_request", "{gone}");
}

/// The Rails server killed mid-session: an Action Cable client is told to reconnect
/// (server_restart), a STOMP client gets its ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_rails_server_gets_clients_a_retryable_close() {
    ensure_npm();
    let mut cable = start_cable();
    let (_sio, sio) = start_sio_backend(&[]);
    let proxy = free_port();
    let _p = Proxy::start(&config(proxy, cable.port, sio)).await;
    let mut d = Driver::cable().await;
    d.send(json!({"op":"connect","c":"k","url":format!("ws://127.0.0.1:{proxy}/cable?token={CABLE_TOKEN_M1}")}))
        .await;
    cable_connected(&mut d, "k").await;
    let mut s = Driver::stomp_connected(
        json!({"op":"connect","c":"st","url":format!("ws://127.0.0.1:{proxy}/ws"),
        "wsHeaders":{"Authorization":format!("Bearer {CABLE_TOKEN_M1}")}}),
    )
    .await;
    cable.child().kill();
    let gone = d.expect_ev(T, "k", "disconnected").await;
    assert_eq!(gone["reason"], "server_restart", "{gone}");
    assert_eq!(gone["reconnect"], true, "{gone}");
    let err = s.expect_ev(T, "st", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream"),
        "{err}"
    );
}

/// @rails/actioncable on RabbitMQ: a channel is a topic; what a STOMP client publishes
/// arrives as the subscription's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actioncable_hears_a_stomp_broker() {
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
name = "ac-rabbit"
listen = "127.0.0.1:{proxy}"
client = "actioncable"
{upstream}"#,
        admin = free_port(),
        upstream = rabbit.upstream_toml(),
    ))
    .await;
    let mut d = Driver::cable().await;
    d.send(json!({"op":"connect","c":"rb","url":format!("ws://127.0.0.1:{proxy}/cable")}))
        .await;
    cable_connected(&mut d, "rb").await;
    let id = json!({"channel": "alerts.desk"});
    cable_subscribe(&mut d, "rb", id.clone()).await;
    let mut s = rabbit.publisher("pub").await;
    s.send(json!({"op":"send","c":"pub","destination":"/topic/alerts.desk",
        "headers":{"content-type":"application/json","receipt":"r"},"body":"{\"event\":\"alert\",\"level\":2}"}))
        .await;
    s.expect(T, |v| v["c"] == "pub" && v["ev"] == "receipt")
        .await;
    let got = cable_received(&mut d, "rb", &id, |m| m["event"] == "alert").await;
    assert_eq!(got["level"], 2);
}
