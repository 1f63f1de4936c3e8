//! Requests per second per client address (Engine.IO handshakes; the chat's HTTP API): one token
//! bucket per address, in a map whose size is bounded whatever number of addresses a flood comes
//! from. Sans-IO: time is passed in.
//!
//! The map is two generations, `current` and `previous`. An address seen is looked up in
//! `current`, else moved there from `previous`, else given a full bucket in `current`. Two
//! events turn `current` into `previous` and drop the old `previous`:
//! - **time**: `refill` (the time an empty bucket takes to fill) passed since the last turn.
//!   Every entry of the old `previous` was last touched before that turn, so it is full again,
//!   and a full bucket is what an unknown address gets: dropping it changes nothing.
//! - **size**: `current` reached half the bound. The least recently seen half is forgotten,
//!   partial buckets included: those addresses start again with a full burst. That is the price
//!   of bounded memory, and it only pays out to a client that cycles through more addresses than
//!   half the bound between two of its own handshakes.
//!
//! Both are O(1) amortised per handshake (a dropped map is freed once per half-bound inserts);
//! there is never a scan per handshake.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::config::Limits;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A per-address limiter for other requests than handshakes (same type, own settings).
pub(crate) type AddrLimiter = HandshakeLimiter;

/// Token buckets per client address for one core.
#[derive(Debug)]
pub(crate) struct HandshakeLimiter {
    /// Tokens per second, this core's share.
    rate: f64,
    /// Bucket size, this core's share (at least 1).
    burst: f64,
    /// Time an empty bucket takes to fill.
    refill: Duration,
    max_ips: usize,
    exempt_loopback: bool,
    current: HashMap<IpAddr, Bucket>,
    previous: HashMap<IpAddr, Bucket>,
    rotated_at: Instant,
}

impl HandshakeLimiter {
    /// The limiter of one core of `n_cores`, or `None` when the limit is off. The node's rate
    /// and burst are split evenly over the cores; each core keeps a burst of at least one.
    pub(crate) fn new(limits: &Limits, n_cores: usize, now: Instant) -> Option<HandshakeLimiter> {
        Self::with_rate(
            limits.max_handshakes_per_ip_per_sec,
            limits.handshake_burst_per_ip,
            limits.handshake_rate_max_ips,
            limits.handshake_rate_exempt_loopback,
            n_cores,
            now,
        )
    }

    /// A limiter of `rate` per second per address with bucket `burst` (0: twice the rate) for
    /// the whole node, this core's share of it; `None` when `rate` is 0.
    pub(crate) fn with_rate(
        rate: u32,
        burst: u32,
        max_ips: usize,
        exempt_loopback: bool,
        n_cores: usize,
        now: Instant,
    ) -> Option<HandshakeLimiter> {
        if rate == 0 {
            return None;
        }
        let burst = if burst == 0 { 2 * rate } else { burst };
        let n = n_cores.max(1) as f64;
        let rate = f64::from(rate) / n;
        let burst = (f64::from(burst) / n).max(1.0);
        Some(HandshakeLimiter {
            rate,
            burst,
            refill: Duration::from_secs_f64(burst / rate),
            max_ips: max_ips.max(2),
            exempt_loopback,
            current: HashMap::new(),
            previous: HashMap::new(),
            rotated_at: now,
        })
    }

    /// Take one handshake for `ip` at `now`: true when allowed.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        if self.exempt_loopback && ip.is_loopback() {
            return true;
        }
        let key = key_of(ip);
        self.rotate_by_time(now);
        let bucket = match self.current.get_mut(&key) {
            Some(b) => b,
            None => {
                let b = self.previous.remove(&key).unwrap_or(Bucket { tokens: self.burst, last: now });
                if self.current.len() >= self.max_ips / 2 {
                    self.rotate(now);
                }
                self.current.entry(key).or_insert(b)
            }
        };
        // A clock that went backwards adds nothing.
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.last = bucket.last.max(now);
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn rotate_by_time(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.rotated_at);
        if since >= self.refill * 2 {
            // Everything was last touched before the turn before: all full, all forgettable.
            self.current.clear();
            self.previous.clear();
            self.rotated_at = now;
        } else if since >= self.refill {
            self.rotate(now);
        }
    }

    fn rotate(&mut self, now: Instant) {
        self.previous = std::mem::take(&mut self.current);
        self.rotated_at = now;
    }

    /// Addresses tracked now (at most `handshake_rate_max_ips`).
    pub(crate) fn tracked(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// IPv4 addresses count one by one; IPv6 ones per /64, the block one subscriber usually gets.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn limits(rate: u32, burst: u32, max_ips: usize) -> Limits {
        Limits {
            max_handshakes_per_ip_per_sec: rate,
            handshake_burst_per_ip: burst,
            handshake_rate_max_ips: max_ips,
            ..Limits::default()
        }
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// How many of `n` handshakes at `now` are allowed.
    fn allowed(l: &mut HandshakeLimiter, ip: IpAddr, now: Instant, n: usize) -> usize {
        (0..n).filter(|_| l.allow(ip, now)).count()
    }

    #[test]
    fn zero_rate_is_off() {
        assert!(HandshakeLimiter::new(&limits(0, 0, 100), 1, Instant::now()).is_none());
    }

    #[test]
    fn burst_defaults_to_twice_the_rate_and_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut l = HandshakeLimiter::new(&limits(10, 0, 100), 1, t0).unwrap();
        assert_eq!(allowed(&mut l, v4(1), t0, 100), 20, "burst = 2 x rate");
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 50), 10), 0, "half a token");
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 150), 10), 1, "one token per 100 ms");
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 720), 10), 6, "0.5 left + 5.7");
        // A long pause refills to the burst, not beyond.
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 60_000), 100), 20);
        // Other addresses have buckets of their own.
        assert_eq!(allowed(&mut l, v4(2), ms(t0, 60_000), 100), 20);
    }

    #[test]
    fn node_budget_is_split_over_the_cores() {
        let t0 = Instant::now();
        let mut l = HandshakeLimiter::new(&limits(10, 20, 100), 4, t0).unwrap();
        assert_eq!(allowed(&mut l, v4(1), t0, 100), 5, "20 / 4 cores");
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 399), 10), 0, "2.5 per second per core");
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 420), 10), 1);
        // A rate too small to split still leaves each core one handshake of burst.
        let mut l = HandshakeLimiter::new(&limits(1, 1, 100), 8, t0).unwrap();
        assert_eq!(allowed(&mut l, v4(1), t0, 10), 1);
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 7_999), 10), 0);
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 8_000), 10), 1);
    }

    #[test]
    fn loopback_is_exempt_unless_configured_and_ipv6_counts_per_64() {
        let t0 = Instant::now();
        let mut l = HandshakeLimiter::new(&limits(1, 1, 100), 1, t0).unwrap();
        let lo: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(allowed(&mut l, lo, t0, 50), 50);
        assert_eq!(allowed(&mut l, mapped, t0, 50), 50);
        assert_eq!(allowed(&mut l, "::1".parse().unwrap(), t0, 50), 50);
        assert_eq!(l.tracked(), 0);
        let mut strict = limits(1, 1, 100);
        strict.handshake_rate_exempt_loopback = false;
        let mut l = HandshakeLimiter::new(&strict, 1, t0).unwrap();
        assert_eq!(allowed(&mut l, lo, t0, 50), 1);
        // Two addresses of one /64 share a bucket; the next /64 has its own.
        let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:1:ffff::2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert_eq!(allowed(&mut l, a, t0, 5), 1);
        assert_eq!(allowed(&mut l, b, t0, 5), 0);
        assert_eq!(allowed(&mut l, c, t0, 5), 1);
        // An IPv4-mapped address is the IPv4 address.
        assert_eq!(allowed(&mut l, v4(7), t0, 5), 1);
        assert_eq!(allowed(&mut l, IpAddr::V6(Ipv4Addr::from(0x0a00_0007).to_ipv6_mapped()), t0, 5), 0);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let t0 = Instant::now();
        let mut l = HandshakeLimiter::new(&limits(1, 1, 64), 1, t0).unwrap();
        for n in 0..100_000 {
            assert!(l.allow(v4(n), ms(t0, u64::from(n) / 1000)), "a new address has a full bucket");
            assert!(l.tracked() <= 64, "{} tracked", l.tracked());
        }
    }

    #[test]
    fn an_exhausted_address_stays_limited_while_fewer_than_half_the_bound_pass() {
        let t0 = Instant::now();
        let mut l = HandshakeLimiter::new(&limits(1, 1, 64), 1, t0).unwrap();
        assert!(l.allow(v4(0), t0));
        // 31 other addresses fit in the current generation with it: it is remembered.
        for n in 1..32 {
            assert!(l.allow(v4(n), t0));
        }
        assert!(!l.allow(v4(0), ms(t0, 10)));
        // Touching it keeps it in the newest generation through a size turn.
        for n in 100..140 {
            assert!(l.allow(v4(n), ms(t0, 20)));
            assert!(!l.allow(v4(0), ms(t0, 20)));
        }
        // Only a flood of more than half the bound between two of its handshakes forgets it.
        for n in 1000..1064 {
            l.allow(v4(n), ms(t0, 30));
        }
        assert!(l.allow(v4(0), ms(t0, 30)), "forgotten: a full bucket again");
    }

    #[test]
    fn idle_entries_are_dropped_only_once_full_again() {
        let t0 = Instant::now();
        // rate 2/s, burst 4: an empty bucket is full after 2 s.
        let mut l = HandshakeLimiter::new(&limits(2, 4, 1000), 1, t0).unwrap();
        assert_eq!(allowed(&mut l, v4(1), t0, 10), 4);
        for n in 2..10 {
            l.allow(v4(n), t0);
        }
        assert_eq!(l.tracked(), 9);
        // 1.9 s later address 1 has 3.8 tokens: the turn must not forget it.
        assert_eq!(allowed(&mut l, v4(2), ms(t0, 1_900), 1), 1);
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 1_900), 10), 3);
        // Another address at 2 s turns the generations; address 1 was touched after the turn
        // before, so its partial bucket is kept (forgotten, it would allow 4).
        assert_eq!(allowed(&mut l, v4(50), ms(t0, 2_000), 1), 1);
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 2_050), 10), 1, "0.8 + 0.3");
        // Long idle: everything is full, and everything is forgotten at the next handshake.
        assert!(l.tracked() > 1);
        assert_eq!(allowed(&mut l, v4(99), ms(t0, 10_000), 1), 1);
        assert_eq!(l.tracked(), 1);
        assert_eq!(allowed(&mut l, v4(1), ms(t0, 10_000), 10), 4);
    }

    #[test]
    fn clock_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut l = HandshakeLimiter::new(&limits(1, 1, 100), 1, t0).unwrap();
        assert!(l.allow(v4(1), t0));
        assert!(!l.allow(v4(1), t0 - Duration::from_secs(5)));
        assert!(!l.allow(v4(1), ms(t0, 500)));
        assert!(l.allow(v4(1), ms(t0, 1000)));
    }
}
