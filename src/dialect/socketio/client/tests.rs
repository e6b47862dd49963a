//! Unit tests of the Socket.IO client role.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::dialect::ClientRole;
use crate::frame::{Payload, PayloadKind};

/// A publish with no event, extra arguments or headers.
fn publish(channel: &'static str, payload: Payload, reply: Option<ReplyId>) -> ClientOp {
    ClientOp::Publish {
        meta: Vec::new(),
        channel: Bytes::from(channel),
        event: None,
        args: vec![],
        payload,
        reply: reply.map(Reply::receipt),
        broadcast: false,
        sub: None,
    }
}

fn txt(s: &str) -> WsMsg {
    WsMsg::Text(Bytes::from(s.to_owned()))
}
fn s(m: &WsMsg) -> String {
    String::from_utf8(m.bytes().to_vec()).unwrap()
}
const OPEN: &str =
    r#"0{"sid":"x","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}"#;

fn connected(settings: Settings) -> SocketioClient {
    let creds = Credentials {
        token: Some(Bytes::from("t\"k")),
        ..Default::default()
    };
    let mut c = SocketioClient::new(settings, creds);
    let mut out = ClientOut::default();
    c.on_backend(txt(OPEN), Instant::now(), &mut out);
    assert_eq!(s(&out.to_backend[0]), r#"40{"token":"t\"k"}"#);
    assert_eq!(
        c.keepalive().expect_within,
        Some(Duration::from_millis(500))
    );
    let mut out = ClientOut::default();
    c.on_backend(txt(r#"40{"sid":"abc"}"#), Instant::now(), &mut out);
    assert_eq!(
        out.events,
        vec![BackendEvent::Ready {
            session: Some(Bytes::from("abc"))
        }]
    );
    c
}

#[test]
fn ping_is_answered_with_pong() {
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    c.on_backend(txt("2"), Instant::now(), &mut out);
    assert_eq!(s(&out.to_backend[0]), "3");
}

#[test]
fn ops_before_ready_are_queued() {
    let mut c = SocketioClient::new(Settings::default(), Credentials::default());
    let mut out = ClientOut::default();
    c.on_op(
        publish("a", Payload::json(Bytes::from("1")), None),
        Instant::now(),
        &mut out,
    );
    assert!(out.to_backend.is_empty());
    c.on_backend(txt(OPEN), Instant::now(), &mut out);
    assert_eq!(s(&out.to_backend[0]), "40");
    let mut out = ClientOut::default();
    c.on_backend(txt(r#"40{"sid":"abc"}"#), Instant::now(), &mut out);
    assert_eq!(s(&out.to_backend[0]), r#"42["a",1]"#);
}

#[test]
fn connect_error_is_unauthorized_with_backend_message() {
    let mut c = SocketioClient::new(Settings::default(), Credentials::default());
    let mut out = ClientOut::default();
    c.on_backend(txt(OPEN), Instant::now(), &mut out);
    let mut out = ClientOut::default();
    c.on_backend(
        txt(r#"44{"message":"invalid token","data":{"reason":"jwt"}}"#),
        Instant::now(),
        &mut out,
    );
    let BackendEvent::Error(e) = &out.events[0] else {
        panic!("{:?}", out.events)
    };
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.message, "invalid token");
    assert_eq!(e.detail.as_ref().unwrap().data, r#"{"reason":"jwt"}"#);
}

#[test]
fn event_becomes_message_with_zero_copy_payload() {
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    let msg = Bytes::from(r#"42["message_created",{"id":17}]"#);
    c.on_backend(WsMsg::Text(msg.clone()), Instant::now(), &mut out);
    let BackendEvent::Message {
        channel, payload, ..
    } = &out.events[0]
    else {
        panic!()
    };
    assert_eq!(channel, "message_created");
    assert_eq!(payload.data, r#"{"id":17}"#);
    let range = msg.as_ptr() as usize..msg.as_ptr() as usize + msg.len();
    assert!(range.contains(&(payload.data.as_ptr() as usize)));
}

#[test]
fn publish_with_ack_waits_for_backend_ack_and_times_out() {
    let mut c = connected(Settings {
        acks: true,
        ack_timeout: Duration::from_millis(50),
        ..Default::default()
    });
    let now = Instant::now();
    let mut out = ClientOut::default();
    c.on_op(
        publish("m", Payload::json(Bytes::from("{}")), Some(7)),
        now,
        &mut out,
    );
    assert_eq!(s(&out.to_backend[0]), r#"420["m",{}]"#);
    assert!(out.events.is_empty());
    let mut out = ClientOut::default();
    c.on_backend(txt(r#"430[{"ok":true}]"#), now, &mut out);
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 7,
            result: Ok(Some(Payload::json(Bytes::from(r#"{"ok":true}"#))))
        }]
    );
    let mut out = ClientOut::default();
    c.on_op(
        publish("m", Payload::json(Bytes::from("{}")), Some(8)),
        now,
        &mut out,
    );
    let mut out = ClientOut::default();
    c.expire(now + Duration::from_millis(60), &mut out);
    assert!(
        matches!(&out.events[0], BackendEvent::Reply { id: 8, result: Err(e) } if e.kind == ErrorKind::Timeout)
    );
}

#[test]
fn a_full_ack_table_refuses_the_emit_instead_of_sending_it() {
    let mut c = connected(Settings {
        acks: true,
        ..Default::default()
    });
    c.pending = Pending::new(1);
    let now = Instant::now();
    let mut out = ClientOut::default();
    for reply in [7, 8] {
        c.on_op(publish("m", Payload::null(), Some(reply)), now, &mut out);
    }
    assert_eq!(
        out.to_backend.iter().map(s).collect::<Vec<_>>(),
        [r#"420["m",null]"#]
    );
    assert!(
        matches!(&out.events[..], [BackendEvent::Reply { id: 8, result: Err(e) }] if e.kind == ErrorKind::Limit),
        "{out:?}"
    );
    assert!(out.close.is_none(), "the leg goes on");
    // The next emit that fits gets the next ack id.
    let mut out = ClientOut::default();
    c.on_backend(txt("430[]"), now, &mut out);
    assert!(
        matches!(
            &out.events[..],
            [BackendEvent::Reply {
                id: 7,
                result: Ok(_)
            }]
        ),
        "{out:?}"
    );
    let mut out = ClientOut::default();
    c.on_op(publish("m", Payload::null(), Some(9)), now, &mut out);
    assert_eq!(s(&out.to_backend[0]), r#"421["m",null]"#);
}

#[test]
fn publish_without_acks_is_confirmed_after_write() {
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from("m"),
            event: None,
            args: vec![Bytes::from("\"42\"")],
            payload: Payload::text(Bytes::from("hi")),
            reply: Some(Reply::receipt(1)),
            broadcast: false,
            sub: None,
        },
        Instant::now(),
        &mut out,
    );
    assert_eq!(s(&out.to_backend[0]), r#"42["m","42","hi"]"#);
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 1,
            result: Ok(None)
        }]
    );
}

#[test]
fn a_request_for_data_waits_for_the_backends_answer_without_acks() {
    // `upstream.acks` is off: receipts are confirmed on write, but a client that expects
    // data (a Socket.IO ack) gets the backend's ack arguments.
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from("m"),
            event: None,
            args: vec![],
            payload: Payload::json(Bytes::from("1")),
            reply: Some(Reply::data(5)),
            broadcast: false,
            sub: None,
        },
        Instant::now(),
        &mut out,
    );
    assert_eq!(s(&out.to_backend[0]), r#"420["m",1]"#);
    assert!(out.events.is_empty(), "{:?}", out.events);
    let mut out = ClientOut::default();
    c.on_backend(txt(r#"430[{"ok":true}]"#), Instant::now(), &mut out);
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 5,
            result: Ok(Some(Payload::json(Bytes::from(r#"{"ok":true}"#))))
        }]
    );
}

#[test]
fn binary_payload_becomes_binary_event_and_back() {
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    c.on_op(
        publish("up", Payload::binary(Bytes::from_static(&[1, 2])), None),
        Instant::now(),
        &mut out,
    );
    assert_eq!(
        s(&out.to_backend[0]),
        r#"451-["up",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(
        out.to_backend[1],
        WsMsg::Binary(Bytes::from_static(&[1, 2]))
    );
    let mut out = ClientOut::default();
    c.on_backend(
        txt(r#"451-["echo",{"_placeholder":true,"num":0}]"#),
        Instant::now(),
        &mut out,
    );
    assert!(out.events.is_empty());
    c.on_backend(
        WsMsg::Binary(Bytes::from_static(&[9])),
        Instant::now(),
        &mut out,
    );
    assert!(
        matches!(&out.events[0], BackendEvent::Message { payload, .. } if payload.kind == PayloadKind::Binary && payload.data == [9][..])
    );
}

#[test]
fn oversize_publish_is_refused_locally() {
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    let big = Bytes::from(format!("\"{}\"", "x".repeat(2000)));
    c.on_op(
        publish("m", Payload::json(big), Some(3)),
        Instant::now(),
        &mut out,
    );
    assert!(out.to_backend.is_empty());
    assert!(
        matches!(&out.events[0], BackendEvent::Reply { id: 3, result: Err(e) } if e.kind == ErrorKind::Limit)
    );
}

fn feed(c: &mut SocketioClient, wire: &str) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_backend(txt(wire), Instant::now(), &mut out);
    out
}

fn feed_bin(c: &mut SocketioClient, data: &'static [u8]) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_backend(
        WsMsg::Binary(Bytes::from_static(data)),
        Instant::now(),
        &mut out,
    );
    out
}

/// Connected with a CONNECT reply of our choosing (e.g. with a recovery `pid`).
fn connected_with(settings: Settings, reply: &str) -> SocketioClient {
    let mut c = SocketioClient::new(settings, Credentials::default());
    feed(&mut c, OPEN);
    let out = feed(&mut c, reply);
    assert!(matches!(out.events[..], [BackendEvent::Ready { .. }]));
    c
}

/// The one Message of `out`: (args, payload).
fn message(out: &ClientOut) -> (Vec<Bytes>, Payload) {
    match &out.events[..] {
        [BackendEvent::Message { args, payload, .. }] => (args.clone(), payload.clone()),
        other => panic!("{other:?}"),
    }
}

const P0: &str = r#"{"_placeholder":true,"num":0}"#;

#[test]
fn recovery_offset_is_stripped_when_the_last_argument_is_a_string() {
    let mut c = connected_with(Settings::default(), r#"40{"sid":"abc","pid":"p-1"}"#);
    // The offset alone: the application emitted no argument at all.
    let (args, payload) = message(&feed(&mut c, r#"42["ev","MzUPkW0"]"#));
    assert!(args.is_empty());
    assert_eq!(payload, Payload::null());
    let (args, payload) = message(&feed(&mut c, r#"42["ev",1,{"t":"hi"},"MzUPkW1"]"#));
    assert_eq!(args, [Bytes::from("1")]);
    assert_eq!(payload.data, r#"{"t":"hi"}"#);
    // Not a string: not an offset (an event the server did not store).
    let (_, payload) = message(&feed(&mut c, r#"42["ev",{"t":"hi"}]"#));
    assert_eq!(payload.data, r#"{"t":"hi"}"#);
    // Events with an ack id are never stored, so carry no offset.
    let (_, payload) = message(&feed(&mut c, r#"427["ev","x"]"#));
    assert_eq!(payload.data, r#""x""#);
    // Binary events are stored too: the offset follows the placeholder.
    assert!(
        feed(&mut c, &format!(r#"451-["ev",{P0},"MzUPkW2"]"#))
            .events
            .is_empty()
    );
    let (args, payload) = message(&feed_bin(&mut c, &[7]));
    assert!(args.is_empty());
    assert_eq!(payload, Payload::binary(Bytes::from_static(&[7])));

    // Without a pid nothing is stripped.
    let mut c = connected_with(Settings::default(), r#"40{"sid":"abc"}"#);
    let (_, payload) = message(&feed(&mut c, r#"42["ev","MzUPkW0"]"#));
    assert_eq!(payload.data, r#""MzUPkW0""#);
}

#[test]
fn binary_that_one_payload_cannot_carry_is_refused_not_dropped() {
    let mut c = connected(Settings::default());
    let cases: &[(String, &[&'static [u8]])] = &[
        // Nested inside an argument.
        (format!(r#"451-["ev",{{"file":{P0}}}]"#), &[b"a"]),
        // Not the last argument.
        (format!(r#"451-["ev",{P0},"x"]"#), &[b"a"]),
        // Two binaries.
        (
            format!(r#"452-["ev",{P0},{{"_placeholder":true,"num":1}}]"#),
            &[b"a", b"b"],
        ),
        // An attachment no placeholder names.
        (r#"451-["ev","x"]"#.to_owned(), &[b"a"]),
        (format!(r#"452-["ev",{P0}]"#), &[b"a", b"b"]),
    ];
    for (wire, atts) in cases {
        let mut out = feed(&mut c, wire);
        for a in *atts {
            assert!(out.events.is_empty(), "{wire}: {:?}", out.events);
            out = feed_bin(&mut c, a);
        }
        assert!(
            matches!(&out.events[..], [BackendEvent::Dropped(e)] if e.kind == ErrorKind::Untranslatable),
            "{wire}: {:?}",
            out.events
        );
        assert!(out.close.is_none(), "{wire}: refusing is not fatal");
    }
    // The backend asked for an ack: it hears the refusal, not a receipt.
    feed(&mut c, &format!(r#"451-7["ev",{{"a":{P0}}}]"#));
    let out = feed_bin(&mut c, b"a");
    assert!(
        matches!(&out.events[..], [BackendEvent::Dropped(e)] if e.message.starts_with(b"backend event `ev`: binary data"))
    );
    let ack = s(&out.to_backend[0]);
    assert!(
        ack.starts_with(r#"437[{"error":{"name":"untranslatable","message":"binary data"#),
        "{ack}"
    );
    // The session goes on.
    let (_, payload) = message(&feed(&mut c, r#"42["ev",1]"#));
    assert_eq!(payload.data, "1");
    // What the reference reconstructor takes for a placeholder (extra members allowed)
    // maps when it is the whole last argument.
    feed(
        &mut c,
        r#"451-["ev","id",{"num":0,"_placeholder":true,"x":1}]"#,
    );
    let (args, payload) = message(&feed_bin(&mut c, b"z"));
    assert_eq!(args, [Bytes::from(r#""id""#)]);
    assert_eq!(payload, Payload::binary(Bytes::from("z")));
    // Placeholders in a plain EVENT are just data, as in the reference parser.
    let (_, payload) = message(&feed(&mut c, &format!(r#"42["ev",{P0}]"#)));
    assert_eq!(payload, Payload::json(Bytes::from(P0)));
}

#[test]
fn placeholder_naming_no_attachment_is_a_protocol_error() {
    for (wire, att) in [
        (r#"451-["ev",{"_placeholder":true,"num":1}]"#, Some(b"a")),
        (r#"451-["ev",{"_placeholder":true,"num":"0"}]"#, Some(b"a")),
        // Declares no attachment but refers to one.
        (r#"450-["ev",{"_placeholder":true,"num":0}]"#, None),
    ] {
        let mut c = connected(Settings::default());
        let mut out = feed(&mut c, wire);
        if let Some(a) = att {
            out = feed_bin(&mut c, a);
        }
        assert!(
            matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Protocol),
            "{wire}: {:?}",
            out.events
        );
        assert!(out.close.is_some());
    }
    // More attachments than the limit: refused at the count, before any is buffered.
    let mut c = connected(Settings {
        max_attachments: 2,
        ..Default::default()
    });
    let out = feed(&mut c, r#"453-["ev",1]"#);
    assert!(matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Protocol));
}

#[test]
fn binary_acks_map_only_a_lone_attachment() {
    let publish = |c: &mut SocketioClient, rid| {
        let mut out = ClientOut::default();
        c.on_op(
            publish("m", Payload::null(), Some(rid)),
            Instant::now(),
            &mut out,
        );
    };
    let mut c = connected(Settings {
        acks: true,
        ..Default::default()
    });
    publish(&mut c, 1);
    feed(&mut c, &format!("461-0[{P0}]"));
    let out = feed_bin(&mut c, b"bin");
    assert_eq!(
        out.events,
        [BackendEvent::Reply {
            id: 1,
            result: Ok(Some(Payload::binary(Bytes::from("bin"))))
        }]
    );
    publish(&mut c, 2);
    feed(&mut c, &format!("461-1[1,{P0}]"));
    let out = feed_bin(&mut c, b"bin");
    assert!(
        matches!(&out.events[..], [BackendEvent::Reply { id: 2, result: Err(e) }] if e.kind == ErrorKind::Untranslatable),
        "{:?}",
        out.events
    );
    assert!(out.close.is_none());
    publish(&mut c, 3);
    publish(&mut c, 4);
    feed(&mut c, r#"461-2[{"_placeholder":true,"num":5}]"#);
    let out = feed_bin(&mut c, b"bin");
    assert!(
        matches!(&out.events[..], [
            BackendEvent::Reply { id: 3, result: Err(e) },
            BackendEvent::Reply { id: 4, result: Err(_) },
            BackendEvent::Error(_),
        ] if e.kind == ErrorKind::Protocol),
        "{:?}",
        out.events
    );
}

#[test]
fn max_payload_limits_each_message_not_their_sum() {
    // OPEN says maxPayload 1000.
    let mut c = connected(Settings::default());
    let publish = |c: &mut SocketioClient, data: Bytes| {
        let mut out = ClientOut::default();
        c.on_op(
            publish("up", Payload::binary(data), Some(1)),
            Instant::now(),
            &mut out,
        );
        out
    };
    // Text packet (43 bytes) plus a 1000-byte attachment: over 1000 together, but each
    // WebSocket message fits.
    let out = publish(&mut c, Bytes::from(vec![0u8; 1000]));
    assert_eq!(out.to_backend.len(), 2);
    assert_eq!(out.to_backend[1].len(), 1000);
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Reply { result: Ok(_), .. }]
    ));
    let out = publish(&mut c, Bytes::from(vec![0u8; 1001]));
    assert!(out.to_backend.is_empty());
    assert!(
        matches!(&out.events[..], [BackendEvent::Reply { result: Err(e), .. }] if e.kind == ErrorKind::Limit)
    );
}

#[test]
fn namespace_disconnect_and_close_fail_pending() {
    let mut c = connected(Settings {
        acks: true,
        ..Default::default()
    });
    let mut out = ClientOut::default();
    c.on_op(
        publish("m", Payload::null(), Some(5)),
        Instant::now(),
        &mut out,
    );
    let mut out = ClientOut::default();
    c.on_backend(txt("41"), Instant::now(), &mut out);
    assert!(matches!(
        &out.events[0],
        BackendEvent::Reply {
            id: 5,
            result: Err(_)
        }
    ));
    // The backend's own `socket.disconnect()`: a close its clients do not retry.
    assert!(matches!(
        &out.events[1],
        BackendEvent::Closing { reason, retry: false } if reason.kind == ErrorKind::Unavailable
    ));
    assert!(out.close.is_some());
}

#[test]
fn a_backends_ack_request_is_answered_by_the_downstream() {
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    c.on_backend(txt(r#"4212["confirm",{"id":7}]"#), Instant::now(), &mut out);
    assert!(out.to_backend.is_empty(), "no answer of its own: {out:?}");
    let Some(BackendEvent::Message {
        ack: Some(token), ..
    }) = out.events.pop()
    else {
        panic!("{out:?}")
    };
    assert_eq!(token, "12");
    let answer = |c: &mut SocketioClient, positive, result| {
        let mut out = ClientOut::default();
        c.on_op(
            ClientOp::Ack {
                token: token.clone(),
                positive,
                result,
            },
            Instant::now(),
            &mut out,
        );
        out.to_backend.iter().map(s).collect::<Vec<_>>()
    };
    assert_eq!(answer(&mut c, true, None), ["4312[]"]);
    assert_eq!(
        answer(
            &mut c,
            true,
            Some(Payload::json(Bytes::from(r#"[{"seen":true},2]"#)))
        ),
        [r#"4312[{"seen":true},2]"#]
    );
    assert_eq!(
        answer(&mut c, false, None),
        [r#"4312[{"error":{"name":"nack","message":"the client refused the message"}}]"#]
    );
    assert_eq!(
        answer(
            &mut c,
            true,
            Some(Payload::binary(Bytes::from_static(&[1, 2])))
        ),
        [r#"461-12[{"_placeholder":true,"num":0}]"#, "\u{1}\u{2}"]
    );
    // A token that is not one of ours is ignored.
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Ack {
            token: Bytes::from("x"),
            positive: true,
            result: None,
        },
        Instant::now(),
        &mut out,
    );
    assert!(out.to_backend.is_empty());
}

#[test]
fn ops_before_ready_are_held_within_a_byte_budget() {
    let settings = Settings {
        max_queued_bytes: 10,
        ..Settings::default()
    };
    let mut c = SocketioClient::new(settings, Credentials::default());
    let text_of = |n: usize| publish("ch", Payload::text(Bytes::from("x".repeat(n))), None);
    let mut out = ClientOut::default();
    c.on_op(text_of(6), Instant::now(), &mut out);
    assert!(out.events.is_empty(), "8 of 10 bytes held: {out:?}");
    c.on_op(text_of(1), Instant::now(), &mut out);
    assert!(
        matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Limit),
        "{out:?}"
    );
}

/// Scoped mode: ready at `open`, no namespace of its own.
fn scoped() -> SocketioClient {
    let mut c = SocketioClient::new(
        Settings {
            scoped: true,
            ..Default::default()
        },
        Credentials::default(),
    );
    let mut out = ClientOut::default();
    // Ops before `open` wait for it.
    c.on_op(
        ClientOp::Join {
            scope: Bytes::from("/custom"),
            auth: Some(Bytes::from(r#"{"token":"c"}"#)),
        },
        Instant::now(),
        &mut out,
    );
    assert!(out.to_backend.is_empty());
    c.on_backend(txt(OPEN), Instant::now(), &mut out);
    assert_eq!(out.events, vec![BackendEvent::Ready { session: None }]);
    let sent: Vec<String> = out.to_backend.iter().map(s).collect();
    assert_eq!(sent, [r#"40/custom,{"token":"c"}"#]);
    c
}

#[test]
fn scoped_namespaces_and_their_answers() {
    let mut c = scoped();
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Join {
            scope: Bytes::from("/"),
            auth: None,
        },
        Instant::now(),
        &mut out,
    );
    assert_eq!(s(&out.to_backend[0]), "40");
    let mut out = ClientOut::default();
    for m in [
        r#"40/custom,{"sid":"S"}"#,
        r#"44{"message":"no"}"#,
        "41/custom,",
    ] {
        c.on_backend(txt(m), Instant::now(), &mut out);
    }
    assert_eq!(
        out.events,
        vec![
            BackendEvent::Joined {
                scope: Bytes::from("/custom"),
                data: Some(Bytes::from(r#"{"sid":"S"}"#)),
            },
            BackendEvent::JoinFailed {
                scope: Bytes::from("/"),
                data: Some(Bytes::from(r#"{"message":"no"}"#)),
            },
            BackendEvent::Left {
                scope: Bytes::from("/custom"),
            },
        ]
    );
    assert!(out.close.is_none());
}

#[test]
fn scoped_emits_and_acks_keep_their_shape() {
    use crate::frame::Shaped;
    let mut c = scoped();
    // What the set-up held before the backend was ready was copied then; not counted here.
    c.take_copied();
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Emit {
            scope: Bytes::from("/custom"),
            values: Shaped {
                list: Bytes::from(r#"["m",1,{"_placeholder":true,"num":0}]"#),
                attachments: vec![Bytes::from_static(b"\x07")],
            },
            reply: Some(5),
        },
        Instant::now(),
        &mut out,
    );
    assert_eq!(
        out.to_backend[..],
        [
            txt(r#"451-/custom,0["m",1,{"_placeholder":true,"num":0}]"#),
            WsMsg::Binary(Bytes::from_static(b"\x07")),
        ]
    );
    assert!(
        out.events.is_empty(),
        "answered by the backend, not on write"
    );
    let mut out = ClientOut::default();
    c.on_backend(txt(r#"43/custom,0[1,"2"]"#), Instant::now(), &mut out);
    assert_eq!(
        out.events,
        vec![BackendEvent::Answered {
            id: 5,
            values: Shaped {
                list: Bytes::from(r#"[1,"2"]"#),
                attachments: vec![],
            },
        }]
    );
    // The backend asks for an ack; the client's answer goes back in that namespace.
    let mut out = ClientOut::default();
    c.on_backend(txt(r#"42/custom,17["q"]"#), Instant::now(), &mut out);
    let Some(BackendEvent::Emit {
        scope,
        values,
        ack: Some(token),
    }) = out.events.pop()
    else {
        panic!("{:?}", out.events)
    };
    assert_eq!(
        (scope.as_ref(), values.list.as_ref()),
        (&b"/custom"[..], &br#"["q"]"#[..])
    );
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Answer {
            token,
            values: Shaped {
                list: Bytes::from(r#"["a",2]"#),
                attachments: vec![],
            },
        },
        Instant::now(),
        &mut out,
    );
    assert_eq!(out.to_backend[..], [txt(r#"43/custom,17["a",2]"#)]);
    // The array written once into the ack's buffer (the emit before it once too).
    let copied = c.take_copied();
    assert_eq!(copied.copies, 2);
}

#[test]
fn unscoped_refuses_shaped_ops() {
    let mut c = connected(Settings::default());
    let mut out = ClientOut::default();
    c.on_op(
        ClientOp::Emit {
            scope: Bytes::from("/"),
            values: crate::frame::Shaped::default(),
            reply: Some(3),
        },
        Instant::now(),
        &mut out,
    );
    assert!(out.to_backend.is_empty());
    assert!(matches!(
        out.events.as_slice(),
        [BackendEvent::Reply { id: 3, result: Err(e) }] if e.kind == ErrorKind::Untranslatable
    ));
}
