//! The STOMP client role (in progress).
use std::time::Instant;

use crate::config::Route;
use crate::dialect::{ClientOut, ClientRole, Close, Keepalive, WsMsg};
use crate::frame::{BackendEvent, ClientOp, Credentials, ErrorInfo, ErrorKind};

/// Settings.
#[derive(Debug, Clone, Default)]
pub struct Settings;
impl Settings {
    /// From a route.
    pub fn from_route(_r: &Route) -> Self {
        Self
    }
}
/// The STOMP client role.
#[derive(Debug)]
pub struct StompClient;
impl StompClient {
    /// New.
    pub fn new(_s: Settings, _c: Credentials) -> Self {
        Self
    }
}
impl ClientRole for StompClient {
    fn start(&mut self, _now: Instant, out: &mut ClientOut) {
        out.events.push(BackendEvent::Error(ErrorInfo::new(
            ErrorKind::Unavailable,
            "STOMP upstreams are not implemented yet",
        )));
        out.close = Some(Close::normal());
    }
    fn on_op(&mut self, _op: ClientOp, _now: Instant, _out: &mut ClientOut) {}
    fn on_backend(&mut self, _msg: WsMsg, _now: Instant, _out: &mut ClientOut) {}
    fn keepalive(&self) -> Keepalive {
        Keepalive::default()
    }
    fn heartbeat(&mut self) -> Option<WsMsg> {
        None
    }
    fn on_peer_silent(&mut self, _out: &mut ClientOut) {}
    fn expire(&mut self, _now: Instant, _out: &mut ClientOut) {}
    fn on_closed(&mut self, _r: ErrorInfo, _out: &mut ClientOut) {}
}
