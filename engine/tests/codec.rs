//! Property tests of the command codec ([`ringbook_engine::codec`]).
//!
//! - every command kind, with arbitrary field values, round-trips through `encode` / `decode`;
//! - every strict prefix of an encoding fails cleanly (`Truncated` or `Empty`), and so does any
//!   encoding with bytes appended;
//! - arbitrary byte strings never panic the decoder, and whatever decodes re-encodes to exactly
//!   the same bytes (one command, one encoding);
//! - single-byte corruptions of valid encodings either fail or decode to a command whose
//!   encoding is the corrupted bytes.

use proptest::prelude::*;
use ringbook_engine::codec::{decode, encode, encoded_len, DecodeError, COMMAND_BYTES_MAX};
use ringbook_engine::prelude::*;

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn order_type() -> impl Strategy<Value = OrderType> {
    prop_oneof![
        Just(OrderType::Limit),
        Just(OrderType::Market),
        Just(OrderType::StopLimit),
        Just(OrderType::StopMarket),
    ]
}

fn tif() -> impl Strategy<Value = TimeInForce> {
    prop_oneof![
        Just(TimeInForce::Gtc),
        Just(TimeInForce::Ioc),
        Just(TimeInForce::Fok),
        Just(TimeInForce::Gtd),
        Just(TimeInForce::Day),
    ]
}

fn stp() -> impl Strategy<Value = StpMode> {
    prop_oneof![
        Just(StpMode::None),
        Just(StpMode::CancelNewest),
        Just(StpMode::CancelOldest),
        Just(StpMode::CancelBoth),
        Just(StpMode::Decrement),
    ]
}

fn new_order() -> impl Strategy<Value = NewOrder> {
    (
        (
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            side(),
            order_type(),
            tif(),
        ),
        (
            any::<i64>(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>(),
            any::<bool>(),
            stp(),
        ),
        // Budget and expiry: mostly neither (the plain kind), any value otherwise.
        prop_oneof![2 => Just((0u64, 0u64)), 1 => (any::<u64>(), any::<u64>())],
    )
        .prop_map(
            |(
                (user, symbol, coid, side, order_type, tif),
                (price, qty, stop, display, post_only, stp),
                (budget, expire_at),
            )| NewOrder {
                user: UserId(user),
                symbol: SymbolId(symbol),
                client_order_id: ClientOrderId(coid),
                side,
                order_type,
                tif,
                price: Price(price),
                qty: Qty(qty),
                stop_price: Price(stop),
                display_qty: Qty(display),
                post_only,
                stp,
                budget,
                expire_at,
            },
        )
}

/// Any command of any kind, every field drawn from its whole range.
fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        new_order().prop_map(Command::NewOrder),
        (any::<u32>(), any::<u16>(), any::<u64>()).prop_map(|(u, s, c)| Command::Cancel {
            user: UserId(u),
            symbol: SymbolId(s),
            client_order_id: ClientOrderId(c),
        }),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>()
        )
            .prop_map(|(u, s, c, p, q)| Command::Amend {
                user: UserId(u),
                symbol: SymbolId(s),
                client_order_id: ClientOrderId(c),
                price: Price(p),
                qty: Qty(q),
            }),
        (any::<u32>(), any::<u16>(), any::<u64>()).prop_map(|(u, s, o)| Command::CancelOrder {
            user: UserId(u),
            symbol: SymbolId(s),
            order_id: OrderId(o),
        }),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>()
        )
            .prop_map(|(u, s, o, p, q)| Command::AmendOrder {
                user: UserId(u),
                symbol: SymbolId(s),
                order_id: OrderId(o),
                price: Price(p),
                qty: Qty(q),
            }),
        (any::<u32>(), any::<Option<u16>>(), any::<bool>()).prop_map(|(u, s, d)| {
            Command::MassCancel {
                user: UserId(u),
                symbol: s.map(SymbolId),
                on_disconnect: d,
            }
        }),
        (any::<u32>(), any::<u16>(), any::<u64>()).prop_map(|(u, c, a)| Command::Deposit {
            user: UserId(u),
            currency: CurrencyId(c),
            amount: a,
        }),
        (any::<u32>(), any::<u16>(), any::<u64>()).prop_map(|(u, c, a)| Command::Withdraw {
            user: UserId(u),
            currency: CurrencyId(c),
            amount: a,
        }),
        (any::<u32>(), any::<u64>()).prop_map(|(o, w)| Command::ApproveWithdrawal {
            operator: OperatorId(o),
            withdrawal_id: WithdrawalId(w),
        }),
        (any::<u32>(), any::<u64>()).prop_map(|(o, w)| Command::RejectWithdrawal {
            operator: OperatorId(o),
            withdrawal_id: WithdrawalId(w),
        }),
        (any::<u32>(), any::<u64>()).prop_map(|(u, c)| Command::Query(Query::Order {
            user: UserId(u),
            client_order_id: ClientOrderId(c),
        })),
        (any::<u32>(), any::<u64>()).prop_map(|(u, o)| Command::Query(Query::OrderById {
            user: UserId(u),
            order_id: OrderId(o),
        })),
        (any::<u32>(), any::<u32>()).prop_map(|(u, limit)| Command::Query(Query::OpenOrders {
            user: UserId(u),
            limit,
        })),
        any::<u32>().prop_map(|u| Command::Query(Query::Balances { user: UserId(u) })),
        (any::<u16>(), any::<u32>()).prop_map(|(s, depth)| Command::Query(Query::Book {
            symbol: SymbolId(s),
            depth,
        })),
        Just(Command::Tick),
    ]
}

fn encoded(cmd: &Command) -> Vec<u8> {
    let mut buf = [0u8; COMMAND_BYTES_MAX];
    let len = encode(cmd, &mut buf);
    buf[..len].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_command_round_trips(cmd in command()) {
        let bytes = encoded(&cmd);
        prop_assert_eq!(bytes.len(), encoded_len(&cmd));
        prop_assert_eq!(decode(&bytes), Ok(cmd));
    }

    #[test]
    fn encoding_ignores_the_buffers_old_contents(cmd in command(), fill in any::<u8>()) {
        let mut buf = [fill; COMMAND_BYTES_MAX];
        let len = encode(&cmd, &mut buf);
        prop_assert_eq!(&buf[..len], &encoded(&cmd)[..]);
    }

    #[test]
    fn every_truncation_fails_cleanly(cmd in command()) {
        let bytes = encoded(&cmd);
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut]).unwrap_err();
            let expected = if cut == 0 {
                DecodeError::Empty
            } else {
                DecodeError::Truncated { kind: bytes[0], needed: bytes.len(), got: cut }
            };
            prop_assert_eq!(err, expected);
        }
    }

    #[test]
    fn appended_bytes_fail_cleanly(cmd in command(), extra in prop::collection::vec(any::<u8>(), 1..16)) {
        let mut bytes = encoded(&cmd);
        let len = bytes.len();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(
            decode(&bytes),
            Err(DecodeError::TrailingBytes { kind: bytes[0], expected: len, got: bytes.len() })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_canonically(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(cmd) = decode(&bytes) {
            prop_assert_eq!(encoded(&cmd), bytes);
        }
    }

    /// Arbitrary bytes rarely start with a valid kind and length; this one makes every body
    /// byte arbitrary for a valid kind and length, so the field checks are what is tested.
    #[test]
    fn arbitrary_bodies_never_panic_and_decode_canonically(kind in 0u8..14, body in prop::collection::vec(any::<u8>(), 52)) {
        for len in 1..=body.len() {
            let mut bytes = body[..len].to_vec();
            bytes[0] = kind;
            if let Ok(cmd) = decode(&bytes) {
                prop_assert_eq!(encoded(&cmd), bytes);
            }
        }
    }

    #[test]
    fn corrupted_bytes_fail_or_re_encode_exactly(cmd in command(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = encoded(&cmd);
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        match decode(&bytes) {
            Ok(other) => prop_assert_eq!(encoded(&other), bytes),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn every_kind_has_its_own_byte_and_length() {
    let cmds = [
        Command::NewOrder(NewOrder::limit(
            UserId(1),
            SymbolId(0),
            ClientOrderId(1),
            Side::Buy,
            Price(10),
            Qty(1),
        )),
        Command::Cancel {
            user: UserId(1),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(1),
        },
        Command::Amend {
            user: UserId(1),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(1),
            price: Price(10),
            qty: Qty(1),
        },
        Command::MassCancel {
            user: UserId(1),
            symbol: None,
            on_disconnect: false,
        },
        Command::Deposit {
            user: UserId(1),
            currency: CurrencyId(0),
            amount: 1,
        },
        Command::Withdraw {
            user: UserId(1),
            currency: CurrencyId(0),
            amount: 1,
        },
        Command::ApproveWithdrawal {
            operator: OperatorId(900),
            withdrawal_id: WithdrawalId(1),
        },
        Command::RejectWithdrawal {
            operator: OperatorId(900),
            withdrawal_id: WithdrawalId(1),
        },
        Command::CancelOrder {
            user: UserId(1),
            symbol: SymbolId(0),
            order_id: OrderId(1),
        },
        Command::AmendOrder {
            user: UserId(1),
            symbol: SymbolId(0),
            order_id: OrderId(1),
            price: Price(10),
            qty: Qty(1),
        },
    ];
    let mut cmds = cmds.to_vec();
    cmds.push(Command::NewOrder(NewOrder::market_budget(
        UserId(1),
        SymbolId(0),
        ClientOrderId(2),
        Price(10),
        1_000,
    )));
    cmds.push(Command::Tick);
    let kinds: Vec<u8> = cmds.iter().map(|c| encoded(c)[0]).collect();
    assert_eq!(kinds, [1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16]);
    let lens: Vec<usize> = cmds.iter().map(|c| encoded(c).len()).collect();
    assert_eq!(lens, [52, 15, 31, 8, 15, 15, 13, 13, 15, 31, 68, 1]);
    assert_eq!(lens.iter().max(), Some(&COMMAND_BYTES_MAX));
}
