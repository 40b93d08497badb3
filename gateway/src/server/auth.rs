//! Logins: credentials from the config, constant-time comparison, and per-peer throttling of
//! repeated failures.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ringbook_engine::config::GatewayAccount;

use crate::protocol::{name32, Name32};

/// Who a login acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Trades for this user id.
    User(u32),
    /// Acts as this operator id.
    Operator(u32),
    /// Market data only: subscriptions and book snapshots, no commands, no private data.
    MarketData,
}

#[derive(Clone, Debug)]
struct Entry {
    login: Name32,
    password: Name32,
    role: Role,
}

/// The most peers whose failures are remembered at once (the oldest is forgotten first).
pub const PEERS_TRACKED_MAX: usize = 256;
/// Failures allowed before a peer is slowed down.
pub const FAILURES_FREE: u32 = 3;
/// The first back-off after the free failures; it doubles per further failure.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// The longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
struct Peer {
    ip: IpAddr,
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

/// The credential table and the failure tracker.
#[derive(Debug)]
pub struct Auth {
    entries: Vec<Entry>,
    peers: Vec<Peer>,
}

/// The outcome of a login attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginCheck {
    /// Good credentials: the account's index and role.
    Ok(usize, Role),
    /// Unknown login or wrong password.
    Bad,
    /// The peer is in back-off after repeated failures.
    Throttled,
}

fn ct_eq(a: &Name32, b: &Name32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// From the config's `[[gateway.accounts]]`.
    pub fn new(accounts: &[GatewayAccount]) -> Auth {
        let entries = accounts
            .iter()
            .filter_map(|a| {
                let role = match (a.user, a.operator, a.market_data) {
                    (Some(u), None, false) => Role::User(u),
                    (None, Some(o), false) => Role::Operator(o),
                    (None, None, true) => Role::MarketData,
                    _ => return None,
                };
                Some(Entry {
                    login: name32(&a.login),
                    password: name32(&a.password),
                    role,
                })
            })
            .collect();
        Auth {
            entries,
            peers: Vec::with_capacity(PEERS_TRACKED_MAX),
        }
    }

    /// Checks a login from `ip` at `now`, recording a failure if it fails.
    pub fn check(
        &mut self,
        ip: IpAddr,
        login: &Name32,
        password: &Name32,
        now: Instant,
    ) -> LoginCheck {
        if let Some(p) = self.peers.iter().find(|p| p.ip == ip) {
            if now < p.blocked_until {
                return LoginCheck::Throttled;
            }
        }
        // Compare against every entry so timing does not reveal which logins exist.
        let mut found = None;
        for (i, e) in self.entries.iter().enumerate() {
            let ok = ct_eq(&e.login, login) & ct_eq(&e.password, password);
            if ok && found.is_none() {
                found = Some((i, e.role));
            }
        }
        match found {
            Some((i, role)) => {
                self.peers.retain(|p| p.ip != ip);
                LoginCheck::Ok(i, role)
            }
            None => {
                self.fail(ip, now);
                LoginCheck::Bad
            }
        }
    }

    fn fail(&mut self, ip: IpAddr, now: Instant) {
        let idx = match self.peers.iter().position(|p| p.ip == ip) {
            Some(i) => i,
            None => {
                if self.peers.len() == PEERS_TRACKED_MAX {
                    let oldest = (0..self.peers.len())
                        .min_by_key(|&i| self.peers[i].last)
                        .unwrap_or(0);
                    self.peers.swap_remove(oldest);
                }
                self.peers.push(Peer {
                    ip,
                    failures: 0,
                    blocked_until: now,
                    last: now,
                });
                self.peers.len() - 1
            }
        };
        let p = &mut self.peers[idx];
        p.failures += 1;
        p.last = now;
        if p.failures > FAILURES_FREE {
            let shift = (p.failures - FAILURES_FREE - 1).min(16);
            let backoff = BACKOFF_FIRST.saturating_mul(1 << shift).min(BACKOFF_MAX);
            p.blocked_until = now + backoff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_bad_and_throttled() {
        let acct = GatewayAccount {
            login: "a".into(),
            password: "pw".into(),
            user: Some(1),
            operator: None,
            market_data: false,
        };
        let mut auth = Auth::new(&[acct]);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert_eq!(
            auth.check(ip, &name32("a"), &name32("pw"), t),
            LoginCheck::Ok(0, Role::User(1))
        );
        for _ in 0..=FAILURES_FREE {
            assert_eq!(
                auth.check(ip, &name32("a"), &name32("no"), t),
                LoginCheck::Bad
            );
        }
        assert_eq!(
            auth.check(ip, &name32("a"), &name32("pw"), t),
            LoginCheck::Throttled
        );
        assert_eq!(
            auth.check(ip, &name32("a"), &name32("pw"), t + BACKOFF_MAX),
            LoginCheck::Ok(0, Role::User(1))
        );
    }
}
