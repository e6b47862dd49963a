//! Unit tests of the Engine.IO transport.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::cors::{Cors, cors, same_origin};
use super::polling::packet_len;
use super::shared::{POLLING, Pings, Shared, UPGRADING, WEBSOCKET};
use super::upgrade::{UpgradeGuard, from_ws};
use super::{Code, Query, error, respond};
use crate::dialect::WsMsg;
use crate::dialect::socketio::engineio::{self, Packet as Eio};
use crate::metrics::LegCounters;
use crate::session::LinkError;

#[test]
fn query_parsing() {
    let q = Query::parse(Some("EIO=4&transport=polling&t=abc&sid=x%2By"));
    assert_eq!(q.eio.as_deref(), Some("4"));
    assert_eq!(q.transport.as_deref(), Some("polling"));
    assert_eq!(q.sid.as_deref(), Some("x+y"));
    let q = Query::parse(None);
    assert!(q.eio.is_none() && q.transport.is_none() && q.sid.is_none());
}

#[test]
fn error_bodies_match_the_reference_server() {
    for (code, n, status) in [
        (Code::UnknownTransport, 0, 400),
        (Code::UnknownSid, 1, 400),
        (Code::BadHandshakeMethod, 2, 400),
        (Code::BadRequest, 3, 400),
        (Code::Forbidden, 4, 403),
        (Code::UnsupportedProtocolVersion, 5, 400),
    ] {
        let v: serde_json::Value = serde_json::from_str(code.body()).unwrap();
        assert_eq!(v["code"], n);
        assert_eq!(code.status().as_u16(), status);
        let r = error(code);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}

#[test]
fn polling_packet_lengths() {
    for p in [
        Eio::Message(Bytes::from("2[\"a\"]")),
        Eio::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        Eio::Binary(Bytes::new()),
        Eio::Close,
        Eio::Ping(Bytes::new()),
    ] {
        assert_eq!(
            packet_len(&p),
            engineio::encode_polling(std::slice::from_ref(&p)).len()
        );
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

#[test]
fn same_origin_compares_host_and_port() {
    for (origin, host) in [
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("https://app.example", "app.example"),
        ("https://app.example", "app.example:443"),
        ("http://app.example", "APP.example:80"),
        ("http://[::1]:3000", "[::1]:3000"),
    ] {
        assert!(
            same_origin(origin.as_bytes(), host.as_bytes()),
            "{origin} {host}"
        );
    }
    for (origin, host) in [
        ("http://127.0.0.1:8081", "127.0.0.1:8080"),
        ("https://app.example", "app.example:80"),
        ("http://evil.example", "app.example"),
        ("null", "app.example"),
        ("file:///x", "app.example"),
        ("http://app.example", ""),
        ("http://app.example", "evil@app.example"),
        ("http://app.example", "app.example/x"),
    ] {
        assert!(
            !same_origin(origin.as_bytes(), host.as_bytes()),
            "{origin} {host}"
        );
    }
}

#[test]
fn cors_decisions() {
    let none: Vec<String> = Vec::new();
    let listed = vec!["https://app.example".to_owned()];
    let any = vec!["*".to_owned()];
    let host = hv("proxy.example:8080");
    // No Origin: not a browser.
    assert_eq!(cors(&none, None, Some(&host)), Some(Cors::NoOrigin));
    // Same origin passes even with an empty allowlist, and is reflected.
    let own = hv("http://proxy.example:8080");
    assert_eq!(
        cors(&none, Some(&own), Some(&host)),
        Some(Cors::Reflect(own.clone()))
    );
    // Cross origin: only if listed, or `*` (then without reflection).
    let app = hv("https://app.example");
    assert_eq!(cors(&none, Some(&app), Some(&host)), None);
    assert_eq!(cors(&none, Some(&app), None), None);
    assert_eq!(
        cors(&listed, Some(&app), Some(&host)),
        Some(Cors::Reflect(app.clone()))
    );
    assert_eq!(
        cors(&listed, Some(&hv("https://evil.example")), Some(&host)),
        None
    );
    assert_eq!(cors(&any, Some(&app), Some(&host)), Some(Cors::Any));
    // `*` still reflects the listener's own origin (credentials are safe there).
    assert_eq!(
        cors(&any, Some(&own), Some(&host)),
        Some(Cors::Reflect(own.clone()))
    );

    let mut r = respond(StatusCode::OK, Bytes::new());
    Cors::Any.apply(&mut r);
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        !r.headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
    );
    let mut r = respond(StatusCode::OK, Bytes::new());
    Cors::Reflect(app.clone()).apply(&mut r);
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    assert_eq!(r.headers()[header::VARY], "Origin");
    let mut r = respond(StatusCode::OK, Bytes::new());
    Cors::NoOrigin.apply(&mut r);
    assert!(r.headers().is_empty());
}

const PINGS: Pings = Pings {
    interval: Duration::from_secs(25),
    timeout: Duration::from_secs(20),
};

fn shared() -> Arc<Shared> {
    let (s, _) = Shared::new(4, LegCounters::new("test", "socketio", "downstream"), PINGS);
    Arc::new(s)
}

#[test]
fn a_failed_upgrade_returns_to_polling() {
    let s = shared();
    let g = UpgradeGuard::begin(s.clone()).unwrap();
    assert_eq!(s.transport(), UPGRADING);
    // One upgrade at a time.
    assert!(UpgradeGuard::begin(s.clone()).is_none());
    // The probe failed (or the guard's future was dropped).
    drop(g);
    assert_eq!(s.transport(), POLLING);
    // The 101 was answered but hyper never handed the connection over: the closure
    // holding the guard is dropped without being called.
    let g = UpgradeGuard::begin(s.clone()).unwrap();
    let start: Box<dyn FnOnce() + Send> = Box::new(move || drop(g));
    drop(start);
    assert_eq!(s.transport(), POLLING);
    // A completed upgrade stays, and refuses further ones.
    let g = UpgradeGuard::begin(s.clone()).unwrap();
    let same = g.complete();
    assert!(Arc::ptr_eq(&same, &s));
    assert_eq!(s.transport(), WEBSOCKET);
    assert!(UpgradeGuard::begin(s.clone()).is_none());
    assert_eq!(s.transport(), WEBSOCKET);
}

#[test]
fn oversize_websocket_message_is_left_to_the_session() {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    let counters = LegCounters::new("test", "socketio", "downstream");
    let too_long = WsError::Capacity(CapacityError::MessageTooLong {
        size: 11,
        max_size: 10,
    });
    // The session answers it in the role's dialect, with close 1009.
    let r = from_ws(Some(Err(too_long)), &counters);
    assert!(matches!(
        r,
        Some(Err(LinkError::TooBig { size: 11, max: 10 }))
    ));
    let r = from_ws(Some(Err(WsError::ConnectionClosed)), &counters);
    assert!(matches!(r, Some(Err(LinkError::Transport(_)))));
    // Data passes, control frames are skipped, the end is a close.
    let r = from_ws(Some(Ok(Message::text("40"))), &counters);
    assert!(matches!(r, Some(Ok(WsMsg::Text(t))) if t == "40"));
    assert!(from_ws(Some(Ok(Message::Ping(Bytes::new()))), &counters).is_none());
    assert!(matches!(
        from_ws(None, &counters),
        Some(Err(LinkError::Closed(None)))
    ));
}

#[test]
fn a_gone_sid_refuses_only_what_arrived_after() {
    use std::time::{Duration, Instant};
    let (shared, _ends) = Shared::new(4, LegCounters::new("test", "socketio", "downstream"), PINGS);
    let before = Instant::now();
    assert!(!shared.gone_before(before));
    std::thread::sleep(Duration::from_millis(2));
    shared.set_gone();
    assert!(shared.gone.is_cancelled());
    // In flight when the sid went: answered as the pending request.
    assert!(!shared.gone_before(before));
    assert!(shared.gone_before(Instant::now()));
    // The first time counts.
    let at = *shared.gone_at.get().unwrap();
    shared.set_gone();
    assert_eq!(*shared.gone_at.get().unwrap(), at);
}

#[test]
fn the_ping_deadline_runs_from_the_last_post() {
    use std::time::Duration;
    let (shared, _ends) = Shared::new(4, LegCounters::new("test", "socketio", "downstream"), PINGS);
    let limit = Duration::from_millis(500);
    let born = shared.born;
    assert!(!shared.silent_for(limit, born + Duration::from_millis(499)));
    assert!(shared.silent_for(limit, born + Duration::from_millis(500)));
    std::thread::sleep(Duration::from_millis(20));
    shared.heard();
    assert!(!shared.silent_for(limit, born + Duration::from_millis(510)));
    assert!(shared.silent_for(limit, born + Duration::from_millis(1000)));
}
