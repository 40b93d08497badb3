//! Known bytes of every layout: one of each journal command, client message and server message,
//! with a distinct value in every field, encoded and compared with the hex pinned in
//! `tests/data/wire_bytes.txt`. The round-trip and fuzz tests cannot see a change that moves a
//! field in both the writer and the reader; this one can. A layout change that is meant must
//! bump the format's version and regenerate the file with
//! `RINGBOOK_WRITE_WIRE_BYTES=1 cargo test -p ringbook-gateway --test wire_bytes`.

use ringbook_engine::codec::{self, COMMAND_BYTES_MAX};
use ringbook_engine::prelude::*;
use ringbook_gateway::protocol::client::Login;
use ringbook_gateway::protocol::server::{GatewayStats, OrderInfo, Role};
use ringbook_gateway::protocol::{name32, ClientMsg, ServerMsg, FRAME_BYTES_MAX};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wire_bytes.txt");

fn commands() -> Vec<Command> {
    let (user, symbol, coid) = (UserId(0x0403_0201), SymbolId(0x0605), ClientOrderId(0x0f0e));
    let mut full = NewOrder::limit(user, symbol, coid, Side::Sell, Price(-0x1234), Qty(0x77));
    full.order_type = OrderType::StopLimit;
    full.tif = TimeInForce::Gtd;
    full.stp = StpMode::Decrement;
    full.post_only = true;
    full.stop_price = Price(0x5566);
    full.display_qty = Qty(0x11);
    full.budget = 0x0102_0304;
    full.expire_at = 0x0a0b_0c0d_0e0f;
    let mut plain = full;
    plain.budget = 0;
    plain.expire_at = 0;
    plain.tif = TimeInForce::Ioc;
    let (operator, withdrawal_id) = (OperatorId(0x3a3b), WithdrawalId(0x4a4b_4c4d));
    vec![
        Command::NewOrder(full),
        Command::NewOrder(plain),
        Command::Cancel {
            user,
            symbol,
            client_order_id: coid,
        },
        Command::Amend {
            user,
            symbol,
            client_order_id: coid,
            price: Price(-9),
            qty: Qty(0x99),
        },
        Command::CancelOrder {
            user,
            symbol,
            order_id: OrderId(0x2122),
        },
        Command::AmendOrder {
            user,
            symbol,
            order_id: OrderId(0x2122),
            price: Price(8),
            qty: Qty(3),
        },
        Command::MassCancel {
            user,
            symbol: Some(symbol),
            on_disconnect: false,
        },
        Command::MassCancel {
            user,
            symbol: None,
            on_disconnect: false,
        },
        Command::Deposit {
            user,
            currency: CurrencyId(0x0302),
            amount: 0x0102_0304_0506,
        },
        Command::Withdraw {
            user,
            currency: CurrencyId(0x0302),
            amount: 0x0605_0403,
        },
        Command::ApproveWithdrawal {
            operator,
            withdrawal_id,
        },
        Command::RejectWithdrawal {
            operator,
            withdrawal_id,
        },
        Command::Query(Query::Order {
            user,
            client_order_id: coid,
        }),
        Command::Query(Query::OrderById {
            user,
            order_id: OrderId(0x6162_6364),
        }),
        Command::Query(Query::OpenOrders {
            user,
            limit: 0x1_0203,
        }),
        Command::Query(Query::Balances { user }),
        Command::Query(Query::Book {
            symbol,
            depth: 0x0c0d,
        }),
        Command::Tick,
    ]
}

fn client_messages() -> Vec<ClientMsg> {
    let mut out: Vec<ClientMsg> = commands().into_iter().map(ClientMsg::Command).collect();
    out.extend([
        ClientMsg::Login(Login {
            login: name32("alice"),
            password: name32("secret"),
            session_id: 0x5152_5354,
            last_seen_seq: 0x6162_6364_6566,
            heartbeat_ms: 0x0708,
            cancel_on_disconnect: true,
        }),
        ClientMsg::Logout,
        ClientMsg::Heartbeat,
        ClientMsg::OrderStatus {
            request_id: 0x71,
            user: UserId(0x72),
            client_order_id: ClientOrderId(0x73),
        },
        ClientMsg::OrderStatusById {
            request_id: 0x74,
            user: UserId(0x75),
            order_id: OrderId(0x76),
        },
        ClientMsg::OpenOrders {
            request_id: 0x74,
            user: UserId(0x75),
        },
        ClientMsg::Balances {
            request_id: 0x76,
            user: UserId(0x77),
        },
        ClientMsg::BookSnapshot {
            request_id: 0x78,
            symbol: SymbolId(0x79),
            depth: 0x3f,
        },
        ClientMsg::Stats { request_id: 0x7a7b },
        ClientMsg::ReferenceData {
            request_id: 0x7c7d,
            first: 0x7e7f,
        },
    ]);
    out
}

fn server_messages() -> Vec<ServerMsg> {
    let order = OrderInfo {
        user: 0x81,
        symbol: 0x82,
        side: Side::Sell,
        order_type: OrderType::StopLimit,
        tif: TimeInForce::Gtd,
        flags: 1,
        stp: StpMode::Decrement,
        status: 2,
        client_order_id: 0x83,
        order_id: 0x84,
        price: -0x85,
        stop_price: 0x86,
        leaves_qty: 0x87,
        visible_qty: 0x88,
        filled_qty: 0x89,
        display_qty: 0x8a,
        expire_at: 0x8b8c,
    };
    let (seq, w) = (0x0102_0304_0506_0708u64, 0x1112_1314u64);
    vec![
        ServerMsg::LoginAccepted {
            session_id: 0x91,
            role: Role::Operator(0x92),
            heartbeat_ms: 0x93,
            last_seq: 0x94,
        },
        ServerMsg::LoginRejected {
            code: 1001,
            name: name32("BAD_LOGIN"),
        },
        ServerMsg::Heartbeat,
        ServerMsg::disconnect(Some(RejectCode::SlowConsumer)),
        ServerMsg::disconnect(None),
        ServerMsg::Accepted {
            seq,
            user: 0xa1,
            symbol: 0xa2,
            side: Side::Sell,
            order_type: OrderType::StopMarket,
            client_order_id: 0xa3,
            order_id: 0xa4,
            price: -0xa5,
            qty: 0xa6,
        },
        ServerMsg::rejected(seq, 0xb1, 10, RejectCode::NotYourAccount, 0xb2),
        ServerMsg::Fill {
            seq,
            user: 0xc1,
            symbol: 0xc2,
            side: Side::Sell,
            role: Liquidity::Taker,
            client_order_id: 0xc3,
            order_id: 0xc4,
            price: -0xc5,
            qty: 0xc6,
            leaves_qty: 0xc7,
            cum_qty: 0xc8,
            fee: 0xc9,
            trade_id: 0xca,
            ts: 0xcb,
            contra_order_id: 0xcc,
        },
        ServerMsg::Cancelled {
            seq,
            user: 0xd1,
            symbol: 0xd2,
            side: Side::Sell,
            reason: CancelReason::Disconnect,
            client_order_id: 0xd3,
            order_id: 0xd4,
            price: -0xd5,
            qty: 0xd6,
            leaves_qty: 0xd7,
        },
        ServerMsg::Amended {
            seq,
            user: 0xe1,
            symbol: 0xe2,
            client_order_id: 0xe3,
            order_id: 0xe4,
            price: -0xe5,
            qty: 0xe6,
        },
        ServerMsg::Triggered {
            seq,
            user: 0xf1,
            symbol: 0xf2,
            client_order_id: 0xf3,
            order_id: 0xf4,
        },
        ServerMsg::MassCancelled {
            seq,
            user: 0x101,
            symbol: 0x102,
            count: 0x103,
        },
        ServerMsg::BalanceUpdate {
            seq,
            user: 0x111,
            currency: 0x112,
            available: 0x113,
            locked: 0x114,
        },
        ServerMsg::Deposited {
            seq,
            user: 0x121,
            currency: 0x122,
            amount: 0x123,
        },
        ServerMsg::WithdrawalRequested {
            seq,
            withdrawal_id: w,
            user: 0x131,
            currency: 0x132,
            amount: 0x133,
        },
        ServerMsg::WithdrawalApproved {
            seq,
            withdrawal_id: w,
            operator: 0x141,
            user: 0x142,
            approvals: 2,
        },
        ServerMsg::WithdrawalCompleted {
            seq,
            withdrawal_id: w,
            user: 0x151,
            currency: 0x152,
            amount: 0x153,
        },
        ServerMsg::WithdrawalRejected {
            seq,
            withdrawal_id: w,
            operator: 0x161,
            user: 0x162,
        },
        ServerMsg::OperatorRejected {
            seq,
            withdrawal_id: w,
            operator: 0x171,
            code: 3001,
            name: name32("NOPE"),
        },
        ServerMsg::OrderStatus {
            seq,
            request_id: 0x181,
            found: true,
            detail: 0x182,
            order,
            filled_notional: 0x183,
            finished_ts: 0x184,
        },
        ServerMsg::OpenOrder {
            seq,
            request_id: 0x191,
            order,
        },
        ServerMsg::OpenOrdersEnd {
            seq,
            request_id: 0x1a1,
            count: 0x1a2,
        },
        ServerMsg::Balance {
            seq,
            request_id: 0x1b1,
            currency: 0x1b2,
            available: 0x1b3,
            locked: 0x1b4,
        },
        ServerMsg::BalancesEnd {
            seq,
            request_id: 0x1c1,
            count: 0x1c2,
        },
        ServerMsg::BookLevels {
            seq,
            request_id: 0x1d1,
            symbol: 0x1d2,
            side: Side::Sell,
            count: 3,
            levels: std::array::from_fn(|i| (-(i as i64) - 1, 0x1d3 + i as u64)),
        },
        ServerMsg::BookEnd {
            seq,
            request_id: 0x1e1,
            symbol: 0x1e2,
            bid_levels: 0x1e3,
            ask_levels: 0x1e4,
        },
        ServerMsg::Stats {
            seq,
            request_id: 0x1f1,
            stats: GatewayStats::from_array(std::array::from_fn(|i| 0x1f00 + i as u64)),
        },
        ServerMsg::CurrencyInfo {
            seq,
            request_id: 0x201,
            currency: 0x202,
            scale: 8,
            code: name32("BTC"),
        },
        ServerMsg::SymbolInfo {
            seq,
            request_id: 0x211,
            symbol: 0x212,
            base: 0x213,
            quote: 0x214,
            lot_size: 0x215,
            tick_size: 0x216,
            price_min: -0x217,
            price_max: 0x218,
            max_order_qty: 0x219,
            maker_fee_bps: 0x21a,
            taker_fee_bps: 0x21b,
            name: name32("BTC-KRW"),
        },
        ServerMsg::ReferenceEnd {
            seq,
            request_id: 0x221,
            currencies: 0x222,
            symbols: 0x223,
            next: 0x224,
        },
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line per message: its format, then its bytes in hex.
fn encode_all() -> String {
    let mut out = String::new();
    for c in commands() {
        let mut buf = [0u8; COMMAND_BYTES_MAX];
        let n = codec::encode(&c, &mut buf);
        assert_eq!(codec::decode(&buf[..n]), Ok(c));
        out += &format!("journal {}\n", hex(&buf[..n]));
    }
    for m in client_messages() {
        let mut buf = [0u8; FRAME_BYTES_MAX];
        let n = m.encode(&mut buf);
        out += &format!("client {}\n", hex(&buf[..n]));
    }
    for m in server_messages() {
        let mut buf = [0u8; FRAME_BYTES_MAX];
        let n = m.encode(&mut buf);
        out += &format!("server {}\n", hex(&buf[..n]));
    }
    out
}

#[test]
fn every_layout_has_its_known_bytes() {
    let got = encode_all();
    if std::env::var_os("RINGBOOK_WRITE_WIRE_BYTES").is_some() {
        std::fs::write(FILE, &got).unwrap();
    }
    let want = std::fs::read_to_string(FILE).unwrap();
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "line {} of {FILE}", i + 1);
    }
    assert_eq!(
        got.lines().count(),
        want.lines().count(),
        "{FILE}: message count"
    );
}
