//! Per-client limits of a route (`[route.client_limits]`): which pages may open it (the
//! `Origin` allowlist), how many sessions one source address may hold and open per second,
//! how many the route opens per second, and how fast one client may send.
//!
//! Owns: the decisions and their state: the count of open sessions per address (an entry
//! lives only while that address has a session, so it is bounded by the open connections),
//! the `governor` rate limiters (one per route, one per address for up to
//! `tracked_addresses` addresses, one pair per admitted client), the [`Reason`] of each refusal and its
//! metric label.
//!
//! Must not touch: sockets, wire bytes, dialects. The listener asks [`Admission::origin_allowed`]
//! before anything else; the session asks [`Admission::admit`] before its server role starts and
//! [`ClientRate::check`] for every client message, and has the role word the refusal in its
//! dialect ([`crate::dialect::ServerRole::on_refused`]). Recording is `metrics.rs`'s.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::ClientLimits;

/// Why a client was refused; its label is the `reason` of
/// `switchboard_limit_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `connections_per_address` sessions from its address are open already.
    ConnectionsPerAddress,
    /// Over `connections_per_second` or `connections_per_second_per_address`.
    ConnectionRate,
    /// Over `messages_per_second`.
    MessageRate,
    /// Over `bytes_per_second`.
    ByteRate,
    /// Its `Origin` is not in `allowed_origins`.
    Origin,
}

impl Reason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectionsPerAddress => "connections_per_address",
            Self::ConnectionRate => "connection_rate",
            Self::MessageRate => "message_rate",
            Self::ByteRate => "byte_rate",
            Self::Origin => "origin",
        }
    }

    /// What the client is told (kept short: it may end up in a close frame's reason).
    pub fn message(self) -> &'static str {
        match self {
            Self::ConnectionsPerAddress => "too many connections from this address",
            Self::ConnectionRate => "too many new connections, try again later",
            Self::MessageRate => "message rate limit exceeded",
            Self::ByteRate => "byte rate limit exceeded",
            Self::Origin => "origin not allowed",
        }
    }

    /// Whether the client may retry later (a connection limit) rather than having broken the
    /// route's policy (a rate or an origin).
    pub fn try_later(self) -> bool {
        matches!(self, Self::ConnectionsPerAddress | Self::ConnectionRate)
    }
}

/// How often, at most, the per-address rate table is swept when it is full.
const SWEEP_EVERY_MS: u64 = 100;

/// The client limits of one route, shared by its sessions.
#[derive(Debug)]
pub struct Admission {
    origins: Vec<String>,
    per_address: u32,
    /// Open sessions per address key; an entry exists only while its count is above 0.
    open: DashMap<IpAddr, u32>,
    route_rate: Option<DefaultDirectRateLimiter>,
    address_rate: Option<AddressRates>,
    tracked: usize,
    /// Milliseconds from `epoch` at the last sweep of `address_rate`.
    last_sweep: AtomicU64,
    epoch: Instant,
    messages: Option<Quota>,
    bytes: Option<Quota>,
}

/// The per-address connection rate: one limiter per tracked address. An address already in
/// the table is always checked; when the table is full, only a new address goes untracked
/// (a hot address is never swept, so a flood of new ones cannot free it from its limit).
#[derive(Debug)]
struct AddressRates {
    quota: Quota,
    table: DashMap<IpAddr, Tracked>,
    /// How long an address must be idle before its limiter is back to a full burst and its
    /// entry may go.
    idle_ms: u64,
}

#[derive(Debug)]
struct Tracked {
    limiter: DefaultDirectRateLimiter,
    /// Milliseconds from the admission's `epoch` at its last connection.
    last: AtomicU64,
}

/// A quota of `n` per second with a burst of `burst` (at least `n`); `None` when `n` is 0.
fn quota(n: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(n)?;
    let burst = NonZeroU32::new(burst.max(n)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The key an address is counted under: an IPv6 client usually holds a whole /64, so that is
/// one client (and a flood of its addresses one key); an IPv4-mapped address is its IPv4 one.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
    }
}

impl Admission {
    /// The limits of a route. `max_message` is the largest message its clients may send: the
    /// byte rate's burst is at least that, so any message the size limit admits can pass.
    pub fn new(limits: &ClientLimits, max_message: usize) -> Self {
        let max_message = u32::try_from(max_message).unwrap_or(u32::MAX);
        Self {
            origins: limits.allowed_origins.clone(),
            per_address: limits.connections_per_address,
            open: DashMap::new(),
            route_rate: quota(limits.connections_per_second, 0).map(RateLimiter::direct),
            address_rate: quota(limits.connections_per_second_per_address, 0).map(|quota| {
                let refill = quota.replenish_interval() * quota.burst_size().get();
                AddressRates {
                    quota,
                    table: DashMap::new(),
                    idle_ms: u64::try_from(refill.as_millis()).unwrap_or(u64::MAX),
                }
            }),
            tracked: limits.tracked_addresses.max(1),
            last_sweep: AtomicU64::new(0),
            epoch: Instant::now(),
            messages: quota(limits.messages_per_second, 0),
            bytes: quota(limits.bytes_per_second, max_message),
        }
    }

    /// Whether a request with this `Origin` header may use the route: any without an
    /// allowlist or without the header, else a listed origin (ASCII case aside).
    pub fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        match origin {
            _ if self.origins.is_empty() => true,
            None => true,
            Some(o) => self
                .origins
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(o)),
        }
    }

    /// Admit a new session from `peer` (`None`: unknown, only the route's rate applies), or
    /// say why not. The session holds the answer until it ends.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Admitted, Reason> {
        let key = peer.map(address_key);
        let mut admitted = Admitted {
            admission: self.clone(),
            counted: None,
        };
        if let (Some(k), true) = (key, self.per_address > 0) {
            match self.open.entry(k) {
                Entry::Occupied(mut e) => {
                    if *e.get() >= self.per_address {
                        return Err(Reason::ConnectionsPerAddress);
                    }
                    *e.get_mut() += 1;
                }
                Entry::Vacant(e) => {
                    e.insert(1);
                }
            }
            // From here on, a refusal gives the slot back (`Admitted`'s drop).
            admitted.counted = Some(k);
        }
        if let (Some(k), Some(rates)) = (key, &self.address_rate)
            && !self.address_rate_allows(rates, k)
        {
            return Err(Reason::ConnectionRate);
        }
        if let Some(limiter) = &self.route_rate
            && limiter.check().is_err()
        {
            return Err(Reason::ConnectionRate);
        }
        Ok(admitted)
    }

    /// Whether `key`'s connection rate allows one more. A tracked address is always
    /// checked. A new one is tracked when the table has room; when it is full, addresses
    /// idle long enough for a full burst are dropped, at most every [`SWEEP_EVERY_MS`], and
    /// if it is still full the new address is not tracked this time (the route's own rate
    /// still applies), so a flood of addresses cannot grow it.
    fn address_rate_allows(&self, rates: &AddressRates, key: IpAddr) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(t) = rates.table.get(&key) {
            t.last.store(now, Ordering::Relaxed);
            return t.limiter.check().is_ok();
        }
        if rates.table.len() >= self.tracked {
            let last = self.last_sweep.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= SWEEP_EVERY_MS
                && self
                    .last_sweep
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                rates.table.retain(|_, t| {
                    now.saturating_sub(t.last.load(Ordering::Relaxed)) < rates.idle_ms
                });
                rates.table.shrink_to_fit();
            }
            if rates.table.len() >= self.tracked {
                return true;
            }
        }
        let t = rates.table.entry(key).or_insert_with(|| Tracked {
            limiter: RateLimiter::direct(rates.quota),
            last: AtomicU64::new(now),
        });
        t.limiter.check().is_ok()
    }

    /// Sessions open now from `ip`'s key (tests and diagnostics).
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.open.get(&address_key(ip)).map_or(0, |c| *c)
    }

    fn release(&self, key: IpAddr) {
        if let Entry::Occupied(mut e) = self.open.entry(key) {
            let left = e.get().saturating_sub(1);
            if left == 0 {
                e.remove();
            } else {
                *e.get_mut() = left;
            }
        }
    }
}

/// An admitted session: holds its address's slot until dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    counted: Option<IpAddr>,
}

impl Admitted {
    /// The client's own message and byte rate limiters.
    pub fn client_rate(&self) -> ClientRate {
        ClientRate {
            messages: self.admission.messages.map(RateLimiter::direct),
            bytes: self.admission.bytes.map(RateLimiter::direct),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(k) = self.counted.take() {
            self.admission.release(k);
        }
    }
}

/// One client's message and byte rates.
#[derive(Debug, Default)]
pub struct ClientRate {
    messages: Option<DefaultDirectRateLimiter>,
    bytes: Option<DefaultDirectRateLimiter>,
}

impl ClientRate {
    /// Whether one more message of `len` bytes is within the client's rates now. A refused
    /// message still used up its message token.
    pub fn check(&self, len: usize) -> Result<(), Reason> {
        if let Some(l) = &self.messages
            && l.check().is_err()
        {
            return Err(Reason::MessageRate);
        }
        if let Some(l) = &self.bytes
            && let Some(n) = NonZeroU32::new(u32::try_from(len).unwrap_or(u32::MAX))
            && !matches!(l.check_n(n), Ok(Ok(())))
        {
            return Err(Reason::ByteRate);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limits(f: impl FnOnce(&mut ClientLimits)) -> Arc<Admission> {
        let mut l = ClientLimits::default();
        f(&mut l);
        Arc::new(Admission::new(&l, 1000))
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn nothing_is_limited_by_default() {
        let a = limits(|_| {});
        let held: Vec<_> = (0..1000).map(|_| a.admit(Some(A)).unwrap()).collect();
        let rate = held[0].client_rate();
        for _ in 0..1000 {
            rate.check(100_000).unwrap();
        }
        assert!(a.origin_allowed(Some(b"https://evil.example")));
        // Nothing tracked: no memory per address without a per-address limit.
        assert_eq!(a.open_from(A), 0);
    }

    #[test]
    fn connections_per_address_are_counted_while_held() {
        let a = limits(|l| l.connections_per_address = 2);
        let one = a.admit(Some(A)).unwrap();
        let two = a.admit(Some(A)).unwrap();
        assert_eq!(a.admit(Some(A)).unwrap_err(), Reason::ConnectionsPerAddress);
        // Another address has its own count; an unknown peer is not counted.
        let _b = a.admit(Some(B)).unwrap();
        let _x = a.admit(None).unwrap();
        drop(one);
        let three = a.admit(Some(A)).unwrap();
        assert_eq!(a.open_from(A), 2);
        drop((two, three));
        assert_eq!(a.open_from(A), 0);
        assert!(a.open.get(&A).is_none(), "no entry is left behind");
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address_key(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped())),
            A
        );
        let a = limits(|l| l.connections_per_address = 1);
        let _one = a.admit(Some("2001:db8::1".parse().unwrap())).unwrap();
        assert_eq!(
            a.admit(Some("2001:db8::2".parse().unwrap())).unwrap_err(),
            Reason::ConnectionsPerAddress
        );
        assert!(a.admit(Some(IpAddr::V6(Ipv6Addr::LOCALHOST))).is_ok());
    }

    #[test]
    fn connection_rates_per_address_and_per_route() {
        let a = limits(|l| l.connections_per_second_per_address = 2);
        let _held = (a.admit(Some(A)).unwrap(), a.admit(Some(A)).unwrap());
        assert_eq!(a.admit(Some(A)).unwrap_err(), Reason::ConnectionRate);
        assert!(a.admit(Some(B)).is_ok());
        let r = limits(|l| l.connections_per_second = 3);
        for ip in [A, B, A] {
            r.admit(Some(ip)).unwrap();
        }
        assert_eq!(r.admit(Some(B)).unwrap_err(), Reason::ConnectionRate);
    }

    #[test]
    fn a_rate_refusal_gives_the_address_slot_back() {
        let a = limits(|l| {
            l.connections_per_address = 5;
            l.connections_per_second = 1;
        });
        let _one = a.admit(Some(A)).unwrap();
        assert_eq!(a.admit(Some(A)).unwrap_err(), Reason::ConnectionRate);
        assert_eq!(a.open_from(A), 1);
    }

    #[test]
    fn the_address_table_stays_within_its_bound() {
        let a = limits(|l| {
            l.connections_per_second_per_address = 1;
            l.tracked_addresses = 100;
        });
        for i in 0..10_000u32 {
            let _ = a.admit(Some(IpAddr::V4(Ipv4Addr::from(i))));
        }
        let table = &a.address_rate.as_ref().unwrap().table;
        assert!(table.len() <= 100, "{}", table.len());
        // Untracked addresses still get in (the route's rate is the guard then).
        assert!(a.admit(Some(IpAddr::V4(Ipv4Addr::from(99_999u32)))).is_ok());
    }

    /// A full table leaves new addresses untracked, never the ones it holds: an address
    /// over its rate stays refused however many others come.
    #[test]
    fn a_full_table_still_limits_the_addresses_it_holds() {
        let a = limits(|l| {
            l.connections_per_second_per_address = 2;
            l.tracked_addresses = 10;
        });
        let _held = (a.admit(Some(A)).unwrap(), a.admit(Some(A)).unwrap());
        for i in 0..1000u32 {
            let _ = a.admit(Some(IpAddr::V4(Ipv4Addr::from(i))));
            assert_eq!(
                a.admit(Some(A)).unwrap_err(),
                Reason::ConnectionRate,
                "after {i} others"
            );
        }
    }

    #[test]
    fn message_and_byte_rates() {
        let a = limits(|l| l.messages_per_second = 3);
        let r = a.admit(None).unwrap().client_rate();
        for _ in 0..3 {
            r.check(10).unwrap();
        }
        assert_eq!(r.check(10).unwrap_err(), Reason::MessageRate);
        let a = limits(|l| l.bytes_per_second = 100);
        let r = a.admit(None).unwrap().client_rate();
        // The burst is one largest message (1000 here) when that is more than a second's.
        r.check(1000).unwrap();
        assert_eq!(r.check(1).unwrap_err(), Reason::ByteRate);
        // Empty messages carry no bytes.
        r.check(0).unwrap();
        // Two clients do not share a rate.
        let other = a.admit(None).unwrap().client_rate();
        other.check(500).unwrap();
    }

    #[test]
    fn origins_listed_or_absent_pass() {
        let a = limits(|l| l.allowed_origins = vec!["https://app.example".into()]);
        assert!(a.origin_allowed(Some(b"https://app.example")));
        assert!(a.origin_allowed(Some(b"HTTPS://APP.EXAMPLE")));
        assert!(a.origin_allowed(None));
        assert!(!a.origin_allowed(Some(b"https://evil.example")));
        assert!(!a.origin_allowed(Some(b"https://app.example.evil")));
        assert!(!a.origin_allowed(Some(b"null")));
        assert_eq!(Reason::Origin.label(), "origin");
    }
}
