//! Engine.IO (WebSocket and long-polling forms) and Socket.IO packet decoding on arbitrary
//! bytes: never panics; a decoded packet re-encodes to one that decodes the same.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::WsMsg;
use switchboard::dialect::socketio::{engineio, packet};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let _ = engineio::decode_polling(bytes.clone(), 64);
    let msg = match std::str::from_utf8(data) {
        Ok(_) => WsMsg::Text(bytes.clone()),
        Err(_) => WsMsg::Binary(bytes.clone()),
    };
    if let Ok(engineio::Packet::Message(text)) = engineio::decode_ws(&msg) {
        let mut dec = packet::Decoder::new(4);
        if let Ok(Some(p)) = dec.decode_text(text) {
            let wire = packet::encode(&p);
            // A packet without attachments re-encodes to one that decodes the same.
            if p.attachments.is_empty() {
                let mut d2 = packet::Decoder::new(4);
                match d2.decode_text(wire.clone()) {
                    Ok(Some(q)) => assert_eq!(q, p, "re-encoded as {wire:?}"),
                    other => panic!("{p:?} re-encoded as {wire:?} decodes to {other:?}"),
                }
            }
            if let Some(d) = &p.data {
                let _ = packet::split_args(d);
                let _ = packet::split_event(d);
            }
        }
        let _ = dec.decode_binary(bytes);
    }
});
