use super::*;

fn txt(s: &str) -> WsMsg {
    WsMsg::Text(Bytes::from(s.to_owned()))
}

fn sent(out: &ClientOut) -> Vec<String> {
    out.to_backend
        .iter()
        .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
        .collect()
}

fn from_backend(c: &mut CableClient, s: &str) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_backend(txt(s), Instant::now(), &mut out);
    out
}

fn op(c: &mut CableClient, op: ClientOp) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_op(op, Instant::now(), &mut out);
    out
}

fn client(token_as: TokenAs) -> CableClient {
    CableClient::new(
        Settings {
            token_as,
            origin: Some("http://127.0.0.1".into()),
            ..Default::default()
        },
        Credentials {
            token: Some(Bytes::from("good-token")),
            ..Default::default()
        },
    )
}

fn room(sub: SubId, id: &str) -> ClientOp {
    ClientOp::Subscribe {
        sub,
        channel: Bytes::from("Chats::RoomChannel"),
        params: SubParams {
            data: Some(Payload::json(Bytes::from(format!(r#"{{"id":"{id}"}}"#)))),
            ..Default::default()
        },
    }
}

#[test]
fn the_token_goes_where_the_backend_looks() {
    let d = client(TokenAs::Query("token".into())).dial();
    assert_eq!(d.query, vec![("token".to_owned(), "good-token".to_owned())]);
    assert!(
        d.headers
            .contains(&("Origin".into(), "http://127.0.0.1".into()))
    );
    let d = client(TokenAs::Cookie("member_token".into())).dial();
    assert!(
        d.headers
            .contains(&("Cookie".into(), "member_token=good-token".into()))
    );
    let d = client(TokenAs::Authorization).dial();
    assert!(
        d.headers
            .contains(&("Authorization".into(), "Bearer good-token".into()))
    );
}

#[test]
fn subscribe_perform_and_broadcasts() {
    let mut c = client(TokenAs::None);
    assert!(
        op(&mut c, room(1, "7")).to_backend.is_empty(),
        "held until welcome"
    );
    let out = from_backend(&mut c, r#"{"type":"welcome"}"#);
    assert_eq!(out.events[0], BackendEvent::Ready { session: None });
    assert_eq!(
        sent(&out),
        [
            r#"{"command":"subscribe","identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}"}"#
        ]
    );
    let out = from_backend(
        &mut c,
        r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}","type":"confirm_subscription"}"#,
    );
    assert_eq!(
        out.events,
        vec![BackendEvent::Subscribed { sub: 1, data: None }]
    );
    let out = from_backend(
        &mut c,
        r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}","message":{"event":"newMessage","message":{"id":1}}}"#,
    );
    let [
        BackendEvent::Message {
            sub: Some(1),
            event,
            payload,
            ..
        },
    ] = &out.events[..]
    else {
        panic!("{:?}", out.events)
    };
    assert_eq!(event.as_deref(), Some(&b"newMessage"[..]));
    assert_eq!(payload.data, r#"{"event":"newMessage","message":{"id":1}}"#);
    let out = op(
        &mut c,
        ClientOp::Publish {
            channel: Bytes::from("Chats::RoomChannel"),
            event: Some(Bytes::from("sendMessage")),
            args: vec![],
            payload: Payload::json(Bytes::from(r#"{"body":"hi"}"#)),
            meta: vec![],
            reply: Some(Reply::receipt(3)),
            broadcast: false,
            sub: Some(1),
        },
    );
    assert_eq!(
        sent(&out),
        [
            r#"{"command":"message","identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}","data":"{\"action\":\"sendMessage\",\"body\":\"hi\"}"}"#
        ]
    );
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 3,
            result: Ok(None)
        }]
    );
    // Without a subscription there is nothing to perform on.
    let out = op(
        &mut c,
        ClientOp::Publish {
            channel: Bytes::from("X"),
            event: Some(Bytes::from("a")),
            args: vec![],
            payload: Payload::null(),
            meta: vec![],
            reply: None,
            broadcast: false,
            sub: None,
        },
    );
    assert!(
        matches!(&out.events[..], [BackendEvent::Refused(e)] if e.kind == ErrorKind::Untranslatable)
    );
}

#[test]
fn rejections_and_disconnects() {
    let mut c = client(TokenAs::None);
    from_backend(&mut c, r#"{"type":"welcome"}"#);
    op(&mut c, room(1, "forbidden"));
    let out = from_backend(
        &mut c,
        r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"forbidden\"}","type":"reject_subscription"}"#,
    );
    assert!(
        matches!(&out.events[..], [BackendEvent::SubscribeFailed { sub: 1, reason }] if reason.kind == ErrorKind::Unauthorized)
    );
    let out = from_backend(
        &mut c,
        r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Closing { retry: true, .. }]
    ));
    let mut c = client(TokenAs::None);
    let out = from_backend(
        &mut c,
        r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#,
    );
    assert!(
        matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Unauthorized)
    );
}

#[test]
fn a_silent_server_is_gone_after_the_stale_threshold() {
    let mut c = client(TokenAs::None);
    assert_eq!(
        c.keepalive().expect_within,
        None,
        "nothing expected before welcome"
    );
    from_backend(&mut c, r#"{"type":"welcome"}"#);
    assert_eq!(c.keepalive().expect_within, Some(Duration::from_secs(6)));
    let mut out = ClientOut::default();
    c.on_peer_silent(&mut out);
    assert!(
        matches!(&out.events[..], [BackendEvent::Error(e)] if e.kind == ErrorKind::Unavailable)
    );
}

/// A subscription Rails neither confirms nor rejects (it ignores a channel class it does not
/// know) fails after `confirm_timeout` with a timeout, and is unsubscribed should the server
/// confirm it after all; a confirmed one never expires.
#[test]
fn an_unanswered_subscription_fails_after_the_confirm_timeout() {
    let mut c = client(TokenAs::None);
    from_backend(&mut c, r#"{"type":"welcome"}"#);
    let t0 = Instant::now();
    let mut out = ClientOut::default();
    c.on_op(room(1, "7"), t0, &mut out);
    c.on_op(room(2, "8"), t0, &mut out);
    assert_eq!(out.to_backend.len(), 2);
    from_backend(
        &mut c,
        r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"8\"}","type":"confirm_subscription"}"#,
    );
    let mut out = ClientOut::default();
    c.expire(t0 + Duration::from_secs(9), &mut out);
    assert!(out.events.is_empty() && out.to_backend.is_empty());
    c.expire(t0 + Duration::from_secs(10), &mut out);
    assert_eq!(
        sent(&out),
        [
            r#"{"command":"unsubscribe","identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}"}"#
        ]
    );
    let [BackendEvent::SubscribeFailed { sub: 1, reason }] = out.events.as_slice() else {
        panic!("{:?}", out.events)
    };
    assert_eq!(reason.kind, ErrorKind::Timeout);
    // A late confirmation finds nothing; the confirmed one still delivers.
    let late = from_backend(
        &mut c,
        r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"7\"}","type":"confirm_subscription"}"#,
    );
    assert!(late.events.is_empty());
    let out = from_backend(
        &mut c,
        r#"{"identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":\"8\"}","message":{"a":1}}"#,
    );
    assert!(matches!(
        out.events.as_slice(),
        [BackendEvent::Message { sub: Some(2), .. }]
    ));
}
