//! The Socket.IO server role fed a sequence of arbitrary client messages (split on 0xff;
//! text when UTF-8, binary attachments otherwise) after the Engine.IO open, with a
//! backend that is ready and confirms what it is asked: never panics, and once it closes
//! the connection it says nothing more.
#![no_main]
use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::socketio::server::{Settings, SocketioServer};
use switchboard::dialect::{ServerOut, ServerRole, WsMsg};
use switchboard::frame::{BackendEvent, ClientOp};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut role = SocketioServer::new(Settings::default(), None, String::new(), "sid".into(), now);
    let mut out = ServerOut::default();
    role.on_start(now, &mut out);
    for chunk in data.split(|b| *b == 0xff) {
        let bytes = Bytes::copy_from_slice(chunk);
        let msg = if std::str::from_utf8(chunk).is_ok() {
            WsMsg::Text(bytes)
        } else {
            WsMsg::Binary(bytes)
        };
        let mut out = ServerOut::default();
        role.on_client(msg, now, &mut out);
        let closed = out.close.is_some();
        // The backend answers what it was asked, as a ready one would.
        for op in out.ops {
            let ev = match op {
                ClientOp::Connect { .. } => BackendEvent::Ready { session: None },
                ClientOp::Subscribe { sub, .. } => BackendEvent::Subscribed { sub, data: None },
                ClientOp::Publish { reply: Some(r), .. } => BackendEvent::Reply { id: r.id, result: Ok(None) },
                _ => continue,
            };
            let mut o = ServerOut::default();
            role.on_backend(ev, now, &mut o);
        }
        if closed {
            let mut after = ServerOut::default();
            role.on_client(WsMsg::Text(Bytes::from_static(b"42[\"x\"]")), now, &mut after);
            assert!(after.to_client.is_empty() && after.ops.is_empty());
            break;
        }
    }
});
