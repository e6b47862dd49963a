//! Unit tests of the STOMP client role.

use std::time::Instant;

use super::*;
use crate::dialect::ClientRole;
use crate::frame::{Payload, PayloadKind};

fn s(m: &WsMsg) -> String {
    String::from_utf8(m.bytes().to_vec()).unwrap()
}
fn txt(s: &str) -> WsMsg {
    WsMsg::Text(Bytes::from(s.to_owned()))
}

fn connected(settings: Settings, creds: Credentials) -> (StompClient, String) {
    let mut c = StompClient::new(settings, creds);
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    let connect = s(&out.to_backend[0]);
    let mut out = ClientOut::default();
    c.on_backend(txt("CONNECTED\nversion:1.2\nheart-beat:4000,4000\nsession:b-1\nserver:RabbitMQ/3.10.8\n\n\0"), Instant::now(), &mut out);
    assert_eq!(
        out.events,
        vec![BackendEvent::Ready {
            session: Some(Bytes::from("b-1"))
        }]
    );
    (c, connect)
}

#[test]
fn connect_carries_token_as_passcode_or_authorization() {
    let creds = Credentials {
        token: Some(Bytes::from("tok")),
        ..Default::default()
    };
    let (_, f) = connected(
        Settings {
            login: Some("svc".into()),
            ..Default::default()
        },
        creds.clone(),
    );
    assert_eq!(
        f,
        "CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nheart-beat:10000,10000\nlogin:svc\npasscode:tok\n\n\0"
    );
    let (_, f) = connected(
        Settings {
            token_as: TokenAs::Authorization,
            login: Some("guest".into()),
            passcode: Some("guest".into()),
            ..Default::default()
        },
        creds,
    );
    assert_eq!(
        f,
        "CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nheart-beat:10000,10000\nAuthorization:Bearer tok\nlogin:guest\npasscode:guest\n\n\0"
    );
    let creds = Credentials {
        login: Some(Bytes::from("ann")),
        passcode: Some(Bytes::from("pw")),
        ..Default::default()
    };
    let (_, f) = connected(Settings::default(), creds);
    assert!(f.contains("login:ann\npasscode:pw\n"));
}

#[test]
fn heartbeat_negotiated_from_connected() {
    let (c, _) = connected(Settings::default(), Credentials::default());
    assert_eq!(
        c.keepalive().send_every,
        Some(Duration::from_millis(10_000))
    );
    assert_eq!(
        c.keepalive().expect_within,
        Some(Duration::from_millis(20_000))
    );
}

/// `ClientOp::Subscribe` of sub 3 to `/topic/a`: what the role wrote.
fn subscribe_3_to_a(c: &mut StompClient, now: Instant) -> ClientOut {
    let mut out = ClientOut::default();
    let op = ClientOp::Subscribe {
        sub: 3,
        channel: Bytes::from("/topic/a"),
        params: Default::default(),
    };
    c.on_op(op, now, &mut out);
    out
}

#[test]
fn subscribe_confirmed_by_receipt_and_message_delivered() {
    let (mut c, _) = connected(Settings::default(), Credentials::default());
    let now = Instant::now();
    let out = subscribe_3_to_a(&mut c, now);
    assert_eq!(
        s(&out.to_backend[0]),
        "SUBSCRIBE\nid:sub-3\ndestination:/topic/a\nack:auto\nreceipt:sb-1\n\n\0"
    );
    let mut out = ClientOut::default();
    c.on_backend(txt("RECEIPT\nreceipt-id:sb-1\n\n\0MESSAGE\nsubscription:sub-3\nmessage-id:m1\ndestination:/topic/a\ncontent-type:application/json\ncontent-length:7\n\n{\"a\":1}\0"), now, &mut out);
    assert_eq!(
        out.events[0],
        BackendEvent::Subscribed { sub: 3, data: None }
    );
    assert!(
        matches!(&out.events[1], BackendEvent::Message { sub: Some(3), payload, .. } if payload.data == "{\"a\":1}" && payload.kind == PayloadKind::Json)
    );
}

#[test]
fn publish_receipt_and_error_correlate() {
    let (mut c, _) = connected(Settings::default(), Credentials::default());
    let now = Instant::now();
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from("/topic/t"),
            event: Some(Bytes::from("typing")),
            args: vec![],
            payload: Payload::json(Bytes::from("{}")),
            reply: Some(Reply::receipt(9)),
            broadcast: false,
            sub: None,
        },
        now,
        &mut out,
    );
    assert_eq!(
        s(&out.to_backend[0]),
        "SEND\ndestination:/topic/t\ncontent-type:application/json\ncontent-length:2\nevent:typing\nreceipt:sb-1\n\n{}\0"
    );
    let mut out = ClientOut::default();
    c.on_backend(txt("RECEIPT\nreceipt-id:sb-1\n\n\0"), now, &mut out);
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 9,
            result: Ok(None)
        }]
    );
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from("/queue/x"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            reply: Some(Reply::receipt(10)),
            broadcast: false,
            sub: None,
        },
        now,
        &mut out,
    );
    let mut out = ClientOut::default();
    c.on_backend(
        txt("ERROR\nmessage:access refused\nreceipt-id:sb-2\n\nno\0"),
        now,
        &mut out,
    );
    assert!(
        matches!(&out.events[0], BackendEvent::Reply { id: 10, result: Err(e) } if e.message == "access refused")
    );
    assert!(matches!(&out.events[1], BackendEvent::Error(e) if e.kind == ErrorKind::Protocol));
    assert!(out.close.is_some());
}

#[test]
fn error_before_connected_is_unauthorized() {
    let mut c = StompClient::new(Settings::default(), Credentials::default());
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    let mut out = ClientOut::default();
    c.on_backend(
        txt("ERROR\nmessage:Bad CONNECT\n\nAccess refused for user 'x'\0"),
        Instant::now(),
        &mut out,
    );
    assert!(
        matches!(&out.events[0], BackendEvent::Error(e) if e.kind == ErrorKind::Unauthorized && e.message == "Bad CONNECT")
    );
}

#[test]
fn ops_before_connected_are_queued_and_receipts_expire() {
    let mut c = StompClient::new(
        Settings {
            receipt_timeout: Duration::from_millis(10),
            ..Default::default()
        },
        Credentials::default(),
    );
    let now = Instant::now();
    let mut out = ClientOut::default();
    c.start(now, &mut out);
    c.on_op(
        ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/topic/a"),
            params: Default::default(),
        },
        now,
        &mut out,
    );
    assert_eq!(out.to_backend.len(), 1);
    let mut out = ClientOut::default();
    c.on_backend(txt("CONNECTED\nversion:1.2\n\n\0"), now, &mut out);
    assert!(s(&out.to_backend[0]).starts_with("SUBSCRIBE\nid:sub-1\n"));
    let mut out = ClientOut::default();
    c.expire(now + Duration::from_millis(20), &mut out);
    assert!(
        matches!(&out.events[0], BackendEvent::SubscribeFailed { sub: 1, reason } if reason.kind == ErrorKind::Timeout)
    );
}

fn publish(body: &str, reply: Option<ReplyId>) -> ClientOp {
    ClientOp::Publish {
        meta: Vec::new(),
        channel: Bytes::from("/queue/q"),
        event: None,
        args: vec![],
        payload: Payload::text(Bytes::from(body.to_owned())),
        reply: reply.map(Reply::receipt),
        broadcast: false,
        sub: None,
    }
}

#[test]
fn ops_before_connected_are_held_within_a_byte_budget() {
    // Each op holds 8 bytes of channel plus its body.
    let settings = Settings {
        max_queued_bytes: 100,
        ..Default::default()
    };
    let now = Instant::now();
    // Exactly the budget is held, and all of it goes out once CONNECTED arrives.
    let mut c = StompClient::new(settings.clone(), Credentials::default());
    let mut out = ClientOut::default();
    c.start(now, &mut out);
    c.on_op(publish(&"a".repeat(42), None), now, &mut out);
    c.on_op(publish(&"b".repeat(42), Some(1)), now, &mut out);
    assert!(out.events.is_empty() && out.close.is_none(), "{out:?}");
    assert_eq!(
        out.to_backend.len(),
        1,
        "only CONNECT is sent before CONNECTED"
    );
    let mut out = ClientOut::default();
    c.on_backend(txt("CONNECTED\nversion:1.2\n\n\0"), now, &mut out);
    assert_eq!(out.to_backend.len(), 2);
    assert!(s(&out.to_backend[1]).ends_with(&format!("\n\n{}\0", "b".repeat(42))));
    let mut out = ClientOut::default();
    c.on_op(publish(&"c".repeat(500), None), now, &mut out);
    assert_eq!(out.to_backend.len(), 1, "a connected leg holds nothing");

    // One byte over fails the leg like the count limit: kind Limit, queued replies failed.
    let mut c = StompClient::new(settings, Credentials::default());
    let mut out = ClientOut::default();
    c.start(now, &mut out);
    c.on_op(publish(&"a".repeat(42), Some(7)), now, &mut out);
    c.on_op(publish(&"b".repeat(43), None), now, &mut out);
    assert!(
        matches!(&out.events[..], [
            BackendEvent::Reply { id: 7, result: Err(r) },
            BackendEvent::Error(e),
        ] if r.kind == ErrorKind::Limit && e.kind == ErrorKind::Limit
            && e.message == "too many bytes before the broker was ready"),
        "{out:?}"
    );
    assert!(out.close.is_some());
}

#[test]
fn a_full_receipt_table_refuses_the_op_instead_of_sending_it() {
    let (mut c, _) = connected(Settings::default(), Credentials::default());
    c.pending = Pending::new(1);
    let now = Instant::now();
    let mut out = ClientOut::default();
    c.on_op(publish("a", Some(1)), now, &mut out);
    c.on_op(publish("b", Some(2)), now, &mut out);
    c.on_op(
        ClientOp::Subscribe {
            sub: 3,
            channel: Bytes::from("/topic/a"),
            params: Default::default(),
        },
        now,
        &mut out,
    );
    assert_eq!(out.to_backend.len(), 1, "{out:?}");
    assert!(s(&out.to_backend[0]).contains("\nreceipt:sb-1\n"));
    assert!(
        matches!(&out.events[..], [
            BackendEvent::Reply { id: 2, result: Err(e) },
            BackendEvent::SubscribeFailed { sub: 3, reason: r },
        ] if e.kind == ErrorKind::Limit && r.kind == ErrorKind::Limit),
        "{out:?}"
    );
    assert!(out.close.is_none(), "the leg goes on");
    let mut out = ClientOut::default();
    c.on_backend(txt("RECEIPT\nreceipt-id:sb-1\n\n\0"), now, &mut out);
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 1,
            result: Ok(None)
        }]
    );
}

#[test]
fn client_ack_mode_acks_on_delivery_or_forwards_token() {
    let settings = Settings {
        client_ack: true,
        ack_on_delivery: true,
        ..Default::default()
    };
    let (mut c, _) = connected(settings, Credentials::default());
    let mut out = ClientOut::default();
    c.on_backend(
        txt("MESSAGE\nsubscription:sub-1\nmessage-id:m1\ndestination:/topic/a\nack:a-1\n\nhi\0"),
        Instant::now(),
        &mut out,
    );
    assert_eq!(s(&out.to_backend[0]), "ACK\nid:a-1\n\n\0");
    let settings = Settings {
        client_ack: true,
        ..Default::default()
    };
    let (mut c, _) = connected(settings, Credentials::default());
    let mut out = ClientOut::default();
    c.on_backend(
        txt("MESSAGE\nsubscription:sub-1\nmessage-id:m1\ndestination:/topic/a\nack:a-1\n\nhi\0"),
        Instant::now(),
        &mut out,
    );
    assert!(out.to_backend.is_empty());
    assert!(matches!(&out.events[0], BackendEvent::Message { ack: Some(t), .. } if t == "a-1"));
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Ack {
            token: Bytes::from("a-1"),
            positive: false,
            result: None,
        },
        Instant::now(),
        &mut out,
    );
    assert_eq!(s(&out.to_backend[0]), "NACK\nid:a-1\n\n\0");
}

fn connected_as(version: &str) -> StompClient {
    let settings = Settings {
        client_ack: true,
        ..Default::default()
    };
    let mut c = StompClient::new(settings, Credentials::default());
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    let mut out = ClientOut::default();
    c.on_backend(
        txt(&format!("CONNECTED\n{version}\n\0")),
        Instant::now(),
        &mut out,
    );
    assert!(
        matches!(out.events[0], BackendEvent::Ready { .. }),
        "{out:?}"
    );
    c
}

fn ack_frames(c: &mut StompClient, message: &str) -> Vec<String> {
    let mut out = ClientOut::default();
    c.on_backend(txt(message), Instant::now(), &mut out);
    let Some(BackendEvent::Message {
        ack: Some(token), ..
    }) = out.events.pop()
    else {
        panic!("{out:?}")
    };
    let mut frames = Vec::new();
    for positive in [true, false] {
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Ack {
                token: token.clone(),
                positive,
                result: None,
            },
            Instant::now(),
            &mut out,
        );
        frames.extend(out.to_backend.iter().map(s));
    }
    frames
}

#[test]
fn acks_follow_the_brokers_version() {
    let m = "MESSAGE\nsubscription:sub-4\nmessage-id:m-7\ndestination:/topic/a\n\nhi\0";
    let mut c = connected_as("version:1.1\n");
    assert_eq!(
        ack_frames(&mut c, m),
        [
            "ACK\nsubscription:sub-4\nmessage-id:m-7\n\n\0",
            "NACK\nsubscription:sub-4\nmessage-id:m-7\n\n\0"
        ]
    );
    // 1.0 (no `version` header) has no NACK.
    let mut c = connected_as("");
    assert_eq!(ack_frames(&mut c, m), ["ACK\nmessage-id:m-7\n\n\0"]);
}

#[test]
fn an_unknown_broker_version_fails_the_leg() {
    let mut c = StompClient::new(Settings::default(), Credentials::default());
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    let mut out = ClientOut::default();
    c.on_backend(
        txt("CONNECTED\nversion:3.0\n\n\0"),
        Instant::now(),
        &mut out,
    );
    assert!(
        matches!(&out.events[0], BackendEvent::Error(e) if e.kind == ErrorKind::Protocol && e.message.starts_with(b"broker answered with unsupported STOMP version 3.0")),
        "{out:?}"
    );
}

#[test]
fn a_senders_content_type_in_meta_replaces_the_derived_one() {
    let (mut c, _) = connected(Settings::default(), Credentials::default());
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Publish {
            meta: vec![(Bytes::from("content-type"), Bytes::from("text/csv"))],
            channel: Bytes::from("/queue/a"),
            event: None,
            args: vec![],
            payload: Payload::text(Bytes::from("a,b")),
            reply: None,
            broadcast: false,
            sub: None,
        },
        Instant::now(),
        &mut out,
    );
    assert_eq!(
        s(&out.to_backend[0]),
        "SEND\ndestination:/queue/a\ncontent-length:3\ncontent-type:text/csv\n\na,b\0"
    );
}

/// A broker MESSAGE that says `application/json` over a body that is not JSON (empty, a
/// Python dict's repr) is passed on as text, its content-type kept in the meta: as JSON it
/// would be pasted raw into other dialects' frames.
#[test]
fn a_json_content_type_over_a_body_that_is_not_json_is_text() {
    let (mut c, _) = connected(Settings::default(), Credentials::default());
    let now = Instant::now();
    subscribe_3_to_a(&mut c, now);
    for (body, kind) in [
        ("", PayloadKind::Text),
        ("{'a': 1}", PayloadKind::Text),
        ("{\"a\":1}", PayloadKind::Json),
    ] {
        let mut out = ClientOut::default();
        let frame = format!(
            "MESSAGE\nsubscription:sub-3\nmessage-id:m1\ndestination:/topic/a\ncontent-type:application/json\ncontent-length:{}\n\n{body}\0",
            body.len()
        );
        c.on_backend(txt(&frame), now, &mut out);
        let Some(BackendEvent::Message { payload, meta, .. }) = out.events.last() else {
            panic!("{body}: {:?}", out.events)
        };
        assert_eq!(
            (payload.data.as_ref(), payload.kind),
            (body.as_bytes(), kind)
        );
        let ct = meta
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone());
        let want = (kind == PayloadKind::Text).then(|| Bytes::from("application/json"));
        assert_eq!(ct, want, "{body}");
    }
}
