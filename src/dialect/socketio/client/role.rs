//! The [`ClientRole`] impl: the Engine.IO open packet (maxPayload, the ping deadline, then the
//! namespace CONNECT), pings answered, Socket.IO packets through the decoder, ops held until
//! the namespace is joined (within a count and byte budget), ack timeouts, and close.
//!
//! Must not touch: what each Socket.IO packet means (`inbound.rs`), emits (`emit.rs`).

use std::time::{Duration, Instant};

use super::{SocketioClient, State};
use crate::dialect::socketio::engineio::{self, Packet as Eio};
use crate::dialect::socketio::packet::{Packet, PacketType};
use crate::dialect::{ClientOut, ClientRole, Close, Dial, Keepalive, WsMsg};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Reply};

impl ClientRole for SocketioClient {
    fn dial(&self) -> Dial {
        // The client's cookie and origin go along, as any reverse proxy forwards them:
        // backends behind session cookies or Origin checks see their own client.
        Dial::from_credentials(&self.credentials)
    }

    fn start(&mut self, _now: Instant, _out: &mut ClientOut) {
        // The server speaks first (Engine.IO open packet).
    }

    fn on_op(&mut self, op: ClientOp, now: Instant, out: &mut ClientOut) {
        match self.state {
            State::Closed => {
                if let ClientOp::Publish {
                    reply: Some(Reply { id, .. }),
                    ..
                } = op
                {
                    out.events.push(BackendEvent::Reply {
                        id,
                        result: Err(ErrorInfo::new(
                            ErrorKind::Unavailable,
                            "backend connection closed",
                        )),
                    });
                }
                return;
            }
            State::AwaitOpen | State::Connecting if !matches!(op, ClientOp::Connect { .. }) => {
                // One wording for either limit.
                if self.queued.push(op).is_err() {
                    return self.fail(
                        ErrorInfo::new(
                            ErrorKind::Limit,
                            "too many operations before the backend was ready",
                        ),
                        out,
                    );
                }
                return;
            }
            _ => {}
        }
        match op {
            ClientOp::Connect { credentials } => self.credentials = credentials,
            // Socket.IO has no subscribe on the wire: every event the backend sends reaches us,
            // and the translator delivers it to the subscriptions that match.
            ClientOp::Subscribe { sub, .. } => out
                .events
                .push(BackendEvent::Subscribed { sub, data: None }),
            ClientOp::Unsubscribe { .. } => {}
            // A namespace's auth is fixed at its CONNECT.
            ClientOp::Reauth { .. } => out.events.push(BackendEvent::Refused(ErrorInfo::new(
                ErrorKind::Untranslatable,
                "a Socket.IO backend cannot re-authenticate an open session",
            ))),
            ClientOp::Ack {
                token,
                positive,
                result,
            } => self.answer(&token, positive, result, out),
            ClientOp::Publish {
                meta: _,
                channel,
                event: _,
                args,
                payload,
                reply,
                ..
            } => {
                self.publish(channel, args, payload, reply, now, out);
            }
            op @ (ClientOp::Join { .. }
            | ClientOp::Leave { .. }
            | ClientOp::Emit { .. }
            | ClientOp::Answer { .. }) => {
                if self.settings.scoped {
                    self.on_scoped_op(op, now, out);
                } else {
                    out.events.extend(op.shape_refusal());
                }
            }
            // Scoped: the client closed its transport, and so does the proxy (no `41`s, as
            // socket.io-client sends none when its connection drops).
            ClientOp::Disconnect if self.settings.scoped => {
                self.state = State::Closed;
                self.fail_pending(
                    &ErrorInfo::new(ErrorKind::Unavailable, "client disconnected"),
                    out,
                );
                out.close = Some(Close::normal());
            }
            ClientOp::Disconnect => {
                let p = Packet {
                    kind: PacketType::Disconnect,
                    nsp: self.nsp.clone(),
                    id: None,
                    data: None,
                    attachments: vec![],
                };
                let _ = self.send_packet(&p, out);
                self.state = State::Closed;
                self.fail_pending(
                    &ErrorInfo::new(ErrorKind::Unavailable, "client disconnected"),
                    out,
                );
                out.close = Some(Close::normal());
            }
        }
    }

    fn on_backend(&mut self, msg: WsMsg, _now: Instant, out: &mut ClientOut) {
        if self.state == State::Closed {
            return;
        }
        let eio = match engineio::decode_ws(&msg) {
            Ok(p) => p,
            Err(e) => {
                return self.fail(
                    ErrorInfo::new(ErrorKind::Protocol, format!("bad Engine.IO packet: {e}")),
                    out,
                );
            }
        };
        match eio {
            Eio::Open(json) => {
                if self.state != State::AwaitOpen {
                    return;
                }
                let info = match engineio::parse_open(&json) {
                    Ok(i) => i,
                    Err(e) => {
                        return self.fail(
                            ErrorInfo::new(ErrorKind::Protocol, format!("bad open packet: {e}")),
                            out,
                        );
                    }
                };
                self.max_payload = usize::try_from(info.max_payload).unwrap_or(usize::MAX);
                // The server pings every pingInterval; no ping for pingInterval + pingTimeout
                // means the link is dead.
                self.keepalive.expect_within = Some(Duration::from_millis(
                    info.ping_interval.saturating_add(info.ping_timeout),
                ));
                if self.settings.scoped {
                    return self.open_scoped(out);
                }
                self.state = State::Connecting;
                let p = Packet {
                    kind: PacketType::Connect,
                    nsp: self.nsp.clone(),
                    id: None,
                    data: self.auth_payload(),
                    attachments: vec![],
                };
                if let Err(e) = self.send_packet(&p, out) {
                    self.fail(e, out);
                }
            }
            Eio::Ping(data) => out.to_backend.push(engineio::encode_ws(&Eio::Pong(data))),
            Eio::Pong(_) | Eio::Noop | Eio::Upgrade => {}
            Eio::Close => self.fail(
                ErrorInfo::new(ErrorKind::Unavailable, "backend closed the connection"),
                out,
            ),
            Eio::Message(text) => match self.decoder.decode_text(text) {
                Ok(Some(p)) if self.settings.scoped => self.on_sio_scoped(p, out),
                Ok(Some(p)) => self.on_sio(p, out),
                Ok(None) => {}
                Err(e) => self.fail(
                    ErrorInfo::new(ErrorKind::Protocol, format!("bad Socket.IO packet: {e}")),
                    out,
                ),
            },
            Eio::Binary(data) => match self.decoder.decode_binary(data) {
                Ok(Some(p)) if self.settings.scoped => self.on_sio_scoped(p, out),
                Ok(Some(p)) => self.on_sio(p, out),
                Ok(None) => {}
                Err(e) => self.fail(
                    ErrorInfo::new(
                        ErrorKind::Protocol,
                        format!("bad Socket.IO attachment: {e}"),
                    ),
                    out,
                ),
            },
        }
    }

    fn keepalive(&self) -> Keepalive {
        self.keepalive
    }

    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }

    fn on_peer_silent(&mut self, out: &mut ClientOut) {
        self.fail(
            ErrorInfo::new(ErrorKind::Timeout, "backend ping timeout"),
            out,
        );
    }

    fn expire(&mut self, now: Instant, out: &mut ClientOut) {
        // Deadline order is ack-id order: each ack waits `ack_timeout` from a `now` that never
        // goes back.
        for (_, rid) in self.pending.expire(now) {
            out.events.push(BackendEvent::Reply {
                id: rid,
                result: Err(ErrorInfo::new(
                    ErrorKind::Timeout,
                    "backend did not acknowledge in time",
                )),
            });
        }
    }

    fn on_closed(&mut self, reason: ErrorInfo, out: &mut ClientOut) {
        self.state = State::Closed;
        self.fail_pending(&reason, out);
    }

    fn take_copied(&mut self) -> crate::dialect::Copied {
        let mut copied = std::mem::take(&mut self.copied);
        copied.add(self.queued.take_copied());
        copied
    }
}
