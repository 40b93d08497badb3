//! Logins: credentials from the config, constant-time comparison, and throttling of repeated
//! failures — per account and per source address, independently.
//!
//! - Each configured account has a failure tally (a fixed table, one entry per account, so it
//!   cannot be flushed). Failures against it from any address count; a success for it clears
//!   it (its owner proved the password). Unknown login names count against the address only.
//! - Each source address has a failure tally in a fixed table of `addrs_tracked` entries. A
//!   success never clears it: a valid account of one's own buys no guesses at others. An entry
//!   is reused only once it has expired (not blocked, no failure for [`FORGET_AFTER`]); when
//!   no entry is free, every untracked address shares one overflow tally, so failures from
//!   many addresses cannot push a tracked one out — they throttle the overflow instead.
//! - A tally allows `failures_free` failures; the one that reaches it starts a back-off of
//!   `backoff_first`, doubling per further failure up to `backoff_max`. During a back-off every
//!   attempt (right password or not) is refused with `LOGIN_THROTTLED` and not counted.
//!
//! [`authorize`] is the one rule of who may send which command, used by the binary sessions
//! and the web edge alike.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ringbook_engine::config::GatewayAccount;
use ringbook_engine::{Command, Query, RejectCode, UserId};

use crate::protocol::{name32, Name32};

/// Who a login acts as: the protocol's [`Role`](crate::protocol::Role), which `LoginAccepted`
/// carries.
pub use crate::protocol::Role;

/// May `role` send `cmd`? A user acts only for its own account (orders, cancels, withdrawals,
/// its own queries); an operator only deposits and approves or rejects withdrawals in its own
/// name; a market-data login sends no command; anyone may read a book. The binary gateway and the web edge both call this: one rule,
/// one place.
pub fn authorize(cmd: &Command, role: Role) -> Result<(), RejectCode> {
    match (cmd, role) {
        // Public data: any logged-in role may ask. The engine rejects an unknown symbol.
        (Command::Query(Query::Book { .. }), _) => Ok(()),
        (Command::Deposit { .. }, Role::Operator(_)) => Ok(()),
        (Command::Deposit { .. }, Role::User(_)) => Err(RejectCode::OperatorOnly),
        (
            Command::ApproveWithdrawal { operator, .. }
            | Command::RejectWithdrawal { operator, .. },
            Role::Operator(op),
        ) => {
            if operator.0 == op {
                Ok(())
            } else {
                Err(RejectCode::NotYourAccount)
            }
        }
        (
            Command::Deposit { .. }
            | Command::ApproveWithdrawal { .. }
            | Command::RejectWithdrawal { .. },
            Role::MarketData,
        ) => Err(RejectCode::OperatorOnly),
        (Command::ApproveWithdrawal { .. } | Command::RejectWithdrawal { .. }, Role::User(_)) => {
            Err(RejectCode::OperatorOnly)
        }
        (_, Role::Operator(_) | Role::MarketData) => Err(RejectCode::UserOnly),
        (_, Role::User(u)) => {
            if cmd.user() == Some(UserId(u)) {
                Ok(())
            } else {
                Err(RejectCode::NotYourAccount)
            }
        }
    }
}

/// May `role` read the server-wide counters (the `Stats` message)?
/// Server-wide activity (volumes, failed logins) is the operators' business.
pub fn authorize_stats(role: Role) -> Result<(), RejectCode> {
    match role {
        Role::Operator(_) => Ok(()),
        Role::User(_) | Role::MarketData => Err(RejectCode::OperatorOnly),
    }
}

#[derive(Clone, Debug)]
struct Entry {
    login: Name32,
    password: Name32,
    role: Role,
}

/// A tally with no failure for this long (and not blocked) is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Throttling limits (from the gateway config section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures allowed before the back-off starts.
    pub failures_free: u32,
    /// The first back-off; it doubles per further failure.
    pub backoff_first: Duration,
    /// The longest back-off.
    pub backoff_max: Duration,
    /// Source addresses tracked individually.
    pub addrs_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            failures_free: 3,
            backoff_first: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            addrs_tracked: 1024,
        }
    }
}

/// Failures of one account or one address.
#[derive(Clone, Copy, Debug)]
struct Tally {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            failures: 0,
            blocked_until: now,
            last: now,
        }
    }

    fn blocked(&self, now: Instant) -> bool {
        now < self.blocked_until
    }

    fn expired(&self, now: Instant) -> bool {
        self.failures == 0
            || (!self.blocked(now) && now.saturating_duration_since(self.last) >= FORGET_AFTER)
    }

    fn fail(&mut self, now: Instant, cfg: &ThrottleConfig) {
        if self.expired(now) {
            *self = Tally::new(now);
        }
        self.failures = self.failures.saturating_add(1);
        self.last = now;
        if self.failures >= cfg.failures_free {
            let shift = (self.failures - cfg.failures_free).min(20);
            let backoff = cfg
                .backoff_first
                .saturating_mul(1 << shift)
                .min(cfg.backoff_max);
            self.blocked_until = now + backoff;
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Addr {
    ip: IpAddr,
    tally: Tally,
}

/// Which tally an address's failures go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrSlot {
    /// Its own entry (found, or free to take).
    Entry(usize),
    /// The table is full of live entries: the shared overflow tally.
    Overflow,
}

/// The credential table and the failure trackers.
#[derive(Debug)]
pub struct Auth {
    entries: Vec<Entry>,
    /// One tally per entry.
    accounts: Box<[Tally]>,
    /// Fixed size; `None` is a never-used entry.
    addrs: Box<[Option<Addr>]>,
    overflow: Tally,
    cfg: ThrottleConfig,
}

/// The outcome of a login attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginCheck {
    /// Good credentials: the account's index and role.
    Ok(usize, Role),
    /// Unknown login or wrong password.
    Bad,
    /// The address or the account is in back-off after repeated failures.
    Throttled,
}

fn ct_eq(a: &Name32, b: &Name32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// From the config's `[[gateway.accounts]]`.
    pub fn new(accounts: &[GatewayAccount], cfg: ThrottleConfig) -> Auth {
        let entries: Vec<Entry> = accounts
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
        let now = Instant::now();
        Auth {
            accounts: vec![Tally::new(now); entries.len()].into_boxed_slice(),
            entries,
            addrs: vec![None; cfg.addrs_tracked.max(1)].into_boxed_slice(),
            overflow: Tally::new(now),
            cfg,
        }
    }

    /// The roles of the accounts, in index order.
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.entries.iter().map(|e| e.role)
    }

    /// The tally slot for `ip`: its entry, else a free or expired entry, else the overflow.
    fn addr_slot(&self, ip: IpAddr, now: Instant) -> AddrSlot {
        let mut free = None;
        for (i, a) in self.addrs.iter().enumerate() {
            match a {
                Some(a) if a.ip == ip => return AddrSlot::Entry(i),
                Some(a) if free.is_none() && a.tally.expired(now) => free = Some(i),
                None if free.is_none() => free = Some(i),
                _ => {}
            }
        }
        free.map_or(AddrSlot::Overflow, AddrSlot::Entry)
    }

    fn addr_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        match self.addr_slot(ip, now) {
            AddrSlot::Entry(i) => self.addrs[i]
                .as_ref()
                .is_some_and(|a| a.ip == ip && a.tally.blocked(now)),
            AddrSlot::Overflow => self.overflow.blocked(now),
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
        // Compare against every entry so timing does not reveal which logins exist.
        let mut named = None;
        let mut found = None;
        for (i, e) in self.entries.iter().enumerate() {
            let login_ok = ct_eq(&e.login, login);
            let ok = login_ok & ct_eq(&e.password, password);
            if login_ok && named.is_none() {
                named = Some(i);
            }
            if ok && found.is_none() {
                found = Some((i, e.role));
            }
        }
        let account_blocked = named.is_some_and(|i| self.accounts[i].blocked(now));
        if account_blocked || self.addr_blocked(ip, now) {
            return LoginCheck::Throttled;
        }
        if let Some((i, role)) = found {
            // The account's owner proved the password; the address keeps its record.
            self.accounts[i] = Tally::new(now);
            return LoginCheck::Ok(i, role);
        }
        if let Some(i) = named {
            self.accounts[i].fail(now, &self.cfg);
        }
        match self.addr_slot(ip, now) {
            AddrSlot::Entry(i) => {
                let a = self.addrs[i].get_or_insert(Addr {
                    ip,
                    tally: Tally::new(now),
                });
                if a.ip != ip {
                    // An expired entry of another address, reused.
                    *a = Addr {
                        ip,
                        tally: Tally::new(now),
                    };
                }
                a.tally.fail(now, &self.cfg);
            }
            AddrSlot::Overflow => self.overflow.fail(now, &self.cfg),
        }
        LoginCheck::Bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::{
        ClientOrderId, CurrencyId, NewOrder, OperatorId, Price, Qty, Side, SymbolId, WithdrawalId,
    };

    #[test]
    fn authorize_users_act_for_themselves_operators_for_operator_actions() {
        let (u1, u2, op7, op8) = (
            Role::User(1),
            Role::User(2),
            Role::Operator(7),
            Role::Operator(8),
        );
        let order = Command::NewOrder(NewOrder::limit(
            UserId(1),
            SymbolId(0),
            ClientOrderId(1),
            Side::Buy,
            Price(10),
            Qty(1),
        ));
        let deposit = Command::Deposit {
            user: UserId(1),
            currency: CurrencyId(0),
            amount: 5,
        };
        let approve = Command::ApproveWithdrawal {
            operator: OperatorId(7),
            withdrawal_id: WithdrawalId(1),
        };
        let reject = Command::RejectWithdrawal {
            operator: OperatorId(7),
            withdrawal_id: WithdrawalId(1),
        };
        let book = Command::Query(Query::Book {
            symbol: SymbolId(0),
            depth: 5,
        });
        let balances = Command::Query(Query::Balances { user: UserId(1) });
        use RejectCode::*;
        let cases: [(&Command, Role, Result<(), RejectCode>); 14] = [
            (&order, u1, Ok(())),
            (&order, u2, Err(NotYourAccount)),
            (&order, op7, Err(UserOnly)),
            (&deposit, op7, Ok(())),
            (&deposit, u1, Err(OperatorOnly)),
            (&approve, op7, Ok(())),
            (&approve, op8, Err(NotYourAccount)),
            (&approve, u1, Err(OperatorOnly)),
            (&reject, op8, Err(NotYourAccount)),
            (&book, u2, Ok(())),
            (&book, op8, Ok(())),
            (&balances, u1, Ok(())),
            (&balances, u2, Err(NotYourAccount)),
            (&balances, op7, Err(UserOnly)),
        ];
        for (cmd, role, want) in cases {
            assert_eq!(authorize(cmd, role), want, "{cmd:?} as {role:?}");
        }
    }

    fn acct(login: &str, user: u32) -> GatewayAccount {
        GatewayAccount {
            login: login.into(),
            password: format!("{login}-pw"),
            user: Some(user),
            operator: None,
            market_data: false,
        }
    }

    fn auth(addrs_tracked: usize) -> Auth {
        Auth::new(
            &[acct("alice", 1), acct("bob", 2)],
            ThrottleConfig {
                addrs_tracked,
                ..ThrottleConfig::default()
            },
        )
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from((0x0a00_0000u32 + n).to_be_bytes())
    }

    fn good(a: &mut Auth, from: IpAddr, who: &str, t: Instant) -> LoginCheck {
        a.check(from, &name32(who), &name32(&format!("{who}-pw")), t)
    }

    fn bad(a: &mut Auth, from: IpAddr, who: &str, t: Instant) -> LoginCheck {
        a.check(from, &name32(who), &name32("guess"), t)
    }

    #[test]
    fn three_free_failures_then_throttled_then_doubling() {
        let mut a = auth(16);
        let t = Instant::now();
        assert_eq!(
            good(&mut a, ip(1), "alice", t),
            LoginCheck::Ok(0, Role::User(1))
        );
        for _ in 0..3 {
            assert_eq!(bad(&mut a, ip(1), "alice", t), LoginCheck::Bad);
        }
        // Exactly three free failures: the fourth attempt, even a right one, is refused.
        assert_eq!(good(&mut a, ip(1), "alice", t), LoginCheck::Throttled);
        let first = ThrottleConfig::default().backoff_first;
        assert_eq!(
            good(&mut a, ip(1), "alice", t + first - Duration::from_millis(1)),
            LoginCheck::Throttled
        );
        // After the back-off a failure doubles it.
        let t2 = t + first;
        assert_eq!(bad(&mut a, ip(1), "alice", t2), LoginCheck::Bad);
        assert_eq!(
            good(&mut a, ip(1), "alice", t2 + first),
            LoginCheck::Throttled
        );
        assert_eq!(
            good(&mut a, ip(1), "alice", t2 + 2 * first),
            LoginCheck::Ok(0, Role::User(1))
        );
    }

    #[test]
    fn a_success_does_not_clear_the_address_for_other_accounts() {
        let mut a = auth(16);
        let t = Instant::now();
        // The attacker owns bob and guesses alice, logging in as bob in between.
        for _ in 0..2 {
            assert_eq!(bad(&mut a, ip(1), "alice", t), LoginCheck::Bad);
            assert_eq!(
                good(&mut a, ip(1), "bob", t),
                LoginCheck::Ok(1, Role::User(2))
            );
        }
        assert_eq!(bad(&mut a, ip(1), "alice", t), LoginCheck::Bad);
        // Three failures from this address: throttled, for bob too.
        assert_eq!(good(&mut a, ip(1), "bob", t), LoginCheck::Throttled);
        assert_eq!(bad(&mut a, ip(1), "carol", t), LoginCheck::Throttled);
    }

    #[test]
    fn failures_against_one_account_from_many_addresses_throttle_the_account() {
        let mut a = auth(16);
        let t = Instant::now();
        for n in 0..3 {
            assert_eq!(bad(&mut a, ip(n), "alice", t), LoginCheck::Bad);
        }
        // A fresh address cannot go on guessing alice …
        assert_eq!(bad(&mut a, ip(50), "alice", t), LoginCheck::Throttled);
        // … but may log in as someone else, and that address is not throttled.
        assert_eq!(
            good(&mut a, ip(50), "bob", t),
            LoginCheck::Ok(1, Role::User(2))
        );
        // Once the back-off has passed, alice's right password clears her tally.
        let later = t + ThrottleConfig::default().backoff_first;
        assert_eq!(
            good(&mut a, ip(51), "alice", later),
            LoginCheck::Ok(0, Role::User(1))
        );
        assert_eq!(bad(&mut a, ip(52), "alice", later), LoginCheck::Bad);
    }

    #[test]
    fn unknown_logins_count_against_the_address_only() {
        let mut a = auth(16);
        let t = Instant::now();
        for i in 0..3 {
            assert_eq!(
                bad(&mut a, ip(1), &format!("nobody{i}"), t),
                LoginCheck::Bad
            );
        }
        assert_eq!(good(&mut a, ip(1), "alice", t), LoginCheck::Throttled);
        assert_eq!(
            good(&mut a, ip(2), "alice", t),
            LoginCheck::Ok(0, Role::User(1))
        );
    }

    #[test]
    fn the_address_table_cannot_be_flushed() {
        let mut a = auth(8);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(bad(&mut a, ip(0), "nobody", t), LoginCheck::Bad);
        }
        assert_eq!(good(&mut a, ip(0), "alice", t), LoginCheck::Throttled);
        // Failures from a thousand other addresses: the table is full after 7 of them.
        let mut results = Vec::new();
        for n in 1..=1000 {
            results.push(bad(&mut a, ip(n), "nobody", t));
        }
        // The tracked address is still throttled: nothing evicted it.
        assert_eq!(good(&mut a, ip(0), "alice", t), LoginCheck::Throttled);
        // The first 7 filled the table with one failure each; the rest shared the overflow
        // tally, which throttled them after its three free failures.
        assert!(results[..7 + 3].iter().all(|r| *r == LoginCheck::Bad));
        assert!(results[7 + 3..].iter().all(|r| *r == LoginCheck::Throttled));
        // A tracked address with one failure is not throttled.
        assert_eq!(
            good(&mut a, ip(1), "alice", t),
            LoginCheck::Ok(0, Role::User(1))
        );
        // An untracked address meets the throttled overflow …
        assert_eq!(good(&mut a, ip(5000), "alice", t), LoginCheck::Throttled);
        // … until entries expire and can be reused.
        let later = t + FORGET_AFTER + Duration::from_secs(31);
        assert_eq!(
            good(&mut a, ip(5000), "alice", later),
            LoginCheck::Ok(0, Role::User(1))
        );
        assert_eq!(bad(&mut a, ip(5000), "nobody", later), LoginCheck::Bad);
        assert!(a.addrs.iter().flatten().any(|e| e.ip == ip(5000)));
    }
}
