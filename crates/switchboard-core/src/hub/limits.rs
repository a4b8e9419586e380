//! Rate limits, the same for every dialect: token buckets for messages and joins per
//! connection, and for joins per source address (issue 15 finding 8).
//!
//! A message or join over its budget is refused with the dialect's `rate_limited` error and
//! nothing else happens; a connection that goes on sending after
//! [`REFUSALS_BEFORE_CLOSE`] refusals within [`REFUSAL_WINDOW`] is closed
//! ([`super::CloseReason::RateLimited`]). The buckets are driven by the hub's `now`, so tests
//! use a fake clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::ConnId;

/// Refusals within [`REFUSAL_WINDOW`] after which a connection is closed.
pub const REFUSALS_BEFORE_CLOSE: u32 = 100;

/// The window over which refusals are counted.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// A token bucket's settings: `per_sec` tokens a second, at most `burst` saved up.
/// `per_sec == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate, per second; 0 = no limit.
    pub per_sec: u32,
    /// Most taken at once after a quiet period (at least 1 when on).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: Self = Self {
        per_sec: 0,
        burst: 0,
    };

    /// `per_sec` a second with a burst of `burst`.
    #[must_use]
    pub const fn new(per_sec: u32, burst: u32) -> Self {
        Self { per_sec, burst }
    }

    fn is_off(self) -> bool {
        self.per_sec == 0
    }
}

/// The rate limits of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages (any frame or event: relays, joins, pings, heartbeats) per connection.
    /// Default 5,000/s with a burst of 10,000: twice what one peer of the relay benchmark
    /// sends at full speed, and thousands of times a call's signaling.
    pub messages: RateLimit,
    /// Joins per connection (Ant Media `join`, socket.io `join`). Default 10/s, burst 20.
    pub joins: RateLimit,
    /// Joins per source address (IPv4 address, or IPv6 /64), over all its connections and
    /// dialects; a PeerJS connection counts as a join. Default 100/s, burst 1,000.
    pub joins_per_source: RateLimit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            messages: RateLimit::new(5_000, 10_000),
            joins: RateLimit::new(10, 20),
            joins_per_source: RateLimit::new(100, 1_000),
        }
    }
}

/// The key a client address is limited under: an IPv4 address (also when it arrives as an
/// IPv4-mapped IPv6 address), or the /64 an IPv6 address is in (one subscriber's usual
/// allocation: a client can pick any address in it).
#[must_use]
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Most tokens a bucket holds (its thousandths must fit in a `u32`).
const MAX_BURST: u32 = 4_000_000;

/// Milliseconds on the limiter's clock (since its first input, wrapping after 49 days: a
/// bucket is only ever compared with a time less than that after its own).
type Millis = u32;

/// A token bucket, in thousandths of a token: 8 bytes, as one is kept per connection.
#[derive(Debug)]
struct Bucket {
    milli: u32,
    at: Millis,
}

impl Bucket {
    fn full(limit: RateLimit, now: Millis) -> Self {
        Self {
            milli: limit.burst.clamp(1, MAX_BURST) * 1000,
            at: now,
        }
    }

    /// Whether the bucket is full again at `now` (forgetting it then loses nothing).
    fn is_full(&self, limit: RateLimit, now: Millis) -> bool {
        let cap = u64::from(limit.burst.clamp(1, MAX_BURST)) * 1000;
        let elapsed = u64::from(now.wrapping_sub(self.at));
        elapsed
            .saturating_mul(u64::from(limit.per_sec))
            .saturating_add(u64::from(self.milli))
            >= cap
    }

    /// Takes one token if there is one.
    fn take(&mut self, limit: RateLimit, now: Millis) -> bool {
        if limit.is_off() {
            return true;
        }
        let cap = u64::from(limit.burst.clamp(1, MAX_BURST)) * 1000;
        let elapsed = u64::from(now.wrapping_sub(self.at));
        // per_sec tokens a second = per_sec thousandths a millisecond.
        let add = elapsed.saturating_mul(u64::from(limit.per_sec));
        let milli = add.saturating_add(u64::from(self.milli)).min(cap);
        self.at = now;
        if milli >= 1000 {
            self.milli = u32::try_from(milli - 1000).unwrap_or(u32::MAX);
            true
        } else {
            self.milli = u32::try_from(milli).unwrap_or(u32::MAX);
            false
        }
    }
}

/// What to do with a message or join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Allow,
    /// Refuse it with the dialect's `rate_limited` error.
    Refuse,
    /// Refuse it and close the connection: it kept going after many refusals.
    Close,
}

/// One connection's budgets: 40 bytes, kept for every connection.
#[derive(Debug)]
struct ConnBudget {
    source: Option<IpAddr>,
    messages: Bucket,
    joins: Bucket,
    refused: u16,
    refused_since: Millis,
}

#[derive(Debug)]
struct SourceBudget {
    conns: u32,
    joins: Bucket,
}

/// Every connection's and source's budgets. One entry per open connection, and one per
/// source with an open connection.
#[derive(Debug, Default)]
pub(super) struct Limiter {
    /// The clock's zero: the first input's time.
    epoch: Option<Instant>,
    /// The latest time seen.
    now: Millis,
    conns: HashMap<ConnId, ConnBudget>,
    /// Sources with connections, and sources without any whose join budget is not full
    /// again yet: forgetting those when their last connection closed would let a client
    /// reset its address's budget by reconnecting (found in review: a loop of connect, a
    /// burst of joins, close, gave one address many times `joins_per_source`). Bounded by
    /// [`MAX_SOURCES`]: past it, the resting sources are forgotten.
    sources: HashMap<IpAddr, SourceBudget>,
    /// New sources since the last sweep of the resting ones.
    since_sweep: u32,
    /// Messages and joins refused since start.
    pub(super) refused: u64,
    /// Connections closed for going on after refusals, since start.
    pub(super) closed: u64,
}

impl Limiter {
    fn millis(&mut self, now: Instant) -> Millis {
        let epoch = *self.epoch.get_or_insert(now);
        // Wrapping on purpose (see `Millis`).
        #[allow(clippy::cast_possible_truncation)]
        let ms = now.saturating_duration_since(epoch).as_millis() as u32;
        self.now = ms;
        ms
    }

    /// Starts budgets for a connection from `ip`.
    pub(super) fn connect(
        &mut self,
        conn: ConnId,
        ip: Option<IpAddr>,
        limits: &Limits,
        now: Instant,
    ) {
        let now = self.millis(now);
        let source = ip.map(source_key);
        if source.is_some_and(|s| !self.sources.contains_key(&s)) {
            // Resting sources are swept every so many new ones (amortized), and when the
            // table is full; past the bound they go whatever their budget.
            self.since_sweep += 1;
            if self.since_sweep >= SWEEP_EVERY || self.sources.len() >= MAX_SOURCES {
                self.sweep_at(limits, now);
                if self.sources.len() >= MAX_SOURCES {
                    self.sources.retain(|_, b| b.conns > 0);
                }
            }
        }
        if let Some(s) = source {
            self.sources
                .entry(s)
                .or_insert_with(|| SourceBudget {
                    conns: 0,
                    joins: Bucket::full(limits.joins_per_source, now),
                })
                .conns += 1;
        }
        let old = self.conns.insert(
            conn,
            ConnBudget {
                source,
                messages: Bucket::full(limits.messages, now),
                joins: Bucket::full(limits.joins, now),
                refused: 0,
                refused_since: now,
            },
        );
        if let Some(old) = old {
            self.release(old.source, limits);
        }
    }

    /// Forgets a connection (idempotent). Its address's join budget stays until it is full
    /// again.
    pub(super) fn forget(&mut self, conn: ConnId, limits: &Limits) {
        if let Some(b) = self.conns.remove(&conn) {
            self.release(b.source, limits);
        }
    }

    fn release(&mut self, source: Option<IpAddr>, limits: &Limits) {
        let Some(s) = source else { return };
        if let Some(sb) = self.sources.get_mut(&s) {
            sb.conns = sb.conns.saturating_sub(1);
            if sb.conns == 0 && sb.joins.is_full(limits.joins_per_source, self.now) {
                self.sources.remove(&s);
            }
        }
    }

    /// Forgets the sources without connections whose budgets are full again at `now` (the
    /// hub sweeps as new sources come, see [`Limiter::connect`]).
    #[cfg(test)]
    pub(super) fn sweep(&mut self, limits: &Limits, now: Instant) {
        let now = self.millis(now);
        self.sweep_at(limits, now);
    }

    fn sweep_at(&mut self, limits: &Limits, now: Millis) {
        self.since_sweep = 0;
        self.sources
            .retain(|_, b| b.conns > 0 || !b.joins.is_full(limits.joins_per_source, now));
    }

    /// Forgets everything (shutdown).
    pub(super) fn clear(&mut self) {
        self.conns.clear();
        self.sources.clear();
    }

    /// A message from `conn`.
    pub(super) fn message(&mut self, conn: ConnId, limits: &Limits, now: Instant) -> Verdict {
        let now = self.millis(now);
        let Some(b) = self.conns.get_mut(&conn) else {
            return Verdict::Allow;
        };
        if b.messages.take(limits.messages, now) {
            return Verdict::Allow;
        }
        self.refuse(conn, limits, now)
    }

    /// A join by `conn` (after its message was allowed).
    pub(super) fn join(&mut self, conn: ConnId, limits: &Limits, now: Instant) -> Verdict {
        let now = self.millis(now);
        let Some(b) = self.conns.get_mut(&conn) else {
            return Verdict::Allow;
        };
        if !b.joins.take(limits.joins, now) {
            return self.refuse(conn, limits, now);
        }
        let source = b.source;
        if let Some(sb) = source.and_then(|s| self.sources.get_mut(&s)) {
            if !sb.joins.take(limits.joins_per_source, now) {
                return self.refuse(conn, limits, now);
            }
        }
        Verdict::Allow
    }

    fn refuse(&mut self, conn: ConnId, limits: &Limits, now: Millis) -> Verdict {
        self.refused += 1;
        let Some(b) = self.conns.get_mut(&conn) else {
            return Verdict::Refuse;
        };
        if u128::from(now.wrapping_sub(b.refused_since)) > REFUSAL_WINDOW.as_millis() {
            b.refused = 0;
            b.refused_since = now;
        }
        b.refused = b.refused.saturating_add(1);
        if u32::from(b.refused) >= REFUSALS_BEFORE_CLOSE {
            self.closed += 1;
            self.forget(conn, limits);
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }

    /// Connections and sources tracked now (for tests: both return to zero).
    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.conns.len(), self.sources.len())
    }
}

/// Most sources a [`SourceBudgets`] keeps; beyond, it forgets the idle ones (full buckets),
/// then all (its memory stays bounded; a flood then meets full budgets, not none).
pub(crate) const MAX_SOURCES: usize = 65_536;

/// New sources between two sweeps of the resting ones.
const SWEEP_EVERY: u32 = 1_024;

/// Per-source budgets for work done before a connection exists in the hub (a socket.io
/// handshake's token check: socket.io lets a client repeat its CONNECT on one session, each
/// asking for a check). Shared by the edge behind a lock; pure, with the time as an input.
#[derive(Debug)]
pub struct SourceBudgets {
    limit: RateLimit,
    epoch: Option<Instant>,
    buckets: HashMap<IpAddr, Bucket>,
}

impl SourceBudgets {
    /// Budgets of `limit` per source.
    #[must_use]
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            epoch: None,
            buckets: HashMap::new(),
        }
    }

    /// Takes one from `ip`'s budget (the address's [`source_key`]); whether there was one.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.limit.is_off() {
            return true;
        }
        let epoch = *self.epoch.get_or_insert(now);
        // Wrapping on purpose (see `Millis`).
        #[allow(clippy::cast_possible_truncation)]
        let ms = now.saturating_duration_since(epoch).as_millis() as Millis;
        if self.buckets.len() >= MAX_SOURCES {
            let limit = self.limit;
            // A bucket that would be full again holds nothing worth keeping.
            self.buckets.retain(|_, b| {
                u64::from(ms.wrapping_sub(b.at)) * u64::from(limit.per_sec)
                    < u64::from(limit.burst) * 1000
            });
            if self.buckets.len() >= MAX_SOURCES {
                self.buckets.clear();
            }
        }
        let limit = self.limit;
        self.buckets
            .entry(source_key(ip))
            .or_insert_with(|| Bucket::full(limit, ms))
            .take(limit, ms)
    }

    /// Sources tracked now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let t = 1_000;
        let l = RateLimit::new(10, 20);
        let mut b = Bucket::full(l, t);
        assert_eq!((0..25).filter(|_| b.take(l, t)).count(), 20);
        // 0.5 s later: 5 more.
        let t2 = t + 500;
        assert_eq!((0..25).filter(|_| b.take(l, t2)).count(), 5);
        // A long quiet time saves up no more than the burst, across the clock's wrap too.
        let t3 = t2.wrapping_add(u32::MAX - 10_000);
        assert_eq!((0..25).filter(|_| b.take(l, t3)).count(), 20);
        assert_eq!(std::mem::size_of::<ConnBudget>(), 40);
        // Off: everything passes.
        let mut b = Bucket::full(RateLimit::OFF, t);
        assert!((0..1000).all(|_| b.take(RateLimit::OFF, t)));
    }

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_64s() {
        let k = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(k("::ffff:198.51.100.7"), "198.51.100.7");
        assert_eq!(k("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
    }

    #[test]
    fn joins_are_limited_per_connection_and_per_source_and_persistence_closes() {
        let t = Instant::now();
        let limits = Limits {
            messages: RateLimit::OFF,
            joins: RateLimit::new(1, 5),
            joins_per_source: RateLimit::new(1, 8),
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut l = Limiter::default();
        l.connect(ConnId(1), Some(ip), &limits, t);
        l.connect(ConnId(2), Some(ip), &limits, t);
        let ok = |l: &mut Limiter, c| {
            (0..10)
                .filter(|_| l.join(ConnId(c), &limits, t) == Verdict::Allow)
                .count()
        };
        assert_eq!(ok(&mut l, 1), 5); // its own burst
        assert_eq!(ok(&mut l, 2), 3); // what is left of the source's 8
        // Going on after refusals closes the connection and frees its budget.
        let mut last = Verdict::Allow;
        for _ in 0..REFUSALS_BEFORE_CLOSE {
            last = l.join(ConnId(1), &limits, t);
            if last == Verdict::Close {
                break;
            }
        }
        assert_eq!(last, Verdict::Close);
        assert_eq!(l.len(), (1, 1));
        l.forget(ConnId(2), &limits);
        l.forget(ConnId(2), &limits);
        // The address's spent budget outlives its connections, until it is full again.
        assert_eq!(l.len(), (0, 1));
        l.sweep(&limits, t + std::time::Duration::from_secs(7));
        assert_eq!(l.len(), (0, 1));
        l.sweep(&limits, t + std::time::Duration::from_secs(8));
        assert_eq!(l.len(), (0, 0));
    }

    #[test]
    fn reconnecting_does_not_restore_an_address_budget() {
        let t = Instant::now();
        let limits = Limits {
            messages: RateLimit::OFF,
            joins: RateLimit::new(100, 100),
            joins_per_source: RateLimit::new(10, 50),
        };
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut l = Limiter::default();
        // Connect, spend the burst, close; again and again, within one second.
        let mut allowed = 0;
        for c in 0..20 {
            let now = t + std::time::Duration::from_millis(c * 10);
            l.connect(ConnId(c), Some(ip), &limits, now);
            allowed += (0..50)
                .filter(|_| l.join(ConnId(c), &limits, now) == Verdict::Allow)
                .count();
            l.forget(ConnId(c), &limits);
        }
        // The burst (50) and what refilled in 190 ms (1.9), not 20 bursts.
        assert_eq!(allowed, 51);
        // A source at rest, with a full budget again, is forgotten at the next sweep.
        l.sweep(&limits, t + std::time::Duration::from_secs(6));
        assert_eq!(l.len(), (0, 0));
    }

    #[test]
    fn source_budgets_limit_each_address_and_stay_bounded() {
        let t = Instant::now();
        let mut b = SourceBudgets::new(RateLimit::new(10, 5));
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let taken = (0..20).filter(|_| b.take(ip, t)).count();
        assert_eq!(taken, 5);
        assert!(
            b.take(ip, t + std::time::Duration::from_millis(100)),
            "refilled"
        );
        // Many addresses: the table never passes its bound.
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let i: u32 = i;
            b.take(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(b.len() <= MAX_SOURCES);
    }
}
