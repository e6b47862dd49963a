//! `switchboard-load`: drives N clients through one or more targets in one run and reports,
//! per target, round-trip throughput, latency percentiles and (with `--cpu`) the CPU time the
//! proxy process spent per message, each also as a ratio to a baseline target (`--baseline`,
//! e.g. nginx) and as latency added over a direct target (`--direct`). It only measures; the
//! script `benches/compare.sh` starts the backends and proxies.
//!
//! Three modes:
//! - closed loop (default): each client subscribes, then publishes `--messages` messages with
//!   up to `--window` in flight and waits for each to come back through the backend (RabbitMQ
//!   and the embedded hub echo a topic to its subscribers; the Socket.IO test backend echoes
//!   `echo` to the sender);
//! - open loop (`--rate R`): the clients together send R messages per second on a fixed
//!   schedule whatever comes back; latency counts from the scheduled send time, so a stalled
//!   proxy shows as latency rather than as fewer sends;
//! - idle (`--idle`, one target, `--rss-pid`): `--clients` clients connect and subscribe and
//!   stay idle (answering pings); the proxy's VmRSS is read before, with all connected, and
//!   `--after` seconds after they all left.
//!
//! Clients connect and subscribe first; the clock and the CPU counters start once every
//! client is ready and stop once every client has its last reply, so set-up and teardown are
//! not counted.
//!
//! ```text
//! switchboard-load --clients 50 --messages 400 --baseline nginx --direct direct \
//!   --target direct=socketio:ws://127.0.0.1:3000/socket.io/ \
//!   --target nginx=socketio:ws://127.0.0.1:8088/socket.io/ --cpu nginx=1234,1235 \
//!   --target sio-pt=socketio:ws://127.0.0.1:8080/sio-pt/ --cpu sio-pt=1240
//! ```
//! Dialects: `stomp` (SUBSCRIBE `--subscribe`, SEND `--send`), `socketio` (emits `echo`;
//! `--token` goes in the CONNECT auth), `socketcluster` (v2 protocol: subscribes to and
//! publishes on channel `load-{i}`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use switchboard::dialect::socketio::engineio::{self, Packet as Eio};
use switchboard::dialect::socketio::packet::{self, Decoder as SioDecoder, PacketType};
use switchboard::dialect::stomp::codec::{self, Command, Decoder, Frame, Item, Limits, Version};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "switchboard-load",
    about = "Round-trip load and idle memory through Switchboard routes, nginx and backends"
)]
struct Args {
    /// `name=dialect:url`, dialect `stomp`, `socketio` or `socketcluster`; repeat.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// `name=pid[,pid...]`: processes whose CPU time (utime + stime) is charged to target
    /// `name` (a proxy: nginx's master and workers). Repeat.
    #[arg(long = "cpu")]
    cpu: Vec<String>,
    /// Target the ratios are taken against (default: the first).
    #[arg(long)]
    baseline: Option<String>,
    /// Target whose latency the "added" columns subtract (default: the first).
    #[arg(long)]
    direct: Option<String>,
    /// Concurrent clients per target.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Messages each client sends.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Messages in flight per client (closed loop).
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Open loop: aggregate send rate in messages per second (0: closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Idle mode: connect and subscribe `--clients` clients, hold, leave; report `--rss-pid`.
    #[arg(long)]
    idle: bool,
    /// Idle mode: the process whose VmRSS is reported.
    #[arg(long)]
    rss_pid: Option<u32>,
    /// Idle mode: seconds to hold the clients once all are connected.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    /// Idle mode: seconds after the clients left before RSS is read again.
    #[arg(long, default_value_t = 60)]
    after: u64,
    /// Idle mode: once every client is connected and `--hold` has passed, write
    /// `<connected> <rss KiB before> <rss KiB now>` here (for a script that runs one load
    /// per proxy process and reads them all while every client is still connected).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
    /// Idle mode: after `--ready-file`, keep the clients until this file exists (at most
    /// `--timeout` seconds), so that several loads hold theirs at the same time.
    #[arg(long)]
    release_file: Option<std::path::PathBuf>,
    /// Local addresses to connect from, round robin (`127.0.0.1,127.0.0.2`): one source
    /// address has about 28k ephemeral ports toward one listener.
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    /// Most handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
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
    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// Rounds: every target is measured once per round, rounds interleaved, and the table
    /// shows each figure's median over the rounds (evens out other load on the machine).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Seconds to wait for the last replies (open loop) or for every client to be ready.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[derive(Debug, Default)]
struct Stats {
    latencies: Vec<Duration>,
    frames: usize,
    errors: usize,
    lost: usize,
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;
type Ws = WebSocketStream<TcpStream>;

/// Where the clients of one target are: main waits for all to be ready (or failed), starts
/// the clock, waits for all to be done (or failed), stops it, then lets them close.
#[derive(Default)]
struct Phase {
    ready: AtomicUsize,
    done: AtomicUsize,
}

/// Which marks one client has passed, so that a client that fails still counts as arrived.
#[derive(Default)]
struct Marks {
    ready: bool,
    done: bool,
}

impl Marks {
    fn ready(&mut self, p: &Phase) {
        if !self.ready {
            self.ready = true;
            p.ready.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn done(&mut self, p: &Phase) {
        self.ready(p);
        if !self.done {
            self.done = true;
            p.done.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct Outcome {
    name: String,
    fps: f64,
    p50: Duration,
    p99: Duration,
    cpu_us: Option<f64>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("switchboard-load: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), BoxErr> {
    let mut cpu_pids: HashMap<String, Vec<u32>> = HashMap::new();
    for c in &args.cpu {
        let (name, pids) = c.split_once('=').ok_or(format!("bad --cpu {c}"))?;
        let pids = pids
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()?;
        cpu_pids.insert(name.to_owned(), pids);
    }
    let mut targets = Vec::new();
    for t in &args.targets {
        let (name, rest) = t
            .split_once('=')
            .ok_or(format!("bad --target {t}: want name=dialect:url"))?;
        let (dialect, url) = rest
            .split_once(':')
            .ok_or(format!("bad --target {t}: want name=dialect:url"))?;
        targets.push((name.to_owned(), dialect.to_owned(), url.to_owned()));
    }
    if args.idle {
        let pid = args.rss_pid.ok_or("--idle needs --rss-pid")?;
        return idle(&args, &targets, pid).await;
    }
    let mode = if args.rate > 0.0 {
        format!("open loop, {} msg/s aggregate", args.rate)
    } else {
        format!("closed loop, window {}", args.window)
    };
    println!(
        "{} clients x {} messages of {} B, {mode}",
        args.clients, args.messages, args.size
    );
    let rounds = args.rounds.max(1);
    let mut per: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        if rounds > 1 {
            println!("round {}", round + 1);
        }
        for ((name, dialect, url), runs) in targets.iter().zip(per.iter_mut()) {
            let pids = cpu_pids.get(name).cloned().unwrap_or_default();
            runs.push(measure(&args, name, dialect, url, &pids).await?);
        }
    }
    let results: Vec<Outcome> = targets
        .iter()
        .zip(per)
        .map(|((name, _, _), runs)| median(name, runs))
        .collect();
    if rounds > 1 {
        println!("\nmedians over {rounds} rounds");
    }
    report(&args, &results);
    Ok(())
}

/// One target under load: the clients connect, wait for the start, run, wait for the stop.
async fn measure(
    args: &Args,
    name: &str,
    dialect: &str,
    url: &str,
    pids: &[u32],
) -> Result<Outcome, BoxErr> {
    let phase = Arc::new(Phase::default());
    let (go_tx, go_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let a = args.clone();
        let (dialect, url) = (dialect.to_owned(), url.to_owned());
        let (phase, gate) = (phase.clone(), gate.clone());
        let (go, release) = (go_rx.clone(), release_rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut marks = Marks::default();
            let r = client(
                &a, &dialect, &url, i, &phase, &mut marks, &gate, go, release,
            )
            .await;
            marks.done(&phase);
            r.unwrap_or_else(|e| {
                eprintln!("{dialect} client {i}: {e}");
                Stats {
                    errors: 1,
                    ..Default::default()
                }
            })
        }));
    }
    wait_count(&phase.ready, args.clients, args.timeout).await;
    let cpu0 = cpu_ticks(pids);
    let started = Instant::now();
    let _ = go_tx.send(true);
    wait_count(&phase.done, args.clients, args.timeout + 60).await;
    let elapsed = started.elapsed();
    let cpu1 = cpu_ticks(pids);
    let _ = release_tx.send(true);
    let mut total = Stats::default();
    for t in tasks {
        if let Ok(s) = t.await {
            total.latencies.extend(s.latencies);
            total.frames += s.frames;
            total.errors += s.errors;
            total.lost += s.lost;
        }
    }
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
    let per_msg = |ticks: u64| ticks as f64 * 1e6 / args.clk_tck as f64 / total.frames as f64;
    // (total, user, kernel) microseconds per message. The total comes from the scheduler's
    // nanosecond count when the kernel keeps one; the 10 ms ticks only split it.
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) if total.frames > 0 && !pids.is_empty() => {
            let (user, sys) = (b.user.saturating_sub(a.user), b.sys.saturating_sub(a.sys));
            match (&a.ns, &b.ns) {
                (Some(n0), Some(n1)) => {
                    // Per thread, so that a thread leaving mid-run does not take the time
                    // it spent before the run out of the sum.
                    let ns: u64 = n1
                        .iter()
                        .map(|(tid, n)| n.saturating_sub(n0.get(tid).copied().unwrap_or(0)))
                        .sum();
                    let all = ns as f64 / 1e3 / total.frames as f64;
                    let user_share = user as f64 / (user + sys).max(1) as f64;
                    Some((all, all * user_share, all * (1.0 - user_share)))
                }
                _ => Some((per_msg(user + sys), per_msg(user), per_msg(sys))),
            }
        }
        _ => None,
    };
    let cpu_us = cpu.map(|c| c.0);
    println!(
        "{name:<16} {dialect:<13} round-trips={:<7} errors={:<3} lost={:<5} {fps:>9.0} msg/s  p50={:>7.3}ms p90={:>7.3}ms p99={:>7.3}ms max={:>7.3}ms  cpu={}",
        total.frames,
        total.errors,
        total.lost,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.9).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3,
        cpu.map_or("-".to_owned(), |(t, u, k)| format!(
            "{t:.1}us/msg (user {u:.1}, kernel {k:.1})"
        )),
    );
    Ok(Outcome {
        name: name.to_owned(),
        fps,
        p50: pct(0.5),
        p99: pct(0.99),
        cpu_us,
    })
}

/// Each figure's median over the rounds, separately.
fn median(name: &str, runs: Vec<Outcome>) -> Outcome {
    fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> Option<T> {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v.get(v.len() / 2).copied()
    }
    Outcome {
        name: name.to_owned(),
        fps: mid(runs.iter().map(|r| r.fps).collect()).unwrap_or_default(),
        p50: mid(runs.iter().map(|r| r.p50).collect()).unwrap_or_default(),
        p99: mid(runs.iter().map(|r| r.p99).collect()).unwrap_or_default(),
        cpu_us: mid(runs.iter().filter_map(|r| r.cpu_us).collect()),
    }
}

fn report(args: &Args, results: &[Outcome]) {
    let find = |n: &Option<String>| {
        n.as_ref()
            .and_then(|n| results.iter().find(|r| &r.name == n))
            .or(results.first())
    };
    let (Some(base), Some(direct)) = (find(&args.baseline), find(&args.direct)) else {
        return;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".to_owned()
        }
    };
    println!(
        "\n| target | msg/s | p50 ms | p99 ms | proxy CPU us/msg | msg/s x{b} | p50 x{b} | p99 x{b} | CPU x{b} | p50 added over {d} ms | p99 added ms |",
        b = base.name,
        d = direct.name
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {:.3} | {:.3} |",
            r.name,
            r.fps,
            ms(r.p50),
            ms(r.p99),
            r.cpu_us.map_or("-".to_owned(), |c| format!("{c:.1}")),
            ratio(r.fps, base.fps),
            ratio(ms(r.p50), ms(base.p50)),
            ratio(ms(r.p99), ms(base.p99)),
            match (r.cpu_us, base.cpu_us) {
                (Some(a), Some(b)) => ratio(a, b),
                _ => "-".to_owned(),
            },
            ms(r.p50) - ms(direct.p50),
            ms(r.p99) - ms(direct.p99),
        );
    }
}

/// Idle mode: RSS of `pid` before, with `--clients` clients connected and subscribed (client
/// `i` on target `i % targets`: several routes to several backends, for more clients than
/// one address pair has ports), and `--after` seconds after they left.
async fn idle(args: &Args, targets: &[(String, String, String)], pid: u32) -> Result<(), BoxErr> {
    let Some((name, dialect, _)) = targets.first() else {
        return Err("no --target".into());
    };
    let rss0 = rss_kib(pid).ok_or("cannot read VmRSS")?;
    let phase = Arc::new(Phase::default());
    let (_go_tx, go_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let a = args.clone();
        let (_, dialect, url) = targets[i % targets.len()].clone();
        let (phase, gate, failed) = (phase.clone(), gate.clone(), failed.clone());
        let (go, release) = (go_rx.clone(), release_rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut marks = Marks::default();
            let r = client(
                &a, &dialect, &url, i, &phase, &mut marks, &gate, go, release,
            )
            .await;
            if let Err(e) = r {
                if failed.fetch_add(1, Ordering::SeqCst) < 5 {
                    eprintln!("{dialect} client {i}: {e}");
                }
            }
            marks.done(&phase);
        }));
    }
    wait_count(&phase.ready, args.clients, args.timeout).await;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let rss1 = rss_kib(pid).ok_or("cannot read VmRSS")?;
    let up = args.clients - failed.load(Ordering::SeqCst);
    if let Some(f) = &args.ready_file {
        // Written whole, then renamed: a script polling for the file never reads half of it.
        let part = f.with_extension("part");
        std::fs::write(&part, format!("{up} {rss0} {rss1}\n"))?;
        std::fs::rename(&part, f)?;
    }
    if let Some(f) = &args.release_file {
        let until = Instant::now() + Duration::from_secs(args.timeout);
        while !f.exists() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = release_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let rss_left = rss_kib(pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(args.after)).await;
    let rss2 = rss_kib(pid).ok_or("cannot read VmRSS")?;
    let per = (rss1.saturating_sub(rss0)) as f64 / up.max(1) as f64;
    println!(
        "idle {name} ({dialect}, {} route(s)): {up}/{} clients connected and subscribed in {connect_s:.1} s (failed {})",
        targets.len(),
        args.clients,
        failed.load(Ordering::SeqCst)
    );
    println!(
        "  proxy RSS: baseline {:.1} MiB, with clients {:.1} MiB = {per:.1} KiB per client (both legs), just after they left {:.1} MiB, {} s later {:.1} MiB ({:.2}x baseline; target <= 2x baseline + 10 MiB = {:.1} MiB)",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss_left as f64 / 1024.0,
        args.after,
        rss2 as f64 / 1024.0,
        rss2 as f64 / rss0.max(1) as f64,
        (2 * rss0) as f64 / 1024.0 + 10.0,
    );
    Ok(())
}

async fn wait_count(c: &AtomicUsize, n: usize, timeout_s: u64) {
    let until = Instant::now() + Duration::from_secs(timeout_s);
    while c.load(Ordering::SeqCst) < n && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// utime and stime of every pid, summed, in clock ticks (fields 14 and 15 of
/// /proc/<pid>/stat), and the nanoseconds on CPU of all their threads (the first field of
/// /proc/<pid>/task/<tid>/schedstat) if the kernel keeps schedstats.
fn cpu_ticks(pids: &[u32]) -> Option<CpuSample> {
    let (mut user, mut sys) = (0, 0);
    let mut ns = Some(HashMap::new());
    for p in pids {
        ns = ns.and_then(|mut m| {
            cpu_ns(*p, &mut m)?;
            Some(m)
        });
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // The command name (field 2) may hold spaces; the fields after its `)` are 3.. on.
        let rest = s.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        user += f.get(11)?.parse::<u64>().ok()?;
        sys += f.get(12)?.parse::<u64>().ok()?;
    }
    Some(CpuSample { user, sys, ns })
}

/// One reading of the proxy processes' CPU time.
struct CpuSample {
    /// utime, in clock ticks.
    user: u64,
    /// stime, in clock ticks.
    sys: u64,
    /// Nanoseconds on CPU by thread id, where the kernel keeps schedstats.
    ns: Option<HashMap<u32, u64>>,
}

/// Nanoseconds on CPU of every thread of `pid`, by thread id.
fn cpu_ns(pid: u32, into: &mut HashMap<u32, u64>) -> Option<()> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let t = t.ok()?;
        let tid = t.file_name().to_str()?.parse().ok()?;
        // A thread may exit between the listing and the read: skip it.
        let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        into.insert(tid, s.split_whitespace().next()?.parse().ok()?);
    }
    Some(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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

/// Dials `url` from source address `i % len` (if any) with small socket buffers, so that
/// the load tool itself fits 50k clients.
async fn dial(a: &Args, url: &str, i: usize, protocol: Option<&'static str>) -> Result<Ws, BoxErr> {
    let mut req = url.into_client_request()?;
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
    }
    if let Some(t) = &a.token {
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {t}"))?,
        );
    }
    let u = url::Url::parse(url)?;
    let host: IpAddr = u.host_str().ok_or("url without host")?.parse()?;
    let addr = SocketAddr::new(host, u.port_or_known_default().unwrap_or(80));
    let sock = TcpSocket::new_v4()?;
    if !a.source_addrs.is_empty() {
        sock.bind(SocketAddr::new(a.source_addrs[i % a.source_addrs.len()], 0))?;
    }
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(cfg)).await?;
    Ok(ws)
}

/// A client dialect: what to send first, how to read a message, how to publish.
trait Proto: Send {
    fn start(&mut self, out: &mut Vec<Message>);
    /// Reads one message: replies go to `out`, sequence numbers that came back to `got`;
    /// returns whether the client is subscribed and may publish.
    fn on_msg(
        &mut self,
        m: Message,
        out: &mut Vec<Message>,
        got: &mut Vec<usize>,
    ) -> Result<bool, BoxErr>;
    fn publish(&self, seq: usize) -> Message;
    fn bye(&self) -> Option<Message>;
}

#[allow(clippy::too_many_arguments)]
async fn client(
    a: &Args,
    dialect: &str,
    url: &str,
    i: usize,
    phase: &Phase,
    marks: &mut Marks,
    gate: &Semaphore,
    mut go: watch::Receiver<bool>,
    mut release: watch::Receiver<bool>,
) -> Result<Stats, BoxErr> {
    let permit = gate.acquire().await?;
    let (mut ws, mut p): (Ws, Box<dyn Proto>) = match dialect {
        "stomp" => (
            dial(a, url, i, Some("v12.stomp")).await?,
            Box::new(Stomp::new(a, i)),
        ),
        "socketio" => {
            let u = switchboard::upstream::backend_url(url, &switchboard::dialect::socketio::SPEC)?;
            (
                dial(a, u.as_str(), i, None).await?,
                Box::new(Sio::new(a, i)),
            )
        }
        "socketcluster" => (dial(a, url, i, None).await?, Box::new(Sc::new(a, i))),
        other => return Err(format!("unknown dialect {other}").into()),
    };
    let mut out = Vec::new();
    let mut got = Vec::new();
    p.start(&mut out);
    for m in out.drain(..) {
        ws.send(m).await?;
    }
    let mut stats = Stats::default();
    let mut inflight: HashMap<usize, Instant> = HashMap::new();
    let mut next = 0;
    let mut ready = false;
    let mut permit = Some(permit);
    let open = a.rate > 0.0 && !a.idle;
    // Open loop: every client sends every clients/rate seconds, the clients' schedules
    // spread evenly over one period.
    let period = Duration::from_secs_f64(if open { a.clients as f64 / a.rate } else { 1.0 });
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + period.mul_f64(i as f64 / a.clients.max(1) as f64),
        period,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut running = false;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let finished = running && next >= a.messages && inflight.is_empty();
        if (finished || a.idle && ready) && !marks.done {
            marks.done(phase);
        }
        if marks.done && *release.borrow() {
            break;
        }
        tokio::select! {
            m = ws.next() => {
                let Some(m) = m else { return Err("connection ended early".into()) };
                let m = m?;
                if let Message::Close(_) = m {
                    return Err("closed by peer".into());
                }
                let r = p.on_msg(m, &mut out, &mut got)?;
                for m in out.drain(..) {
                    ws.send(m).await?;
                }
                for seq in got.drain(..) {
                    if let Some(t0) = inflight.remove(&seq) {
                        stats.latencies.push(t0.elapsed());
                        stats.frames += 1;
                    }
                }
                if r && !ready {
                    ready = true;
                    permit = None;
                    marks.ready(phase);
                }
            }
            r = async { go.wait_for(|g| *g).await.map(|_| ()) }, if ready && !running => {
                r?;
                running = true;
                if open {
                    tick = tokio::time::interval_at(
                        tokio::time::Instant::now() + period.mul_f64(i as f64 / a.clients.max(1) as f64),
                        period,
                    );
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                }
            }
            r = release.changed(), if marks.done => { r?; }
            t = tick.tick(), if open && running && next < a.messages => {
                inflight.insert(next, t.into_std());
                ws.send(p.publish(next)).await?;
                next += 1;
                if next >= a.messages {
                    drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(a.timeout.min(10)));
                }
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(tokio::time::Instant::now)), if drain_until.is_some() && !inflight.is_empty() => {
                stats.lost += inflight.len();
                inflight.clear();
            }
        }
        if running && !open && !a.idle {
            while inflight.len() < a.window && next < a.messages {
                inflight.insert(next, Instant::now());
                ws.send(p.publish(next)).await?;
                next += 1;
            }
        }
    }
    drop(permit);
    if let Some(m) = p.bye() {
        let _ = ws.send(m).await;
    }
    let _ = ws.close(None).await;
    Ok(stats)
}

struct Stomp {
    dec: Decoder,
    items: Vec<Item>,
    login: Option<String>,
    passcode: Option<String>,
    sub: String,
    dest: String,
    i: usize,
    size: usize,
    subscribed: bool,
}

impl Stomp {
    fn new(a: &Args, i: usize) -> Self {
        Self {
            dec: Decoder::new(Limits::default()),
            items: Vec::new(),
            login: a.login.clone(),
            passcode: a.passcode.clone(),
            sub: a.subscribe.replace("{i}", &i.to_string()),
            dest: a.send.replace("{i}", &i.to_string()),
            i,
            size: a.size,
            subscribed: false,
        }
    }
}

fn stomp_msg(f: &Frame) -> Message {
    Message::Binary(codec::encode_to_bytes(f, Version::V1_2))
}

impl Proto for Stomp {
    fn start(&mut self, out: &mut Vec<Message>) {
        let mut connect = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "/");
        if let Some(l) = &self.login {
            connect.push_header("login", l.clone());
        }
        if let Some(p) = &self.passcode {
            connect.push_header("passcode", p.clone());
        }
        out.push(stomp_msg(&connect));
    }

    fn on_msg(
        &mut self,
        m: Message,
        out: &mut Vec<Message>,
        got: &mut Vec<usize>,
    ) -> Result<bool, BoxErr> {
        let data = match m {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            _ => return Ok(self.subscribed),
        };
        self.items.clear();
        self.dec.decode(data, &mut self.items)?;
        for it in self.items.drain(..) {
            let Item::Frame(f) = it else { continue };
            match f.command {
                Command::Connected => {
                    let s = Frame::new(Command::Subscribe)
                        .with_header("id", "0")
                        .with_header("destination", self.sub.clone())
                        .with_header("receipt", "sub");
                    out.push(stomp_msg(&s));
                }
                Command::Receipt => self.subscribed = true,
                Command::Message => {
                    if let Some(seq) = seq_of(&f.body) {
                        got.push(seq);
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
        Ok(self.subscribed)
    }

    fn publish(&self, seq: usize) -> Message {
        let b = Bytes::from(body(self.i, seq, self.size));
        stomp_msg(
            &Frame::new(Command::Send)
                .with_header("destination", self.dest.clone())
                .with_header("content-type", "application/json")
                .with_header("content-length", b.len().to_string())
                .with_body(b),
        )
    }

    fn bye(&self) -> Option<Message> {
        Some(stomp_msg(&Frame::new(Command::Disconnect)))
    }
}

struct Sio {
    dec: SioDecoder,
    token: Option<String>,
    i: usize,
    size: usize,
    connected: bool,
}

impl Sio {
    fn new(a: &Args, i: usize) -> Self {
        Self {
            dec: SioDecoder::new(10),
            token: a.token.clone(),
            i,
            size: a.size,
            connected: false,
        }
    }
}

impl Proto for Sio {
    fn start(&mut self, _out: &mut Vec<Message>) {}

    fn on_msg(
        &mut self,
        m: Message,
        out: &mut Vec<Message>,
        got: &mut Vec<usize>,
    ) -> Result<bool, BoxErr> {
        let m = match m {
            Message::Text(t) => switchboard::dialect::WsMsg::Text(Bytes::from(t)),
            Message::Binary(b) => switchboard::dialect::WsMsg::Binary(b),
            _ => return Ok(self.connected),
        };
        match engineio::decode_ws(&m)? {
            Eio::Open(_) => {
                let auth = match &self.token {
                    Some(t) => format!(
                        r#"40{{"token":{}}}"#,
                        String::from_utf8_lossy(&packet::json_string(t.as_bytes()))
                    ),
                    None => "40".into(),
                };
                // `auth` is already an Engine.IO message (`4`) carrying the Socket.IO CONNECT.
                out.push(Message::text(auth));
            }
            Eio::Ping(d) => {
                let o = engineio::encode_ws(&Eio::Pong(d));
                out.push(Message::text(
                    String::from_utf8_lossy(o.bytes()).into_owned(),
                ));
            }
            Eio::Message(text) => {
                if let Some(p) = self.dec.decode_text(text)? {
                    match p.kind {
                        PacketType::Connect => self.connected = true,
                        PacketType::ConnectError => return Err("connect error".into()),
                        PacketType::Event => {
                            if let Some(d) = p.data
                                && let Ok((_, args)) = packet::split_event(&d)
                                && let Some(seq) = args.first().and_then(|x| seq_of(x))
                            {
                                got.push(seq);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(self.connected)
    }

    fn publish(&self, seq: usize) -> Message {
        Message::text(format!(r#"42["echo",{}]"#, body(self.i, seq, self.size)))
    }

    fn bye(&self) -> Option<Message> {
        None
    }
}

/// SocketCluster protocol v2 (socketcluster-client ≥ 15): handshake, subscribe to
/// `load-{i}`, publish on it; the hub echoes a publish to its sender.
struct Sc {
    channel: String,
    i: usize,
    size: usize,
    subscribed: bool,
}

impl Sc {
    fn new(a: &Args, i: usize) -> Self {
        Self {
            channel: format!("load-{i}"),
            i,
            size: a.size,
            subscribed: false,
        }
    }
}

impl Proto for Sc {
    fn start(&mut self, out: &mut Vec<Message>) {
        out.push(Message::text(
            r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##,
        ));
    }

    fn on_msg(
        &mut self,
        m: Message,
        out: &mut Vec<Message>,
        got: &mut Vec<usize>,
    ) -> Result<bool, BoxErr> {
        let Message::Text(t) = m else {
            return Ok(self.subscribed);
        };
        let s = t.as_str();
        if s.is_empty() || s == "#1" {
            out.push(Message::text(if s.is_empty() { "" } else { "#2" }));
            return Ok(self.subscribed);
        }
        let v: serde_json::Value = serde_json::from_str(s)?;
        if let Some(rid) = v.get("rid").and_then(|r| r.as_u64()) {
            if let Some(e) = v.get("error")
                && !e.is_null()
            {
                return Err(format!("socketcluster error {e}").into());
            }
            match rid {
                1 => out.push(Message::text(format!(
                    r##"{{"event":"#subscribe","data":{{"channel":"{}"}},"cid":2}}"##,
                    self.channel
                ))),
                2 => self.subscribed = true,
                _ => {}
            }
        } else if v.get("event").and_then(|e| e.as_str()) == Some("#publish")
            && let Some(seq) = v
                .pointer("/data/data/seq")
                .and_then(|s| s.as_u64())
                .and_then(|s| usize::try_from(s).ok())
        {
            got.push(seq);
        }
        Ok(self.subscribed)
    }

    fn publish(&self, seq: usize) -> Message {
        Message::text(format!(
            r##"{{"event":"#publish","data":{{"channel":"{}","data":{}}}}}"##,
            self.channel,
            body(self.i, seq, self.size)
        ))
    }

    fn bye(&self) -> Option<Message> {
        None
    }
}
