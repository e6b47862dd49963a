use super::*;
use crate::frame::PayloadKind;

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";
const SOCKET: &str = "123.456";

fn hs(path: &str, query: &str) -> Handshake {
    Handshake {
        path: path.into(),
        query: query.into(),
        ..Default::default()
    }
}

fn settings() -> Settings {
    Settings {
        app_key: KEY.into(),
        app_secret: SECRET.into(),
        activity_timeout: Duration::from_secs(30),
        upstream_presence: true,
        ..Default::default()
    }
}

fn started(s: Settings) -> (PusherServer, ServerOut) {
    let mut r = PusherServer::new(
        s,
        &hs("/app/app-key", "protocol=7&client=js"),
        SOCKET.into(),
    );
    let mut out = ServerOut::default();
    r.on_start(Instant::now(), &mut out);
    (r, out)
}

fn texts(out: &ServerOut) -> Vec<String> {
    out.to_client
        .iter()
        .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
        .collect()
}

fn feed(r: &mut PusherServer, s: &str) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_client(
        WsMsg::Text(Bytes::from(s.to_owned())),
        Instant::now(),
        &mut out,
    );
    out
}

fn backend(r: &mut PusherServer, ev: BackendEvent) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_backend(ev, Instant::now(), &mut out);
    out
}

fn sign(channel: &str, data: Option<&str>) -> String {
    auth::sign(
        KEY,
        SECRET,
        &auth::channel_string(SOCKET, channel.as_bytes(), data.map(str::as_bytes)),
    )
    .unwrap()
}

fn subscribed(r: &mut PusherServer, body: &str) -> SubId {
    let out = feed(
        r,
        &format!(r#"{{"event":"pusher:subscribe","data":{body}}}"#),
    );
    let [ClientOp::Subscribe { sub, .. }] = out.ops.as_slice() else {
        panic!("{:?} {:?}", out.ops, texts(&out))
    };
    *sub
}

#[test]
fn speaks_first_with_a_socket_id_and_opens_the_upstream() {
    let (_, out) = started(settings());
    assert_eq!(
        texts(&out),
        [
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":30}"}"#
        ]
    );
    assert!(matches!(out.ops.as_slice(), [ClientOp::Connect { .. }]));
    assert!(out.close.is_none());
}

#[test]
fn a_wrong_key_or_protocol_is_refused_with_its_code() {
    for (path, query, code) in [
        ("/app/other", "protocol=7", 4001),
        ("/app/app-key", "protocol=4", 4007),
        ("/app/app-key", "client=js", 4008),
    ] {
        let mut r = PusherServer::new(settings(), &hs(path, query), SOCKET.into());
        let mut out = ServerOut::default();
        r.on_start(Instant::now(), &mut out);
        let t = texts(&out);
        assert!(
            t[0].starts_with(r#"{"event":"pusher:error","data":{"message":"#),
            "{t:?}"
        );
        assert!(t[0].ends_with(&format!(r#""code":{code}}}}}"#)), "{t:?}");
        assert_eq!(out.close.unwrap().code, code);
        assert!(out.ops.is_empty());
    }
}

#[test]
fn pings_are_answered_and_a_silent_client_is_closed_with_4201() {
    let (mut r, _) = started(settings());
    let out = feed(&mut r, r#"{"event":"pusher:ping","data":{}}"#);
    assert_eq!(texts(&out), [r#"{"event":"pusher:pong","data":{}}"#]);
    let k = r.keepalive();
    assert_eq!(k.send_every, Some(Duration::from_secs(30)));
    assert_eq!(k.expect_within, Some(Duration::from_secs(60)));
    // Pinged however busy its channels are: pusher-js pings only after a quiet activity
    // timeout, so a client that only listens answers these or says nothing at all.
    assert!(k.periodic);
    assert_eq!(
        r.heartbeat().unwrap(),
        WsMsg::Text(Bytes::from_static(br#"{"event":"pusher:ping","data":{}}"#))
    );
    let mut out = ServerOut::default();
    r.on_peer_silent(&mut out);
    assert_eq!(out.close.unwrap().code, 4201);
}

#[test]
fn public_subscription_and_delivery_with_data_in_a_string() {
    let (mut r, _) = started(settings());
    let sub = subscribed(&mut r, r#"{"channel":"consultation-7","auth":""}"#);
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert_eq!(
        texts(&out),
        [
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"consultation-7","data":"{}"}"#
        ]
    );
    let out = backend(
        &mut r,
        BackendEvent::Message {
            sub: Some(sub),
            channel: Bytes::from("consultation-7"),
            event: Some(Bytes::from("call-status")),
            args: vec![],
            payload: Payload::json(Bytes::from(r#"{"status":"in_progress"}"#)),
            meta: vec![],
            ack: None,
        },
    );
    assert_eq!(
        texts(&out),
        [
            r#"{"event":"call-status","channel":"consultation-7","data":"{\"status\":\"in_progress\"}"}"#
        ]
    );
    // Text is JSON-encoded first: pusher-js must not turn "123" into a number.
    let out = backend(
        &mut r,
        BackendEvent::Message {
            sub: Some(sub),
            channel: Bytes::from("consultation-7"),
            event: None,
            args: vec![],
            payload: Payload::text(Bytes::from("123")),
            meta: vec![],
            ack: None,
        },
    );
    assert_eq!(
        texts(&out),
        [r#"{"event":"consultation-7","channel":"consultation-7","data":"\"123\""}"#]
    );
    // Events on channels nobody subscribed to are not delivered.
    let out = backend(
        &mut r,
        BackendEvent::Message {
            sub: None,
            channel: Bytes::from("other"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            meta: vec![],
            ack: None,
        },
    );
    assert!(out.to_client.is_empty());
    let out = feed(
        &mut r,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"consultation-7"}}"#,
    );
    assert_eq!(out.ops, vec![ClientOp::Unsubscribe { sub }]);
}

#[test]
fn private_signatures_are_checked_against_the_issued_socket_id() {
    let (mut r, _) = started(settings());
    let good = sign("private-chat", None);
    let body = format!(r#"{{"channel":"private-chat","auth":"{good}"}}"#);
    let sub = subscribed(&mut r, &body);
    let out = backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    assert_eq!(out.to_client.len(), 1);
    // Signed for another socket id, forged, or missing.
    let other = auth::sign(
        KEY,
        SECRET,
        &auth::channel_string("9.9", b"private-x", None),
    )
    .unwrap();
    for auth in [other.as_str(), "app-key:00ff", ""] {
        let out = feed(
            &mut r,
            &format!(
                r#"{{"event":"pusher:subscribe","data":{{"channel":"private-x","auth":"{auth}"}}}}"#
            ),
        );
        assert!(out.ops.is_empty());
        assert_eq!(
            texts(&out),
            [
                r#"{"event":"pusher:subscription_error","channel":"private-x","data":{"type":"AuthError","error":"Invalid signature","status":401}}"#
            ]
        );
    }
}

#[test]
fn presence_carries_signed_member_data_and_the_snapshot() {
    let (mut r, _) = started(settings());
    let data = r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#;
    let good = sign("presence-consultation-7", Some(data));
    let escaped = data.replace('"', "\\\"");
    let body = format!(
        r#"{{"channel":"presence-consultation-7","auth":"{good}","channel_data":"{escaped}"}}"#
    );
    let out = feed(
        &mut r,
        &format!(r#"{{"event":"pusher:subscribe","data":{body}}}"#),
    );
    let [ClientOp::Subscribe { sub, params, .. }] = out.ops.as_slice() else {
        panic!("{:?}", texts(&out))
    };
    assert_eq!(params.channel_data.as_deref(), Some(data.as_bytes()));
    assert_eq!(params.auth, None, "a signature is never forwarded");
    let snapshot = r#"{"presence":{"ids":["10"],"hash":{"10":{"name":"Mr. Channels"}},"count":1}}"#;
    let out = backend(
        &mut r,
        BackendEvent::Subscribed {
            sub: *sub,
            data: Some(Payload::json(Bytes::from(snapshot))),
        },
    );
    assert_eq!(
        texts(&out),
        [format!(
            r#"{{"event":"pusher_internal:subscription_succeeded","channel":"presence-consultation-7","data":"{}"}}"#,
            snapshot.replace('"', "\\\"")
        )]
    );
    let out = backend(
        &mut r,
        BackendEvent::Presence {
            channel: Bytes::from("presence-consultation-7"),
            member: Bytes::from(r#"{"user_id":"11"}"#),
            added: false,
        },
    );
    assert_eq!(
        texts(&out),
        [
            r#"{"event":"pusher_internal:member_removed","channel":"presence-consultation-7","data":"{\"user_id\":\"11\"}"}"#
        ]
    );
    let out = backend(
        &mut r,
        BackendEvent::SubscriptionCount {
            channel: Bytes::from("presence-consultation-7"),
            count: 3,
        },
    );
    assert_eq!(
        texts(&out),
        [
            r#"{"event":"pusher_internal:subscription_count","channel":"presence-consultation-7","data":"{\"subscription_count\":3}"}"#
        ]
    );
}

#[test]
fn presence_is_refused_when_the_backend_has_none() {
    let (mut r, _) = started(Settings {
        upstream_presence: false,
        ..settings()
    });
    let data = r#"{"user_id":"10"}"#;
    let good = sign("presence-x", Some(data));
    let body = format!(
        r#"{{"event":"pusher:subscribe","data":{{"channel":"presence-x","auth":"{good}","channel_data":"{}"}}}}"#,
        data.replace('"', "\\\"")
    );
    let out = feed(&mut r, &body);
    assert!(out.ops.is_empty());
    assert!(texts(&out)[0].contains("PresenceUnavailable"));
}

#[test]
fn client_events_only_on_subscribed_private_channels() {
    let (mut r, _) = started(settings());
    let pub_sub = subscribed(&mut r, r#"{"channel":"news"}"#);
    backend(
        &mut r,
        BackendEvent::Subscribed {
            sub: pub_sub,
            data: None,
        },
    );
    let body = format!(
        r#"{{"channel":"private-chat","auth":"{}"}}"#,
        sign("private-chat", None)
    );
    let sub = subscribed(&mut r, &body);
    backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    let out = feed(
        &mut r,
        r#"{"event":"client-typing","channel":"private-chat","data":{"who":"ann"}}"#,
    );
    let [
        ClientOp::Publish {
            channel,
            event,
            payload,
            reply,
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", texts(&out))
    };
    assert_eq!(channel, "private-chat");
    assert_eq!(event.as_deref(), Some(&b"client-typing"[..]));
    assert_eq!(payload.kind, PayloadKind::Json);
    assert_eq!(payload.data, r#"{"who":"ann"}"#);
    assert_eq!(*reply, None);
    for (ev, why) in [
        (
            r#"{"event":"client-x","channel":"news","data":{}}"#,
            "private and presence",
        ),
        (
            r#"{"event":"client-x","channel":"private-other","data":{}}"#,
            "Not subscribed",
        ),
        (r#"{"event":"client-x","data":{}}"#, "needs a channel"),
        (
            r#"{"event":"hello","channel":"private-chat","data":{}}"#,
            "Unknown event",
        ),
        ("not json", "not a Pusher message"),
    ] {
        let out = feed(&mut r, ev);
        assert!(out.ops.is_empty(), "{ev}");
        let t = texts(&out);
        assert!(t[0].starts_with(r#"{"event":"pusher:error""#), "{t:?}");
        assert!(t[0].contains(why), "{ev}: {t:?}");
        assert!(
            out.close.is_none(),
            "per-message errors leave the connection open"
        );
    }
    let big = format!(
        r#"{{"event":"client-x","channel":"private-chat","data":"{}"}}"#,
        "a".repeat(11 * 1024)
    );
    let out = feed(&mut r, &big);
    assert!(out.ops.is_empty());
    assert!(texts(&out)[0].contains("4301"));
}

#[test]
fn bad_channel_names_are_refused() {
    let (mut r, _) = started(settings());
    let out = feed(
        &mut r,
        r#"{"event":"pusher:subscribe","data":{"channel":"a b/c"}}"#,
    );
    assert!(out.ops.is_empty());
    assert!(texts(&out)[0].contains("InvalidChannel"));
}

#[test]
fn signin_is_verified() {
    let (mut r, _) = started(settings());
    let user = r#"{"id":"12345"}"#;
    let s = auth::sign(KEY, SECRET, &auth::signin_string(SOCKET, user.as_bytes())).unwrap();
    let out = feed(
        &mut r,
        &format!(
            r#"{{"event":"pusher:signin","data":{{"auth":"{s}","user_data":"{}"}}}}"#,
            user.replace('"', "\\\"")
        ),
    );
    assert_eq!(
        texts(&out),
        [r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"12345\"}"}}"#]
    );
    let out = feed(
        &mut r,
        r#"{"event":"pusher:signin","data":{"auth":"app-key:00","user_data":"{}"}}"#,
    );
    assert_eq!(out.close.unwrap().code, 4009);
}

#[test]
fn upstream_failures_pick_pushers_close_codes() {
    for (ev, code) in [
        (
            BackendEvent::Error(ErrorInfo::new(ErrorKind::Unauthorized, "bad token")),
            4009,
        ),
        (
            BackendEvent::Error(ErrorInfo::new(ErrorKind::Unavailable, "gone")),
            4100,
        ),
        (
            BackendEvent::Error(ErrorInfo::new(ErrorKind::Unavailable, "over").with_code(4004)),
            4004,
        ),
        (
            BackendEvent::Closing {
                reason: ErrorInfo::new(ErrorKind::Unavailable, "restart"),
                retry: true,
            },
            4200,
        ),
    ] {
        let pusher_upstream = Settings {
            upstream_codes: true,
            ..settings()
        };
        let (mut r, _) = started(pusher_upstream);
        let out = backend(&mut r, ev);
        assert_eq!(out.close.unwrap().code, code);
    }
    // Another dialect's code in Pusher's range (SocketCluster's 4000 ping timeout, its 4001)
    // is not passed on: pusher-js would read "TLS only" or "do not reconnect".
    for (code, kind, want) in [
        (4000, ErrorKind::Timeout, 4100),
        (4001, ErrorKind::Unavailable, 4100),
        (4008, ErrorKind::Unauthorized, 4009),
    ] {
        let (mut r, _) = started(settings());
        let ev = BackendEvent::Error(ErrorInfo::new(kind, "sc").with_code(code));
        assert_eq!(backend(&mut r, ev).close.unwrap().code, want, "{code}");
    }
    let (mut r, _) = started(settings());
    let mut out = ServerOut::default();
    r.on_upstream_lost(ErrorInfo::new(ErrorKind::Unavailable, "refused"), &mut out);
    assert_eq!(out.close.unwrap().code, 4100);
    let (mut r, _) = started(settings());
    let mut out = ServerOut::default();
    r.on_shutdown(&mut out);
    assert_eq!(out.close.unwrap().code, 4200);
}

#[test]
fn own_client_events_are_not_echoed_back_from_an_echoing_backend() {
    let (mut r, _) = started(Settings {
        upstream_echoes: true,
        ..settings()
    });
    let body = format!(
        r#"{{"channel":"private-chat","auth":"{}"}}"#,
        sign("private-chat", None)
    );
    let sub = subscribed(&mut r, &body);
    backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    let out = feed(
        &mut r,
        r#"{"event":"client-typing","channel":"private-chat","data":{"who":"ann"}}"#,
    );
    assert_eq!(out.ops.len(), 1);
    let echo = || BackendEvent::Message {
        sub: Some(sub),
        channel: Bytes::from("private-chat"),
        event: Some(Bytes::from("client-typing")),
        args: vec![],
        payload: Payload::json(Bytes::from(r#"{"who":"ann"}"#)),
        meta: vec![],
        ack: None,
    };
    // The backend (a STOMP topic) hands it back: held back once.
    assert!(backend(&mut r, echo()).to_client.is_empty());
    // The same data from someone else later is delivered.
    assert_eq!(backend(&mut r, echo()).to_client.len(), 1);
}

fn awaiting() -> Settings {
    Settings {
        await_signin: true,
        signin_timeout: Duration::from_secs(30),
        ..settings()
    }
}

#[test]
fn await_signin_opens_the_upstream_with_the_signins_token() {
    let (mut r, out) = started(awaiting());
    // connection_established at once, but no upstream until the client signs in.
    assert!(texts(&out)[0].contains("pusher:connection_established"));
    assert!(out.ops.is_empty(), "{:?}", out.ops);
    // A subscription meanwhile goes to the session, which holds it until the upstream opens.
    subscribed(&mut r, r#"{"channel":"news"}"#);
    let out = feed(
        &mut r,
        r#"{"event":"pusher:signin","data":{"auth":"eyJ.a.b","user_data":"{\"id\":\"alice\"}"}}"#,
    );
    let [ClientOp::Connect { credentials }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(credentials.token.as_deref(), Some(&b"eyJ.a.b"[..]));
    // No success before the token is verified and the upstream is open.
    assert!(out.to_client.is_empty());
    let again = feed(
        &mut r,
        r#"{"event":"pusher:signin","data":{"auth":"x","user_data":"{}"}}"#,
    );
    assert!(again.ops.is_empty() && again.close.is_none());
    let out = backend(&mut r, BackendEvent::Ready { session: None });
    assert_eq!(
        texts(&out),
        [r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"alice\"}"}}"#]
    );
}

#[test]
fn await_signin_refused_token_is_4009() {
    let (mut r, _) = started(awaiting());
    feed(
        &mut r,
        r#"{"event":"pusher:signin","data":{"auth":"forged","user_data":"{\"id\":\"a\"}"}}"#,
    );
    let out = backend(
        &mut r,
        BackendEvent::Error(ErrorInfo::new(
            ErrorKind::Unauthorized,
            "unauthorized (invalid token)",
        )),
    );
    assert_eq!(
        texts(&out),
        [
            r#"{"event":"pusher:error","data":{"message":"unauthorized (invalid token)","code":4009}}"#
        ]
    );
    assert_eq!(out.close.unwrap().code, 4009);
}

#[test]
fn await_signin_times_out_with_4009() {
    let (mut r, _) = started(awaiting());
    let mut out = ServerOut::default();
    r.expire(Instant::now() + Duration::from_secs(5), &mut out);
    assert!(out.close.is_none());
    r.expire(Instant::now() + Duration::from_secs(31), &mut out);
    assert!(texts(&out)[0].contains("not authorized within timeout"));
    assert_eq!(out.close.unwrap().code, 4009);
}

#[test]
fn await_signin_not_needed_with_an_upgrade_token() {
    let mut r = PusherServer::new(
        awaiting(),
        &hs("/app/app-key", "protocol=7&token=abc"),
        SOCKET.into(),
    );
    let mut out = ServerOut::default();
    r.on_start(Instant::now(), &mut out);
    let [ClientOp::Connect { credentials }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(credentials.token.as_deref(), Some(&b"abc"[..]));
    let mut later = ServerOut::default();
    r.expire(Instant::now() + Duration::from_secs(60), &mut later);
    assert!(later.close.is_none());
}

#[test]
fn refusals_are_4100_and_close_or_a_4301_that_keeps_the_connection() {
    use crate::dialect::Refusal;
    let why = |m: &str| ErrorInfo::new(ErrorKind::Limit, m.to_owned());
    let mut r = PusherServer::new(
        settings(),
        &hs("/app/app-key", "protocol=7&client=js"),
        SOCKET.into(),
    );
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Busy, why("too many connections"), &mut out);
    assert_eq!(
        texts(&out),
        [r#"{"event":"pusher:error","data":{"message":"too many connections","code":4100}}"#]
    );
    assert_eq!(out.close.unwrap().code, 4100);
    let (mut r, _) = started(settings());
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Rate, why("message rate limit exceeded"), &mut out);
    assert_eq!(
        texts(&out),
        [
            r#"{"event":"pusher:error","data":{"message":"message rate limit exceeded","code":4301}}"#
        ]
    );
    assert!(out.close.is_none(), "4301 leaves the connection open");
    // Still serving: a ping is answered.
    assert_eq!(
        texts(&feed(&mut r, r#"{"event":"pusher:ping","data":{}}"#)),
        [r#"{"event":"pusher:pong","data":{}}"#]
    );
}

/// A backend that asked for an ack hears from the proxy, since pusher-js cannot answer:
/// positive once written, negative when the message had no channel to go to.
#[test]
fn deliveries_that_want_an_ack_are_acked_by_the_proxy() {
    let (mut r, _) = started(settings());
    let sub = subscribed(&mut r, r#"{"channel":"news","auth":""}"#);
    backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    crate::dialect::test_support::assert_the_proxy_acks(&mut r, sub, "news");
}

/// A client event on a presence channel carries its sender's `user_id` (from the member
/// data the app signed) to the channel's other members, as Pusher adds it; on a private
/// channel there is none.
#[test]
fn presence_client_events_say_who_sent_them() {
    let (mut r, _) = started(settings());
    let data = r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#;
    let good = sign("presence-room", Some(data));
    let escaped = data.replace('"', "\\\"");
    let sub = subscribed(
        &mut r,
        &format!(r#"{{"channel":"presence-room","auth":"{good}","channel_data":"{escaped}"}}"#),
    );
    backend(&mut r, BackendEvent::Subscribed { sub, data: None });
    let out = feed(
        &mut r,
        r#"{"event":"client-typing","channel":"presence-room","data":{"on":true}}"#,
    );
    let [ClientOp::Publish { meta, .. }] = out.ops.as_slice() else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(
        meta,
        &vec![(Bytes::from_static(crate::frame::SENDER), Bytes::from("10"))]
    );
    // Another member's event, as the backend hands it back.
    let sender = |u: &str| {
        (
            Bytes::from_static(crate::frame::SENDER),
            Bytes::from(u.to_owned()),
        )
    };
    let typing = |r: &mut PusherServer, sub, channel: &str, meta| {
        let ev = BackendEvent::Message {
            sub: Some(sub),
            channel: Bytes::from(channel.to_owned()),
            event: Some(Bytes::from("client-typing")),
            args: vec![],
            payload: Payload::json(Bytes::from(r#"{"on":true}"#)),
            meta,
            ack: None,
        };
        texts(&backend(r, ev))
    };
    assert_eq!(
        typing(&mut r, sub, "presence-room", vec![sender("11")]),
        [
            r#"{"event":"client-typing","channel":"presence-room","data":"{\"on\":true}","user_id":"11"}"#
        ]
    );
    // A header of that name from another dialect's client is only a header.
    let header = (Bytes::from("user_id"), Bytes::from("alice"));
    assert_eq!(
        typing(&mut r, sub, "presence-room", vec![header]),
        [r#"{"event":"client-typing","channel":"presence-room","data":"{\"on\":true}"}"#]
    );
    // A private channel's event names nobody.
    let private = subscribed(
        &mut r,
        &format!(
            r#"{{"channel":"private-x","auth":"{}"}}"#,
            sign("private-x", None)
        ),
    );
    assert_eq!(
        typing(&mut r, private, "private-x", vec![sender("11")]),
        [r#"{"event":"client-typing","channel":"private-x","data":"{\"on\":true}"}"#]
    );
}
