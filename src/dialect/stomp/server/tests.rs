//! Unit tests of the STOMP server role.

use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::dialect::ServerRole;
use crate::frame::{BackendEvent, ErrorInfo, ErrorKind, Payload, PayloadKind};

fn role() -> StompServer {
    StompServer::new(Settings::default(), None, "s1".into(), Instant::now())
}

fn feed(r: &mut StompServer, s: &str) -> ServerOut {
    let mut out = ServerOut::default();
    r.on_client(
        WsMsg::Text(Bytes::from(s.to_owned())),
        Instant::now(),
        &mut out,
    );
    out
}

fn text(m: &WsMsg) -> String {
    String::from_utf8(m.bytes().to_vec()).unwrap()
}

fn connected(r: &mut StompServer) {
    let out = feed(
        r,
        "CONNECT\naccept-version:1.1,1.2\nheart-beat:5000,20000\nAuthorization:Bearer tok\n\n\0",
    );
    assert_eq!(out.ops.len(), 1);
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Ready { session: None },
        Instant::now(),
        &mut o,
    );
    assert_eq!(
        text(&o.to_client[0]),
        format!(
            "CONNECTED\nversion:1.2\nheart-beat:10000,10000\nsession:s1\nserver:{}\n\n\0",
            Settings::default().server_name
        )
    );
}

#[test]
fn connect_negotiates_version_heartbeat_and_token() {
    let mut r = role();
    let out = feed(
        &mut r,
        "CONNECT\naccept-version:1.0,1.1\nheart-beat:5000,20000\npasscode:pw\n\n\0",
    );
    assert_eq!(r.version(), Version::V1_1);
    match &out.ops[0] {
        ClientOp::Connect { credentials } => {
            assert_eq!(credentials.token.as_deref(), Some(&b"pw"[..]))
        }
        o => panic!("{o:?}"),
    }
    // server sends every max(10000, 20000); expects every max(5000, 10000) (×2 leniency)
    let k = r.keepalive;
    assert_eq!(k.send_every, Some(Duration::from_millis(20_000)));
    assert_eq!(k.expect_within, Some(Duration::from_millis(20_000)));
    connected(&mut role());
}

#[test]
fn no_common_version_is_an_error() {
    let mut r = role();
    let out = feed(&mut r, "CONNECT\naccept-version:2.1\n\n\0");
    assert!(text(&out.to_client[0]).starts_with("ERROR\nversion:1.0,1.1,1.2\n"));
    assert!(out.close.is_some());
}

#[test]
fn frame_before_connect_is_fatal() {
    let mut r = role();
    let out = feed(&mut r, "SEND\ndestination:/app/x\n\nhi\0");
    assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:expected CONNECT\n"));
    assert!(out.close.is_some() && out.ops.is_empty());
}

#[test]
fn subscribe_receipt_waits_for_subscribed_and_message_is_encoded() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "SUBSCRIBE\nid:sub-0\ndestination:/topic/message_created\nack:client-individual\nreceipt:r1\n\n\0",
    );
    assert_eq!(
        out.ops,
        vec![ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/topic/message_created"),
            params: Default::default(),
        }]
    );
    assert!(out.to_client.is_empty());
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Subscribed { sub: 1, data: None },
        Instant::now(),
        &mut o,
    );
    assert_eq!(text(&o.to_client[0]), "RECEIPT\nreceipt-id:r1\n\n\0");
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Message {
            meta: Vec::new(),
            sub: Some(1),
            channel: Bytes::from("/topic/message_created"),
            event: None,
            args: vec![],
            payload: Payload::json(Bytes::from("{\"id\":17}")),
            ack: None,
        },
        Instant::now(),
        &mut o,
    );
    assert_eq!(
        text(&o.to_client[0]),
        "MESSAGE\nsubscription:sub-0\nmessage-id:s1-1\ndestination:/topic/message_created\nack:s1-1\ncontent-type:application/json\ncontent-length:9\n\n{\"id\":17}\0"
    );
    // ACK of a message from an upstream without acks is a no-op that still answers receipts.
    let out = feed(&mut r, "ACK\nid:s1-1\nreceipt:r2\n\n\0");
    assert!(out.ops.is_empty());
    assert_eq!(text(&out.to_client[0]), "RECEIPT\nreceipt-id:r2\n\n\0");
}

#[test]
fn send_with_receipt_becomes_publish_with_reply() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "SEND\ndestination:/app/message_created\ncontent-type:application/json\nreceipt:77\n\n{\"a\":1}\0",
    );
    let ClientOp::Publish {
        reply: Some(id),
        payload,
        ..
    } = &out.ops[0]
    else {
        panic!()
    };
    assert_eq!(payload.kind, PayloadKind::Json);
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Reply {
            id: id.id,
            result: Ok(None),
        },
        Instant::now(),
        &mut o,
    );
    assert_eq!(text(&o.to_client[0]), "RECEIPT\nreceipt-id:77\n\n\0");
}

#[test]
fn user_headers_travel_as_meta_both_ways() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "SEND\ndestination:/app/a\nreply-to:/temp-queue/x\nx-trace:t1\nreceipt:9\n\n{}\0",
    );
    let ClientOp::Publish { meta, .. } = &out.ops[0] else {
        panic!()
    };
    assert_eq!(
        meta,
        &vec![
            (Bytes::from("reply-to"), Bytes::from("/temp-queue/x")),
            (Bytes::from("x-trace"), Bytes::from("t1"))
        ]
    );
    feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Message {
            // The proxy's own key (a presence sender) is not a header.
            meta: vec![
                (Bytes::from_static(crate::frame::SENDER), Bytes::from("ann")),
                (Bytes::from("x-trace"), Bytes::from("t1")),
            ],
            sub: Some(1),
            channel: Bytes::from("/topic/a"),
            event: None,
            args: vec![],
            payload: Payload::json(Bytes::from("1")),
            ack: None,
        },
        Instant::now(),
        &mut o,
    );
    assert!(
        text(&o.to_client[0]).ends_with("content-length:1\nx-trace:t1\n\n1\0"),
        "{}",
        text(&o.to_client[0])
    );
}

#[test]
fn invalid_json_body_is_refused() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "SEND\ndestination:/app/x\ncontent-type:application/json\n\n{nope\0",
    );
    assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:invalid JSON body\n"));
    assert!(out.ops.is_empty());
}

#[test]
fn transactions_buffer_until_commit() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "BEGIN\ntransaction:t1\n\n\0SEND\ndestination:/app/a\ntransaction:t1\n\nx\0",
    );
    assert!(out.ops.is_empty());
    let out = feed(&mut r, "COMMIT\ntransaction:t1\n\n\0");
    assert_eq!(out.ops.len(), 1);
    let out = feed(
        &mut r,
        "BEGIN\ntransaction:t2\n\n\0SEND\ndestination:/app/a\ntransaction:t2\n\nx\0ABORT\ntransaction:t2\n\n\0",
    );
    assert!(out.ops.is_empty());
}

#[test]
fn disconnect_with_receipt_then_close() {
    let mut r = role();
    connected(&mut r);
    let out = feed(&mut r, "DISCONNECT\nreceipt:9\n\n\0");
    assert_eq!(text(&out.to_client[0]), "RECEIPT\nreceipt-id:9\n\n\0");
    assert_eq!(out.close, Some(Close::normal()));
    assert_eq!(out.ops, vec![ClientOp::Disconnect]);
}

#[test]
fn backend_auth_error_becomes_error_frame() {
    let mut r = role();
    feed(&mut r, "CONNECT\naccept-version:1.2\n\n\0");
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Error(ErrorInfo::new(ErrorKind::Unauthorized, "invalid token")),
        Instant::now(),
        &mut o,
    );
    assert_eq!(
        text(&o.to_client[0]),
        "ERROR\nmessage:invalid token\ncontent-type:text/plain\ncontent-length:13\n\ninvalid token\0"
    );
    assert_eq!(o.close.unwrap().code, 1008);
}

#[test]
fn header_escaping_follows_version() {
    let mut r = role();
    feed(&mut r, "CONNECT\naccept-version:1.0\n\n\0");
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Ready { session: None },
        Instant::now(),
        &mut o,
    );
    feed(&mut r, "SUBSCRIBE\ndestination:/topic/a\n\n\0");
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Message {
            meta: Vec::new(),
            sub: Some(1),
            channel: Bytes::from("/topic/a:b"),
            event: None,
            args: vec![],
            payload: Payload::text(Bytes::from("hi")),
            ack: None,
        },
        Instant::now(),
        &mut o,
    );
    // 1.0: no escaping of ':' in values.
    assert!(text(&o.to_client[0]).contains("destination:/topic/a:b\n"));
}

#[test]
fn binary_payload_goes_out_as_binary_message() {
    let mut r = role();
    connected(&mut r);
    feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/f\n\n\0");
    let mut o = ServerOut::default();
    r.on_backend(
        BackendEvent::Message {
            meta: Vec::new(),
            sub: Some(1),
            channel: Bytes::from("/topic/f"),
            event: None,
            args: vec![],
            payload: Payload::binary(Bytes::from_static(&[0xff, 0, 1])),
            ack: None,
        },
        Instant::now(),
        &mut o,
    );
    let WsMsg::Binary(b) = &o.to_client[0] else {
        panic!()
    };
    assert!(
        b.ends_with(b"content-type:application/octet-stream\ncontent-length:3\n\n\xff\x00\x01\x00")
    );
}

fn msg_with_ack(sub: SubId, token: &str) -> BackendEvent {
    BackendEvent::Message {
        meta: Vec::new(),
        sub: Some(sub),
        channel: Bytes::from("/topic/a"),
        event: None,
        args: vec![],
        payload: Payload::json(Bytes::from("1")),
        ack: Some(Bytes::from(token.to_owned())),
    }
}

fn backend(r: &mut StompServer, ev: BackendEvent) -> ServerOut {
    let mut o = ServerOut::default();
    r.on_backend(ev, Instant::now(), &mut o);
    o
}

fn acks(out: &ServerOut) -> Vec<(String, bool)> {
    out.ops
        .iter()
        .filter_map(|op| match op {
            ClientOp::Ack {
                token, positive, ..
            } => Some((String::from_utf8(token.to_vec()).unwrap(), *positive)),
            _ => None,
        })
        .collect()
}

#[test]
fn auto_subscriber_messages_are_acked_upstream_after_delivery() {
    let mut r = role();
    connected(&mut r);
    feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
    let o = backend(&mut r, msg_with_ack(1, "up-1"));
    assert!(text(&o.to_client[0]).starts_with("MESSAGE\n"));
    assert!(!text(&o.to_client[0]).contains("\nack:"));
    assert_eq!(acks(&o), vec![("up-1".into(), true)]);
}

#[test]
fn client_mode_ack_is_cumulative_and_client_individual_is_not() {
    let mut r = role();
    connected(&mut r);
    feed(
        &mut r,
        "SUBSCRIBE\nid:c\ndestination:/topic/a\nack:client\n\n\0",
    );
    feed(
        &mut r,
        "SUBSCRIBE\nid:i\ndestination:/topic/b\nack:client-individual\n\n\0",
    );
    for (sub, token) in [(1, "c1"), (2, "i1"), (1, "c2"), (2, "i2"), (1, "c3")] {
        let o = backend(&mut r, msg_with_ack(sub, token));
        assert!(acks(&o).is_empty(), "no ack before the client's");
    }
    // Our ack ids are s1-1 … s1-5 in delivery order.
    let out = feed(&mut r, "ACK\nid:s1-3\n\n\0");
    assert_eq!(acks(&out), vec![("c1".into(), true), ("c2".into(), true)]);
    let out = feed(&mut r, "NACK\nid:s1-4\n\n\0");
    assert_eq!(acks(&out), vec![("i2".into(), false)]);
    // Already covered: a no-op.
    assert!(acks(&feed(&mut r, "ACK\nid:s1-1\n\n\0")).is_empty());
    let out = feed(&mut r, "ACK\nid:s1-5\n\n\0");
    assert_eq!(acks(&out), vec![("c3".into(), true)]);
    let out = feed(&mut r, "ACK\nid:s1-2\nreceipt:k\n\n\0");
    assert_eq!(acks(&out), vec![("i1".into(), true)]);
    assert_eq!(text(&out.to_client[0]), "RECEIPT\nreceipt-id:k\n\n\0");
}

#[test]
fn unsubscribe_forgets_unacked_messages() {
    let mut r = role();
    connected(&mut r);
    feed(
        &mut r,
        "SUBSCRIBE\nid:c\ndestination:/topic/a\nack:client\n\n\0",
    );
    backend(&mut r, msg_with_ack(1, "c1"));
    feed(&mut r, "UNSUBSCRIBE\nid:c\n\n\0");
    assert!(r.ack_tokens.is_empty());
    assert!(acks(&feed(&mut r, "ACK\nid:s1-1\n\n\0")).is_empty());
}

/// Ending a subscription drops its own unacked tokens and no other's, in both ack modes,
/// and one without tokens leaves the table alone (its count is what spares the scan).
#[test]
fn an_ended_subscription_forgets_only_its_own_tokens() {
    let mut r = role();
    connected(&mut r);
    feed(
        &mut r,
        "SUBSCRIBE\nid:c\ndestination:/topic/a\nack:client\n\n\0SUBSCRIBE\nid:i\ndestination:/topic/b\nack:client-individual\n\n\0",
    );
    for (sub, token) in [(1, "c1"), (2, "i1"), (1, "c2"), (2, "i2")] {
        backend(&mut r, msg_with_ack(sub, token));
    }
    // Acked individually: the count follows.
    feed(&mut r, "ACK\nid:s1-2\n\n\0");
    assert_eq!(r.subs[&2].tokens, 1);
    assert_eq!(r.subs[&1].tokens, 2);
    for _ in 0..3 {
        feed(
            &mut r,
            "SUBSCRIBE\nid:x\ndestination:/topic/x\nack:client\n\n\0UNSUBSCRIBE\nid:x\n\n\0",
        );
        assert_eq!(r.ack_tokens.len(), 3);
    }
    feed(&mut r, "UNSUBSCRIBE\nid:c\n\n\0");
    let left: Vec<_> = r.ack_tokens.values().map(|(_, t)| t.clone()).collect();
    assert_eq!(left, [Bytes::from("i2")]);
    feed(&mut r, "UNSUBSCRIBE\nid:i\n\n\0");
    assert!(r.ack_tokens.is_empty());
}

#[test]
fn unsubscribe_needs_an_id_after_1_0() {
    let mut r = role();
    connected(&mut r);
    feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
    let out = feed(&mut r, "UNSUBSCRIBE\ndestination:/topic/a\n\n\0");
    assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:missing id\n"));
}

#[test]
fn a_receipt_waits_for_earlier_frames() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "SEND\ndestination:/app/a\nreceipt:s\n\n{}\0SUBSCRIBE\nid:0\ndestination:/topic/a\nreceipt:b\n\n\0UNSUBSCRIBE\nid:9\nreceipt:u\n\n\0",
    );
    assert!(
        out.to_client.is_empty(),
        "every receipt waits for the SEND's"
    );
    let ClientOp::Publish {
        reply: Some(id), ..
    } = &out.ops[0]
    else {
        panic!("{:?}", out.ops)
    };
    let o = backend(&mut r, BackendEvent::Subscribed { sub: 1, data: None });
    assert!(o.to_client.is_empty());
    let o = backend(
        &mut r,
        BackendEvent::Reply {
            id: id.id,
            result: Ok(None),
        },
    );
    let got: Vec<String> = o.to_client.iter().map(text).collect();
    assert_eq!(
        got,
        [
            "RECEIPT\nreceipt-id:s\n\n\0",
            "RECEIPT\nreceipt-id:b\n\n\0",
            "RECEIPT\nreceipt-id:u\n\n\0"
        ]
    );
}

#[test]
fn disconnect_receipt_waits_for_pending_receipts_then_closes() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "SEND\ndestination:/app/a\nreceipt:s\n\nx\0DISCONNECT\nreceipt:d\n\n\0",
    );
    assert_eq!(out.ops.len(), 1, "no Disconnect yet: {:?}", out.ops);
    assert!(out.close.is_none() && out.to_client.is_empty());
    let o = backend(
        &mut r,
        BackendEvent::Reply {
            id: 1,
            result: Ok(None),
        },
    );
    let got: Vec<String> = o.to_client.iter().map(text).collect();
    assert_eq!(
        got,
        ["RECEIPT\nreceipt-id:s\n\n\0", "RECEIPT\nreceipt-id:d\n\n\0"]
    );
    assert_eq!(o.ops, vec![ClientOp::Disconnect]);
    assert_eq!(o.close, Some(Close::normal()));
}

#[test]
fn abort_answers_receipts_and_keeps_acks_open() {
    let mut r = role();
    connected(&mut r);
    feed(
        &mut r,
        "SUBSCRIBE\nid:i\ndestination:/topic/a\nack:client-individual\n\n\0",
    );
    backend(&mut r, msg_with_ack(1, "i1"));
    let out = feed(
        &mut r,
        "BEGIN\ntransaction:t\n\n\0SEND\ndestination:/app/a\ntransaction:t\nreceipt:s\n\nx\0ACK\nid:s1-1\ntransaction:t\n\n\0ABORT\ntransaction:t\nreceipt:a\n\n\0",
    );
    assert!(out.ops.is_empty());
    let got: Vec<String> = out.to_client.iter().map(text).collect();
    assert_eq!(
        got,
        ["RECEIPT\nreceipt-id:s\n\n\0", "RECEIPT\nreceipt-id:a\n\n\0"]
    );
    // The aborted ACK did not consume the message: it can still be acknowledged.
    assert_eq!(
        acks(&feed(&mut r, "ACK\nid:s1-1\n\n\0")),
        vec![("i1".into(), true)]
    );
}

#[test]
fn commit_receipt_waits_for_the_committed_sends() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "BEGIN\ntransaction:t\n\n\0SEND\ndestination:/app/a\ntransaction:t\n\nx\0SEND\ndestination:/app/b\ntransaction:t\n\ny\0COMMIT\ntransaction:t\nreceipt:c\n\n\0",
    );
    assert_eq!(out.ops.len(), 2);
    assert!(out.to_client.is_empty());
    let ClientOp::Publish {
        reply: Some(id), ..
    } = &out.ops[1]
    else {
        panic!("{:?}", out.ops)
    };
    let o = backend(
        &mut r,
        BackendEvent::Reply {
            id: id.id,
            result: Ok(None),
        },
    );
    assert_eq!(text(&o.to_client[0]), "RECEIPT\nreceipt-id:c\n\n\0");
}

#[test]
fn transactions_are_capped_in_bytes() {
    let settings = Settings {
        max_transaction_bytes: 8,
        ..Settings::default()
    };
    let mut r = StompServer::new(settings, None, "s1".into(), Instant::now());
    connected(&mut r);
    let out = feed(
        &mut r,
        "BEGIN\ntransaction:t\n\n\0SEND\ndestination:/a\ntransaction:t\n\n12345\0SEND\ndestination:/a\ntransaction:t\n\n12345\0",
    );
    assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:transaction too large\n"));
    assert!(out.close.is_some());
}

#[test]
fn connect_deadline_is_not_pushed_back_by_heartbeats() {
    let t0 = Instant::now();
    let mut r = StompServer::new(Settings::default(), None, "s1".into(), t0);
    let mut out = ServerOut::default();
    r.on_client(WsMsg::Text(Bytes::from("\n")), t0, &mut out);
    r.expire(t0 + Duration::from_secs(5), &mut out);
    r.on_client(
        WsMsg::Text(Bytes::from("\n")),
        t0 + Duration::from_secs(9),
        &mut out,
    );
    assert!(out.close.is_none());
    r.expire(t0 + Duration::from_secs(10), &mut out);
    assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:no CONNECT received in time\n"));
    assert!(out.close.is_some());
}

#[test]
fn a_senders_own_content_type_is_kept_as_meta() {
    let mut r = role();
    connected(&mut r);
    let out = feed(
        &mut r,
        "SEND\ndestination:/app/a\ncontent-type:application/xml\n\n<a/>\0",
    );
    let ClientOp::Publish { meta, .. } = &out.ops[0] else {
        panic!()
    };
    assert_eq!(
        meta,
        &vec![(Bytes::from("content-type"), Bytes::from("application/xml"))]
    );
    feed(&mut r, "SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
    let o = backend(
        &mut r,
        BackendEvent::Message {
            meta: meta.clone(),
            sub: Some(1),
            channel: Bytes::from("/topic/a"),
            event: None,
            args: vec![],
            payload: Payload::text(Bytes::from("<a/>")),
            ack: None,
        },
    );
    let t = text(&o.to_client[0]);
    assert_eq!(t.matches("content-type:").count(), 1, "{t}");
    assert!(t.contains("content-type:application/xml\n"), "{t}");
}

#[test]
fn frames_behind_connect_are_decoded_under_the_negotiated_version() {
    let mut r = role();
    // 1.0 has no escapes: the backslash is literal, not a bad 1.2 escape.
    let out = feed(
        &mut r,
        "CONNECT\naccept-version:1.0\n\n\0SEND\ndestination:/app/a\\tb\n\nx\0",
    );
    assert!(out.close.is_none(), "{:?}", out.to_client);
    let channels: Vec<&Bytes> = out
        .ops
        .iter()
        .filter_map(|op| match op {
            ClientOp::Publish { channel, .. } => Some(channel),
            _ => None,
        })
        .collect();
    assert_eq!(channels, [&Bytes::from("/app/a\\tb")]);
}

#[test]
fn refusals_are_error_then_close_even_before_connect() {
    use crate::dialect::Refusal;
    use crate::frame::{ErrorInfo, ErrorKind};
    let why = |m: &str| ErrorInfo::new(ErrorKind::Limit, m.to_owned());
    let mut r = role();
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Busy, why("too many connections"), &mut out);
    assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:too many connections\n"));
    let close = out.close.unwrap();
    assert_eq!(
        (close.code, close.reason.as_str()),
        (1013, "too many connections")
    );
    assert!(out.ops.is_empty());
    let mut r = role();
    connected(&mut r);
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Rate, why("message rate limit exceeded"), &mut out);
    assert!(text(&out.to_client[0]).starts_with("ERROR\nmessage:message rate limit exceeded\n"));
    assert_eq!(out.close.unwrap().code, 1008);
    // Closed: nothing more is said.
    let mut out = ServerOut::default();
    r.on_refused(Refusal::Rate, why("again"), &mut out);
    assert!(out.to_client.is_empty() && out.close.is_none());
}

/// A SEND or ACK naming a transaction that is not open is an ERROR that answers the frame's
/// receipt (receipt-id), and nothing after it: no RECEIPT saying the frame was processed.
#[test]
fn a_frame_in_an_unknown_transaction_errs_with_its_receipt_id_and_nothing_else() {
    for frame in [
        "SEND\ndestination:/a\ntransaction:nope\nreceipt:r2\n\nx\0",
        "ACK\nid:x\ntransaction:nope\nreceipt:r2\n\n\0",
        "NACK\nid:x\ntransaction:nope\nreceipt:r2\n\n\0",
    ] {
        let mut r = role();
        connected(&mut r);
        let out = feed(&mut r, frame);
        let texts: Vec<String> = out.to_client.iter().map(text).collect();
        assert_eq!(texts.len(), 1, "{frame}: {texts:?}");
        assert!(
            texts[0].starts_with("ERROR\nmessage:unknown transaction\nreceipt-id:r2\n"),
            "{frame}: {texts:?}"
        );
        assert!(out.ops.is_empty(), "{frame}: {:?}", out.ops);
        assert_eq!(out.close.map(|c| c.code), Some(1002));
    }
}

/// A transaction's budget counts all a held frame keeps, headers included: SENDs with
/// 480 KB of headers and no body are refused once 4 MiB (the default) is held, not after
/// 1,023 of them per transaction.
#[test]
fn held_frames_count_their_headers() {
    let mut r = role();
    connected(&mut r);
    feed(&mut r, "BEGIN\ntransaction:t\n\n\0");
    let big = "x".repeat(8000);
    let headers: String = (0..60).map(|i| format!("h{i}:{big}\n")).collect();
    let frame = format!("SEND\ndestination:/a\ntransaction:t\n{headers}\n\0");
    let refused = (0..20).find(|_| !feed(&mut r, &frame).to_client.is_empty());
    // 4 MiB / (60 × 8,003 + the rest) = 8.7: the ninth is one too many.
    assert_eq!(refused, Some(8));
}

/// A held frame keeps its own bytes, not the message it came in: a SEND followed by a
/// megabyte of heart-beat newlines in one WebSocket message must not keep the megabyte for
/// as long as its transaction is open.
#[test]
fn held_frames_do_not_keep_their_message_alive() {
    let mut r = role();
    connected(&mut r);
    feed(&mut r, "BEGIN\ntransaction:t\n\n\0");
    let msg = Bytes::from(format!(
        "SEND\ndestination:/a\ntransaction:t\nh:v\n\nbody\0{}",
        "\n".repeat(1 << 20)
    ));
    let range = msg.as_ptr() as usize..msg.as_ptr() as usize + msg.len();
    let mut out = ServerOut::default();
    r.on_client(WsMsg::Text(msg), Instant::now(), &mut out);
    assert!(out.to_client.is_empty());
    let out = feed(&mut r, "COMMIT\ntransaction:t\n\n\0");
    let [
        ClientOp::Publish {
            channel,
            payload,
            meta,
            ..
        },
    ] = out.ops.as_slice()
    else {
        panic!("{:?}", out.ops)
    };
    assert_eq!(&payload.data[..], b"body");
    for b in [channel, &payload.data, &meta[0].0, &meta[0].1] {
        assert!(
            !range.contains(&(b.as_ptr() as usize)),
            "{b:?} is a slice of the message"
        );
    }
}
