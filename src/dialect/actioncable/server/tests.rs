use super::*;

fn role() -> CableServer {
    let hs = Handshake {
        path: "/cable".into(),
        query: "token=good-token".into(),
        subprotocol: Some("actioncable-v1-json"),
        ..Default::default()
    };
    CableServer::new(Settings::default(), &hs, 1_700_000_000, Instant::now())
}

fn texts(out: &ServerOut) -> Vec<String> {
    out.to_client
        .iter()
        .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
        .collect()
}

fn feed(r: &mut CableServer, s: &str) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_client(
        WsMsg::Text(Bytes::from(s.to_owned())),
        Instant::now(),
        &mut out,
    );
    out
}

fn backend(r: &mut CableServer, ev: BackendEvent) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_backend(ev, Instant::now(), &mut out);
    out
}

fn open() -> CableServer {
    let mut r = role();
    let mut out = ServerOut::default();
    r.on_start(Instant::now(), &mut out);
    let [ClientOp::Connect { credentials }] = out.ops.as_slice() else {
        panic!()
    };
    assert_eq!(credentials.token.as_deref(), Some(&b"good-token"[..]));
    assert!(
        out.to_client.is_empty(),
        "welcome once the backend took the connection"
    );
    assert_eq!(
        texts(&backend(&mut r, BackendEvent::Ready { session: None })),
        [r#"{"type":"welcome"}"#]
    );
    r
}

const ROOM: &str =
    r#"{"command":"subscribe","identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":7}"}"#;

#[test]
fn welcome_and_pings_with_the_time() {
    let mut r = open();
    assert_eq!(r.keepalive().send_every, Some(Duration::from_secs(3)));
    assert_eq!(
        r.heartbeat(),
        Some(WsMsg::Text(Bytes::from_static(
            br#"{"type":"ping","message":1700000003}"#
        )))
    );
}

#[test]
fn subscriptions_confirm_with_the_clients_own_identifier() {
    let mut r = open();
    let out = feed(&mut r, ROOM);
    let [
        ClientOp::Subscribe {
            sub,
            channel,
            params,
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(channel, "Chats::RoomChannel");
    assert_eq!(params.data.as_ref().unwrap().data, r#"{"id":7}"#);
    let sub = *sub;
    // The JS client's re-send with the id as a string is the same subscription.
    let again = feed(
        &mut r,
        r#"{"command":"subscribe","identifier":"{\"id\":\"7\",\"channel\":\"Chats::RoomChannel\"}"}"#,
    );
    assert!(again.ops.is_empty() && again.to_client.is_empty());
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert_eq!(
        texts(&out),
        [
            r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":7}","type":"confirm_subscription"}"#
        ]
    );
    let out = backend(
        &mut r,
        BackendEvent::Message {
            sub: Some(sub),
            channel: Bytes::from("Chats::RoomChannel"),
            event: Some(Bytes::from("newMessage")),
            args: vec![],
            payload: Payload::json(Bytes::from(r#"{"event":"newMessage","message":{"id":1}}"#)),
            meta: vec![],
            ack: None,
        },
    );
    assert_eq!(
        texts(&out),
        [
            r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":7}","message":{"event":"newMessage","message":{"id":1}}}"#
        ]
    );
    let out = feed(
        &mut r,
        r#"{"command":"message","identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":7}","data":"{\"body\":\"hi\",\"action\":\"sendMessage\"}"}"#,
    );
    let [
        ClientOp::Publish {
            event,
            payload,
            sub: Some(s),
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(event.as_deref(), Some(&b"sendMessage"[..]));
    assert_eq!(payload.data, r#"{"body":"hi","action":"sendMessage"}"#);
    assert_eq!(*s, sub);
    let out = feed(
        &mut r,
        r#"{"command":"unsubscribe","identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}"}"#,
    );
    assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub }]);
}

/// A `message` with the subscription's own identifier string is found by that string; one
/// written another way (keys reordered, the id a string) by the identifier's canonical form;
/// after the unsubscribe, neither finds anything.
#[test]
fn actions_find_their_subscription_however_the_identifier_is_written() {
    let mut r = open();
    let out = feed(&mut r, ROOM);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    let sub = *sub;
    let perform = |identifier: &str| {
        format!(
            r#"{{"command":"message","identifier":"{identifier}","data":"{{\"action\":\"speak\",\"x\":1}}"}}"#
        )
    };
    let same = r#"{\"channel\":\"Chats::RoomChannel\",\"id\":7}"#;
    let reordered = r#"{\"id\":\"7\",\"channel\":\"Chats::RoomChannel\"}"#;
    for identifier in [same, reordered] {
        let out = feed(&mut r, &perform(identifier));
        let [
            ClientOp::Publish {
                channel,
                event,
                payload,
                sub: Some(s),
                ..
            },
        ] = out.ops.as_slice()
        else {
            panic!("{identifier}: {:?}", out.ops)
        };
        assert_eq!(channel, "Chats::RoomChannel");
        assert_eq!(event.as_deref(), Some(&b"speak"[..]));
        assert_eq!(payload.data, r#"{"action":"speak","x":1}"#);
        assert_eq!(*s, sub);
    }
    let out = feed(
        &mut r,
        &format!(r#"{{"command":"unsubscribe","identifier":"{reordered}"}}"#),
    );
    assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub }]);
    for identifier in [same, reordered] {
        let out = feed(&mut r, &perform(identifier));
        assert!(out.ops.is_empty(), "{identifier}: {:?}", out.ops);
    }
}

#[test]
fn rejections_and_bad_commands() {
    let mut r = open();
    let out = feed(&mut r, ROOM);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::SubscribeFailed {
            sub: *sub,
            reason: ErrorInfo::new(ErrorKind::Unauthorized, "no"),
        },
    );
    assert_eq!(
        texts(&out),
        [
            r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":7}","type":"reject_subscription"}"#
        ]
    );
    // An identifier that is not JSON names no channel: rejected, echoed as sent.
    let out = feed(&mut r, r#"{"command":"subscribe","identifier":"not json"}"#);
    assert_eq!(
        texts(&out),
        [r#"{"identifier":"not json","type":"reject_subscription"}"#]
    );
    // Unknown commands are ignored, as Rails does.
    let out = feed(&mut r, r#"{"command":"dance","identifier":"{}"}"#);
    assert!(out.to_client.is_empty() && out.ops.is_empty() && out.close.is_none());
    let out = feed(&mut r, "not json");
    assert_eq!(
        texts(&out),
        [r#"{"type":"disconnect","reason":"invalid_request","reconnect":false}"#]
    );
}

#[test]
fn disconnects_say_whether_to_reconnect() {
    let mut r = open();
    let out = backend(
        &mut r,
        BackendEvent::Error(ErrorInfo::new(ErrorKind::Unauthorized, "bad token")),
    );
    assert_eq!(
        texts(&out),
        [r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#]
    );
    let mut r = open();
    let mut out = ServerOut::default();
    r.on_upstream_lost(ErrorInfo::new(ErrorKind::Unavailable, "gone"), &mut out);
    assert_eq!(
        texts(&out),
        [r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#]
    );
}

#[test]
fn refusals_are_disconnects_busy_reconnects_rate_does_not() {
    use crate::dialect::Refusal;
    let why = |m: &str| ErrorInfo::new(ErrorKind::Limit, m.to_owned());
    let mut r = role();
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Busy, why("too many connections"), &mut out);
    assert_eq!(
        texts(&out),
        [r#"{"type":"disconnect","reason":"too_many_connections","reconnect":true}"#]
    );
    assert_eq!(out.close.unwrap().code, 1013);
    let mut r = open();
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Rate, why("message rate limit exceeded"), &mut out);
    assert_eq!(
        texts(&out),
        [r#"{"type":"disconnect","reason":"rate_limited","reconnect":false}"#]
    );
    assert_eq!(out.close.unwrap().code, 1008);
}

/// A `message` whose `data` is not a JSON object is dropped, as Rails drops it (it logs the
/// decode error and performs nothing): passed on, it would reach other dialects as JSON.
#[test]
fn a_message_whose_data_is_not_a_json_object_is_dropped() {
    let mut r = open();
    let out = feed(&mut r, ROOM);
    assert!(matches!(out.ops.as_slice(), [ClientOp::Subscribe { .. }]));
    let id = r#"{\"channel\":\"Chats::RoomChannel\",\"id\":7}"#;
    for data in [
        r#"]"#,
        r#"hello"#,
        r#"{\"action\":"#,
        r#"[\"speak\"]"#,
        r#"\"x\""#,
        r#"{} x"#,
    ] {
        let out = feed(
            &mut r,
            &format!(r#"{{"command":"message","identifier":"{id}","data":"{data}"}}"#),
        );
        assert!(
            out.ops.is_empty() && out.to_client.is_empty(),
            "{data}: {:?}",
            out.ops
        );
        assert!(out.close.is_none(), "{data}");
    }
    // The connection carries on: a well-formed one still goes through.
    let out = feed(
        &mut r,
        &format!(
            r#"{{"command":"message","identifier":"{id}","data":" {{\"action\":\"speak\"}}"}}"#
        ),
    );
    assert!(
        matches!(out.ops.as_slice(), [ClientOp::Publish { .. }]),
        "{:?}",
        out.ops
    );
}

/// A backend that asked for an ack (a Socket.IO emit with a callback, a SocketCluster event
/// with a cid) hears from the proxy, since Action Cable clients cannot answer: positive once
/// written, negative when the message had no subscription to go to.
#[test]
fn deliveries_that_want_an_ack_are_acked_by_the_proxy() {
    let mut r = open();
    let out = feed(&mut r, ROOM);
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    let sub = *sub;
    backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    crate::dialect::test_support::assert_the_proxy_acks(&mut r, sub, "Chats::RoomChannel");
}
