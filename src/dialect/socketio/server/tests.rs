//! Unit tests of the Socket.IO server role.

use std::time::Instant;

use bytes::Bytes;

use super::namespaces::auth_token;
use super::subscriptions::topic_of;
use super::*;
use crate::dialect::socketio::packet;
use crate::dialect::{Copied, ServerRole, WsMsg};
use crate::frame::{BackendEvent, Credentials, ErrorInfo, ErrorKind, Payload};

fn txt(s: &str) -> WsMsg {
    WsMsg::Text(Bytes::from(s.to_owned()))
}

fn s(m: &WsMsg) -> String {
    String::from_utf8(m.bytes().to_vec()).unwrap()
}

fn texts(out: &ServerOut) -> Vec<String> {
    out.to_client.iter().map(s).collect()
}

fn role_with(settings: Settings) -> SocketioServer {
    role_at(settings, Instant::now())
}

fn role_at(settings: Settings, started: Instant) -> SocketioServer {
    SocketioServer::new(
        settings,
        Some(Bytes::from("upgrade-tok")),
        "EIO=4&transport=websocket&room=r7".into(),
        "SID1".into(),
        started,
    )
}

fn role() -> SocketioServer {
    role_with(Settings {
        namespaces: vec!["/".into(), "/admin".into()],
        ..Default::default()
    })
}

fn feed(r: &mut SocketioServer, m: &str) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_client(txt(m), Instant::now(), &mut out);
    out
}

fn backend(r: &mut SocketioServer, ev: BackendEvent) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_backend(ev, Instant::now(), &mut out);
    out
}

/// CONNECT then Ready: returns the role with `/` joined.
fn ready() -> SocketioServer {
    let mut r = role();
    let out = feed(&mut r, r#"40{"token":"abc","room":"r1"}"#);
    assert!(out.to_client.is_empty());
    assert_eq!(
        out.ops,
        vec![ClientOp::Connect {
            credentials: Credentials {
                token: Some(Bytes::from("abc")),
                login: None,
                passcode: None,
                auth_json: Some(Bytes::from(r#"{"token":"abc","room":"r1"}"#)),
                ..Default::default()
            }
        }]
    );
    let out = backend(&mut r, BackendEvent::Ready { session: None });
    assert_eq!(texts(&out), [r#"40{"sid":"SID1"}"#]);
    r
}

fn subscribed(r: &mut SocketioServer, topic: &str, ack_id: u64) -> SubId {
    let out = feed(
        r,
        &format!(r#"42{ack_id}["subscribe",{{"topic":"{topic}"}}]"#),
    );
    let [ClientOp::Subscribe { sub, channel, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(channel, topic);
    let sub = *sub;
    assert!(out.to_client.is_empty());
    let out = backend(r, BackendEvent::Subscribed { sub, data: None });
    assert_eq!(texts(&out), [format!("43{ack_id}[null]")]);
    sub
}

fn msg(sub: SubId, channel: &str, payload: Payload) -> BackendEvent {
    BackendEvent::Message {
        meta: Vec::new(),
        sub: Some(sub),
        channel: Bytes::from(channel.to_owned()),
        event: None,
        args: vec![],
        payload,
        ack: None,
    }
}

#[test]
fn keepalive_pings_and_connect_timeout() {
    let t0 = Instant::now();
    let mut r = role_at(Settings::default(), t0);
    let k = r.keepalive();
    assert_eq!(k.send_every, Some(Duration::from_millis(25_000)));
    assert!(k.periodic);
    assert_eq!(k.expect_within, Some(Duration::from_millis(45_000)));
    assert_eq!(r.heartbeat(), Some(txt("2")));
    // Pongs before CONNECT do not extend the connect deadline.
    let mut out = ServerOut::default();
    r.on_client(txt("3"), t0, &mut out);
    r.on_client(txt("3"), t0 + Duration::from_secs(30), &mut out);
    assert!(out.to_client.is_empty() && out.close.is_none());
    assert_eq!(
        r.keepalive().expect_within,
        Some(Duration::from_millis(15_000))
    );
    let mut out = ServerOut::default();
    r.on_peer_silent(&mut out);
    assert_eq!(out.close, Some(Close::new(1000, "connect timeout")));
    assert!(out.ops.is_empty());
    assert_eq!(r.heartbeat(), None);

    let r = ready();
    assert_eq!(
        r.keepalive().expect_within,
        Some(Duration::from_millis(45_000))
    );
}

#[test]
fn engineio_packets() {
    let mut r = ready();
    assert_eq!(texts(&feed(&mut r, "2")), ["3"]);
    assert_eq!(texts(&feed(&mut r, "2probe")), ["3probe"]);
    for quiet in ["3", "6", "5"] {
        let out = feed(&mut r, quiet);
        assert!(out.to_client.is_empty() && out.ops.is_empty() && out.close.is_none());
    }
    let mut out = ServerOut::default();
    r.on_peer_silent(&mut out);
    assert_eq!(out.close, Some(Close::new(1000, "ping timeout")));
    assert_eq!(out.ops, vec![ClientOp::Disconnect]);
}

#[test]
fn engineio_close_disconnects() {
    let mut r = ready();
    let out = feed(&mut r, "1");
    assert_eq!(out.ops, vec![ClientOp::Disconnect]);
    assert_eq!(out.close.unwrap().code, 1000);
    // Closed: everything after is ignored.
    let out = feed(&mut r, "2");
    assert!(out.to_client.is_empty());
}

#[test]
fn malformed_packets_close_with_parse_error() {
    for bad in [
        "",
        "9",
        "4x",
        "42",
        "42{\"a\":1}",
        "42[1]",
        "45-[\"a\"]",
        "40[]",
    ] {
        let mut r = ready();
        let out = feed(&mut r, bad);
        assert_eq!(out.close, Some(Close::new(1002, "parse error")), "{bad:?}");
        assert_eq!(out.ops, vec![ClientOp::Disconnect], "{bad:?}");
    }
    // Before CONNECT nothing went upstream, so there is nothing to disconnect.
    let mut r = role();
    let out = feed(&mut r, "4zz");
    assert_eq!(out.close.unwrap().code, 1002);
    assert!(out.ops.is_empty());
}

#[test]
fn limits_close_with_1009() {
    let mut r = role_with(Settings {
        max_payload: 20,
        max_attachments: 2,
        ..Default::default()
    });
    let out = feed(&mut r, &format!("42[\"a\",\"{}\"]", "x".repeat(20)));
    assert_eq!(out.close, Some(Close::new(1009, "message too big")));
    let mut r = role_with(Settings {
        max_attachments: 2,
        ..Default::default()
    });
    feed(&mut r, "40");
    let out = feed(&mut r, r#"453-["up",1]"#);
    assert_eq!(out.close, Some(Close::new(1009, "message too big")));
}

#[test]
fn invalid_namespace_stays_open() {
    let mut r = role();
    let out = feed(&mut r, "40/nope,");
    assert_eq!(texts(&out), [r#"44/nope,{"message":"Invalid namespace"}"#]);
    assert!(out.close.is_none() && out.ops.is_empty());
    let mut r = role_with(Settings {
        namespaces: vec!["/admin".into()],
        ..Default::default()
    });
    let out = feed(&mut r, "40");
    assert_eq!(texts(&out), [r#"44{"message":"Invalid namespace"}"#]);
    // A valid one still connects afterwards.
    let out = feed(&mut r, "40/admin,");
    assert!(matches!(out.ops[0], ClientOp::Connect { .. }));
}

#[test]
fn connect_without_auth_uses_upgrade_token() {
    let mut r = role();
    let out = feed(&mut r, "40");
    assert_eq!(
        out.ops,
        vec![ClientOp::Connect {
            credentials: Credentials {
                token: Some(Bytes::from("upgrade-tok")),
                ..Default::default()
            }
        }]
    );
    // A non-string token falls back as well, but the auth object still goes upstream.
    let mut r = role();
    let out = feed(&mut r, r#"40{"token":5}"#);
    let ClientOp::Connect { credentials } = &out.ops[0] else {
        panic!()
    };
    assert_eq!(credentials.token.as_deref(), Some(&b"upgrade-tok"[..]));
    assert_eq!(
        credentials.auth_json.as_deref(),
        Some(&br#"{"token":5}"#[..])
    );
}

#[test]
fn further_namespaces_share_the_upstream() {
    let mut r = role();
    feed(&mut r, r#"40{"token":"abc"}"#);
    // Still connecting: held until Ready, no second Connect.
    let out = feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    assert!(out.ops.is_empty() && out.to_client.is_empty());
    let out = backend(&mut r, BackendEvent::Ready { session: None });
    assert_eq!(
        texts(&out),
        [r#"40{"sid":"SID1"}"#, r#"40/admin,{"sid":"SID1"}"#]
    );
    // Ready: leave and rejoin answers at once.
    let out = feed(&mut r, "41/admin,");
    assert!(out.close.is_none());
    let out = feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
    assert!(out.ops.is_empty());
    // A second CONNECT to a joined namespace is a protocol error.
    let out = feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    assert_eq!(out.close.unwrap().code, 1002);
}

#[test]
fn backend_refusal_is_connect_error_then_close() {
    let mut r = role();
    feed(&mut r, r#"40/admin,{"token":"bad"}"#);
    let out = backend(
        &mut r,
        BackendEvent::Error(ErrorInfo {
            kind: ErrorKind::Unauthorized,
            message: Bytes::from("invalid token"),
            detail: Some(Payload::json(Bytes::from(r#"{"reason":"jwt"}"#))),
            code: None,
        }),
    );
    assert_eq!(
        texts(&out),
        [r#"44/admin,{"message":"invalid token","data":{"reason":"jwt"}}"#]
    );
    assert_eq!(out.close.unwrap().code, 1008);
    assert!(out.ops.is_empty());

    // Without JSON detail, and through on_upstream_lost.
    let mut r = role();
    feed(&mut r, "40");
    let mut out = ServerOut::default();
    r.on_upstream_lost(
        ErrorInfo {
            kind: ErrorKind::Unauthorized,
            message: Bytes::from("Bad \"creds\""),
            detail: Some(Payload::text(Bytes::from("nope"))),
            code: None,
        },
        &mut out,
    );
    assert_eq!(texts(&out), [r#"44{"message":"Bad \"creds\""}"#]);
}

#[test]
fn upstream_failures_close_the_transport_without_41() {
    let lost = ErrorInfo::new(ErrorKind::Unavailable, "backend closed the connection");
    let mut r = ready();
    let mut out = ServerOut::default();
    r.on_upstream_lost(lost.clone(), &mut out);
    assert!(out.to_client.is_empty());
    assert_eq!(out.close.unwrap().code, 1011);

    let mut r = ready();
    let out = backend(&mut r, BackendEvent::Error(lost.clone()));
    assert!(out.to_client.is_empty());
    assert_eq!(out.close.unwrap().code, 1011);

    let mut r = ready();
    let out = backend(
        &mut r,
        BackendEvent::Closing {
            reason: ErrorInfo::new(ErrorKind::Unauthorized, "token expired"),
            retry: false,
        },
    );
    assert!(out.to_client.is_empty());
    assert_eq!(out.close.unwrap().code, 1011);

    // Not ready yet and not an auth problem: also a plain close.
    let mut r = role();
    feed(&mut r, "40");
    let out = backend(&mut r, BackendEvent::Error(lost));
    assert!(out.to_client.is_empty());
    assert_eq!(out.close.unwrap().code, 1011);

    let mut r = ready();
    let mut out = ServerOut::default();
    r.on_shutdown(&mut out);
    assert_eq!(out.close.unwrap().code, 1001);
    assert_eq!(out.ops, vec![ClientOp::Disconnect]);
}

#[test]
fn subscribe_ack_and_delivery() {
    let mut r = ready();
    let sub = subscribed(&mut r, "message_created", 0);
    let payload = Bytes::from(r#"{"id":17,"text":"hi"}"#);
    let out = backend(
        &mut r,
        msg(sub, "message_created", Payload::json(payload.clone())),
    );
    assert_eq!(
        texts(&out),
        [r#"42["message_created",{"id":17,"text":"hi"}]"#]
    );
    // Extra args and an explicit event name.
    let out = backend(
        &mut r,
        BackendEvent::Message {
            meta: Vec::new(),
            sub: Some(sub),
            channel: Bytes::from("message_created"),
            event: Some(Bytes::from("created")),
            args: vec![Bytes::from("\"c1\""), Bytes::from("2")],
            payload: Payload::text(Bytes::from("a\"b")),
            ack: None,
        },
    );
    assert_eq!(texts(&out), [r#"42["created","c1",2,"a\"b"]"#]);
    // Each payload is written once, into its event's own buffer: one copy each, escaping
    // included (the bytes are the payload's own).
    let c = r.take_copied();
    assert_eq!((c.copies, c.bytes), (2, 21 + 3));
    // Unknown subscriptions are dropped; unaddressed messages (a Socket.IO backend's
    // plain emits) go to the namespace that opened the upstream.
    let out = backend(&mut r, msg(99, "x", Payload::null()));
    assert!(out.to_client.is_empty());
    let out = backend(
        &mut r,
        BackendEvent::Message {
            meta: Vec::new(),
            sub: None,
            channel: Bytes::from("message_created"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            ack: None,
        },
    );
    assert_eq!(texts(&out), [r#"42["message_created",null]"#]);
}

#[test]
fn delivery_of_an_array_payload() {
    let mut r = ready();
    let sub = subscribed(&mut r, "t", 1);
    let out = backend(&mut r, msg(sub, "t", Payload::json(Bytes::from("[1,2]"))));
    assert_eq!(texts(&out), [r#"42["t",[1,2]]"#]);
    // Spliced raw into the event: the one write of its frame is the one copy.
    assert_eq!(
        r.take_copied(),
        Copied {
            copies: 1,
            bytes: 5
        }
    );
}

#[test]
fn binary_delivery_and_namespaced_subscription() {
    let mut r = ready();
    feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    let out = feed(&mut r, r#"42/admin,7["subscribe","files"]"#);
    let [ClientOp::Subscribe { sub, channel, .. }] = out.ops.as_slice() else {
        panic!()
    };
    assert_eq!(channel, "files");
    let sub = *sub;
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert_eq!(texts(&out), ["43/admin,7[null]"]);
    let out = backend(
        &mut r,
        msg(
            sub,
            "files",
            Payload::binary(Bytes::from_static(&[1, 2, 3])),
        ),
    );
    assert_eq!(
        s(&out.to_client[0]),
        r#"451-/admin,["files",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(
        out.to_client[1],
        WsMsg::Binary(Bytes::from_static(&[1, 2, 3]))
    );
}

#[test]
fn subscribe_failures_and_duplicates() {
    let mut r = ready();
    let out = feed(&mut r, r#"423["subscribe",{"topic":"nope"}]"#);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::SubscribeFailed {
            sub: *sub,
            reason: ErrorInfo::new(ErrorKind::Untranslatable, "no route for nope"),
        },
    );
    assert_eq!(
        texts(&out),
        [r#"433[{"error":{"name":"SubscribeError","message":"no route for nope"}}]"#]
    );
    // The failed subscription is forgotten: deliveries for it are dropped.
    let out = backend(&mut r, msg(1, "nope", Payload::null()));
    assert!(out.to_client.is_empty());
    // Missing topic.
    let out = feed(&mut r, r#"424["subscribe",{"room":"x"}]"#);
    assert!(out.ops.is_empty());
    assert_eq!(
        texts(&out),
        [
            r#"434[{"error":{"name":"SubscribeError","message":"subscribe needs a topic: {\"topic\":\"<name>\"}"}}]"#
        ]
    );
    // Without an ack id: subscribed, but no answer either way.
    let out = feed(&mut r, r#"42["subscribe",{"topic":"quiet"}]"#);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::Subscribed {
            sub: *sub,
            data: None,
        },
    );
    assert!(out.to_client.is_empty());
    // A duplicate is answered at once without a second subscription.
    let out = feed(&mut r, r#"425["subscribe",{"topic":"quiet"}]"#);
    assert!(out.ops.is_empty());
    assert_eq!(texts(&out), ["435[null]"]);
}

#[test]
fn too_many_subscriptions() {
    let mut r = role_with(Settings {
        max_subscriptions: 1,
        ..Default::default()
    });
    feed(&mut r, "40");
    backend(&mut r, BackendEvent::Ready { session: None });
    subscribed(&mut r, "a", 1);
    let out = feed(&mut r, r#"422["subscribe","b"]"#);
    assert!(out.ops.is_empty());
    assert_eq!(
        texts(&out),
        [r#"432[{"error":{"name":"SubscribeError","message":"too many subscriptions"}}]"#]
    );
}

#[test]
fn unsubscribe() {
    let mut r = ready();
    let sub = subscribed(&mut r, "message_created", 1);
    let out = feed(&mut r, r#"422["unsubscribe",{"topic":"message_created"}]"#);
    assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub }]);
    assert_eq!(texts(&out), ["432[null]"]);
    let out = backend(&mut r, msg(sub, "message_created", Payload::null()));
    assert!(out.to_client.is_empty());
    // Unknown topic: nothing to do, still acked.
    let out = feed(&mut r, r#"423["unsubscribe","other"]"#);
    assert!(out.ops.is_empty());
    assert_eq!(texts(&out), ["433[null]"]);
}

#[test]
fn emit_becomes_publish_and_ack_answers() {
    let mut r = ready();
    let wire_msg = Bytes::from(r#"4212["message_created",{"text":"hi"}]"#);
    let mut out = ServerOut::default();
    r.on_client(WsMsg::Text(wire_msg.clone()), Instant::now(), &mut out);
    let [
        ClientOp::Publish {
            meta: _,
            channel,
            event: None,
            args,
            payload,
            reply: Some(rid),
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(channel, "message_created");
    assert!(args.is_empty());
    assert_eq!(payload, &Payload::json(Bytes::from(r#"{"text":"hi"}"#)));
    // Zero copy: the payload is a slice of the received message.
    assert!(wire_msg.as_ptr_range().contains(&payload.data.as_ptr()));
    assert_eq!(r.take_copied().bytes, 0);
    // A Socket.IO ack asks for the backend's data.
    assert!(rid.data);
    let rid = rid.id;
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: rid,
            result: Ok(Some(Payload::json(Bytes::from(r#"{"ok":true}"#)))),
        },
    );
    assert_eq!(texts(&out), [r#"4312[{"ok":true}]"#]);
    // Answered once only.
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: rid,
            result: Ok(None),
        },
    );
    assert!(out.to_client.is_empty());
}

fn publish(r: &mut SocketioServer, m: &str) -> (Bytes, Payload, Option<ReplyId>) {
    let out = feed(r, m);
    let [
        ClientOp::Publish {
            channel,
            payload,
            reply,
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{m}: {:?}", out.ops)
    };
    (channel.clone(), payload.clone(), reply.map(|r| r.id))
}

#[test]
fn emit_arguments_to_payload() {
    let mut r = ready();
    let (_, p, reply) = publish(&mut r, r#"42["ping"]"#);
    assert_eq!(p, Payload::null());
    assert_eq!(reply, None);
    let (_, p, _) = publish(&mut r, r#"42["m",1,"two",{"three":3}]"#);
    assert_eq!(p, Payload::json(Bytes::from(r#"[1,"two",{"three":3}]"#)));
    // Several arguments packed into one array body: one copy.
    assert_eq!(
        r.take_copied(),
        Copied {
            copies: 1,
            bytes: 21
        }
    );
    feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    let (c, p, _) = publish(&mut r, r#"42/admin,["m",null]"#);
    assert_eq!(c, "m");
    assert_eq!(p, Payload::json(Bytes::from("null")));
}

#[test]
fn binary_emit_and_reply_kinds() {
    let mut r = ready();
    let out = feed(&mut r, r#"451-3["upload",{"_placeholder":true,"num":0}]"#);
    assert!(out.ops.is_empty());
    let mut out = ServerOut::default();
    r.on_client(
        WsMsg::Binary(Bytes::from_static(&[9, 8])),
        Instant::now(),
        &mut out,
    );
    let [
        ClientOp::Publish {
            channel,
            payload,
            reply: Some(rid),
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(channel, "upload");
    assert_eq!(payload, &Payload::binary(Bytes::from_static(&[9, 8])));
    // A Socket.IO ack asks for the backend's data.
    assert!(rid.data);
    let rid = rid.id;
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: rid,
            result: Ok(Some(Payload::binary(Bytes::from_static(&[7])))),
        },
    );
    assert_eq!(texts(&out)[0], r#"461-3[{"_placeholder":true,"num":0}]"#);
    assert_eq!(out.to_client[1], WsMsg::Binary(Bytes::from_static(&[7])));

    let (_, _, Some(rid)) = publish(&mut r, r#"424["a",1]"#) else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: rid,
            result: Ok(None),
        },
    );
    assert_eq!(texts(&out), ["434[]"]);

    feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    let (_, _, Some(rid)) = publish(&mut r, r#"42/admin,5["a",1]"#) else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: rid,
            result: Err(ErrorInfo::new(ErrorKind::Timeout, "no answer")),
        },
    );
    assert_eq!(
        texts(&out),
        [r#"43/admin,5[{"error":{"name":"timeout","message":"no answer"}}]"#]
    );

    let (_, _, Some(rid)) = publish(&mut r, r#"426["a",1]"#) else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: rid,
            result: Ok(Some(Payload::text(Bytes::from("done")))),
        },
    );
    assert_eq!(texts(&out), [r#"436["done"]"#]);
}

#[test]
fn binary_among_several_arguments_is_refused() {
    let mut r = ready();
    feed(
        &mut r,
        r#"451-8["upload","name",{"_placeholder":true,"num":0}]"#,
    );
    let mut out = ServerOut::default();
    r.on_client(
        WsMsg::Binary(Bytes::from_static(&[1])),
        Instant::now(),
        &mut out,
    );
    assert!(out.ops.is_empty());
    assert_eq!(
        texts(&out),
        [
            r#"438[{"error":{"name":"untranslatable","message":"binary data must be the event's only argument"}}]"#
        ]
    );
}

#[test]
fn reserved_event_from_the_client_is_a_parse_error() {
    // As socket.io 4.8 does: the parser refuses the payload and the connection closes.
    for name in packet::RESERVED_EVENTS {
        for m in [
            format!(r#"429["{name}",1]"#),
            format!(r#"42/admin,["{name}"]"#),
        ] {
            let mut r = ready();
            feed(&mut r, r#"40/admin,{"token":"abc"}"#);
            let out = feed(&mut r, &m);
            assert_eq!(out.close, Some(Close::new(1002, "parse error")), "{m}");
            assert_eq!(out.ops, vec![ClientOp::Disconnect], "{m}");
            assert!(out.to_client.is_empty(), "{m}");
        }
    }
    // Binary events too, once their attachment is in.
    let mut r = ready();
    assert!(
        feed(
            &mut r,
            r#"451-["disconnecting",{"_placeholder":true,"num":0}]"#
        )
        .close
        .is_none()
    );
    let mut out = ServerOut::default();
    r.on_client(
        WsMsg::Binary(Bytes::from_static(&[1])),
        Instant::now(),
        &mut out,
    );
    assert_eq!(out.close, Some(Close::new(1002, "parse error")));
    // Names that merely resemble one are ordinary events.
    let mut r = ready();
    publish(&mut r, r#"42["Disconnect"]"#);
    publish(&mut r, r#"42["connect_errors"]"#);
}

#[test]
fn reserved_subscription_is_refused() {
    let mut r = ready();
    for (i, name) in packet::RESERVED_EVENTS.iter().enumerate() {
        let out = feed(
            &mut r,
            &format!(r#"42{i}["subscribe",{{"topic":"{name}"}}]"#),
        );
        assert!(out.ops.is_empty() && out.close.is_none(), "{name}");
        assert_eq!(
            texts(&out),
            [format!(
                r#"43{i}[{{"error":{{"name":"SubscribeError","message":"`{name}` is a reserved event name"}}}}]"#
            )]
        );
    }
    // Without an ack id: nothing subscribed, nothing said.
    let out = feed(&mut r, r#"42["subscribe","newListener"]"#);
    assert!(out.ops.is_empty() && out.to_client.is_empty() && out.close.is_none());
    // An auto-subscription whose topic comes out reserved is skipped.
    let mut r = role_with(Settings {
        auto_subscribe: vec![Template::parse("{kind}").unwrap()],
        ..Default::default()
    });
    feed(&mut r, r#"40{"kind":"disconnect"}"#);
    let out = backend(&mut r, BackendEvent::Ready { session: None });
    assert_eq!(texts(&out), [r#"40{"sid":"SID1"}"#]);
    assert!(out.ops.is_empty());
}

#[test]
fn reserved_delivery_is_dropped() {
    let mut r = ready();
    let sub = subscribed(&mut r, "news", 1);
    for name in packet::RESERVED_EVENTS {
        // Named by the translator (event), or by the channel of an unclaimed emit.
        let out = backend(
            &mut r,
            BackendEvent::Message {
                meta: Vec::new(),
                sub: Some(sub),
                channel: Bytes::from("news"),
                event: Some(Bytes::from(*name)),
                args: vec![],
                payload: Payload::null(),
                ack: None,
            },
        );
        assert!(out.to_client.is_empty() && out.close.is_none(), "{name}");
        let out = backend(
            &mut r,
            BackendEvent::Message {
                meta: Vec::new(),
                sub: None,
                channel: Bytes::from(*name),
                event: None,
                args: vec![],
                payload: Payload::null(),
                ack: None,
            },
        );
        assert!(out.to_client.is_empty() && out.close.is_none(), "{name}");
    }
    // The connection goes on: an ordinary delivery still arrives.
    let out = backend(&mut r, msg(sub, "news", Payload::null()));
    assert_eq!(texts(&out), [r#"42["news",null]"#]);
}

#[test]
fn too_many_pending_acks() {
    let mut r = role_with(Settings {
        max_pending_acks: 1,
        ..Default::default()
    });
    feed(&mut r, "40");
    backend(&mut r, BackendEvent::Ready { session: None });
    publish(&mut r, r#"421["a"]"#);
    let out = feed(&mut r, r#"422["a"]"#);
    assert!(out.ops.is_empty());
    assert_eq!(
        texts(&out),
        [r#"432[{"error":{"name":"limit","message":"too many emits waiting for an ack"}}]"#]
    );
    // Without an ack id nothing is tracked, so it still goes through.
    publish(&mut r, r#"42["a"]"#);
}

#[test]
fn event_on_unjoined_namespace_closes() {
    let mut r = ready();
    let out = feed(&mut r, r#"42/admin,["a"]"#);
    assert_eq!(out.close, Some(Close::new(1002, "invalid state")));
    let mut r = role();
    let out = feed(&mut r, r#"42["a"]"#);
    assert_eq!(out.close.unwrap().code, 1002);
    assert!(out.ops.is_empty());
}

#[test]
fn leaving_namespaces() {
    let mut r = ready();
    feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    let sub_root = subscribed(&mut r, "a", 1);
    let out = feed(&mut r, r#"42/admin,2["subscribe",{"topic":"b"}]"#);
    let [ClientOp::Subscribe { sub: sub_admin, .. }] = out.ops.as_slice() else {
        panic!()
    };
    let sub_admin = *sub_admin;
    let (_, _, Some(rid)) = publish(&mut r, r#"42/admin,3["x"]"#) else {
        panic!()
    };
    let out = feed(&mut r, "41/admin,");
    assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub: sub_admin }]);
    assert!(out.close.is_none());
    // The ack of the namespace left is not sent.
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: rid,
            result: Ok(None),
        },
    );
    assert!(out.to_client.is_empty());
    // Leaving an unknown namespace is ignored; leaving the last one ends the connection.
    assert!(feed(&mut r, "41/other,").close.is_none());
    let out = feed(&mut r, "41");
    assert_eq!(
        out.ops,
        vec![
            ClientOp::Unsubscribe { sub: sub_root },
            ClientOp::Disconnect
        ]
    );
    assert_eq!(out.close.unwrap().code, 1000);
}

#[test]
fn auto_subscribe_from_auth_and_query() {
    let templates = [
        "/v1/topic/conversation/{conversation}",
        "user-{uid}",
        "room-{room}",
        "missing-{nope}",
    ];
    let mut r = role_with(Settings {
        auto_subscribe: templates
            .iter()
            .map(|t| Template::parse(t).unwrap())
            .collect(),
        ..Default::default()
    });
    feed(
        &mut r,
        r#"40{"token":"t","conversation":"c-9","uid":42,"flag":true}"#,
    );
    let out = backend(&mut r, BackendEvent::Ready { session: None });
    assert_eq!(texts(&out), [r#"40{"sid":"SID1"}"#]);
    let channels: Vec<&[u8]> = out
        .ops
        .iter()
        .map(|op| match op {
            ClientOp::Subscribe { channel, .. } => channel.as_ref(),
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(
        channels,
        [&b"/v1/topic/conversation/c-9"[..], b"user-42", b"room-r7"]
    );
    // Auto-subscriptions deliver on the connecting namespace, and are never acked.
    let ClientOp::Subscribe { sub, .. } = out.ops[0] else {
        panic!()
    };
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert!(out.to_client.is_empty());
    let out = backend(
        &mut r,
        msg(
            sub,
            "/v1/topic/conversation/c-9",
            Payload::json(Bytes::from("1")),
        ),
    );
    assert_eq!(texts(&out), [r#"42["/v1/topic/conversation/c-9",1]"#]);
}

const AUTH_DIFFERS: &str = r#"{"message":"auth differs from the connection's first namespace"}"#;

#[test]
fn later_namespace_must_present_the_same_auth() {
    // Ready: a different token, or none (the upgrade token differs too), is refused.
    let mut r = role_with(Settings {
        namespaces: vec!["/".into(), "/admin".into(), "/ops".into()],
        ..Default::default()
    });
    feed(&mut r, r#"40{"token":"abc"}"#);
    backend(&mut r, BackendEvent::Ready { session: None });
    for m in [r#"40/admin,{"token":"other"}"#, "40/admin,", "40/admin,{}"] {
        let out = feed(&mut r, m);
        assert_eq!(texts(&out), [format!("44/admin,{AUTH_DIFFERS}")], "{m}");
        assert!(out.ops.is_empty() && out.close.is_none(), "{m}");
    }
    // Refused means not joined: its events still close like any unjoined namespace's.
    let mut probe = role();
    feed(&mut probe, r#"40{"token":"abc"}"#);
    backend(&mut probe, BackendEvent::Ready { session: None });
    feed(&mut probe, r#"40/admin,{"token":"x"}"#);
    assert_eq!(
        feed(&mut probe, r#"42/admin,["a"]"#).close.unwrap().code,
        1002
    );
    // The same token is accepted, whatever else the auth object holds.
    let out = feed(&mut r, r#"40/admin,{"token":"abc","room":"r2"}"#);
    assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
    assert!(out.ops.is_empty());

    // Still connecting: refused at once, the accepted one waits for Ready.
    let mut r = role_with(Settings {
        namespaces: vec!["/".into(), "/admin".into(), "/ops".into()],
        ..Default::default()
    });
    feed(&mut r, r#"40{"token":"abc"}"#);
    let out = feed(&mut r, r#"40/ops,{"token":"zzz"}"#);
    assert_eq!(texts(&out), [format!("44/ops,{AUTH_DIFFERS}")]);
    assert!(
        feed(&mut r, r#"40/admin,{"token":"abc"}"#)
            .to_client
            .is_empty()
    );
    let out = backend(&mut r, BackendEvent::Ready { session: None });
    assert_eq!(
        texts(&out),
        [r#"40{"sid":"SID1"}"#, r#"40/admin,{"sid":"SID1"}"#]
    );

    // A first CONNECT without auth used the upgrade token: a later one without auth, or
    // with that same token, matches it.
    let mut r = role();
    feed(&mut r, "40");
    backend(&mut r, BackendEvent::Ready { session: None });
    let out = feed(&mut r, "40/admin,");
    assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
    feed(&mut r, "41/admin,");
    let out = feed(&mut r, r#"40/admin,{"token":"upgrade-tok"}"#);
    assert_eq!(texts(&out), [r#"40/admin,{"sid":"SID1"}"#]);
}

#[test]
fn unclaimed_deliveries_stop_when_the_primary_namespace_is_left() {
    let unclaimed = || BackendEvent::Message {
        meta: Vec::new(),
        sub: None,
        channel: Bytes::from("news"),
        event: None,
        args: vec![],
        payload: Payload::null(),
        ack: None,
    };
    let mut r = ready();
    feed(&mut r, r#"40/admin,{"token":"abc"}"#);
    assert_eq!(texts(&backend(&mut r, unclaimed())), [r#"42["news",null]"#]);
    // `/` left, `/admin` still joined: not redirected there, dropped.
    assert!(feed(&mut r, "41").close.is_none());
    let out = backend(&mut r, unclaimed());
    assert!(out.to_client.is_empty() && out.close.is_none());
    // Back in `/`: delivered again.
    feed(&mut r, r#"40{"token":"abc"}"#);
    assert_eq!(texts(&backend(&mut r, unclaimed())), [r#"42["news",null]"#]);
}

#[test]
fn connect_deadline_is_absolute_from_creation() {
    let t0 = Instant::now();
    let s = |ms| t0 + Duration::from_millis(ms);
    let mut r = role_at(Settings::default(), t0);
    let mut out = ServerOut::default();
    // The client answers pings (and sends noops), but never CONNECTs.
    for at in [25_000, 44_000] {
        r.on_client(txt("3"), s(at), &mut out);
        r.on_client(txt("6"), s(at), &mut out);
        r.expire(s(at), &mut out);
    }
    assert!(out.close.is_none() && out.to_client.is_empty());
    assert_eq!(
        r.keepalive().expect_within,
        Some(Duration::from_millis(1_000))
    );
    r.expire(s(44_999), &mut out);
    assert!(out.close.is_none());
    r.expire(s(45_000), &mut out);
    assert_eq!(out.close, Some(Close::new(1000, "connect timeout")));
    assert!(out.ops.is_empty());

    // A message arriving first does not start the clock: it started at creation.
    let mut r = role_at(Settings::default(), t0);
    let mut out = ServerOut::default();
    r.on_client(txt("3"), s(40_000), &mut out);
    r.expire(s(45_000), &mut out);
    assert_eq!(out.close, Some(Close::new(1000, "connect timeout")));

    // Once CONNECT arrived, the deadline no longer applies.
    let mut r = role_at(Settings::default(), t0);
    let mut out = ServerOut::default();
    r.on_client(txt("40"), s(1_000), &mut out);
    r.expire(s(60_000), &mut out);
    assert!(out.close.is_none());
}

#[test]
fn topic_and_token_helpers() {
    assert_eq!(topic_of(br#"{"topic":"a"}"#).unwrap(), "a");
    assert_eq!(topic_of(br#""b""#).unwrap(), "b");
    assert!(topic_of(br#"{"topic":1}"#).is_none());
    assert!(topic_of(br#""""#).is_none());
    assert!(topic_of(b"[]").is_none());
    assert_eq!(auth_token(br#"{"token":"x\"y"}"#).unwrap(), "x\"y");
    assert!(auth_token(br#"{"token":""}"#).is_none());
    assert!(auth_token(br#"{"tok":"x"}"#).is_none());
}

#[test]
fn backend_ack_requests_ask_the_client_and_carry_its_answer() {
    let mut r = ready();
    let ev = |token: &str| BackendEvent::Message {
        meta: Vec::new(),
        sub: None,
        channel: Bytes::from("confirm"),
        event: None,
        args: vec![],
        payload: Payload::json(Bytes::from("{\"id\":7}")),
        ack: Some(Bytes::from(token.to_owned())),
    };
    let out = backend(&mut r, ev("12"));
    assert_eq!(texts(&out), [r#"420["confirm",{"id":7}]"#]);
    let out = backend(&mut r, ev("13"));
    assert_eq!(texts(&out), [r#"421["confirm",{"id":7}]"#]);
    let out = feed(&mut r, r#"431[{"seen":true}]"#);
    assert_eq!(
        out.ops,
        vec![ClientOp::Ack {
            token: Bytes::from("13"),
            positive: true,
            result: Some(Payload::json(Bytes::from(r#"[{"seen":true}]"#))),
        }]
    );
    // Answered once; unknown ids are ignored.
    assert!(feed(&mut r, "431[]").ops.is_empty());
    assert!(feed(&mut r, "4399[]").ops.is_empty());
    // Forgotten after a while (the backend's timeout has answered by then).
    let mut out = ServerOut::default();
    r.expire(Instant::now() + BACKEND_ACK_TTL, &mut out);
    assert!(feed(&mut r, "430[]").ops.is_empty());
}

#[test]
fn a_full_backend_ack_table_asks_the_client_for_no_ack() {
    let mut r = ready();
    r.backend_acks = Pending::new(1);
    let ev = |token: &str| BackendEvent::Message {
        meta: Vec::new(),
        sub: None,
        channel: Bytes::from("confirm"),
        event: None,
        args: vec![],
        payload: Payload::null(),
        ack: Some(Bytes::from(token.to_owned())),
    };
    assert_eq!(
        texts(&backend(&mut r, ev("12"))),
        [r#"420["confirm",null]"#]
    );
    assert_eq!(texts(&backend(&mut r, ev("13"))), [r#"42["confirm",null]"#]);
    // The answer frees the entry; the next request gets the next id.
    assert_eq!(feed(&mut r, "430[]").ops.len(), 1);
    assert_eq!(
        texts(&backend(&mut r, ev("14"))),
        [r#"421["confirm",null]"#]
    );
}

#[test]
fn refusals_are_connect_errors_per_namespace_or_server_disconnects() {
    use crate::dialect::Refusal;
    let why = |m: &str| ErrorInfo::new(ErrorKind::Limit, m.to_owned());
    let mut r = role();
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Busy, why("too many connections"), &mut out);
    assert_eq!(
        texts(&out),
        [
            r#"44{"message":"too many connections"}"#,
            r#"44/admin,{"message":"too many connections"}"#
        ]
    );
    assert_eq!(out.close.unwrap().code, 1013);
    assert!(out.ops.is_empty(), "nothing was connected upstream");
    let mut r = ready();
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Rate, why("message rate limit exceeded"), &mut out);
    assert_eq!(texts(&out), ["41"]);
    assert_eq!(out.close.unwrap().code, 1008);
    assert_eq!(out.ops, vec![ClientOp::Disconnect]);
}

/// Toward a Socket.IO upstream: a role whose packets keep their shape.
fn shaped_role() -> SocketioServer {
    role_with(Settings {
        namespaces: vec!["/".into(), "/admin".into()],
        shapes: true,
        ..Default::default()
    })
}

#[test]
fn shaped_namespaces_are_joined_one_for_one_with_their_own_auth() {
    let mut r = shaped_role();
    // The upstream is opened with the Engine.IO session, as socket.io has its connection
    // before any namespace; Ready alone answers nothing: each `40` is the backend's.
    let mut out = ServerOut::default();
    r.on_start(Instant::now(), &mut out);
    assert_eq!(
        out.ops,
        vec![ClientOp::Connect {
            credentials: Credentials {
                token: Some(Bytes::from("upgrade-tok")),
                ..Default::default()
            }
        }]
    );
    assert!(texts(&backend(&mut r, BackendEvent::Ready { session: None })).is_empty());
    let out = feed(&mut r, r#"40/admin,{"token":"a"}"#);
    assert!(out.to_client.is_empty());
    assert_eq!(
        out.ops,
        vec![ClientOp::Join {
            scope: Bytes::from("/admin"),
            auth: Some(Bytes::from(r#"{"token":"a"}"#)),
        }]
    );
    // Another namespace, other auth: joined too, no Connect.
    let out = feed(&mut r, r#"40{"token":"b"}"#);
    assert_eq!(
        out.ops,
        vec![ClientOp::Join {
            scope: Bytes::from("/"),
            auth: Some(Bytes::from(r#"{"token":"b"}"#)),
        }]
    );
    let joined = |scope: &str, data: &str| BackendEvent::Joined {
        scope: Bytes::from(scope.to_owned()),
        data: Some(Bytes::from(data.to_owned())),
    };
    let out = backend(&mut r, joined("/admin", r#"{"sid":"B1"}"#));
    assert_eq!(texts(&out), [r#"40/admin,{"sid":"B1"}"#]);
    let out = backend(
        &mut r,
        BackendEvent::JoinFailed {
            scope: Bytes::from("/"),
            data: Some(Bytes::from(r#"{"message":"no","data":{"x":1}}"#)),
        },
    );
    assert_eq!(texts(&out), [r#"44{"message":"no","data":{"x":1}}"#]);
    assert!(out.close.is_none());
    // Unlisted: refused here, as socket.io refuses unknown namespaces.
    let out = feed(&mut r, "40/random");
    assert_eq!(
        texts(&out),
        [r#"44/random,{"message":"Invalid namespace"}"#]
    );
    assert!(out.ops.is_empty());
    // The backend ends `/admin`: `41` in it; the connection goes on.
    let out = backend(
        &mut r,
        BackendEvent::Left {
            scope: Bytes::from("/admin"),
        },
    );
    assert_eq!(texts(&out), ["41/admin,"]);
    assert!(out.close.is_none());
}

#[test]
fn shaped_events_and_acks_go_as_they_came() {
    let mut r = shaped_role();
    feed(&mut r, "40");
    backend(&mut r, BackendEvent::Ready { session: None });
    backend(
        &mut r,
        BackendEvent::Joined {
            scope: Bytes::from("/"),
            data: None,
        },
    );
    let out = feed(&mut r, r#"4212["message",1,"2",{"3":[true]}]"#);
    let ClientOp::Emit {
        scope,
        values,
        reply: Some(rid),
    } = out.ops.into_iter().next().unwrap()
    else {
        panic!("an emit with a reply id")
    };
    assert_eq!(scope, "/");
    assert_eq!(values.list, r#"["message",1,"2",{"3":[true]}]"#);
    assert!(values.attachments.is_empty());
    assert_eq!(r.take_copied().bytes, 0);
    // The backend's answer, binary included, under the client's own ack id.
    let out = backend(
        &mut r,
        BackendEvent::Answered {
            id: rid,
            values: crate::frame::Shaped {
                list: Bytes::from(r#"[1,{"_placeholder":true,"num":0}]"#),
                attachments: vec![Bytes::from_static(b"\x01")],
            },
        },
    );
    assert_eq!(
        out.to_client[..],
        [
            txt(r#"461-12[1,{"_placeholder":true,"num":0}]"#),
            WsMsg::Binary(Bytes::from_static(b"\x01")),
        ]
    );
    // Binary from the client: the array and attachments as they came.
    let mut out = feed(
        &mut r,
        r#"452-["m",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#,
    );
    assert!(out.ops.is_empty());
    r.on_client(
        WsMsg::Binary(Bytes::from_static(b"a")),
        Instant::now(),
        &mut out,
    );
    r.on_client(
        WsMsg::Binary(Bytes::from_static(b"b")),
        Instant::now(),
        &mut out,
    );
    assert_eq!(
        out.ops,
        vec![ClientOp::Emit {
            scope: Bytes::from("/"),
            values: crate::frame::Shaped {
                list: Bytes::from(
                    r#"["m",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#
                ),
                attachments: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            },
            reply: None,
        }]
    );
    // A placeholder naming no attachment is the reference parser's "illegal attachments".
    let mut out = feed(&mut r, r#"451-["m",{"_placeholder":true,"num":3}]"#);
    r.on_client(
        WsMsg::Binary(Bytes::from_static(b"a")),
        Instant::now(),
        &mut out,
    );
    assert_eq!(out.close.map(|c| c.code), Some(1002));
}

#[test]
fn shaped_backend_ack_requests_are_answered_by_the_client() {
    let mut r = shaped_role();
    feed(&mut r, "40");
    backend(&mut r, BackendEvent::Ready { session: None });
    backend(
        &mut r,
        BackendEvent::Joined {
            scope: Bytes::from("/"),
            data: None,
        },
    );
    let out = backend(
        &mut r,
        BackendEvent::Emit {
            scope: Bytes::from("/"),
            values: crate::frame::Shaped {
                list: Bytes::from(r#"["q",1,2]"#),
                attachments: vec![],
            },
            ack: Some(Bytes::from("9/")),
        },
    );
    assert_eq!(texts(&out), [r#"420["q",1,2]"#]);
    let out = feed(&mut r, r#"430["a","b"]"#);
    assert_eq!(
        out.ops,
        vec![ClientOp::Answer {
            token: Bytes::from("9/"),
            values: crate::frame::Shaped {
                list: Bytes::from(r#"["a","b"]"#),
                attachments: vec![],
            },
        }]
    );
    // Leaving the last namespace keeps the connection, as socket.io does.
    let out = feed(&mut r, "41");
    assert_eq!(
        out.ops,
        vec![ClientOp::Leave {
            scope: Bytes::from("/")
        }]
    );
    assert!(out.close.is_none());
}

/// An unsubscribe that comes before the backend confirmed the subscribe answers both acks:
/// the subscribe's with an error (the confirmation will find nothing), the unsubscribe's
/// with `[null]`.
#[test]
fn an_unsubscribe_before_the_confirmation_answers_the_subscribes_ack() {
    let mut r = ready();
    let out = feed(&mut r, r#"421["subscribe","a"]"#);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    let sub = *sub;
    let out = feed(&mut r, r#"422["unsubscribe","a"]"#);
    assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub }]);
    assert_eq!(
        texts(&out),
        [
            r#"431[{"error":{"name":"SubscribeError","message":"unsubscribed before the subscription was confirmed"}}]"#,
            "432[null]"
        ]
    );
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert!(out.to_client.is_empty(), "{:?}", texts(&out));
}

/// A repeat of a subscribe the backend has not answered yet waits for that answer: both
/// acks say `[null]` on the confirmation, or both the error on a refusal; once confirmed, a
/// repeat is answered at once.
#[test]
fn a_repeated_subscribe_gets_the_first_ones_outcome() {
    let mut r = ready();
    let out = feed(&mut r, r#"421["subscribe","a"]"#);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    let sub = *sub;
    let again = feed(&mut r, r#"422["subscribe","a"]"#);
    assert!(again.ops.is_empty() && again.to_client.is_empty());
    let out = backend(
        &mut r,
        BackendEvent::SubscribeFailed {
            sub,
            reason: ErrorInfo::new(ErrorKind::Unauthorized, "no"),
        },
    );
    assert_eq!(
        texts(&out),
        [
            r#"431[{"error":{"name":"SubscribeError","message":"no"}}]"#,
            r#"432[{"error":{"name":"SubscribeError","message":"no"}}]"#
        ]
    );
    // Confirmed: the waiting repeat on the confirmation, a later one at once.
    let out = feed(&mut r, r#"423["subscribe","b"]"#);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    let sub = *sub;
    feed(&mut r, r#"424["subscribe","b"]"#);
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert_eq!(texts(&out), ["433[null]", "434[null]"]);
    assert_eq!(
        texts(&feed(&mut r, r#"425["subscribe","b"]"#)),
        ["435[null]"]
    );
}

/// Repeats waiting for one subscription's answer are bounded: past 64 (the first one's
/// included), a repeat is answered at once with an error, and the confirmation answers the
/// ones that waited.
#[test]
fn waiting_repeats_of_a_subscribe_are_bounded() {
    let mut r = ready();
    let out = feed(&mut r, r#"420["subscribe","a"]"#);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    let sub = *sub;
    for id in 1..64 {
        assert!(
            feed(&mut r, &format!(r#"42{id}["subscribe","a"]"#))
                .to_client
                .is_empty()
        );
    }
    assert_eq!(
        texts(&feed(&mut r, r#"4264["subscribe","a"]"#)),
        [
            r#"4364[{"error":{"name":"SubscribeError","message":"too many subscribe requests waiting for this topic"}}]"#
        ]
    );
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert_eq!(out.to_client.len(), 64);
}

/// A backend that ends the session for good (a kick: Action Cable's `reconnect:false`, a
/// Socket.IO backend's own `socket.disconnect()`) is `41` for each joined namespace ("io
/// server disconnect": no reconnection) and a normal close; one that may come back is the
/// 1011 close socket.io-client reconnects from.
#[test]
fn a_backends_kick_is_a_server_disconnect() {
    let mut r = ready();
    let out = backend(
        &mut r,
        BackendEvent::Closing {
            reason: ErrorInfo::new(ErrorKind::Unavailable, "kicked"),
            retry: false,
        },
    );
    assert_eq!(texts(&out), ["41"]);
    assert_eq!(out.close.map(|c| c.code), Some(1000));
    let mut r = ready();
    let out = backend(
        &mut r,
        BackendEvent::Closing {
            reason: ErrorInfo::new(ErrorKind::Unavailable, "restart"),
            retry: true,
        },
    );
    assert!(out.to_client.is_empty());
    assert_eq!(out.close.map(|c| c.code), Some(1011));
}
