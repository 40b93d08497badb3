//! `GET /api/v1/withdrawals/pending` (operators): the withdrawals awaiting approval, as the web
//! edge has seen them requested, approved, completed and rejected.
//!
//! The table is fed by the dispatcher from the gateway loop's output, in sequence order: the
//! loop forwards every withdrawal event to the web edge whatever its origin (binary or web),
//! feed on or off. At start, `ringbook serve` seeds it with the journal's replay, the same one
//! that rebuilds the gateway's market data (or, when the journal's first records were pruned,
//! from the recovered engine state) — only together with market data: with
//! `serve --no-market-data` the route answers `501 UNSUPPORTED`. It holds no more entries than the engine lets be
//! pending (`[capacity] withdrawals_max`): a completed or rejected withdrawal leaves it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::State;
use axum::Json;
use ringbook_engine::{Config, Event};
use ringbook_gateway::server::Role;
use serde_json::{json, Value};

use crate::api::{Authed, Shared};
use crate::error::{ApiError, WebCode};
use crate::json as j;

/// One pending withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    user: u32,
    currency: ringbook_engine::CurrencyId,
    amount: u64,
    /// Operators that approved it so far (at most one while pending).
    approved_by: Option<u32>,
}

/// The pending withdrawals the web edge has seen, by id.
#[derive(Debug)]
pub struct PendingWithdrawals {
    map: Mutex<BTreeMap<u64, Pending>>,
    /// Entries at most (the engine's bound on pending withdrawals).
    max: usize,
}

impl PendingWithdrawals {
    /// An empty table for `config`'s engine.
    pub fn new(config: &Config) -> PendingWithdrawals {
        PendingWithdrawals {
            map: Mutex::new(BTreeMap::new()),
            max: config.capacity.withdrawals_max as usize,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Pending>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A table holding what `engine` has pending (a server starting from a snapshot of state
    /// rather than the whole journal).
    pub fn from_engine(config: &Config, engine: &ringbook_engine::Engine) -> PendingWithdrawals {
        let t = PendingWithdrawals::new(config);
        {
            let mut m = t.lock();
            for w in engine.accounts().pending_withdrawals() {
                m.insert(
                    w.id.0,
                    Pending {
                        user: w.user.0,
                        currency: w.currency,
                        amount: w.amount,
                        approved_by: w.first_approval.map(|o| o.0),
                    },
                );
            }
        }
        t
    }

    /// Learns one engine event (others are ignored).
    pub fn apply(&self, e: &Event) {
        match *e {
            Event::WithdrawalRequested {
                withdrawal_id,
                user,
                currency,
                amount,
            } => {
                let mut m = self.lock();
                // The engine never has more pending than `max`; a table that does has missed
                // an end (it cannot: events arrive in order), so the oldest goes first.
                while m.len() >= self.max.max(1) {
                    m.pop_first();
                }
                m.insert(
                    withdrawal_id.0,
                    Pending {
                        user: user.0,
                        currency,
                        amount,
                        approved_by: None,
                    },
                );
            }
            Event::WithdrawalApproved {
                withdrawal_id,
                operator,
                ..
            } => {
                if let Some(p) = self.lock().get_mut(&withdrawal_id.0) {
                    p.approved_by = Some(operator.0);
                }
            }
            Event::WithdrawalCompleted { withdrawal_id, .. }
            | Event::WithdrawalRejected { withdrawal_id, .. } => {
                self.lock().remove(&withdrawal_id.0);
            }
            _ => {}
        }
    }

    /// The table as JSON, oldest first.
    fn to_json(&self, config: &Config) -> Vec<Value> {
        self.lock()
            .iter()
            .map(|(id, p)| {
                json!({
                    "withdrawal_id": id, "user": p.user, "currency": j::cur(config, p.currency),
                    "amount": p.amount,
                    "approved_by": p.approved_by.map_or_else(Vec::new, |o| vec![o]),
                })
            })
            .collect()
    }
}

/// `GET /api/v1/withdrawals/pending`.
pub(crate) async fn pending(State(st): State<Shared>, a: Authed) -> Result<Json<Value>, ApiError> {
    if !matches!(a.1, Role::Operator(_)) {
        return Err(ApiError::reject(
            ringbook_engine::RejectCode::OperatorOnly,
            "only operators see pending withdrawals",
        ));
    }
    if st.edge.md.is_none() {
        return Err(ApiError::web(
            WebCode::Unsupported,
            "the pending-withdrawal list needs the market-data feed (serve without \
             --no-market-data)",
        ));
    }
    Ok(Json(json!({
        "withdrawals": st.edge.withdrawals.to_json(&st.edge.config),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::{CurrencyId, OperatorId, UserId, WithdrawalId};

    #[test]
    fn requested_approved_then_completed_or_rejected() {
        let mut c = Config::default();
        c.capacity.withdrawals_max = 2;
        let t = PendingWithdrawals::new(&c);
        let req = |id, user| Event::WithdrawalRequested {
            withdrawal_id: WithdrawalId(id),
            user: UserId(user),
            currency: CurrencyId(0),
            amount: 500,
        };
        t.apply(&req(1, 7));
        t.apply(&req(2, 8));
        t.apply(&Event::WithdrawalApproved {
            withdrawal_id: WithdrawalId(1),
            operator: OperatorId(900),
            user: UserId(7),
            approvals: 1,
        });
        let v = t.to_json(&c);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["withdrawal_id"], 1);
        assert_eq!(v[0]["currency"], "KRW");
        assert_eq!(v[0]["approved_by"], json!([900]));
        assert_eq!(v[1]["approved_by"], json!([]));
        t.apply(&Event::WithdrawalCompleted {
            withdrawal_id: WithdrawalId(1),
            user: UserId(7),
            currency: CurrencyId(0),
            amount: 500,
        });
        t.apply(&Event::WithdrawalRejected {
            withdrawal_id: WithdrawalId(2),
            operator: OperatorId(901),
            user: UserId(8),
        });
        assert!(t.to_json(&c).is_empty());
        // Bounded by the engine's own bound.
        for id in 10..15 {
            t.apply(&req(id, 1));
        }
        let ids: Vec<_> = t
            .to_json(&c)
            .iter()
            .map(|w| w["withdrawal_id"].clone())
            .collect();
        assert_eq!(ids, vec![json!(13), json!(14)]);
    }
}
