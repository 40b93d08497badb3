//! Property tests of the codec: arbitrary bytes never panic the decoders, and every message
//! round-trips.
//!
//! `cargo test -p ringbook-gateway --test codec_props`

use proptest::prelude::*;
use ringbook_engine::prelude::*;
use ringbook_gateway::protocol::client::Login;
use ringbook_gateway::protocol::server::{GatewayStats, OrderInfo, Role};
use ringbook_gateway::protocol::{
    split_frame, ClientMsg, ServerMsg, FRAME_BYTES_MAX, PROTOCOL_VERSION,
};

fn decode_all(bytes: &[u8]) {
    let mut rest = bytes;
    while let Ok(Some((h, body))) = split_frame(rest) {
        assert!(h.frame_len <= FRAME_BYTES_MAX && h.frame_len <= rest.len());
        if let Ok(msg) = ClientMsg::decode(h.msg_type, h.version, body) {
            // Whatever decodes re-encodes to exactly the same frame (one encoding per message).
            let mut f = [0u8; FRAME_BYTES_MAX];
            let n = msg.encode(&mut f);
            assert_eq!(&f[..n], &rest[..h.frame_len]);
        }
        let _ = ServerMsg::decode(h.msg_type, h.version, body);
        rest = &rest[h.frame_len..];
    }
}

fn arb_cmd() -> impl Strategy<Value = Command> {
    (
        (
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>(),
        ),
        (0u8..2, 0u8..4, 0u8..5, 0u8..5, any::<bool>(), 0u8..10),
    )
        .prop_map(
            |((user, sym, coid, price, qty, stop, disp), (side, ot, tif, stp, po, kind))| {
                let raw_user = user;
                use ringbook_engine::codec::*;
                let (user, symbol, client_order_id) =
                    (UserId(user), SymbolId(sym), ClientOrderId(coid));
                match kind {
                    0 => Command::NewOrder(NewOrder {
                        user,
                        symbol,
                        client_order_id,
                        side: side_from_u8(side).unwrap(),
                        order_type: order_type_from_u8(ot).unwrap(),
                        tif: tif_from_u8(tif).unwrap(),
                        stp: stp_from_u8(stp).unwrap(),
                        price: Price(price),
                        qty: Qty(qty),
                        stop_price: Price(stop),
                        display_qty: Qty(disp),
                        post_only: po,
                        // Budget and expiry travel whole (the engine judges them).
                        budget: if po { qty ^ stop as u64 } else { 0 },
                        expire_at: if po { disp ^ coid } else { 0 },
                    }),
                    1 => Command::Cancel {
                        user,
                        symbol,
                        client_order_id,
                    },
                    2 => Command::Amend {
                        user,
                        symbol,
                        client_order_id,
                        price: Price(price),
                        qty: Qty(qty),
                    },
                    3 => Command::MassCancel {
                        user,
                        symbol: po.then_some(symbol),
                        on_disconnect: false,
                    },
                    4 => Command::Deposit {
                        user,
                        currency: CurrencyId(sym),
                        amount: qty,
                    },
                    5 => Command::Withdraw {
                        user,
                        currency: CurrencyId(sym),
                        amount: qty,
                    },
                    8 => Command::CancelOrder {
                        user,
                        symbol,
                        order_id: OrderId(coid),
                    },
                    9 => Command::AmendOrder {
                        user,
                        symbol,
                        order_id: OrderId(coid),
                        price: Price(price),
                        qty: Qty(qty),
                    },
                    6 => Command::ApproveWithdrawal {
                        operator: OperatorId(raw_user),
                        withdrawal_id: WithdrawalId(coid),
                    },
                    _ => Command::RejectWithdrawal {
                        operator: OperatorId(raw_user),
                        withdrawal_id: WithdrawalId(coid),
                    },
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_every_type_never_panic(t in 0u16..150, v in 0u16..3, body in proptest::collection::vec(any::<u8>(), 0..250)) {
        let _ = ClientMsg::decode(t, v, &body);
        let _ = ServerMsg::decode(t, v, &body);
        let mut frame = Vec::new();
        frame.extend_from_slice(&((4 + body.len()) as u32).to_le_bytes());
        frame.extend_from_slice(&t.to_le_bytes());
        frame.extend_from_slice(&v.to_le_bytes());
        frame.extend_from_slice(&body);
        decode_all(&frame);
    }

    #[test]
    fn commands_round_trip(cmd in arb_cmd()) {
        let msg = ClientMsg::Command(cmd);
        let mut f = [0u8; FRAME_BYTES_MAX];
        let n = msg.encode(&mut f);
        let (h, body) = split_frame(&f[..n]).unwrap().unwrap();
        prop_assert_eq!(h.frame_len, n);
        prop_assert_eq!(ClientMsg::decode(h.msg_type, h.version, body), Ok(msg));
        for cut in 0..n {
            prop_assert_eq!(split_frame(&f[..cut]), Ok(None));
        }
    }

    #[test]
    fn server_messages_round_trip(seq in 1u64.., a in any::<u32>(), b in any::<u64>(), p in any::<i64>(), s in any::<u16>()) {
        let msgs = [
            ServerMsg::Accepted { seq, user: a, symbol: s, side: Side::Sell, order_type: OrderType::StopLimit, client_order_id: b, order_id: b ^ 7, price: p, qty: b },
            ServerMsg::rejected(seq, a, 10, RejectCode::NotYourAccount, b),
            ServerMsg::Fill { seq, user: a, symbol: s, side: Side::Buy, role: Liquidity::Taker, client_order_id: b, order_id: 3, price: p, qty: 4, leaves_qty: 5, cum_qty: 6, fee: b, trade_id: b ^ 3, ts: b.rotate_left(7), contra_order_id: 9 },
            ServerMsg::Cancelled { seq, user: a, symbol: s, side: Side::Sell, reason: CancelReason::Disconnect, client_order_id: b, order_id: 1, price: p, qty: 2, leaves_qty: 0 },
            ServerMsg::BookLevels { seq, request_id: b, symbol: s, side: Side::Sell, count: 2, levels: [(p, b); 8] },
            ServerMsg::OrderStatus { seq, request_id: b, found: true, detail: s, order: OrderInfo { user: a, symbol: s, side: Side::Sell, status: 3, client_order_id: b, order_id: b ^ 5, price: p, filled_qty: b >> 3, expire_at: b.rotate_left(7), ..OrderInfo::default() }, filled_notional: b ^ 11, finished_ts: b.rotate_left(3) },
            ServerMsg::WithdrawalApproved { seq, withdrawal_id: b, operator: a, user: a ^ 1, approvals: 2 },
            ServerMsg::LoginAccepted { session_id: a, role: Role::Operator(a), heartbeat_ms: 1000, last_seq: b },
            ServerMsg::LoginAccepted { session_id: a, role: Role::MarketData, heartbeat_ms: 1000, last_seq: b },
            ServerMsg::disconnect(Some(RejectCode::SlowConsumer)),
            ServerMsg::Stats { seq, request_id: b, stats: GatewayStats::from_array(std::array::from_fn(|i| b.wrapping_add(i as u64))) },
            ServerMsg::CurrencyInfo { seq, request_id: b, currency: s, scale: a as u8, code: ringbook_gateway::protocol::name32("KRW") },
            ServerMsg::SymbolInfo { seq, request_id: b, symbol: s, base: s ^ 1, quote: s ^ 2, lot_size: b ^ 3, tick_size: b ^ 4, price_min: p, price_max: !p, max_order_qty: b ^ 5, maker_fee_bps: a, taker_fee_bps: a ^ 6, name: ringbook_gateway::protocol::name32("BTC-KRW") },
            ServerMsg::ReferenceEnd { seq, request_id: b, currencies: a, symbols: a ^ 7, next: a ^ 8 },
        ];
        for m in msgs {
            let mut f = [0u8; FRAME_BYTES_MAX];
            let n = m.encode(&mut f);
            let (h, body) = split_frame(&f[..n]).unwrap().unwrap();
            prop_assert_eq!(ServerMsg::decode(h.msg_type, h.version, body), Ok(m));
        }
    }

    #[test]
    fn reference_request_round_trips(request_id in any::<u64>(), first in any::<u32>()) {
        let m = ClientMsg::ReferenceData { request_id, first };
        let mut f = [0u8; FRAME_BYTES_MAX];
        let n = m.encode(&mut f);
        prop_assert_eq!(n, 24);
        let (h, body) = split_frame(&f[..n]).unwrap().unwrap();
        prop_assert_eq!(ClientMsg::decode(h.msg_type, h.version, body), Ok(m));
        let mut padded = body.to_vec();
        padded[15] = 1;
        prop_assert_eq!(ClientMsg::decode(h.msg_type, h.version, &padded), Err(RejectCode::InvalidField));
    }

    #[test]
    fn stats_request_round_trips(request_id in any::<u64>()) {
        let m = ClientMsg::Stats { request_id };
        let mut f = [0u8; FRAME_BYTES_MAX];
        let n = m.encode(&mut f);
        prop_assert_eq!(n, 16);
        let (h, body) = split_frame(&f[..n]).unwrap().unwrap();
        prop_assert_eq!(ClientMsg::decode(h.msg_type, h.version, body), Ok(m));
        prop_assert_eq!(ClientMsg::decode(h.msg_type, h.version, &body[1..]), Err(RejectCode::MalformedFrame));
    }
}

#[test]
fn login_round_trips_and_rejects_bad_padding() {
    let l = ClientMsg::Login(Login {
        login: ringbook_gateway::protocol::name32("alice"),
        password: ringbook_gateway::protocol::name32("pw"),
        session_id: 7,
        last_seen_seq: 42,
        heartbeat_ms: 500,
        cancel_on_disconnect: true,
    });
    let mut f = [0u8; FRAME_BYTES_MAX];
    let n = l.encode(&mut f);
    let (h, body) = split_frame(&f[..n]).unwrap().unwrap();
    assert_eq!(ClientMsg::decode(h.msg_type, h.version, body), Ok(l));
    let mut bad = body.to_vec();
    *bad.last_mut().unwrap() = 1;
    assert_eq!(
        ClientMsg::decode(h.msg_type, h.version, &bad),
        Err(RejectCode::InvalidField)
    );
    // Version 1 (before the trade identity in Fill) and any later one are refused.
    for version in [1, PROTOCOL_VERSION + 1] {
        assert_eq!(
            ClientMsg::decode(h.msg_type, version, body),
            Err(RejectCode::UnsupportedVersion)
        );
    }
    assert_eq!(
        ClientMsg::decode(999, PROTOCOL_VERSION, body),
        Err(RejectCode::UnknownMessageType)
    );
    assert_eq!(
        ClientMsg::decode(h.msg_type, PROTOCOL_VERSION, &body[1..]),
        Err(RejectCode::MalformedFrame)
    );
}
