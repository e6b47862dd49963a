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

fn from_backend(c: &mut ScClient, s: &str) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_backend(txt(s), Instant::now(), &mut out);
    out
}

fn op(c: &mut ScClient, op: ClientOp) -> ClientOut {
    let mut out = ClientOut::default();
    c.on_op(op, Instant::now(), &mut out);
    out
}

fn open() -> ScClient {
    let mut c = ScClient::new(
        Settings::default(),
        Credentials {
            token: Some(Bytes::from("jwt")),
            ..Default::default()
        },
    );
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    assert_eq!(
        sent(&out),
        [r##"{"event":"#handshake","data":{"authToken":"jwt"},"cid":1}"##]
    );
    let out = from_backend(
        &mut c,
        r#"{"rid":1,"data":{"id":"abc","pingTimeout":20000,"isAuthenticated":true}}"#,
    );
    assert_eq!(
        out.events,
        vec![BackendEvent::Ready {
            session: Some(Bytes::from("abc"))
        }]
    );
    c
}

fn publish(channel: &str, reply: Option<Reply>, broadcast: bool) -> ClientOp {
    ClientOp::Publish {
        channel: Bytes::from(channel.to_owned()),
        event: None,
        args: vec![],
        payload: Payload::json(Bytes::from("{}")),
        meta: vec![],
        reply,
        broadcast,
        sub: None,
    }
}

#[test]
fn pongs_in_the_servers_version() {
    let mut c = open();
    assert_eq!(sent(&from_backend(&mut c, "#1")), ["#2"]);
    let mut c = open();
    assert_eq!(sent(&from_backend(&mut c, "")), [""]);
}

#[test]
fn ops_wait_for_the_handshake_answer() {
    let mut c = ScClient::new(Settings::default(), Credentials::default());
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    assert_eq!(
        sent(&out),
        [r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##]
    );
    assert!(
        op(&mut c, publish("registerUser", Some(Reply::data(1)), false))
            .to_backend
            .is_empty()
    );
    let out = from_backend(
        &mut c,
        r#"{"rid":1,"data":{"id":"x","pingTimeout":20000,"isAuthenticated":false}}"#,
    );
    assert_eq!(
        sent(&out),
        [r#"{"event":"registerUser","data":{},"cid":2}"#]
    );
}

#[test]
fn rpc_answers_and_errors_pass_as_they_are() {
    let mut c = open();
    let out = op(&mut c, publish("registerUser", Some(Reply::data(5)), false));
    assert_eq!(
        sent(&out),
        [r#"{"event":"registerUser","data":{},"cid":2}"#]
    );
    // The SMS guide's backend answers in the error slot, with a string.
    let out = from_backend(&mut c, r#"{"rid":2,"error":"{\"urn\":\"u1\"}"}"#);
    let [
        BackendEvent::Reply {
            id: 5,
            result: Err(e),
        },
    ] = &out.events[..]
    else {
        panic!("{:?}", out.events)
    };
    assert_eq!(e.message, r#"{"urn":"u1"}"#);
    assert_eq!(e.detail.as_ref().unwrap().data, r#""{\"urn\":\"u1\"}""#);
    let out = op(&mut c, publish("echo", Some(Reply::data(6)), false));
    assert_eq!(out.to_backend.len(), 1);
    let out = from_backend(&mut c, r#"{"rid":3,"data":{"ok":1}}"#);
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 6,
            result: Ok(Some(Payload::json(Bytes::from(r#"{"ok":1}"#))))
        }]
    );
    // A receipt is confirmed once written; a channel publish is #publish.
    let out = op(&mut c, publish("news", Some(Reply::receipt(7)), true));
    assert_eq!(
        sent(&out),
        [r##"{"event":"#publish","data":{"channel":"news","data":{}}}"##]
    );
    assert_eq!(
        out.events,
        vec![BackendEvent::Reply {
            id: 7,
            result: Ok(None)
        }]
    );
}

#[test]
fn calls_time_out() {
    let mut c = open();
    op(&mut c, publish("slow", Some(Reply::data(8)), false));
    let mut out = ClientOut::default();
    c.expire(Instant::now() + Duration::from_secs(11), &mut out);
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Reply { id: 8, result: Err(e) }] if e.kind == ErrorKind::Timeout
    ));
}

#[test]
fn channels_kick_outs_and_tokens() {
    let mut c = open();
    let out = op(
        &mut c,
        ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("urn:1"),
            params: Default::default(),
        },
    );
    assert_eq!(
        sent(&out),
        [r##"{"event":"#subscribe","data":{"channel":"urn:1"},"cid":2}"##]
    );
    let out = from_backend(&mut c, r#"{"rid":2}"#);
    assert_eq!(
        out.events,
        vec![BackendEvent::Subscribed { sub: 1, data: None }]
    );
    let out = from_backend(
        &mut c,
        r##"{"event":"#publish","data":{"channel":"urn:1","data":{"to":"urn:1"}}}"##,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Message { channel, payload, .. }] if channel == "urn:1" && payload.data == r#"{"to":"urn:1"}"#
    ));
    let out = from_backend(
        &mut c,
        r##"{"event":"#kickOut","data":{"channel":"urn:1","message":"bye"}}"##,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Unsubscribed { sub: 1, reason }] if reason.message == "bye"
    ));
    // v1 pushes tokens with a cid and wants the rid back.
    let out = from_backend(
        &mut c,
        r##"{"event":"#setAuthToken","data":{"token":"new"},"cid":4}"##,
    );
    assert_eq!(sent(&out), [r#"{"rid":4}"#]);
    assert_eq!(
        out.events,
        vec![BackendEvent::AuthChanged {
            token: Some(Bytes::from("new"))
        }]
    );
    let out = from_backend(&mut c, r##"{"event":"#removeAuthToken"}"##);
    assert_eq!(out.events, vec![BackendEvent::AuthChanged { token: None }]);
    // The server's own emit, asking for an answer, which the client gives.
    let out = from_backend(&mut c, r#"{"event":"confirm","data":{},"cid":9}"#);
    let [
        BackendEvent::Message {
            ack: Some(token), ..
        },
    ] = &out.events[..]
    else {
        panic!()
    };
    let out = op(
        &mut c,
        ClientOp::Ack {
            token: token.clone(),
            positive: true,
            result: Some(Payload::json(Bytes::from("1"))),
        },
    );
    assert_eq!(sent(&out), [r#"{"rid":9,"data":1}"#]);
}

#[test]
fn a_refused_token_fails_the_leg() {
    let mut c = ScClient::new(Settings::default(), Credentials::default());
    let mut out = ClientOut::default();
    c.start(Instant::now(), &mut out);
    let out = from_backend(
        &mut c,
        r#"{"rid":1,"data":{"id":"x","pingTimeout":20000,"isAuthenticated":false,"authError":{"name":"AuthTokenInvalidError","message":"invalid token"}}}"#,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Error(e)] if e.kind == ErrorKind::Unauthorized
    ));
    // v1's #disconnect carries the close code.
    let mut c = open();
    let out = from_backend(
        &mut c,
        r##"{"event":"#disconnect","data":{"code":4500,"data":"banned"}}"##,
    );
    assert!(matches!(
        &out.events[..],
        [BackendEvent::Error(e)] if e.code == Some(4500) && e.message == "banned"
    ));
}
