//! The pipeline harness's workload: a deterministic stream of engine [`Command`]s over several
//! users and symbols — passive limits near the touch, cancels of recent orders, aggressive
//! limits and market orders — plus the deposits that fund every user, so risk is exercised on
//! every order.

use ringbook_engine::prelude::{
    ClientOrderId, Command, Config, CurrencyId, NewOrder, Price, Qty, Side, SymbolId, TimeInForce,
    UserId,
};

use crate::SplitMix64;

/// Users the stream spreads over.
pub const PIPELINE_USERS: u32 = 64;
const RECENT: usize = 1024;

/// Deposits that fund every user in every currency of `config` (run before timing).
pub fn deposits(config: &Config) -> Vec<Command> {
    let mut out = Vec::new();
    for user in 0..PIPELINE_USERS {
        for currency in 0..config.currencies.len() {
            out.push(Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency as u16),
                amount: 1 << 52,
            });
        }
    }
    out
}

/// `n` mixed commands for the default configuration's symbols (mids near their typical
/// prices), from `seed`.
pub fn commands(config: &Config, n: usize, seed: u64) -> Vec<Command> {
    let mut rng = SplitMix64::new(seed);
    let symbols = config.symbols.len() as u64;
    let mut mids: Vec<i64> = config
        .symbols
        .iter()
        .map(|s| (s.price_min + s.price_max) / 2)
        .collect();
    let mut recent = [(UserId(0), SymbolId(0), ClientOrderId(0)); RECENT];
    let mut next_coid = 1u64;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let symbol = SymbolId(rng.below(symbols) as u16);
        let user = UserId(rng.below(u64::from(PIPELINE_USERS)) as u32);
        let mid = &mut mids[symbol.0 as usize];
        *mid += rng.below(3) as i64 - 1;
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let sign = if side == Side::Buy { 1 } else { -1 };
        let kind = rng.below(100);
        let cmd = if kind < 30 {
            let (user, symbol, client_order_id) = recent[rng.below(RECENT as u64) as usize];
            Command::Cancel {
                user,
                symbol,
                client_order_id,
            }
        } else {
            let coid = ClientOrderId(next_coid);
            next_coid += 1;
            recent[rng.below(RECENT as u64) as usize] = (user, symbol, coid);
            let qty = Qty(1 + rng.below(20));
            if kind < 85 {
                // Passive: up to 10 ticks behind the mid on its own side.
                let price = Price(*mid - sign * (1 + rng.below(10) as i64));
                Command::NewOrder(NewOrder::limit(user, symbol, coid, side, price, qty))
            } else if kind < 95 {
                // Aggressive IOC limit a few ticks through the mid.
                let mut o = NewOrder::limit(
                    user,
                    symbol,
                    coid,
                    side,
                    Price(*mid + sign * rng.below(5) as i64),
                    qty,
                );
                o.tif = TimeInForce::Ioc;
                Command::NewOrder(o)
            } else {
                let protection = Price(*mid + sign * 50);
                Command::NewOrder(NewOrder::market(user, symbol, coid, side, protection, qty))
            }
        };
        out.push(cmd);
    }
    out
}
