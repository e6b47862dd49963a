//! Payload copies as the roles report them (`ServerRole::take_copied`,
//! `ClientRole::take_copied`): each write of payload bytes into a new buffer is one copy of
//! that many bytes, however many frames the message went through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::Bytes;
use switchboard::dialect::socketio::client::{self as sio, SocketioClient};
use switchboard::dialect::stomp::server::{self as stomp, StompServer};
use switchboard::dialect::{ClientOut, ClientRole, Copied, ServerOut, ServerRole, WsMsg};
use switchboard::frame::{BackendEvent, Credentials};
use switchboard::translate::{Mapping, Translator};

const BODY: &str = r#"{"id":17,"text":"Hello","author":{"id":5,"name":"Ann"}}"#;

fn route() -> (StompServer, Translator, SocketioClient) {
    let now = Instant::now();
    let mut server = StompServer::new(stomp::Settings::default(), None, "s".into(), now);
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(b"CONNECT\naccept-version:1.2\n\n\0")),
        now,
        &mut out,
    );
    server.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
    let mut t = Translator::new(
        Mapping::new(
            &[],
            &switchboard::dialect::stomp::SPEC,
            &switchboard::dialect::socketio::SPEC,
        )
        .unwrap(),
    );
    let mut out = ServerOut::default();
    server.on_client(
        WsMsg::Text(Bytes::from_static(
            b"SUBSCRIBE\nid:0\ndestination:/topic/message_created\n\n\0",
        )),
        now,
        &mut out,
    );
    for op in out.ops {
        t.down_op(op).unwrap();
    }
    let mut client = SocketioClient::new(sio::Settings::default(), Credentials::default());
    let mut cout = ClientOut::default();
    for open in [
        &br#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#[..],
        br#"40{"sid":"y"}"#,
    ] {
        client.on_backend(WsMsg::Text(Bytes::from_static(open)), now, &mut cout);
    }
    let _ = (server.take_copied(), client.take_copied());
    (server, t, client)
}

fn send(
    server: &mut StompServer,
    t: &mut Translator,
    client: &mut SocketioClient,
    frame: String,
) -> Vec<WsMsg> {
    let now = Instant::now();
    let mut out = ServerOut::default();
    server.on_client(WsMsg::Text(Bytes::from(frame)), now, &mut out);
    let mut cout = ClientOut::default();
    for op in out.ops {
        client.on_op(t.down_op(op).unwrap(), now, &mut cout);
    }
    cout.to_backend.into_vec()
}

#[test]
fn stomp_send_to_socketio_emit_is_one_copy() {
    let (mut server, mut t, mut client) = route();
    let frame = format!(
        "SEND\ndestination:/app/message_created\ncontent-type:application/json\n\n{BODY}\0"
    );
    let sent = send(&mut server, &mut t, &mut client, frame);
    assert_eq!(
        sent,
        [WsMsg::Text(Bytes::from(format!(
            r#"42["message_created",{BODY}]"#
        )))]
    );
    let mut c = server.take_copied();
    c.add(client.take_copied());
    assert_eq!(
        c,
        Copied {
            copies: 1,
            bytes: BODY.len() as u64
        }
    );

    // A text body is JSON-escaped as it is written: still the one copy.
    let frame = "SEND\ndestination:/app/note\ncontent-type:text/plain\n\nsay \"hi\"\0".to_owned();
    let sent = send(&mut server, &mut t, &mut client, frame);
    assert_eq!(
        sent,
        [WsMsg::Text(Bytes::from_static(
            br#"42["note","say \"hi\""]"#
        ))]
    );
    let mut c = server.take_copied();
    c.add(client.take_copied());
    assert_eq!(
        c,
        Copied {
            copies: 1,
            bytes: 8
        }
    );
}

#[test]
fn socketio_event_to_stomp_message_is_one_copy() {
    let (mut server, mut t, mut client) = route();
    let now = Instant::now();
    let mut cout = ClientOut::default();
    client.on_backend(
        WsMsg::Text(Bytes::from(format!(r#"42["message_created",{BODY}]"#))),
        now,
        &mut cout,
    );
    let mut evs = Vec::new();
    for ev in cout.events {
        t.up_event(ev, &mut evs);
    }
    let mut out = ServerOut::default();
    for ev in evs {
        server.on_backend(ev, now, &mut out);
    }
    let [WsMsg::Text(m)] = out.to_client.as_slice() else {
        panic!("{:?}", out.to_client)
    };
    assert!(m.starts_with(b"MESSAGE\n") && m.ends_with(format!("\n\n{BODY}\0").as_bytes()));
    let mut c = server.take_copied();
    c.add(client.take_copied());
    assert_eq!(
        c,
        Copied {
            copies: 1,
            bytes: BODY.len() as u64
        }
    );
}
