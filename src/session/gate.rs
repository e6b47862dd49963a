//! Wakers that tell whether what they were given to was woken since it was last polled, so
//! the pump polls a socket or a timer again only when it has something new.
//!
//! Why: the pump's `select!` polls every branch whenever its task wakes, and a pending
//! branch that is polled again still goes down all its layers. A socket's read that finds
//! nothing costs about 400 instructions (the framing, the upgraded connection, the socket's
//! readiness); a pending timer re-registers its waker with the timer driver, a pending
//! cancellation looks at the token's tree and its waiter list (together about 900
//! instructions per round trip, callgrind, STOMP → Socket.IO). Given a [`Gate`]'s waker
//! instead of the task's, the inner future or socket marks the gate woken and wakes the task;
//! one that was pending and has not been woken since has nothing new, so it is not polled.
//!
//! Owns: [`Gate`] and [`Gated`]. Must not touch: what the gated futures or sockets do.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use futures_util::task::{ArcWake, AtomicWaker, WakerRef, waker_ref};

/// What a gate's waker reaches: the mark and the task to wake.
struct Tap {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Tap {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.woken.store(true, Ordering::Release);
        arc_self.task.wake();
    }
}

/// The task's side of a tap.
pub(super) struct Gate {
    tap: Arc<Tap>,
    /// The task waker last registered with the tap (to tell whether it changed).
    registered: Option<Waker>,
}

impl Gate {
    pub(super) fn new() -> Self {
        Self {
            tap: Arc::new(Tap {
                woken: AtomicBool::new(false),
                task: AtomicWaker::new(),
            }),
            registered: None,
        }
    }

    /// Whether the gate's waker was woken since the last call; `cx`'s waker is what it wakes
    /// from now on.
    ///
    /// The tap keeps the task's waker until it fires (a wake takes it, after setting the
    /// mark), so the waker is registered again only when the tap fired or the task's waker
    /// changed: registering (two atomic read-modify-writes) and clearing the mark (one) on
    /// every poll were most of a pending branch's cost. The mark is cleared before the waker
    /// is registered again, so a wake in between leaves it set for the next call; a wake
    /// after it finds the waker in place.
    #[inline]
    fn enter(&mut self, cx: &Context<'_>) -> bool {
        let woken =
            self.tap.woken.load(Ordering::Acquire) && self.tap.woken.swap(false, Ordering::AcqRel);
        let same = self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if woken || !same {
            self.tap.task.register(cx.waker());
        }
        if !same {
            self.registered = Some(cx.waker().clone());
        }
        woken
    }

    /// The waker to poll the gated future or socket with: the same data and vtable every
    /// time, so their own registrations find it unchanged and keep it without a clone.
    fn waker(&self) -> WakerRef<'_> {
        waker_ref(&self.tap)
    }

    /// Poll through the gate: `poll` is called with the gate's waker unless its last call was
    /// `Pending` (`idle`) and nothing woke the gate since. After `Ready` the next call polls
    /// again (what completed may have used up its registration).
    #[inline]
    pub(super) fn poll<T>(
        &mut self,
        idle: &mut bool,
        cx: &Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let woken = self.enter(cx);
        if *idle && !woken {
            return Poll::Pending;
        }
        let waker = self.waker();
        let r = poll(&mut Context::from_waker(&waker));
        *idle = r.is_pending();
        r
    }
}

/// A future polled again after a `Pending` only when its own waker fired or it was changed
/// ([`Gated::get_mut`]: a timer that was reset). After `Ready` it is polled as any future
/// (what completed may have consumed its registration).
pub(super) struct Gated<F> {
    gate: Gate,
    /// The last poll of `fut` was `Pending` (and it was not changed since).
    idle: bool,
    fut: F,
}

impl<F> Gated<F> {
    pub(super) fn new(fut: F) -> Self {
        Self {
            gate: Gate::new(),
            idle: false,
            fut,
        }
    }

    /// The future, to change it: it is polled at the next turn whatever woke the task.
    pub(super) fn get_mut(&mut self) -> &mut F {
        self.idle = false;
        &mut self.fut
    }
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let fut = &mut this.fut;
        this.gate
            .poll(&mut this.idle, cx, |cx| Pin::new(fut).poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A gated timer fires once its time comes, also after a reset to a later time, and a
    /// gated future that was woken is polled again.
    #[tokio::test]
    async fn a_gated_timer_and_a_gated_future_complete() {
        let sleep = tokio::time::sleep(Duration::from_millis(50));
        tokio::pin!(sleep);
        let mut g = Gated::new(sleep.as_mut());
        // Pending, and again without being woken: the inner timer is not polled.
        assert!(futures_util::poll!(&mut g).is_pending());
        assert!(futures_util::poll!(&mut g).is_pending());
        g.get_mut()
            .as_mut()
            .reset(tokio::time::Instant::now() + Duration::from_millis(100));
        let t0 = tokio::time::Instant::now();
        (&mut g).await;
        assert!(t0.elapsed() >= Duration::from_millis(100));

        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut g = Gated::new(rx);
        assert!(futures_util::poll!(&mut g).is_pending());
        let got = tokio::spawn(g);
        tokio::task::yield_now().await;
        let _ = tx.send(7);
        assert_eq!(got.await.ok().and_then(Result::ok), Some(7));
    }

    /// A count bumped from another thread; the future is ready while the count is ahead of
    /// what it saw, and registers the waker it is given otherwise.
    struct Ahead {
        src: Arc<(std::sync::atomic::AtomicU64, AtomicWaker)>,
        seen: u64,
    }

    impl Future for Ahead {
        type Output = u64;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
            self.src.1.register(cx.waker());
            let n = self.src.0.load(Ordering::Acquire);
            if n > self.seen {
                self.seen = n;
                Poll::Ready(n)
            } else {
                Poll::Pending
            }
        }
    }

    /// No wake is lost between a gate and a waker on another thread: a thread bumps a count
    /// and wakes, 20,000 times, while the task waits for each new value through the gate
    /// (a lost wake would leave it waiting for good: the timeout fails the test).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_is_lost_to_another_thread() {
        const N: u64 = 20_000;
        let src = Arc::new((std::sync::atomic::AtomicU64::new(0), AtomicWaker::new()));
        let bump = src.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                bump.0.fetch_add(1, Ordering::Release);
                bump.1.wake();
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let mut g = Gated::new(Ahead { src, seen: 0 });
        // The deadline is looked at first: a wake that only the deadline's own wake-up
        // stood in for must not count as delivered.
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(20));
        tokio::pin!(deadline);
        let mut last = 0;
        while last < N {
            tokio::select! {
                biased;
                _ = &mut deadline => break,
                n = &mut g => last = n,
            }
        }
        let _ = producer.join();
        assert_eq!(last, N, "a wake was lost");
    }
}
