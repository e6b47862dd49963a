use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn decodes_client_commands_and_their_json_strings() {
    let m = decode(&b(r#"{"command":"message","identifier":"{\"channel\":\"Chats::RoomChannel\",\"id\":7}","data":"{\"action\":\"sendMessage\",\"body\":\"hi\"}"}"#)).unwrap();
    assert_eq!(m.command.as_deref(), Some(&b"message"[..]));
    assert_eq!(
        m.identifier().as_deref(),
        Some(&br#"{"channel":"Chats::RoomChannel","id":7}"#[..])
    );
    assert_eq!(
        m.identifier_token.as_deref(),
        Some(&br#""{\"channel\":\"Chats::RoomChannel\",\"id\":7}""#[..])
    );
    assert!(
        decode(&b(r#"{"command":"message","identifier":{"channel":"X"}}"#)).is_err(),
        "an identifier that is not a string is refused"
    );
    assert_eq!(
        m.data.as_deref(),
        Some(&br#"{"action":"sendMessage","body":"hi"}"#[..])
    );
    let m = decode(&b(
        r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#,
    ))
    .unwrap();
    assert_eq!(
        (m.kind.as_deref(), m.reason.as_deref(), m.reconnect),
        (Some("disconnect"), Some("unauthorized"), Some(false))
    );
    let m = decode(&b(r#"{"identifier":"{\"channel\":\"NotificationChannel\"}","message":{"event":"newNotification"}}"#)).unwrap();
    assert_eq!(
        m.message.as_deref(),
        Some(&br#"{"event":"newNotification"}"#[..])
    );
    assert!(decode(&b("not json")).is_err());
}

#[test]
fn identifiers_compare_canonically() {
    let a = identifier(br#"{"channel":"Chats::RoomChannel","id":7}"#).unwrap();
    let b2 = identifier(br#"{"id":"7","channel":"Chats::RoomChannel"}"#).unwrap();
    assert_eq!(a.canonical, b2.canonical);
    assert_eq!(a.channel, "Chats::RoomChannel");
    assert_eq!(a.params.as_deref(), Some(&br#"{"id":7}"#[..]));
    let n = identifier(br#"{"channel":"NotificationChannel"}"#).unwrap();
    assert_eq!(n.params, None);
    assert!(identifier(br#"{"id":1}"#).is_err());
    assert!(identifier(b"[]").is_err());
    assert_eq!(
        build_identifier(b"Chats::RoomChannel", Some(br#"{"id":"7"}"#)).unwrap(),
        r#"{"channel":"Chats::RoomChannel","id":"7"}"#
    );
}

#[test]
fn encodes_golden_frames() {
    assert_eq!(server_type("welcome", &[]), r#"{"type":"welcome"}"#);
    assert_eq!(
        server_type("ping", &[("message", b"1717171717")]),
        r#"{"type":"ping","message":1717171717}"#
    );
    assert_eq!(
        server_type(
            "disconnect",
            &[("reason", br#""unauthorized""#), ("reconnect", b"false")]
        ),
        r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
    );
    let id = br#"{"channel":"ChatChannel","room":"lobby"}"#;
    assert_eq!(
        subscription_answer(id, "confirm_subscription"),
        r#"{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","type":"confirm_subscription"}"#
    );
    assert_eq!(
        data_message(id, br#"{"body":"hi","user":"ann"}"#),
        r#"{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","message":{"body":"hi","user":"ann"}}"#
    );
    assert_eq!(
        command("subscribe", id, None),
        r#"{"command":"subscribe","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}"}"#
    );
    assert_eq!(
        command("message", id, Some(br#"{"action":"speak","body":"hi"}"#)),
        r#"{"command":"message","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","data":"{\"action\":\"speak\",\"body\":\"hi\"}"}"#
    );
}

#[test]
fn perform_data_merges_the_action() {
    use crate::frame::Payload;
    let p = |s: &str| Payload::json(b(s));
    assert_eq!(
        perform_data(Some("speak"), &p(r#"{"body":"hi"}"#)),
        br#"{"action":"speak","body":"hi"}"#
    );
    assert_eq!(
        perform_data(Some("speak"), &p("{}")),
        br#"{"action":"speak"}"#
    );
    assert_eq!(
        perform_data(None, &p(r#"{"body":"hi"}"#)),
        br#"{"body":"hi"}"#
    );
    // The performed action replaces the body's own.
    assert_eq!(
        perform_data(Some("speak"), &p(r#"{"action":"other","n":1}"#)),
        br#"{"action":"speak","n":1}"#
    );
    assert_eq!(
        perform_data(Some("speak"), &p("[1]")),
        br#"{"action":"speak","data":[1]}"#
    );
    assert_eq!(
        perform_data(Some("speak"), &Payload::text(b("hi"))),
        br#"{"action":"speak","data":"hi"}"#
    );
}
