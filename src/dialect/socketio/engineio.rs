//! Engine.IO protocol 4: the transport packet codec under Socket.IO.
//!
//! Owns: turning one WebSocket message (or one long-polling body) into Engine.IO packets and
//! back, and the JSON of the `open` handshake packet. Packet data stays a [`Bytes`] slice of
//! the received message; only a long-polling binary packet (`b<base64>`) is copied, because
//! the wire forces a decode.
//!
//! Must not touch: tokio, sockets or any other I/O, timers (ping scheduling belongs to the
//! session), metrics, configuration, or the Socket.IO layer above (see [`super::packet`]).
//!
//! Wire form (engine.io-protocol v4): `<type digit><data>` with `0` open, `1` close, `2` ping,
//! `3` pong, `4` message, `5` upgrade, `6` noop. Over WebSocket each packet is one message and
//! a binary message is a binary `message` packet with no prefix. Over HTTP long-polling the
//! packets of one body are joined by the record separator `\x1e` and a binary packet is
//! written `b<base64>`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::{BufMut, Bytes, BytesMut};

use crate::dialect::WsMsg;

/// Separates packets in a long-polling payload.
const SEPARATOR: u8 = 0x1e;

/// `maxPayload` when an `open` packet does not say (the server default `maxHttpBufferSize`).
pub const DEFAULT_MAX_PAYLOAD: u64 = 1_000_000;

/// Encodes with padding; decodes with or without it (Node's `Buffer.from(s, "base64")` is
/// lenient the same way).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One Engine.IO packet. Data fields are slices of the received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, a JSON object (see [`parse_open`]).
    Open(Bytes),
    /// `1`: the transport is closing.
    Close,
    /// `2`: a ping, with optional data (`probe` during an upgrade).
    Ping(Bytes),
    /// `3`: a pong, echoing the ping's data.
    Pong(Bytes),
    /// `4`: a text message (the text after the `4`; a Socket.IO packet).
    Message(Bytes),
    /// A binary message (a Socket.IO attachment).
    Binary(Bytes),
    /// `5`: completes a transport upgrade.
    Upgrade,
    /// `6`: no operation (flushes a pending long-polling request during an upgrade).
    Noop,
}

/// Errors decoding Engine.IO packets.
#[derive(Debug, thiserror::Error)]
pub enum EioError {
    /// An empty text packet (no type digit).
    #[error("empty engine.io packet")]
    Empty,
    /// The first byte is not a known packet type.
    #[error("unknown engine.io packet type {0:#04x}")]
    UnknownType(u8),
    /// The `open` packet's JSON is malformed or lacks a required field.
    #[error("bad engine.io open packet: {0}")]
    BadOpen(String),
    /// A long-polling `b` packet is not valid base64.
    #[error("bad base64 in engine.io binary packet")]
    BadBase64,
    /// A long-polling payload holds more packets than allowed.
    #[error("too many packets in engine.io payload")]
    TooManyPackets,
    /// A long-polling payload is not valid UTF-8.
    #[error("engine.io payload is not valid UTF-8")]
    NotUtf8,
}

/// The `open` packet's JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// The Engine.IO session id.
    pub sid: String,
    /// Transports the client may upgrade to (`[]` for a WebSocket-first session).
    pub upgrades: Vec<String>,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the client has to answer a ping.
    pub ping_timeout: u64,
    /// Largest accepted message or polling body in bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload: u64,
}

fn default_max_payload() -> u64 {
    DEFAULT_MAX_PAYLOAD
}

/// Parses the `open` packet's JSON. Unknown fields are ignored and a missing `maxPayload`
/// (older servers) means [`DEFAULT_MAX_PAYLOAD`].
pub fn parse_open(json: &[u8]) -> Result<OpenInfo, EioError> {
    serde_json::from_slice(json).map_err(|e| EioError::BadOpen(e.to_string()))
}

/// The `open` packet's JSON, keys in the order servers send them: `sid`, `upgrades`,
/// `pingInterval`, `pingTimeout`, `maxPayload`.
pub fn encode_open(info: &OpenInfo) -> Bytes {
    // Serializing strings and integers into a Vec cannot fail (serde_json only fails on
    // I/O errors, non-string map keys and custom Serialize errors, none of which apply).
    serde_json::to_vec(info)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// Decodes one text packet (`<type><data>`); `data` is sliced, not copied.
fn decode_text(text: &Bytes) -> Result<Packet, EioError> {
    let Some((&kind, _)) = text.split_first() else {
        return Err(EioError::Empty);
    };
    let data = || text.slice(1..);
    Ok(match kind {
        b'0' => Packet::Open(data()),
        b'1' => Packet::Close,
        b'2' => Packet::Ping(data()),
        b'3' => Packet::Pong(data()),
        b'4' => Packet::Message(data()),
        b'5' => Packet::Upgrade,
        b'6' => Packet::Noop,
        other => return Err(EioError::UnknownType(other)),
    })
}

/// One WebSocket message to one packet. A binary message is [`Packet::Binary`] (no prefix).
/// Data is sliced from the message, never copied. Trailing data on `close`, `upgrade` and
/// `noop` is ignored, as the reference parser does.
pub fn decode_ws(msg: &WsMsg) -> Result<Packet, EioError> {
    match msg {
        WsMsg::Text(text) => decode_text(text),
        WsMsg::Binary(data) => Ok(Packet::Binary(data.clone())),
    }
}

/// One packet to one WebSocket message: text `<type><data>`, or a binary message for
/// [`Packet::Binary`].
pub fn encode_ws(p: &Packet) -> WsMsg {
    if let Packet::Binary(data) = p {
        return WsMsg::Binary(data.clone());
    }
    let mut out = BytesMut::with_capacity(text_len(p));
    encode_text(p, &mut out);
    WsMsg::Text(out.freeze())
}

/// Length of [`encode_text`]'s output.
fn text_len(p: &Packet) -> usize {
    match p {
        Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) | Packet::Message(d) => 1 + d.len(),
        Packet::Close | Packet::Upgrade | Packet::Noop => 1,
        Packet::Binary(d) => 1 + base64::encoded_len(d.len(), true).unwrap_or(0),
    }
}

/// Appends the text form of a packet: `<type digit><data>`. A [`Packet::Binary`] has no text
/// form over WebSocket; it is written in its long-polling form, `b<base64>`.
pub fn encode_text(p: &Packet, out: &mut BytesMut) {
    out.reserve(text_len(p));
    let (kind, data): (u8, &[u8]) = match p {
        Packet::Open(d) => (b'0', d),
        Packet::Close => (b'1', b""),
        Packet::Ping(d) => (b'2', d),
        Packet::Pong(d) => (b'3', d),
        Packet::Message(d) => (b'4', d),
        Packet::Upgrade => (b'5', b""),
        Packet::Noop => (b'6', b""),
        Packet::Binary(d) => {
            out.put_u8(b'b');
            let start = out.len();
            let len = base64::encoded_len(d.len(), true).unwrap_or(0);
            out.resize(start + len, 0);
            if let Some(dst) = out.get_mut(start..) {
                let written = BASE64.encode_slice(d, dst).unwrap_or(0);
                out.truncate(start + written);
            }
            return;
        }
    };
    out.put_u8(kind);
    out.extend_from_slice(data);
}

/// Decodes a long-polling payload: packets joined by `\x1e`, binary ones as `b<base64>`.
/// Text packets are slices of `body`; binary ones are decoded copies. More than
/// `max_packets` packets is [`EioError::TooManyPackets`] (checked before each is stored).
pub fn decode_polling(body: Bytes, max_packets: usize) -> Result<Vec<Packet>, EioError> {
    if body.is_empty() {
        return Err(EioError::Empty);
    }
    // Base64 is ASCII, so the whole body must be UTF-8.
    std::str::from_utf8(&body).map_err(|_| EioError::NotUtf8)?;
    let mut packets = Vec::new();
    for part in body.split(|&b| b == SEPARATOR) {
        if packets.len() >= max_packets {
            return Err(EioError::TooManyPackets);
        }
        let part = body.slice_ref(part);
        let packet = match part.split_first() {
            Some((b'b', b64)) => {
                let data = BASE64.decode(b64).map_err(|_| EioError::BadBase64)?;
                Packet::Binary(Bytes::from(data))
            }
            _ => decode_text(&part)?,
        };
        packets.push(packet);
    }
    Ok(packets)
}

/// Encodes a long-polling payload: packets joined by `\x1e`, binary ones as `b<base64>`.
pub fn encode_polling(packets: &[Packet]) -> Bytes {
    let len = packets.iter().map(text_len).sum::<usize>() + packets.len().saturating_sub(1);
    let mut out = BytesMut::with_capacity(len);
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        encode_text(p, &mut out);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = r#"{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

    fn text(s: &str) -> WsMsg {
        WsMsg::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Every packet type, decoded and re-encoded byte for byte.
    #[test]
    fn golden_ws_packets() {
        let open = format!("0{OPEN}");
        let cases: Vec<(&str, Packet)> = vec![
            (open.as_str(), Packet::Open(b(OPEN))),
            ("1", Packet::Close),
            ("2", Packet::Ping(Bytes::new())),
            ("3", Packet::Pong(Bytes::new())),
            ("2probe", Packet::Ping(b("probe"))),
            ("3probe", Packet::Pong(b("probe"))),
            ("40", Packet::Message(b("0"))),
            (
                r#"40{"token":"abc"}"#,
                Packet::Message(b(r#"0{"token":"abc"}"#)),
            ),
            (
                r#"42["message_created",{"id":17,"text":"hi"}]"#,
                Packet::Message(b(r#"2["message_created",{"id":17,"text":"hi"}]"#)),
            ),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
        ];
        for (wire, packet) in cases {
            assert_eq!(decode_ws(&text(wire)).unwrap(), packet, "decode {wire}");
            assert_eq!(encode_ws(&packet), text(wire), "encode {wire}");
            let mut out = BytesMut::new();
            encode_text(&packet, &mut out);
            assert_eq!(out.as_ref(), wire.as_bytes());
        }
    }

    #[test]
    fn binary_ws_message_is_binary_packet() {
        let data = Bytes::from_static(&[1, 2, 3, 4]);
        let p = decode_ws(&WsMsg::Binary(data.clone())).unwrap();
        assert_eq!(p, Packet::Binary(data.clone()));
        assert_eq!(encode_ws(&p), WsMsg::Binary(data));
        let mut out = BytesMut::new();
        encode_text(&p, &mut out);
        assert_eq!(out.as_ref(), b"bAQIDBA==");
    }

    #[test]
    fn trailing_data_on_dataless_packets_is_ignored() {
        assert_eq!(decode_ws(&text("1x")).unwrap(), Packet::Close);
        assert_eq!(decode_ws(&text("5probe")).unwrap(), Packet::Upgrade);
        assert_eq!(decode_ws(&text("6?")).unwrap(), Packet::Noop);
    }

    #[test]
    fn decode_is_zero_copy() {
        let msg = text(r#"42["ev",{"a":1}]"#);
        let range = msg.bytes().as_ptr_range();
        let Packet::Message(data) = decode_ws(&msg).unwrap() else {
            panic!()
        };
        assert!(range.contains(&data.as_ptr()));
        assert_eq!(data.as_ptr(), msg.bytes().as_ptr().wrapping_add(1));
    }

    #[test]
    fn open_round_trip() {
        let info = parse_open(OPEN.as_bytes()).unwrap();
        assert_eq!(
            info,
            OpenInfo {
                sid: "lv_VI97HAXpY6yYWAAAC".into(),
                upgrades: vec![],
                ping_interval: 25000,
                ping_timeout: 20000,
                max_payload: 1_000_000,
            }
        );
        assert_eq!(encode_open(&info), OPEN.as_bytes());
        let polling = OpenInfo {
            upgrades: vec!["websocket".into()],
            ..info
        };
        assert_eq!(
            encode_open(&polling),
            r#"{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#.as_bytes()
        );
    }

    #[test]
    fn open_tolerates_missing_max_payload_and_unknown_fields() {
        let info = parse_open(
            br#"{"sid":"x","upgrades":["websocket"],"pingInterval":1,"pingTimeout":2,"extra":{"a":[1]}}"#,
        )
        .unwrap();
        assert_eq!(info.max_payload, DEFAULT_MAX_PAYLOAD);
        assert_eq!(info.upgrades, ["websocket"]);
    }

    #[test]
    fn bad_open() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"sid":"x"}"#,
            br#"{"sid":1,"upgrades":[],"pingInterval":1,"pingTimeout":2}"#,
        ] {
            assert!(
                matches!(parse_open(bad), Err(EioError::BadOpen(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_ws_packets() {
        assert!(matches!(decode_ws(&text("")), Err(EioError::Empty)));
        assert!(matches!(
            decode_ws(&text("7")),
            Err(EioError::UnknownType(b'7'))
        ));
        assert!(matches!(
            decode_ws(&text("x42")),
            Err(EioError::UnknownType(b'x'))
        ));
        // `b<base64>` is long-polling only.
        assert!(matches!(
            decode_ws(&text("bAQID")),
            Err(EioError::UnknownType(b'b'))
        ));
    }

    #[test]
    fn polling_payload_golden() {
        let wire = "2probe\x1e40\x1e42[\"a\",1]\x1ebAQIDBA==\x1e6";
        let packets = vec![
            Packet::Ping(b("probe")),
            Packet::Message(b("0")),
            Packet::Message(b(r#"2["a",1]"#)),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Packet::Noop,
        ];
        let body = b(wire);
        let range = body.as_ptr_range();
        let decoded = decode_polling(body.clone(), 16).unwrap();
        assert_eq!(decoded, packets);
        assert_eq!(encode_polling(&packets), wire.as_bytes());
        // Text packets are slices of the body.
        let Some(Packet::Message(m)) = decoded.get(2) else {
            panic!()
        };
        assert!(range.contains(&m.as_ptr()));
    }

    #[test]
    fn polling_every_type_round_trips() {
        let packets = vec![
            Packet::Open(b(OPEN)),
            Packet::Close,
            Packet::Ping(Bytes::new()),
            Packet::Pong(b("probe")),
            Packet::Message(b(r#"2["x"]"#)),
            Packet::Binary(Bytes::new()),
            Packet::Binary(Bytes::from_static(b"\xff\x00")),
            Packet::Upgrade,
            Packet::Noop,
        ];
        let body = encode_polling(&packets);
        assert_eq!(
            body.as_ref(),
            format!("0{OPEN}\x1e1\x1e2\x1e3probe\x1e42[\"x\"]\x1eb\x1eb/wA=\x1e5\x1e6").as_bytes()
        );
        assert_eq!(decode_polling(body, packets.len()).unwrap(), packets);
        assert_eq!(encode_polling(&[]), Bytes::new());
    }

    #[test]
    fn polling_base64_padding_optional() {
        assert_eq!(
            decode_polling(b("bAQIDBA"), 1).unwrap(),
            [Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))]
        );
    }

    #[test]
    fn malformed_polling() {
        assert!(matches!(
            decode_polling(Bytes::new(), 4),
            Err(EioError::Empty)
        ));
        assert!(matches!(
            decode_polling(b("4a\x1e"), 4),
            Err(EioError::Empty)
        ));
        assert!(matches!(
            decode_polling(b("b!!!"), 4),
            Err(EioError::BadBase64)
        ));
        assert!(matches!(
            decode_polling(b("4a\x1ebA=Q"), 4),
            Err(EioError::BadBase64)
        ));
        assert!(matches!(
            decode_polling(b("9"), 4),
            Err(EioError::UnknownType(b'9'))
        ));
        assert!(matches!(
            decode_polling(b("6\x1e6\x1e6"), 2),
            Err(EioError::TooManyPackets)
        ));
        assert!(matches!(
            decode_polling(b("6"), 0),
            Err(EioError::TooManyPackets)
        ));
        assert!(matches!(
            decode_polling(Bytes::from_static(b"4\xff\xfe"), 4),
            Err(EioError::NotUtf8)
        ));
        assert_eq!(decode_polling(b("6\x1e6"), 2).unwrap().len(), 2);
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
        const ALPHABET: &[u8] = b"0123456bx4\x1e{}[]\",:/-=+AQ \xff";
        let mut rng = Lcg(0x5eed);
        for _ in 0..500 {
            let len = (rng.next() % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let i = (rng.next() as usize) % ALPHABET.len();
                    *ALPHABET.get(i).unwrap()
                })
                .collect();
            let body = Bytes::from(input);
            if let Ok(packets) = decode_polling(body.clone(), 8) {
                let again = decode_polling(encode_polling(&packets), 8).unwrap();
                assert_eq!(again, packets);
            }
            if let Ok(p) = decode_ws(&WsMsg::Text(body.clone())) {
                // Only dataless packets drop trailing bytes; the rest round-trip exactly.
                if !matches!(p, Packet::Close | Packet::Upgrade | Packet::Noop) {
                    assert_eq!(encode_ws(&p), WsMsg::Text(body.clone()));
                }
            }
            let _ = parse_open(&body);
        }
    }
}
