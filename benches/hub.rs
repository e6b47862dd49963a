//! Fan-out of one publish to 10,000 subscribers of one embedded hub: the hub's fan-out
//! (one `Arc` per delivery into each connection's queue), each session's translation and
//! its server role's encoding through the message's encode cache. Two shapes of audience:
//! 10,000 stompjs clients subscribed as `sub-0` (one shape: one encoding shared by all),
//! and 10,000 subscriptions with ids of their own (10,000 shapes: one encoding each). Socket
//! writes are not included.
//!
//! Run: `cargo bench --bench hub`. Prints deliveries per second and payload bytes copied
//! per delivery besides criterion's timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::dialect::stomp::server::{self as stomp, StompServer};
use switchboard::dialect::{ServerOut, ServerRole, Spec, WsMsg};
use switchboard::frame::{BackendEvent, ClientOp, Payload};
use switchboard::hub::{Attach, Conn, Delivery, Hub, HubMessage};
use switchboard::translate::{Mapping, Translator};

const SUBSCRIBERS: usize = 10_000;
const BODY: &str = r#"{"id":17,"thread":"t-42","text":"Hello, the results are in. Please call me back.","author":{"id":5,"name":"Ann"}}"#;

struct Session {
    role: StompServer,
    conn: Conn,
    translator: Translator,
}

fn sessions(hub: &Arc<Hub>, same_id: bool) -> Vec<Session> {
    let spec: &Spec = &switchboard::dialect::stomp::SPEC;
    let mapping = Mapping::new(&[], spec, &switchboard::hub::SPEC).unwrap();
    (0..SUBSCRIBERS)
        .map(|i| {
            let now = Instant::now();
            let mut role = StompServer::new(stomp::Settings::default(), None, format!("s{i}"), now);
            let mut out = ServerOut::default();
            let text = |s: String| WsMsg::Text(Bytes::from(s));
            role.on_client(
                text("CONNECT\naccept-version:1.2\n\n\0".into()),
                now,
                &mut out,
            );
            role.on_backend(BackendEvent::Ready { session: None }, now, &mut out);
            let id = if same_id {
                "sub-0".to_owned()
            } else {
                format!("sub-{i}")
            };
            let mut out = ServerOut::default();
            role.on_client(
                text(format!("SUBSCRIBE\nid:{id}\ndestination:/topic/news\n\n\0")),
                now,
                &mut out,
            );
            let op = out.ops.pop().unwrap();
            let mut translator = Translator::new(mapping.clone());
            let op = translator.down_op(op).unwrap();
            let mut conn = hub.attach(
                Attach {
                    echo: true,
                    everything: false,
                    depth: 256,
                    bytes: 8 << 20,
                },
                None,
            );
            let mut events = Vec::new();
            let sub = match &op {
                ClientOp::Subscribe { sub, .. } => *sub,
                _ => unreachable!(),
            };
            conn.op(op, &mut events);
            role.on_backend(
                BackendEvent::Subscribed { sub, data: None },
                now,
                &mut ServerOut::default(),
            );
            while conn.try_recv().is_some() {}
            Session {
                role,
                conn,
                translator,
            }
        })
        .collect()
}

/// One publish, every delivery received, translated and encoded. Returns the bytes
/// written toward the clients and the message (for its encode count).
fn fan_out(hub: &Hub, all: &mut [Session]) -> (usize, Arc<HubMessage>) {
    hub.publish(
        None,
        HubMessage::new(
            Bytes::from_static(b"news"),
            None,
            Payload::json(Bytes::from_static(BODY.as_bytes())),
            Vec::new(),
        ),
    );
    let mut bytes = 0;
    let mut last = None;
    let mut translated = Vec::new();
    for s in all.iter_mut() {
        let Some(Delivery::Message(m, sub)) = s.conn.try_recv() else {
            panic!("no delivery")
        };
        s.translator.up_event(m.event_for(sub), &mut translated);
        for ev in translated.drain(..) {
            let mut out = ServerOut::default();
            m.encoded(1, &mut s.role, ev, Instant::now(), &mut out);
            bytes += out.to_client.iter().map(WsMsg::len).sum::<usize>();
        }
        last = Some(m);
    }
    (bytes, last.unwrap())
}

fn bench(c: &mut Criterion) {
    for (name, same) in [("one_shape", true), ("distinct_shapes", false)] {
        let hub = Arc::new(Hub::default());
        let mut all = sessions(&hub, same);
        // Subscription counts told to the first subscribers.
        for s in &mut all {
            while s.conn.try_recv().is_some() {}
        }
        // The figures for the report: one timed run, outside criterion.
        let started = Instant::now();
        let (bytes, m) = fan_out(&hub, &mut all);
        let took = started.elapsed();
        let encoded_bytes = bytes / SUBSCRIBERS * m.encodes() as usize;
        println!(
            "hub fan-out {name}: {SUBSCRIBERS} deliveries in {took:?} = {:.0} deliveries/s; \
             {} encodings, {:.2} bytes encoded (copied) per delivery, {} bytes per MESSAGE",
            SUBSCRIBERS as f64 / took.as_secs_f64(),
            m.encodes(),
            encoded_bytes as f64 / SUBSCRIBERS as f64,
            bytes / SUBSCRIBERS,
        );
        let mut g = c.benchmark_group("hub_fan_out_10k");
        g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
        g.sample_size(10).measurement_time(Duration::from_secs(5));
        g.bench_function(name, |b| b.iter(|| fan_out(&hub, &mut all)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
