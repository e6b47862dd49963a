//! Namespaces: CONNECT (allowed names, the one upstream identity later namespaces must share,
//! the `40{"sid":..}` reply held until the upstream is ready), DISCONNECT (its subscriptions
//! and pending replies go too; the last one closes), and the backend's refusals and failures
//! (`44` on the namespaces still waiting, or a transport close so the client reconnects).
//!
//! Must not touch: events and emits (`emit.rs`), the subscription table beyond dropping a left
//! namespace's entries (`subscriptions.rs`), Engine.IO packets (`role.rs`).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::wire::wire;
use super::{Nsp, SocketioServer, State};
use crate::dialect::json::{is_json, json_string};
use crate::dialect::socketio::packet::{self, Packet, PacketType};
use crate::dialect::{Refusal, ServerOut, WsMsg};
use crate::frame::{ClientOp, Credentials, ErrorInfo, ErrorKind, PayloadKind, SubId};

impl SocketioServer {
    pub(super) fn on_connect(&mut self, p: Packet, out: &mut ServerOut) {
        let allowed = self
            .settings
            .namespaces
            .iter()
            .any(|n| n.as_bytes() == p.nsp.as_ref());
        if !allowed {
            let msg = wire(
                PacketType::ConnectError,
                &p.nsp,
                None,
                0,
                &[br#"{"message":"Invalid namespace"}"#],
            );
            out.to_client.push(msg);
            return;
        }
        if let Some(i) = self.nsp_index(&p.nsp) {
            if self.nsps.get(i).is_some_and(|n| n.joined) {
                // A second CONNECT to a joined namespace: the reference server closes.
                self.close(1002, "invalid state", true, out);
            }
            return;
        }
        if self.settings.shapes {
            return self.join_shaped(p, out);
        }
        let token = p
            .data
            .as_ref()
            .and_then(|d| auth_token(d))
            .or_else(|| self.upgrade_token.clone());
        if matches!(self.state, State::Connecting | State::Ready) && token != self.token {
            // One session holds one upstream identity, the first namespace's. The reference
            // server checks auth per namespace; joining with other credentials would borrow
            // that identity, so it is refused like a middleware refusal (the connection and
            // its other namespaces stay).
            let msg = wire(
                PacketType::ConnectError,
                &p.nsp,
                None,
                0,
                &[br#"{"message":"auth differs from the connection's first namespace"}"#],
            );
            out.to_client.push(msg);
            return;
        }
        match self.state {
            State::AwaitConnect => {
                // Copies, shared with the upstream's credentials: kept for the connection's
                // life (here and by the client role), where a slice would keep the whole
                // received message it came in (a read buffer's worth).
                self.auth = p.data.as_deref().map(Bytes::copy_from_slice);
                self.token = token.as_deref().map(Bytes::copy_from_slice);
                self.primary = Some(Bytes::copy_from_slice(&p.nsp));
                out.ops.push(ClientOp::Connect {
                    credentials: Credentials {
                        token: self.token.clone(),
                        login: None,
                        passcode: None,
                        auth_json: self.auth.clone(),
                        ..Default::default()
                    },
                });
                self.connect_sent = true;
                self.state = State::Connecting;
                self.nsps.push(Nsp {
                    name: Bytes::copy_from_slice(&p.nsp),
                    joined: false,
                });
            }
            State::Connecting => self.nsps.push(Nsp {
                name: Bytes::copy_from_slice(&p.nsp),
                joined: false,
            }),
            State::Ready => {
                out.to_client.push(self.connect_reply(&p.nsp));
                self.nsps.push(Nsp {
                    name: Bytes::copy_from_slice(&p.nsp),
                    joined: true,
                });
            }
            State::Closed => {}
        }
    }

    /// `40{"sid":".."}` (never with a `pid`: connection state recovery is off).
    fn connect_reply(&self, nsp: &[u8]) -> WsMsg {
        let sid = packet::json_string(self.sid.as_bytes());
        wire(
            PacketType::Connect,
            nsp,
            None,
            0,
            &[b"{\"sid\":", &sid, b"}"],
        )
    }

    pub(super) fn on_leave(&mut self, nsp: &Bytes, out: &mut ServerOut) {
        let Some(i) = self.nsp_index(nsp) else {
            return;
        };
        self.nsps.remove(i);
        let mut gone: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.nsp == nsp)
            .map(|(id, _)| *id)
            .collect();
        gone.sort_unstable();
        for sub in gone {
            self.subs.remove(&sub);
            out.ops.push(ClientOp::Unsubscribe { sub });
        }
        self.replies.retain(|_, (n, _)| n != nsp);
        if self.nsps.is_empty() {
            self.close(1000, "client namespace disconnect", true, out);
        }
    }

    pub(super) fn on_ready(&mut self, out: &mut ServerOut) {
        if self.settings.shapes {
            // Each namespace's `40` is the backend's own, on `Joined`.
            self.upstream_ready = true;
            if self.state == State::Connecting {
                self.state = State::Ready;
            }
            return;
        }
        if self.state != State::Connecting {
            return;
        }
        self.state = State::Ready;
        let pending: Vec<Bytes> = self
            .nsps
            .iter()
            .filter(|n| !n.joined)
            .map(|n| n.name.clone())
            .collect();
        for nsp in pending {
            out.to_client.push(self.connect_reply(&nsp));
        }
        for n in &mut self.nsps {
            n.joined = true;
        }
        self.auto_subscribe(out);
    }

    /// The client is refused by the backend: `44` on every namespace still waiting, then close.
    pub(super) fn refuse(&mut self, e: &ErrorInfo, out: &mut ServerOut) {
        let message = packet::json_string(&e.message);
        let detail = e
            .detail
            .as_ref()
            .filter(|d| d.kind == PayloadKind::Json && is_json(&d.data));
        let pending: Vec<Bytes> = self
            .nsps
            .iter()
            .filter(|n| !n.joined)
            .map(|n| n.name.clone())
            .collect();
        for nsp in pending {
            let msg = match detail {
                Some(d) => wire(
                    PacketType::ConnectError,
                    &nsp,
                    None,
                    0,
                    &[b"{\"message\":", &message, b",\"data\":", &d.data, b"}"],
                ),
                None => wire(
                    PacketType::ConnectError,
                    &nsp,
                    None,
                    0,
                    &[b"{\"message\":", &message, b"}"],
                ),
            };
            out.to_client.push(msg);
        }
        self.close(1008, "unauthorized", false, out);
    }

    /// A fatal upstream condition: auth refusals before ready get `44`; anything else closes
    /// the transport so the client reconnects (never `41`, which stops reconnection).
    pub(super) fn upstream_failed(&mut self, e: &ErrorInfo, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        if e.kind == ErrorKind::Unauthorized && self.state == State::Connecting {
            return self.refuse(e, out);
        }
        self.close(1011, "upstream unavailable", false, out);
    }
}

impl SocketioServer {
    /// The route's client limits refuse this client. A busy route: `44` (CONNECT_ERROR) for
    /// every namespace the route serves, before the client's CONNECT even arrives (the
    /// reference client takes it in any order, as a middleware refusal: `connect_error` with
    /// the message, no reconnection), then the close. A message over the rate: `41` for each
    /// joined namespace (the client's `disconnect` with "io server disconnect", which does not
    /// reconnect), then the close.
    pub(super) fn refused(&mut self, refusal: Refusal, reason: &ErrorInfo, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        let close = refusal.close(reason);
        match refusal {
            Refusal::Busy => {
                let message = json_string(&reason.message);
                for nsp in &self.settings.namespaces {
                    out.to_client.push(wire(
                        PacketType::ConnectError,
                        nsp.as_bytes(),
                        None,
                        0,
                        &[b"{\"message\":", &message, b"}"],
                    ));
                }
                self.close(close.code, &close.reason, false, out);
            }
            Refusal::Rate => {
                self.disconnect_joined(out);
                self.close(close.code, &close.reason, true, out);
            }
        }
    }

    /// The backend ended the session and does not want it back (it kicked the client): `41`
    /// for each joined namespace, "io server disconnect", which socket.io-client does not
    /// reconnect from, then a normal close.
    pub(super) fn kicked(&mut self, out: &mut ServerOut) {
        if self.state == State::Closed {
            return;
        }
        self.disconnect_joined(out);
        self.close(1000, "disconnected by the backend", true, out);
    }

    fn disconnect_joined(&self, out: &mut ServerOut) {
        for n in self.nsps.iter().filter(|n| n.joined) {
            out.to_client
                .push(wire(PacketType::Disconnect, &n.name, None, 0, &[]));
        }
    }
}

/// The fields of a CONNECT auth object, as raw JSON slices.
pub(super) fn auth_fields(auth: &[u8]) -> Option<HashMap<String, &RawValue>> {
    serde_json::from_slice(auth).ok()
}

/// `auth.token` when it is a string.
pub(super) fn auth_token(auth: &[u8]) -> Option<Bytes> {
    let fields = auth_fields(auth)?;
    let raw = fields.get("token")?;
    serde_json::from_str::<String>(raw.get())
        .ok()
        .filter(|t| !t.is_empty())
        .map(Bytes::from)
}
