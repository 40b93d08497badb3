//! Rate limits: token buckets per account and per source address, in bounded tables.
//!
//! - Accounts are known from the config: one bucket per account, a fixed table, so one
//!   account's hits never touch another's bucket.
//! - Addresses: a table of `addrs_tracked` buckets. A new address takes a free entry or one
//!   whose bucket has refilled completely (idle, so forgetting it loses nothing); when every
//!   entry is busy, new addresses share one overflow bucket — a flood of fresh addresses
//!   cannot push a tracked address out. A search for an idle entry that finds none is not
//!   repeated for [`SCAN_PAUSE`]: meanwhile a request from an untracked address costs one
//!   lookup, not a walk of the whole table under its lock.
//!
//! Buckets count in micro-tokens so refills need no floats.

use std::collections::HashMap;
use std::net::IpAddr;

use ringbook_gateway::server::limits::source_key;
use std::sync::Mutex;
use std::time::Instant;

const MICRO: u64 = 1_000_000;

/// After a search of the full address table found no idle entry, new addresses share the
/// overflow bucket without searching again for this long.
pub const SCAN_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// One token bucket.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: u64,
    at: Instant,
}

/// Refill rate and size.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Tokens per second.
    pub per_sec: u64,
    /// Bucket size.
    pub burst: u64,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst * MICRO,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let us = now.saturating_duration_since(self.at).as_micros() as u64;
        self.tokens = self
            .tokens
            .saturating_add(us.saturating_mul(rate.per_sec))
            .min(rate.burst * MICRO);
        self.at = now;
    }

    /// Takes one token, or says how many seconds until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), u64> {
        self.refill(rate, now);
        if self.tokens >= MICRO {
            self.tokens -= MICRO;
            return Ok(());
        }
        let missing = MICRO - self.tokens;
        let us = missing.div_ceil(rate.per_sec.max(1));
        Err(us.div_ceil(MICRO).max(1))
    }

    /// Whole tokens left at `now` (nothing taken).
    fn left(&self, rate: Rate, now: Instant) -> u64 {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens / MICRO
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens >= rate.burst * MICRO
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// The account's.
    Account(u64),
    /// The address's.
    Address(u64),
}

#[derive(Debug)]
struct Addrs {
    map: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    /// No search for an idle entry before this (see [`SCAN_PAUSE`]).
    no_scan_until: Option<Instant>,
}

/// The two tables.
#[derive(Debug)]
pub struct Limits {
    account_rate: Rate,
    addr_rate: Rate,
    accounts: Vec<Mutex<Bucket>>,
    addrs: Mutex<Addrs>,
    addrs_tracked: usize,
}

impl Limits {
    /// Tables for `accounts` accounts and `addrs_tracked` addresses.
    pub fn new(
        accounts: usize,
        account_rate: Rate,
        addr_rate: Rate,
        addrs_tracked: usize,
    ) -> Limits {
        let now = Instant::now();
        Limits {
            account_rate,
            addr_rate,
            accounts: (0..accounts)
                .map(|_| Mutex::new(Bucket::full(account_rate, now)))
                .collect(),
            addrs: Mutex::new(Addrs {
                map: HashMap::with_capacity(addrs_tracked.max(1)),
                overflow: Bucket::full(addr_rate, now),
                no_scan_until: None,
            }),
            addrs_tracked: addrs_tracked.max(1),
        }
    }

    /// One request from `ip` (counted under its source: an IPv6 address's /64).
    pub fn address(&self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        let ip = source_key(ip);
        let mut a = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        let rate = self.addr_rate;
        if !a.map.contains_key(&ip) {
            if a.map.len() >= self.addrs_tracked {
                // Forget one idle (full) bucket, if any; else share the overflow bucket.
                let idle = if a.no_scan_until.is_some_and(|t| now < t) {
                    None
                } else {
                    let found = a
                        .map
                        .iter()
                        .find(|(_, b)| b.is_full(rate, now))
                        .map(|(k, _)| *k);
                    a.no_scan_until = found.is_none().then_some(now + SCAN_PAUSE);
                    found
                };
                match idle {
                    Some(k) => {
                        a.map.remove(&k);
                    }
                    None => return a.overflow.take(rate, now).map_err(Limited::Address),
                }
            }
            a.map.insert(ip, Bucket::full(rate, now));
        }
        match a.map.get_mut(&ip) {
            Some(b) => b.take(rate, now).map_err(Limited::Address),
            None => Ok(()),
        }
    }

    /// Requests account `acct` may still make at once (its bucket's whole tokens), for
    /// Upbit's `Remaining-Req` header.
    pub fn account_left(&self, acct: usize, now: Instant) -> u64 {
        self.accounts.get(acct).map_or(0, |b| {
            b.lock()
                .unwrap_or_else(|p| p.into_inner())
                .left(self.account_rate, now)
        })
    }

    /// Requests `ip` may still make at once (its bucket's, or the shared overflow bucket's).
    pub fn address_left(&self, ip: IpAddr, now: Instant) -> u64 {
        let ip = source_key(ip);
        let a = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        a.map
            .get(&ip)
            .unwrap_or(&a.overflow)
            .left(self.addr_rate, now)
    }

    /// One request by account `acct` (an index from a verified token).
    pub fn account(&self, acct: usize, now: Instant) -> Result<(), Limited> {
        match self.accounts.get(acct) {
            Some(b) => b
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(self.account_rate, now)
                .map_err(Limited::Account),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let l = Limits::new(
            2,
            Rate {
                per_sec: 10,
                burst: 3,
            },
            Rate {
                per_sec: 1000,
                burst: 1000,
            },
            4,
        );
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.account(0, t), Ok(()));
        }
        assert_eq!(l.account(0, t), Err(Limited::Account(1)));
        // The other account is untouched.
        assert_eq!(l.account(1, t), Ok(()));
        // 100 ms later one token has come back.
        assert_eq!(l.account(0, t + Duration::from_millis(100)), Ok(()));
        assert!(l.account(0, t + Duration::from_millis(100)).is_err());
    }

    /// No accounts; addresses get 2 requests at once, then 1 a second; `tracked` buckets.
    fn address_limits(tracked: usize) -> Limits {
        Limits::new(
            0,
            Rate {
                per_sec: 1,
                burst: 1,
            },
            Rate {
                per_sec: 1,
                burst: 2,
            },
            tracked,
        )
    }

    #[test]
    fn an_ipv6_slash_64_shares_one_bucket() {
        let l = address_limits(4);
        let t = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(l.address(ip("2001:db8::1"), t), Ok(()));
        assert_eq!(l.address(ip("2001:db8::2:3"), t), Ok(()));
        assert!(l.address(ip("2001:db8::ffff:1:2:3"), t).is_err());
        assert_eq!(l.address_left(ip("2001:db8::7"), t), 0);
        assert_eq!(l.address(ip("2001:db8:0:1::1"), t), Ok(()));
    }

    #[test]
    fn new_addresses_cannot_evict_busy_ones() {
        let l = address_limits(2);
        let t = Instant::now();
        assert_eq!(l.address(ip(1), t), Ok(()));
        assert_eq!(l.address(ip(2), t), Ok(()));
        // Both tracked buckets are in use (not full): newcomers share the overflow bucket.
        assert_eq!(l.address(ip(3), t), Ok(()));
        assert_eq!(l.address(ip(4), t), Ok(()));
        assert_eq!(l.address(ip(5), t), Err(Limited::Address(1)));
        // The tracked addresses keep their own buckets.
        assert_eq!(l.address(ip(1), t), Ok(()));
        assert!(l.address(ip(1), t).is_err());
        // Once ip(2)'s bucket has refilled it may be forgotten for a newcomer.
        let later = t + Duration::from_secs(3);
        assert_eq!(l.address(ip(6), later), Ok(()));
    }

    /// A search that found no idle entry is not repeated for `SCAN_PAUSE`: until then
    /// newcomers share the overflow bucket even if an entry has gone idle; after it, one is
    /// forgotten for them as before.
    #[test]
    fn a_fruitless_search_is_not_repeated_at_once() {
        let l = address_limits(2);
        let t = Instant::now();
        assert_eq!(l.address(ip(1), t), Ok(()));
        assert_eq!(l.address(ip(2), t), Ok(()));
        assert_eq!(l.address(ip(3), t), Ok(()), "the overflow bucket");
        // ip(1) and ip(2) are idle again (full) 1 s after their request; a search at 0.95 s
        // finds none and pauses the next until 1.05 s.
        let t2 = t + Duration::from_millis(950);
        assert_eq!(l.address(ip(4), t2), Ok(()), "overflow; no idle entry yet");
        let idle = t + Duration::from_millis(1_000);
        assert!(idle < t2 + SCAN_PAUSE);
        // Idle entries exist now, but the search waits: ip(5) and ip(6) share the overflow
        // bucket (one whole token left in it).
        assert_eq!(l.address(ip(5), idle), Ok(()));
        assert_eq!(l.address(ip(6), idle), Err(Limited::Address(1)));
        // After the pause: ip(6) takes an idle entry of its own, with a full bucket.
        let after = t2 + SCAN_PAUSE;
        assert_eq!(l.address(ip(6), after), Ok(()));
        assert_eq!(l.address_left(ip(6), after), 1);
    }

    /// A measurement, not a check (docs/benchmarks.md, "The web edge's address table under a
    /// flood"): `cargo test --release -p ringbook-web --lib address_flood_cost -- --ignored
    /// --nocapture`. 4096 tracked addresses each just made a request (none idle); then 100 000
    /// requests from fresh addresses over one second of (simulated) time.
    #[test]
    #[ignore]
    fn address_flood_cost() {
        let one = Rate {
            per_sec: 1,
            burst: 20,
        };
        let l = Limits::new(0, one, one, 4096);
        let t = Instant::now();
        for i in 0..4096u32 {
            let _ = l.address(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)), t);
        }
        let n = 100_000u32;
        let t0 = Instant::now();
        for i in 0..n {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let _ = l.address(ip, t + Duration::from_micros(u64::from(i) * 10));
        }
        eprintln!(
            "address flood: {:.2} µs per request from a fresh address, 4096 busy entries",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        );
    }
}
