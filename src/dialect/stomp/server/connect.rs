//! CONNECT (or STOMP): the version chosen from `accept-version`, heart-beats negotiated from
//! both sides' offers, and the credentials sent upstream (an `Authorization` header, else the
//! upgrade's bearer token, else a lone `passcode`). CONNECTED waits for the upstream's `Ready`
//! (`role.rs`).
//!
//! Must not touch: frames after CONNECT (the other concern files).

use std::time::Duration;

use bytes::Bytes;

use super::{State, StompServer};
use crate::dialect::stomp::codec::{Command, Frame, Version};
use crate::dialect::{Close, Keepalive, ServerOut, strip_bearer};
use crate::frame::{ClientOp, Credentials};

impl StompServer {
    pub(super) fn on_connect(&mut self, f: Frame, out: &mut ServerOut) {
        let offered = f.header_str("accept-version").unwrap_or("1.0");
        let best = offered
            .split(',')
            .filter_map(|v| Version::parse(v.trim().as_bytes()))
            .max();
        let Some(version) = best else {
            let mut e = Frame::new(Command::Error)
                .with_header("version", "1.0,1.1,1.2")
                .with_header("message", "unsupported protocol version")
                .with_header("content-type", "text/plain");
            let body = Bytes::from_static(b"Supported protocol versions are 1.0 1.1 1.2");
            e.push_header("content-length", body.len().to_string());
            let e = e.with_body(body);
            self.send(&e, out);
            self.state = State::Closed;
            out.close = Some(Close::new(1002, "unsupported protocol version"));
            return;
        };
        self.version = version;
        self.decoder.set_version(version);
        let (cx, cy) = f
            .header_str("heart-beat")
            .map(parse_heartbeat)
            .unwrap_or(Some((0, 0)))
            .unwrap_or((0, 0));
        let (sx, sy) = self.settings.heartbeat;
        // Client → server every max(cx, sy); server → client every max(sx, cy); 0 disables.
        let recv = (cx != 0 && sy != 0).then(|| cx.max(sy));
        let send = (sx != 0 && cy != 0).then(|| sx.max(cy));
        self.keepalive = Keepalive {
            send_every: send.map(Duration::from_millis),
            // Lenient, like stomp-js: allow twice the interval before calling the peer dead.
            expect_within: recv.map(|ms| Duration::from_millis(ms.saturating_mul(2))),
            periodic: false,
        };
        let bearer = f
            .header("Authorization")
            .or_else(|| f.header("authorization"))
            .map(strip_bearer);
        let login = f.header("login").cloned();
        let passcode = f.header("passcode").cloned();
        let token = bearer.or_else(|| self.upgrade_token.clone()).or_else(|| {
            if login.is_none() {
                passcode.clone()
            } else {
                None
            }
        });
        let credentials = Credentials {
            token,
            login,
            passcode,
            auth_json: None,
            ..Default::default()
        };
        self.connect_receipt = f.header("receipt").cloned();
        self.state = State::Connecting;
        out.ops.push(ClientOp::Connect { credentials });
    }
}

/// Parse `cx,cy`.
fn parse_heartbeat(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}
