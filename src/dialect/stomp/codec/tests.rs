//! Unit tests of the STOMP codec.

use bytes::{Bytes, BytesMut};

use super::*;

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn decode_all(dec: &mut Decoder, msgs: &[&'static [u8]]) -> Result<Vec<Item>, StompError> {
    let mut out = Vec::new();
    for m in msgs {
        dec.decode(b(m), &mut out)?;
    }
    Ok(out)
}

fn one(wire: &'static [u8]) -> Result<Frame, StompError> {
    let mut dec = Decoder::new(Limits::default());
    let items = decode_all(&mut dec, &[wire])?;
    assert!(!dec.is_partial());
    match items.as_slice() {
        [Item::Frame(f)] => Ok(f.clone()),
        other => panic!("expected one frame, got {other:?}"),
    }
}

fn frames(items: Vec<Item>) -> Vec<Frame> {
    items
        .into_iter()
        .filter_map(|i| match i {
            Item::Frame(f) => Some(f),
            Item::Heartbeat => None,
        })
        .collect()
}

fn golden() -> Vec<(Frame, &'static [u8])> {
    use Command::*;
    vec![
        (
            Frame::new(Connect)
                .with_header("accept-version", "1.0,1.1,1.2")
                .with_header("host", "example.com")
                .with_header("login", "alice")
                .with_header("passcode", "s3cr3t")
                .with_header("heart-beat", "10000,10000"),
            b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:example.com\nlogin:alice\npasscode:s3cr3t\nheart-beat:10000,10000\n\n\0",
        ),
        (
            Frame::new(Stomp).with_header("accept-version", "1.2").with_header("host", "example.com"),
            b"STOMP\naccept-version:1.2\nhost:example.com\n\n\0",
        ),
        (
            Frame::new(Connected)
                .with_header("version", "1.2")
                .with_header("session", "sess-42")
                .with_header("server", "RabbitMQ/3.13.0")
                .with_header("heart-beat", "10000,10000"),
            b"CONNECTED\nversion:1.2\nsession:sess-42\nserver:RabbitMQ/3.13.0\nheart-beat:10000,10000\n\n\0",
        ),
        (
            Frame::new(Send)
                .with_header("destination", "/topic/chat.lobby")
                .with_header("content-type", "application/json")
                .with_header("content-length", "21")
                .with_header("receipt", "r-7")
                .with_header("event", "message_created")
                .with_body(b(br#"{"id":17,"text":"hi"}"#)),
            b"SEND\ndestination:/topic/chat.lobby\ncontent-type:application/json\ncontent-length:21\nreceipt:r-7\nevent:message_created\n\n{\"id\":17,\"text\":\"hi\"}\0",
        ),
        (
            Frame::new(Subscribe)
                .with_header("id", "sub-0")
                .with_header("destination", "/topic/chat.lobby")
                .with_header("ack", "client-individual"),
            b"SUBSCRIBE\nid:sub-0\ndestination:/topic/chat.lobby\nack:client-individual\n\n\0",
        ),
        (Frame::new(Unsubscribe).with_header("id", "sub-0"), b"UNSUBSCRIBE\nid:sub-0\n\n\0"),
        (Frame::new(Ack).with_header("id", "a-1001"), b"ACK\nid:a-1001\n\n\0"),
        (
            Frame::new(Nack).with_header("id", "a-1002").with_header("transaction", "tx-1"),
            b"NACK\nid:a-1002\ntransaction:tx-1\n\n\0",
        ),
        (Frame::new(Begin).with_header("transaction", "tx-1"), b"BEGIN\ntransaction:tx-1\n\n\0"),
        (Frame::new(Commit).with_header("transaction", "tx-1"), b"COMMIT\ntransaction:tx-1\n\n\0"),
        (Frame::new(Abort).with_header("transaction", "tx-1"), b"ABORT\ntransaction:tx-1\n\n\0"),
        (Frame::new(Disconnect).with_header("receipt", "77"), b"DISCONNECT\nreceipt:77\n\n\0"),
        (
            Frame::new(Message)
                .with_header("subscription", "sub-0")
                .with_header("message-id", "m-1001")
                .with_header("destination", "/topic/chat.lobby")
                .with_header("ack", "a-1001")
                .with_header("content-type", "application/json")
                .with_header("content-length", "21")
                .with_header("event", "message_created")
                .with_body(b(br#"{"id":17,"text":"hi"}"#)),
            b"MESSAGE\nsubscription:sub-0\nmessage-id:m-1001\ndestination:/topic/chat.lobby\nack:a-1001\ncontent-type:application/json\ncontent-length:21\nevent:message_created\n\n{\"id\":17,\"text\":\"hi\"}\0",
        ),
        (Frame::new(Receipt).with_header("receipt-id", "r-7"), b"RECEIPT\nreceipt-id:r-7\n\n\0"),
        (
            Frame::new(Error)
                .with_header("message", "access refused")
                .with_header("receipt-id", "r-7")
                .with_header("content-type", "text/plain")
                .with_header("content-length", "37")
                .with_body(b(b"Destination /queue/x is not permitted")),
            b"ERROR\nmessage:access refused\nreceipt-id:r-7\ncontent-type:text/plain\ncontent-length:37\n\nDestination /queue/x is not permitted\0",
        ),
    ]
}

#[test]
fn golden_frames_every_command_encode_and_decode() {
    let cases = golden();
    let mut seen: Vec<Command> = cases.iter().map(|(f, _)| f.command).collect();
    seen.dedup();
    assert_eq!(seen.len(), 15, "every command has a golden frame");
    for (frame, wire) in cases {
        for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
            assert_eq!(
                encode_to_bytes(&frame, v).as_ref(),
                wire,
                "encode {:?} {v:?}",
                frame.command
            );
            assert!(encoded_len(&frame) >= wire.len());
        }
        assert_eq!(one(wire).unwrap(), frame, "decode {:?}", frame.command);
    }
}

#[test]
fn command_and_version_names() {
    for (frame, _) in golden() {
        assert_eq!(
            Command::parse(frame.command.as_str().as_bytes()),
            Some(frame.command)
        );
    }
    assert_eq!(Command::parse(b"send"), None);
    assert!(Command::Send.has_body() && Command::Message.has_body() && Command::Error.has_body());
    assert!(!Command::Subscribe.has_body() && !Command::Connect.has_body());
    for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
        assert_eq!(Version::parse(v.as_str().as_bytes()), Some(v));
    }
    assert_eq!(Version::V1_2.subprotocol(), "v12.stomp");
    assert_eq!(Version::V1_0.subprotocol(), "v10.stomp");
    assert_eq!(Version::parse(b"2.1"), None);
    assert!(Version::V1_0 < Version::V1_1 && Version::V1_1 < Version::V1_2);
}

#[test]
fn encoder_output_parses_with_stomp_parser() {
    use std::convert::TryFrom;
    let wire = encode_to_bytes(&golden().swap_remove(3).0, Version::V1_2);
    match stomp_parser::client::ClientFrame::try_from(wire.to_vec()) {
        Ok(stomp_parser::client::ClientFrame::Send(f)) => {
            assert_eq!(f.destination().value(), "/topic/chat.lobby");
            assert_eq!(f.body(), Some(&br#"{"id":17,"text":"hi"}"#[..]));
        }
        other => panic!(
            "stomp-parser disagrees: {:?}",
            other.map(|_| ()).err().map(|e| e.message().to_owned())
        ),
    }
}

#[test]
fn escaping_per_version_encode() {
    let f = Frame::new(Command::Message).with_header("k:\\", "a:b\nc\\d\re");
    assert_eq!(
        encode_to_bytes(&f, Version::V1_2).as_ref(),
        b"MESSAGE\nk\\c\\\\:a\\cb\\nc\\\\d\\re\n\n\0"
    );
    // 1.1 has no \r: a CR is replaced, so it can never end the line early.
    assert_eq!(
        encode_to_bytes(&f, Version::V1_1).as_ref(),
        b"MESSAGE\nk\\c\\\\:a\\cb\\nc\\\\d?e\n\n\0"
    );
    // 1.0 escapes nothing. LF and CR (and `:` in a name) cannot be written, so they become `?`.
    assert_eq!(
        encode_to_bytes(&f, Version::V1_0).as_ref(),
        b"MESSAGE\nk?\\:a:b?c\\d?e\n\n\0"
    );
    // CONNECT / CONNECTED are never escaped.
    let c = Frame::new(Command::Connected).with_header("server", "a:b\\c");
    assert_eq!(
        encode_to_bytes(&c, Version::V1_2).as_ref(),
        b"CONNECTED\nserver:a:b\\c\n\n\0"
    );
    let c = Frame::new(Command::Connect).with_header("passcode", "p\\n:x");
    assert_eq!(
        encode_to_bytes(&c, Version::V1_1).as_ref(),
        b"CONNECT\npasscode:p\\n:x\n\n\0"
    );
    // A NUL in a header would end the frame: it is replaced in every version.
    let n = Frame::new(Command::Send).with_header("x", b(b"a\0b"));
    assert_eq!(
        encode_to_bytes(&n, Version::V1_2).as_ref(),
        b"SEND\nx:a?b\n\n\0"
    );
}

#[test]
fn escaping_per_version_decode() {
    let wire = b(b"MESSAGE\nk\\c\\\\:a\\cb\\nc\\\\d\\re\n\n\0");
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.decode(wire.clone(), &mut out).unwrap();
    let f = &frames(out)[0];
    assert_eq!(f.headers, vec![(b(b"k:\\"), b(b"a:b\nc\\d\re"))]);
    assert!(dec.take_copied().bytes > 0, "unescaping is counted");
    assert_eq!(dec.take_copied().bytes, 0, "and reset");

    // 1.1: `\c` and `\n` decode, `\r` is a bad escape.
    dec.set_version(Version::V1_1);
    let f = frames(decode_all(&mut dec, &[b"MESSAGE\nk:a\\cb\\n\n\n\0"]).unwrap()).remove(0);
    assert_eq!(f.header("k").unwrap().as_ref(), b"a:b\n");
    assert!(matches!(
        decode_all(&mut dec, &[b"MESSAGE\nk:a\\r\n\n\0"]),
        Err(StompError::BadEscape)
    ));

    // 1.0: backslashes are literal.
    let mut dec = Decoder::new(Limits::default());
    dec.set_version(Version::V1_0);
    let f = frames(decode_all(&mut dec, &[b"MESSAGE\nk:a\\cb\\t\n\n\0"]).unwrap()).remove(0);
    assert_eq!(f.header("k").unwrap().as_ref(), b"a\\cb\\t");

    // CONNECT / STOMP / CONNECTED are literal in every version.
    let f = one(b"CONNECT\npasscode:a\\tb\\c\nAuthorization:Bearer a:b\n\n\0").unwrap();
    assert_eq!(f.header("passcode").unwrap().as_ref(), b"a\\tb\\c");
    assert_eq!(f.header_str("Authorization"), Some("Bearer a:b"));
    let f = one(b"CONNECTED\nserver:x\\y\n\n\0").unwrap();
    assert_eq!(f.header_str("server"), Some("x\\y"));
    let f = one(b"STOMP\nlogin:\\\n\n\0").unwrap();
    assert_eq!(f.header_str("login"), Some("\\"));
}

#[test]
fn escaped_roundtrip_lcg() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let alphabet = b"ab:\\\n\r\xff";
    for _ in 0..200 {
        let mut val = Vec::new();
        for _ in 0..(lcg(&mut seed) % 12) {
            val.push(alphabet[(lcg(&mut seed) % alphabet.len() as u64) as usize]);
        }
        for v in [Version::V1_1, Version::V1_2] {
            let expect = if v == Version::V1_1 {
                val.iter()
                    .map(|&c| if c == b'\r' { b'?' } else { c })
                    .collect()
            } else {
                val.clone()
            };
            let f = Frame::new(Command::Send)
                .with_header(Bytes::from(val.clone()), Bytes::from(val.clone()));
            let mut dec = Decoder::new(Limits::default());
            dec.set_version(v);
            let mut out = Vec::new();
            dec.decode(encode_to_bytes(&f, v), &mut out).unwrap();
            let g = frames(out).remove(0);
            assert_eq!(
                g.headers,
                vec![(Bytes::from(expect.clone()), Bytes::from(expect))],
                "{v:?} {val:?}"
            );
        }
    }
}

#[test]
fn several_frames_with_heartbeats_between() {
    let mut dec = Decoder::new(Limits::default());
    let items = decode_all(
        &mut dec,
        &[b"\n\r\nSEND\ndestination:/a\n\nx\0\n\nRECEIPT\nreceipt-id:1\n\n\0\r\nMESSAGE\ndestination:/b\n\ny\0\n"],
    )
    .unwrap();
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| match i {
            Item::Heartbeat => "hb",
            Item::Frame(f) => f.command.as_str(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "hb", "hb", "SEND", "hb", "hb", "RECEIPT", "hb", "MESSAGE", "hb"
        ]
    );
    assert!(!dec.is_partial());
    assert_eq!(dec.take_copied().bytes, 0);
}

#[test]
fn frame_split_over_three_messages() {
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.decode(b(b"\nSEND\ndestin"), &mut out).unwrap();
    assert!(dec.is_partial());
    assert_eq!(out, vec![Item::Heartbeat]);
    dec.decode(b(b"ation:/a\ncontent-length:3\n\nx"), &mut out)
        .unwrap();
    assert!(dec.is_partial());
    let third = b(b"\0z\0\nRECEIPT\nreceipt-id:9\n\n\0");
    dec.decode(third.clone(), &mut out).unwrap();
    assert!(!dec.is_partial());
    let fs = frames(out);
    assert_eq!(fs.len(), 2);
    assert_eq!(fs[0].header_str("destination"), Some("/a"));
    assert_eq!(fs[0].body.as_ref(), b"x\0z");
    // Only the SEND frame was copied; the RECEIPT after it is a slice of the third message.
    assert_eq!(
        dec.take_copied().bytes,
        (b"SEND\ndestination:/a\ncontent-length:3\n\nx\0z\0").len() as u64
    );
    assert!(within(&fs[1].headers[0].1, &third));
}

#[test]
fn split_everywhere_matches_whole() {
    let wire: &[u8] = b"\r\nSEND\r\ndestination:/a\\cb\r\ncontent-length:2\r\nevent:e\r\n\r\n\0\0\0\nSUBSCRIBE\nid:1\n\n\0\r";
    let whole = {
        let mut dec = Decoder::new(Limits::default());
        let mut out = Vec::new();
        dec.decode(Bytes::copy_from_slice(wire), &mut out).unwrap();
        assert!(dec.is_partial(), "lone trailing CR waits for its LF");
        out
    };
    assert_eq!(frames(whole.clone()).len(), 2);
    for i in 0..=wire.len() {
        for j in i..=wire.len() {
            let mut dec = Decoder::new(Limits::default());
            let mut out = Vec::new();
            for part in [&wire[..i], &wire[i..j], &wire[j..]] {
                dec.decode(Bytes::copy_from_slice(part), &mut out).unwrap();
            }
            assert_eq!(out, whole, "split at {i},{j}");
        }
    }
}

#[test]
fn lone_cr_then_lf_is_heartbeat() {
    let mut dec = Decoder::new(Limits::default());
    let out = decode_all(&mut dec, &[b"\r", b"\nACK\nid:1\n\n\0"]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], Item::Heartbeat);
    assert!(!dec.is_partial());
}

#[test]
fn crlf_frames() {
    let f = one(b"SEND\r\ndestination:/a\r\nfoo:bar \r\n\r\nhi\0").unwrap();
    assert_eq!(f.command, Command::Send);
    assert_eq!(
        f.headers,
        vec![(b(b"destination"), b(b"/a")), (b(b"foo"), b(b"bar "))]
    );
    assert_eq!(f.body.as_ref(), b"hi");
    // 1.0 and CONNECT strip a trailing CR as well.
    let f = one(b"CONNECT\r\nlogin:a\r\n\r\n\0").unwrap();
    assert_eq!(f.header_str("login"), Some("a"));
    let mut dec = Decoder::new(Limits::default());
    dec.set_version(Version::V1_0);
    let f = frames(decode_all(&mut dec, &[b"MESSAGE\r\nk:v\r\n\r\n\0"]).unwrap()).remove(0);
    assert_eq!(f.header_str("k"), Some("v"));
}

#[test]
fn content_length_body_with_nul() {
    let f = one(b"SEND\ndestination:/a\ncontent-length:5\n\n\0a\0b\0\0").unwrap();
    assert_eq!(f.body.as_ref(), b"\0a\0b\0");
    let f = one(b"SEND\ncontent-length:0\n\n\0").unwrap();
    assert!(f.body.is_empty());
}

#[test]
fn repeated_headers_first_wins_and_all_kept() {
    let f = one(b"MESSAGE\ndestination:/first\ndestination:/second\nempty:\n:anon\n\n\0").unwrap();
    assert_eq!(f.header_str("destination"), Some("/first"));
    assert_eq!(f.headers.len(), 4);
    assert_eq!(f.headers[1].1.as_ref(), b"/second");
    assert_eq!(f.header_str("empty"), Some(""));
    assert_eq!(f.header(""), Some(&b(b"anon")));
    assert_eq!(f.header("missing"), None);
    // The first content-length counts; later ones are kept but ignored.
    let f = one(b"SEND\ncontent-length:1\ncontent-length:junk\n\n\0\0").unwrap();
    assert_eq!(f.body.as_ref(), b"\0");
    // header_str is None for non-UTF-8.
    let f = one(b"SEND\nk:\xff\n\n\0").unwrap();
    assert_eq!(f.header_str("k"), None);
    assert!(f.header("k").is_some());
}

fn within(part: &Bytes, whole: &Bytes) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

#[test]
fn zero_copy_when_frame_within_one_message() {
    let msg = Bytes::copy_from_slice(
        b"\nSEND\ndestination:/a\nevent:e\n\nhello\0SEND\ncontent-length:3\n\nx\0y\0",
    );
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.decode(msg.clone(), &mut out).unwrap();
    let fs = frames(out);
    assert_eq!(fs.len(), 2);
    for f in &fs {
        assert!(within(&f.body, &msg));
        for (n, v) in &f.headers {
            // The specification's names are static bytes, others slices of the message.
            let standard = [&b"destination"[..], b"content-length"].contains(&n.as_ref());
            assert!(standard != within(n, &msg), "{n:?}");
            assert!(within(v, &msg));
        }
    }
    assert_eq!(fs[0].body.as_ref(), b"hello");
    assert_eq!(fs[1].body.as_ref(), b"x\0y");
    assert_eq!(dec.take_copied().bytes, 0);
}

#[test]
fn empty_body_allowed_nonempty_rejected_on_bodyless_commands() {
    assert!(one(b"SUBSCRIBE\nid:1\ndestination:/a\n\n\0").is_ok());
    assert!(matches!(
        one(b"SUBSCRIBE\nid:1\n\nxx\0"),
        Err(StompError::BodyNotAllowed("SUBSCRIBE"))
    ));
    assert!(matches!(
        one(b"ACK\nid:1\ncontent-length:1\n\nx\0"),
        Err(StompError::BodyNotAllowed("ACK"))
    ));
}

#[test]
fn malformed_inputs_give_their_errors() {
    assert!(matches!(one(b"FOO\n\n\0"), Err(StompError::UnknownCommand(c)) if c == "FOO"));
    assert!(matches!(
        one(b"send\n\n\0"),
        Err(StompError::UnknownCommand(_))
    ));
    let long = one(b"THIS-IS-NOT-A-COMMAND-AT-ALL-AND-QUITE-LONG\n\n\0");
    assert!(matches!(long, Err(StompError::UnknownCommand(c)) if c.len() == 32));
    // An unterminated first line longer than any command fails at once.
    let mut dec = Decoder::new(Limits::default());
    assert!(matches!(
        decode_all(&mut dec, &[b"GET / HTTP/1.1 and more"]),
        Err(StompError::UnknownCommand(_))
    ));
    assert!(!dec.is_partial());
    assert!(matches!(
        one(b"SEND\nk:a\\tb\n\n\0"),
        Err(StompError::BadEscape)
    ));
    assert!(matches!(
        one(b"SEND\nk:a\\\n\n\0"),
        Err(StompError::BadEscape)
    ));
    assert!(matches!(
        one(b"SEND\nnocolon\n\n\0"),
        Err(StompError::MalformedHeader)
    ));
    assert!(matches!(
        one(b"SEND\nk:v\0\n\n\0"),
        Err(StompError::MalformedHeader)
    ));
    assert!(matches!(
        one(b"DISCONNECT\n\0"),
        Err(StompError::MalformedHeader)
    ));
    assert!(matches!(
        one(b"SEND\ncontent-length:abc\n\n\0"),
        Err(StompError::BadContentLength)
    ));
    assert!(matches!(
        one(b"SEND\ncontent-length: 1\n\nx\0"),
        Err(StompError::BadContentLength)
    ));
    assert!(matches!(
        one(b"SEND\ncontent-length:\n\n\0"),
        Err(StompError::BadContentLength)
    ));
    assert!(matches!(
        one(b"SEND\ncontent-length:99999999999999999999999\n\n\0"),
        Err(StompError::BadContentLength)
    ));
    assert!(matches!(
        one(b"SEND\ncontent-length:2\n\nabc\0"),
        Err(StompError::MissingNul)
    ));
}

#[test]
fn limits() {
    let small = Limits {
        max_frame_size: 64,
        max_headers: 2,
        max_header_len: 24,
    };
    // A partial frame already over the limit fails at once, without buffering.
    let mut dec = Decoder::new(small.clone());
    let mut big = b"SEND\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 100));
    let r = dec.decode(Bytes::from(big), &mut Vec::new());
    assert!(
        matches!(r, Err(StompError::FrameTooLarge { size: 106, max: 64 })),
        "{r:?}"
    );
    assert!(!dec.is_partial());
    // The same, reached over several messages.
    let mut dec = Decoder::new(small.clone());
    let r = decode_all(
        &mut dec,
        &[
            b"SEND\n\n0123456789",
            b"0123456789012345678901234567890123456789",
            b"0123456789",
        ],
    );
    assert!(
        matches!(r, Err(StompError::FrameTooLarge { max: 64, .. })),
        "{r:?}"
    );
    // A content-length over the limit fails as soon as the header line is seen.
    let mut dec = Decoder::new(small.clone());
    let r = decode_all(&mut dec, &[b"SEND\ncontent-length:65\n"]);
    assert!(
        matches!(r, Err(StompError::FrameTooLarge { size: 65, max: 64 })),
        "{r:?}"
    );
    // A content-length that with the headers exceeds the limit, before the body arrives.
    let mut dec = Decoder::new(small.clone());
    let r = decode_all(&mut dec, &[b"SEND\ncontent-length:60\n\n"]);
    assert!(
        matches!(r, Err(StompError::FrameTooLarge { max: 64, .. })),
        "{r:?}"
    );
    // Complete frames are checked too.
    let mut long = b"SEND\n\n".to_vec();
    long.extend(std::iter::repeat_n(b'x', 80));
    long.push(0);
    let r = Decoder::new(small.clone()).decode(Bytes::from(long), &mut Vec::new());
    assert!(matches!(r, Err(StompError::FrameTooLarge { .. })));
    // Header count and length.
    let mut dec = Decoder::new(small.clone());
    let r = decode_all(&mut dec, &[b"SEND\na:1\nb:2\nc:3\n\n\0"]);
    assert!(
        matches!(r, Err(StompError::TooManyHeaders { max: 2 })),
        "{r:?}"
    );
    let mut dec = Decoder::new(small.clone());
    let r = decode_all(&mut dec, &[b"SEND\nk:0123456789abcdefghijklmn\n\n\0"]);
    assert!(
        matches!(r, Err(StompError::HeaderTooLong { max: 24 })),
        "{r:?}"
    );
    // An unterminated header line over the limit, even split over messages.
    let mut dec = Decoder::new(small.clone());
    let r = decode_all(&mut dec, &[b"SEND\nk:0123", b"456789abcdefghijklmn"]);
    assert!(
        matches!(r, Err(StompError::HeaderTooLong { max: 24 })),
        "{r:?}"
    );
    // Exactly at the limits is fine.
    let mut dec = Decoder::new(small.clone());
    let out = decode_all(&mut dec, &[b"SEND\na:1\nk:0123456789abcdefghijkl\n\n\0"]).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn error_messages_are_short() {
    let errs = [
        StompError::FrameTooLarge { size: 2, max: 1 },
        StompError::TooManyHeaders { max: 64 },
        StompError::HeaderTooLong { max: 8192 },
        StompError::UnknownCommand("x".repeat(32)),
        StompError::MalformedHeader,
        StompError::BadEscape,
        StompError::BadContentLength,
        StompError::MissingNul,
        StompError::BodyNotAllowed("ACK"),
    ];
    for e in errs {
        let m = e.message();
        assert!(!m.is_empty() && m.len() <= 64, "{m}");
        assert!(!e.to_string().is_empty());
    }
    assert!(std::mem::size_of::<StompError>() <= 32);
}

fn lcg(s: &mut u64) -> u64 {
    *s = s
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *s >> 33
}

#[test]
fn random_garbage_never_panics() {
    let mut seed = 42u64;
    let alphabet: &[u8] = b"SENDACKMESGRIPT\n\r:\\\0abc-content-length:0123456789\xff";
    let limits = Limits {
        max_frame_size: 256,
        max_headers: 8,
        max_header_len: 64,
    };
    for round in 0..400 {
        let len = (lcg(&mut seed) % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = lcg(&mut seed);
                if round % 2 == 0 {
                    alphabet[(r % alphabet.len() as u64) as usize]
                } else {
                    r as u8
                }
            })
            .collect();
        let mut dec = Decoder::new(limits.clone());
        let _ = dec.decode(Bytes::from(bytes.clone()), &mut Vec::new());
        // The same bytes in random pieces, under each version.
        let mut dec = Decoder::new(limits.clone());
        dec.set_version([Version::V1_0, Version::V1_1, Version::V1_2][round % 3]);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = 1 + (lcg(&mut seed) as usize % rest.len());
            let (a, b) = rest.split_at(n);
            if dec
                .decode(Bytes::copy_from_slice(a), &mut Vec::new())
                .is_err()
            {
                break;
            }
            rest = b;
        }
    }
}

#[test]
fn a_pausing_decoder_holds_what_follows_the_handshake() {
    let mut dec = Decoder::new(Limits::default()).pausing_after_handshake();
    let mut items = Vec::new();
    dec.decode(
        Bytes::from_static(b"CONNECT\naccept-version:1.0\n\n\0SEND\ndestination:/a\\c\n\n\0"),
        &mut items,
    )
    .unwrap();
    assert_eq!(items.len(), 1);
    let held = dec.take_held().unwrap();
    assert_eq!(&held[..], b"SEND\ndestination:/a\\c\n\n\0");
    dec.set_version(Version::V1_0);
    dec.decode(held, &mut items).unwrap();
    let Some(Item::Frame(f)) = items.pop() else {
        panic!()
    };
    assert_eq!(f.header("destination").unwrap(), "/a\\c");
    // Only the first handshake pauses; split over messages, the rest is held too.
    let mut dec = Decoder::new(Limits::default()).pausing_after_handshake();
    dec.decode(Bytes::from_static(b"CONNECTED\nversion:1.1"), &mut items)
        .unwrap();
    dec.decode(Bytes::from_static(b"\n\n\0\nMESSAGE\n\n\0"), &mut items)
        .unwrap();
    assert_eq!(&dec.take_held().unwrap()[..], b"\nMESSAGE\n\n\0");
    assert!(dec.take_held().is_none());
}

/// `encoded_len_exact` is what `encode` writes, for every escaping context.
#[test]
fn encoded_length_is_exact() {
    for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
        for command in [Command::Message, Command::Connected, Command::Error] {
            let f = Frame::new(command)
                .with_header("a:b", "x\\y\nz\r:w")
                .with_header("plain", "value")
                .with_header("nul", Bytes::from_static(b"a\0b"))
                .with_body(Bytes::from_static(b"{\"k\":1}"));
            let out = encode_to_bytes(&f, version);
            assert_eq!(
                out.len(),
                encoded_len_exact(&f, version),
                "{version:?} {command:?}"
            );
            assert!(out.len() <= encoded_len(&f));
        }
    }
}

/// The byte-at-a-time encoder the fast paths replaced: what every header part must become.
fn reference_part(part: &[u8], escaping: bool, version: Version, is_name: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in part {
        match b {
            0 => out.push(b'?'),
            b'\\' if escaping => out.extend_from_slice(b"\\\\"),
            b'\n' if escaping => out.extend_from_slice(b"\\n"),
            b':' if escaping => out.extend_from_slice(b"\\c"),
            b'\r' if escaping && version >= Version::V1_2 => out.extend_from_slice(b"\\r"),
            b'\n' | b'\r' => out.push(b'?'),
            b':' if is_name => out.push(b'?'),
            _ => out.push(b),
        }
    }
    out
}

fn reference_encode(f: &Frame, version: Version) -> Vec<u8> {
    let escaping = f.command.escapes(version);
    let mut out = f.command.as_str().as_bytes().to_vec();
    out.push(b'\n');
    for (n, v) in &f.headers {
        out.extend(reference_part(n, escaping, version, true));
        out.push(b':');
        out.extend(reference_part(v, escaping, version, false));
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&f.body);
    out.push(0);
    out
}

/// The plain-part fast path (a table scan, and parts remembered as plain between the length
/// pass and the write pass) writes what the byte-at-a-time encoder wrote: special bytes at
/// the start, middle and end of a part, parts past the 64 that are remembered, every context.
#[test]
fn encode_fast_path_matches_reference() {
    let parts: [&[u8]; 12] = [
        b"",
        b"plain",
        b":start",
        b"end:",
        b"mid\\dle",
        b"\n",
        b"a\rb",
        b"nul\0",
        b"\\\\::\n\r\0",
        b"/topic/message_created",
        "caf\u{e9}:\u{1f600}".as_bytes(),
        b"x",
    ];
    let mut seed = 7u32;
    for headers in [0usize, 1, 3, 31, 32, 33, 40] {
        for command in [Command::Message, Command::Connected, Command::Send] {
            let mut f = Frame::new(command).with_body(Bytes::from_static(b"body"));
            for _ in 0..headers {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let n = parts[(seed >> 8) as usize % parts.len()];
                let v = parts[(seed >> 20) as usize % parts.len()];
                f = f.with_header(Bytes::copy_from_slice(n), Bytes::copy_from_slice(v));
            }
            for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
                let want = reference_encode(&f, version);
                let got = encode_to_bytes(&f, version);
                assert_eq!(got.as_ref(), &want[..], "{headers} {command:?} {version:?}");
                assert_eq!(encoded_len_exact(&f, version), want.len());
                let mut into = BytesMut::from(&b"prefix"[..]);
                encode(&f, version, &mut into);
                assert_eq!(&into[6..], &want[..]);
            }
        }
    }
}
