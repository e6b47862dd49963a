//! Engine.IO (WebSocket and long-polling forms) and Socket.IO packet decoding on arbitrary
//! bytes: never panics; decoded packets re-encode.
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
            let _ = packet::encode(&p);
            if let Some(d) = &p.data {
                let _ = packet::split_args(d);
                let _ = packet::split_event(d);
            }
        }
        let _ = dec.decode_binary(bytes);
    }
});
