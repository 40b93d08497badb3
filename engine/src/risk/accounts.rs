//! Accounts: per-user, per-currency balances (available and locked), the fee account, and
//! pending withdrawals — all in arrays sized from the config at start-up.
//!
//! A user id is an index below `users_max`; an account opens with its owner's first deposit.
//! Amounts are `u64` minimal units. Each currency's *supply* (deposits minus completed
//! withdrawals) is capped at `u64::MAX`, so no balance, lock or fee total can overflow: every
//! one of them is part of the supply. The conservation invariant
//! `Σ(available + locked) + fees = supply` is checked by [`Accounts::check_conservation`].

use std::fmt;

use crate::codes::RejectCode;
use crate::hash::StateHasher;
use crate::types::{CurrencyId, OperatorId, UserId, WithdrawalId};

/// One user's holding of one currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// Free to spend or withdraw.
    pub available: u64,
    /// Reserved for open orders and pending withdrawals.
    pub locked: u64,
}

/// A withdrawal waiting for its approvals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingWithdrawal {
    /// Engine-assigned id.
    pub id: WithdrawalId,
    /// The requesting user.
    pub user: UserId,
    /// The currency.
    pub currency: CurrencyId,
    /// The amount, locked until approval or rejection.
    pub amount: u64,
    /// The first approving operator, if any.
    pub first_approval: Option<OperatorId>,
}

/// What an approval did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Approval {
    /// The first of two approvals was recorded.
    First(PendingWithdrawal),
    /// The second approval: the funds have left the system.
    Completed(PendingWithdrawal),
}

/// One trade's movements of funds, for [`Accounts::settle_trade`] (docs/risk.md, "Settlement
/// (S)"). Every amount is part of a lock or of the supply, so none overflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TradeMoves {
    /// The symbol's quote currency (the buyer pays, the seller is paid, fees are collected).
    pub quote: CurrencyId,
    /// The symbol's base currency (the seller delivers, the buyer receives).
    pub base: CurrencyId,
    /// The buying user.
    pub buyer: UserId,
    /// The selling user.
    pub seller: UserId,
    /// What the buyer's quote lock releases for these lots.
    pub released: u64,
    /// The part of `released` the buyer did not pay (price improvement, maker rate, rounding):
    /// back to available.
    pub unused: u64,
    /// Base units delivered: out of the seller's base lock, into the buyer's available.
    pub base_amount: u64,
    /// The notional less the seller's fee: into the seller's available quote.
    pub proceeds: u64,
    /// Both fees: into the fee account.
    pub fees: u64,
}

/// A broken accounting invariant (only ever reported by checks, never expected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantViolation(pub String);

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every balance in the engine.
#[derive(Debug, Clone)]
pub struct Accounts {
    currencies: usize,
    opened: Vec<bool>,
    /// `balances[user × currencies + currency]`.
    balances: Vec<Balance>,
    fees: Vec<u64>,
    supply: Vec<u64>,
    operators: Vec<OperatorId>,
    withdrawals: Vec<Option<PendingWithdrawal>>,
    /// Pending withdrawals one user may have at once.
    withdrawals_per_user: u32,
    /// Pending withdrawals per user (derived from `withdrawals`: kept on request, completion
    /// and rejection, rebuilt on restore), so the limit is one load, not a scan of the pool.
    pending_per_user: Vec<u32>,
    next_withdrawal_id: u64,
}

impl Accounts {
    /// The heap bytes [`Accounts::new`] allocates (`crate::memory`).
    pub(crate) fn bytes_for(users_max: u32, currencies: usize, withdrawals_max: u32) -> u64 {
        let users = users_max as usize;
        (users * (std::mem::size_of::<bool>() + std::mem::size_of::<u32>())
            + users * currencies * std::mem::size_of::<Balance>()
            + 2 * currencies * std::mem::size_of::<u64>()
            + withdrawals_max as usize * std::mem::size_of::<Option<PendingWithdrawal>>())
            as u64
    }

    /// Empty accounts for `users_max` users and `currencies` currencies, with room for
    /// `withdrawals_max` pending withdrawals (`per_user` of them for one user) approved by
    /// `operators`.
    pub(crate) fn new(
        users_max: u32,
        currencies: usize,
        (withdrawals_max, per_user): (u32, u32),
        operators: &[OperatorId],
    ) -> Accounts {
        Accounts {
            currencies,
            opened: vec![false; users_max as usize],
            balances: vec![Balance::default(); users_max as usize * currencies],
            fees: vec![0; currencies],
            supply: vec![0; currencies],
            operators: operators.to_vec(),
            withdrawals: vec![None; withdrawals_max as usize],
            withdrawals_per_user: per_user,
            pending_per_user: vec![0; users_max as usize],
            next_withdrawal_id: 1,
        }
    }

    #[inline]
    fn slot(&self, user: UserId, currency: CurrencyId) -> usize {
        user.0 as usize * self.currencies + currency.0 as usize
    }

    /// Checks that `user` has an open account.
    #[inline]
    pub(crate) fn check_user(&self, user: UserId) -> Result<(), RejectCode> {
        match self.opened.get(user.0 as usize) {
            Some(true) => Ok(()),
            _ => Err(RejectCode::UnknownUser),
        }
    }

    /// Checks that `currency` is configured.
    #[inline]
    pub(crate) fn check_currency(&self, currency: CurrencyId) -> Result<(), RejectCode> {
        if (currency.0 as usize) < self.currencies {
            Ok(())
        } else {
            Err(RejectCode::UnknownCurrency)
        }
    }

    /// A balance (zero for accounts never opened).
    #[inline]
    pub fn balance(&self, user: UserId, currency: CurrencyId) -> Balance {
        if (user.0 as usize) < self.opened.len() && (currency.0 as usize) < self.currencies {
            self.balances[self.slot(user, currency)]
        } else {
            Balance::default()
        }
    }

    /// True once `user` has deposited.
    pub fn is_open(&self, user: UserId) -> bool {
        self.opened.get(user.0 as usize).copied().unwrap_or(false)
    }

    /// Fees collected in `currency` (0 for an unknown currency).
    pub fn fees(&self, currency: CurrencyId) -> u64 {
        self.fees.get(currency.0 as usize).copied().unwrap_or(0)
    }

    /// Deposits minus completed withdrawals of `currency` (0 for an unknown currency).
    pub fn supply(&self, currency: CurrencyId) -> u64 {
        self.supply.get(currency.0 as usize).copied().unwrap_or(0)
    }

    /// Number of currencies.
    pub fn currencies(&self) -> usize {
        self.currencies
    }

    /// Users that have opened an account, in id order.
    pub fn open_users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.opened
            .iter()
            .enumerate()
            .filter(|(_, &o)| o)
            .map(|(u, _)| UserId(u as u32))
    }

    /// Pending withdrawals, in slot order.
    pub fn pending_withdrawals(&self) -> impl Iterator<Item = &PendingWithdrawal> + '_ {
        self.withdrawals.iter().flatten()
    }

    /// The id the next withdrawal request will get.
    pub fn next_withdrawal_id(&self) -> WithdrawalId {
        WithdrawalId(self.next_withdrawal_id)
    }

    // ------------------------------------------------------------ deposits and withdrawals

    /// Credits `amount` to `user`, opening the account if needed.
    pub(crate) fn deposit(
        &mut self,
        user: UserId,
        currency: CurrencyId,
        amount: u64,
    ) -> Result<Balance, RejectCode> {
        if user.0 as usize >= self.opened.len() {
            return Err(RejectCode::UnknownUser);
        }
        self.check_currency(currency)?;
        if amount == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        let c = currency.0 as usize;
        let supply = self.supply[c]
            .checked_add(amount)
            .ok_or(RejectCode::AmountOverflow)?;
        self.supply[c] = supply;
        self.opened[user.0 as usize] = true;
        let i = self.slot(user, currency);
        // Cannot overflow: every balance is part of the supply, which fits in u64.
        self.balances[i].available += amount;
        Ok(self.balances[i])
    }

    /// Locks `amount` of `user`'s available funds for a withdrawal awaiting approval.
    pub(crate) fn request_withdrawal(
        &mut self,
        user: UserId,
        currency: CurrencyId,
        amount: u64,
    ) -> Result<(PendingWithdrawal, Balance), RejectCode> {
        self.check_user(user)?;
        self.check_currency(currency)?;
        if amount == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        if self.pending_per_user[user.0 as usize] >= self.withdrawals_per_user {
            return Err(RejectCode::WithdrawalLimit);
        }
        let free = self
            .withdrawals
            .iter()
            .position(Option::is_none)
            .ok_or(RejectCode::WithdrawalPoolFull)?;
        self.lock(user, currency, amount)?;
        let pending = PendingWithdrawal {
            id: WithdrawalId(self.next_withdrawal_id),
            user,
            currency,
            amount,
            first_approval: None,
        };
        self.next_withdrawal_id += 1;
        self.withdrawals[free] = Some(pending);
        self.pending_per_user[user.0 as usize] += 1;
        Ok((pending, self.balance(user, currency)))
    }

    fn find_withdrawal(&self, operator: OperatorId, id: WithdrawalId) -> Result<usize, RejectCode> {
        if !self.operators.contains(&operator) {
            return Err(RejectCode::NotAnOperator);
        }
        // Bounded by withdrawals_max; an operator action, not the order path.
        self.withdrawals
            .iter()
            .position(|w| w.is_some_and(|w| w.id == id))
            .ok_or(RejectCode::UnknownWithdrawal)
    }

    /// Records an operator's approval; the second distinct operator completes the withdrawal
    /// and the amount leaves the system.
    pub(crate) fn approve_withdrawal(
        &mut self,
        operator: OperatorId,
        id: WithdrawalId,
    ) -> Result<Approval, RejectCode> {
        let slot = self.find_withdrawal(operator, id)?;
        let mut w = self.withdrawals[slot].expect("found above");
        match w.first_approval {
            None => {
                w.first_approval = Some(operator);
                self.withdrawals[slot] = Some(w);
                Ok(Approval::First(w))
            }
            Some(first) if first == operator => Err(RejectCode::DuplicateApproval),
            Some(_) => {
                self.withdrawals[slot] = None;
                self.pending_per_user[w.user.0 as usize] -= 1;
                let i = self.slot(w.user, w.currency);
                self.balances[i].locked -= w.amount;
                self.supply[w.currency.0 as usize] -= w.amount;
                Ok(Approval::Completed(w))
            }
        }
    }

    /// An operator refuses a withdrawal: its amount is unlocked.
    pub(crate) fn reject_withdrawal(
        &mut self,
        operator: OperatorId,
        id: WithdrawalId,
    ) -> Result<PendingWithdrawal, RejectCode> {
        let slot = self.find_withdrawal(operator, id)?;
        let w = self.withdrawals[slot].take().expect("found above");
        self.pending_per_user[w.user.0 as usize] -= 1;
        self.unlock(w.user, w.currency, w.amount);
        Ok(w)
    }

    // ------------------------------------------------------------ the trading path

    /// Moves `amount` from available to locked, or `INSUFFICIENT_FUNDS`.
    #[inline]
    pub(crate) fn lock(
        &mut self,
        user: UserId,
        currency: CurrencyId,
        amount: u64,
    ) -> Result<(), RejectCode> {
        let i = self.slot(user, currency);
        let b = &mut self.balances[i];
        if b.available < amount {
            return Err(RejectCode::InsufficientFunds);
        }
        b.available -= amount;
        b.locked += amount;
        Ok(())
    }

    /// Moves `amount` from locked back to available.
    #[inline]
    pub(crate) fn unlock(&mut self, user: UserId, currency: CurrencyId, amount: u64) {
        let i = self.slot(user, currency);
        let b = &mut self.balances[i];
        if b.locked < amount {
            overdrawn("unlocking", user, currency);
        }
        b.locked -= amount;
        b.available += amount;
    }

    /// Applies one trade's movements of funds (docs/risk.md, "Settlement (S)"): the buyer's
    /// quote lock releases `released` of which `unused` goes back to available, the base moves
    /// from the seller's lock to the buyer's available, the seller is credited `proceeds` and
    /// the fee account `fees`. Each party's row of balances is looked up once.
    #[inline(always)]
    pub(crate) fn settle_trade(&mut self, m: TradeMoves) {
        let (q, b, n) = (m.quote.0 as usize, m.base.0 as usize, self.currencies);
        let first = m.buyer.0 as usize * n;
        let buyer = &mut self.balances[first..first + n];
        let quote = &mut buyer[q];
        if quote.locked < m.released {
            overdrawn("spending", m.buyer, m.quote);
        }
        quote.locked -= m.released;
        quote.available += m.unused;
        buyer[b].available += m.base_amount;
        let first = m.seller.0 as usize * n;
        let seller = &mut self.balances[first..first + n];
        let base = &mut seller[b];
        if base.locked < m.base_amount {
            overdrawn("spending", m.seller, m.base);
        }
        base.locked -= m.base_amount;
        seller[q].available += m.proceeds;
        self.fees[q] += m.fees;
    }

    /// Feeds the accounts, canonically ordered, into `h`: per open user (id order) every
    /// currency's available and locked; per currency fees and supply; the next withdrawal id and
    /// every pending withdrawal in slot order.
    pub(crate) fn hash_into(&self, h: &mut StateHasher) {
        for user in self.open_users() {
            h.u64(u64::from(user.0));
            for c in 0..self.currencies {
                let b = self.balances[self.slot(user, CurrencyId(c as u16))];
                h.u64(b.available);
                h.u64(b.locked);
            }
        }
        for c in 0..self.currencies {
            h.u64(self.fees[c]);
            h.u64(self.supply[c]);
        }
        h.u64(self.next_withdrawal_id);
        for w in self.pending_withdrawals() {
            h.u64(w.id.0);
            h.u64(u64::from(w.user.0));
            h.u64(u64::from(w.currency.0));
            h.u64(w.amount);
            h.u64(w.first_approval.map_or(u64::MAX, |o| u64::from(o.0)));
        }
    }

    /// Checks `Σ(available + locked) + fees = supply` for every currency.
    pub fn check_conservation(&self) -> Result<(), InvariantViolation> {
        for c in 0..self.currencies {
            let held: u128 = self
                .balances
                .iter()
                .skip(c)
                .step_by(self.currencies)
                .map(|b| u128::from(b.available) + u128::from(b.locked))
                .sum();
            let total = held + u128::from(self.fees[c]);
            if total != u128::from(self.supply[c]) {
                return Err(InvariantViolation(format!(
                    "currency {c}: balances {held} + fees {} = {total} but supply is {}",
                    self.fees[c], self.supply[c]
                )));
            }
        }
        Ok(())
    }
}

/// A broken invariant of the trading path: a lock released past what it holds. Out of line
/// (and by value), so the hot paths keep their operands in registers.
#[cold]
#[inline(never)]
fn overdrawn(what: &str, user: UserId, currency: CurrencyId) -> ! {
    panic!("{what} more than is locked: user {user} currency {currency}")
}

// ------------------------------------------------------------ snapshot support

impl Accounts {
    /// Snapshot support ([`crate::snapshot`]): pending withdrawals with their slot numbers, in
    /// slot order (a new request takes the lowest free slot, so slots are part of the state).
    pub(crate) fn pending_withdrawal_slots(
        &self,
    ) -> impl Iterator<Item = (usize, &PendingWithdrawal)> + '_ {
        self.withdrawals
            .iter()
            .enumerate()
            .filter_map(|(slot, w)| w.as_ref().map(|w| (slot, w)))
    }

    /// Snapshot support: opens `user`'s account with one balance per currency, in currency
    /// order. The caller ([`crate::snapshot`]) has checked the ids and lengths.
    pub(crate) fn restore_user(&mut self, user: UserId, balances: &[Balance]) {
        assert_eq!(balances.len(), self.currencies);
        self.opened[user.0 as usize] = true;
        let first = self.slot(user, CurrencyId(0));
        self.balances[first..first + self.currencies].copy_from_slice(balances);
    }

    /// Snapshot support: sets one currency's collected fees and supply.
    pub(crate) fn restore_currency(&mut self, currency: CurrencyId, fees: u64, supply: u64) {
        self.fees[currency.0 as usize] = fees;
        self.supply[currency.0 as usize] = supply;
    }

    /// Snapshot support: puts a pending withdrawal back in its slot.
    pub(crate) fn restore_withdrawal(&mut self, slot: usize, w: PendingWithdrawal) {
        if let Some(old) = self.withdrawals[slot].replace(w) {
            self.pending_per_user[old.user.0 as usize] -= 1;
        }
        self.pending_per_user[w.user.0 as usize] += 1;
    }

    /// Snapshot support: sets the id the next withdrawal request will get.
    pub(crate) fn restore_next_withdrawal_id(&mut self, id: WithdrawalId) {
        self.next_withdrawal_id = id.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KRW: CurrencyId = CurrencyId(0);
    const OPS: [OperatorId; 3] = [OperatorId(900), OperatorId(901), OperatorId(902)];

    fn accounts() -> Accounts {
        Accounts::new(4, 2, (2, 2), &OPS)
    }

    /// Queries by an unknown id answer zero, never panic (the engine's lookup convention).
    #[test]
    fn unknown_ids_answer_zero() {
        let mut a = accounts();
        a.deposit(UserId(1), KRW, 100).unwrap();
        assert_eq!(a.supply(KRW), 100);
        assert_eq!((a.fees(CurrencyId(2)), a.supply(CurrencyId(2))), (0, 0));
        assert_eq!(a.balance(UserId(9), KRW), Balance::default());
        assert!(!a.is_open(UserId(9)));
    }

    #[test]
    fn deposit_opens_and_checks() {
        let mut a = accounts();
        assert_eq!(a.check_user(UserId(1)), Err(RejectCode::UnknownUser));
        assert_eq!(a.deposit(UserId(4), KRW, 1), Err(RejectCode::UnknownUser));
        assert_eq!(
            a.deposit(UserId(1), CurrencyId(2), 1),
            Err(RejectCode::UnknownCurrency)
        );
        assert_eq!(a.deposit(UserId(1), KRW, 0), Err(RejectCode::InvalidAmount));
        assert_eq!(
            a.deposit(UserId(1), KRW, 100),
            Ok(Balance {
                available: 100,
                locked: 0
            })
        );
        assert!(a.is_open(UserId(1)));
        assert_eq!(
            a.deposit(UserId(2), KRW, u64::MAX),
            Err(RejectCode::AmountOverflow)
        );
        assert_eq!(a.balance(UserId(2), KRW), Balance::default());
        a.check_conservation().unwrap();
    }

    #[test]
    fn withdrawal_needs_two_distinct_operators() {
        let mut a = accounts();
        a.deposit(UserId(1), KRW, 100).unwrap();
        assert_eq!(
            a.request_withdrawal(UserId(1), KRW, 101).unwrap_err(),
            RejectCode::InsufficientFunds
        );
        let (w, b) = a.request_withdrawal(UserId(1), KRW, 60).unwrap();
        assert_eq!(
            b,
            Balance {
                available: 40,
                locked: 60
            }
        );
        assert_eq!(
            a.approve_withdrawal(OperatorId(1), w.id),
            Err(RejectCode::NotAnOperator)
        );
        assert!(matches!(
            a.approve_withdrawal(OPS[0], w.id),
            Ok(Approval::First(_))
        ));
        assert_eq!(
            a.approve_withdrawal(OPS[0], w.id),
            Err(RejectCode::DuplicateApproval)
        );
        assert_eq!(a.supply(KRW), 100);
        assert!(matches!(
            a.approve_withdrawal(OPS[1], w.id),
            Ok(Approval::Completed(_))
        ));
        assert_eq!(
            a.balance(UserId(1), KRW),
            Balance {
                available: 40,
                locked: 0
            }
        );
        assert_eq!(a.supply(KRW), 40);
        assert_eq!(
            a.approve_withdrawal(OPS[2], w.id),
            Err(RejectCode::UnknownWithdrawal)
        );
        a.check_conservation().unwrap();
    }

    #[test]
    fn rejection_unlocks_and_pool_is_bounded() {
        let mut a = accounts();
        a.deposit(UserId(1), KRW, 100).unwrap();
        let (w1, _) = a.request_withdrawal(UserId(1), KRW, 10).unwrap();
        let (_w2, _) = a.request_withdrawal(UserId(1), KRW, 10).unwrap();
        assert_eq!(
            a.request_withdrawal(UserId(1), KRW, 10).unwrap_err(),
            RejectCode::WithdrawalLimit,
            "user 1 holds its two"
        );
        a.deposit(UserId(2), KRW, 100).unwrap();
        assert_eq!(
            a.request_withdrawal(UserId(2), KRW, 10).unwrap_err(),
            RejectCode::WithdrawalPoolFull,
            "user 2 has none, but the pool is full"
        );
        assert_eq!(a.reject_withdrawal(OPS[2], w1.id).unwrap().amount, 10);
        assert_eq!(
            a.balance(UserId(1), KRW),
            Balance {
                available: 90,
                locked: 10
            }
        );
        assert!(a.request_withdrawal(UserId(1), KRW, 10).is_ok());
        a.check_conservation().unwrap();
    }
}
