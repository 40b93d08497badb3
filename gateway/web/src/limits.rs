//! Rate limits: token buckets per account and per source address, in bounded tables.
//!
//! - Accounts are known from the config: one bucket per account, a fixed table, so one
//!   account's hits never touch another's bucket.
//! - Addresses: a table of `addrs_tracked` buckets. A new address takes a free entry or one
//!   whose bucket has refilled completely (idle, so forgetting it loses nothing); when every
//!   entry is busy, new addresses share one overflow bucket — a flood of fresh addresses
//!   cannot push a tracked address out.
//!
//! Buckets count in micro-tokens so refills need no floats.

use std::collections::HashMap;
use std::net::IpAddr;

use ringbook_gateway::server::limits::source_key;
use std::sync::Mutex;
use std::time::Instant;

const MICRO: u64 = 1_000_000;

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
                let idle = a
                    .map
                    .iter()
                    .find(|(_, b)| b.is_full(rate, now))
                    .map(|(k, _)| *k);
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
}
