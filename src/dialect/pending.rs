//! Correlation tables: requests that wait for an answer, each until a deadline.
//!
//! Owns: [`Pending`], a bounded table from a wire id (a STOMP receipt, a Socket.IO ack id,
//! later a SocketCluster cid/rid) to what its answer is for, with expiry and draining in a
//! deterministic order; and [`deadline`], the panic-free `now + timeout` its callers need.
//!
//! Must not touch: I/O, timers (the time comes in as an argument), allocating ids, or what
//! an answer, a timeout or a full table means on a wire: the role that owns the table turns
//! what comes out into events and frames.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Why [`Pending::insert`] refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PendingError {
    /// The table holds its maximum already.
    #[error("too many requests waiting for an answer (at most {max})")]
    Full {
        /// The table's size limit.
        max: usize,
    },
    /// The key is pending already (the first entry is kept).
    #[error("a request with this id is waiting for an answer already")]
    Taken,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    deadline: Instant,
    /// Insertion number: breaks deadline ties, orders [`Pending::drain`].
    seq: u64,
}

/// A correlation table: key → value, each entry failing at its deadline, at most `max`
/// entries.
#[derive(Debug)]
pub struct Pending<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// (deadline, insertion number) of every entry: expiry reads only the front.
    by_deadline: BTreeMap<(Instant, u64), K>,
    next_seq: u64,
    max: usize,
}

impl<K: Eq + Hash + Clone, V> Pending<K, V> {
    /// An empty table of at most `max` entries.
    pub fn new(max: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_deadline: BTreeMap::new(),
            next_seq: 0,
            max,
        }
    }

    /// Wait for `key`'s answer until `deadline`. Refused, leaving the table as it was, when
    /// `key` is pending already or the table is full.
    pub fn insert(&mut self, key: K, value: V, deadline: Instant) -> Result<(), PendingError> {
        if self.entries.contains_key(&key) {
            return Err(PendingError::Taken);
        }
        if self.entries.len() >= self.max {
            return Err(PendingError::Full { max: self.max });
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_deadline.insert((deadline, seq), key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                deadline,
                seq,
            },
        );
        Ok(())
    }

    /// The answer for `key` came: its value, if it was pending (and not expired or drained).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let e = self.entries.remove(key)?;
        self.by_deadline.remove(&(e.deadline, e.seq));
        Some(e.value)
    }

    /// Take every entry whose deadline is `now` or earlier, earliest deadline first (equal
    /// deadlines in insertion order).
    pub fn expire(&mut self, now: Instant) -> Vec<(K, V)> {
        let mut late = Vec::new();
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(e) = self.entries.remove(&key) {
                late.push((key, e.value));
            }
        }
        late
    }

    /// Take every entry, in insertion order: to fail them all when the connection ends.
    pub fn drain(&mut self) -> Vec<(K, V)> {
        self.by_deadline.clear();
        let mut all: Vec<(u64, K, V)> = self
            .entries
            .drain()
            .map(|(k, e)| (e.seq, k, e.value))
            .collect();
        all.sort_unstable_by_key(|(seq, ..)| *seq);
        all.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    /// The values that wait, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|e| &e.value)
    }

    /// How many entries wait.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `now + after`, saturating instead of panicking where the sum cannot be represented (a
/// timeout of centuries from a configuration file): such a deadline lies as far out as the
/// clock allows, which is as good as never.
pub fn deadline(now: Instant, after: Duration) -> Instant {
    let mut d = after;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        // Halving finds a representable sum within about a hundred steps.
        d /= 2;
        if d.is_zero() {
            return now;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn insert_and_remove_by_key() {
        let t0 = Instant::now();
        let mut p = Pending::new(4);
        assert!(p.is_empty());
        p.insert(1u64, "a", t0 + ms(10)).unwrap();
        p.insert(2, "b", t0 + ms(10)).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.remove(&1), Some("a"));
        assert_eq!(p.remove(&1), None, "an answer is taken once");
        assert_eq!(p.remove(&7), None);
        assert_eq!(p.len(), 1);
        // A removed entry no longer expires.
        assert_eq!(p.expire(t0 + ms(10)), vec![(2, "b")]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_full_table_or_a_taken_key_is_refused_and_left_as_it_was() {
        let t0 = Instant::now();
        let mut p = Pending::new(2);
        p.insert(1u64, 'a', t0).unwrap();
        assert_eq!(p.insert(1, 'x', t0 + ms(5)), Err(PendingError::Taken));
        p.insert(2, 'b', t0).unwrap();
        assert_eq!(p.insert(3, 'c', t0), Err(PendingError::Full { max: 2 }));
        assert_eq!(p.len(), 2);
        // The first entry under a taken key keeps its value and deadline.
        assert_eq!(p.expire(t0), vec![(1, 'a'), (2, 'b')]);
        // Room again once answers come.
        p.insert(3, 'c', t0).unwrap();
        assert_eq!(
            PendingError::Full { max: 2 }.to_string(),
            "too many requests waiting for an answer (at most 2)"
        );
        let mut none: Pending<u64, ()> = Pending::new(0);
        assert_eq!(none.insert(1, (), t0), Err(PendingError::Full { max: 0 }));
    }

    #[test]
    fn expire_takes_what_is_due_by_deadline_then_insertion() {
        let t0 = Instant::now();
        let mut p = Pending::new(16);
        p.insert("late", 1, t0 + ms(30)).unwrap();
        p.insert("b", 2, t0 + ms(10)).unwrap();
        p.insert("a", 3, t0 + ms(10)).unwrap();
        p.insert("first", 4, t0 + ms(5)).unwrap();
        assert_eq!(p.expire(t0 + ms(4)), vec![]);
        // Due exactly at its deadline.
        assert_eq!(
            p.expire(t0 + ms(10)),
            vec![("first", 4), ("b", 2), ("a", 3)]
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p.remove("b"), None, "an expired entry cannot be answered");
        assert_eq!(p.expire(t0 + ms(29)), vec![]);
        assert_eq!(p.expire(t0 + ms(31)), vec![("late", 1)]);
        assert!(p.is_empty());
    }

    #[test]
    fn drain_takes_all_in_insertion_order() {
        let t0 = Instant::now();
        let mut p = Pending::new(16);
        for (i, k) in [5u64, 1, 9, 3].into_iter().enumerate() {
            // Deadlines in the opposite order, so neither key nor deadline order would do.
            p.insert(k, i, t0 + ms(100 - i as u64)).unwrap();
        }
        p.remove(&9);
        assert_eq!(p.drain(), vec![(5, 0), (1, 1), (3, 3)]);
        assert!(p.is_empty());
        assert_eq!(p.expire(t0 + ms(1000)), vec![]);
        // Usable again, keys included.
        p.insert(5, 7, t0).unwrap();
        assert_eq!(p.drain(), vec![(5, 7)]);
    }

    #[test]
    fn keys_are_looked_up_by_what_they_borrow() {
        let t0 = Instant::now();
        let mut p: Pending<Bytes, u8> = Pending::new(4);
        p.insert(Bytes::from("sb-1"), 1, t0).unwrap();
        let wire: &[u8] = b"sb-1";
        assert_eq!(p.remove(wire), Some(1));
    }

    #[test]
    fn deadline_adds_and_saturates() {
        let t0 = Instant::now();
        assert_eq!(deadline(t0, ms(250)), t0 + ms(250));
        assert_eq!(deadline(t0, Duration::ZERO), t0);
        let far = deadline(t0, Duration::MAX);
        assert!(far > t0 + Duration::from_secs(100 * 365 * 86_400));
    }
}
