//! TCP options every proxied socket gets, accepted or dialed: no Nagle delay (a message is
//! written whole, at once) and keepalive probes.
//!
//! Why keepalive: a peer that vanished without a FIN (a dropped network, a killed VM) is
//! noticed by a translating session's heartbeats, but a passthrough relays frames without
//! reading them and a protocol may have no heartbeat at all (STOMP `heart-beat:0,0`): the
//! kernel's probes end such a connection, and its session with it, in about a minute and a
//! half instead of never.
//!
//! Must not touch: anything above the socket.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Silence before the first probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Between probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel gives the connection up.
pub const KEEPALIVE_RETRIES: u32 = 3;

/// Set the options on a connected socket. Failing to is not worth failing the connection
/// for (the socket works without them); it is logged.
pub fn configure(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_options_are_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dialed = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        for tcp in [&dialed, &accepted] {
            configure(tcp);
            assert!(tcp.nodelay().unwrap());
            let s = SockRef::from(tcp);
            assert!(s.keepalive().unwrap());
            assert_eq!(s.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
            assert_eq!(s.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
            assert_eq!(s.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        }
    }
}
