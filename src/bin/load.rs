//! `switchboard-load`: drives N clients through one or more targets in one run and reports
//! round-trip frames per second and latency percentiles, plus each target's ratio to the
//! first (the baseline, usually a direct connection to the backend).
//!
//! Each client subscribes, then publishes `--messages` messages with up to `--window` in
//! flight and waits for each to come back through the backend (RabbitMQ echoes a topic to
//! its subscribers; the Socket.IO test backend echoes `echo` to the sender).
//!
//! ```text
//! switchboard-load --clients 50 --messages 200 \
//!   --target direct=stomp:ws://127.0.0.1:15674/ws \
//!   --target passthrough=stomp:ws://127.0.0.1:8081/ws \
//!   --target translate=stomp:ws://127.0.0.1:8082/ws \
//!   --login guest --passcode guest --subscribe '/topic/load-{i}' --send '/topic/load-{i}'
//! ```
//! A Socket.IO target (`name=socketio:ws://host:port/socket.io/`) emits `echo` and waits for
//! the echo; `--token` goes in the CONNECT auth payload.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use switchboard::dialect::socketio::engineio::{self, Packet as Eio};
use switchboard::dialect::socketio::packet::{self, Decoder as SioDecoder, PacketType};
use switchboard::dialect::stomp::codec::{self, Command, Decoder, Frame, Item, Limits, Version};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "switchboard-load",
    about = "Round-trip load through Switchboard routes and their backends"
)]
struct Args {
    /// `name=dialect:url`, dialect `stomp` or `socketio`; repeat. The first is the baseline.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Concurrent clients per target.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Messages each client sends.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Messages in flight per client.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// STOMP: subscription destination (`{i}` = client index).
    #[arg(long, default_value = "/topic/load-{i}")]
    subscribe: String,
    /// STOMP: SEND destination (`{i}` = client index).
    #[arg(long, default_value = "/topic/load-{i}")]
    send: String,
    /// STOMP CONNECT login.
    #[arg(long)]
    login: Option<String>,
    /// STOMP CONNECT passcode.
    #[arg(long)]
    passcode: Option<String>,
    /// Bearer token (STOMP: upgrade `Authorization`; Socket.IO: `auth.token`).
    #[arg(long)]
    token: Option<String>,
    /// Payload size in bytes (padding inside the JSON body).
    #[arg(long, default_value_t = 128)]
    size: usize,
}

#[derive(Debug, Default)]
struct Stats {
    latencies: Vec<Duration>,
    frames: usize,
    errors: usize,
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let mut results = Vec::new();
    for t in &args.targets {
        let Some((name, rest)) = t.split_once('=') else {
            eprintln!("bad --target {t}: want name=dialect:url");
            std::process::exit(2);
        };
        let Some((dialect, url)) = rest.split_once(':') else {
            eprintln!("bad --target {t}: want name=dialect:url");
            std::process::exit(2);
        };
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..args.clients {
            let (dialect, url) = (dialect.to_owned(), url.to_owned());
            let a = args.clone();
            tasks.push(tokio::spawn(async move {
                let r = match dialect.as_str() {
                    "stomp" => stomp_client(&a, &url, i).await,
                    "socketio" => sio_client(&a, &url).await,
                    other => Err(format!("unknown dialect {other}").into()),
                };
                r.unwrap_or_else(|e| {
                    eprintln!("client {i}: {e}");
                    Stats {
                        errors: 1,
                        ..Default::default()
                    }
                })
            }));
        }
        let mut total = Stats::default();
        for t in tasks {
            if let Ok(s) = t.await {
                total.latencies.extend(s.latencies);
                total.frames += s.frames;
                total.errors += s.errors;
            }
        }
        let elapsed = started.elapsed();
        total.latencies.sort();
        let pct = |p: f64| {
            let n = total.latencies.len();
            if n == 0 {
                return Duration::ZERO;
            }
            let idx = ((n as f64 - 1.0) * p).round() as usize;
            total.latencies.get(idx).copied().unwrap_or_default()
        };
        let fps = total.frames as f64 / elapsed.as_secs_f64();
        println!(
            "{name:<14} {dialect:<8} clients={:<4} round-trips={:<7} errors={:<3} {fps:>10.0} msg/s  p50={:>8.3}ms p90={:>8.3}ms p99={:>8.3}ms max={:>8.3}ms",
            args.clients,
            total.frames,
            total.errors,
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.9).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            pct(1.0).as_secs_f64() * 1e3,
        );
        results.push((name.to_owned(), fps, pct(0.5), pct(0.99)));
    }
    if let Some((base, bfps, bp50, bp99)) = results.first().cloned() {
        println!(
            "\nratios against `{base}` (throughput: higher is better; latency: lower is better)"
        );
        for (name, fps, p50, p99) in &results {
            println!(
                "{name:<14} throughput x{:.2}  p50 x{:.2}  p99 x{:.2}",
                fps / bfps,
                p50.as_secs_f64() / bp50.as_secs_f64().max(1e-9),
                p99.as_secs_f64() / bp99.as_secs_f64().max(1e-9)
            );
        }
    }
}

fn body(i: usize, seq: usize, size: usize) -> String {
    format!(r#"{{"c":{i},"seq":{seq},"pad":"{}"}}"#, "x".repeat(size))
}

fn seq_of(b: &[u8]) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct B {
        seq: usize,
    }
    serde_json::from_slice::<B>(b).ok().map(|b| b.seq)
}

async fn stomp_client(a: &Args, url: &str, i: usize) -> Result<Stats, BoxErr> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v12.stomp"),
    );
    if let Some(t) = &a.token {
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {t}"))?,
        );
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let mut connect = Frame::new(Command::Connect)
        .with_header("accept-version", "1.2")
        .with_header("host", "/");
    if let Some(l) = &a.login {
        connect.push_header("login", l.clone());
    }
    if let Some(p) = &a.passcode {
        connect.push_header("passcode", p.clone());
    }
    let send_frame =
        |ws_frame: &Frame| Message::Binary(codec::encode_to_bytes(ws_frame, Version::V1_2));
    ws.send(send_frame(&connect)).await?;
    let mut dec = Decoder::new(Limits::default());
    let mut items = Vec::new();
    let sub = a.subscribe.replace("{i}", &i.to_string());
    let dest = a.send.replace("{i}", &i.to_string());
    let mut phase = 0; // 0 connecting, 1 subscribing, 2 running
    let mut stats = Stats::default();
    let mut inflight: HashMap<usize, Instant> = HashMap::new();
    let mut next = 0;
    while let Some(msg) = ws.next().await {
        let data = match msg? {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            Message::Close(_) => return Err("closed".into()),
            _ => continue,
        };
        items.clear();
        dec.decode(data, &mut items)?;
        for it in items.drain(..) {
            let Item::Frame(f) = it else { continue };
            match f.command {
                Command::Connected => {
                    phase = 1;
                    let s = Frame::new(Command::Subscribe)
                        .with_header("id", "0")
                        .with_header("destination", sub.clone())
                        .with_header("receipt", "sub");
                    ws.send(send_frame(&s)).await?;
                }
                Command::Receipt if phase == 1 => phase = 2,
                Command::Message => {
                    if let Some(seq) = seq_of(&f.body)
                        && let Some(t0) = inflight.remove(&seq)
                    {
                        stats.latencies.push(t0.elapsed());
                        stats.frames += 1;
                    }
                }
                Command::Error => {
                    return Err(
                        format!("ERROR {}", f.header_str("message").unwrap_or_default()).into(),
                    );
                }
                _ => {}
            }
        }
        if phase == 2 {
            while inflight.len() < a.window && next < a.messages {
                let b = Bytes::from(body(i, next, a.size));
                let s = Frame::new(Command::Send)
                    .with_header("destination", dest.clone())
                    .with_header("content-type", "application/json")
                    .with_header("content-length", b.len().to_string())
                    .with_body(b);
                inflight.insert(next, Instant::now());
                ws.send(send_frame(&s)).await?;
                next += 1;
            }
            if next >= a.messages && inflight.is_empty() {
                let _ = ws.send(send_frame(&Frame::new(Command::Disconnect))).await;
                let _ = ws.close(None).await;
                return Ok(stats);
            }
        }
    }
    Err("connection ended early".into())
}

async fn sio_client(a: &Args, url: &str) -> Result<Stats, BoxErr> {
    let url = switchboard::upstream::backend_url(url, &switchboard::dialect::socketio::SPEC)?;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let mut dec = SioDecoder::new(10);
    let mut stats = Stats::default();
    let mut inflight: HashMap<usize, Instant> = HashMap::new();
    let mut next = 0;
    let mut running = false;
    let i = 0;
    while let Some(msg) = ws.next().await {
        let m = match msg? {
            Message::Text(t) => switchboard::dialect::WsMsg::Text(Bytes::from(t)),
            Message::Binary(b) => switchboard::dialect::WsMsg::Binary(b),
            Message::Close(_) => return Err("closed".into()),
            _ => continue,
        };
        match engineio::decode_ws(&m)? {
            Eio::Open(_) => {
                let auth = match &a.token {
                    Some(t) => format!(
                        r#"40{{"token":{}}}"#,
                        String::from_utf8_lossy(&packet::json_string(t.as_bytes()))
                    ),
                    None => "40".into(),
                };
                // `auth` is already an Engine.IO message (`4`) carrying the Socket.IO CONNECT (`0`).
                ws.send(Message::text(auth)).await?;
            }
            Eio::Ping(d) => {
                let out = engineio::encode_ws(&Eio::Pong(d));
                ws.send(Message::text(
                    String::from_utf8_lossy(out.bytes()).into_owned(),
                ))
                .await?;
            }
            Eio::Message(text) => {
                let Some(p) = dec.decode_text(text)? else {
                    continue;
                };
                match p.kind {
                    PacketType::Connect => running = true,
                    PacketType::ConnectError => return Err("connect error".into()),
                    PacketType::Event => {
                        if let Some(d) = p.data
                            && let Ok((_, args)) = packet::split_event(&d)
                            && let Some(seq) = args.first().and_then(|x| seq_of(x))
                            && let Some(t0) = inflight.remove(&seq)
                        {
                            stats.latencies.push(t0.elapsed());
                            stats.frames += 1;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if running {
            while inflight.len() < a.window && next < a.messages {
                inflight.insert(next, Instant::now());
                ws.send(Message::text(format!(
                    r#"42["echo",{}]"#,
                    body(i, next, a.size)
                )))
                .await?;
                next += 1;
            }
            if next >= a.messages && inflight.is_empty() {
                let _ = ws.close(None).await;
                return Ok(stats);
            }
        }
    }
    Err("connection ended early".into())
}
