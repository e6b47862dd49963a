//! Proves the Action Cable harness against the real peers alone, without the proxy:
//! @rails/actioncable 8.1 consumers (cable_driver.js) on a standalone Rails Action Cable 6.1
//! server under puma (tests/peers/actioncable), broadcasts and server-side disconnects through
//! its control API. The channels mirror the community vendor's guide (NotificationChannel,
//! Chats::RoomChannel, ...). One server for most scenarios, run concurrently with their own
//! drivers; the reconnection scenario has its own fast-pinging server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    CABLE_TOKEN_M1, CABLE_TOKEN_M2, CABLE_TOKEN_M3, Cable, Driver, cable_connected, cable_received,
    cable_subscribe, cable_subscription_answer, start_cable, start_cable_with,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_actioncable_clients_on_rails_server() {
    let cable = start_cable();
    let s = &cable;
    tokio::join!(
        notifications(s),
        room_messages(s),
        rejections(s),
        unauthorized_and_origin(s),
        header_and_cookie_auth(s),
    );
}

/// Welcome, a confirmed NotificationChannel subscription, the guide's notification events
/// broadcast through the control API (on the short and on the guide's stream name), and no
/// leak to another member. Checks the exact wire frames on the way.
async fn notifications(s: &Cable) {
    let mut d = Driver::cable().await;
    let mut cmd = s.connect_cmd("n1", Some(CABLE_TOKEN_M1));
    cmd["frames"] = json!(true);
    cmd["pings"] = json!(true);
    d.send(cmd).await;
    let open = d.expect_ev(T, "n1", "open").await;
    assert_eq!(open["protocol"], "actioncable-v1-json", "{open}");
    let welcome = d
        .expect(T, |v| {
            v["c"] == "n1" && v["ev"] == "frame" && v["dir"] == "in"
        })
        .await;
    assert_eq!(welcome["data"], r#"{"type":"welcome"}"#, "first frame");
    let ev = cable_connected(&mut d, "n1").await;
    assert_eq!(ev["reconnected"], false, "{ev}");

    d.send(s.connect_cmd("n2", Some(CABLE_TOKEN_M2))).await;
    cable_connected(&mut d, "n2").await;

    let id = json!({"channel": "NotificationChannel"});
    let confirm = cable_subscribe(&mut d, "n1", id.clone()).await;
    assert_eq!(confirm["reconnected"], false, "{confirm}");
    cable_subscribe(&mut d, "n2", id.clone()).await;
    let sub = d
        .expect(T, |v| {
            v["c"] == "n1"
                && v["ev"] == "frame"
                && v["dir"] == "out"
                && v["data"].as_str().unwrap_or("").contains("subscribe")
        })
        .await;
    assert_eq!(
        sub["data"],
        r#"{"command":"subscribe","identifier":"{\"channel\":\"NotificationChannel\"}"}"#
    );
    let confirm_frame = d
        .expect(T, |v| {
            v["c"] == "n1"
                && v["ev"] == "frame"
                && v["data"]
                    .as_str()
                    .unwrap_or("")
                    .contains("confirm_subscription")
        })
        .await;
    assert_eq!(
        confirm_frame["data"],
        r#"{"identifier":"{\"channel\":\"NotificationChannel\"}","type":"confirm_subscription"}"#
    );

    let notification = json!({
        "event": "newNotification",
        "notification": {"id": 101, "action": "comment", "text": "Ann replied", "read": false}
    });
    s.broadcast("notifications:m1", notification.clone()).await;
    let got = cable_received(&mut d, "n1", &id, |m| m["event"] == "newNotification").await;
    assert_eq!(got, notification);
    let frame = d
        .expect(T, |v| {
            v["c"] == "n1"
                && v["ev"] == "frame"
                && v["data"].as_str().unwrap_or("").contains("newNotification")
        })
        .await;
    let wire: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        wire,
        json!({"identifier": "{\"channel\":\"NotificationChannel\"}", "message": notification}),
        "a broadcast on the wire: identifier string plus message, no event name of its own"
    );

    // The guide's stream name reaches the same subscription.
    s.broadcast(
        "notification-channel-m1",
        json!({"event": "updateNewNotificationCount", "new_notifications_count": 3}),
    )
    .await;
    let got = cable_received(&mut d, "n1", &id, |m| {
        m["event"] == "updateNewNotificationCount"
    })
    .await;
    assert_eq!(got["new_notifications_count"], 3);

    // A channel action answered by a broadcast on the member's stream.
    d.send(json!({"op":"perform","c":"n1","identifier":id,"action":"markAllRead"}))
        .await;
    let got = cable_received(&mut d, "n1", &id, |m| {
        m["event"] == "resetNewNotificationCount"
    })
    .await;
    assert_eq!(got["new_notifications_count"], 0);

    // Pings: {"type":"ping","message":<unix seconds>} every 3 s.
    let ping = d
        .expect(Duration::from_secs(8), |v| {
            v["c"] == "n1"
                && v["ev"] == "frame"
                && v["data"].as_str().unwrap_or("").contains("ping")
        })
        .await;
    let ping: Value = serde_json::from_str(ping["data"].as_str().unwrap()).unwrap();
    assert_eq!(ping["type"], "ping");
    assert!(
        ping["message"].as_u64().is_some_and(|t| t > 1_600_000_000),
        "{ping}"
    );

    // m2 saw none of m1's notifications.
    let rest = d.collect(Duration::from_millis(300)).await;
    assert!(
        !rest.iter().any(|v| v["c"] == "n2" && v["ev"] == "received"),
        "m2 got m1's notifications: {rest:?}"
    );

    d.send(json!({"op":"unsubscribe","c":"n1","identifier":id}))
        .await;
    d.send(json!({"op":"disconnect","c":"n1"})).await;
    let gone = d.expect_ev(T, "n1", "disconnected").await;
    assert_eq!(gone["willAttemptReconnect"], false, "{gone}");
    assert_eq!(gone["reason"], Value::Null, "{gone}");
    assert_eq!(gone["code"], 1000, "{gone}");
}

/// Two members in Chats::RoomChannel {id:"7"}: one performs sendMessage, both receive the
/// newMessage broadcast; the server recorded the perform; echo answers only the caller.
async fn room_messages(s: &Cable) {
    let mut d = Driver::cable().await;
    d.send(s.connect_cmd("r1", Some(CABLE_TOKEN_M1))).await;
    d.send(s.connect_cmd("r2", Some(CABLE_TOKEN_M2))).await;
    cable_connected(&mut d, "r1").await;
    cable_connected(&mut d, "r2").await;
    let room = json!({"channel": "Chats::RoomChannel", "id": "7"});
    cable_subscribe(&mut d, "r1", room.clone()).await;
    cable_subscribe(&mut d, "r2", room.clone()).await;

    let uuid = "c0ffee00-0000-4000-8000-000000000007";
    d.send(json!({
        "op": "perform", "c": "r1", "identifier": room, "action": "sendMessage",
        "data": {"body": "hello room", "creation_uuid": uuid}
    }))
    .await;
    for c in ["r2", "r1"] {
        let got = cable_received(&mut d, c, &room, |m| m["event"] == "newMessage").await;
        let m = &got["message"];
        assert_eq!(m["body"], "hello room", "{got}");
        assert_eq!(m["creation_uuid"], uuid, "{got}");
        assert_eq!(m["chat_room_id"], 7, "{got}");
        assert_eq!(m["sender"]["id"], "m1", "{got}");
        assert!(m["id"].is_u64(), "{got}");
    }
    let performed = s.performed().await;
    let p = performed
        .iter()
        .find(|p| p["data"]["creation_uuid"] == uuid)
        .unwrap_or_else(|| panic!("sendMessage not recorded: {performed:?}"));
    assert_eq!(p["member"], "m1");
    assert_eq!(p["channel"], "Chats::RoomChannel");
    assert_eq!(p["action"], "sendMessage");
    assert_eq!(p["known"], true);
    assert_eq!(
        p["identifier"],
        room.to_string(),
        "the wire identifier string"
    );
    assert_eq!(
        p["data"],
        json!({"body": "hello room", "creation_uuid": uuid, "action": "sendMessage"})
    );

    // A control broadcast on the guide's room stream name.
    s.broadcast(
        "chat-room-7-channel",
        json!({"event": "deletedMessage", "message": {"id": 5, "parent_message": null}}),
    )
    .await;
    let got = cable_received(&mut d, "r2", &room, |m| m["event"] == "deletedMessage").await;
    assert_eq!(got["message"]["id"], 5);

    // transmit: only the caller.
    d.send(json!({"op":"perform","c":"r2","identifier":room,"action":"echo","data":{"n":1}}))
        .await;
    let got = cable_received(&mut d, "r2", &room, |m| m["event"] == "echo").await;
    assert_eq!(
        got,
        json!({"event": "echo", "data": {"n": 1}, "member": "m2"})
    );
    let rest = d.collect(Duration::from_millis(300)).await;
    assert!(
        !rest
            .iter()
            .any(|v| v["c"] == "r1" && v["ev"] == "received" && v["data"]["event"] == "echo"),
        "echo leaked: {rest:?}"
    );

    // Unsubscribe reaches the server (no reply on the wire).
    d.send(json!({"op":"unsubscribe","c":"r2","identifier":room}))
        .await;
    let id_str = room.to_string();
    let mut seen = false;
    for _ in 0..50 {
        if s.events().await.iter().any(|e| {
            e["type"] == "unsubscribed" && e["member"] == "m2" && e["identifier"] == id_str.as_str()
        }) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "unsubscribe not seen by the server");
}

/// reject_subscription: a forbidden room and a channel that always rejects.
async fn rejections(s: &Cable) {
    let mut d = Driver::cable().await;
    let mut cmd = s.connect_cmd("x", Some(CABLE_TOKEN_M3));
    cmd["frames"] = json!(true);
    d.send(cmd).await;
    cable_connected(&mut d, "x").await;
    for id in [
        json!({"channel": "Chats::RoomChannel", "id": "forbidden"}),
        json!({"channel": "ChatRoomChannel", "id": "forbidden"}),
        json!({"channel": "RejectedRoomChannel"}),
    ] {
        d.send(json!({"op":"subscribe","c":"x","identifier":id}))
            .await;
        let ev = cable_subscription_answer(&mut d, "x", &id).await;
        assert_eq!(ev["ev"], "reject", "{ev}");
    }
    let frame = d
        .expect(T, |v| {
            v["c"] == "x"
                && v["ev"] == "frame"
                && v["data"]
                    .as_str()
                    .unwrap_or("")
                    .contains("reject_subscription")
        })
        .await;
    assert_eq!(
        frame["data"],
        r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"forbidden\"}","type":"reject_subscription"}"#
    );
    // The other vendor channels confirm for the same member.
    cable_subscribe(&mut d, "x", json!({"channel": "ChatRoomChannel"})).await;
    let threads = json!({"channel": "Chats::CommunityMemberThreadsChannel"});
    cable_subscribe(&mut d, "x", threads.clone()).await;
    d.send(json!({"op":"perform","c":"x","identifier":threads,"action":"markThreadRead","data":{"chat_thread_id":42}}))
        .await;
    let got = cable_received(&mut d, "x", &threads, |m| m["event"] == "chatThreadRead").await;
    assert_eq!(
        got,
        json!({"event": "chatThreadRead", "chat_thread_id": 42})
    );
}

/// A bad token: the upgrade succeeds, then {"type":"disconnect","reason":"unauthorized",
/// "reconnect":false} and a close; the library does not come back. A missing Origin: HTTP 404 at
/// the upgrade.
async fn unauthorized_and_origin(s: &Cable) {
    let mut d = Driver::cable().await;
    let mut cmd = s.connect_cmd("bad", Some("wrong-token"));
    cmd["frames"] = json!(true);
    d.send(cmd).await;
    d.expect_ev(T, "bad", "open").await;
    let frame = d.expect_ev(T, "bad", "frame").await;
    assert_eq!(
        frame["data"],
        r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
    );
    let gone = d.expect_ev(T, "bad", "disconnected").await;
    assert_eq!(gone["reason"], "unauthorized", "{gone}");
    assert_eq!(gone["reconnect"], false, "{gone}");
    assert_eq!(gone["willAttemptReconnect"], false, "{gone}");
    assert_eq!(gone["code"], 1000, "{gone}");
    let none = d.collect(Duration::from_millis(1500)).await;
    assert!(
        !none
            .iter()
            .any(|v| v["c"] == "bad" && (v["ev"] == "open" || v["ev"] == "connected")),
        "reconnected after unauthorized: {none:?}"
    );

    let mut cmd = s.connect_cmd("noorigin", Some(CABLE_TOKEN_M1));
    cmd["origin"] = Value::Null;
    d.send(cmd).await;
    let ev = d.expect_ev(T, "noorigin", "http_error").await;
    assert_eq!(ev["status"], 404, "{ev}");
    let gone = d.expect_ev(T, "noorigin", "disconnected").await;
    assert_eq!(gone["opened"], false, "{gone}");
    assert_eq!(gone["code"], 1006, "{gone}");
    d.send(json!({"op":"disconnect","c":"noorigin"})).await;

    let mut cmd = s.connect_cmd("foreign", Some(CABLE_TOKEN_M1));
    cmd["origin"] = json!("http://evil.example");
    d.send(cmd).await;
    let ev = d.expect_ev(T, "foreign", "http_error").await;
    assert_eq!(ev["status"], 404, "{ev}");
    d.send(json!({"op":"disconnect","c":"foreign"})).await;

    let events = s.events().await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "unauthorized" && e["token"] == "wrong-token"),
        "{events:?}"
    );
}

/// The token from an Authorization header and from a cookie.
async fn header_and_cookie_auth(s: &Cable) {
    let mut d = Driver::cable().await;
    let mut cmd = s.connect_cmd("hdr", None);
    cmd["headers"] = json!({"Authorization": format!("Bearer {CABLE_TOKEN_M2}")});
    d.send(cmd).await;
    let mut cmd = s.connect_cmd("cookie", None);
    cmd["headers"] = json!({"Cookie": format!("member_token={CABLE_TOKEN_M3}")});
    d.send(cmd).await;
    let mut cmd = s.connect_cmd("proto", None);
    cmd["subprotocols"] = json!([format!("token.{CABLE_TOKEN_M1}")]);
    d.send(cmd).await;
    let id = json!({"channel": "NotificationChannel"});
    for (c, member) in [("hdr", "m2"), ("cookie", "m3"), ("proto", "m1")] {
        cable_connected(&mut d, c).await;
        cable_subscribe(&mut d, c, id.clone()).await;
        d.send(json!({"op":"perform","c":c,"identifier":id,"action":"echo"}))
            .await;
        let got = cable_received(&mut d, c, &id, |m| m["event"] == "echo").await;
        assert_eq!(got["member"], member, "{c}: {got}");
    }
}

/// Server-side disconnects the library recovers from: remote_connections...disconnect(reconnect:
/// true) and ActionCable.server.restart, each followed by a reconnect that re-subscribes; and a
/// remote disconnect with reconnect false that ends it. Own server pinging every 0.5 s so the
/// driver can use a 2 s stale threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_disconnects() {
    let s = start_cable_with(&[("CABLE_BEAT_INTERVAL", "0.5")]);
    let mut d = Driver::cable().await;
    d.send(json!({"op":"config","staleThreshold":2,"reopenDelay":100}))
        .await;
    let mut cmd = s.connect_cmd("m", Some(CABLE_TOKEN_M3));
    cmd["frames"] = json!(true);
    d.send(cmd).await;
    cable_connected(&mut d, "m").await;
    let id = json!({"channel": "NotificationChannel"});
    cable_subscribe(&mut d, "m", id.clone()).await;

    // remote, reconnect true
    let answer = s.disconnect("m3", true).await;
    assert_eq!(answer["reconnect"], true, "{answer}");
    let frame = d
        .expect(T, |v| {
            v["c"] == "m"
                && v["ev"] == "frame"
                && v["data"].as_str().unwrap_or("").contains("disconnect")
        })
        .await;
    assert_eq!(
        frame["data"],
        r#"{"type":"disconnect","reason":"remote","reconnect":true}"#
    );
    let gone = d.expect_ev(T, "m", "disconnected").await;
    assert_eq!(gone["reason"], "remote", "{gone}");
    assert_eq!(gone["reconnect"], true, "{gone}");
    assert_eq!(gone["willAttemptReconnect"], true, "{gone}");
    let sub_gone = d.expect_ev(T, "m", "sub_disconnected").await;
    assert_eq!(sub_gone["willAttemptReconnect"], true, "{sub_gone}");
    let back = d.expect_ev(Duration::from_secs(20), "m", "connected").await;
    assert_eq!(back["reconnected"], true, "{back}");
    let confirm = d.expect_ev(T, "m", "confirm").await;
    assert_eq!(confirm["reconnected"], true, "re-subscribed: {confirm}");
    s.broadcast(
        "notifications:m3",
        json!({"event": "newNotification", "n": 1}),
    )
    .await;
    cable_received(&mut d, "m", &id, |m| m["n"] == 1).await;
    let conns = s.connections().await;
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0]["member"], "m3", "{conns:?}");
    assert_eq!(
        conns[0]["subscriptions"],
        json!([id.to_string()]),
        "{conns:?}"
    );

    // server restart
    s.restart().await;
    let gone = d.expect_ev(T, "m", "disconnected").await;
    assert_eq!(gone["reason"], "server_restart", "{gone}");
    assert_eq!(gone["reconnect"], true, "{gone}");
    assert_eq!(gone["willAttemptReconnect"], true, "{gone}");
    let back = d.expect_ev(Duration::from_secs(20), "m", "connected").await;
    assert_eq!(back["count"], 3, "{back}");
    d.expect_ev(T, "m", "confirm").await;
    s.broadcast(
        "notifications:m3",
        json!({"event": "newNotification", "n": 2}),
    )
    .await;
    cable_received(&mut d, "m", &id, |m| m["n"] == 2).await;

    // remote, reconnect false: gone for good
    d.collect(Duration::ZERO).await; // forget everything so far
    s.disconnect("m3", false).await;
    let gone = d.expect_ev(T, "m", "disconnected").await;
    assert_eq!(gone["reason"], "remote", "{gone}");
    assert_eq!(gone["reconnect"], false, "{gone}");
    assert_eq!(gone["willAttemptReconnect"], false, "{gone}");
    let rest = d.collect(Duration::from_secs(3)).await;
    assert!(
        !rest.iter().any(|v| v["ev"] == "open"),
        "reconnected after reconnect:false: {rest:?}"
    );
    // Left over: the connection closed by the restart. Rails' restart halts the worker pool the
    // old connections hold before their close callbacks run, so they stay listed (and their
    // `disconnect` callback never runs); the last one is gone.
    let conns = s.connections().await;
    assert_eq!(conns.len(), 1, "only the restart's leftover: {conns:?}");
}
