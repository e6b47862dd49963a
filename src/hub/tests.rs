//! Unit tests of the embedded hub: authorization with constructed identities, fan-out and
//! echo rules, presence membership, and encodes counted per (route, shape).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::dialect::actioncable::server::{CableServer, Settings as CableSettings};
use crate::dialect::stomp::server::{Settings as StompSettings, StompServer};
use crate::dialect::{Handshake, ServerOut, ServerRole, WsMsg};
use crate::frame::{ClientOp, ErrorKind, Identity, SubParams};

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

fn ident(user: Option<&str>, info: Option<&str>, channels: &[&str]) -> Identity {
    Identity {
        user_id: user.map(b),
        user_info: info.map(b),
        channels: channels.iter().map(|c| b(c)).collect(),
    }
}

#[test]
fn public_channels_need_nothing() {
    assert_eq!(
        authorize(b"message_created", &SubParams::default(), None).unwrap(),
        None
    );
}

#[test]
fn private_channels_need_a_signature_or_an_allowing_identity() {
    let none = SubParams::default();
    let e = authorize(b"private-x", &none, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    // An identity whose patterns do not cover the channel.
    let other = ident(Some("u1"), None, &["private-y", "presence-*"]);
    assert!(authorize(b"private-x", &none, Some(&other)).is_err());
    // Patterns allow it.
    let ok = ident(Some("u1"), None, &["private-*"]);
    assert_eq!(authorize(b"private-x", &none, Some(&ok)).unwrap(), None);
    // A signature the Pusher server role verified.
    let signed = SubParams {
        signed: true,
        ..Default::default()
    };
    assert_eq!(authorize(b"private-x", &signed, None).unwrap(), None);
    // Claimed channel_data without a signature is no authorization.
    let claimed = SubParams {
        channel_data: Some(b(r#"{"user_id":"u1"}"#)),
        ..Default::default()
    };
    assert!(authorize(b"presence-room", &claimed, None).is_err());
}

#[test]
fn presence_members_from_signed_channel_data_or_the_identity() {
    let signed = SubParams {
        signed: true,
        channel_data: Some(b(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#)),
        ..Default::default()
    };
    let (uid, added, info, id_json) = authorize(b"presence-room", &signed, None).unwrap().unwrap();
    assert_eq!(uid, "10");
    assert_eq!(
        added,
        r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#
    );
    assert_eq!(info, r#"{"name":"Mr. Channels"}"#);
    assert_eq!(id_json, r#""10""#);

    let who = ident(Some("ann"), Some(r#"{"role":"nurse"}"#), &["presence-room"]);
    let (uid, added, ..) = authorize(b"presence-room", &SubParams::default(), Some(&who))
        .unwrap()
        .unwrap();
    assert_eq!(uid, "ann");
    assert_eq!(added, r#"{"user_id":"ann","user_info":{"role":"nurse"}}"#);

    // Allowed, but nobody to be a member as.
    let anonymous = ident(None, None, &["presence-*"]);
    let e = authorize(b"presence-room", &SubParams::default(), Some(&anonymous)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
}

fn attach(hub: &Arc<Hub>, echo: bool, everything: bool, who: Option<Identity>) -> Conn {
    hub.attach(
        Attach {
            echo,
            everything,
            depth: 16,
            bytes: 0,
        },
        who.map(Arc::new),
    )
}

fn sub(c: &mut Conn, id: u64, channel: &str, params: SubParams) -> Vec<BackendEvent> {
    let mut out = Vec::new();
    c.op(
        ClientOp::Subscribe {
            sub: id,
            channel: b(channel),
            params,
        },
        &mut out,
    );
    out
}

fn publish(c: &mut Conn, channel: &str, body: &str, reply: Option<u64>) -> Vec<BackendEvent> {
    let mut out = Vec::new();
    c.op(
        ClientOp::Publish {
            channel: b(channel),
            event: Some(b("ev")),
            args: Vec::new(),
            payload: Payload::json(b(body)),
            meta: Vec::new(),
            reply: reply.map(crate::frame::Reply::data),
            broadcast: true,
            sub: None,
        },
        &mut out,
    );
    out
}

fn drain(c: &mut Conn) -> Vec<Delivery> {
    std::iter::from_fn(|| c.try_recv()).collect()
}

fn messages(c: &mut Conn) -> Vec<(Option<u64>, Bytes)> {
    drain(c)
        .into_iter()
        .filter_map(|d| match d {
            Delivery::Message(m, sub) => Some((sub, m.payload.data.clone())),
            Delivery::Event(_) => None,
        })
        .collect()
}

#[test]
fn fan_out_echo_and_everything() {
    let hub = Arc::new(Hub::default());
    let mut stomp = attach(&hub, true, false, None);
    let mut pusher = attach(&hub, false, false, None);
    let mut sio = attach(&hub, true, true, None);
    sub(&mut stomp, 1, "news", SubParams::default());
    sub(&mut stomp, 2, "news", SubParams::default());
    sub(&mut pusher, 1, "news", SubParams::default());
    drain(&mut stomp);
    drain(&mut pusher);

    // A confirmation says the hub took it, with no data.
    let out = publish(&mut pusher, "news", r#"{"a":1}"#, Some(9));
    assert_eq!(
        out,
        [BackendEvent::Reply {
            id: 9,
            result: Ok(None)
        }]
    );
    // Both STOMP subscriptions, the Socket.IO connection once (unsubscribed), never the
    // Pusher sender.
    let mut got = messages(&mut stomp);
    got.sort();
    assert_eq!(
        got,
        [(Some(1), b(r#"{"a":1}"#)), (Some(2), b(r#"{"a":1}"#))]
    );
    assert_eq!(messages(&mut sio), [(None, b(r#"{"a":1}"#))]);
    assert!(messages(&mut pusher).is_empty());

    // A sender that echoes hears itself.
    publish(&mut stomp, "news", "2", None);
    assert_eq!(messages(&mut stomp).len(), 2);
    assert_eq!(messages(&mut pusher).len(), 1);
    assert_eq!(messages(&mut sio).len(), 1);

    // The payload is shared, not copied.
    publish(&mut stomp, "news", "3", None);
    let ptrs: Vec<*const u8> = drain(&mut stomp)
        .into_iter()
        .chain(drain(&mut sio))
        .filter_map(|d| match d {
            Delivery::Message(m, _) => Some(m.payload.data.as_ptr()),
            Delivery::Event(_) => None,
        })
        .collect();
    assert_eq!(ptrs.len(), 3);
    assert!(ptrs.iter().all(|p| *p == ptrs[0]));
    drain(&mut pusher);

    // Private channels never reach a connection that hears everything, only authorized
    // subscriptions.
    let signed = SubParams {
        signed: true,
        ..Default::default()
    };
    assert!(matches!(
        sub(&mut stomp, 3, "private-x", SubParams::default()).as_slice(),
        [BackendEvent::SubscribeFailed { sub: 3, .. }]
    ));
    sub(&mut pusher, 2, "private-x", signed.clone());
    let mut p2 = attach(&hub, false, false, None);
    sub(&mut p2, 1, "private-x", signed);
    drain(&mut pusher);
    publish(&mut p2, "private-x", "4", None);
    assert_eq!(messages(&mut pusher), [(Some(2), b("4"))]);
    assert!(messages(&mut sio).is_empty());
    assert!(messages(&mut stomp).is_empty());

    assert_eq!(hub.subscribers(b"news"), 3);
    drop(stomp);
    assert_eq!(hub.subscribers(b"news"), 1);
    drop(pusher);
    assert_eq!(hub.subscribers(b"news"), 0);
    assert_eq!(hub.channels(), 1);
    drop(p2);
    assert_eq!(hub.channels(), 0);
}

fn presence_events(c: &mut Conn) -> Vec<(bool, Bytes)> {
    drain(c)
        .into_iter()
        .filter_map(|d| match d {
            Delivery::Event(BackendEvent::Presence { member, added, .. }) => Some((added, member)),
            _ => None,
        })
        .collect()
}

#[test]
fn presence_first_connection_joins_last_leaves_never_to_the_joiner() {
    let hub = Arc::new(Hub::default());
    let who = |u: &str| Some(ident(Some(u), Some(r#"{"n":1}"#), &["presence-*"]));
    let mut ann = attach(&hub, true, false, who("ann"));
    let out = sub(&mut ann, 1, "presence-room", SubParams::default());
    let BackendEvent::Subscribed {
        data: Some(snapshot),
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        snapshot.data,
        r#"{"presence":{"ids":["ann"],"hash":{"ann":{"n":1}},"count":1}}"#
    );
    let mut bob1 = attach(&hub, true, false, who("bob"));
    let out = sub(&mut bob1, 1, "presence-room", SubParams::default());
    let BackendEvent::Subscribed {
        data: Some(snapshot),
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        snapshot.data,
        r#"{"presence":{"ids":["ann","bob"],"hash":{"ann":{"n":1},"bob":{"n":1}},"count":2}}"#
    );
    assert_eq!(
        presence_events(&mut ann),
        [(true, b(r#"{"user_id":"bob","user_info":{"n":1}}"#))]
    );
    assert!(presence_events(&mut bob1).is_empty(), "never to the joiner");
    // Bob's second connection: no one hears of it, and of its leaving.
    let mut bob2 = attach(&hub, true, false, who("bob"));
    sub(&mut bob2, 1, "presence-room", SubParams::default());
    drop(bob2);
    assert!(presence_events(&mut ann).is_empty());
    assert!(presence_events(&mut bob1).is_empty());
    // Bob's last connection leaves.
    let mut out = Vec::new();
    bob1.op(ClientOp::Unsubscribe { sub: 1 }, &mut out);
    assert_eq!(
        presence_events(&mut ann),
        [(false, b(r#"{"user_id":"bob"}"#))]
    );
}

fn stomp_subscribed(hub: &Arc<Hub>, stomp_id: &str, sub_id: u64) -> (StompServer, Conn) {
    let mut r = StompServer::new(StompSettings::default(), None, "s".into(), Instant::now());
    let mut out = ServerOut::default();
    let feed = |r: &mut StompServer, s: String, out: &mut ServerOut| {
        r.on_client(WsMsg::Text(Bytes::from(s)), Instant::now(), out)
    };
    feed(&mut r, "CONNECT\naccept-version:1.2\n\n\0".into(), &mut out);
    r.on_backend(
        BackendEvent::Ready { session: None },
        Instant::now(),
        &mut out,
    );
    let mut out = ServerOut::default();
    feed(
        &mut r,
        format!("SUBSCRIBE\nid:{stomp_id}\ndestination:news\n\n\0"),
        &mut out,
    );
    let Some(ClientOp::Subscribe { sub, .. }) = out.ops.pop() else {
        panic!("{out:?}")
    };
    assert_eq!(sub, sub_id);
    r.on_backend(
        BackendEvent::Subscribed { sub, data: None },
        Instant::now(),
        &mut ServerOut::default(),
    );
    let mut c = attach(hub, true, false, None);
    sub_op(&mut c, sub);
    (r, c)
}

fn sub_op(c: &mut Conn, sub: u64) {
    let mut out = Vec::new();
    c.op(
        ClientOp::Subscribe {
            sub,
            channel: b("news"),
            params: SubParams::default(),
        },
        &mut out,
    );
}

fn cable_subscribed(hub: &Arc<Hub>, identifier: &str) -> (CableServer, Conn) {
    let hs = Handshake {
        path: "/cable".into(),
        subprotocol: Some("actioncable-v1-json"),
        ..Default::default()
    };
    let mut r = CableServer::new(CableSettings::default(), &hs, 0, Instant::now());
    let mut out = ServerOut::default();
    r.on_start(Instant::now(), &mut out);
    r.on_backend(
        BackendEvent::Ready { session: None },
        Instant::now(),
        &mut out,
    );
    let cmd = serde_json::json!({"command":"subscribe","identifier":identifier}).to_string();
    let mut out = ServerOut::default();
    r.on_client(WsMsg::Text(Bytes::from(cmd)), Instant::now(), &mut out);
    let Some(ClientOp::Subscribe { sub, .. }) = out.ops.pop() else {
        panic!("{out:?}")
    };
    r.on_backend(
        BackendEvent::Subscribed { sub, data: None },
        Instant::now(),
        &mut ServerOut::default(),
    );
    let mut c = attach(hub, true, false, None);
    sub_op(&mut c, sub);
    (r, c)
}

/// One publish to six STOMP sessions (four subscribed as `sub-0`, as stompjs names its first
/// subscription, two as `a`) and three Action Cable sessions (two with one identifier, one
/// with its keys written in another order) is encoded four times: once per (route, shape).
/// The STOMP shape is the subscription id (and version); Action Cable's the identifier as
/// written. Sessions of one shape write the same bytes; a second route encodes again.
#[test]
fn one_encoding_per_route_and_shape() {
    let hub = Arc::new(Hub::default());
    let mut stomps: Vec<(StompServer, Conn)> = (0..4)
        .map(|_| stomp_subscribed(&hub, "sub-0", 1))
        .chain((0..2).map(|_| stomp_subscribed(&hub, "a", 1)))
        .collect();
    let mut cables: Vec<(CableServer, Conn)> = [
        r#"{"channel":"news","room":1}"#,
        r#"{"channel":"news","room":1}"#,
        r#"{"room":1,"channel":"news"}"#,
    ]
    .into_iter()
    .map(|i| cable_subscribed(&hub, i))
    .collect();
    let mut publisher = attach(&hub, false, false, None);
    publish(&mut publisher, "news", r#"{"text":"héllo"}"#, None);

    let (stomp_route, cable_route) = (1usize, 2usize);
    let mut msg = None;
    let mut encode = |route: usize, role: &mut dyn ServerRole, c: &mut Conn| {
        // Subscription counts came first.
        let (m, sub) = std::iter::from_fn(|| c.try_recv())
            .find_map(|d| match d {
                Delivery::Message(m, sub) => Some((m, sub)),
                Delivery::Event(_) => None,
            })
            .expect("a delivery");
        let mut out = ServerOut::default();
        m.encoded(route, role, m.event_for(sub), Instant::now(), &mut out);
        msg = Some(m);
        assert_eq!(out.to_client.len(), 1);
        out.to_client.remove(0)
    };
    let stomp_out: Vec<WsMsg> = stomps
        .iter_mut()
        .map(|(r, c)| encode(stomp_route, r, c))
        .collect();
    let cable_out: Vec<WsMsg> = cables
        .iter_mut()
        .map(|(r, c)| encode(cable_route, r, c))
        .collect();
    let m = msg.unwrap();
    assert_eq!(m.encodes(), 4, "sub-0, a, and two identifiers");
    // Sessions of one shape write the very same bytes (shared, not copied).
    assert_eq!(stomp_out[0].bytes().as_ptr(), stomp_out[3].bytes().as_ptr());
    assert_ne!(stomp_out[0].bytes().as_ptr(), stomp_out[4].bytes().as_ptr());
    assert_eq!(cable_out[0].bytes().as_ptr(), cable_out[1].bytes().as_ptr());
    let text = String::from_utf8(stomp_out[4].bytes().to_vec()).unwrap();
    assert!(text.starts_with("MESSAGE\n"), "{text}");
    assert!(text.contains("\nsubscription:a\n"), "{text}");
    assert!(text.ends_with("{\"text\":\"héllo\"}\0"), "{text}");
    assert_eq!(
        String::from_utf8(cable_out[2].bytes().to_vec()).unwrap(),
        r#"{"identifier":"{\"room\":1,\"channel\":\"news\"}","message":{"text":"héllo"}}"#
    );
    // The same shape on another route encodes again (its mapping may differ).
    let mut out = ServerOut::default();
    m.encoded(
        99,
        &mut stomps[0].0,
        m.event_for(Some(1)),
        Instant::now(),
        &mut out,
    );
    assert_eq!(m.encodes(), 5);
}

/// A subscriber whose queue is full is marked a slow consumer (its session closes it); the
/// publisher never waits, and the others still get the message.
#[test]
fn a_full_queue_marks_a_slow_consumer() {
    let hub = Arc::new(Hub::default());
    let mut slow = hub.attach(
        Attach {
            echo: true,
            everything: false,
            depth: 2,
            bytes: 0,
        },
        None,
    );
    let mut fine = attach(&hub, true, false, None);
    sub(&mut slow, 1, "news", SubParams::default());
    sub(&mut fine, 1, "news", SubParams::default());
    drain(&mut slow);
    drain(&mut fine);
    let mut publisher = attach(&hub, true, false, None);
    for i in 0..3 {
        publish(&mut publisher, "news", &i.to_string(), None);
    }
    assert!(slow.lagged().is_cancelled());
    assert!(!fine.lagged().is_cancelled());
    assert_eq!(messages(&mut fine).len(), 3);
    assert_eq!(messages(&mut slow).len(), 2);
}

/// A queue is bounded in bytes too: one message whatever its size, then no more than the
/// budget; what the connection takes is given back.
#[test]
fn a_queue_over_its_bytes_marks_a_slow_consumer() {
    let hub = Arc::new(Hub::default());
    let attach_bytes = |bytes| {
        hub.attach(
            Attach {
                echo: true,
                everything: false,
                depth: 100,
                bytes,
            },
            None,
        )
    };
    // "news" (4) + a 6-byte body: 10 bytes a message.
    let mut taker = attach_bytes(25);
    let mut slow = attach_bytes(25);
    sub(&mut taker, 1, "news", SubParams::default());
    sub(&mut slow, 1, "news", SubParams::default());
    drain(&mut taker);
    drain(&mut slow);
    let mut publisher = attach(&hub, true, false, None);
    for i in 0..2 {
        publish(&mut publisher, "news", &format!("\"{i:04}\""), None);
    }
    assert_eq!(messages(&mut taker).len(), 2);
    assert!(!slow.lagged().is_cancelled());
    for i in 2..4 {
        publish(&mut publisher, "news", &format!("\"{i:04}\""), None);
    }
    assert!(!taker.lagged().is_cancelled(), "it took what it was sent");
    assert!(slow.lagged().is_cancelled(), "30 bytes queued");
    assert_eq!(messages(&mut slow).len(), 2);
    // One message is taken whatever its size.
    let mut small = attach_bytes(1);
    sub(&mut small, 1, "news", SubParams::default());
    drain(&mut small);
    publish(&mut publisher, "news", "\"big body\"", None);
    assert!(!small.lagged().is_cancelled());
}

/// A private or presence channel takes messages only from a connection subscribed to it or
/// whose identity allows it; the sender's presence user id is the hub's member record,
/// whatever the message claimed, and a public channel's messages claim no sender.
#[test]
fn private_channels_take_messages_from_members_only_and_the_hub_names_the_sender() {
    let hub = Arc::new(Hub::default());
    let who = |u: &str| Some(ident(Some(u), None, &["presence-*"]));
    let mut ann = attach(&hub, false, false, who("ann"));
    sub(&mut ann, 1, "presence-room", SubParams::default());
    sub(&mut ann, 2, "private-x", SubParams::default());
    sub(&mut ann, 3, "news", SubParams::default());
    let mut bob = attach(&hub, false, false, who("bob"));
    sub(&mut bob, 1, "presence-room", SubParams::default());
    let mut eve = attach(&hub, false, false, None);
    drain(&mut ann);
    let spoofed = |channel: &str| ClientOp::Publish {
        channel: b(channel),
        event: Some(b("client-typing")),
        args: Vec::new(),
        payload: Payload::json(b("{}")),
        meta: vec![(Bytes::from_static(crate::frame::SENDER), b("alice"))],
        reply: Some(crate::frame::Reply::data(9)),
        broadcast: true,
        sub: None,
    };
    // Not subscribed, no identity: refused, nothing delivered.
    for channel in ["private-x", "presence-room"] {
        let mut out = Vec::new();
        eve.op(spoofed(channel), &mut out);
        let [BackendEvent::Reply { result: Err(e), .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.kind, ErrorKind::Unauthorized);
    }
    assert!(drain(&mut ann).is_empty());
    // A member: delivered, named as who it is.
    let mut out = Vec::new();
    bob.op(spoofed("presence-room"), &mut out);
    assert!(matches!(
        out.as_slice(),
        [BackendEvent::Reply { result: Ok(_), .. }]
    ));
    let sender = |d: &Delivery| match d {
        Delivery::Message(m, _) => m
            .meta
            .iter()
            .find(|(k, _)| crate::frame::is_internal(k))
            .map(|(_, v)| v.clone()),
        Delivery::Event(e) => panic!("{e:?}"),
    };
    let got = drain(&mut ann);
    assert_eq!(got.len(), 1);
    assert_eq!(sender(&got[0]), Some(b("bob")));
    // A public channel: anyone, and no sender.
    let mut out = Vec::new();
    eve.op(spoofed("news"), &mut out);
    let got = drain(&mut ann);
    assert_eq!(got.len(), 1);
    assert_eq!(sender(&got[0]), None);
}

/// A connection with two subscriptions to one presence channel (STOMP allows that) hears of
/// a member joining or leaving once: its translator hands the event to each subscription.
#[test]
fn presence_events_reach_a_connection_once_however_many_subscriptions() {
    let hub = Arc::new(Hub::default());
    let who = |u: &str| Some(ident(Some(u), None, &["presence-*"]));
    let mut ann = attach(&hub, true, false, who("ann"));
    sub(&mut ann, 1, "presence-room", SubParams::default());
    sub(&mut ann, 2, "presence-room", SubParams::default());
    drain(&mut ann);
    let mut bob = attach(&hub, true, false, who("bob"));
    sub(&mut bob, 1, "presence-room", SubParams::default());
    assert_eq!(presence_events(&mut ann).len(), 1);
    let mut out = Vec::new();
    bob.op(ClientOp::Unsubscribe { sub: 1 }, &mut out);
    assert_eq!(presence_events(&mut ann).len(), 1);
}

/// A bridge that records each join and leave it is told of, and whether the hub's lock was
/// held then.
#[derive(Debug, Default)]
struct Recorder {
    hub: std::sync::OnceLock<std::sync::Weak<Hub>>,
    told: std::sync::RwLock<Vec<(&'static str, bool)>>,
}

impl Recorder {
    fn record(&self, what: &'static str) {
        let hub = self.hub.get().and_then(std::sync::Weak::upgrade).unwrap();
        let locked = hub.state.try_read().is_err();
        self.told.write().unwrap().push((what, locked));
    }
}

impl Bridge for Recorder {
    fn published(&self, _: &Arc<HubMessage>) {}
    fn joined(&self, _: &Bytes, _: &Bytes, _: &Bytes) {
        self.record("joined");
    }
    fn left(&self, _: &Bytes, _: &Bytes) {
        self.record("left");
    }
}

/// Joins and leaves reach the bridge under the hub's lock, so other instances hear them in
/// the order they happened here (a page reload's leave, then its join).
#[test]
fn the_bridge_hears_joins_and_leaves_under_the_lock() {
    let recorder = Arc::new(Recorder::default());
    let hub = Arc::new(Hub::new(recorder.clone()));
    recorder.hub.set(Arc::downgrade(&hub)).unwrap();
    let who = Some(ident(Some("ann"), None, &["presence-*"]));
    let mut ann = attach(&hub, true, false, who);
    sub(&mut ann, 1, "presence-room", SubParams::default());
    let mut out = Vec::new();
    ann.op(ClientOp::Unsubscribe { sub: 1 }, &mut out);
    assert_eq!(
        *recorder.told.read().unwrap(),
        [("joined", true), ("left", true)]
    );
}
