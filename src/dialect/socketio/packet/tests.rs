//! Unit tests of the Socket.IO packet codec.

use bytes::BytesMut;

use super::decode::parse_decimal;
use super::encode::{decimal_len, put_decimal};
use super::*;
use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn pkt(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<&str>) -> Packet {
    Packet {
        kind,
        nsp: b(nsp),
        id,
        data: data.map(b),
        attachments: vec![],
    }
}

/// Full stack: a WebSocket text message through Engine.IO into the Socket.IO decoder.
fn decode_wire(dec: &mut Decoder, wire: &str) -> Result<Option<Packet>, SioError> {
    let msg = WsMsg::Text(b(wire));
    match engineio::decode_ws(&msg).unwrap() {
        engineio::Packet::Message(text) => dec.decode_text(text),
        other => panic!("not a message: {other:?}"),
    }
}

fn encode_wire(p: &Packet) -> WsMsg {
    engineio::encode_ws(&engineio::Packet::Message(encode(p)))
}

fn decode_one(wire: &str) -> Result<Option<Packet>, SioError> {
    Decoder::new(10).decode_text(b(wire))
}

/// Every packet type in its PROTOCOLS.md form, decoded and re-encoded byte for byte.
#[test]
fn golden_text_packets() {
    use PacketType::*;
    let cases = [
        ("40", pkt(Connect, "/", None, None)),
        (
            r#"40{"token":"abc"}"#,
            pkt(Connect, "/", None, Some(r#"{"token":"abc"}"#)),
        ),
        (
            r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#,
            pkt(
                Connect,
                "/",
                None,
                Some(r#"{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            ),
        ),
        (
            r#"40/admin,{"token":"abc"}"#,
            pkt(Connect, "/admin", None, Some(r#"{"token":"abc"}"#)),
        ),
        (
            r#"40/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            pkt(
                Connect,
                "/admin",
                None,
                Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
            ),
        ),
        ("41", pkt(Disconnect, "/", None, None)),
        ("41/admin,", pkt(Disconnect, "/admin", None, None)),
        (
            r#"42["message_created",{"id":17,"text":"hi"}]"#,
            pkt(
                Event,
                "/",
                None,
                Some(r#"["message_created",{"id":17,"text":"hi"}]"#),
            ),
        ),
        (
            r#"42/chat,["typing",{"room":"r1"}]"#,
            pkt(Event, "/chat", None, Some(r#"["typing",{"room":"r1"}]"#)),
        ),
        (
            r#"4212["get_user",{"id":5}]"#,
            pkt(Event, "/", Some(12), Some(r#"["get_user",{"id":5}]"#)),
        ),
        (
            r#"42/admin,13["foo"]"#,
            pkt(Event, "/admin", Some(13), Some(r#"["foo"]"#)),
        ),
        (
            r#"42["chat",{"t":"hi"},"MzUPkW0"]"#,
            pkt(Event, "/", None, Some(r#"["chat",{"t":"hi"},"MzUPkW0"]"#)),
        ),
        (
            r#"4312[{"id":5,"name":"Ann"}]"#,
            pkt(Ack, "/", Some(12), Some(r#"[{"id":5,"name":"Ann"}]"#)),
        ),
        (
            r#"43/admin,13["bar"]"#,
            pkt(Ack, "/admin", Some(13), Some(r#"["bar"]"#)),
        ),
        ("437[]", pkt(Ack, "/", Some(7), Some("[]"))),
        (
            r#"44{"message":"Not authorized","data":{"reason":"expired"}}"#,
            pkt(
                ConnectError,
                "/",
                None,
                Some(r#"{"message":"Not authorized","data":{"reason":"expired"}}"#),
            ),
        ),
        (
            r#"44/nope,{"message":"Invalid namespace"}"#,
            pkt(
                ConnectError,
                "/nope",
                None,
                Some(r#"{"message":"Invalid namespace"}"#),
            ),
        ),
        (
            r#"44"Not authorized""#,
            pkt(ConnectError, "/", None, Some(r#""Not authorized""#)),
        ),
        (
            r#"450-["plain"]"#,
            pkt(BinaryEvent, "/", None, Some(r#"["plain"]"#)),
        ),
        (
            r#"460-/admin,4[]"#,
            pkt(BinaryAck, "/admin", Some(4), Some("[]")),
        ),
        (
            r#"4218446744073709551615["max"]"#,
            pkt(Event, "/", Some(u64::MAX), Some(r#"["max"]"#)),
        ),
    ];
    for (wire, packet) in cases {
        let mut dec = Decoder::new(10);
        assert_eq!(
            decode_wire(&mut dec, wire).unwrap(),
            Some(packet.clone()),
            "decode {wire}"
        );
        assert!(!dec.awaiting_attachments());
        assert_eq!(encode_wire(&packet), WsMsg::Text(b(wire)), "encode {wire}");
    }
}

#[test]
fn golden_binary_event() {
    let mut dec = Decoder::new(10);
    let wire = r#"451-["upload",{"_placeholder":true,"num":0}]"#;
    assert_eq!(decode_wire(&mut dec, wire).unwrap(), None);
    assert!(dec.awaiting_attachments());
    let att = Bytes::from_static(&[1, 2, 3, 4]);
    let eio = engineio::decode_ws(&WsMsg::Binary(att.clone())).unwrap();
    let engineio::Packet::Binary(data) = eio else {
        panic!()
    };
    let packet = dec.decode_binary(data).unwrap().unwrap();
    assert!(!dec.awaiting_attachments());
    assert_eq!(
        packet,
        Packet {
            kind: PacketType::BinaryEvent,
            nsp: b("/"),
            id: None,
            data: Some(b(r#"["upload",{"_placeholder":true,"num":0}]"#)),
            attachments: vec![att.clone()],
        }
    );
    assert_eq!(encode_wire(&packet), WsMsg::Text(b(wire)));
    let (name, args) = split_event(packet.data.as_ref().unwrap()).unwrap();
    assert_eq!(name, "upload");
    assert_eq!(args.len(), 1);
    assert_eq!(placeholder_num(args.first().unwrap()), Some(0));
}

#[test]
fn golden_binary_ack_with_two_attachments() {
    let mut dec = Decoder::new(10);
    let wire = r#"461-/admin,1[{"_placeholder":true,"num":0}]"#;
    assert_eq!(decode_wire(&mut dec, wire).unwrap(), None);
    let packet = dec
        .decode_binary(Bytes::from_static(b"\x00\xff"))
        .unwrap()
        .unwrap();
    assert_eq!(packet.kind, PacketType::BinaryAck);
    assert_eq!(packet.nsp, "/admin");
    assert_eq!(packet.id, Some(1));
    assert_eq!(packet.attachments, [Bytes::from_static(b"\x00\xff")]);
    assert_eq!(encode_wire(&packet), WsMsg::Text(b(wire)));

    let two = r#"62-[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    assert_eq!(dec.decode_text(b(two)).unwrap(), None);
    assert_eq!(dec.decode_binary(b("a")).unwrap(), None);
    let packet = dec.decode_binary(b("b")).unwrap().unwrap();
    assert_eq!(packet.attachments, [b("a"), b("b")]);
    assert_eq!(encode(&packet), two.as_bytes());
    assert!(matches!(
        dec.decode_binary(b("c")),
        Err(SioError::UnexpectedAttachment)
    ));
}

#[test]
fn root_namespace_variants_encode_without_nsp() {
    let mut p = pkt(PacketType::Event, "", Some(3), Some(r#"["x"]"#));
    assert_eq!(encode(&p), r#"23["x"]"#.as_bytes());
    p.nsp = b("/");
    assert_eq!(encode(&p), r#"23["x"]"#.as_bytes());
}

#[test]
fn whitespace_around_json_is_trimmed() {
    let p = decode_one("2 [ \"a\" , 1 ] \n").unwrap().unwrap();
    assert_eq!(p.data.unwrap(), r#"[ "a" , 1 ]"#.as_bytes());
}

#[test]
fn decode_is_zero_copy() {
    let text = b(r#"2/admin,13["foo",{"a":[1,2]},"x"]"#);
    let range = text.as_ptr_range();
    let p = Decoder::new(10).decode_text(text.clone()).unwrap().unwrap();
    assert!(range.contains(&p.nsp.as_ptr()));
    let data = p.data.unwrap();
    assert!(range.contains(&data.as_ptr()));
    let (name, args) = split_event(&data).unwrap();
    assert_eq!(name, "foo");
    assert_eq!(args[..], [b(r#"{"a":[1,2]}"#), b(r#""x""#)]);
    for arg in &args {
        assert!(range.contains(&arg.as_ptr()));
        assert!(range.contains(&(arg.as_ptr_range().end.wrapping_sub(1))));
    }
    let all = split_args(&data).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|a| range.contains(&a.as_ptr())));
}

#[test]
fn malformed_packets() {
    use SioError::*;
    type Check = fn(&SioError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, Empty)),
        ("7", |e| matches!(e, UnknownType(b'7'))),
        ("x", |e| matches!(e, UnknownType(b'x'))),
        ("5x-[\"a\"]", |e| matches!(e, BadAttachmentCount)),
        ("5-[\"a\"]", |e| matches!(e, BadAttachmentCount)),
        ("51[\"a\"]", |e| matches!(e, BadAttachmentCount)),
        ("5", |e| matches!(e, BadAttachmentCount)),
        ("511-[\"a\"]", |e| {
            matches!(e, TooManyAttachments { max: 10 })
        }),
        ("599999999999999999999999-[\"a\"]", |e| {
            matches!(e, TooManyAttachments { max: 10 })
        }),
        // The namespace runs to the `,` or the end, as the reference parser reads it.
        ("2/admin[\"a\"]", |e| matches!(e, MissingData)),
        ("218446744073709551616[\"a\"]", |e| matches!(e, BadAckId)),
        ("2[\"a\"", |e| matches!(e, BadJson)),
        ("2[\"a\"]x", |e| matches!(e, BadJson)),
        ("0{token}", |e| matches!(e, BadJson)),
        ("2[\"a\"] [1]", |e| matches!(e, BadJson)),
        ("0[]", |e| matches!(e, BadPayload)),
        ("0\"x\"", |e| matches!(e, BadPayload)),
        ("1{}", |e| matches!(e, BadPayload)),
        ("1/admin,{}", |e| matches!(e, BadPayload)),
        ("4[]", |e| matches!(e, BadPayload)),
        ("4 42", |e| matches!(e, BadPayload)),
        ("2{\"a\":1}", |e| matches!(e, NotAnArray)),
        ("3\"x\"", |e| matches!(e, NotAnArray)),
        ("2[]", |e| matches!(e, EmptyEvent)),
        ("2/chat,1[ ]", |e| matches!(e, EmptyEvent)),
        ("2[1,\"a\"]", |e| matches!(e, EventNameNotString)),
        ("2[{\"a\":1}]", |e| matches!(e, EventNameNotString)),
        ("50-[]", |e| matches!(e, EmptyEvent)),
        ("2", |e| matches!(e, MissingData)),
        ("2/admin,1", |e| matches!(e, MissingData)),
        ("3/admin,1", |e| matches!(e, MissingData)),
        ("61-", |e| matches!(e, MissingData)),
    ];
    for (wire, check) in cases {
        let err = decode_one(wire).unwrap_err();
        assert!(check(&err), "{wire:?} gave {err:?}");
    }
    let err = Decoder::new(10)
        .decode_text(Bytes::from_static(b"2/\xff,[\"a\"]"))
        .unwrap_err();
    assert!(matches!(err, BadNamespace));
    let err = Decoder::new(0).decode_text(b("51-[\"a\"]")).unwrap_err();
    assert!(matches!(err, TooManyAttachments { max: 0 }));
    assert_eq!(
        Decoder::new(0)
            .decode_text(b("50-[\"a\"]"))
            .unwrap()
            .unwrap()
            .kind,
        PacketType::BinaryEvent
    );
}

#[test]
fn attachment_state_errors() {
    let mut dec = Decoder::new(10);
    assert!(matches!(
        dec.decode_binary(b("x")),
        Err(SioError::UnexpectedAttachment)
    ));
    assert_eq!(
        dec.decode_text(b("51-[\"a\",{\"_placeholder\":true,\"num\":0}]"))
            .unwrap(),
        None
    );
    assert!(matches!(
        dec.decode_text(b("2[\"b\"]")),
        Err(SioError::AwaitingAttachments)
    ));
    // The decoder reset: the next packet decodes normally.
    assert!(!dec.awaiting_attachments());
    assert!(dec.decode_text(b("2[\"b\"]")).unwrap().is_some());
}

#[test]
fn split_args_and_event() {
    assert!(split_args(&b("[]")).unwrap().is_empty());
    assert_eq!(
        split_args(&b(" [1, \"a,b\" ,[2,3],{\"k\":[4]},null] ")).unwrap()[..],
        [
            b("1"),
            b("\"a,b\""),
            b("[2,3]"),
            b("{\"k\":[4]}"),
            b("null")
        ]
    );
    assert!(matches!(split_args(&b("{}")), Err(SioError::NotAnArray)));
    assert!(matches!(split_args(&b("\"x\"")), Err(SioError::NotAnArray)));
    assert!(matches!(split_args(&b("{\"a\":")), Err(SioError::BadJson)));
    assert!(matches!(split_args(&b("[1,")), Err(SioError::BadJson)));
    assert!(matches!(split_args(&b("[1] 2")), Err(SioError::BadJson)));
    assert!(matches!(split_args(&b("")), Err(SioError::BadJson)));

    let (name, args) = split_event(&b(r#"["a\"b\u00e9",1]"#)).unwrap();
    assert_eq!(name, "a\"bé");
    assert_eq!(args[..], [b("1")]);
    assert!(matches!(split_event(&b("[]")), Err(SioError::EmptyEvent)));
    assert!(matches!(
        split_event(&b("[1]")),
        Err(SioError::EventNameNotString)
    ));
    assert!(matches!(split_event(&b("{}")), Err(SioError::NotAnArray)));
    assert!(matches!(split_event(&b("[")), Err(SioError::BadJson)));
}

#[test]
fn build_event_and_array() {
    let e = build_event("get_user", &[br#"{"id":5}"#, b"1"]);
    assert_eq!(e, r#"["get_user",{"id":5},1]"#.as_bytes());
    assert_eq!(build_event("x", &[]), r#"["x"]"#.as_bytes());
    let tricky = "q\"\\/\n\r\t\u{8}\u{c}\u{1}\u{1f}é\u{7f}\u{2028}";
    let e = build_event(tricky, &[b"null"]);
    let expected = format!("[{},null]", serde_json::to_string(tricky).unwrap());
    assert_eq!(e, expected.as_bytes());
    assert_eq!(e.len(), expected.len());
    let (name, args) = split_event(&e).unwrap();
    assert_eq!(name, tricky);
    assert_eq!(args[..], [b("null")]);

    assert_eq!(build_array(&[]), "[]".as_bytes());
    assert_eq!(build_array(&[b"1"]), "[1]".as_bytes());
    assert_eq!(
        build_array(&[br#"{"id":5,"name":"Ann"}"#, b"[]"]),
        r#"[{"id":5,"name":"Ann"},[]]"#.as_bytes()
    );
}

#[test]
fn json_string_escapes_like_serde_json() {
    for s in [
        "",
        "plain",
        "a\"b\\c",
        "\u{0}\u{1f} \u{7f}",
        "line\nbreak\ttab",
        "日本語",
        "</script>",
    ] {
        assert_eq!(
            json_string(s.as_bytes()),
            serde_json::to_string(s).unwrap().as_bytes(),
            "{s:?}"
        );
    }
    assert_eq!(json_string(b"a\xffb"), "\"a\u{fffd}b\"".as_bytes());
}

#[test]
fn placeholders() {
    assert_eq!(
        placeholder(0),
        r#"{"_placeholder":true,"num":0}"#.as_bytes()
    );
    assert_eq!(
        placeholder(12),
        r#"{"_placeholder":true,"num":12}"#.as_bytes()
    );
    for n in [0, 1, 9, 10, 99, 100, 12345] {
        assert_eq!(placeholder_num(&placeholder(n)), Some(n));
    }
    assert_eq!(
        placeholder_num(br#" { "num" : 3 , "_placeholder" : true } "#),
        Some(3)
    );
    assert_eq!(placeholder_num(br#"{"_placeholder":false,"num":0}"#), None);
    assert_eq!(placeholder_num(br#"{"_placeholder":true,"num":-1}"#), None);
    assert_eq!(placeholder_num(br#"{"_placeholder":true,"num":1.5}"#), None);
    assert_eq!(placeholder_num(br#"{"_placeholder":true}"#), None);
    assert_eq!(
        placeholder_num(br#"{"_placeholder":true,"num":0,"x":1}"#),
        None
    );
    assert_eq!(placeholder_num(br#"[true,0]"#), None);
    assert_eq!(placeholder_num(b"\"x\""), None);
    assert_eq!(placeholder_num(b"{"), None);
}

#[test]
fn placeholder_refs_find_what_the_reference_reconstructor_finds() {
    let r = |num, root| PlaceholderRef { num, root };
    assert_eq!(placeholder_refs(br#"{"a":1}"#).unwrap(), []);
    assert_eq!(placeholder_refs(b"\"_placeholder\"").unwrap(), []);
    assert_eq!(
        placeholder_refs(br#"{"_placeholder":true,"num":0}"#).unwrap(),
        [r(Some(0), true)]
    );
    // Extra members and key order do not matter; the value decides.
    assert_eq!(
        placeholder_refs(br#" {"num":2.0,"x":[1],"_placeholder":true} "#).unwrap(),
        [r(Some(2), true)]
    );
    assert_eq!(
        placeholder_refs(br#"{"_placeholder":false,"num":0}"#).unwrap(),
        []
    );
    assert_eq!(placeholder_refs(br#"{"_placeholder":"true"}"#).unwrap(), []);
    // Nested at any depth, in document order; a bad `num` is reported, not skipped.
    assert_eq!(
        placeholder_refs(
            br#"{"a":[{"_placeholder":true,"num":1}],"b":{"c":{"_placeholder":true,"num":-1}},"d":{"_placeholder":true}}"#
        )
        .unwrap(),
        [r(Some(1), false), r(None, false), r(None, false)]
    );
    assert_eq!(
        placeholder_refs(br#"[0,{"_placeholder":true,"num":0.5}]"#).unwrap(),
        [r(None, false)]
    );
    // A placeholder's own members are replaced with it, not searched.
    assert_eq!(
        placeholder_refs(br#"{"_placeholder":true,"num":0,"x":{"_placeholder":true,"num":1}}"#)
            .unwrap(),
        [r(Some(0), true)]
    );
    // Placeholder-looking members of a non-placeholder are still searched.
    assert_eq!(
        placeholder_refs(br#"{"_placeholder":{"_placeholder":true,"num":3}}"#).unwrap(),
        [r(Some(3), false)]
    );
    assert!(matches!(placeholder_refs(b"{"), Err(SioError::BadJson)));
    assert!(matches!(placeholder_refs(b"1 2"), Err(SioError::BadJson)));
}

#[test]
fn reserved_events_listed() {
    assert_eq!(RESERVED_EVENTS.len(), 6);
    assert!(RESERVED_EVENTS.contains(&"disconnecting"));
}

#[test]
fn number_helpers() {
    for n in [0, 7, 9, 10, 11, 99, 100, 999_999, u64::MAX] {
        let mut out = BytesMut::new();
        put_decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
        assert_eq!(decimal_len(n), n.to_string().len());
    }
    assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_decimal(b"18446744073709551616"), None);
}

/// A small deterministic LCG, so the fuzz loop needs no dependency.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn random_inputs_never_panic() {
    const PIECES: &[&str] = &[
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "9",
        "-",
        "/",
        "/admin",
        ",",
        "[",
        "]",
        "{",
        "}",
        "\"",
        "\"ev\"",
        ":",
        "1",
        "12",
        "99999999999999999999",
        " ",
        "true",
        "null",
        r#"{"_placeholder":true,"num":0}"#,
        "\\",
        "\u{e9}",
    ];
    let mut rng = Lcg(42);
    let mut dec = Decoder::new(3);
    let mut completed = 0;
    for _ in 0..600 {
        let n = (rng.next() % 8) as usize;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(PIECES.get((rng.next() as usize) % PIECES.len()).unwrap());
        }
        let input = b(&s);
        if rng.next() % 5 == 0 {
            let _ = dec.decode_binary(input.clone());
        } else if let Ok(Some(p)) = dec.decode_text(input.clone()) {
            completed += 1;
            // Whatever decodes re-encodes to something that decodes to the same packet.
            let again = Decoder::new(3).decode_text(encode(&p));
            if p.attachments.is_empty() {
                assert_eq!(again.unwrap(), Some(p.clone()));
            }
            if let Some(data) = &p.data {
                let _ = split_args(data);
                let _ = split_event(data);
            }
        }
        let _ = split_args(&input);
        let _ = split_event(&input);
        let _ = placeholder_num(&input);
        let _ = placeholder_refs(&input);
        let _ = json_string(&input);
    }
    assert!(completed > 0);
}

#[test]
fn namespace_without_comma_runs_to_the_end() {
    for (wire, nsp) in [("0/custom", "/custom"), ("1/admin", "/admin"), ("0/", "/")] {
        let p = decode_one(wire).unwrap().unwrap();
        assert_eq!(p.nsp, nsp, "{wire}");
        assert_eq!(p.data, None, "{wire}");
    }
}

/// The Engine.IO `4`, header and data written in place: byte for byte what `encode` gives
/// after a `4`, in a buffer of exactly its length.
#[test]
fn golden_encode_parts() {
    let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
    let args = [b("1"), b(r#""two""#)];
    let cases: Vec<(Head<'_>, Data<'_>, &str)> = vec![
        (
            Head {
                kind: PacketType::Event,
                nsp: b"/",
                id: None,
                attachments: 0,
            },
            Data::Array {
                name: Some("message_created"),
                args: &[],
                last: Some(Arg::Raw(br#"{"id":17}"#)),
            },
            r#"42["message_created",{"id":17}]"#,
        ),
        (
            Head {
                kind: PacketType::Event,
                nsp: b"/admin",
                id: Some(12),
                attachments: 0,
            },
            Data::Array {
                name: Some("a\"b"),
                args: &args,
                last: Some(Arg::Text("line\nbreak \"q\" é\u{1}".as_bytes())),
            },
            r#"42/admin,12["a\"b",1,"two","line\nbreak \"q\" é\u0001"]"#,
        ),
        (
            Head {
                kind: PacketType::BinaryEvent,
                nsp: b"/",
                id: None,
                attachments: 1,
            },
            Data::Array {
                name: Some("upload"),
                args: &[],
                last: Some(Arg::Raw(PLACEHOLDER_0)),
            },
            r#"451-["upload",{"_placeholder":true,"num":0}]"#,
        ),
        (
            Head {
                kind: PacketType::Ack,
                nsp: b"/",
                id: Some(7),
                attachments: 0,
            },
            Data::Array {
                name: None,
                args: &[],
                last: Some(Arg::Raw(b"null")),
            },
            "437[null]",
        ),
        (
            Head {
                kind: PacketType::Ack,
                nsp: b"/",
                id: Some(7),
                attachments: 0,
            },
            Data::Array {
                name: None,
                args: &[],
                last: None,
            },
            "437[]",
        ),
        (
            Head {
                kind: PacketType::Disconnect,
                nsp: b"/x",
                id: None,
                attachments: 0,
            },
            Data::None,
            "41/x,",
        ),
        (
            Head {
                kind: PacketType::Connect,
                nsp: b"/",
                id: None,
                attachments: 0,
            },
            Data::Parts(&[b"{\"sid\":", b"\"s\"}"]),
            r#"40{"sid":"s"}"#,
        ),
    ];
    for (head, data, want) in cases {
        let out = encode_parts(b"4", &head, &data);
        assert_eq!(text(out.clone()), want);
        assert_eq!(out.len(), encoded_len(b"4", &head, &data), "{want}");
    }
    // The same packet through `encode` and `encode_prefixed`.
    let p = Packet {
        kind: PacketType::Event,
        nsp: b("/chat"),
        id: Some(3),
        data: Some(b(r#"["m",{"a":[1]}]"#)),
        attachments: vec![],
    };
    assert_eq!(encode_prefixed(b"4", &p), [&b"4"[..], &encode(&p)].concat());
    // A text argument that is not UTF-8 is written with U+FFFD, as `json_string` does.
    let out = encode_parts(
        b"",
        &Head {
            kind: PacketType::Event,
            nsp: b"/",
            id: None,
            attachments: 0,
        },
        &Data::Array {
            name: Some("t"),
            args: &[],
            last: Some(Arg::Text(b"a\xffb")),
        },
    );
    assert_eq!(&out[..], "2[\"t\",\"a\u{fffd}b\"]".as_bytes());
}

/// Splitting is a byte scan over validated JSON: strings holding brackets, commas and
/// escaped quotes, nesting and whitespace are all one element each.
#[test]
fn split_args_scan_edges() {
    let data = b(r#" [ "a,]\"[" , {"x":[1,{"y":"}"}]} ,[[]], -1.5e3 ,true,null ] "#);
    let args = split_args(&data).unwrap();
    assert_eq!(
        args[..],
        [
            b(r#""a,]\"[""#),
            b(r#"{"x":[1,{"y":"}"}]}"#),
            b("[[]]"),
            b("-1.5e3"),
            b("true"),
            b("null")
        ]
    );
    assert!(split_args(&b("[]")).unwrap().is_empty());
    assert!(split_args(&b(" [ ] ")).unwrap().is_empty());
    assert!(matches!(split_args(&b("[1,]")), Err(SioError::BadJson)));
    assert!(matches!(
        split_args(&b("\"[1]\"")),
        Err(SioError::NotAnArray)
    ));
    // A name without escapes is a slice of the data; an escaped one is decoded.
    let data = b(r#"["plain",1]"#);
    let (name, _) = split_event(&data).unwrap();
    assert_eq!(name, "plain");
    assert!(data.as_ptr_range().contains(&name.as_ptr()));
    let (name, _) = split_event(&b(r#"["a\u0062",1]"#)).unwrap();
    assert_eq!(name, "ab");
}

/// The decoder hands out the elements it found while validating the data of the packet it
/// returned last, as slices of the message; other data (equal bytes elsewhere, or an older
/// packet's) is split afresh, with the same answer.
#[test]
fn the_decoder_splits_event_data_in_its_validating_pass() {
    let mut dec = Decoder::new(10);
    let p = dec
        .decode_text(b(r#"2/chat,7 [ "say" , {"a":[1,"]"]} , "x\"y" ] "#))
        .unwrap()
        .unwrap();
    let data = p.data.clone().unwrap();
    assert_eq!(data, r#"[ "say" , {"a":[1,"]"]} , "x\"y" ]"#);
    let (name, args) = dec.split_event(&data).unwrap();
    assert_eq!(name, "say");
    assert_eq!(args[..], [b(r#"{"a":[1,"]"]}"#), b(r#""x\"y""#)]);
    // Slices of the received message, not copies.
    let range = data.as_ptr_range();
    assert!(args.iter().all(|a| range.contains(&a.as_ptr())));
    assert_eq!(
        (name.clone(), args.clone()),
        split_event(&data).unwrap(),
        "the same as a fresh split"
    );

    // Taken once: the second ask splits again, equally.
    assert_eq!(dec.split_event(&data).unwrap(), (name, args));
    // Equal bytes at another address, and an older packet's data after a newer decode.
    let copy = Bytes::copy_from_slice(&data);
    assert_eq!(dec.split_args(&copy).unwrap(), split_args(&copy).unwrap());
    dec.decode_text(b(r#"2["other",1]"#)).unwrap().unwrap();
    assert_eq!(dec.split_args(&data).unwrap(), split_args(&data).unwrap());
    // Malformed data is refused at decode, before any split.
    assert!(matches!(
        dec.decode_text(b(r#"2["a",]"#)),
        Err(SioError::BadJson)
    ));
    assert!(matches!(
        dec.split_args(&b(r#"["a",]"#)),
        Err(SioError::BadJson)
    ));
}
