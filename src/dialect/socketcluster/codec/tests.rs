use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn pings_by_version_and_side() {
    assert_eq!(decode(&b("#1"), false).unwrap(), Decoded::Ping(Version::V1));
    assert_eq!(decode(&b("#2"), true).unwrap(), Decoded::Pong(Version::V1));
    assert_eq!(decode(&b(""), false).unwrap(), Decoded::Ping(Version::V2));
    assert_eq!(decode(&b(""), true).unwrap(), Decoded::Pong(Version::V2));
    assert_eq!(Version::V1.pong(), b"#2");
    assert_eq!(Version::V2.ping(), b"");
}

#[test]
fn decodes_packets_as_slices() {
    let src = b(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##);
    let Decoded::Packet(p) = decode(&src, true).unwrap() else {
        panic!()
    };
    assert_eq!(p.event.as_deref(), Some(&b"#handshake"[..]));
    assert_eq!(p.data.as_deref(), Some(&br##"{"authToken":null}"##[..]));
    assert_eq!(p.cid, Some(1));
    assert!(
        src.as_ptr_range()
            .contains(&p.data.as_ref().unwrap().as_ptr())
    );
    let d = decode(
        &b(r##"{"rid":7,"error":{"name":"E","message":"m"}}"##),
        false,
    )
    .unwrap();
    let Decoded::Packet(p) = d else { panic!() };
    assert_eq!(p.rid, Some(7));
    assert_eq!(
        error_fields(p.error.as_ref().unwrap()),
        ("E".into(), "m".into())
    );
}

#[test]
fn batches_are_arrays() {
    let Decoded::Packets(p) = decode(
        &b(r##"[{"event":"a","data":1},{"event":"#publish","data":{"channel":"c","data":2}}]"##),
        true,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(p.len(), 2);
    assert_eq!(
        channel_of(p[1].data.as_ref().unwrap()),
        Some((b("c"), Some(b("2"))))
    );
}

#[test]
fn refuses_what_is_not_a_packet() {
    for bad in ["nope", "{", "3", r##""x""##, r##"[1]"##] {
        assert!(decode(&b(bad), true).is_err(), "{bad}");
    }
}

#[test]
fn encodes_golden_frames() {
    assert_eq!(
        event(b"#handshake", Some(br##"{"authToken":"t"}"##), Some(1)),
        r##"{"event":"#handshake","data":{"authToken":"t"},"cid":1}"##
    );
    assert_eq!(
        channel_event(b"#publish", b"news", Some(br##"{"id":17}"##), None),
        r##"{"event":"#publish","data":{"channel":"news","data":{"id":17}}}"##
    );
    assert_eq!(
        channel_event(b"#subscribe", b"a\"b", None, Some(3)),
        r##"{"event":"#subscribe","data":{"channel":"a\"b"},"cid":3}"##
    );
    assert_eq!(
        event(b"#removeAuthToken", None, None),
        r##"{"event":"#removeAuthToken"}"##
    );
    assert_eq!(
        reply(
            1,
            Some(br##"{"id":"x","pingTimeout":20000,"isAuthenticated":false}"##)
        ),
        r##"{"rid":1,"data":{"id":"x","pingTimeout":20000,"isAuthenticated":false}}"##
    );
    assert_eq!(reply(2, None), r##"{"rid":2}"##);
    assert_eq!(
        reply_error(3, &error_object("InvalidActionError", b"no \"x\"")),
        r##"{"rid":3,"error":{"name":"InvalidActionError","message":"no \"x\""}}"##
    );
    assert_eq!(
        event(b"#kickOut", Some(&kick_body(b"news", b"bye")), None),
        r##"{"event":"#kickOut","data":{"channel":"news","message":"bye"}}"##
    );
}

#[test]
fn channel_bodies() {
    assert_eq!(channel_of(&b(r##""news""##)), Some((b("news"), None)));
    assert_eq!(
        channel_of(&b(r##"{"channel":"news","message":"bye"}"##)),
        Some((b("news"), Some(b(r##""bye""##))))
    );
    assert_eq!(channel_of(&b("3")), None);
    // An error slot holding a string (the SMS guide answers in it) reads as the message.
    assert_eq!(
        error_fields(br##""{\"urn\":1}""##),
        ("Error".into(), r##"{"urn":1}"##.into())
    );
}

#[test]
fn events_are_strings_sliced_unless_escaped() {
    let src = b(r##"{"event":"#publish","data":1}"##);
    let Decoded::Packet(p) = decode(&src, true).unwrap() else {
        panic!()
    };
    assert!(
        src.as_ptr_range()
            .contains(&p.event.as_ref().unwrap().as_ptr())
    );
    let Decoded::Packet(p) = decode(&b(r##"{"event":"a\"b"}"##), true).unwrap() else {
        panic!()
    };
    assert_eq!(p.event.as_deref(), Some(&b"a\"b"[..]));
    assert!(decode(&b(r##"{"event":5,"data":1}"##), true).is_err());
    assert!(decode(&b(r##"[{"event":"a"},{"event":[]}]"##), true).is_err());
}
