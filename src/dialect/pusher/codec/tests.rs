use super::*;
use crate::frame::PayloadKind;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn decodes_an_envelope_as_slices() {
    let src = b(
        r#"{"event":"call-status","channel":"consultation-7","data":"{\"status\":\"in_progress\"}"}"#,
    );
    let m = decode(&src).unwrap();
    assert_eq!(m.event, "call-status");
    assert_eq!(m.channel.as_deref(), Some(&b"consultation-7"[..]));
    let data = m.data.unwrap();
    assert_eq!(data, r#""{\"status\":\"in_progress\"}""#);
    assert!(src.as_ptr_range().contains(&m.event.as_ptr()));
    assert!(src.as_ptr_range().contains(&data.as_ptr()));
    // JSON in a string: unescaped once (a counted copy), then JSON.
    let (p, copied) = data_payload(&data);
    assert_eq!(p, Payload::json(b(r#"{"status":"in_progress"}"#)));
    assert_eq!(copied, p.data.len());
}

#[test]
fn data_objects_and_plain_strings() {
    // A client event keeps what the sender sent: an object, zero copy.
    let m = decode(&b(
        r#"{"event":"client-typing","channel":"private-chat","data":{"who":"ann"}}"#,
    ))
    .unwrap();
    let (p, copied) = data_payload(m.data.as_ref().unwrap());
    assert_eq!(p, Payload::json(b(r#"{"who":"ann"}"#)));
    assert_eq!(copied, 0);
    // A string without escapes that is JSON (`123`) is JSON; one that is not is text.
    let (p, copied) = data_payload(&b(r#""123""#));
    assert_eq!((p.kind, copied), (PayloadKind::Json, 0));
    assert_eq!(p.data, "123");
    let (p, _) = data_payload(&b(r#""hello there""#));
    assert_eq!(p, Payload::text(b("hello there")));
}

#[test]
fn refuses_what_is_not_an_envelope() {
    for bad in [
        "",
        "[]",
        "{}",
        r#"{"event":1}"#,
        "not json",
        r#"{"event":"x""#,
    ] {
        assert!(decode(&b(bad)).is_err(), "{bad}");
    }
    // Unknown fields are ignored, as servers do.
    assert!(decode(&b(r#"{"event":"x","extra":true}"#)).is_ok());
}

#[test]
fn encodes_golden_frames() {
    let established = encode(
        b"pusher:connection_established",
        None,
        Data::Str(br#"{"socket_id":"123.456","activity_timeout":120}"#),
    );
    assert_eq!(
        established,
        r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#
    );
    let succeeded = encode(
        b"pusher_internal:subscription_succeeded",
        Some(b"news"),
        Data::Str(b"{}"),
    );
    assert_eq!(
        succeeded,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"}"#
    );
    let presence = encode(
        b"pusher_internal:subscription_succeeded",
        Some(b"presence-foobar"),
        Data::Str(
            br#"{"presence":{"ids":["10"],"hash":{"10":{"name":"Mr. Channels"}},"count":1}}"#,
        ),
    );
    assert_eq!(
        presence,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-foobar","data":"{\"presence\":{\"ids\":[\"10\"],\"hash\":{\"10\":{\"name\":\"Mr. Channels\"}},\"count\":1}}"}"#
    );
    let added = encode(
        b"pusher_internal:member_added",
        Some(b"presence-foobar"),
        Data::Str(br#"{"user_id":"11","user_info":{"name":"B"}}"#),
    );
    assert_eq!(
        added,
        r#"{"event":"pusher_internal:member_added","channel":"presence-foobar","data":"{\"user_id\":\"11\",\"user_info\":{\"name\":\"B\"}}"}"#
    );
    let ping = encode(b"pusher:ping", None, Data::Raw(b"{}"));
    assert_eq!(ping, r#"{"event":"pusher:ping","data":{}}"#);
    let error = encode(
        b"pusher:error",
        None,
        Data::Raw(&error_body("App key x not in this cluster", Some(4001))),
    );
    assert_eq!(
        error,
        r#"{"event":"pusher:error","data":{"message":"App key x not in this cluster","code":4001}}"#
    );
    let code_null = error_body("Unknown event", None);
    assert_eq!(code_null, r#"{"message":"Unknown event","code":null}"#);
    let sub = encode(
        b"pusher:subscribe",
        None,
        Data::Raw(br#"{"channel":"private-foobar","auth":"k:s"}"#),
    );
    assert_eq!(
        sub,
        r#"{"event":"pusher:subscribe","data":{"channel":"private-foobar","auth":"k:s"}}"#
    );
    let event = encode(
        b"message_created",
        Some(b"news"),
        Data::Str(br#"{"id":17,"text":"hi"}"#),
    );
    assert_eq!(
        event,
        r#"{"event":"message_created","channel":"news","data":"{\"id\":17,\"text\":\"hi\"}"}"#
    );
    // Every encoding is exactly as long as its allocation.
    for f in [
        established,
        succeeded,
        presence,
        added,
        ping,
        error,
        sub,
        event,
    ] {
        assert!(decode(&f).is_ok(), "{f:?}");
    }
}

#[test]
fn text_payloads_are_json_encoded_into_data() {
    let p = Payload::text(b("hi"));
    let j = payload_json(&p).unwrap();
    assert_eq!(&*j, br#""hi""#);
    let f = encode(b"e", Some(b"c"), Data::Str(&j));
    assert_eq!(f, r#"{"event":"e","channel":"c","data":"\"hi\""}"#);
    assert!(payload_json(&Payload::binary(b("\x00"))).is_none());
}

#[test]
fn subscribe_bodies() {
    let s = subscribe_data(&b(
        r#"{"channel":"presence-foobar","auth":"k:sig","channel_data":"{\"user_id\":10}"}"#,
    ))
    .unwrap();
    assert_eq!(s.channel, "presence-foobar");
    assert_eq!(s.auth.as_deref(), Some(&b"k:sig"[..]));
    // The exact signed bytes, unescaped.
    assert_eq!(s.channel_data.as_deref(), Some(&br#"{"user_id":10}"#[..]));
    // pusher-js sends an empty auth on public channels; some clients stringify the body.
    let s = subscribe_data(&b(r#"{"channel":"news","auth":""}"#)).unwrap();
    assert_eq!(s.auth, None);
    let s = subscribe_data(&b(r#""{\"channel\":\"news\"}""#)).unwrap();
    assert_eq!(s.channel, "news");
    assert!(subscribe_data(&b(r#"{"auth":"x"}"#)).is_err());
    let si = signin_data(&b(r#"{"auth":"k:s","user_data":"{\"id\":\"12345\"}"}"#)).unwrap();
    assert_eq!(si.user_data, r#"{"id":"12345"}"#);
}

#[test]
fn error_bodies_from_pusher_and_soketi() {
    let e = error_data(Some(&b(r#"{"message":"Over quota","code":4004}"#)));
    assert_eq!((e.message.as_str(), e.code), ("Over quota", Some(4004)));
    let e = error_data(Some(&b(
        r#"{"type":"AuthError","error":"Invalid signature","status":401}"#,
    )));
    assert_eq!(
        (e.message.as_str(), e.code),
        ("Invalid signature", Some(401))
    );
    assert_eq!(e.kind.as_deref(), Some("AuthError"));
    // Reverb stringifies error data.
    let e = error_data(Some(&b(r#""{\"message\":\"x\",\"code\":null}""#)));
    assert_eq!((e.message.as_str(), e.code), ("x", None));
    assert_eq!(error_data(None), ErrorBody::default());
}

#[test]
fn channel_names_and_kinds() {
    assert!(valid_channel(b"presence-consultation-7"));
    assert!(valid_channel(b"a_b-c=d@e,f.g;h"));
    for bad in [&b""[..], b"a b", b"a/b", b"a*b", &[b'a'; 201][..]] {
        assert!(!valid_channel(bad), "{bad:?}");
    }
    assert!(valid_channel(&[b'a'; 200]));
    assert_eq!(kind(b"news"), Kind::Public);
    assert_eq!(kind(b"private-x"), Kind::Private);
    assert_eq!(kind(b"private-encrypted-x"), Kind::Encrypted);
    assert_eq!(kind(b"presence-x"), Kind::Presence);
}
