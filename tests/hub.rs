//! The embedded hub (`[route.upstream] dialect = "hub"`) with the real client libraries
//! (`tests/peers`): socket.io-client 4.8 (the health-records guide's code), @stomp/stompjs
//! 7.5, pusher-js 8.6, socketcluster-client 20 and @rails/actioncable 8.1, all on one hub,
//! each receiving the others' messages byte for byte; presence with two users; private
//! channels refused without authorization and accepted with it; the shipped `config.toml`
//! run as the README says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

/// Every dialect on the hub (the shipped config's shape), each route closed by `extra`.
const ALL: &[&str] = &[
    "stomp",
    "socketio",
    "pusher",
    "socketcluster",
    "actioncable",
];

/// One listener, a route per dialect, all on the hub.
fn config(port: u16) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\n{}",
        free_port(),
        hub_routes(port, ALL, "")
    )
}

struct Clients {
    sio: Driver,
    stomp: Driver,
    pusher: Driver,
    sc: Driver,
    cable: Driver,
}

async fn connect_all(port: u16) -> Clients {
    let url = format!("http://127.0.0.1:{port}");
    let mut sio = Driver::sio().await;
    for c in ["a", "b"] {
        sio.send(json!({"op":"connect","c":c,"url":url,"transports":["websocket"]}))
            .await;
        sio.expect_ev(T, c, "connect").await;
    }
    let stomp = Driver::stomp_connected(
        json!({"op":"connect","c":"s","url":format!("ws://127.0.0.1:{port}/ws")}),
    )
    .await;
    let mut stomp = stomp;
    stomp
        .send(json!({"op":"subscribe","c":"s","id":"sub-0","destination":"/topic/message_created"}))
        .await;
    let mut pusher = Driver::spawn("pusher_driver.js").await;
    pusher.send(pusher_connect_cmd("p", port)).await;
    pusher
        .send(json!({"op":"subscribe","c":"p","channel":"message_created"}))
        .await;
    pusher
        .expect(T, |v| v["c"] == "p" && v["ev"] == "subscription_succeeded")
        .await;
    let mut sc = Driver::spawn("sc_driver.js").await;
    sc.send(json!({"op":"connect","c":"k","port":port,"version":20}))
        .await;
    sc.expect_ev(T, "k", "connect").await;
    sc.send(json!({"op":"subscribe","c":"k","channel":"message_created"}))
        .await;
    sc.expect_ev(T, "k", "subscribe").await;
    let mut cable = Driver::spawn("cable_driver.js").await;
    cable
        .send(json!({"op":"connect","c":"r","url":format!("ws://127.0.0.1:{port}/cable")}))
        .await;
    cable.expect_ev(T, "r", "connected").await;
    cable
        .send(json!({"op":"subscribe","c":"r","identifier":{"channel":"message_created"}}))
        .await;
    cable.expect_ev(T, "r", "confirm").await;
    // The STOMP subscription is in place once a publish of its own comes back.
    stomp
        .send(json!({"op":"send","c":"s","destination":"/topic/message_created","body":"\"ping\"","headers":{"content-type":"application/json"}}))
        .await;
    stomp.expect_ev(T, "s", "message").await;
    let mut c = Clients {
        sio,
        stomp,
        pusher,
        sc,
        cable,
    };
    // Everyone heard that ping; forget it.
    c.drain_ping().await;
    c
}

impl Clients {
    async fn drain_ping(&mut self) {
        let is_ping = |v: &Value| v.to_string().contains("ping");
        for c in ["a", "b"] {
            self.sio
                .expect(T, |v| v["c"] == c && v["ev"] == "event" && is_ping(v))
                .await;
        }
        self.pusher
            .expect(T, |v| v["ev"] == "event" && is_ping(v))
            .await;
        self.sc
            .expect(T, |v| v["ev"] == "channel" && is_ping(v))
            .await;
        self.cable
            .expect(T, |v| v["ev"] == "received" && is_ping(v))
            .await;
    }

    /// Every client (but `except`) hears `m` under event `event`, byte for byte where its
    /// library shows the wire.
    async fn all_hear(&mut self, m: &Value, event: &str, except: &[&str]) {
        let wire = serde_json::to_string(m).unwrap();
        self.all_hear_wire(m, &wire, event, except).await
    }

    /// [`Clients::all_hear`] where the sender's library wrote `wire` for `m`.
    async fn all_hear_wire(&mut self, m: &Value, wire: &str, event: &str, except: &[&str]) {
        for c in ["a", "b"] {
            if except.contains(&c) {
                continue;
            }
            let v = self
                .sio
                .expect(T, |v| {
                    v["c"] == c && v["ev"] == "event" && v["args"][0]["id"] == m["id"]
                })
                .await;
            assert_eq!(v["event"], event, "{v}");
            assert_eq!(v["args"], json!([m]), "{v}");
        }
        if !except.contains(&"s") {
            let v = self
                .stomp
                .expect(T, |v| v["c"] == "s" && v["ev"] == "message")
                .await;
            assert_eq!(v["body"], json!(wire), "STOMP body byte for byte: {v}");
            assert_eq!(v["destination"], "/topic/message_created");
        }
        if !except.contains(&"p") {
            let v = self
                .pusher
                .expect(T, |v| v["c"] == "p" && v["ev"] == "event")
                .await;
            assert_eq!(v["channel"], "message_created", "{v}");
            assert_eq!(v["event"], event, "{v}");
            assert_eq!(v["data"], *m, "{v}");
            if let Some(raw) = v["rawData"].as_str() {
                assert_eq!(raw, wire, "Pusher data string byte for byte: {v}");
            }
        }
        if !except.contains(&"k") {
            let v = self
                .sc
                .expect(T, |v| v["c"] == "k" && v["ev"] == "channel")
                .await;
            assert_eq!(v["data"], *m, "{v}");
        }
        if !except.contains(&"r") {
            let v = self
                .cable
                .expect(T, |v| v["c"] == "r" && v["ev"] == "received")
                .await;
            assert_eq!(v["data"], *m, "{v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_on_one_hub() {
    let port = free_port();
    let proxy = Proxy::start(&config(port)).await;
    let mut c = connect_all(port).await;

    // The health-records guide: emit `message_created`, `socket.on('message_created')`.
    // Socket.IO clients hear it as `io.emit` (the sender too); every subscriber of the
    // channel in every dialect hears it.
    let m1 = guide_message(1, "socket.io");
    c.sio
        .send(json!({"op":"emit","c":"a","event":"message_created","args":[m1]}))
        .await;
    c.all_hear(&m1, "message_created", &[]).await;

    // STOMP SEND to the topic: the sender's own subscription hears it too.
    let m2 = guide_message(2, "stomp");
    c.stomp
        .send(json!({"op":"send","c":"s","destination":"/topic/message_created","body":serde_json::to_string(&m2).unwrap(),"headers":{"content-type":"application/json"}}))
        .await;
    c.all_hear(&m2, "message_created", &[]).await;

    // A SocketCluster publish.
    let m3 = guide_message(3, "socketcluster");
    c.sc.send(json!({"op":"publish","c":"k","channel":"message_created","data":m3}))
        .await;
    c.all_hear(&m3, "message_created", &[]).await;

    // An Action Cable `perform`: the action is the event name; Rails puts the action in the
    // data too, which is what the others receive.
    let mut m4 = guide_message(4, "actioncable");
    c.cable
        .send(json!({"op":"perform","c":"r","identifier":{"channel":"message_created"},"action":"message_created","data":m4}))
        .await;
    let wire = serde_json::to_string(&m4).unwrap();
    // @rails/actioncable adds the action after the data's own keys.
    let wire = format!(
        "{},\"action\":\"message_created\"}}",
        &wire[..wire.len() - 1]
    );
    m4["action"] = json!("message_created");
    c.all_hear_wire(&m4, &wire, "message_created", &[]).await;

    // Nothing else arrived: one delivery per subscriber per publish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = |d: &mut Driver, ev: &str| {
        d.backlog()
            .iter()
            .filter(|v| v["ev"] == ev)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        extra(&mut c.sio, "event").is_empty(),
        "{:?}",
        c.sio.backlog()
    );
    assert!(extra(&mut c.stomp, "message").is_empty());
    assert!(extra(&mut c.pusher, "event").is_empty());
    assert!(extra(&mut c.sc, "channel").is_empty());
    assert!(extra(&mut c.cable, "received").is_empty());

    let metrics = proxy.metrics().await;
    for name in [
        "switchboard_hub_channels",
        "switchboard_hub_subscribers",
        "switchboard_hub_publishes_total",
        "switchboard_hub_deliveries_total",
        "switchboard_hub_presence_members",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    // 5 publishes (the ping and four messages), each reaching 6 connections.
    assert_eq!(
        proxy.metric("switchboard_hub_publishes_total").await,
        Some(5.0)
    );
    assert_eq!(
        proxy.metric("switchboard_hub_deliveries_total").await,
        Some(30.0)
    );
    assert_eq!(proxy.metric("switchboard_hub_channels").await, Some(1.0));
    // STOMP, Pusher, SC and Action Cable subscribe; Socket.IO clients hear everything.
    assert_eq!(proxy.metric("switchboard_hub_subscribers").await, Some(4.0));
}

/// Pusher client events go to the other subscribers of the private channel and never back
/// to the sender; publishes confirmed (a SocketCluster publish with a callback) are
/// confirmed once the hub took them, with no data invented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_client_events_and_confirmations() {
    let port = free_port();
    let _proxy = Proxy::start(&config(port)).await;
    let mut p = Driver::spawn("pusher_driver.js").await;
    for c in ["p1", "p2"] {
        p.send(pusher_connect_cmd(c, port)).await;
        p.send(json!({"op":"subscribe","c":c,"channel":"private-chat"}))
            .await;
        p.expect(T, |v| v["c"] == c && v["ev"] == "subscription_succeeded")
            .await;
    }
    let m = guide_message(7, "pusher");
    p.send(
        json!({"op":"trigger","c":"p1","channel":"private-chat","event":"client-message","data":m}),
    )
    .await;
    let v = p.expect(T, |v| v["c"] == "p2" && v["ev"] == "event").await;
    assert_eq!(v["event"], "client-message");
    assert_eq!(v["data"], m);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !p.backlog()
            .iter()
            .any(|v| v["c"] == "p1" && v["ev"] == "event"),
        "a Pusher client event is not echoed: {:?}",
        p.backlog()
    );

    let mut sc = Driver::spawn("sc_driver.js").await;
    sc.send(json!({"op":"connect","c":"k","port":port,"version":20}))
        .await;
    sc.expect_ev(T, "k", "connect").await;
    sc.send(json!({"op":"publish","c":"k","channel":"news","data":{"n":1},"reqId":1}))
        .await;
    let ack = sc.expect_ev(T, "k", "ack").await;
    assert_eq!(ack["error"], Value::Null, "{ack}");
    assert_eq!(ack["data"], Value::Null, "{ack}");

    // A Socket.IO emit with an ack: answered with no arguments (the hub has no application
    // to answer with).
    let mut sio = Driver::sio().await;
    sio.send(json!({"op":"connect","c":"a","url":format!("http://127.0.0.1:{port}"),"transports":["websocket"]}))
        .await;
    sio.expect_ev(T, "a", "connect").await;
    sio.send(json!({"op":"emit","c":"a","event":"news","args":[{"n":2}],"ack":true,"reqId":"r"}))
        .await;
    let ack = sio.expect_ev(T, "a", "ack").await;
    assert_eq!(ack["args"], json!([]), "{ack}");
    assert!(ack.get("err").is_none(), "{ack}");

    // A STOMP SEND with a receipt: RECEIPT once the hub took it.
    let mut stomp = Driver::stomp_connected(
        json!({"op":"connect","c":"s","url":format!("ws://127.0.0.1:{port}/ws")}),
    )
    .await;
    stomp
        .send(json!({"op":"send","c":"s","destination":"/app/news","body":"{}","headers":{"receipt":"r-1","content-type":"application/json"}}))
        .await;
    let r = stomp.expect_ev(T, "s", "receipt").await;
    assert_eq!(r["id"], "r-1");
}

/// `presence-` channels: member_added only for a user's first connection and never to the
/// joiner; member_removed when the user's last connection leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_with_two_users() {
    let port = free_port();
    let proxy = Proxy::start(&config(port)).await;
    let mut p = Driver::spawn("pusher_driver.js").await;
    let join = |c: &str, user: &str| {
        let mut cmd = pusher_connect_cmd(c, port);
        cmd["userId"] = json!(user);
        cmd["userInfo"] = json!({"name": format!("{user} ✓")});
        cmd
    };
    p.send(join("ann1", "ann")).await;
    p.send(json!({"op":"subscribe","c":"ann1","channel":"presence-room"}))
        .await;
    let s = p
        .expect(T, |v| {
            v["c"] == "ann1" && v["ev"] == "subscription_succeeded"
        })
        .await;
    assert_eq!(s["count"], 1, "{s}");

    p.send(join("bob1", "bob")).await;
    p.send(json!({"op":"subscribe","c":"bob1","channel":"presence-room"}))
        .await;
    let s = p
        .expect(T, |v| {
            v["c"] == "bob1" && v["ev"] == "subscription_succeeded"
        })
        .await;
    assert_eq!(s["count"], 2, "{s}");
    assert_eq!(s["members"]["ann"], json!({"name": "ann ✓"}), "{s}");
    assert_eq!(s["members"]["bob"], json!({"name": "bob ✓"}), "{s}");
    let a = p
        .expect(T, |v| v["c"] == "ann1" && v["ev"] == "member_added")
        .await;
    assert_eq!(a["id"], "bob");
    assert_eq!(a["info"], json!({"name": "bob ✓"}));
    assert_eq!(
        proxy.metric("switchboard_hub_presence_members").await,
        Some(2.0)
    );

    // Bob's second connection: nobody hears of it.
    p.send(join("bob2", "bob")).await;
    p.send(json!({"op":"subscribe","c":"bob2","channel":"presence-room"}))
        .await;
    p.expect(T, |v| {
        v["c"] == "bob2" && v["ev"] == "subscription_succeeded"
    })
    .await;
    p.send(json!({"op":"disconnect","c":"bob2"})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !p.backlog()
            .iter()
            .any(|v| v["ev"] == "member_added" || v["ev"] == "member_removed"),
        "{:?}",
        p.backlog()
    );
    // Bob's last connection leaves: Ann hears it.
    p.send(json!({"op":"disconnect","c":"bob1"})).await;
    let r = p
        .expect(T, |v| v["c"] == "ann1" && v["ev"] == "member_removed")
        .await;
    assert_eq!(r["id"], "bob");
    assert_eq!(r["count"], 1);
    assert_eq!(
        proxy.metric("switchboard_hub_presence_members").await,
        Some(1.0)
    );
}

/// A private channel is refused without authorization (a forged Pusher signature, a STOMP or
/// SocketCluster client without a verified identity) and accepted with it, and its messages
/// never reach a Socket.IO client that hears every public channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_channels_need_authorization() {
    let port = free_port();
    let _proxy = Proxy::start(&config(port)).await;
    let mut p = Driver::spawn("pusher_driver.js").await;
    p.send(pusher_connect_cmd("forger", port)).await;
    p.send(json!({"op":"subscribe","c":"forger","channel":"private-x","forgeAuth":true}))
        .await;
    let e = p
        .expect(T, |v| v["c"] == "forger" && v["ev"] == "subscription_error")
        .await;
    assert_eq!(e["type"], "AuthError", "{e}");
    for c in ["p1", "p2"] {
        p.send(pusher_connect_cmd(c, port)).await;
        p.send(json!({"op":"subscribe","c":c,"channel":"private-x"}))
            .await;
        p.expect(T, |v| v["c"] == c && v["ev"] == "subscription_succeeded")
            .await;
    }

    let mut sc = Driver::spawn("sc_driver.js").await;
    sc.send(json!({"op":"connect","c":"k","port":port,"version":20}))
        .await;
    sc.expect_ev(T, "k", "connect").await;
    sc.send(json!({"op":"subscribe","c":"k","channel":"private-x"}))
        .await;
    sc.expect_ev(T, "k", "subscribeFail").await;

    let mut stomp = Driver::stomp_connected(
        json!({"op":"connect","c":"s","url":format!("ws://127.0.0.1:{port}/ws")}),
    )
    .await;
    stomp
        .send(json!({"op":"subscribe","c":"s","id":"sub-0","destination":"/topic/private-x"}))
        .await;
    let err = stomp.expect_ev(T, "s", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("authorization"),
        "{err}"
    );

    let mut sio = Driver::sio().await;
    sio.send(json!({"op":"connect","c":"a","url":format!("http://127.0.0.1:{port}"),"transports":["websocket"]}))
        .await;
    sio.expect_ev(T, "a", "connect").await;
    p.send(json!({"op":"trigger","c":"p1","channel":"private-x","event":"client-secret","data":{"s":1}}))
        .await;
    let v = p.expect(T, |v| v["c"] == "p2" && v["ev"] == "event").await;
    assert_eq!(v["data"], json!({"s":1}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leaked = sio.collect(Duration::from_millis(100)).await;
    assert!(
        !leaked.iter().any(|v| v["ev"] == "event"),
        "private messages reach no unauthorized client: {leaked:?}"
    );
}

/// The JavaScript snippets of the README's "Try it" section, in order.
fn try_it_snippets() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_dir().join("README.md")).unwrap();
    let section = readme
        .split("\n## Try it\n")
        .nth(1)
        .expect("README has a Try it section");
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```js\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_owned())
        .collect()
}

/// The binary started with the shipped `config.toml` as the README says (moved off 8080 and
/// 9090 by `SWITCHBOARD_LISTEN` and `SWITCHBOARD_ADMIN__LISTEN`, which the README documents
/// for a taken port), and the README's "Try it" snippets run as they are (only the port,
/// and socketcluster-client 20 under its test alias, substituted), listeners first: each
/// hears what every client started after it published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_config_try_it() {
    let port = free_port();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--config", "config.toml"])
        .current_dir(repo_dir());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_ADMIN__LISTEN", admin.to_string())
        .env("NO_COLOR", "1");
    let mut proxy = Child::spawn("switchboard-shipped", cmd);
    proxy.discard_lines();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !matches!(http_get(admin, "/readyz").await, Ok((200, _))) {
        assert!(
            std::time::Instant::now() < deadline && proxy.try_wait().is_none(),
            "the shipped config did not start; log:\n{}",
            proxy.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let snippets = try_it_snippets();
    assert_eq!(snippets.len(), 5, "five libraries in Try it");
    let name_of = |s: &str| {
        [
            "socket.io-client",
            "@stomp/stompjs",
            "pusher-js",
            "socketcluster-client",
            "@rails/actioncable",
        ]
        .into_iter()
        .find(|m| s.contains(&format!("require('{m}')")))
        .unwrap()
    };
    // What each snippet publishes (the Pusher one only listens).
    let says = |lib: &str| match lib {
        "socket.io-client" => Some("hello from socket.io"),
        "@stomp/stompjs" => Some("hello from stomp"),
        "socketcluster-client" => Some("hello from socketcluster"),
        "@rails/actioncable" => Some("hello from rails"),
        _ => None,
    };
    // Listeners first: the Pusher snippet, then the others in README order.
    let mut order: Vec<&String> = snippets
        .iter()
        .filter(|s| name_of(s) == "pusher-js")
        .collect();
    order.extend(snippets.iter().filter(|s| name_of(s) != "pusher-js"));
    ensure_npm();
    // Each snippet starts once the one before is listening: the Pusher one has subscribed,
    // each publisher's own publish went through (it subscribed before it published).
    let metric = |name: &'static str| async move {
        let body = http_get(admin, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();
        body.lines()
            .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let wait_for = |name: &'static str, want: f64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while metric(name).await < want {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never reached {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut running = Vec::new();
    let mut published = 0.0;
    for s in order {
        let lib = name_of(s);
        let code = s
            .replace("8080", &port.to_string())
            .replace("require('socketcluster-client')", "require('sc-client-20')");
        let mut cmd = std::process::Command::new("node");
        cmd.arg("-e").arg(code).current_dir(peers_dir());
        running.push((
            lib,
            Child::spawn(&format!("try-it-{}", lib.replace('/', "-")), cmd),
        ));
        if says(lib).is_some() {
            published += 1.0;
            wait_for("switchboard_hub_publishes_total", published).await;
        } else {
            wait_for("switchboard_hub_subscribers", 1.0).await;
        }
    }
    let libs: Vec<&str> = running.iter().map(|(l, _)| *l).collect();
    for (i, (lib, child)) in running.iter_mut().enumerate() {
        let mut printed = String::new();
        for later in &libs[i..] {
            let Some(text) = says(later) else { continue };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !printed.contains(text) && std::time::Instant::now() < deadline {
                if let Some(l) = child.next_line(Duration::from_millis(200)).await {
                    printed.push_str(&l);
                    printed.push('\n');
                }
            }
            assert!(
                printed.contains(text),
                "{lib} did not print {text:?} (from {later}):\n{printed}\nlog:\n{}",
                child.log_tail(20)
            );
        }
    }
    let metrics = http_get(admin, "/metrics").await.unwrap().1;
    assert!(
        metrics.contains("switchboard_hub_publishes_total 4"),
        "{metrics}"
    );
}

/// Routes on the hub behind edge authentication: a STOMP and a SocketCluster route with
/// `[route.auth]` (HS256), and the Pusher route without it.
fn config_with_auth(port: u16) -> String {
    let auth = "[route.auth]\nalgorithm = \"HS256\"\nsecret = \"hub-edge-secret\"\n";
    format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\n{}{}",
        free_port(),
        hub_routes(port, &["stomp", "socketcluster"], auth),
        hub_routes(port, &["socketio", "pusher", "actioncable"], "")
    )
}

/// Private and presence channels for dialects without Pusher signatures: a verified JWT's
/// `channels` claim (patterns) authorizes them, its `sub` and `info` are the presence member;
/// a forged JWT is refused at the edge, before the hub sees the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_presence_channels_with_an_edge_identity() {
    let port = free_port();
    let _proxy = Proxy::start(&config_with_auth(port)).await;
    let claims = |sub: &str| {
        json!({"sub": sub, "info": {"name": format!("{sub} ✓")},
               "channels": ["private-team-*", "presence-room"]})
    };
    let alice = jwt_claims(&claims("alice"), "hub-edge-secret", Some("1h"));
    let bob = jwt_claims(&claims("bob"), "hub-edge-secret", Some("1h"));
    let url = format!("ws://127.0.0.1:{port}/ws");

    // A Pusher presence member (signed channel_data) watches who joins.
    let mut p = Driver::spawn("pusher_driver.js").await;
    let mut cmd = pusher_connect_cmd("carol", port);
    cmd["userId"] = json!("carol");
    cmd["userInfo"] = json!({"name": "carol"});
    p.send(cmd).await;
    p.send(json!({"op":"subscribe","c":"carol","channel":"presence-room"}))
        .await;
    p.expect(T, |v| {
        v["c"] == "carol" && v["ev"] == "subscription_succeeded"
    })
    .await;

    // STOMP: the token as passcode; a granted private channel, a presence channel, and one
    // the token does not list.
    let mut s = Driver::stomp_connected(
        json!({"op":"connect","c":"a","url":url,"headers":{"Authorization":format!("Bearer {alice}")}}),
    )
    .await;
    s.send(
        json!({"op":"subscribe","c":"a","id":"t","destination":"/topic/private-team-1",
        "headers":{"receipt":"r-t"}}),
    )
    .await;
    s.expect(T, |v| {
        v["c"] == "a" && v["ev"] == "receipt" && v["id"] == "r-t"
    })
    .await;
    s.send(
        json!({"op":"subscribe","c":"a","id":"p","destination":"/topic/presence-room",
        "headers":{"receipt":"r-p"}}),
    )
    .await;
    s.expect(T, |v| {
        v["c"] == "a" && v["ev"] == "receipt" && v["id"] == "r-p"
    })
    .await;
    let added = p
        .expect(T, |v| v["c"] == "carol" && v["ev"] == "member_added")
        .await;
    assert_eq!(added["id"], "alice", "{added}");
    assert_eq!(added["info"], json!({"name": "alice ✓"}), "{added}");

    // SocketCluster: the token in #handshake; publishes on the private channel reach STOMP.
    let mut sc = Driver::spawn("sc_driver.js").await;
    sc.send(json!({"op":"connect","c":"b","port":port,"version":20,"authToken":bob}))
        .await;
    sc.expect_ev(T, "b", "connect").await;
    sc.send(json!({"op":"subscribe","c":"b","channel":"private-team-1"}))
        .await;
    sc.expect_ev(T, "b", "subscribe").await;
    sc.send(json!({"op":"subscribe","c":"b","channel":"private-elsewhere"}))
        .await;
    sc.expect_ev(T, "b", "subscribeFail").await;
    sc.send(json!({"op":"publish","c":"b","channel":"private-team-1","data":{"ü":[1,{"x":null}]}}))
        .await;
    let m = s
        .expect(T, |v| {
            v["c"] == "a" && v["ev"] == "message" && v["sub"] == "t"
        })
        .await;
    assert_eq!(m["body"], r#"{"ü":[1,{"x":null}]}"#, "{m}");

    // Not listed in the token: refused in STOMP's words, the session ends.
    s.send(json!({"op":"subscribe","c":"a","id":"x","destination":"/topic/private-other"}))
        .await;
    let err = s.expect_ev(T, "a", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("authorization"),
        "{err}"
    );
    // Alice's only connection is gone: she leaves the presence channel.
    let removed = p
        .expect(T, |v| v["c"] == "carol" && v["ev"] == "member_removed")
        .await;
    assert_eq!(removed["id"], "alice", "{removed}");

    // A forged token never reaches the hub.
    let forged = jwt_claims(&claims("mallory"), "not-the-secret", Some("1h"));
    let mut f = Driver::stomp().await;
    f.send(json!({"op":"connect","c":"m","url":url,"headers":{"passcode":forged}}))
        .await;
    let err = f.expect_ev(T, "m", "error").await;
    assert!(
        err["headers"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("unauthorized"),
        "{err}"
    );
}
