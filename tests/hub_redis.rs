//! The hub across instances (`[hub] redis_url`): two Switchboard processes (the real binary,
//! each with its own listener) on one Debian `redis-server`, driven by the real client
//! libraries (`tests/peers`: socket.io-client, @stomp/stompjs, pusher-js). Publishes cross
//! both ways; presence counts a user once across instances; a SIGKILLed instance's members
//! are removed on the other within the bound; losing Redis shows on `/readyz` and in the
//! metrics while local delivery goes on, and cross-instance delivery comes back with Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);
/// `[hub] instance_ttl_ms` of the test configs: a dead instance's members go within 4/3 of it.
const TTL_MS: u64 = 1500;

/// One instance: STOMP, Socket.IO and Pusher routes on the hub, the hub on `redis`.
fn config(port: u16, redis: &Redis) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\n\n[hub]\nredis_url = \"{}\"\ninstance_ttl_ms = {TTL_MS}\n{}",
        free_port(),
        redis.url(),
        hub_routes(port, &["stomp", "socketio", "pusher"], "")
    )
}

/// Two instances on one Redis: (proxy, port) each.
async fn two_instances(redis: &Redis) -> ((Proxy, u16), (Proxy, u16)) {
    let (pa, pb) = (free_port(), free_port());
    let a = Proxy::start(&config(pa, redis)).await;
    let b = Proxy::start(&config(pb, redis)).await;
    ((a, pa), (b, pb))
}

async fn sio_connect(d: &mut Driver, c: &str, port: u16) {
    d.send(json!({"op":"connect","c":c,"url":format!("http://127.0.0.1:{port}"),"transports":["websocket"]}))
        .await;
    d.expect_ev(T, c, "connect").await;
}

/// Socket.IO client `c` hears `m` (by id) as `message_created`.
async fn sio_hears(d: &mut Driver, c: &str, m: &Value) {
    let v = d
        .expect(T, |v| {
            v["c"] == c && v["ev"] == "event" && v["args"][0]["id"] == m["id"]
        })
        .await;
    assert_eq!(v["event"], "message_created", "{v}");
    assert_eq!(v["args"], json!([m]), "{v}");
}

/// No event of client `c` carrying message id `id` arrives within `dur`.
async fn never_hears(d: &mut Driver, c: &str, id: u64, dur: Duration) {
    let got = d
        .try_expect(dur, |v| {
            v["c"] == c && v["ev"] == "event" && v["args"][0]["id"] == id
        })
        .await;
    assert!(got.is_none(), "{c} heard message {id}: {got:?}");
}

async fn readyz(p: &Proxy) -> (u16, String) {
    http_get(p.admin_addr(), "/readyz")
        .await
        .unwrap_or((0, String::new()))
}

/// Polls `/readyz` until its status is `status`; returns the body.
async fn wait_readyz(p: &Proxy, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (s, body) = readyz(p).await;
        if s == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {s} ({body:?}), wanted {status}; log {}:\n{}",
            p.log_path().display(),
            tail(p.log_path(), 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes cross both ways, between dialects, and nobody hears a publish twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_subscribers_on_every_instance() {
    let redis = start_redis();
    let ((a, pa), (b, pb)) = two_instances(&redis).await;
    let mut sio = Driver::sio().await;
    sio_connect(&mut sio, "a", pa).await;
    sio_connect(&mut sio, "b", pb).await;
    let mut stomp = Driver::stomp_connected(
        json!({"op":"connect","c":"s","url":format!("ws://127.0.0.1:{pb}/ws")}),
    )
    .await;
    stomp
        .send(json!({"op":"subscribe","c":"s","id":"sub-0","destination":"/topic/message_created"}))
        .await;
    // The subscription is in place once a publish of its own comes back.
    stomp
        .send(json!({"op":"send","c":"s","destination":"/topic/message_created","body":"{\"id\":0}","headers":{"content-type":"application/json"}}))
        .await;
    stomp.expect_ev(T, "s", "message").await;
    let zero = json!({"id": 0});
    sio_hears(&mut sio, "a", &zero).await;
    sio_hears(&mut sio, "b", &zero).await;

    // A (Socket.IO) → B (Socket.IO and STOMP), and the sender hears its own io.emit once.
    let m1 = guide_message(1, "a");
    sio.send(json!({"op":"emit","c":"a","event":"message_created","args":[m1]}))
        .await;
    sio_hears(&mut sio, "a", &m1).await;
    sio_hears(&mut sio, "b", &m1).await;
    let v = stomp.expect_ev(T, "s", "message").await;
    assert_eq!(
        v["body"],
        json!(serde_json::to_string(&m1).unwrap()),
        "STOMP body byte for byte across instances: {v}"
    );

    // B (Socket.IO) → A.
    let m2 = guide_message(2, "b");
    sio.send(json!({"op":"emit","c":"b","event":"message_created","args":[m2]}))
        .await;
    sio_hears(&mut sio, "a", &m2).await;
    sio_hears(&mut sio, "b", &m2).await;
    stomp.expect_ev(T, "s", "message").await;

    // Nothing twice: an instance never delivers its own publish again from Redis.
    never_hears(&mut sio, "a", 1, Duration::from_millis(300)).await;
    never_hears(&mut sio, "b", 1, Duration::ZERO).await;
    never_hears(&mut sio, "a", 2, Duration::ZERO).await;
    never_hears(&mut sio, "b", 2, Duration::ZERO).await;
    assert!(
        stomp
            .try_expect(Duration::from_millis(300), |v| v["ev"] == "message")
            .await
            .is_none(),
        "{:?}",
        stomp.backlog()
    );

    for p in [&a, &b] {
        assert_eq!(p.metric("switchboard_hub_redis_up").await, Some(1.0));
        assert_eq!(
            p.metric("switchboard_hub_redis_reconnects_total").await,
            Some(0.0)
        );
    }
    // A received B's publishes (the ping and m2) and B received A's (m1).
    assert_eq!(
        a.metric("switchboard_hub_redis_received_total").await,
        Some(2.0)
    );
    assert_eq!(
        b.metric("switchboard_hub_redis_received_total").await,
        Some(1.0)
    );
}

fn join(c: &str, user: &str, port: u16) -> Value {
    let mut cmd = pusher_connect_cmd(c, port);
    cmd["userId"] = json!(user);
    cmd["userInfo"] = json!({"name": format!("{user} ✓")});
    cmd
}

async fn presence_subscribed(p: &mut Driver, c: &str) -> Value {
    p.send(json!({"op":"subscribe","c":c,"channel":"presence-room"}))
        .await;
    p.expect(T, |v| v["c"] == c && v["ev"] == "subscription_succeeded")
        .await
}

/// pusher-js presence across instances: snapshots hold the other instance's members, a user
/// counts once wherever their connections are, and a SIGKILLed instance's members are
/// removed on the other within `instance_ttl_ms * 4 / 3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_and_a_dead_instance_leaves() {
    let redis = start_redis();
    let ((a, pa), (mut b, pb)) = two_instances(&redis).await;
    let mut p = Driver::spawn("pusher_driver.js").await;

    p.send(join("ann", "ann", pa)).await;
    let s = presence_subscribed(&mut p, "ann").await;
    assert_eq!(s["count"], 1, "{s}");

    // Bob on B: his snapshot holds Ann (on A); Ann hears him join.
    p.send(join("bob1", "bob", pb)).await;
    let s = presence_subscribed(&mut p, "bob1").await;
    assert_eq!(s["count"], 2, "{s}");
    assert_eq!(s["members"]["ann"], json!({"name": "ann ✓"}), "{s}");
    assert_eq!(s["members"]["bob"], json!({"name": "bob ✓"}), "{s}");
    let v = p
        .expect(T, |v| v["c"] == "ann" && v["ev"] == "member_added")
        .await;
    assert_eq!(v["id"], "bob");
    assert_eq!(v["info"], json!({"name": "bob ✓"}));

    // Bob's second connection, on A: counted once, nobody hears of it.
    p.send(join("bob2", "bob", pa)).await;
    let s = presence_subscribed(&mut p, "bob2").await;
    assert_eq!(s["count"], 2, "{s}");
    // Bob leaves B but is still on A: nobody hears he left.
    p.send(json!({"op":"disconnect","c":"bob1"})).await;
    let quiet = p.collect(Duration::from_millis(500)).await;
    assert!(
        !quiet
            .iter()
            .any(|v| v["ev"] == "member_added" || v["ev"] == "member_removed"),
        "{quiet:?}"
    );
    // Bob's last connection anywhere leaves: Ann hears it.
    p.send(json!({"op":"disconnect","c":"bob2"})).await;
    let v = p
        .expect(T, |v| v["c"] == "ann" && v["ev"] == "member_removed")
        .await;
    assert_eq!(v["id"], "bob");
    assert_eq!(v["count"], 1);

    // Carl on B; B dies without a word (SIGKILL).
    p.send(join("carl", "carl", pb)).await;
    let s = presence_subscribed(&mut p, "carl").await;
    assert_eq!(s["count"], 2, "{s}");
    p.expect(T, |v| {
        v["c"] == "ann" && v["ev"] == "member_added" && v["id"] == "carl"
    })
    .await;
    assert!(b.child().signal("KILL"));
    let killed = Instant::now();
    b.wait_exit(T).await.expect("B exits on SIGKILL");
    let bound = Duration::from_millis(TTL_MS * 4 / 3);
    let v = p
        .expect(bound + Duration::from_secs(2), |v| {
            v["c"] == "ann" && v["ev"] == "member_removed"
        })
        .await;
    let took = killed.elapsed();
    assert_eq!(v["id"], "carl");
    assert_eq!(v["count"], 1);
    // The bound, plus what the delivery to a node client takes on a loaded machine.
    assert!(
        took <= bound + Duration::from_millis(1000),
        "removed after {took:?}, bound {bound:?}"
    );
    eprintln!("dead instance's member removed after {took:?} (bound {bound:?})");
    assert_eq!(
        a.metric("switchboard_hub_redis_swept_instances_total")
            .await,
        Some(1.0)
    );
    // Ann alone: a new joiner on A sees one member besides themselves.
    p.send(join("dan", "dan", pa)).await;
    let s = presence_subscribed(&mut p, "dan").await;
    assert_eq!(s["count"], 2, "{s}");
    assert!(s["members"].get("carl").is_none(), "{s}");

    // An instance stopped with SIGTERM says goodbye: its members go at once, not after a TTL.
    let pc = free_port();
    let mut c = Proxy::start(&config(pc, &redis)).await;
    p.send(join("fay", "fay", pc)).await;
    let s = presence_subscribed(&mut p, "fay").await;
    assert_eq!(s["count"], 3, "{s}");
    p.expect(T, |v| {
        v["c"] == "ann" && v["ev"] == "member_added" && v["id"] == "fay"
    })
    .await;
    c.terminate();
    let stopped = Instant::now();
    let v = p
        .expect(T, |v| v["c"] == "ann" && v["ev"] == "member_removed")
        .await;
    assert_eq!(v["id"], "fay");
    eprintln!(
        "stopped instance's member removed after {:?}",
        stopped.elapsed()
    );
    assert!(c.wait_exit(T).await.is_some_and(|s| s.success()));
    // C removed its own record (nobody had to sweep it): only A is left in Redis.
    let listed = redis.cli(&["SMEMBERS", "switchboard:instances"]);
    assert_eq!(listed.lines().count(), 1, "{listed:?}");
    assert_eq!(
        redis
            .cli(&["KEYS", "switchboard:members:*"])
            .lines()
            .count(),
        1,
        "A's members only"
    );
    assert_eq!(
        a.metric("switchboard_hub_redis_swept_instances_total")
            .await,
        Some(1.0)
    );
}

/// Redis down: `/readyz` and `switchboard_hub_redis_up` say so, local delivery goes on,
/// nothing crosses; Redis back (empty, on the same port): the instances reconnect and
/// publishes cross again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_keeps_local_delivery_and_recovers() {
    let mut redis = start_redis();
    let ((a, pa), (b, pb)) = two_instances(&redis).await;
    let mut sio = Driver::sio().await;
    sio_connect(&mut sio, "a1", pa).await;
    sio_connect(&mut sio, "a2", pa).await;
    sio_connect(&mut sio, "b", pb).await;
    // Presence members on both sides, to survive the outage.
    let mut p = Driver::spawn("pusher_driver.js").await;
    p.send(join("ann", "ann", pa)).await;
    presence_subscribed(&mut p, "ann").await;
    p.send(join("bob", "bob", pb)).await;
    let s = presence_subscribed(&mut p, "bob").await;
    assert_eq!(s["count"], 2, "{s}");
    p.expect(T, |v| v["c"] == "ann" && v["ev"] == "member_added")
        .await;
    let m1 = guide_message(1, "a1");
    sio.send(json!({"op":"emit","c":"a1","event":"message_created","args":[m1]}))
        .await;
    for c in ["a1", "a2", "b"] {
        sio_hears(&mut sio, c, &m1).await;
    }

    redis.stop();
    let body = wait_readyz(&a, 503, Duration::from_secs(5)).await;
    assert!(body.contains("redis"), "{body}");
    wait_readyz(&b, 503, Duration::from_secs(5)).await;
    assert_eq!(a.metric("switchboard_hub_redis_up").await, Some(0.0));
    let (h, _) = http_get(a.admin_addr(), "/healthz").await.unwrap();
    assert_eq!(h, 200, "alive while Redis is down");

    // Local delivery goes on; nothing crosses.
    let m2 = guide_message(2, "a1");
    sio.send(json!({"op":"emit","c":"a1","event":"message_created","args":[m2]}))
        .await;
    sio_hears(&mut sio, "a1", &m2).await;
    sio_hears(&mut sio, "a2", &m2).await;
    never_hears(&mut sio, "b", 2, Duration::from_millis(300)).await;
    assert!(
        a.metric("switchboard_hub_redis_dropped_total").await >= Some(1.0),
        "the publish was counted as local only"
    );

    redis.start_again();
    wait_readyz(&a, 200, Duration::from_secs(5)).await;
    wait_readyz(&b, 200, Duration::from_secs(5)).await;
    for p in [&a, &b] {
        assert_eq!(p.metric("switchboard_hub_redis_up").await, Some(1.0));
        assert!(p.metric("switchboard_hub_redis_reconnects_total").await >= Some(1.0));
    }
    let m3 = guide_message(3, "b");
    sio.send(json!({"op":"emit","c":"b","event":"message_created","args":[m3]}))
        .await;
    for c in ["b", "a1", "a2"] {
        sio_hears(&mut sio, c, &m3).await;
    }
    let m4 = guide_message(4, "a2");
    sio.send(json!({"op":"emit","c":"a2","event":"message_created","args":[m4]}))
        .await;
    for c in ["a1", "a2", "b"] {
        sio_hears(&mut sio, c, &m4).await;
    }

    // The restarted Redis was empty; each instance wrote its members again, so once the
    // grace and a sweep are over nobody was removed, and a newcomer sees both.
    let quiet = p.collect(Duration::from_millis(TTL_MS * 4 / 3 + 300)).await;
    assert!(
        !quiet
            .iter()
            .any(|v| v["ev"] == "member_added" || v["ev"] == "member_removed"),
        "{quiet:?}"
    );
    p.send(join("cat", "cat", pa)).await;
    let s = presence_subscribed(&mut p, "cat").await;
    assert_eq!(s["count"], 3, "{s}");
    assert_eq!(s["members"]["bob"], json!({"name": "bob ✓"}), "{s}");
}

/// `switchboard check` validates `[hub]`: a good file passes, a `rediss://` URL is refused
/// with its key and line.
#[test]
fn check_validates_the_hub_table() {
    let redis_url = "redis://127.0.0.1:6379/0";
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:9191\"\n\n[hub]\nredis_url = \"{redis_url}\"\ninstance_ttl_ms = 3000\n\n[[route]]\nname = \"s\"\nlisten = \"127.0.0.1:8181\"\nclient = \"stomp\"\n[route.upstream]\ndialect = \"hub\"\n"
    );
    let check = |text: &str| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("check")
            .arg(f.path())
            .env_remove("SWITCHBOARD_HUB__REDIS_URL")
            .output()
            .unwrap()
    };
    let ok = check(&text);
    assert!(ok.status.success(), "{ok:?}");
    let bad = check(&text.replace("redis://", "rediss://"));
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("hub.redis_url") && err.contains("line 5"),
        "{err}"
    );
}
