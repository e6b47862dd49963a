//! Shared helpers for the integration tests: the real third-party peers under `tests/peers/`
//! (Socket.IO backend, STOMP and Socket.IO client drivers, RabbitMQ) and the proxy binary.
//!
//! Everything listens on 127.0.0.1 only. Every child process runs in its own process group
//! and is killed with it when its handle drops; its stderr (and a copy of its stdout) goes to
//! `target/test-logs/<test binary>-<name>-<pid>-<n>.log`.
//!
//! Use from a test file with `mod common;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// The crate root (where Cargo.toml is).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/peers`: package.json, the Node scripts, `rabbitmq/`.
pub fn peers_dir() -> PathBuf {
    repo_dir().join("tests").join("peers")
}

/// Cargo's target directory, found from the running test binary
/// (`<target>/<profile>/deps/<bin>`), so `CARGO_TARGET_DIR` is honoured.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| repo_dir().join("target"))
}

/// `target/test-logs/`, created on first use.
pub fn log_dir() -> PathBuf {
    let d = target_dir().join("test-logs");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    d
}

fn test_binary_name() -> String {
    let stem = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".into());
    // Cargo names test binaries `<name>-<16 hex>`: drop the hash.
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.into()
        }
        _ => stem,
    }
}

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh log file path `target/test-logs/<test binary>-<name>-<pid>-<n>.log`.
pub fn new_log_path(name: &str) -> PathBuf {
    let n = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    log_dir().join(format!(
        "{}-{safe}-{}-{n}.log",
        test_binary_name(),
        std::process::id()
    ))
}

/// The last `n` lines of a file (for panic messages).
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn env_is_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && v != "false")
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// npm
// ---------------------------------------------------------------------------------------------

const NPM_STAMP: &str = ".switchboard-lock-sha256";

fn lock_hash() -> String {
    let lock = peers_dir().join("package-lock.json");
    let out = Command::new("sha256sum")
        .arg(&lock)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sha256sum {}: {e}", lock.display()));
    assert!(
        out.status.success(),
        "sha256sum {} failed: {}",
        lock.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn npm_up_to_date(hash: &str) -> bool {
    let stamp = peers_dir().join("node_modules").join(NPM_STAMP);
    std::fs::read_to_string(stamp)
        .map(|s| s.trim() == hash)
        .unwrap_or(false)
}

struct LockDir(PathBuf);
impl Drop for LockDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes sure `tests/peers/node_modules` matches `package-lock.json`, running
/// `npm ci --no-audit --no-fund` at most once even when several test binaries start at the same
/// time (an atomic `mkdir` lock in the target dir plus a stamp file in `node_modules` holding the
/// lock file's SHA-256; `tests/run.sh` writes the same stamp).
pub fn ensure_npm() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(ensure_npm_inner);
}

fn ensure_npm_inner() {
    let hash = lock_hash();
    if npm_up_to_date(&hash) {
        return;
    }
    let lock_path = target_dir().join("npm-install.lock");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match std::fs::create_dir(&lock_path) {
            Ok(()) => {
                let _guard = LockDir(lock_path.clone());
                let _ =
                    std::fs::write(lock_path.join("owner"), format!("{}\n", std::process::id()));
                if npm_up_to_date(&hash) {
                    return;
                }
                let log = new_log_path("npm-ci");
                let logf = File::create(&log)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(peers_dir())
                    .stdin(Stdio::null())
                    .stdout(logf.try_clone().expect("clone log file"))
                    .stderr(logf)
                    .status()
                    .unwrap_or_else(|e| panic!("cannot run npm (is Node.js installed? tests/run.sh installs everything): {e}"));
                assert!(
                    status.success(),
                    "npm ci in {} failed ({status}); log {}:\n{}",
                    peers_dir().display(),
                    log.display(),
                    tail(&log, 40)
                );
                let stamp = peers_dir().join("node_modules").join(NPM_STAMP);
                std::fs::write(&stamp, format!("{hash}\n"))
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another test binary is installing; a lock older than 10 minutes is stale.
                let stale = std::fs::metadata(&lock_path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > Duration::from_secs(600));
                if stale {
                    let _ = std::fs::remove_dir_all(&lock_path);
                    continue;
                }
                if npm_up_to_date(&hash) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for the npm lock {}",
                    lock_path.display()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("cannot create lock dir {}: {e}", lock_path.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

static HANDED_OUT: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

/// A free TCP port on 127.0.0.1 (bound then released; never the same one twice in a process).
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        let (word, bit) = (usize::from(port) / 64, u64::from(port) % 64);
        let prev = HANDED_OUT[word].fetch_or(1 << bit, Ordering::Relaxed);
        if prev & (1 << bit) == 0 {
            return port;
        }
    }
    panic!("no free port found");
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; false on timeout.
pub async fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Blocking form of [`wait_port`], for sync set-up code.
pub fn wait_port_blocking(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// Sends `SIG<sig>` to a process group (`sig` like "TERM", "KILL"). Uses the shell's `kill`
/// builtin, so procps need not be installed.
pub fn signal_group(pgid: u32, sig: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("kill -{sig} -{pgid} 2>/dev/null")])
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Sends `SIG<sig>` to one process.
pub fn signal_pid(pid: u32, sig: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("kill -{sig} {pid} 2>/dev/null")])
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A child process in its own process group. Its stdout lines arrive on a channel (and are
/// copied to the log file with a `[stdout] ` prefix); stderr goes to the log file. Drop sends
/// SIGTERM to the group, then SIGKILL after 3 s.
pub struct Child {
    name: String,
    proc: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    log_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Child {
    /// Spawns `cmd` (stdin closed).
    pub fn spawn(name: &str, cmd: Command) -> Child {
        Self::spawn_inner(name, cmd, false)
    }

    /// Spawns `cmd` with a piped stdin (see [`Child::take_stdin`]).
    pub fn spawn_with_stdin(name: &str, cmd: Command) -> Child {
        Self::spawn_inner(name, cmd, true)
    }

    fn spawn_inner(name: &str, mut cmd: Command, piped_stdin: bool) -> Child {
        let log_path = new_log_path(name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let _ = writeln!(&log, "# {name}: {cmd:?}");
        cmd.process_group(0)
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(log.try_clone().expect("clone log file"));
        let mut proc = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        let stdout = proc.stdout.take().expect("piped stdout");
        let stdin = proc.stdin.take();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut copy = log;
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf)
                                .trim_end_matches(['\r', '\n'])
                                .to_string();
                            let _ = writeln!(copy, "[stdout] {line}");
                            let _ = tx.send(line);
                        }
                    }
                }
            })
            .expect("spawn stdout reader thread");
        Child {
            name: name.into(),
            proc,
            stdin,
            lines: rx,
            log_path,
            status: None,
        }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where stderr (and a copy of stdout) goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }

    /// The piped stdin, once (only for [`Child::spawn_with_stdin`]).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Stop delivering stdout lines (they still go to the log). For chatty processes whose
    /// output no test reads.
    pub fn discard_lines(&mut self) {
        self.lines.close();
        while self.lines.try_recv().is_ok() {}
    }

    /// The next stdout line, or None on timeout or when stdout closed.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// Blocking form of [`Child::next_line`] (polls; usable inside a runtime).
    pub fn next_line_blocking(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.try_recv() {
                Ok(l) => return Some(l),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Blocks until a stdout line matches `pred`; panics (with the log tail) on timeout or exit.
    pub fn wait_line_blocking(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line_blocking(left) {
                Some(l) if pred(&l) => return l,
                Some(_) => {}
                None => {
                    let exited = self.try_wait();
                    panic!(
                        "{}: no matching stdout line within {timeout:?} (exited: {exited:?}); log {}:\n{}",
                        self.name,
                        self.log_path.display(),
                        self.log_tail(40)
                    )
                }
            }
        }
    }

    /// SIGTERM, SIGINT, ... to the process itself.
    pub fn signal(&self, sig: &str) -> bool {
        signal_pid(self.pid(), sig)
    }

    /// SIGTERM, SIGKILL, ... to its whole process group.
    pub fn signal_group(&self, sig: &str) -> bool {
        signal_group(self.pid(), sig)
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.proc.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn wait_exit_blocking(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM to the group, SIGKILL after 3 s; waits for the process. What Drop does.
    pub fn kill(&mut self) {
        self.stdin = None;
        let pgid = self.pid();
        if self.try_wait().is_none() {
            signal_group(pgid, "TERM");
            if self.wait_exit_blocking(Duration::from_secs(3)).is_none() {
                signal_group(pgid, "KILL");
                self.status = self.proc.wait().ok();
            }
        }
        // Stragglers of the group (the leader is gone).
        signal_group(pgid, "KILL");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `node <script>` command run in `tests/peers` (after [`ensure_npm`]).
pub fn node_command(script: &str) -> Command {
    ensure_npm();
    let mut cmd = Command::new("node");
    cmd.arg(script).current_dir(peers_dir());
    cmd
}

// ---------------------------------------------------------------------------------------------
// JSON-lines drivers
// ---------------------------------------------------------------------------------------------

/// A `stomp_driver.js` or `sio_driver.js` process: commands in, events out, one JSON object a
/// line (see the scripts' headers for the protocol).
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    backlog: VecDeque<Value>,
    recent: VecDeque<Value>,
}

const RECENT: usize = 40;

impl Driver {
    /// `node stomp_driver.js`, ready.
    pub async fn stomp() -> Driver {
        Self::spawn("stomp_driver.js").await
    }

    /// A stomp.js client connected by `cmd` (a stomp_driver.js `connect` command): waits up
    /// to 10 s for its `connected`.
    pub async fn stomp_connected(cmd: Value) -> Driver {
        let c = cmd["c"]
            .as_str()
            .expect("connect command names its client")
            .to_owned();
        let mut d = Self::stomp().await;
        d.send(cmd).await;
        d.expect_ev(Duration::from_secs(10), &c, "connected").await;
        d
    }

    /// `node sio_driver.js`, ready.
    pub async fn sio() -> Driver {
        Self::spawn("sio_driver.js").await
    }

    /// Any driver script in `tests/peers`; waits for `{"ev":"ready"}`.
    pub async fn spawn(script: &str) -> Driver {
        let name = script.trim_end_matches(".js");
        let mut child = Child::spawn_with_stdin(name, node_command(script));
        let stdin = child.take_stdin().expect("driver stdin");
        let mut d = Driver {
            child,
            stdin,
            backlog: VecDeque::new(),
            recent: VecDeque::new(),
        };
        d.expect(Duration::from_secs(20), |v| v["ev"] == "ready")
            .await;
        d
    }

    /// Sends one command (`{"op":..., "c":...}`).
    pub async fn send(&mut self, cmd: Value) {
        let mut line = serde_json::to_string(&cmd).expect("serialize command");
        line.push('\n');
        if let Err(e) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            let exited = self.child.try_wait();
            panic!(
                "{}: cannot send {line}: {e} (exited: {exited:?}); log {}:\n{}",
                self.child.name(),
                self.child.log_path().display(),
                self.child.log_tail(40)
            );
        }
    }

    fn note(&mut self, v: &Value) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(v.clone());
    }

    async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        let line = self.child.next_line(timeout).await?;
        let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
        self.note(&v);
        Some(v)
    }

    /// The first event (backlog first, then new ones) matching `pred`, or None after
    /// `timeout`. Non-matching events stay in the backlog, in order.
    pub async fn try_expect(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.recv(left).await {
                Some(v) if pred(&v) => return Some(v),
                Some(v) => self.backlog.push_back(v),
                None => {
                    if self.child.try_wait().is_some() {
                        return None;
                    }
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
            }
        }
    }

    /// Like [`Driver::try_expect`] but panics on timeout, showing the recent events and the
    /// driver's log.
    pub async fn expect(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        match self.try_expect(timeout, pred).await {
            Some(v) => v,
            None => {
                let exited = self.child.try_wait();
                panic!(
                    "{}: no matching event within {timeout:?} (exited: {exited:?})\nrecent events:\n{}\nlog {}:\n{}",
                    self.child.name(),
                    self.recent
                        .iter()
                        .map(|v| format!("  {v}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.child.log_path().display(),
                    self.child.log_tail(30)
                )
            }
        }
    }

    /// Shorthand: the next event `ev` of client `c`.
    pub async fn expect_ev(&mut self, timeout: Duration, c: &str, ev: &str) -> Value {
        self.expect(timeout, |v| v["c"] == c && v["ev"] == ev).await
    }

    /// Everything in the backlog plus every event that arrives within `dur`; empties the backlog.
    pub async fn collect(&mut self, dur: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.backlog.drain(..).collect();
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left).await {
                Some(v) => out.push(v),
                None => {
                    if self.child.try_wait().is_some() {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Events received but not yet matched.
    pub fn backlog(&self) -> &VecDeque<Value> {
        &self.backlog
    }

    /// The driver process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"{\"op\":\"exit\"}\n");
        let _ = self.stdin.flush();
        // Child's own Drop then stops the process group.
    }
}

// ---------------------------------------------------------------------------------------------
// Socket.IO backend
// ---------------------------------------------------------------------------------------------

/// Starts `node sio_backend.js 0 <args>` (e.g. `&["--secret", "s", "--ping-interval", "300"]`)
/// and waits for `READY <port>`. Returns the process and its port (http://127.0.0.1:<port>).
pub fn start_sio_backend(args: &[&str]) -> (Child, u16) {
    let mut cmd = node_command("sio_backend.js");
    cmd.arg("0").args(args);
    let mut child = Child::spawn("sio_backend", cmd);
    let line = child.wait_line_blocking(Duration::from_secs(20), |l| l.starts_with("READY "));
    let port: u16 = line["READY ".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad READY line {line:?}: {e}"));
    (child, port)
}

/// `POST /control/emit` on the backend at `port`: emits `event` with `args` to room
/// `user:<to>` (or everyone when `to` is None) in namespace `/`.
pub async fn sio_control_emit(port: u16, event: &str, args: Value, to: Option<&str>) -> Value {
    let mut body = json!({ "event": event, "args": args });
    if let Some(to) = to {
        body["to"] = json!(to);
    }
    http_json(port, "POST", "/control/emit", Some(body)).await
}

/// `GET /control/received`: `[{sub, event, args, namespace, id}]`.
pub async fn sio_control_received(port: u16) -> Vec<Value> {
    match http_json(port, "GET", "/control/received", None).await {
        Value::Array(a) => a,
        other => panic!("unexpected /control/received answer {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP (hand-written HTTP/1.1 client, enough for the admin and control endpoints)
// ---------------------------------------------------------------------------------------------

/// One HTTP/1.1 request with `Connection: close`; returns (status, body). Handles
/// `Content-Length`, chunked and read-to-close bodies.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    content_type: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse_http_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad HTTP response: {:?}", String::from_utf8_lossy(&raw)),
        )
    })
}

fn parse_http_response(raw: &[u8]) -> Option<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                len = v.parse::<usize>().ok();
            }
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_str = std::str::from_utf8(&rest[..eol]).ok()?;
            let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        out
    } else if let Some(n) = len {
        rest.get(..n)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// GET `path` on `addr`: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, None, "text/plain").await
}

/// A JSON request to 127.0.0.1:`port`; panics unless the answer is 2xx JSON.
pub async fn http_json(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let body = body.map(|b| b.to_string());
    let (status, text) = http_request(addr, method, path, body.as_deref(), "application/json")
        .await
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    assert!(
        (200..300).contains(&status),
        "{method} http://{addr}{path}: HTTP {status}: {text}"
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: not JSON ({e}): {text}"))
}

// ---------------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------------

/// An HS256 JWT `{sub, iat, exp: +1h}` signed with `secret` (made by jsonwebtoken in Node).
pub fn jwt(sub: &str, secret: &str) -> String {
    jwt_claims(&json!({ "sub": sub }), secret, Some("1h"))
}

/// An HS256 JWT with arbitrary claims; `expires_in` like "1h", or None for no `exp`
/// (put `exp` in `claims` yourself for expired tokens).
pub fn jwt_claims(claims: &Value, secret: &str, expires_in: Option<&str>) -> String {
    ensure_npm();
    const JS: &str = "const [c, s, e] = process.argv.slice(1); const o = { algorithm: 'HS256' }; \
                      if (e) o.expiresIn = e; \
                      process.stdout.write(require('jsonwebtoken').sign(JSON.parse(c), s, o));";
    let out = Command::new("node")
        .args([
            "-e",
            JS,
            &claims.to_string(),
            secret,
            expires_in.unwrap_or(""),
        ])
        .current_dir(peers_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    assert!(
        out.status.success(),
        "jwt signing failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("jwt is ASCII")
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ
// ---------------------------------------------------------------------------------------------

/// Debian's RabbitMQ server script.
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A RabbitMQ node with web-stomp, on free loopback ports, state in a temp dir. Drop runs
/// `tests/peers/rabbitmq/stop.sh` (SIGTERM, SIGKILL after 3 s: the state is a temp dir; then
/// its epmd).
pub struct Rabbit {
    child: Child,
    dir: tempfile::TempDir,
    /// web-stomp: ws://127.0.0.1:<ws_port>/ws
    pub ws_port: u16,
    /// STOMP over TCP.
    pub stomp_port: u16,
    /// AMQP 0-9-1.
    pub amqp_port: u16,
    /// Erlang distribution.
    pub dist_port: u16,
    /// The node's own epmd.
    pub epmd_port: u16,
}

impl Rabbit {
    /// `ws://127.0.0.1:<ws_port>/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.ws_port)
    }

    /// A `[route.upstream]` table (with its credentials) for a route in front of this broker.
    pub fn upstream_toml(&self) -> String {
        format!(
            "[route.upstream]\nurl = \"{}\"\ndialect = \"stomp\"\n\
             [route.upstream.credentials]\nlogin = \"guest\"\npasscode = \"guest\"\n",
            self.ws_url()
        )
    }

    /// A stomp.js client `c` connected straight to the broker as guest.
    pub async fn publisher(&self, c: &str) -> Driver {
        Driver::stomp_connected(json!({"op":"connect","c":c,"url":self.ws_url(),
            "headers":{"login":"guest","passcode":"guest","host":"/"}}))
        .await
    }

    /// The state directory (RABBIT_DIR).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log (its console output).
    pub fn log_path(&self) -> &Path {
        self.child.log_path()
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("RABBIT_DIR", self.dir.path())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("STOMP_WS_PORT", self.ws_port.to_string())
            .env("STOMP_PORT", self.stomp_port.to_string())
            .env("AMQP_PORT", self.amqp_port.to_string())
            .env("DIST_PORT", self.dist_port.to_string());
    }

    /// Runs `rabbitmqctl <args>` against this node (slow: ~1 s, it boots an Erlang VM).
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("bash");
        cmd.arg(peers_dir().join("rabbitmq").join("ctl.sh"))
            .args(args)
            .stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run ctl.sh: {e}"))
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(peers_dir().join("rabbitmq").join("stop.sh"))
            .env("STOP_TIMEOUT", "3")
            .stdin(Stdio::null());
        self.env(&mut cmd);
        if let Ok(log) = OpenOptions::new().append(true).open(self.child.log_path()) {
            if let Ok(l2) = log.try_clone() {
                cmd.stdout(l2);
            }
            cmd.stderr(log);
        }
        let _ = cmd.status();
        // then `child` drops: SIGTERM/SIGKILL to whatever is left of the group.
    }
}

/// Whether Debian's rabbitmq-server is installed.
pub fn rabbitmq_installed() -> bool {
    Path::new(RABBITMQ_SERVER).exists()
}

/// Starts RabbitMQ (see [`start_rabbitmq_with`]).
pub fn start_rabbitmq() -> Option<Rabbit> {
    start_rabbitmq_with(&[])
}

/// Starts RabbitMQ with web-stomp on free ports and waits (up to 120 s) until its web-stomp
/// and AMQP listeners accept connections (~10 s). `extra_env` goes to start.sh, e.g.
/// `[("WEB_STOMP_WS_FRAME", "binary")]`.
///
/// Returns None (after printing why) when rabbitmq-server is not installed and `CI` is not
/// set, so a developer without it can still run the other tests; with `CI` set it panics.
pub fn start_rabbitmq_with(extra_env: &[(&str, &str)]) -> Option<Rabbit> {
    if !rabbitmq_installed() {
        let msg = format!(
            "{RABBITMQ_SERVER} not found: install Debian's rabbitmq-server (tests/run.sh does)"
        );
        if env_is_ci() {
            panic!("{msg}; CI is set, so RabbitMQ tests may not be skipped");
        }
        eprintln!("SKIPPED (RabbitMQ): {msg}");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("switchboard-rabbit-")
        .tempdir()
        .expect("temp dir for RabbitMQ");
    let (ws_port, stomp_port, amqp_port, dist_port, epmd_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut cmd = Command::new("bash");
    cmd.arg(peers_dir().join("rabbitmq").join("start.sh"))
        .env("RABBIT_DIR", dir.path())
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("STOMP_WS_PORT", ws_port.to_string())
        .env("STOMP_PORT", stomp_port.to_string())
        .env("AMQP_PORT", amqp_port.to_string())
        .env("DIST_PORT", dist_port.to_string())
        .env_remove("RABBITMQ_ALLOW_INPUT");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = Child::spawn("rabbitmq", cmd);
    child.discard_lines();
    let mut rabbit = Rabbit {
        child,
        dir,
        ws_port,
        stomp_port,
        amqp_port,
        dist_port,
        epmd_port,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for port in [ws_port, amqp_port] {
        loop {
            if let Some(status) = rabbit.child.try_wait() {
                panic!(
                    "RabbitMQ exited early ({status}); log {}:\n{}",
                    rabbit.log_path().display(),
                    rabbit.child.log_tail(60)
                );
            }
            if wait_port_blocking(port, Duration::from_millis(250)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "RabbitMQ did not listen on {port} within 120 s; log {}:\n{}",
                rabbit.log_path().display(),
                rabbit.child.log_tail(60)
            );
        }
    }
    Some(rabbit)
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// The `switchboard` binary run with a config file. Drop stops it (SIGTERM, SIGKILL after 3 s).
pub struct Proxy {
    child: Child,
    admin: SocketAddr,
    config: tempfile::NamedTempFile,
}

/// The `listen` address of the `[admin]` table in a TOML config (simple line scan).
pub fn admin_listen_of(config_toml: &str) -> Option<SocketAddr> {
    let mut in_admin = false;
    for line in config_toml.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_admin = l == "[admin]";
            continue;
        }
        if in_admin {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() == "listen" {
                    let v = v
                        .split('#')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .trim_matches(|c| c == '"' || c == '\'');
                    return v.parse().ok();
                }
            }
        }
    }
    None
}

impl Proxy {
    /// Writes `config_toml` to a temp file, runs `switchboard --config <file>` and waits until
    /// `GET /readyz` on the `[admin] listen` address (required in the config) answers 200.
    pub async fn start(config_toml: &str) -> Proxy {
        Self::start_with(config_toml, &[], &[]).await
    }

    /// Like [`Proxy::start`]; `args` go before `--config <file>`, `env` is added.
    pub async fn start_with(config_toml: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let admin = admin_listen_of(config_toml).unwrap_or_else(|| {
            panic!(
                "the test config must set `listen` under [admin] (use free_port()):\n{config_toml}"
            )
        });
        let mut config = tempfile::Builder::new()
            .prefix("switchboard-")
            .suffix(".toml")
            .tempfile()
            .expect("temp config file");
        config
            .write_all(config_toml.as_bytes())
            .expect("write config");
        config.flush().expect("flush config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(args)
            .arg("--config")
            .arg(config.path())
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1");
        // The config layers SWITCHBOARD_* variables over the file: only the test's own count.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SWITCHBOARD_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = Child::spawn("switchboard", cmd);
        child.discard_lines();
        let _ = std::fs::copy(config.path(), child.log_path().with_extension("toml"));
        let mut proxy = Proxy {
            child,
            admin,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = proxy.child.try_wait() {
                panic!(
                    "switchboard exited during start-up ({status}); log {}:\n{}",
                    proxy.log_path().display(),
                    proxy.child.log_tail(60)
                );
            }
            if let Ok((200, _)) = http_get(admin, "/readyz").await {
                return proxy;
            }
            assert!(
                Instant::now() < deadline,
                "switchboard not ready (GET http://{admin}/readyz != 200) within 20 s; log {}:\n{}",
                proxy.log_path().display(),
                proxy.child.log_tail(60)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The body of `GET /metrics` (panics unless 200).
    pub async fn metrics(&self) -> String {
        let (status, body) = http_get(self.admin, "/metrics")
            .await
            .unwrap_or_else(|e| panic!("GET http://{}/metrics: {e}", self.admin));
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// A metric's value on `/metrics`: for a bare name, the sum over all its series (many are
    /// exported at 0 from start-up, one per route and reason); for a name with labels
    /// written exactly as the exporter prints them, the first sample line that starts so.
    /// `None` when no sample matches.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let body = self.metrics().await;
        let mut samples = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()));
        if series.contains('{') {
            return samples.next();
        }
        samples.reduce(|a, b| a + b)
    }

    /// Waits up to `within` for a metric (as [`Proxy::metric`] reads it) to reach `at_least`;
    /// its last value. Message counts reach `/metrics` at a session's tick, not per message.
    pub async fn metric_reaches(&self, series: &str, at_least: f64, within: Duration) -> f64 {
        let until = Instant::now() + within;
        loop {
            let v = self.metric(series).await.unwrap_or(0.0);
            if v >= at_least || Instant::now() >= until {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM to the proxy (graceful shutdown).
    pub fn terminate(&mut self) {
        self.child.signal("TERM");
    }

    /// Waits up to `timeout` for the proxy to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(timeout).await
    }

    /// The proxy's log (stderr and stdout).
    pub fn log_path(&self) -> &Path {
        self.child.log_path()
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> &Path {
        self.config.path()
    }

    /// The process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket peers (for byte-level checks and fake backends)
// ---------------------------------------------------------------------------------------------

/// A raw tokio-tungstenite client connection.
pub type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw STOMP-over-WebSocket client offering `v12.stomp` (and a bearer token if given);
/// checks that the proxy picked it.
pub async fn raw_stomp_ws(url: &str, token: Option<&str>) -> RawWs {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v12.stomp"),
    );
    if let Some(t) = token {
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "v12.stomp"
    );
    ws
}

/// For a fake STOMP broker's `accept_hdr_async`: picks `v12.stomp` when offered, as a
/// broker does (the proxy offers it only to STOMP upstreams).
#[allow(clippy::result_large_err)] // The signature is tungstenite's `Callback`.
pub fn stomp_subprotocol(
    req: &tokio_tungstenite::tungstenite::handshake::server::Request,
    mut resp: tokio_tungstenite::tungstenite::handshake::server::Response,
) -> Result<
    tokio_tungstenite::tungstenite::handshake::server::Response,
    tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
> {
    let offered = req
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "v12.stomp"));
    if offered {
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("v12.stomp"),
        );
    }
    Ok(resp)
}

/// The next STOMP frame from the proxy, skipping heart-beat EOLs.
pub async fn next_frame(ws: &mut RawWs) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), futures_util::StreamExt::next(ws))
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) if t.trim().is_empty() => {}
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                return t.as_str().to_owned();
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => {
                return String::from_utf8_lossy(&b).into_owned();
            }
            other => panic!("expected a STOMP frame, got {other:?}"),
        }
    }
}

/// The close frame's code, once the proxy closes.
pub async fn close_code(ws: &mut RawWs) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), futures_util::StreamExt::next(ws))
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
                return u16::from(f.code);
            }
            Some(Ok(
                tokio_tungstenite::tungstenite::Message::Ping(_)
                | tokio_tungstenite::tungstenite::Message::Pong(_),
            )) => {}
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) if t.trim().is_empty() => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// CONNECT without heart-beats, then CONNECTED.
pub async fn stomp_connect(ws: &mut RawWs) {
    futures_util::SinkExt::send(
        ws,
        tokio_tungstenite::tungstenite::Message::text(
            "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0",
        ),
    )
    .await
    .unwrap();
    let f = next_frame(ws).await;
    assert!(f.starts_with("CONNECTED\n"), "{f}");
}

// ---------------------------------------------------------------------------------------------
// Pusher Channels: soketi, the pusher-js driver, the HTTP API
// ---------------------------------------------------------------------------------------------

/// soketi's default app (tests/peers/soketi/start.sh), also the pusher_driver.js defaults.
pub const PUSHER_APP_ID: &str = "app-id";
/// The default app's key.
pub const PUSHER_APP_KEY: &str = "app-key";
/// The default app's secret (signs channel auth and HTTP API requests).
pub const PUSHER_APP_SECRET: &str = "app-secret";

/// A soketi 1.6.1 server (Pusher Channels protocol 7) on free loopback ports: WebSocket and
/// HTTP API on `port`, its `/usage` server on `metrics_port`, its UDP cluster discovery on
/// `cluster_port`, all bound to 127.0.0.1. Default app `app-id`/`app-key`/`app-secret` with
/// client events enabled. Drop stops it (SIGTERM to its group, SIGKILL after 3 s).
pub struct Soketi {
    child: Child,
    /// WebSocket (`ws://127.0.0.1:<port>/app/app-key`) and HTTP API.
    pub port: u16,
    /// `/usage`, `/ready` (and `/metrics` with `SOKETI_METRICS_ENABLED=true`).
    pub metrics_port: u16,
    /// UDP discovery (node-discover; soketi always runs it).
    pub cluster_port: u16,
}

impl Soketi {
    /// The URL pusher-js 8.6 dials for the default app.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/app/{PUSHER_APP_KEY}?protocol=7&client=js&version=8.6.0&flash=false",
            self.port
        )
    }

    /// A pusher_driver.js `connect` command for client `c` on this server, signing private and
    /// presence channels with the app secret. Add fields (`userId`, `userInfo`, `forgeAuth`, ...)
    /// to the returned object as needed.
    pub fn connect_cmd(&self, c: &str) -> Value {
        pusher_connect_cmd(c, self.port)
    }

    /// Triggers `event` on `channel` through soketi's HTTP API (`POST /apps/app-id/events`,
    /// signed with the app secret); panics unless HTTP 200. Returns the answer's body.
    pub async fn trigger(&self, channel: &str, event: &str, data: Value) -> Value {
        pusher_trigger(self.port, channel, event, data).await
    }

    /// Any HTTP API request (see [`pusher_rest`]).
    pub async fn rest(&self, req: Value) -> (u16, Value) {
        pusher_rest(self.port, req).await
    }

    /// soketi's console output.
    pub fn log_path(&self) -> &Path {
        self.child.log_path()
    }

    /// The process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Starts soketi (see [`start_soketi_with`]).
pub fn start_soketi() -> Soketi {
    start_soketi_with(&[])
}

/// Starts `tests/peers/soketi/start.sh` on free ports and waits until its HTTP server answers
/// `GET /` with `OK` (~2 s). `extra_env` goes to start.sh, e.g.
/// `[("SOKETI_DEFAULT_APP_MAX_CONNECTIONS", "1"), ("SOKETI_DEBUG", "true")]`; SOKETI_*
/// variables of the calling environment are removed first. soketi prints that it is up even
/// when a port was taken meanwhile, so a server that does not answer is restarted on new ports
/// (three tries).
pub fn start_soketi_with(extra_env: &[(&str, &str)]) -> Soketi {
    ensure_npm();
    let mut last_log = String::new();
    for _attempt in 0..3 {
        let (port, metrics_port, cluster_port) = (free_port(), free_port(), free_port());
        let mut cmd = Command::new("bash");
        cmd.arg(peers_dir().join("soketi").join("start.sh"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SOKETI_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("PORT", port.to_string())
            .env("METRICS_PORT", metrics_port.to_string())
            .env("CLUSTER_PORT", cluster_port.to_string());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = Child::spawn("soketi", cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        // The banner comes after both listen() calls, whether or not they succeeded.
        let mut up = false;
        while Instant::now() < deadline {
            match child.next_line_blocking(Duration::from_millis(200)) {
                Some(l) if l.contains("Server is up and running") => {
                    up = true;
                    break;
                }
                Some(_) => {}
                None => {
                    if let Some(status) = child.try_wait() {
                        panic!(
                            "soketi exited during start-up ({status}); log {}:\n{}",
                            child.log_path().display(),
                            child.log_tail(60)
                        );
                    }
                }
            }
        }
        assert!(
            up,
            "soketi did not start within 30 s; log {}:\n{}",
            child.log_path().display(),
            child.log_tail(60)
        );
        child.discard_lines();
        let probe_until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < probe_until {
            if let Some((200, body)) = http_get_blocking(port, "/") {
                if body.trim() == "OK" {
                    return Soketi {
                        child,
                        port,
                        metrics_port,
                        cluster_port,
                    };
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        last_log = format!("{}:\n{}", child.log_path().display(), child.log_tail(30));
        // dropping `child` stops it; try new ports
    }
    panic!("soketi never answered GET / on its port (3 tries); last log {last_log}");
}

/// A blocking `GET path` on 127.0.0.1:`port` (for sync set-up code).
pub fn http_get_blocking(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    parse_http_response(&raw)
}

/// A pusher_driver.js `connect` command for client `c` to a Pusher server on
/// 127.0.0.1:`port` with the default app key, signing private and presence channels locally
/// with the default secret.
pub fn pusher_connect_cmd(c: &str, port: u16) -> Value {
    json!({
        "op": "connect",
        "c": c,
        "port": port,
        "key": PUSHER_APP_KEY,
        "authSecret": PUSHER_APP_SECRET,
    })
}

async fn pusher_rest_node(req: &Value) -> Value {
    ensure_npm();
    let run = tokio::process::Command::new("node")
        .arg("pusher_rest.js")
        .arg(req.to_string())
        .current_dir(peers_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("node pusher_rest.js {req}: no answer within 30 s"))
        .unwrap_or_else(|e| panic!("cannot run node pusher_rest.js: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "node pusher_rest.js {req}: bad output ({e}) {stdout:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && v.get("error").is_none(),
        "node pusher_rest.js {req} failed ({}): {v}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

/// One Pusher HTTP API request to 127.0.0.1:`port`, signed by the `pusher` npm library
/// (`node tests/peers/pusher_rest.js`, ~0.3 s). `req` holds the fields of pusher_rest.js
/// without `port`: `{"op":"trigger","channel","event","data","socketId"?}`,
/// `{"op":"get","path":"/channels","params"?}`, `{"op":"batch","batch":[..]}`,
/// `{"op":"post","path","body"}`; `appId`/`key`/`secret` default to the soketi app. Returns
/// (HTTP status, body as JSON, or a JSON string when not JSON); panics only when the request
/// could not be made.
pub async fn pusher_rest(port: u16, mut req: Value) -> (u16, Value) {
    req["port"] = json!(port);
    let v = pusher_rest_node(&req).await;
    let status = v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or_else(|| panic!("pusher_rest.js answer without status: {v}"));
    (status, v["body"].clone())
}

/// Triggers `event` with `data` on `channel` through the HTTP API at 127.0.0.1:`port`
/// (`POST /apps/app-id/events`; the library sends `data` JSON-encoded as a string); panics
/// unless HTTP 200. Returns the answer's body.
pub async fn pusher_trigger(port: u16, channel: &str, event: &str, data: Value) -> Value {
    let req = json!({"op": "trigger", "channel": channel, "event": event, "data": data});
    let (status, body) = pusher_rest(port, req).await;
    assert_eq!(
        status, 200,
        "trigger {event} on {channel} at port {port}: {body}"
    );
    body
}

/// The subscription auth a Pusher auth endpoint answers for `socket_id` on `channel` with the
/// default app secret: `{"auth":"app-key:<hex HMAC-SHA256>"}`, plus `channel_data` when
/// `presence` is `Some((user_id, user_info))`. Signed by the `pusher` npm library, which
/// refuses a socket_id that is not `<digits>.<digits>` (then this panics).
pub async fn pusher_channel_auth(
    socket_id: &str,
    channel: &str,
    presence: Option<(&str, Value)>,
) -> Value {
    let mut req = json!({"op": "auth", "port": 0, "socketId": socket_id, "channel": channel});
    if let Some((user_id, user_info)) = presence {
        req["userId"] = json!(user_id);
        req["userInfo"] = user_info;
    }
    pusher_rest_node(&req).await["body"].clone()
}

impl Driver {
    /// `node pusher_driver.js` (pusher-js 8.6 clients), ready.
    pub async fn pusher() -> Driver {
        Self::spawn("pusher_driver.js").await
    }
}

/// Waits until pusher_driver.js client `c` is connected; returns its socket id, checked to
/// be in Pusher's `<digits>.<digits>` form.
pub async fn pusher_connected(d: &mut Driver, c: &str) -> String {
    let ev = d
        .expect(Duration::from_secs(10), |v| {
            v["c"] == c && v["ev"] == "state" && v["current"] == "connected"
        })
        .await;
    let id = ev["socketId"].as_str().unwrap().to_owned();
    let (a, b) = id.split_once('.').unwrap();
    assert!(
        !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|x| x.is_ascii_digit()),
        "socket_id in Pusher's form: {id}"
    );
    id
}

/// The outcome of client `c`'s subscription to `channel`: `subscription_succeeded` or
/// `subscription_error`.
pub async fn pusher_subscribed(d: &mut Driver, c: &str, channel: &str) -> Value {
    d.expect(Duration::from_secs(10), |v| {
        v["c"] == c
            && v["channel"] == channel
            && (v["ev"] == "subscription_succeeded" || v["ev"] == "subscription_error")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// SocketCluster: sc_backend.js (socketcluster-server 9.1.3 / 20.0.1), sc_driver.js
// (socketcluster-client 9.0.4 / 20.0.2)
// ---------------------------------------------------------------------------------------------

/// sc_backend.js's default secret (HS256 JWTs for `#handshake` / `#authenticate`).
pub const SC_SECRET: &str = "test-secret";

/// Starts `node sc_backend.js 0 --version <version> --protocol <protocol> <args>` (args e.g.
/// `&["--secret", "s", "--ping-interval", "300", "--ping-timeout", "1000", "--ack-timeout",
/// "2000"]`) and waits for `READY <port>`. Version 9 speaks protocol 1 only; version 20 either.
/// Returns the process and its port: WebSocket `ws://127.0.0.1:<port>/socketcluster/`, control
/// API `http://127.0.0.1:<port>/control/...` (see [`sc_control`]).
pub fn start_sc_backend(version: u32, protocol: u32, args: &[&str]) -> (Child, u16) {
    let mut cmd = node_command("sc_backend.js");
    cmd.arg("0")
        .args(["--version", &version.to_string()])
        .args(["--protocol", &protocol.to_string()])
        .args(args);
    let mut child = Child::spawn(&format!("sc_backend{version}"), cmd);
    let line = child.wait_line_blocking(Duration::from_secs(20), |l| l.starts_with("READY "));
    let port: u16 = line["READY ".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad READY line {line:?}: {e}"));
    (child, port)
}

/// One request to sc_backend.js's control API at 127.0.0.1:`port`; `path` is relative to
/// `/control/` (`"publish"`, `"emit"`, `"kick-out"`, `"disconnect"`, `"received"`,
/// `"clients"`, `"closures"`, `"reset"`) or absolute (`"/control/publish"`). Panics unless
/// the answer is 2xx JSON.
pub async fn sc_control(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/control/{path}")
    };
    http_json(port, method, &path, body).await
}

/// `GET /control/received`: every packet the backend received (pongs excepted), as
/// `[{id, urn, event, data, cid?, batch?}]`, `[{id, urn, rid, data?, error?}]`, `[{id, urn, raw}]`.
pub async fn sc_received(port: u16) -> Vec<Value> {
    match sc_control(port, "GET", "received", None).await {
        Value::Array(a) => a,
        other => panic!("unexpected /control/received answer {other}"),
    }
}

/// `GET /control/clients`: `[{id, urn, authToken, subscriptions, url, state}]`.
pub async fn sc_clients(port: u16) -> Vec<Value> {
    match sc_control(port, "GET", "clients", None).await {
        Value::Array(a) => a,
        other => panic!("unexpected /control/clients answer {other}"),
    }
}

/// An sc_driver.js `connect` command for client `c` to 127.0.0.1:`port` (path
/// `/socketcluster/`, no auto-reconnect). Add fields (`authToken`, `query`, `ackTimeout`,
/// `events`, `rawFrames`, ...) to the returned object as needed.
pub fn sc_connect_cmd(c: &str, port: u16, version: u32, protocol: u32) -> Value {
    json!({
        "op": "connect",
        "c": c,
        "port": port,
        "version": version,
        "protocol": protocol,
    })
}

impl Driver {
    /// `node sc_driver.js` (socketcluster-client 9 and 20 clients), ready.
    pub async fn sc() -> Driver {
        Self::spawn("sc_driver.js").await
    }
}

/// Waits until sc_driver.js client `c` finished its handshake; returns the `connect` event
/// (`id`, `isAuthenticated`, `authError`, `pingTimeout`). Panics on `connectAbort` first.
pub async fn sc_connected(d: &mut Driver, c: &str) -> Value {
    let ev = d
        .expect(Duration::from_secs(10), |v| {
            v["c"] == c && (v["ev"] == "connect" || v["ev"] == "connectAbort")
        })
        .await;
    assert_eq!(ev["ev"], "connect", "client {c} did not connect: {ev}");
    assert!(
        ev["id"].as_str().is_some_and(|s| !s.is_empty()),
        "socket id: {ev}"
    );
    ev
}

/// The `ack` event of client `c` for `req_id` (`{error, data}`).
pub async fn sc_ack(d: &mut Driver, c: &str, req_id: u64) -> Value {
    d.expect(Duration::from_secs(15), |v| {
        v["c"] == c && v["ev"] == "ack" && v["reqId"] == req_id
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Rails Action Cable: tests/peers/actioncable (Debian ruby-actioncable 6.1 on puma 5.6) and
// cable_driver.js (@rails/actioncable 8.1)
// ---------------------------------------------------------------------------------------------

/// Token of member `m1` on the test Action Cable server (`?token=`, `Authorization: Bearer`,
/// cookie `member_token` or subprotocol `token.<t>`).
pub const CABLE_TOKEN_M1: &str = "good-token";
/// Token of member `m2`.
pub const CABLE_TOKEN_M2: &str = "other-token";
/// Token of member `m3`.
pub const CABLE_TOKEN_M3: &str = "third-token";

/// The standalone Rails Action Cable server of `tests/peers/actioncable` (see its config.ru for
/// channels, streams, actions and tokens) on a free loopback port: WebSocket
/// `ws://127.0.0.1:<port>/cable`, control API `http://127.0.0.1:<port>/control/...`. Drop stops
/// it (SIGTERM to its process group, SIGKILL after 3 s).
pub struct Cable {
    child: Child,
    /// WebSocket (`/cable`) and control API (`/control/...`).
    pub port: u16,
}

impl Cable {
    /// `ws://127.0.0.1:<port>/cable`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/cable", self.port)
    }

    /// `ws://127.0.0.1:<port>/cable?token=<token>`.
    pub fn url_with_token(&self, token: &str) -> String {
        format!("{}?token={token}", self.url())
    }

    /// A cable_driver.js `connect` command for client `c` to this server with `token` as a query
    /// parameter (none: the server rejects the connection as unauthorized). Add fields
    /// (`headers`, `origin`, `subprotocols`, `frames`, `pings`) to the returned object as needed.
    pub fn connect_cmd(&self, c: &str, token: Option<&str>) -> Value {
        let url = match token {
            Some(t) => self.url_with_token(t),
            None => self.url(),
        };
        json!({ "op": "connect", "c": c, "url": url })
    }

    /// One request to the control API; `path` relative to `/control/` (`"broadcast"`,
    /// `"performed"`, `"events"`, `"connections"`, `"disconnect"`, `"restart"`, `"reset"`).
    /// Panics unless the answer is 2xx JSON.
    pub async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/control/{}", path.trim_start_matches('/'));
        http_json(self.port, method, &path, body).await
    }

    /// `ActionCable.server.broadcast(stream, data)` (`POST /control/broadcast`), e.g.
    /// `broadcast("notifications:m1", json!({"event": "newNotification", "notification": {..}}))`.
    /// Returns `{ok, stream}`.
    pub async fn broadcast(&self, stream: &str, data: Value) -> Value {
        self.control(
            "POST",
            "broadcast",
            Some(json!({ "stream": stream, "data": data })),
        )
        .await
    }

    /// Every perform the server received, in order (unknown actions and `receive` included):
    /// `[{member, channel, identifier, params, action, data, known, at}]`; `identifier` is the
    /// wire string, `data` the decoded `data` (with `action`).
    pub async fn performed(&self) -> Vec<Value> {
        match self.control("GET", "performed", None).await {
            Value::Array(a) => a,
            other => panic!("unexpected /control/performed answer {other}"),
        }
    }

    /// Connection and subscription events: `[{type, member, identifier?, streams?, via?, at}]`
    /// with type `connect`, `unauthorized`, `disconnect`, `subscribed`, `rejected`,
    /// `unsubscribed` (Rails also runs `unsubscribed` for a rejected subscription).
    pub async fn events(&self) -> Vec<Value> {
        match self.control("GET", "events", None).await {
            Value::Array(a) => a,
            other => panic!("unexpected /control/events answer {other}"),
        }
    }

    /// Open connections: `[{member, identifier, started_at, subscriptions}]`.
    pub async fn connections(&self) -> Vec<Value> {
        match self.control("GET", "connections", None).await {
            Value::Array(a) => a,
            other => panic!("unexpected /control/connections answer {other}"),
        }
    }

    /// `ActionCable.server.remote_connections.where(current_member: member).disconnect(reconnect:)`:
    /// each of the member's connections gets `{"type":"disconnect","reason":"remote",
    /// "reconnect":<reconnect>}` and a close (Rails 7.1+ behaviour, backported in config.ru).
    pub async fn disconnect(&self, member: &str, reconnect: bool) -> Value {
        self.control(
            "POST",
            "disconnect",
            Some(json!({ "member": member, "reconnect": reconnect })),
        )
        .await
    }

    /// `ActionCable.server.restart`: every connection gets `{"type":"disconnect",
    /// "reason":"server_restart","reconnect":true}` and a close.
    pub async fn restart(&self) -> Value {
        self.control("POST", "restart", None).await
    }

    /// Clears the performed and events lists.
    pub async fn reset(&self) -> Value {
        self.control("POST", "reset", None).await
    }

    /// The server's log (puma and Action Cable).
    pub fn log_path(&self) -> &Path {
        self.child.log_path()
    }

    /// The process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Whether Ruby with Debian's ruby-actioncable and puma is installed.
pub fn cable_installed() -> bool {
    Command::new("ruby")
        .args(["-e", "require 'action_cable'; require 'puma'"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts the Action Cable server (see [`start_cable_with`]).
pub fn start_cable() -> Cable {
    start_cable_with(&[])
}

/// Starts `tests/peers/actioncable/start.sh 0` and waits for `READY <port>` (~0.5 s).
/// `extra_env` goes to start.sh, e.g. `[("CABLE_ALLOW_ANY_ORIGIN", "1")]`,
/// `[("CABLE_BEAT_INTERVAL", "0")]` (no pings), `[("CABLE_TOKENS", "tok=m9")]`,
/// `[("CABLE_LOG_LEVEL", "debug")]`; CABLE_* variables of the calling environment are removed
/// first. Panics (with an install hint) when ruby-actioncable or puma is missing.
pub fn start_cable_with(extra_env: &[(&str, &str)]) -> Cable {
    assert!(
        cable_installed(),
        "ruby with action_cable and puma not found: install the Debian packages ruby-actioncable and puma (tests/run.sh does)"
    );
    let mut cmd = Command::new("bash");
    cmd.arg(peers_dir().join("actioncable").join("start.sh"))
        .arg("0");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CABLE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = Child::spawn("actioncable", cmd);
    let line = child.wait_line_blocking(Duration::from_secs(30), |l| l.starts_with("READY "));
    let port: u16 = line["READY ".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad READY line {line:?}: {e}"));
    Cable { child, port }
}

impl Driver {
    /// `node cable_driver.js` (@rails/actioncable 8.1 consumers), ready.
    pub async fn cable() -> Driver {
        Self::spawn("cable_driver.js").await
    }
}

/// Waits until cable_driver.js client `c` got a `{"type":"welcome"}`; returns the `connected`
/// event (`reconnected`, `count`). Panics if the client is disconnected first.
pub async fn cable_connected(d: &mut Driver, c: &str) -> Value {
    let ev = d
        .expect(Duration::from_secs(10), |v| {
            v["c"] == c && (v["ev"] == "connected" || v["ev"] == "disconnected")
        })
        .await;
    assert_eq!(ev["ev"], "connected", "client {c} did not connect: {ev}");
    ev
}

/// Subscribes client `c` to `identifier` (`{"channel": .., params..}`) and waits for the
/// confirmation; returns the `confirm` event. Panics on a rejection.
pub async fn cable_subscribe(d: &mut Driver, c: &str, identifier: Value) -> Value {
    d.send(json!({ "op": "subscribe", "c": c, "identifier": identifier }))
        .await;
    let ev = cable_subscription_answer(d, c, &identifier).await;
    assert_eq!(
        ev["ev"], "confirm",
        "client {c} not subscribed to {identifier}: {ev}"
    );
    ev
}

/// The `confirm` or `reject` event of client `c` for `identifier`.
pub async fn cable_subscription_answer(d: &mut Driver, c: &str, identifier: &Value) -> Value {
    d.expect(Duration::from_secs(10), |v| {
        v["c"] == c
            && (v["ev"] == "confirm" || v["ev"] == "reject")
            && v["identifier"] == *identifier
    })
    .await
}

/// The next `received` event of client `c` on `identifier` whose data matches `pred`; returns
/// its `data`.
pub async fn cable_received(
    d: &mut Driver,
    c: &str,
    identifier: &Value,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let ev = d
        .expect(Duration::from_secs(10), |v| {
            v["c"] == c
                && v["ev"] == "received"
                && v["identifier"] == *identifier
                && pred(&v["data"])
        })
        .await;
    ev["data"].clone()
}

// ---------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------

impl Driver {
    /// Like [`Driver::spawn`] with extra environment for node (e.g. `NODE_EXTRA_CA_CERTS`, so
    /// its clients trust a test CA).
    pub async fn spawn_with_env(script: &str, env: &[(&str, &str)]) -> Driver {
        let name = script.trim_end_matches(".js");
        let mut cmd = node_command(script);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = Child::spawn_with_stdin(name, cmd);
        let stdin = child.take_stdin().expect("driver stdin");
        let mut d = Driver {
            child,
            stdin,
            backlog: VecDeque::new(),
            recent: VecDeque::new(),
        };
        d.expect(Duration::from_secs(20), |v| v["ev"] == "ready")
            .await;
        d
    }
}

impl Proxy {
    /// Replaces the config file the proxy runs with (a reload then reads it).
    pub fn rewrite_config(&self, config_toml: &str) {
        std::fs::write(self.config_path(), config_toml).expect("rewrite config");
    }

    /// `switchboard reload <config file>` against this proxy: (exit code, stdout, stderr).
    pub fn reload_cli(&self) -> (Option<i32>, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("reload")
            .arg(self.config_path())
            .output()
            .expect("run switchboard reload");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// SIGHUP to the proxy, then waits (up to 10 s) until `switchboard_config_reloads_total`
    /// counts one more reload of either outcome.
    pub async fn sighup_and_wait(&mut self) {
        const RELOADS: &str = "switchboard_config_reloads_total";
        let before = self.metric(RELOADS).await.unwrap_or(0.0);
        assert!(self.child.signal("HUP"), "cannot signal the proxy");
        let after = self
            .metric_reaches(RELOADS, before + 1.0, Duration::from_secs(10))
            .await;
        assert!(
            after > before,
            "no reload counted within 10 s of SIGHUP; log {}:\n{}",
            self.log_path().display(),
            self.child.log_tail(30)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Redis (Debian `redis-server`), for the hub across instances
// ---------------------------------------------------------------------------------------------

/// A `redis-server` on a free loopback port, without persistence (`--save ''
/// --appendonly no`), in its own temp dir. Stopped (by PID) on drop; [`Redis::stop`] and
/// [`Redis::start_again`] take it down and bring it back on the same port, empty.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// Whether `redis-server` is on the PATH (tests/run.sh installs Debian's).
pub fn redis_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts a `redis-server` (panics when it is not installed or does not come up).
pub fn start_redis() -> Redis {
    assert!(
        redis_installed(),
        "redis-server is not installed (tests/run.sh installs Debian's redis-server)"
    );
    let mut r = Redis {
        child: None,
        port: free_port(),
        dir: tempfile::tempdir().expect("redis temp dir"),
    };
    r.start_again();
    r
}

impl Redis {
    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL by PID): clients see their connections reset.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.signal("KILL");
            c.kill();
        }
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn start_again(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        let mut child = Child::spawn("redis-server", cmd);
        child.discard_lines();
        assert!(
            wait_port_blocking(self.port, Duration::from_secs(10)),
            "redis-server did not listen on {} within 10 s; log {}:\n{}",
            self.port,
            child.log_path().display(),
            child.log_tail(30)
        );
        self.child = Some(child);
    }

    /// Runs `redis-cli -p <port> <args>` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The embedded hub
// ---------------------------------------------------------------------------------------------

/// `[[route]]` tables on the embedded hub, one per dialect in `clients` (named after it), all
/// on `port`; the Pusher one with the test app's key and secret. `extra` closes each route
/// (a `[route.auth]` table, say).
pub fn hub_routes(port: u16, clients: &[&str], extra: &str) -> String {
    let mut out = String::new();
    for c in clients {
        let path = if *c == "stomp" {
            "path = \"/ws\"\n"
        } else {
            ""
        };
        let pusher = if *c == "pusher" {
            format!(
                "[route.pusher]\napp_key = \"{PUSHER_APP_KEY}\"\napp_secret = \"{PUSHER_APP_SECRET}\"\n"
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "\n[[route]]\nname = \"{c}\"\nlisten = \"127.0.0.1:{port}\"\n{path}client = \"{c}\"\n{pusher}[route.upstream]\ndialect = \"hub\"\n{extra}"
        ));
    }
    out
}

/// A message with nested JSON and unicode, as the health-records guide's Message object.
pub fn guide_message(n: u64, from: &str) -> Value {
    json!({
        "id": n,
        "from": from,
        "text": "héllo ✓ 🎉 \"quoted\" \\ back",
        "author": {"name": "Zoë Ångström", "roles": ["doctor", "admin"]},
        "attachments": [{"kind": "note", "meta": {"pages": 2, "draft": false, "x": null}}],
    })
}
