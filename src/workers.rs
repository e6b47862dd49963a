//! Session workers: one single-threaded runtime per core, each running the connections handed
//! to it from accept to the end of their sessions.
//!
//! Owns: the worker threads and their runtimes, the choice of worker for a new connection
//! (round robin), moving an accepted socket onto its worker's reactor, and stopping the
//! workers when the server is dropped.
//!
//! Must not touch: HTTP, sessions, routes. It runs what the listener gives it.
//!
//! Why: on one multi-threaded runtime a message crossing a session hopped between worker
//! threads (a wake-up, a futex, a context switch), and idle workers woke to steal work: most
//! of the proxy's CPU per message was the kernel's. Here a connection, its session, its
//! upstream socket and their timers live on one thread, as in nginx's worker model, and a
//! message costs its reads and writes. What crosses workers (the embedded hub, the admin
//! endpoint, reloads) goes through channels and shared state, as before.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    /// A worker's runtime or thread could not be created.
    #[error("cannot start session worker {index}: {source}")]
    Start {
        /// Which worker.
        index: usize,
        /// Why.
        source: std::io::Error,
    },
}

/// The session workers. Cloned cheaply; the threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Workers {
    /// `n` workers (0: one per core). With none started (`inline`), connections run on the
    /// caller's runtime.
    pub fn start(n: usize) -> Result<Self, WorkersError> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |p| p.get())
        } else {
            n
        };
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n);
        for index in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| WorkersError::Start { index, source })?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("switchboard-worker-{index}"))
                .spawn(move || rt.block_on(stop.cancelled()))
                .map_err(|source| WorkersError::Start { index, source })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                handles,
                next: AtomicUsize::new(0),
                stop,
            }),
        })
    }

    /// No workers of their own: everything runs on the runtime that spawns it (tests that
    /// drive the server in process, on their own runtime).
    pub fn inline() -> Self {
        Self {
            inner: Arc::new(Inner {
                handles: Vec::new(),
                next: AtomicUsize::new(0),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// How many workers run sessions (0: inline).
    pub fn len(&self) -> usize {
        self.inner.handles.len()
    }

    /// Whether connections run on the spawning runtime.
    pub fn is_empty(&self) -> bool {
        self.inner.handles.is_empty()
    }

    /// Run an accepted connection on the next worker, tracked by `tracker`. The socket is
    /// moved onto that worker's reactor, so its readiness wakes that thread alone.
    pub fn spawn_conn<F, Fut>(&self, tracker: &TaskTracker, tcp: tokio::net::TcpStream, run: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handles = &self.inner.handles;
        if handles.is_empty() {
            tracker.spawn(run(tcp));
            return;
        }
        // Deregistered from the accepting runtime's reactor, registered on the worker's.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a worker");
                return;
            }
        };
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % handles.len();
        tracker.spawn_on(
            async move {
                match tokio::net::TcpStream::from_std(std) {
                    Ok(tcp) => run(tcp).await,
                    Err(e) => tracing::warn!(error = %e, "cannot register a connection"),
                }
            },
            &handles[i],
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Connections are spread over the workers, each running on its worker's thread with
    /// the socket registered there (it can still be read), and the tracker sees them.
    #[tokio::test]
    async fn connections_run_on_their_worker_threads_round_robin() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let tracker = TaskTracker::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.spawn_conn(&tracker, tcp, move |mut tcp| async move {
                let mut b = [0u8; 1];
                tcp.read_exact(&mut b).await.unwrap();
                let name = std::thread::current().name().map(str::to_owned);
                tx.send((name, b[0])).unwrap();
            });
            c.write_all(b"x").await.unwrap();
            clients.push(c);
        }
        let mut names = Vec::new();
        for _ in 0..4 {
            let (name, b) = rx.recv().await.unwrap();
            assert_eq!(b, b'x');
            names.push(name.unwrap());
        }
        tracker.close();
        tracker.wait().await;
        names.sort();
        assert_eq!(
            names,
            [
                "switchboard-worker-0",
                "switchboard-worker-0",
                "switchboard-worker-1",
                "switchboard-worker-1"
            ]
        );
    }
}
