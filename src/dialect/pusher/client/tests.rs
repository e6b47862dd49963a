use super::*;
use crate::frame::PayloadKind;

const SECRET: &str = "app-secret";

fn settings() -> Settings {
    Settings {
        app_key: "app-key".into(),
        app_secret: Some(SECRET.into()),
        ..Default::default()
    }
}

fn txt(s: &str) -> WsMsg {
    WsMsg::Text(Bytes::from(s.to_owned()))
}

fn sent(out: &ClientOut) -> Vec<String> {
    out.to_backend
        .iter()
        .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
        .collect()
}

fn open(s: Settings) -> (PusherClient, ClientOut) {
    let mut c = PusherClient::new(s, Credentials::default());
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    assert!(out.to_backend.is_empty(), "the server speaks first");
    c.on_backend(
        txt(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1234.1234\",\"activity_timeout\":30}"}"#),
        Instant::now(),
        &mut out,
    );
    (c, out)
}

fn op(c: &mut PusherClient, op: ClientOp) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_op(op, Instant::now(), &mut out);
    out
}

fn from_backend(c: &mut PusherClient, s: &str) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_backend(txt(s), Instant::now(), &mut out);
    out
}

fn subscribe(sub: SubId, channel: &str, params: SubParams) -> ClientOp {
    ClientOp::Subscribe {
        sub,
        channel: Bytes::from(channel.to_owned()),
        params,
    }
}

#[test]
fn ready_on_connection_established_with_the_servers_activity_timeout() {
    let (c, out) = open(settings());
    assert_eq!(
        out.events,
        vec![BackendEvent::Ready {
            session: Some(Bytes::from("1234.1234"))
        }]
    );
    let k = c.keepalive();
    assert_eq!(k.send_every, Some(Duration::from_secs(30)));
    assert_eq!(k.expect_within, Some(Duration::from_secs(60)));
    // Pings whatever this leg publishes: a quiet server's pongs are what it hears.
    assert!(k.periodic);
}

/// A server's `activity_timeout` of 0 is no timeout (a ping on every tick): ours applies.
#[test]
fn a_zero_activity_timeout_is_ours() {
    let s = settings();
    let ours = s.activity_timeout;
    let mut c = PusherClient::new(s, Credentials::default());
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    c.on_backend(
        txt(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":0}"}"#),
        Instant::now(),
        &mut out,
    );
    assert_eq!(c.keepalive().send_every, Some(ours));
}

#[test]
fn ops_wait_for_connection_established() {
    let mut c = PusherClient::new(settings(), Credentials::default());
    let out = op(&mut c, subscribe(1, "news", SubParams::default()));
    assert!(out.to_backend.is_empty());
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\"}"}"#,
    );
    assert_eq!(
        sent(&out),
        [r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#]
    );
}

#[test]
fn private_and_presence_are_signed_for_the_upstream_socket_id() {
    // Pusher's documented example, computed with its demo key and secret.
    let (mut c, _) = open(Settings {
        app_key: "278d425bdf160c739803".into(),
        app_secret: Some("7ad3773142a6692b25b8".into()),
        ..Default::default()
    });
    let out = op(&mut c, subscribe(1, "private-foobar", SubParams::default()));
    assert_eq!(
        sent(&out),
        [
            r#"{"event":"pusher:subscribe","data":{"channel":"private-foobar","auth":"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"}}"#
        ]
    );
    let params = SubParams {
        channel_data: Some(Bytes::from(
            r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#,
        )),
        ..Default::default()
    };
    let out = op(&mut c, subscribe(2, "presence-foobar", params));
    assert_eq!(
        sent(&out),
        [
            r#"{"event":"pusher:subscribe","data":{"channel":"presence-foobar","auth":"278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80","channel_data":"{\"user_id\":10,\"user_info\":{\"name\":\"Mr. Channels\"}}"}}"#
        ]
    );
}

#[test]
fn without_a_secret_or_identity_private_and_presence_are_refused() {
    let (mut c, _) = open(Settings {
        app_secret: None,
        ..settings()
    });
    let out = op(&mut c, subscribe(1, "private-x", SubParams::default()));
    assert!(out.to_backend.is_empty());
    assert!(matches!(
        &out.events[..],
        [BackendEvent::SubscribeFailed { sub: 1, reason }] if reason.kind == ErrorKind::Unauthorized
    ));
    let (mut c, _) = open(settings());
    let out = op(&mut c, subscribe(2, "presence-x", SubParams::default()));
    assert!(matches!(
        &out.events[..],
        [BackendEvent::SubscribeFailed { sub: 2, .. }]
    ));
    let out = op(&mut c, subscribe(3, "not/a channel", SubParams::default()));
    assert!(matches!(
        &out.events[..],
        [BackendEvent::SubscribeFailed { sub: 3, reason }] if reason.kind == ErrorKind::Untranslatable
    ));
}

#[test]
fn one_wire_subscription_per_channel() {
    let (mut c, _) = open(settings());
    let out = op(&mut c, subscribe(1, "news", SubParams::default()));
    assert_eq!(out.to_backend.len(), 1);
    let out = op(&mut c, subscribe(2, "news", SubParams::default()));
    assert!(out.to_backend.is_empty());
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"news"}"#,
    );
    assert_eq!(
        out.events,
        vec![
            BackendEvent::Subscribed { sub: 1, data: None },
            BackendEvent::Subscribed { sub: 2, data: None }
        ]
    );
    assert!(
        op(&mut c, ClientOp::Unsubscribe { sub: 1 })
            .to_backend
            .is_empty()
    );
    assert_eq!(
        sent(&op(&mut c, ClientOp::Unsubscribe { sub: 2 })),
        [r#"{"event":"pusher:unsubscribe","data":{"channel":"news"}}"#]
    );
}

#[test]
fn server_events_decode_json_in_a_string_once() {
    let (mut c, _) = open(settings());
    let out = from_backend(
        &mut c,
        r#"{"event":"call-status","channel":"consultation-7","data":"{\"status\":\"in_progress\"}"}"#,
    );
    let [
        BackendEvent::Message {
            channel,
            event,
            payload,
            sub: None,
            ..
        },
    ] = &out.events[..]
    else {
        panic!("{:?}", out.events)
    };
    assert_eq!(channel, "consultation-7");
    assert_eq!(event.as_deref(), Some(&b"call-status"[..]));
    assert_eq!(
        payload,
        &Payload::json(Bytes::from(r#"{"status":"in_progress"}"#))
    );
    assert_eq!(c.take_copied().bytes, payload.data.len() as u64);
    let out = from_backend(
        &mut c,
        r#"{"event":"note","channel":"c","data":"plain words"}"#,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Message { payload, .. }] if payload.kind == PayloadKind::Text && payload.data == "plain words"
    ));
}

#[test]
fn presence_errors_and_pings() {
    let (mut c, _) = open(settings());
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher_internal:member_added","channel":"presence-x","data":"{\"user_id\":\"11\",\"user_info\":{\"name\":\"B\"}}"}"#,
    );
    assert_eq!(
        out.events,
        vec![BackendEvent::Presence {
            channel: Bytes::from("presence-x"),
            member: Bytes::from(r#"{"user_id":"11","user_info":{"name":"B"}}"#),
            added: true
        }]
    );
    let out = from_backend(&mut c, r#"{"event":"pusher:ping","data":{}}"#);
    assert_eq!(sent(&out), [r#"{"event":"pusher:pong","data":{}}"#]);
    op(&mut c, subscribe(1, "private-x", SubParams::default()));
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher:subscription_error","channel":"private-x","data":{"type":"AuthError","error":"Invalid signature","status":401}}"#,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::SubscribeFailed { sub: 1, reason }] if reason.kind == ErrorKind::Unauthorized && reason.code == Some(401)
    ));
    // A coded error closes the leg, with the code kept for a Pusher downstream.
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher:error","data":{"message":"Over capacity","code":4100}}"#,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Error(e)] if e.code == Some(4100) && e.kind == ErrorKind::Limit
    ));
    assert!(out.close.is_some());
}

#[test]
fn client_events_with_limits() {
    let (mut c, _) = open(settings());
    op(&mut c, subscribe(1, "private-chat", SubParams::default()));
    from_backend(
        &mut c,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-chat","data":"{}"}"#,
    );
    let publish = |channel: &str, event: Option<&str>, data: Payload| ClientOp::Publish {
        channel: Bytes::from(channel.to_owned()),
        event: event.map(|e| Bytes::from(e.to_owned())),
        args: vec![],
        payload: data,
        meta: vec![],
        reply: Some(Reply::receipt(9)),
        broadcast: false,
        sub: None,
    };
    let out = op(
        &mut c,
        publish(
            "private-chat",
            Some("client-typing"),
            Payload::json(Bytes::from(r#"{"who":"ann"}"#)),
        ),
    );
    assert_eq!(
        sent(&out),
        [r#"{"event":"client-typing","channel":"private-chat","data":{"who":"ann"}}"#]
    );
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 9,
            result: Ok(None)
        }]
    );
    for (channel, event, data, kind) in [
        (
            "private-chat",
            Some("typing"),
            Payload::null(),
            ErrorKind::Untranslatable,
        ),
        (
            "private-chat",
            None,
            Payload::null(),
            ErrorKind::Untranslatable,
        ),
        (
            "news",
            Some("client-x"),
            Payload::null(),
            ErrorKind::Untranslatable,
        ),
        (
            "private-chat",
            Some("client-x"),
            Payload::text(Bytes::from("a".repeat(11 * 1024))),
            ErrorKind::Limit,
        ),
    ] {
        let out = op(&mut c, publish(channel, event, data));
        assert!(out.to_backend.is_empty());
        assert!(
            matches!(
                &out.events[..],
                [BackendEvent::Reply { id: 9, result: Err(e) }] if e.kind == kind
            ),
            "{channel} {event:?}: {:?}",
            out.events
        );
    }
}

#[test]
fn without_a_secret_the_apps_endpoint_signs_with_the_clients_credentials() {
    let mut c = PusherClient::new(
        Settings {
            app_secret: None,
            auth_endpoint: Some("http://127.0.0.1:9/pusher/auth".into()),
            ..settings()
        },
        Credentials {
            token: Some(Bytes::from("good-token")),
            cookie: Some(Bytes::from("s=1")),
            ..Default::default()
        },
    );
    let mut out = ClientOut::default();
    c.on_backend(
        txt(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"7.8\"}"}"#),
        Instant::now(),
        &mut out,
    );
    let out = op(&mut c, subscribe(1, "private-ward", SubParams::default()));
    assert!(out.to_backend.is_empty(), "nothing before the app signs");
    let [req] = &out.authorize[..] else {
        panic!("{:?}", out.authorize)
    };
    assert_eq!(req.url, "http://127.0.0.1:9/pusher/auth");
    assert_eq!(
        req.form,
        vec![
            ("socket_id".to_owned(), "7.8".to_owned()),
            ("channel_name".to_owned(), "private-ward".to_owned())
        ]
    );
    assert!(
        req.headers
            .contains(&("Authorization".into(), "Bearer good-token".into()))
    );
    assert!(req.headers.contains(&("Cookie".into(), "s=1".into())));
    // A second subscription to the channel waits on the same answer.
    assert!(
        op(&mut c, subscribe(2, "private-ward", SubParams::default()))
            .authorize
            .is_empty()
    );
    let mut out = ClientOut::default();
    c.on_authorized(
        req.id,
        Ok(Bytes::from(r#"{"auth":"app-key:abc"}"#)),
        Instant::now(),
        &mut out,
    );
    assert_eq!(
        sent(&out),
        [r#"{"event":"pusher:subscribe","data":{"channel":"private-ward","auth":"app-key:abc"}}"#]
    );
    // A refusal fails every subscription waiting on it.
    let out = op(&mut c, subscribe(3, "presence-ward", SubParams::default()));
    let id = out.authorize[0].id;
    let mut out = ClientOut::default();
    c.on_authorized(
        id,
        Err(ErrorInfo::new(ErrorKind::Unauthorized, "403 Forbidden")),
        Instant::now(),
        &mut out,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::SubscribeFailed { sub: 3, reason }] if reason.kind == ErrorKind::Unauthorized
    ));
}

#[test]
fn a_pusher_close_code_is_kept_for_the_client() {
    let (mut c, _) = open(settings());
    let mut out = ClientOut::default();
    c.on_closed(
        ErrorInfo::new(ErrorKind::Unavailable, "backend closed the connection").with_code(4200),
        &mut out,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Error(e)] if e.code == Some(4200)
    ));
    // A plain close has nothing to pass on.
    let (mut c, _) = open(settings());
    let mut out = ClientOut::default();
    c.on_closed(ErrorInfo::new(ErrorKind::Unavailable, "gone"), &mut out);
    assert!(out.events.is_empty());
}

/// Pusher refuses a bad channel signature with a code-null `pusher:error` that has no
/// channel field and names the signed string: the pending subscription it names fails
/// (the longest name it contains), other errors stay plain refusals.
#[test]
fn a_code_null_error_naming_a_pending_channel_fails_its_subscription() {
    let (mut c, _) = open(settings());
    op(&mut c, subscribe(1, "private-x", SubParams::default()));
    op(&mut c, subscribe(2, "private-xy", SubParams::default()));
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher:error","data":{"message":"Invalid signature: Expected HMAC SHA256 hex digest of 1234.1234:private-xy, but got abc","code":null}}"#,
    );
    let [BackendEvent::SubscribeFailed { sub: 2, reason }] = out.events.as_slice() else {
        panic!("{:?}", out.events)
    };
    assert_eq!(reason.kind, ErrorKind::Unauthorized);
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher:error","data":{"message":"Client event rejected","code":null}}"#,
    );
    assert!(matches!(out.events.as_slice(), [BackendEvent::Refused(_)]));
    // The other one is still waiting, and is confirmed as usual.
    let out = from_backend(
        &mut c,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-x","data":"{}"}"#,
    );
    assert!(matches!(
        out.events.as_slice(),
        [BackendEvent::Subscribed { sub: 1, .. }]
    ));
}

/// A subscription the server neither confirms nor refuses fails after `confirm_timeout`
/// with a timeout, and is unsubscribed should the server confirm it after all.
#[test]
fn an_unanswered_subscription_fails_after_the_confirm_timeout() {
    let (mut c, _) = open(settings());
    let t0 = Instant::now();
    let mut out = ClientOut::default();
    c.on_op(subscribe(1, "news", SubParams::default()), t0, &mut out);
    let mut out = ClientOut::default();
    c.expire(t0 + Duration::from_secs(14), &mut out);
    assert!(out.events.is_empty() && out.to_backend.is_empty());
    c.expire(t0 + Duration::from_secs(15), &mut out);
    assert_eq!(
        sent(&out),
        [r#"{"event":"pusher:unsubscribe","data":{"channel":"news"}}"#]
    );
    let [BackendEvent::SubscribeFailed { sub: 1, reason }] = out.events.as_slice() else {
        panic!("{:?}", out.events)
    };
    assert_eq!(reason.kind, ErrorKind::Timeout);
    // A subscription made again is a new wire subscription.
    let out = op(&mut c, subscribe(2, "news", SubParams::default()));
    assert_eq!(
        sent(&out),
        [r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#]
    );
}

/// A Pusher server's client event from a presence member carries `user_id`: it travels on
/// in the message's meta, as a plain string (a number as its digits).
#[test]
fn a_presence_client_events_user_id_travels_in_the_meta() {
    let (mut c, _) = open(settings());
    for (wire, want) in [
        (r#""u-1""#, Some("u-1")),
        ("42", Some("42")),
        ("null", None),
    ] {
        let out = from_backend(
            &mut c,
            &format!(
                r#"{{"event":"client-typing","channel":"presence-room","data":"{{}}","user_id":{wire}}}"#
            ),
        );
        let [BackendEvent::Message { meta, .. }] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        let got = meta
            .iter()
            .find(|(k, _)| k == crate::frame::SENDER)
            .map(|(_, v)| v.clone());
        assert_eq!(got, want.map(Bytes::from), "{wire}");
    }
}
