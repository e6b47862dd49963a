//! Holding client operations until an upstream is ready.
//!
//! Owns: [`HoldQueue`], the FIFO of [`ClientOp`]s that wait for a backend being dialed or a
//! protocol handshake in flight, bounded in count and in bytes ([`ClientOp::held_bytes`]),
//! both checked before an op is queued; and [`Gate`], the one rule every client leg applies
//! to an op from the session (refuse when closed, hold while handshaking, else carry out).
//!
//! Must not touch: I/O, timers, metrics, configuration, the ops themselves (they leave in the
//! order they came, unchanged), or what a refusal means: the caller decides whether a full
//! queue fails the leg or the session, and in which words (a [`Gate::Closed`] brings its own).

use std::collections::VecDeque;

use crate::dialect::Copied;
use crate::frame::{ClientOp, ErrorInfo, ErrorKind};

/// Why [`HoldQueue::push`] refused an op. The texts are the session's; a role that words
/// it differently matches on the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// `max_ops` ops are held already.
    #[error("too many frames before the backend was ready")]
    TooMany {
        /// The count limit.
        max_ops: usize,
    },
    /// The op would take the held bytes past `max_bytes`.
    #[error("too many bytes before the backend was ready")]
    TooBig {
        /// The byte budget.
        max_bytes: usize,
    },
}

/// A FIFO of ops held until an upstream is ready, within a count and a byte budget.
#[derive(Debug)]
pub struct HoldQueue {
    ops: VecDeque<ClientOp>,
    /// [`ClientOp::held_bytes`] of `ops`.
    bytes: usize,
    max_ops: usize,
    max_bytes: usize,
    /// The copies [`ClientOp::detach`] made of held ops, until the owner takes them.
    copied: Copied,
}

impl HoldQueue {
    /// An empty queue holding at most `max_ops` ops of at most `max_bytes` bytes in all.
    pub fn new(max_ops: usize, max_bytes: usize) -> Self {
        Self {
            ops: VecDeque::new(),
            bytes: 0,
            max_ops,
            max_bytes,
            copied: Copied::default(),
        }
    }

    /// Hold `op` at the back, or refuse it (and drop it) when the count or the byte budget
    /// would be exceeded; the count is checked first. Exactly the budget is accepted. A held
    /// op is detached from the message it was read from (its budget is then what it keeps).
    pub fn push(&mut self, mut op: ClientOp) -> Result<(), HoldError> {
        if self.ops.len() >= self.max_ops {
            return Err(HoldError::TooMany {
                max_ops: self.max_ops,
            });
        }
        let bytes = op.held_bytes();
        if self.bytes.saturating_add(bytes) > self.max_bytes {
            return Err(HoldError::TooBig {
                max_bytes: self.max_bytes,
            });
        }
        self.copied.one(op.detach());
        self.bytes += bytes;
        self.ops.push_back(op);
        Ok(())
    }

    /// The copies made of held ops since the last call.
    pub fn take_copied(&mut self) -> Copied {
        std::mem::take(&mut self.copied)
    }

    /// The oldest held op.
    pub fn pop_front(&mut self) -> Option<ClientOp> {
        let op = self.ops.pop_front()?;
        self.bytes = self.bytes.saturating_sub(op.held_bytes());
        Some(op)
    }

    /// Every held op, oldest first. The queue is empty (and holds no bytes) from this call
    /// on, even if the iterator is dropped early.
    pub fn drain(&mut self) -> impl Iterator<Item = ClientOp> + '_ {
        self.bytes = 0;
        self.ops.drain(..)
    }

    /// How many ops are held.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// [`ClientOp::held_bytes`] of everything held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Answer an operation that will never be carried out: a subscription fails, a publish
/// that wanted an answer gets `e`; the rest need no answer.
pub fn refuse(op: ClientOp, e: ErrorInfo, out: &mut crate::dialect::ClientOut) {
    use crate::frame::{BackendEvent, Reply};
    match op {
        ClientOp::Subscribe { sub, .. } => out
            .events
            .push(BackendEvent::SubscribeFailed { sub, reason: e }),
        ClientOp::Publish {
            reply: Some(Reply { id, .. }),
            ..
        } => out.events.push(BackendEvent::Reply { id, result: Err(e) }),
        _ => {}
    }
}

/// Where a client leg stands when the session hands it an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed for good: every op is refused ([`ErrorKind::Unavailable`], in these words).
    Closed(&'static str),
    /// The backend's handshake is in flight: every op but `Connect` waits in the queue.
    Handshaking,
    /// Ready: ops are carried out now.
    Open,
}

impl HoldQueue {
    /// Pass `op` through the leg's `gate`: `Ok(Some(op))` to carry out now, `Ok(None)` once
    /// it is refused or held, `Err` when holding it would overflow the queue (the op is
    /// dropped and the leg fails with the error).
    pub fn admit(
        &mut self,
        gate: Gate,
        op: ClientOp,
        out: &mut crate::dialect::ClientOut,
    ) -> Result<Option<ClientOp>, ErrorInfo> {
        match gate {
            Gate::Closed(why) => {
                refuse(op, ErrorInfo::new(ErrorKind::Unavailable, why), out);
                Ok(None)
            }
            Gate::Handshaking if !matches!(op, ClientOp::Connect { .. }) => self
                .push(op)
                .map(|()| None)
                .map_err(|e| ErrorInfo::new(ErrorKind::Limit, e.to_string())),
            Gate::Handshaking | Gate::Open => Ok(Some(op)),
        }
    }

    /// Refuse every held operation with `e` (the leg will never be ready).
    pub fn refuse_all(&mut self, e: &ErrorInfo, out: &mut crate::dialect::ClientOut) {
        for op in self.drain() {
            refuse(op, e.clone(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::frame::Payload;

    /// A publish holding `n` bytes (one of channel, the rest body).
    fn op(n: usize) -> ClientOp {
        ClientOp::Publish {
            channel: Bytes::from("c"),
            event: None,
            args: Vec::new(),
            payload: Payload::text(Bytes::from("x".repeat(n - 1))),
            meta: Vec::new(),
            reply: None,
            broadcast: false,
            sub: None,
        }
    }

    /// A held op keeps its own bytes, not the message it was sliced from; the copy counts.
    #[test]
    fn held_ops_are_detached_from_their_message() {
        let msg = Bytes::from(format!("chan{}", " ".repeat(1 << 20)));
        let mut q = HoldQueue::new(10, 100);
        q.push(ClientOp::Leave {
            scope: msg.slice(..4),
        })
        .unwrap();
        let copied = q.take_copied();
        assert_eq!((copied.copies, copied.bytes), (1, 4));
        let Some(ClientOp::Leave { scope }) = q.pop_front() else {
            panic!("not held")
        };
        assert_eq!(&scope[..], b"chan");
        assert!(!msg.as_ptr_range().contains(&scope.as_ptr()));
    }

    #[test]
    fn holds_in_order_up_to_exactly_the_budget() {
        let mut q = HoldQueue::new(10, 10);
        assert!(q.is_empty());
        q.push(op(4)).unwrap();
        q.push(ClientOp::Unsubscribe { sub: 1 }).unwrap();
        q.push(op(6)).unwrap();
        assert_eq!((q.len(), q.bytes()), (3, 10));
        assert_eq!(q.pop_front(), Some(op(4)));
        assert_eq!((q.len(), q.bytes()), (2, 6));
        assert_eq!(q.pop_front(), Some(ClientOp::Unsubscribe { sub: 1 }));
        assert_eq!(q.pop_front(), Some(op(6)));
        assert_eq!(q.pop_front(), None);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn refuses_one_byte_over_and_keeps_what_it_held() {
        let mut q = HoldQueue::new(10, 10);
        q.push(op(6)).unwrap();
        assert_eq!(q.push(op(5)), Err(HoldError::TooBig { max_bytes: 10 }));
        assert_eq!((q.len(), q.bytes()), (1, 6));
        // What still fits goes in after a refusal.
        q.push(op(4)).unwrap();
        assert_eq!((q.len(), q.bytes()), (2, 10));
        // Ops that hold no bytes still count.
        assert_eq!(
            q.push(op(1)),
            Err(HoldError::TooBig { max_bytes: 10 }),
            "a full byte budget refuses a 1-byte op"
        );
        q.push(ClientOp::Disconnect).unwrap();
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn refuses_past_the_count_before_looking_at_bytes() {
        let mut q = HoldQueue::new(2, 5);
        q.push(op(1)).unwrap();
        q.push(op(1)).unwrap();
        // Too many and too big at once: the count is what is reported.
        assert_eq!(q.push(op(100)), Err(HoldError::TooMany { max_ops: 2 }));
        assert_eq!((q.len(), q.bytes()), (2, 2));
        let mut none = HoldQueue::new(0, 0);
        assert_eq!(
            none.push(ClientOp::Disconnect),
            Err(HoldError::TooMany { max_ops: 0 })
        );
    }

    #[test]
    fn the_gate_refuses_when_closed_holds_while_handshaking_and_passes_when_open() {
        use crate::dialect::ClientOut;
        use crate::frame::BackendEvent;
        let mut q = HoldQueue::new(1, 100);
        let mut out = ClientOut::default();
        let sub = ClientOp::Subscribe {
            sub: 7,
            channel: Bytes::from("c"),
            params: Default::default(),
        };
        // Closed: a subscription fails in the gate's words and nothing is held.
        assert_eq!(
            q.admit(Gate::Closed("gone"), sub.clone(), &mut out),
            Ok(None)
        );
        match out.events.as_slice() {
            [BackendEvent::SubscribeFailed { sub: 7, reason }] => {
                assert_eq!(reason.kind, ErrorKind::Unavailable);
                assert_eq!(reason.message, "gone");
            }
            other => panic!("{other:?}"),
        }
        assert!(q.is_empty());
        // Handshaking: held, but `Connect` passes; past the count the leg fails.
        assert_eq!(q.admit(Gate::Handshaking, op(3), &mut out), Ok(None));
        let connect = ClientOp::Connect {
            credentials: Default::default(),
        };
        assert_eq!(
            q.admit(Gate::Handshaking, connect.clone(), &mut out),
            Ok(Some(connect))
        );
        let full = q.admit(Gate::Handshaking, op(3), &mut out).unwrap_err();
        assert_eq!(full.kind, ErrorKind::Limit);
        assert_eq!(q.len(), 1);
        // Open: carried out now, the queue untouched.
        assert_eq!(q.admit(Gate::Open, sub.clone(), &mut out), Ok(Some(sub)));
        assert_eq!((q.len(), out.events.len()), (1, 1));
    }

    #[test]
    fn drain_empties_even_when_dropped_early() {
        let mut q = HoldQueue::new(10, 100);
        for n in [3, 4, 5] {
            q.push(op(n)).unwrap();
        }
        assert_eq!(q.drain().next(), Some(op(3)));
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        // The budget is whole again.
        q.push(op(100)).unwrap();
        assert_eq!(q.drain().collect::<Vec<_>>(), vec![op(100)]);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn errors_say_which_limit_in_the_sessions_words() {
        assert_eq!(
            HoldError::TooMany { max_ops: 1 }.to_string(),
            "too many frames before the backend was ready"
        );
        assert_eq!(
            HoldError::TooBig { max_bytes: 1 }.to_string(),
            "too many bytes before the backend was ready"
        );
        assert!(std::mem::size_of::<HoldError>() <= 16);
    }
}
