//! Adapters for the peer order books (dev-dependencies only), shared by the `book` and
//! `book_ops` benches. Each applies one [`Op`] through the peer's public API and returns the
//! traded volume, like [`ringbook_bench::RingbookBook`].
//!
//! Semantics, as far as this workload is concerned (read from the peers' sources):
//! - matchcore 0.4: `MarketOrder` (not market-to-limit) matches at any price and cancels its
//!   remainder, like ringbook's market order with the protection price at the band edge. Order
//!   ids are the command sequence numbers, so the adapter maps the workload's ids to them (in
//!   the timed loop, unless the stream was resolved for matchcore: `--resolved-ids`).
//! - lobster 0.7: `OrderType::Market` matches at any price, remainder dropped. Fully filled makers
//!   are drained from their level but stay in lobster's id map and arena (so the arena is sized
//!   to every id the workload uses); cancels search the level's `Vec` linearly; empty levels stay
//!   in the `BTreeMap` and the best price is recomputed by iterating levels after every match
//!   and cancel.
//!
//! All three are price-time FIFO books, so on the same operations they must trade the same
//! volume; the `book` harness checks that.

use ringbook_bench::{BookAdapter, Op, Side, UNRESOLVED};

/// matchcore 0.4 behind the [`BookAdapter`] interface.
#[derive(Debug)]
pub struct MatchcoreBook {
    book: matchcore::OrderBook,
    next_seq: u64,
    /// Workload id → matchcore order id (the sequence number of its submit).
    ids: Vec<u64>,
    errors: u64,
}

impl MatchcoreBook {
    /// An empty book; `max_id` sizes the id map up front.
    pub fn new(max_id: u64) -> MatchcoreBook {
        MatchcoreBook {
            book: matchcore::OrderBook::new("BENCH"),
            next_seq: 0,
            ids: vec![UNRESOLVED; max_id as usize + 1],
            errors: 0,
        }
    }

    #[inline]
    fn side(side: Side) -> matchcore::Side {
        match side {
            Side::Buy => matchcore::Side::Buy,
            Side::Sell => matchcore::Side::Sell,
        }
    }

    #[inline]
    fn meta(&mut self) -> matchcore::CommandMeta {
        let seq = self.next_seq;
        self.next_seq += 1;
        matchcore::CommandMeta {
            sequence_number: matchcore::SequenceNumber(seq),
            timestamp: matchcore::Timestamp(0),
        }
    }
}

impl BookAdapter for MatchcoreBook {
    const NAME: &'static str = "matchcore";

    #[inline]
    fn apply(&mut self, op: &Op) -> u64 {
        use matchcore::{
            CommandKind, CommandOutcome, CommandReport, LimitOrder, MarketOrder, NewOrder,
            OrderFlags, Price, Quantity, QuantityPolicy, SubmitCmd, TimeInForce,
        };
        let meta = self.meta();
        let kind = match *op {
            Op::Add {
                id,
                side,
                price,
                qty,
            } => {
                if id as usize >= self.ids.len() {
                    self.ids.resize(id as usize + 1, UNRESOLVED);
                }
                self.ids[id as usize] = meta.sequence_number.0;
                CommandKind::Submit(SubmitCmd {
                    order: NewOrder::Limit(LimitOrder::new(
                        Price(price as u64),
                        QuantityPolicy::Standard {
                            quantity: Quantity(qty),
                        },
                        OrderFlags::new(Self::side(side), false, TimeInForce::Gtc),
                    )),
                })
            }
            Op::Cancel { id, handle } => CommandKind::Cancel(matchcore::CancelCmd {
                order_id: matchcore::OrderId(if handle != UNRESOLVED {
                    handle
                } else {
                    self.ids[id as usize]
                }),
                order_kind: matchcore::OrderKind::Limit,
            }),
            Op::Market { side, qty } => CommandKind::Submit(SubmitCmd {
                order: NewOrder::Market(MarketOrder::new(Quantity(qty), Self::side(side), false)),
            }),
        };
        match self.book.execute(&matchcore::Command { meta, kind }) {
            CommandOutcome::Applied(CommandReport::Submit(effects)) => {
                let traded = |o: &matchcore::OrderOutcome| {
                    o.match_result().map_or(0, |m| m.executed_quantity().0)
                };
                traded(effects.target_order())
                    + effects.triggered_orders().iter().map(traded).sum::<u64>()
            }
            CommandOutcome::Applied(_) => 0,
            CommandOutcome::Rejected(_) => {
                self.errors += 1;
                0
            }
        }
    }

    fn errors(&self) -> u64 {
        self.errors
    }

    fn handle_of(&self, id: u64) -> Option<u64> {
        self.ids
            .get(id as usize)
            .copied()
            .filter(|&seq| seq != UNRESOLVED)
    }
}

/// lobster 0.7 behind the [`BookAdapter`] interface.
#[derive(Debug)]
pub struct LobsterBook {
    book: lobster::OrderBook,
}

impl LobsterBook {
    /// An empty book whose arena is pre-allocated for `arena` orders (lobster never frees the
    /// arena slot of a filled order, so this should cover every id the workload uses).
    pub fn new(arena: usize) -> LobsterBook {
        LobsterBook {
            book: lobster::OrderBook::new(arena, 10, false),
        }
    }

    #[inline]
    fn side(side: Side) -> lobster::Side {
        match side {
            Side::Buy => lobster::Side::Bid,
            Side::Sell => lobster::Side::Ask,
        }
    }
}

impl BookAdapter for LobsterBook {
    const NAME: &'static str = "lobster";

    #[inline]
    fn apply(&mut self, op: &Op) -> u64 {
        use lobster::{OrderEvent, OrderType};
        let order = match *op {
            Op::Add {
                id,
                side,
                price,
                qty,
            } => OrderType::Limit {
                id: u128::from(id),
                side: Self::side(side),
                qty,
                price: price as u64,
            },
            Op::Cancel { id, .. } => OrderType::Cancel { id: u128::from(id) },
            Op::Market { side, qty } => OrderType::Market {
                id: u128::MAX,
                side: Self::side(side),
                qty,
            },
        };
        match self.book.execute(order) {
            OrderEvent::Filled { filled_qty, .. }
            | OrderEvent::PartiallyFilled { filled_qty, .. } => filled_qty,
            OrderEvent::Placed { .. }
            | OrderEvent::Canceled { .. }
            | OrderEvent::Unfilled { .. } => 0,
        }
    }

    /// lobster reports no errors (a cancel of an unknown id is a silent no-op); the volume check
    /// is what catches a divergence.
    fn errors(&self) -> u64 {
        0
    }
}
