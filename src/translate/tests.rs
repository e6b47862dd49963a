//! Unit tests of translation: default naming between dialects, rules with arguments,
//! parameters and events named by the body's key, fan-out to subscriptions, unclaimed events,
//! presence, and refused subscriptions.

use bytes::Bytes;

use super::{Mapping, Translator};
use crate::config::MapRule;
use crate::dialect::{socketio, stomp};
use crate::frame::{BackendEvent, ClientOp, ErrorInfo, ErrorKind, Payload};

fn mapping(rules: &[(&str, &str, &[&str])]) -> Mapping {
    let rules: Vec<MapRule> = rules
        .iter()
        .map(|(c, u, a)| MapRule {
            client: (*c).into(),
            upstream: (*u).into(),
            upstream_args: a.iter().map(|s| (*s).to_owned()).collect(),
            event_from_key: false,
            client_params: Default::default(),
            upstream_params: Default::default(),
        })
        .collect();
    Mapping::new(&rules, &stomp::SPEC, &socketio::SPEC).unwrap()
}

#[test]
fn default_stomp_to_socketio() {
    let mut t = Translator::new(mapping(&[]));
    let op = t
        .down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/topic/message_created"),
            params: Default::default(),
        })
        .unwrap();
    assert_eq!(
        op,
        ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("message_created"),
            params: Default::default(),
        }
    );
    let op = t
        .down_op(ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from("/app/message_deleted"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            reply: None,
            broadcast: false,
            sub: None,
        })
        .unwrap();
    assert!(matches!(op, ClientOp::Publish { channel, .. } if channel == "message_deleted"));
    let err = t
        .down_op(ClientOp::Subscribe {
            sub: 2,
            channel: Bytes::from("/queue/x"),
            params: Default::default(),
        })
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Untranslatable);
}

#[test]
fn fan_out_to_matching_subscriptions_only() {
    let mut t = Translator::new(mapping(&[(
        "/v1/topic/conversation/{id}",
        "conversation:{id}",
        &[],
    )]));
    t.down_op(ClientOp::Subscribe {
        sub: 1,
        channel: Bytes::from("/v1/topic/conversation/a"),
        params: Default::default(),
    })
    .unwrap();
    t.down_op(ClientOp::Subscribe {
        sub: 2,
        channel: Bytes::from("/v1/topic/conversation/b"),
        params: Default::default(),
    })
    .unwrap();
    let mut out = Vec::new();
    t.up_event(
        BackendEvent::Message {
            meta: Vec::new(),
            sub: None,
            channel: Bytes::from("conversation:b"),
            event: None,
            args: vec![],
            payload: Payload::json(Bytes::from("{}")),
            ack: None,
        },
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert!(
        matches!(&out[0], BackendEvent::Message { sub: Some(2), channel, .. } if channel == "/v1/topic/conversation/b")
    );
}

#[test]
fn fixed_event_with_id_argument() {
    let mut t = Translator::new(mapping(&[
        (
            "/v1/topic/conversation/{id}",
            "conversation_event",
            &["{id}"],
        ),
        (
            "/v1/app/conversation/{id}/typing/start",
            "typing_start",
            &["{id}"],
        ),
    ]));
    t.down_op(ClientOp::Subscribe {
        sub: 1,
        channel: Bytes::from("/v1/topic/conversation/42"),
        params: Default::default(),
    })
    .unwrap();
    let op = t
        .down_op(ClientOp::Publish {
            meta: Vec::new(),
            channel: Bytes::from("/v1/app/conversation/42/typing/start"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            reply: None,
            broadcast: false,
            sub: None,
        })
        .unwrap();
    assert!(
        matches!(&op, ClientOp::Publish { channel, args, .. } if channel == "typing_start" && args == &vec![Bytes::from("\"42\"")])
    );
    let mut out = Vec::new();
    for id in ["\"41\"", "\"42\""] {
        t.up_event(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: None,
                channel: Bytes::from("conversation_event"),
                event: None,
                args: vec![Bytes::from(id)],
                payload: Payload::json(Bytes::from("{\"read\":{}}")),
                ack: None,
            },
            &mut out,
        );
    }
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], BackendEvent::Message { args, .. } if args.is_empty()));
}

#[test]
fn event_named_by_body_key() {
    let rules = vec![MapRule {
        client: "conversation:{id}".into(),
        upstream: "/v1/topic/conversation/{id}".into(),
        upstream_args: vec![],
        event_from_key: true,
        client_params: Default::default(),
        upstream_params: Default::default(),
    }];
    let mut t = Translator::new(Mapping::new(&rules, &socketio::SPEC, &stomp::SPEC).unwrap());
    let op = t
        .down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("conversation:7"),
            params: Default::default(),
        })
        .unwrap();
    assert_eq!(
        op,
        ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/v1/topic/conversation/7"),
            params: Default::default(),
        }
    );
    let body = Bytes::from(r#"{"read":{"userId":"u"}}"#);
    let mut out = Vec::new();
    t.up_event(
        BackendEvent::Message {
            meta: Vec::new(),
            sub: Some(1),
            channel: Bytes::from("/v1/topic/conversation/7"),
            event: None,
            args: vec![],
            payload: Payload::json(body.clone()),
            ack: None,
        },
        &mut out,
    );
    let BackendEvent::Message {
        event,
        payload,
        channel,
        ..
    } = &out[0]
    else {
        panic!()
    };
    assert_eq!(event.as_deref(), Some(&b"read"[..]));
    assert_eq!(payload.data, r#"{"userId":"u"}"#);
    assert_eq!(channel, "conversation:7");
    assert!(body.as_ptr() <= payload.data.as_ptr());
}

#[test]
fn socketio_clients_get_unclaimed_socketio_events() {
    let mut t = Translator::new(Mapping::new(&[], &socketio::SPEC, &socketio::SPEC).unwrap());
    t.down_op(ClientOp::Subscribe {
        sub: 1,
        channel: Bytes::from("a"),
        params: Default::default(),
    })
    .unwrap();
    let mut out = Vec::new();
    for name in ["a", "b"] {
        t.up_event(
            BackendEvent::Message {
                meta: Vec::new(),
                sub: None,
                channel: Bytes::from(name),
                event: None,
                args: vec![],
                payload: Payload::null(),
                ack: None,
            },
            &mut out,
        );
    }
    assert!(
        matches!(&out[0], BackendEvent::Message { sub: Some(1), channel, .. } if channel == "a")
    );
    assert!(matches!(&out[1], BackendEvent::Message { sub: None, channel, .. } if channel == "b"));
}

#[test]
fn unsubscribed_events_are_dropped() {
    let mut t = Translator::new(mapping(&[]));
    t.down_op(ClientOp::Subscribe {
        sub: 1,
        channel: Bytes::from("/topic/a"),
        params: Default::default(),
    })
    .unwrap();
    t.down_op(ClientOp::Unsubscribe { sub: 1 }).unwrap();
    let mut out = Vec::new();
    t.up_event(
        BackendEvent::Message {
            meta: Vec::new(),
            sub: None,
            channel: Bytes::from("a"),
            event: None,
            args: vec![],
            payload: Payload::null(),
            ack: None,
        },
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn presence_reaches_dialects_without_it_as_documented_events() {
    let mut t =
        Translator::new(Mapping::new(&[], &stomp::SPEC, &crate::dialect::pusher::SPEC).unwrap());
    t.down_op(ClientOp::Subscribe {
        sub: 4,
        channel: Bytes::from("/topic/presence-ward"),
        params: Default::default(),
    })
    .unwrap();
    let mut out = Vec::new();
    t.up_event(
        BackendEvent::Presence {
            channel: Bytes::from("presence-ward"),
            member: Bytes::from(r#"{"user_id":"11"}"#),
            added: true,
        },
        &mut out,
    );
    let [
        BackendEvent::Message {
            sub: Some(4),
            channel,
            event,
            payload,
            ..
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(channel, "/topic/presence-ward");
    assert_eq!(event.as_deref(), Some(&b"presence:member_added"[..]));
    assert_eq!(payload.data, r#"{"user_id":"11"}"#);
    // A Pusher client gets Pusher's own presence events.
    let mut t = Translator::new(
        Mapping::new(
            &[],
            &crate::dialect::pusher::SPEC,
            &crate::dialect::pusher::SPEC,
        )
        .unwrap(),
    );
    let mut out = Vec::new();
    t.up_event(
        BackendEvent::Presence {
            channel: Bytes::from("presence-ward"),
            member: Bytes::from("{}"),
            added: false,
        },
        &mut out,
    );
    assert!(matches!(
        &out[..],
        [BackendEvent::Presence { added: false, .. }]
    ));
}

#[test]
fn rules_with_parameters_build_and_match_identifiers() {
    use std::collections::BTreeMap;
    let to_ac = MapRule {
        client: "/topic/chat-room/{id}".into(),
        upstream: "Chats::RoomChannel".into(),
        upstream_args: vec![],
        event_from_key: false,
        client_params: BTreeMap::new(),
        upstream_params: BTreeMap::from([("id".into(), "{id}".into())]),
    };
    let ac = &crate::dialect::actioncable::SPEC;
    let mut t = Translator::new(Mapping::new(&[to_ac], &stomp::SPEC, ac).unwrap());
    let op = t
        .down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/topic/chat-room/7"),
            params: Default::default(),
        })
        .unwrap();
    let ClientOp::Subscribe {
        channel, params, ..
    } = op
    else {
        panic!()
    };
    assert_eq!(channel, "Chats::RoomChannel");
    assert_eq!(params.data.unwrap().data, r#"{"id":"7"}"#);
    // A SEND to the subscribed destination is made on that subscription.
    let op = t
        .down_op(ClientOp::Publish {
            meta: vec![],
            channel: Bytes::from("/topic/chat-room/7"),
            event: Some(Bytes::from("sendMessage")),
            args: vec![],
            payload: Payload::null(),
            reply: None,
            broadcast: false,
            sub: None,
        })
        .unwrap();
    assert!(matches!(op, ClientOp::Publish { sub: Some(1), .. }));
    // An Action Cable client's identifier, matched with its parameters.
    let from_ac = MapRule {
        client: "Chats::RoomChannel".into(),
        upstream: "chat-room-{id}".into(),
        upstream_args: vec![],
        event_from_key: false,
        client_params: BTreeMap::from([("id".into(), "{id}".into())]),
        upstream_params: BTreeMap::new(),
    };
    let mut t = Translator::new(Mapping::new(&[from_ac], ac, &socketio::SPEC).unwrap());
    let op = t
        .down_op(ClientOp::Subscribe {
            sub: 2,
            channel: Bytes::from("Chats::RoomChannel"),
            params: crate::frame::SubParams {
                data: Some(Payload::json(Bytes::from(r#"{"id":7}"#))),
                ..Default::default()
            },
        })
        .unwrap();
    assert!(matches!(op, ClientOp::Subscribe { channel, .. } if channel == "chat-room-7"));
    // Its `perform` names the subscription and the channel class: it goes where the
    // subscription went, not to the class's plain name (another channel, every room's).
    let perform = |sub| ClientOp::Publish {
        meta: vec![],
        channel: Bytes::from("Chats::RoomChannel"),
        event: Some(Bytes::from("speak")),
        args: vec![],
        payload: Payload::null(),
        reply: None,
        broadcast: false,
        sub,
    };
    for _ in 0..2 {
        let op = t.down_op(perform(Some(2))).unwrap();
        assert!(
            matches!(&op, ClientOp::Publish { channel, sub: Some(2), .. } if channel == "chat-room-7"),
            "{op:?}"
        );
    }
    // Without a subscription named, the plain name as before.
    let op = t.down_op(perform(None)).unwrap();
    assert!(
        matches!(&op, ClientOp::Publish { channel, .. } if channel != "chat-room-7"),
        "{op:?}"
    );
}

#[test]
fn subscription_parameters_travel_with_the_subscription() {
    let mut t = Translator::new(Mapping::new(&[], &stomp::SPEC, &socketio::SPEC).unwrap());
    let params = crate::frame::SubParams {
        channel_data: Some(Bytes::from(r#"{"user_id":"1"}"#)),
        ..Default::default()
    };
    let op = t
        .down_op(ClientOp::Subscribe {
            sub: 1,
            channel: Bytes::from("/topic/presence-x"),
            params: params.clone(),
        })
        .unwrap();
    assert!(matches!(op, ClientOp::Subscribe { params: p, .. } if p == params));
}

/// A backend event on `news` that no subscription names (STOMP's `/topic/news`).
fn news_from_the_backend() -> BackendEvent {
    BackendEvent::Message {
        meta: Vec::new(),
        sub: None,
        channel: Bytes::from("/topic/news"),
        event: None,
        args: vec![],
        payload: Payload::null(),
        ack: None,
    }
}

#[test]
fn a_refused_subscription_leaves_the_table_and_claims_nothing() {
    let mut t = Translator::new(Mapping::new(&[], &socketio::SPEC, &stomp::SPEC).unwrap());
    t.down_op(ClientOp::Subscribe {
        sub: 7,
        channel: Bytes::from("news"),
        params: Default::default(),
    })
    .unwrap();
    assert!(t.has_sub(7));
    let mut out = Vec::new();
    t.up_event(
        BackendEvent::SubscribeFailed {
            sub: 7,
            reason: ErrorInfo::new(ErrorKind::Unauthorized, "no"),
        },
        &mut out,
    );
    assert!(matches!(
        &out[0],
        BackendEvent::SubscribeFailed { sub: 7, .. }
    ));
    assert!(!t.has_sub(7));
    // An event on that channel is no longer delivered on the refused subscription.
    out.clear();
    t.up_event(news_from_the_backend(), &mut out);
    assert!(
        out.iter()
            .all(|e| !matches!(e, BackendEvent::Message { sub: Some(7), .. }))
    );
}

/// A subscription the backend ended (a SocketCluster `#kickOut`) leaves the table: made again
/// on the same channel, each message is delivered once, on the new one.
#[test]
fn a_kicked_subscription_leaves_the_table() {
    let mut t = Translator::new(Mapping::new(&[], &socketio::SPEC, &stomp::SPEC).unwrap());
    let subscribe = |sub| ClientOp::Subscribe {
        sub,
        channel: Bytes::from("news"),
        params: Default::default(),
    };
    t.down_op(subscribe(7)).unwrap();
    let mut out = Vec::new();
    t.up_event(
        BackendEvent::Unsubscribed {
            sub: 7,
            reason: ErrorInfo::new(ErrorKind::Unauthorized, "kicked"),
        },
        &mut out,
    );
    assert!(matches!(
        &out[..],
        [BackendEvent::Unsubscribed { sub: 7, .. }]
    ));
    assert!(!t.has_sub(7));
    t.down_op(subscribe(8)).unwrap();
    out.clear();
    t.up_event(news_from_the_backend(), &mut out);
    let subs: Vec<_> = out
        .iter()
        .map(|e| match e {
            BackendEvent::Message { sub, .. } => *sub,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(subs, [Some(8)]);
}

/// Publishes map from the last mapping of the same name and use, with the rule's arguments,
/// and a name or use that changes maps afresh: the cache never answers for another name.
#[test]
fn repeated_publishes_map_the_same_as_the_first() {
    let mut t = Translator::new(mapping(&[(
        "/app/conversation/{id}/typing",
        "typing_start",
        &["{id}"],
    )]));
    let mut publish = |channel: &'static str, broadcast: bool| {
        let op = t
            .down_op(ClientOp::Publish {
                meta: Vec::new(),
                channel: Bytes::from(channel),
                event: None,
                args: vec![Bytes::from("\"extra\"")],
                payload: Payload::null(),
                reply: None,
                broadcast,
                sub: None,
            })
            .unwrap();
        let ClientOp::Publish { channel, args, .. } = op else {
            panic!("{op:?}")
        };
        (channel, args)
    };
    let typing = |id: &str| {
        (
            Bytes::from("typing_start"),
            vec![Bytes::from(format!("\"{id}\"")), Bytes::from("\"extra\"")],
        )
    };
    for _ in 0..3 {
        assert_eq!(publish("/app/conversation/42/typing", false), typing("42"));
    }
    assert_eq!(publish("/app/conversation/7/typing", false), typing("7"));
    assert_eq!(publish("/app/message_created", false).0, "message_created");
    assert_eq!(publish("/app/conversation/42/typing", false), typing("42"));
    // The channel form of a name is a publish to its subscribers, mapped as such.
    assert_eq!(publish("/topic/news", false).0, "news");
    assert_eq!(publish("/topic/news", true).0, "news");
}
