//! Engine events on the binary wire: what each [`Event`] becomes as [`ServerMsg`]s, and whose
//! sessions each message is for.
//!
//! The server (`server/route.rs`) decides *which* sessions those are (its user→sessions index,
//! the session that sent the command); this module only says *what* they get, so that a new
//! event or field is one edit beside the codec. Nothing here allocates: an event becomes at most
//! two messages ([`Wire`], a fixed-capacity array).

use arrayvec::ArrayVec;
use ringbook_engine::{Event, Liquidity, Side};

use super::server::BOOK_LEVELS_PER_MSG;
use super::{name32, OrderInfo, ServerMsg};

/// Whose sessions a translated message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every session of this user (an order's lifecycle reaches all of its owner's sessions).
    User(u32),
    /// Every session of this user, and the session whose command caused the event if it is not
    /// one of them (an operator sees the results of its own deposits and approvals).
    UserAndOrigin(u32),
    /// Only the session whose command or query caused the event (a reject, a query's reply);
    /// nobody if that session has gone.
    Origin,
}

/// What the gateway remembers of the command an event answers (zeros when it remembers none:
/// a command of no session, or one submitted before a restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cause {
    /// The client message type that carried the command (echoed in a `Rejected`).
    pub msg_type: u16,
    /// A query's request id (echoed in its replies; 0 for commands).
    pub request_id: u64,
}

/// The messages one event becomes: at most two (a trade's two fills; a book query's last
/// `BookLevels` and its `BookEnd`).
pub type Wire = ArrayVec<(Audience, ServerMsg), 2>;

/// Book levels of one side waiting to fill a `BookLevels` message. One command's events are
/// contiguous in the engine's output, so one accumulator serves every query.
#[derive(Clone, Copy, Debug, Default)]
pub struct BookLevelsAcc {
    symbol: u16,
    side: Side,
    count: usize,
    levels: [(i64, u64); BOOK_LEVELS_PER_MSG],
}

impl BookLevelsAcc {
    /// The levels gathered so far as one `BookLevels` message (none if there are none); the
    /// accumulator starts over.
    fn take(&mut self, request_id: u64) -> Option<ServerMsg> {
        let acc = std::mem::take(self);
        (acc.count > 0).then_some(ServerMsg::BookLevels {
            seq: 0,
            request_id,
            symbol: acc.symbol,
            side: acc.side,
            count: acc.count as u8,
            levels: acc.levels,
        })
    }
}

/// The messages `e` becomes, each with its audience. Book levels are gathered in `book` and
/// come out as one `BookLevels` message per side and per [`BOOK_LEVELS_PER_MSG`] levels.
pub fn translate(e: &Event, cause: Cause, book: &mut BookLevelsAcc) -> Wire {
    let mut out = Wire::new();
    let request_id = cause.request_id;
    let mut one = |to: Audience, msg: ServerMsg| out.push((to, msg));
    match *e {
        Event::Accepted {
            user,
            symbol,
            client_order_id,
            order_id,
            side,
            order_type,
            price,
            qty,
            ..
        } => one(
            Audience::User(user.0),
            ServerMsg::Accepted {
                seq: 0,
                user: user.0,
                symbol: symbol.0,
                side,
                order_type,
                client_order_id: client_order_id.0,
                order_id: order_id.0,
                price: price.0,
                qty: qty.0,
            },
        ),
        Event::Rejected {
            user,
            client_order_id,
            code,
        } => one(
            Audience::Origin,
            ServerMsg::rejected(0, user.0, cause.msg_type, code, client_order_id.0),
        ),
        Event::Trade(t) => {
            for (fill, role, side, contra) in [
                (
                    t.maker,
                    Liquidity::Maker,
                    t.taker_side.opposite(),
                    t.taker.order_id,
                ),
                (t.taker, Liquidity::Taker, t.taker_side, t.maker.order_id),
            ] {
                one(
                    Audience::User(fill.user.0),
                    ServerMsg::Fill {
                        seq: 0,
                        user: fill.user.0,
                        symbol: t.symbol.0,
                        side,
                        role,
                        client_order_id: fill.client_order_id.0,
                        order_id: fill.order_id.0,
                        price: t.price.0,
                        qty: t.qty.0,
                        leaves_qty: fill.leaves_qty.0,
                        cum_qty: fill.cum_qty.0,
                        fee: fill.fee,
                        trade_id: t.trade_id.0,
                        ts: t.ts,
                        contra_order_id: contra.0,
                    },
                );
            }
        }
        Event::Cancelled {
            user,
            symbol,
            client_order_id,
            order_id,
            side,
            price,
            qty,
            leaves_qty,
            reason,
        } => one(
            Audience::User(user.0),
            ServerMsg::Cancelled {
                seq: 0,
                user: user.0,
                symbol: symbol.0,
                side,
                reason,
                client_order_id: client_order_id.0,
                order_id: order_id.0,
                price: price.0,
                qty: qty.0,
                leaves_qty: leaves_qty.0,
            },
        ),
        Event::Amended {
            user,
            symbol,
            client_order_id,
            order_id,
            price,
            qty,
            ..
        } => one(
            Audience::User(user.0),
            ServerMsg::Amended {
                seq: 0,
                user: user.0,
                symbol: symbol.0,
                client_order_id: client_order_id.0,
                order_id: order_id.0,
                price: price.0,
                qty: qty.0,
            },
        ),
        Event::Triggered {
            user,
            symbol,
            client_order_id,
            order_id,
        } => one(
            Audience::User(user.0),
            ServerMsg::Triggered {
                seq: 0,
                user: user.0,
                symbol: symbol.0,
                client_order_id: client_order_id.0,
                order_id: order_id.0,
            },
        ),
        Event::MassCancelled {
            user,
            symbol,
            count,
        } => one(
            Audience::User(user.0),
            ServerMsg::MassCancelled {
                seq: 0,
                user: user.0,
                symbol: symbol.map_or(u16::MAX, |s| s.0),
                count,
            },
        ),
        Event::Deposited {
            user,
            currency,
            amount,
        } => one(
            Audience::UserAndOrigin(user.0),
            ServerMsg::Deposited {
                seq: 0,
                user: user.0,
                currency: currency.0,
                amount,
            },
        ),
        Event::WithdrawalRequested {
            withdrawal_id,
            user,
            currency,
            amount,
        } => one(
            Audience::UserAndOrigin(user.0),
            ServerMsg::WithdrawalRequested {
                seq: 0,
                withdrawal_id: withdrawal_id.0,
                user: user.0,
                currency: currency.0,
                amount,
            },
        ),
        Event::WithdrawalApproved {
            withdrawal_id,
            operator,
            user,
            approvals,
        } => one(
            Audience::UserAndOrigin(user.0),
            ServerMsg::WithdrawalApproved {
                seq: 0,
                withdrawal_id: withdrawal_id.0,
                operator: operator.0,
                user: user.0,
                approvals,
            },
        ),
        Event::WithdrawalCompleted {
            withdrawal_id,
            user,
            currency,
            amount,
        } => one(
            Audience::UserAndOrigin(user.0),
            ServerMsg::WithdrawalCompleted {
                seq: 0,
                withdrawal_id: withdrawal_id.0,
                user: user.0,
                currency: currency.0,
                amount,
            },
        ),
        Event::WithdrawalRejected {
            withdrawal_id,
            operator,
            user,
        } => one(
            Audience::UserAndOrigin(user.0),
            ServerMsg::WithdrawalRejected {
                seq: 0,
                withdrawal_id: withdrawal_id.0,
                operator: operator.0,
                user: user.0,
            },
        ),
        Event::OperatorRejected {
            operator,
            withdrawal_id,
            code,
        } => one(
            Audience::Origin,
            ServerMsg::OperatorRejected {
                seq: 0,
                withdrawal_id: withdrawal_id.0,
                operator: operator.0,
                code: code.code(),
                name: name32(code.name()),
            },
        ),
        Event::BalanceUpdate {
            user,
            currency,
            available,
            locked,
        } => one(
            Audience::UserAndOrigin(user.0),
            ServerMsg::BalanceUpdate {
                seq: 0,
                user: user.0,
                currency: currency.0,
                available,
                locked,
            },
        ),
        // Query replies: to the asking session only, with its request id.
        Event::OrderStatus {
            user,
            order,
            finished,
            filled_notional,
            ..
        } => {
            let (found, detail, info, finished_ts) = match (order, finished) {
                (Some(v), _) => (true, 0, OrderInfo::from_view(&v), 0),
                (None, Some(f)) => (
                    true,
                    f.status.detail(),
                    OrderInfo::from_finished(user.0, &f),
                    f.ts,
                ),
                (None, None) => (false, 0, OrderInfo::default(), 0),
            };
            one(
                Audience::Origin,
                ServerMsg::OrderStatus {
                    seq: 0,
                    request_id,
                    found,
                    detail,
                    order: info,
                    filled_notional,
                    finished_ts,
                },
            )
        }
        Event::OpenOrder(v) => one(
            Audience::Origin,
            ServerMsg::OpenOrder {
                seq: 0,
                request_id,
                order: OrderInfo::from_view(&v),
            },
        ),
        Event::OpenOrdersEnd { count, .. } => one(
            Audience::Origin,
            ServerMsg::OpenOrdersEnd {
                seq: 0,
                request_id,
                count,
            },
        ),
        Event::Balance {
            currency,
            available,
            locked,
            ..
        } => one(
            Audience::Origin,
            ServerMsg::Balance {
                seq: 0,
                request_id,
                currency: currency.0,
                available,
                locked,
            },
        ),
        Event::BalancesEnd { count, .. } => one(
            Audience::Origin,
            ServerMsg::BalancesEnd {
                seq: 0,
                request_id,
                count,
            },
        ),
        Event::BookLevel {
            symbol,
            side,
            price,
            qty,
        } => {
            if book.count > 0 && (book.side != side || book.count == BOOK_LEVELS_PER_MSG) {
                if let Some(m) = book.take(request_id) {
                    one(Audience::Origin, m);
                }
            }
            book.symbol = symbol.0;
            book.side = side;
            book.levels[book.count] = (price.0, qty.0);
            book.count += 1;
        }
        Event::BookEnd {
            symbol,
            bid_levels,
            ask_levels,
        } => {
            if let Some(m) = book.take(request_id) {
                one(Audience::Origin, m);
            }
            one(
                Audience::Origin,
                ServerMsg::BookEnd {
                    seq: 0,
                    request_id,
                    symbol: symbol.0,
                    bid_levels,
                    ask_levels,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::{
        ClientOrderId, CurrencyId, Price, Qty, RejectCode, Side, SymbolId, UserId,
    };

    #[test]
    fn order_events_go_to_their_user_and_operator_results_also_to_the_origin() {
        let mut book = BookLevelsAcc::default();
        let cause = Cause {
            msg_type: 7,
            request_id: 0,
        };
        let w = translate(
            &Event::Deposited {
                user: UserId(3),
                currency: CurrencyId(1),
                amount: 50,
            },
            cause,
            &mut book,
        );
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, Audience::UserAndOrigin(3));
        let w = translate(
            &Event::Rejected {
                user: UserId(3),
                client_order_id: ClientOrderId(9),
                code: RejectCode::InsufficientFunds,
            },
            cause,
            &mut book,
        );
        assert_eq!(
            w.as_slice(),
            &[(
                Audience::Origin,
                ServerMsg::rejected(0, 3, 7, RejectCode::InsufficientFunds, 9)
            )]
        );
    }

    #[test]
    fn book_levels_are_packed_per_side_and_per_message() {
        let mut book = BookLevelsAcc::default();
        let cause = Cause {
            msg_type: 0,
            request_id: 42,
        };
        let level = |side, price| Event::BookLevel {
            symbol: SymbolId(2),
            side,
            price: Price(price),
            qty: Qty(1),
        };
        let mut msgs = Vec::new();
        // 10 bids (one full message, then 2), 1 ask, then the end.
        for i in 0..10 {
            msgs.extend(translate(&level(Side::Buy, 100 - i), cause, &mut book));
        }
        msgs.extend(translate(&level(Side::Sell, 101), cause, &mut book));
        msgs.extend(translate(
            &Event::BookEnd {
                symbol: SymbolId(2),
                bid_levels: 10,
                ask_levels: 1,
            },
            cause,
            &mut book,
        ));
        let counts: Vec<(u8, u8)> = msgs
            .iter()
            .map(|(to, m)| {
                assert_eq!(*to, Audience::Origin);
                match *m {
                    ServerMsg::BookLevels {
                        side,
                        count,
                        request_id,
                        ..
                    } => {
                        assert_eq!(request_id, 42);
                        (side as u8, count)
                    }
                    ServerMsg::BookEnd { request_id, .. } => {
                        assert_eq!(request_id, 42);
                        (u8::MAX, 0)
                    }
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect();
        let (buy, sell) = (Side::Buy as u8, Side::Sell as u8);
        assert_eq!(
            counts,
            [
                (buy, BOOK_LEVELS_PER_MSG as u8),
                (buy, 10 - BOOK_LEVELS_PER_MSG as u8),
                (sell, 1),
                (u8::MAX, 0)
            ]
        );
        // The accumulator starts over for the next query.
        assert!(book.take(0).is_none());
    }
}
