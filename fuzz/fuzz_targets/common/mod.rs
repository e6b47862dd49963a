//! What the server-role targets share: a sequence of client messages (the input split on
//! 0xff; text when UTF-8, binary otherwise) fed to a role whose backend answers as a ready
//! one would (connected, subscribed, replied), and the check that a role that closed the
//! connection says nothing more.
// Each target uses part of it.
#![allow(dead_code)]

use std::time::Instant;

use bytes::Bytes;
use switchboard::dialect::{ServerOut, ServerRole, WsMsg};
use switchboard::frame::{BackendEvent, ClientOp};

/// Feeds `data`'s messages to `role`; `after_close` is a message that would be answered on
/// an open connection.
pub fn drive(role: &mut dyn ServerRole, data: &[u8], after_close: &'static [u8]) {
    let now = Instant::now();
    for msg in messages(data) {
        let mut out = ServerOut::default();
        role.on_client(msg, now, &mut out);
        let closed = out.close.is_some();
        for op in out.ops {
            let ev = match op {
                ClientOp::Connect { .. } => BackendEvent::Ready { session: None },
                ClientOp::Subscribe { sub, .. } => BackendEvent::Subscribed { sub, data: None },
                ClientOp::Publish { reply: Some(r), .. } => {
                    BackendEvent::Reply { id: r.id, result: Ok(None) }
                }
                _ => continue,
            };
            let mut o = ServerOut::default();
            role.on_backend(ev, now, &mut o);
        }
        if closed {
            let mut after = ServerOut::default();
            role.on_client(WsMsg::Text(Bytes::from_static(after_close)), now, &mut after);
            assert!(after.to_client.is_empty() && after.ops.is_empty(), "spoke after closing");
            return;
        }
    }
}

/// `data` as WebSocket messages: split on 0xff, text when UTF-8, binary otherwise.
pub fn messages(data: &[u8]) -> impl Iterator<Item = WsMsg> + '_ {
    data.split(|b| *b == 0xff).map(|chunk| {
        let bytes = Bytes::copy_from_slice(chunk);
        if std::str::from_utf8(chunk).is_ok() {
            WsMsg::Text(bytes)
        } else {
            WsMsg::Binary(bytes)
        }
    })
}
