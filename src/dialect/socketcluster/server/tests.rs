use super::*;

fn hs() -> Handshake {
    Handshake {
        path: "/socketcluster/".into(),
        ..Default::default()
    }
}

fn role(version: Version) -> ScServer {
    let settings = Settings {
        version,
        ..Default::default()
    };
    ScServer::new(settings, &hs(), "sock-1".into(), Instant::now())
}

fn feed(r: &mut ScServer, s: &str) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_client(
        WsMsg::Text(Bytes::from(s.to_owned())),
        Instant::now(),
        &mut out,
    );
    out
}

fn backend(r: &mut ScServer, ev: BackendEvent) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_backend(ev, Instant::now(), &mut out);
    out
}

fn texts(out: &ServerOut) -> Vec<String> {
    out.to_client
        .iter()
        .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
        .collect()
}

/// A backend message of `{}` on `channel` (a subscription's, or the backend's own emit)
/// that wants an ack with `token`.
fn wants_ack(sub: Option<SubId>, channel: &str, token: &str) -> BackendEvent {
    BackendEvent::Message {
        sub,
        channel: Bytes::from(channel.to_owned()),
        event: None,
        args: vec![],
        payload: Payload::json(Bytes::from("{}")),
        meta: vec![],
        ack: Some(Bytes::from(token.to_owned())),
    }
}

/// Handshaken with token `t`, the upstream ready.
fn open(version: Version) -> ScServer {
    let mut r = role(version);
    let out = feed(
        &mut r,
        r##"{"event":"#handshake","data":{"authToken":"t"},"cid":1}"##,
    );
    let [ClientOp::Connect { credentials }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(credentials.token.as_deref(), Some(&b"t"[..]));
    assert!(
        out.to_client.is_empty(),
        "answered once the upstream is ready"
    );
    let out = backend(&mut r, BackendEvent::Ready { session: None });
    assert_eq!(
        texts(&out),
        [r#"{"rid":1,"data":{"id":"sock-1","pingTimeout":20000,"isAuthenticated":true}}"#]
    );
    r
}

#[test]
fn handshake_pings_and_their_versions() {
    let mut r = open(Version::V1);
    assert_eq!(r.heartbeat(), Some(WsMsg::Text(Bytes::from_static(b"#1"))));
    assert!(feed(&mut r, "#2").to_client.is_empty());
    let k = r.keepalive();
    assert_eq!(k.send_every, Some(Duration::from_millis(8000)));
    assert!(k.periodic);
    let mut r = open(Version::V2);
    assert_eq!(r.heartbeat(), Some(WsMsg::Text(Bytes::new())));
    assert!(feed(&mut r, "").to_client.is_empty());
    let mut out = ServerOut::default();
    r.on_peer_silent(&mut out);
    assert_eq!(out.close.unwrap().code, 4001);
}

#[test]
fn before_the_handshake() {
    let mut r = role(Version::V2);
    let out = feed(&mut r, r#"{"event":"chat","data":1}"#);
    assert_eq!(out.close.unwrap().code, 4009);
    let mut r = role(Version::V1);
    let mut out = ServerOut::default();
    r.on_peer_silent(&mut out);
    // v1 clients hear #disconnect first.
    assert_eq!(
        texts(&out),
        [r##"{"event":"#disconnect","data":{"code":4005,"data":"no #handshake in time"}}"##]
    );
    assert_eq!(out.close.unwrap().code, 4005);
}

#[test]
fn emits_are_calls_answered_with_data_or_error() {
    let mut r = open(Version::V1);
    let out = feed(&mut r, r#"{"event":"registerUser","data":{},"cid":2}"#);
    let [
        ClientOp::Publish {
            channel,
            payload,
            reply: Some(reply),
            broadcast: false,
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(channel, "registerUser");
    assert_eq!(payload.data, "{}");
    assert!(reply.data, "an emit with a callback wants the answer");
    let id = reply.id;
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id,
            result: Ok(Some(Payload::json(Bytes::from(r#""{\"urn\":\"u1\"}""#)))),
        },
    );
    assert_eq!(texts(&out), [r#"{"rid":2,"data":"{\"urn\":\"u1\"}"}"#]);
    // A Socket.IO-style error answer is SocketCluster's error slot.
    let out = feed(&mut r, r#"{"event":"fail","data":null,"cid":3}"#);
    let [
        ClientOp::Publish {
            reply: Some(reply), ..
        },
    ] = out.ops.as_slice()
    else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: reply.id,
            result: Ok(Some(Payload::json(Bytes::from(
                r#"{"error":{"name":"FailError","message":"no"}}"#,
            )))),
        },
    );
    assert_eq!(
        texts(&out),
        [r#"{"rid":3,"error":{"name":"FailError","message":"no"}}"#]
    );
    // A failure of the route (timeout) in SocketCluster's words.
    let out = feed(&mut r, r#"{"event":"slow","cid":4}"#);
    let [
        ClientOp::Publish {
            reply: Some(reply), ..
        },
    ] = out.ops.as_slice()
    else {
        panic!()
    };
    let out = backend(
        &mut r,
        BackendEvent::Reply {
            id: reply.id,
            result: Err(ErrorInfo::new(ErrorKind::Timeout, "timed out")),
        },
    );
    assert_eq!(
        texts(&out),
        [r#"{"rid":4,"error":{"name":"TimeoutError","message":"timed out"}}"#]
    );
    // A transmit (no cid) wants nothing back.
    let out = feed(&mut r, r#"{"event":"note","data":1}"#);
    assert!(matches!(
        out.ops.as_slice(),
        [ClientOp::Publish { reply: None, .. }]
    ));
}

#[test]
fn channels_subscribe_publish_and_kick_out() {
    let mut r = open(Version::V1);
    let out = feed(
        &mut r,
        r##"{"event":"#subscribe","data":{"channel":"urn:1"},"cid":5}"##,
    );
    let [ClientOp::Subscribe { sub, channel, .. }] = out.ops.as_slice() else {
        panic!()
    };
    assert_eq!(channel, "urn:1");
    let sub = *sub;
    assert_eq!(
        texts(&backend(
            &mut r,
            BackendEvent::Subscribed { sub, data: None }
        )),
        [r#"{"rid":5}"#]
    );
    let out = backend(
        &mut r,
        BackendEvent::Message {
            sub: Some(sub),
            channel: Bytes::from("urn:1"),
            event: None,
            args: vec![],
            payload: Payload::json(Bytes::from(r#"{"to":"urn:1"}"#)),
            meta: vec![],
            ack: None,
        },
    );
    assert_eq!(
        texts(&out),
        [r##"{"event":"#publish","data":{"channel":"urn:1","data":{"to":"urn:1"}}}"##]
    );
    let out = feed(
        &mut r,
        r##"{"event":"#publish","data":{"channel":"urn:1","data":{"x":1}},"cid":6}"##,
    );
    let [
        ClientOp::Publish {
            channel,
            broadcast: true,
            reply: Some(reply),
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(channel, "urn:1");
    assert!(!reply.data, "a publish is confirmed, not answered");
    let out = backend(
        &mut r,
        BackendEvent::Unsubscribed {
            sub,
            reason: ErrorInfo::new(ErrorKind::Unauthorized, "bye"),
        },
    );
    assert_eq!(
        texts(&out),
        [r##"{"event":"#kickOut","data":{"channel":"urn:1","message":"bye"}}"##]
    );
    let out = feed(&mut r, r##"{"event":"#unsubscribe","data":"urn:1"}"##);
    assert!(out.ops.is_empty(), "already gone");
}

#[test]
fn tokens_both_ways() {
    let mut r = open(Version::V1);
    let out = feed(
        &mut r,
        r##"{"event":"#authenticate","data":"jwt2","cid":7}"##,
    );
    assert!(
        matches!(out.ops.as_slice(), [ClientOp::Reauth { credentials }] if credentials.token.as_deref() == Some(&b"jwt2"[..]))
    );
    let out = backend(
        &mut r,
        BackendEvent::AuthChanged {
            token: Some(Bytes::from("jwt2")),
        },
    );
    assert_eq!(
        texts(&out),
        [
            r#"{"rid":7,"data":{"isAuthenticated":true,"authError":null}}"#,
            r##"{"event":"#setAuthToken","data":{"token":"jwt2"},"cid":1}"##
        ]
    );
    let out = backend(&mut r, BackendEvent::AuthChanged { token: None });
    assert_eq!(texts(&out), [r##"{"event":"#removeAuthToken"}"##]);
}

#[test]
fn the_backends_emits_are_answered_by_the_client() {
    let mut r = open(Version::V2);
    let out = backend(&mut r, wants_ack(None, "confirm", "tok"));
    assert_eq!(texts(&out), [r#"{"event":"confirm","data":{},"cid":1}"#]);
    let out = feed(&mut r, r#"{"rid":1,"data":{"ok":true}}"#);
    assert_eq!(
        out.ops,
        vec![ClientOp::Ack {
            token: Bytes::from("tok"),
            positive: true,
            result: Some(Payload::json(Bytes::from(r#"{"ok":true}"#)))
        }]
    );
}

#[test]
fn bad_input() {
    let mut r = open(Version::V2);
    let out = feed(&mut r, r##"{"event":"#bogus","cid":9}"##);
    assert_eq!(
        texts(&out),
        [
            r##"{"rid":9,"error":{"name":"InvalidActionError","message":"#bogus is a reserved event"}}"##
        ]
    );
    // A batch is handled in order.
    let out = feed(&mut r, r#"[{"event":"a","data":1},{"event":"b","data":2}]"#);
    assert_eq!(out.ops.len(), 2);
    let out = feed(&mut r, "not json");
    assert_eq!(out.close.unwrap().code, 1007);
}

#[test]
fn a_refused_token_rejects_the_handshake() {
    let mut r = role(Version::V2);
    feed(
        &mut r,
        r##"{"event":"#handshake","data":{"authToken":"bad"},"cid":1}"##,
    );
    let out = backend(
        &mut r,
        BackendEvent::Error(ErrorInfo::new(ErrorKind::Unauthorized, "invalid token")),
    );
    assert_eq!(
        texts(&out),
        [r#"{"rid":1,"error":{"name":"AuthTokenInvalidError","message":"invalid token"}}"#]
    );
    assert_eq!(out.close.unwrap().code, 4008);
}

#[test]
fn refusals_are_close_codes_with_disconnect_first_on_v1() {
    use crate::dialect::Refusal;
    let why = |m: &str| ErrorInfo::new(ErrorKind::Limit, m.to_owned());
    let mut r = role(Version::V2);
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Busy, why("too many connections"), &mut out);
    assert!(out.to_client.is_empty());
    let close = out.close.unwrap();
    assert_eq!(
        (close.code, close.reason.as_str()),
        (1013, "too many connections")
    );
    let mut r = open(Version::V1);
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Rate, why("message rate limit exceeded"), &mut out);
    assert_eq!(
        texts(&out),
        [r##"{"event":"#disconnect","data":{"code":1008,"data":"message rate limit exceeded"}}"##]
    );
    assert_eq!(out.close.unwrap().code, 1008);
}

/// A message for a subscription the connection no longer has (kicked out, unsubscribed on
/// its way) is dropped, never heard as a plain event; a backend that wanted its ack hears
/// it was not delivered.
#[test]
fn a_message_for_a_subscription_that_is_gone_is_dropped() {
    let mut r = open(Version::V1);
    let out = feed(
        &mut r,
        r##"{"event":"#subscribe","data":{"channel":"news"},"cid":5}"##,
    );
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!()
    };
    let sub = *sub;
    backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    backend(
        &mut r,
        BackendEvent::Unsubscribed {
            sub,
            reason: ErrorInfo::new(ErrorKind::Unauthorized, "bye"),
        },
    );
    let out = backend(&mut r, wants_ack(Some(sub), "news", "tok"));
    assert!(out.to_client.is_empty(), "{:?}", texts(&out));
    assert_eq!(
        out.ops,
        vec![ClientOp::Ack {
            token: Bytes::from("tok"),
            positive: false,
            result: None
        }]
    );
}

/// The backend's calls wait for the client's answer at most `call_timeout` (then the backend
/// hears a failure) and at most `max_pending` at once (then a call goes without a cid and
/// the backend is told at once): a client that never answers holds nothing for good.
#[test]
fn the_backends_calls_are_bounded_in_time_and_number() {
    let settings = Settings {
        version: Version::V2,
        max_pending: 2,
        call_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut r = ScServer::new(settings, &hs(), "sock-1".into(), t0);
    feed(&mut r, r##"{"event":"#handshake","data":{},"cid":1}"##);
    backend(&mut r, BackendEvent::Ready { session: None });
    let call = |token: &'static str| wants_ack(None, "confirm", token);
    let nack = |token: &'static str| ClientOp::Ack {
        token: Bytes::from(token),
        positive: false,
        result: None,
    };
    for (i, token) in ["a", "b"].into_iter().enumerate() {
        let mut out = ServerOut::default();
        r.on_backend(call(token), t0, &mut out);
        assert_eq!(
            texts(&out),
            [format!(
                r#"{{"event":"confirm","data":{{}},"cid":{}}}"#,
                i + 1
            )]
        );
        assert!(out.ops.is_empty());
    }
    let mut out = ServerOut::default();
    r.on_backend(call("c"), t0, &mut out);
    assert_eq!(texts(&out), [r#"{"event":"confirm","data":{}}"#]);
    assert_eq!(out.ops, vec![nack("c")]);
    // "a" is answered; "b" times out.
    let out = feed(&mut r, r#"{"rid":1,"data":null}"#);
    assert!(matches!(
        out.ops.as_slice(),
        [ClientOp::Ack { positive: true, .. }]
    ));
    let mut out = ServerOut::default();
    r.expire(t0 + Duration::from_secs(9), &mut out);
    assert!(out.ops.is_empty());
    r.expire(t0 + Duration::from_secs(10), &mut out);
    assert_eq!(out.ops, vec![nack("b")]);
    // A late answer finds nothing.
    let out = feed(&mut r, r#"{"rid":2,"data":null}"#);
    assert!(out.ops.is_empty());
}
