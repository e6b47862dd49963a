//! The CONNECT frame toward the broker: accepted versions, host, the heart-beat we offer, and
//! credentials (the client's login and passcode, else its token as passcode or as an
//! `Authorization` bearer as the route says, else the route's fixed login and passcode).
//!
//! Must not touch: the broker's answer (`inbound.rs`).

use bytes::{Bytes, BytesMut};

use super::{StompClient, TokenAs};
use crate::dialect::stomp::codec::{Command, Frame};

impl StompClient {
    pub(super) fn connect_frame(&self) -> Frame {
        let (cx, cy) = self.settings.heartbeat;
        let mut f = Frame::new(Command::Connect)
            .with_header("accept-version", "1.0,1.1,1.2")
            .with_header("host", self.settings.host.clone())
            .with_header("heart-beat", format!("{cx},{cy}"));
        let c = &self.credentials;
        let s = &self.settings;
        let mut login = c.login.clone().or_else(|| s.login.clone().map(Bytes::from));
        let mut passcode = if c.login.is_some() {
            c.passcode.clone()
        } else {
            None
        };
        if passcode.is_none() {
            match (&c.token, s.token_as) {
                (Some(t), TokenAs::Passcode) if s.passcode.is_none() || c.login.is_some() => {
                    passcode = Some(t.clone());
                }
                (Some(t), TokenAs::Authorization) => {
                    let mut v = BytesMut::with_capacity(t.len() + 7);
                    v.extend_from_slice(b"Bearer ");
                    v.extend_from_slice(t);
                    f.push_header("Authorization", v.freeze());
                }
                _ => {}
            }
        }
        if passcode.is_none() {
            passcode = s.passcode.clone().map(Bytes::from);
        }
        if login.is_none() && passcode.is_some() {
            login = Some(Bytes::new());
        }
        if let Some(l) = login {
            f.push_header("login", l);
        }
        if let Some(p) = passcode {
            f.push_header("passcode", p);
        }
        f
    }
}
