//! The web edge end to end: the real `ringbook serve` (journaled pipeline) on free loopback
//! ports, driven by a real HTTP client (reqwest), a real WebSocket client (tokio-tungstenite)
//! and the binary client beside them.
//!
//! `cargo test -p ringbook-tools --test web`
//!
//! - the full flow: operator deposits → logins → orders that trade → fills and balances over
//!   WebSocket → cancel → withdrawal with two approvals; the binary gateway serves a session
//!   of the same user at the same time and sees the web order's events; the journal replays to
//!   the shutdown state hash (the web commands were journaled);
//! - every error path: bad JSON, unknown symbol, missing / bad / expired / logged-out token, acting for
//!   another user, operator-only and user-only actions, unknown route, unsupported
//!   instructions, insufficient funds;
//! - 429 with `Retry-After` from the per-account limit, which leaves other accounts alone;
//! - orders named by engine order id (status, amend, cancel; `NOT_YOUR_ORDER`, `UNKNOWN_ORDER`);
//! - public market data from the web edge's copy of the gateway's builder (book with `md_seq`
//!   and order counts, trades, klines, ticker), unchanged across a restart and equal to the
//!   binary feed's depth;
//! - an idle web edge gets nothing from the gateway loop (a counter stays 0 under binary
//!   trading); the first read syncs a copy that equals the binary feed's snapshot, and a
//!   WebSocket subscriber joining mid-stream converges with it;
//! - public WebSocket channels: a depth subscriber's book (snapshot + ordered updates, conflated
//!   when slow) equals `GET /api/v1/orderbook` after a burst; trades in order without gaps;
//! - the seed's CSV endpoints;
//! - `/metrics` parsed by a Prometheus text parser.
//!
//! Every wait is bounded; nothing passes or fails on wall-clock speed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command as Proc, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::Client;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_ringbook");
const DEFAULT_CONFIG: &str = include_str!("../../engine/src/default_config.toml");
const SECRET: &str = "web-test-secret-0123456789abcdef0123456789";

/// A `ringbook serve` child with its web edge.
struct Server {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
    gateway: SocketAddr,
    http: String,
    journal: std::path::PathBuf,
}

impl Server {
    /// `web` is extra lines of the `[web]` table.
    fn start(dir: &Path, web: &str) -> Server {
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!("[web]\njwt_secret = \"{SECRET}\"\n{web}\n{DEFAULT_CONFIG}"),
        )
        .unwrap();
        let journal = dir.join("journal");
        let mut child = Proc::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--journal")
            .arg(&journal)
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            // A snapshot every 5 commands, for the pipeline metrics.
            .args(["--snapshot-every", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringbook serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            lines,
            log: Vec::new(),
            gateway: "127.0.0.1:1".parse().unwrap(),
            http: String::new(),
            journal,
        };
        let line = s.wait_line("listening on ");
        s.gateway = after(&line, "listening on ").parse().unwrap();
        let line = s.wait_line("web edge on http://");
        s.http = format!("http://{}", after(&line, "web edge on http://"));
        s
    }

    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; log so far: {:#?}", self.log),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// SIGTERM; the exit status and the state hash it logged.
    fn terminate(mut self) -> (ExitStatus, String) {
        let ok = Proc::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
        let line = self.wait_line("state hash ");
        let hash = line
            .rsplit("state hash ")
            .next()
            .unwrap()
            .trim()
            .to_string();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, hash)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn after(line: &str, needle: &str) -> String {
    line.split(needle)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("an address in the log line")
        .to_string()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

/// A response's status and JSON body (`Null` if not JSON).
async fn call(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.expect("HTTP request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn login(c: &reqwest::Client, s: &Server, who: &str) -> String {
    let (st, v) = call(
        c.post(s.url("/api/v1/auth/login"))
            .json(&json!({"login": who, "password": format!("{who}-demo")})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(s: &Server) -> Ws {
    let url = s.url("/ws").replacen("http://", "ws://", 1);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect")
        .0
}

async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON text message matching `f` (others skipped; bounded).
async fn ws_until(ws: &mut Ws, mut f: impl FnMut(&Value) -> bool) -> Value {
    let mut skipped = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no matching WebSocket message; skipped {skipped:#?}"));
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if f(&v) {
                    return v;
                }
                skipped.push(v);
            }
            Some(Ok(_)) => {}
            other => panic!("WebSocket ended: {other:?}; skipped {skipped:#?}"),
        }
    }
}

fn balance(v: &Value, currency: &str) -> (u64, u64) {
    let b = v["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == currency)
        .unwrap_or_else(|| panic!("no {currency} in {v}"));
    (
        b["available"].as_u64().unwrap(),
        b["locked"].as_u64().unwrap(),
    )
}

#[test]
fn full_flow_rest_websocket_and_the_binary_gateway_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "");
    // Bob also trades over the binary protocol, in a session of his own.
    let mut bin = Client::connect(s.gateway).unwrap();
    login_patient(&mut bin, "bob");
    rt().block_on(async {
        let c = http();
        let (st, v) = call(c.get(s.url("/health"))).await;
        assert_eq!((st, &v["status"]), (200, &json!("up")));
        let (st, _) = call(c.get(s.url("/ready"))).await;
        assert_eq!(st, 200);
        let (st, v) = call(c.get(s.url("/api/v1/symbols"))).await;
        assert_eq!(st, 200);
        let btc = v
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "BTC-KRW")
            .unwrap()
            .clone();
        assert_eq!(
            (btc["base_scale"].as_u64(), btc["quote_scale"].as_u64()),
            (Some(8), Some(0))
        );
        let (_, v) = call(c.get(s.url("/api/v1/currencies"))).await;
        assert!(v
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == "BTC" && x["scale"] == 8));

        let ops1 = login(&c, &s, "ops1").await;
        let ops2 = login(&c, &s, "ops2").await;
        let alice = login(&c, &s, "alice").await;
        let bob = login(&c, &s, "bob").await;
        // Operator deposits.
        for (user, cur, amount) in [(1, "KRW", 10_000_000u64), (2, "BTC", 1_000_000)] {
            let (st, v) = call(
                c.post(s.url("/api/v1/deposits"))
                    .bearer_auth(&ops1)
                    .json(&json!({"user": user, "currency": cur, "amount": amount})),
            )
            .await;
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["available"].as_u64(), Some(amount));
        }
        // Alice listens on WebSocket: orders, fills, balances.
        let mut ws = ws_connect(&s).await;
        ws_send(&mut ws, json!({"op": "ping"})).await;
        ws_until(&mut ws, |v| v["op"] == "pong").await;
        ws_send(&mut ws, json!({"op": "auth", "token": alice})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "auth").await;
        assert_eq!(
            (v["ok"].as_bool(), v["user"].as_u64()),
            (Some(true), Some(1))
        );
        for ch in ["orders", "fills", "balances"] {
            ws_send(&mut ws, json!({"op": "subscribe", "channel": ch})).await;
            ws_until(&mut ws, |v| v["op"] == "subscribe" && v["channel"] == ch).await;
        }
        let snap = ws_until(&mut ws, |v| v["channel"] == "balances").await;
        assert_eq!(balance(&snap["data"], "KRW"), (10_000_000, 0));

        // Bob sells 3 lots at 15000; alice buys 2: they trade at 15000.
        let (st, v) = call(
            c.post(s.url("/api/v1/orders"))
                .bearer_auth(&bob)
                .json(&json!({
            "symbol": "BTC-KRW", "client_order_id": 7, "side": "SELL", "type": "LIMIT",
            "tif": "GTC", "price": 15000, "qty": 3})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["status"], "NEW");
        let bob_order = v["order_id"].as_u64().unwrap();
        let (st, v) = call(
            c.post(s.url("/api/v1/orders"))
                .bearer_auth(&alice)
                .json(&json!({
            "symbol": "BTC-KRW", "client_order_id": 1, "side": "BUY", "price": 15100, "qty": 2})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(
            (v["status"].as_str(), v["filled_qty"].as_u64()),
            (Some("FILLED"), Some(2))
        );
        let fill = &v["fills"][0];
        assert_eq!(
            (
                fill["price"].as_i64(),
                fill["qty"].as_u64(),
                fill["role"].as_str()
            ),
            (Some(15000), Some(2), Some("TAKER"))
        );
        let fee = fill["fee"].as_u64().unwrap();

        // Over WebSocket: alice's accepted order, her fill, and a fresh balance snapshot (the
        // channels are independent streams: their relative order is not fixed).
        let after_trade = 10_000_000 - 2 * 15000 - fee;
        let (mut acc, mut f, mut snap) = (None, None, None);
        while acc.is_none() || f.is_none() || snap.is_none() {
            let v = ws_until(&mut ws, |v| v["channel"].is_string()).await;
            match v["channel"].as_str().unwrap() {
                "orders" => acc = Some(v),
                "fills" => f = Some(v),
                "balances" if balance(&v["data"], "BTC").0 == 20_000 => snap = Some(v),
                _ => {}
            }
        }
        let (acc, f, snap) = (acc.unwrap(), f.unwrap(), snap.unwrap());
        assert_eq!(
            (
                acc["data"]["event"].as_str(),
                acc["data"]["client_order_id"].as_u64()
            ),
            (Some("accepted"), Some(1))
        );
        assert_eq!(
            (
                f["data"]["qty"].as_u64(),
                f["data"]["role"].as_str(),
                f["data"]["side"].as_str()
            ),
            (Some(2), Some("TAKER"), Some("BUY"))
        );
        assert_eq!(balance(&snap["data"], "KRW"), (after_trade, 0));

        // The binary session of bob saw the web orders' events: his acceptance and his fill.
        let deadline = Instant::now() + WAIT;
        let (mut accepted, mut filled) = (false, false);
        while !(accepted && filled) {
            assert!(
                Instant::now() < deadline,
                "bob's binary session missed web events"
            );
            match bin.recv_timeout(WAIT).unwrap() {
                Some(ServerMsg::Accepted { order_id, .. }) if order_id == bob_order => {
                    accepted = true
                }
                Some(ServerMsg::Fill {
                    qty: 2,
                    role: ringbook_engine::Liquidity::Maker,
                    ..
                }) => filled = true,
                Some(_) => {}
                None => panic!("binary session: nothing"),
            }
        }
        // And the binary gateway still takes commands: a query of bob's open orders.
        bin.send(&ClientMsg::OpenOrders {
            request_id: 9,
            user: ringbook_engine::UserId(2),
        })
        .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline);
            if let Some(ServerMsg::OpenOrdersEnd {
                request_id: 9,
                count,
                ..
            }) = bin.recv_timeout(WAIT).unwrap()
            {
                assert_eq!(count, 1);
                break;
            }
        }

        // Book and open orders: bob's remaining lot.
        let (st, v) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW?depth=5"))).await;
        assert_eq!(st, 200);
        assert_eq!(v["asks"], json!([[15000, 1, 1]]));
        assert_eq!(v["bids"], json!([]));
        assert!(v["seq"].as_u64().unwrap() > 0);
        assert!(v["md_seq"].as_u64().unwrap() > 0);
        let (st, v) = call(
            c.get(s.url("/api/v1/orders/open?symbol=BTC-KRW"))
                .bearer_auth(&bob),
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(v["orders"][0]["leaves_qty"].as_u64(), Some(1));
        assert_eq!(v["orders"][0]["status"], "PARTIALLY_FILLED");
        let (st, v) = call(c.get(s.url("/api/v1/orders/client/7")).bearer_auth(&bob)).await;
        assert_eq!((st, v["filled_qty"].as_u64()), (200, Some(2)));

        // Amend, then cancel by client order id.
        let (st, v) = call(
            c.patch(s.url("/api/v1/orders/client/7"))
                .bearer_auth(&bob)
                .json(&json!({"symbol": "BTC-KRW", "price": 15200, "qty": 1})),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (200, Some("AMENDED")), "{v}");
        let (st, v) = call(
            c.delete(s.url("/api/v1/orders/client/7?symbol=BTC-KRW"))
                .bearer_auth(&bob),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (
                v["status"].as_str(),
                v["order_id"].as_u64(),
                v["cancelled_qty"].as_u64()
            ),
            (Some("CANCELLED"), Some(bob_order), Some(1))
        );
        let (st, v) = call(
            c.delete(s.url("/api/v1/orders/client/7?symbol=BTC-KRW"))
                .bearer_auth(&bob),
        )
        .await;
        assert_eq!((st, v["reason"].as_str()), (404, Some("UNKNOWN_ORDER")));
        // The cancelled order is finished, and its status is still known (the engine's window of
        // recently finished orders): CANCELLED by the user, with what it had filled.
        let (st, v) = call(c.get(s.url("/api/v1/orders/client/7")).bearer_auth(&bob)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (
                v["status"].as_str(),
                v["reason"].as_str(),
                v["order_id"].as_u64(),
                v["leaves_qty"].as_u64()
            ),
            (Some("CANCELLED"), Some("USER"), Some(bob_order), Some(0)),
            "{v}"
        );
        assert!(v["filled_qty"].as_u64().is_some_and(|q| q > 0), "{v}");
        assert!(v["filled_notional"].as_u64().is_some_and(|n| n > 0), "{v}");
        // Mass cancel with nothing open.
        let (st, v) = call(c.delete(s.url("/api/v1/orders")).bearer_auth(&bob)).await;
        assert_eq!((st, v["cancelled"].as_u64()), (200, Some(0)));

        // Alice withdraws 1,000,000 KRW: locked until two operators approve.
        let (st, v) = call(
            c.post(s.url("/api/v1/withdrawals"))
                .bearer_auth(&alice)
                .json(&json!({"currency": "KRW", "amount": 1_000_000})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        let wid = v["withdrawal_id"].as_u64().unwrap();
        let (_, v) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&alice)).await;
        assert_eq!(balance(&v, "KRW"), (after_trade - 1_000_000, 1_000_000));
        let (st, v) = call(
            c.post(s.url(&format!("/api/v1/withdrawals/{wid}/approve")))
                .bearer_auth(&ops1),
        )
        .await;
        assert_eq!(
            (st, v["status"].as_str(), v["approvals"].as_u64()),
            (200, Some("PENDING"), Some(1)),
            "{v}"
        );
        let (st, v) = call(
            c.post(s.url(&format!("/api/v1/withdrawals/{wid}/approve")))
                .bearer_auth(&ops1),
        )
        .await;
        assert_eq!(
            (st, v["reason"].as_str()),
            (409, Some("DUPLICATE_APPROVAL")),
            "{v}"
        );
        let (st, v) = call(
            c.post(s.url(&format!("/api/v1/withdrawals/{wid}/approve")))
                .bearer_auth(&ops2),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (200, Some("COMPLETED")), "{v}");
        let (_, v) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&alice)).await;
        assert_eq!(balance(&v, "KRW"), (after_trade - 1_000_000, 0));
        // The WebSocket saw the completion on the balances channel.
        ws_until(&mut ws, |v| {
            v["channel"] == "balances" && v["data"]["event"] == "withdrawal_completed"
        })
        .await;
        // A withdrawal rejected by an operator unlocks.
        let (_, v) = call(
            c.post(s.url("/api/v1/withdrawals"))
                .bearer_auth(&alice)
                .json(&json!({"currency": "KRW", "amount": 5})),
        )
        .await;
        let wid = v["withdrawal_id"].as_u64().unwrap();
        let (st, v) = call(
            c.post(s.url(&format!("/api/v1/withdrawals/{wid}/reject")))
                .bearer_auth(&ops2),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (200, Some("REJECTED")));
        let (_, v) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&alice)).await;
        assert_eq!(balance(&v, "KRW"), (after_trade - 1_000_000, 0));
        let _ = ws.close(None).await;
    });
    drop(bin);
    let journal = s.journal.clone();
    let (status, hash) = s.terminate();
    assert!(status.success());
    // Every web command was journaled: a replay reaches the same state.
    let out = Proc::new(BIN)
        .args(["journal", "replay"])
        .arg(&journal)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(&hash), "replay {text} vs shutdown {hash}");
}

/// Orders named by engine order id: status, amend and cancel through the engine's
/// `AmendOrder` / `CancelOrder`, with and without the symbol; another user's order is
/// `NOT_YOUR_ORDER`, a finished or unknown one `UNKNOWN_ORDER` to amend and cancel; a
/// finished one's status stays readable by its owner.
#[test]
fn orders_by_engine_order_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "");
    rt().block_on(async {
        let c = http();
        let ops = login(&c, &s, "ops1").await;
        let alice = login(&c, &s, "alice").await;
        let bob = login(&c, &s, "bob").await;
        for (user, cur, amount) in [(1, "KRW", 10_000_000), (2, "BTC", 1_000_000)] {
            let (st, v) = call(
                c.post(s.url("/api/v1/deposits"))
                    .bearer_auth(&ops)
                    .json(&json!({"user": user, "currency": cur, "amount": amount})),
            )
            .await;
            assert_eq!(st, 200, "{v}");
        }
        let (st, v) = call(
            c.post(s.url("/api/v1/orders"))
                .bearer_auth(&bob)
                .json(&json!(
            {"symbol": "BTC-KRW", "client_order_id": 7, "side": "SELL", "price": 15000, "qty": 3})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        let id = v["order_id"].as_u64().unwrap();
        let url = s.url(&format!("/api/v1/orders/{id}"));
        let expect = |st: u16, v: &Value, want: (u16, u64, &str)| {
            assert_eq!(
                (st, v["code"].as_u64(), v["reason"].as_str()),
                (want.0, Some(want.1), Some(want.2)),
                "{v}"
            );
        };

        // Status by id: the owner sees it; another user's view has no such live order.
        let (st, v) = call(c.get(&url).bearer_auth(&bob)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (
                v["order_id"].as_u64(),
                v["client_order_id"].as_u64(),
                v["leaves_qty"].as_u64(),
                v["price"].as_i64()
            ),
            (Some(id), Some(7), Some(3), Some(15000))
        );
        let (st, v) = call(c.get(&url).bearer_auth(&alice)).await;
        expect(st, &v, (404, 3010, "UNKNOWN_ORDER"));

        // Amend by id, without the symbol (looked up) and with it.
        let (st, v) = call(
            c.patch(&url)
                .bearer_auth(&bob)
                .json(&json!({"price": 15200, "qty": 2})),
        )
        .await;
        assert_eq!(
            (st, v["status"].as_str(), v["order_id"].as_u64()),
            (200, Some("AMENDED"), Some(id)),
            "{v}"
        );
        let (st, v) = call(c.get(&url).bearer_auth(&bob)).await;
        assert_eq!(
            (st, v["price"].as_i64(), v["leaves_qty"].as_u64()),
            (200, Some(15200), Some(2)),
            "{v}"
        );
        let (st, v) = call(
            c.patch(&url)
                .bearer_auth(&bob)
                .json(&json!({"symbol": "BTC-KRW", "price": 15100, "qty": 2})),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (200, Some("AMENDED")), "{v}");
        let (st, v) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW"))).await;
        assert_eq!(
            (st, &v["asks"][0][0], &v["asks"][0][1]),
            (200, &json!(15100), &json!(2)),
            "{v}"
        );

        // Another user may neither amend nor cancel it, with or without the symbol.
        let (st, v) = call(
            c.patch(&url)
                .bearer_auth(&alice)
                .json(&json!({"price": 1, "qty": 1})),
        )
        .await;
        expect(st, &v, (403, 3014, "NOT_YOUR_ORDER"));
        let (st, v) = call(c.delete(&url).bearer_auth(&alice)).await;
        expect(st, &v, (403, 3014, "NOT_YOUR_ORDER"));
        let (st, v) = call(
            c.delete(format!("{url}?symbol=BTC-KRW"))
                .bearer_auth(&alice),
        )
        .await;
        expect(st, &v, (403, 3014, "NOT_YOUR_ORDER"));
        // Nor name another user in the query.
        let (st, v) = call(c.delete(format!("{url}?user=2")).bearer_auth(&alice)).await;
        expect(st, &v, (403, 1010, "NOT_YOUR_ACCOUNT"));

        // A partial fill shows in the status by id; then the owner cancels the rest by id.
        let (st, v) = call(
            c.post(s.url("/api/v1/orders"))
                .bearer_auth(&alice)
                .json(&json!(
            {"symbol": "BTC-KRW", "client_order_id": 1, "side": "BUY", "price": 15100, "qty": 1})),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (201, Some("FILLED")), "{v}");
        let (st, v) = call(c.get(&url).bearer_auth(&bob)).await;
        assert_eq!(
            (
                st,
                v["filled_qty"].as_u64(),
                v["leaves_qty"].as_u64(),
                v["status"].as_str()
            ),
            (200, Some(1), Some(1), Some("PARTIALLY_FILLED")),
            "{v}"
        );
        let (st, v) = call(c.delete(&url).bearer_auth(&bob)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (
                v["status"].as_str(),
                v["order_id"].as_u64(),
                v["client_order_id"].as_u64(),
                v["cancelled_qty"].as_u64(),
                v["reason"].as_str()
            ),
            (Some("CANCELLED"), Some(id), Some(7), Some(1), Some("USER")),
            "{v}"
        );
        // Finished: its status by id is still there for the owner (the engine's window of
        // recently finished orders), and still nobody else's.
        let (st, v) = call(c.get(&url).bearer_auth(&bob)).await;
        assert_eq!(
            (
                st,
                v["order_id"].as_u64(),
                v["client_order_id"].as_u64(),
                v["status"].as_str(),
                v["reason"].as_str(),
                v["filled_qty"].as_u64()
            ),
            (
                200,
                Some(id),
                Some(7),
                Some("CANCELLED"),
                Some("USER"),
                Some(1)
            ),
            "{v}"
        );
        assert!(v["seq"].as_u64().is_some(), "{v}");
        let (st, v) = call(c.get(&url).bearer_auth(&alice)).await;
        expect(st, &v, (404, 3010, "UNKNOWN_ORDER"));
        // Stale now: cancel and amend are UNKNOWN_ORDER; so is an id never issued.
        let (st, v) = call(c.delete(format!("{url}?symbol=BTC-KRW")).bearer_auth(&bob)).await;
        expect(st, &v, (404, 3010, "UNKNOWN_ORDER"));
        let (st, v) = call(c.delete(&url).bearer_auth(&bob)).await;
        expect(st, &v, (404, 3010, "UNKNOWN_ORDER"));
        let (st, v) = call(
            c.patch(&url)
                .bearer_auth(&bob)
                .json(&json!({"price": 15000, "qty": 1})),
        )
        .await;
        expect(st, &v, (404, 3010, "UNKNOWN_ORDER"));
        let (st, v) = call(c.get(s.url("/api/v1/orders/999999")).bearer_auth(&bob)).await;
        expect(st, &v, (404, 3010, "UNKNOWN_ORDER"));
        let (st, v) = call(c.delete(s.url("/api/v1/orders/999999")).bearer_auth(&bob)).await;
        expect(st, &v, (404, 3010, "UNKNOWN_ORDER"));
        // Bad ids and bodies; the book is empty again.
        let (st, v) = call(c.delete(s.url("/api/v1/orders/abc")).bearer_auth(&bob)).await;
        expect(st, &v, (400, 4001, "BAD_REQUEST"));
        let (st, v) = call(
            c.patch(&url)
                .bearer_auth(&bob)
                .json(&json!({"price": 15000})),
        )
        .await;
        expect(st, &v, (400, 4001, "BAD_REQUEST"));
        let (st, v) = call(c.delete(&url)).await;
        expect(st, &v, (401, 4002, "UNAUTHORIZED"));
        let (st, v) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW"))).await;
        assert_eq!(
            (st, &v["asks"], &v["bids"]),
            (200, &json!([]), &json!([])),
            "{v}"
        );

        // A market buy by quote amount: bob offers 3 at 15 000 (15 015 a lot with alice's
        // 10 bps taker fee); 40 000 KRW pays for 2 lots (30 030), the remainder is cancelled
        // and the 9 970 not spent comes back at once.
        let (_, before) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&alice)).await;
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&bob).json(&json!(
            {"symbol": "BTC-KRW", "client_order_id": 8, "side": "SELL", "price": 15000, "qty": 3}
        )))
        .await;
        assert_eq!(st, 201, "{v}");
        let (st, v) = call(
            c.post(s.url("/api/v1/orders"))
                .bearer_auth(&alice)
                .json(&json!(
                    {"symbol": "BTC-KRW", "client_order_id": 9, "side": "BUY", "type": "MARKET",
                     "price": 15100, "budget": 40000}
                )),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(
            (
                v["status"].as_str(),
                v["filled_qty"].as_u64(),
                v["cancel_reason"].as_str(),
                v["budget"].as_u64()
            ),
            (Some("CANCELLED"), Some(2), Some("IOC"), Some(40000)),
            "{v}"
        );
        let (_, after) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&alice)).await;
        let (krw0, locked0) = balance(&before, "KRW");
        assert_eq!(balance(&after, "KRW"), (krw0 - 30_030, locked0), "{after}");
    });
    let (status, _) = s.terminate();
    assert!(status.success());
}

/// The public market data, without the volatile fields (`seq` counts commands since start;
/// a ticker's `close_time` is the engine time of the latest command, queries included).
async fn public_md(c: &reqwest::Client, s: &Server) -> Value {
    let mut out = json!({});
    for (k, path) in [
        ("book", "/api/v1/orderbook/BTC-KRW?depth=5"),
        ("trades", "/api/v1/trades/BTC-KRW?limit=10"),
        ("m1", "/api/v1/klines/BTC-KRW?interval=1m&limit=10"),
        ("w1", "/api/v1/klines/BTC-KRW?interval=1w"),
        ("ticker", "/api/v1/ticker/24hr?symbol=BTC-KRW"),
    ] {
        let (st, mut v) = call(c.get(s.url(path))).await;
        assert_eq!(st, 200, "{path}: {v}");
        if let Some(o) = v.as_object_mut() {
            o.remove("seq");
            o.remove("close_time");
            o.remove("open_time");
        }
        out[k] = v;
    }
    out
}

/// Public market data from the web edge's copy of the gateway's builder: the book with `md_seq`
/// and order counts (equal to the engine's sequenced book), the trade tape, candles and the
/// ticker; after a restart (the gateway's builder rebuilt from the journal) the same answers,
/// equal to the binary feed's depth.
#[test]
fn public_market_data_from_the_builder_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "");
    let before = rt().block_on(async {
        let c = http();
        let ops = login(&c, &s, "ops1").await;
        let alice = login(&c, &s, "alice").await;
        let bob = login(&c, &s, "bob").await;
        for (user, cur, amount) in [(1, "KRW", 10_000_000), (2, "BTC", 1_000_000)] {
            let (st, v) = call(c.post(s.url("/api/v1/deposits")).bearer_auth(&ops)
                .json(&json!({"user": user, "currency": cur, "amount": amount}))).await;
            assert_eq!(st, 200, "{v}");
        }
        // Empty book: md_seq 0, no trades, no candles.
        let (st, v) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW"))).await;
        assert_eq!((st, &v["md_seq"], &v["bids"], &v["asks"]), (200, &json!(0), &json!([]), &json!([])), "{v}");
        let (st, v) = call(c.get(s.url("/api/v1/trades/BTC-KRW"))).await;
        assert_eq!((st, v), (200, json!([])));
        let order = |who: &str, coid: u64, side: &str, price: i64, qty: u64| {
            c.post(s.url("/api/v1/orders")).bearer_auth(who).json(&json!(
                {"symbol": "BTC-KRW", "client_order_id": coid, "side": side, "price": price, "qty": qty}))
        };
        for (coid, price, qty) in [(1, 15000, 3), (2, 15100, 2), (3, 15100, 1)] {
            let (st, v) = call(order(&bob, coid, "SELL", price, qty)).await;
            assert_eq!(st, 201, "{v}");
        }
        let (st, v) = call(order(&alice, 1, "BUY", 15100, 4)).await;
        assert_eq!((st, v["status"].as_str()), (201, Some("FILLED")), "{v}");
        let (st, v) = call(order(&alice, 2, "BUY", 14900, 1)).await;
        assert_eq!(st, 201, "{v}");

        // The book: [price, visible qty, orders], md_seq one update per command that changed it.
        let (st, book) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW?depth=5"))).await;
        assert_eq!(st, 200, "{book}");
        assert_eq!((&book["bids"], &book["asks"]), (&json!([[14900, 1, 1]]), &json!([[15100, 2, 2]])), "{book}");
        assert_eq!(book["md_seq"], json!(5), "{book}");
        let (st, v) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW?depth=1"))).await;
        assert_eq!((st, &v["asks"]), (200, &json!([[15100, 2, 2]])));
        // … the engine's own book, read through the sequenced path (the CSV endpoint), agrees.
        let r = c.get(s.url("/orderbook?symbolId=0")).bearer_auth(&alice).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "side,price,qty\n1,14900,1\n2,15100,2\n");

        // The tape: oldest first, one command's two trades.
        let (st, t) = call(c.get(s.url("/api/v1/trades/BTC-KRW?limit=10"))).await;
        assert_eq!(st, 200, "{t}");
        let t = t.as_array().unwrap().clone();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((&t[0]["price"], &t[0]["qty"], &t[0]["taker_side"]), (&json!(15000), &json!(3), &json!("BUY")));
        assert_eq!((&t[1]["price"], &t[1]["qty"]), (&json!(15100), &json!(1)));
        assert_eq!(t[1]["trade_id"].as_u64(), t[0]["trade_id"].as_u64().map(|i| i + 1));
        assert!(t[0]["ts"].as_u64().unwrap() > 0 && t[0]["ts"] == t[1]["ts"]);
        let (st, v) = call(c.get(s.url("/api/v1/trades/BTC-KRW?limit=1"))).await;
        assert_eq!((st, v.as_array().map(|a| a.len()), &v[0]["trade_id"]), (200, Some(1), &t[1]["trade_id"]));
        // Asking for none is a client's bug (400); for more than is kept, all that is.
        for path in ["/api/v1/trades/BTC-KRW?limit=0", "/api/v1/klines/BTC-KRW?limit=0"] {
            let (st, v) = call(c.get(s.url(path))).await;
            assert_eq!((st, v["reason"].as_str()), (400, Some("BAD_REQUEST")), "{path}: {v}");
        }
        let (st, v) = call(c.get(s.url("/api/v1/trades/BTC-KRW?limit=1000000"))).await;
        assert_eq!((st, v.as_array().map(|a| a.len())), (200, Some(2)), "{v}");

        // Candles: both trades in one (one command, one time stamp), for every interval.
        for iv in ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"] {
            let (st, k) = call(c.get(s.url(&format!("/api/v1/klines/BTC-KRW?interval={iv}")))).await;
            assert_eq!(st, 200, "{k}");
            assert_eq!(k.as_array().unwrap().len(), 1, "{iv}: {k}");
            let k = &k[0];
            assert_eq!((&k["open"], &k["high"], &k["low"], &k["close"], &k["volume"], &k["trades"]),
                (&json!(15000), &json!(15100), &json!(15000), &json!(15100), &json!(4), &json!(2)), "{iv}: {k}");
            assert_eq!(k["quote_volume"], json!(15000 * 3 + 15100), "tick size 1: {k}");
            assert!(k["open_time"].as_u64().unwrap() <= t[0]["ts"].as_u64().unwrap());
        }
        let (st, v) = call(c.get(s.url("/api/v1/klines/BTC-KRW?interval=2m"))).await;
        assert_eq!((st, v["reason"].as_str()), (400, Some("BAD_REQUEST")), "{v}");

        // The ticker, for one symbol and for all.
        let (st, tk) = call(c.get(s.url("/api/v1/ticker/24hr?symbol=BTC-KRW"))).await;
        assert_eq!(st, 200, "{tk}");
        assert_eq!((&tk["open"], &tk["high"], &tk["low"], &tk["last"], &tk["change"], &tk["volume"], &tk["trades"]),
            (&json!(15000), &json!(15100), &json!(15000), &json!(15100), &json!(100), &json!(4), &json!(2)), "{tk}");
        assert_eq!((&tk["best_bid"], &tk["best_ask"], &tk["change_pct"]), (&json!([14900, 1]), &json!([15100, 2]), &json!("0.66")), "{tk}");
        let (st, all) = call(c.get(s.url("/api/v1/ticker/24hr"))).await;
        assert_eq!(st, 200, "{all}");
        let all = all.as_array().unwrap();
        assert_eq!(all.len(), DEFAULT_CONFIG.matches("[[symbols]]").count(), "{all:?}");
        assert!(all.iter().any(|x| x["symbol"] == "BTC-KRW" && x["trades"] == 2));
        // Unknown symbols are 404 everywhere.
        for path in ["/api/v1/trades/DOGE-KRW", "/api/v1/klines/DOGE-KRW", "/api/v1/ticker/24hr?symbol=DOGE-KRW"] {
            let (st, v) = call(c.get(s.url(path))).await;
            assert_eq!((st, v["reason"].as_str()), (404, Some("UNKNOWN_SYMBOL")), "{path}: {v}");
        }
        public_md(&c, &s).await
    });
    let (status, _) = s.terminate();
    assert!(status.success());
    // Restarted on the same journal: the builder is rebuilt from it, answers unchanged.
    let s = Server::start(dir.path(), "");
    // Before any command of this run, /metrics counts what was recovered as acknowledged:
    // nothing in flight.
    let m = rt().block_on(async { scrape(&http(), &s).await });
    let recovered = value(&m, "ringbook_pipeline_submitted_sequence", &[]);
    assert!(recovered > 0.0);
    assert_eq!(value(&m, "ringbook_journal_acked_sequence", &[]), recovered);
    assert_eq!(value(&m, "ringbook_pipeline_in_flight_commands", &[]), 0.0);
    let after = rt().block_on(async { public_md(&http(), &s).await });
    assert_eq!(before, after);
    // … and equal to the binary market-data feed's depth snapshot (the gateway's own builder).
    {
        use ringbook_client::protocol::marketdata::{Channel, MdMsg};
        use ringbook_client::Received;
        let mut feed = Client::connect(s.gateway).unwrap();
        login_patient(&mut feed, "feed");
        feed.subscribe(
            1,
            ringbook_engine::SymbolId(0),
            Channel::Depth,
            ringbook_engine::marketdata::Interval::M1,
        )
        .unwrap();
        let mut book = ringbook_client::DepthBook::new();
        let deadline = Instant::now() + WAIT;
        let md_seq = loop {
            assert!(Instant::now() < deadline, "no binary depth snapshot");
            if let Some(Received::MarketData(MdMsg::Depth(f))) =
                feed.recv_any_timeout(Duration::from_millis(200)).unwrap()
            {
                if let Some(seq) = book.apply(&f).unwrap() {
                    break seq;
                }
            }
        };
        let b = book.book().unwrap();
        let side = |s: ringbook_engine::Side| {
            Value::Array(
                b.levels(s)
                    .into_iter()
                    .map(|(p, q, n)| json!([p.0, q.0, n]))
                    .collect(),
            )
        };
        assert_eq!(json!(md_seq), after["book"]["md_seq"]);
        assert_eq!(side(ringbook_engine::Side::Buy), after["book"]["bids"]);
        assert_eq!(side(ringbook_engine::Side::Sell), after["book"]["asks"]);
    }
    let (status, _) = s.terminate();
    assert!(status.success());
}

/// A WebSocket `depth` client's book: a snapshot, then updates; updates at or below the latest
/// snapshot's `md_seq` are skipped, the rest must be contiguous.
#[derive(Default)]
struct WsBook {
    md_seq: u64,
    bids: std::collections::BTreeMap<i64, (u64, u64)>,
    asks: std::collections::BTreeMap<i64, (u64, u64)>,
    snapshots: u32,
}

impl WsBook {
    fn levels(side: &mut std::collections::BTreeMap<i64, (u64, u64)>, v: &Value, replace: bool) {
        if replace {
            side.clear();
        }
        for l in v.as_array().unwrap() {
            let (p, q, n) = (
                l[0].as_i64().unwrap(),
                l[1].as_u64().unwrap(),
                l[2].as_u64().unwrap(),
            );
            if q == 0 {
                assert_eq!(n, 0, "{l}");
                side.remove(&p);
            } else {
                side.insert(p, (q, n));
            }
        }
    }

    fn on(&mut self, v: &Value) {
        let seq = v["md_seq"].as_u64().unwrap();
        match v["type"].as_str() {
            Some("snapshot") => {
                self.snapshots += 1;
                self.md_seq = seq;
                Self::levels(&mut self.bids, &v["bids"], true);
                Self::levels(&mut self.asks, &v["asks"], true);
            }
            Some("update") if seq <= self.md_seq => {}
            Some("update") => {
                assert_eq!(seq, self.md_seq + 1, "a gap in depth updates: {v}");
                self.md_seq = seq;
                Self::levels(&mut self.bids, &v["bids"], false);
                Self::levels(&mut self.asks, &v["asks"], false);
            }
            _ => panic!("{v}"),
        }
    }

    /// As `GET /api/v1/orderbook` shows it.
    fn json(&self) -> (Value, Value) {
        let f = |(p, (q, n)): (&i64, &(u64, u64))| json!([p, q, n]);
        (
            Value::Array(self.bids.iter().rev().map(f).collect()),
            Value::Array(self.asks.iter().map(f).collect()),
        )
    }
}

/// Public WebSocket channels: after a burst of orders, a depth subscriber's book (snapshot +
/// ordered updates) equals `GET /api/v1/orderbook` at the same `md_seq`, for a client that reads
/// as it goes and for one that reads only at the end (tiny queues: conflated to fresh snapshots
/// rather than growing); trades arrive in order without gaps; kline and ticker channels answer;
/// bad subscriptions are refused.
#[test]
fn websocket_public_channels_converge_with_the_rest_book() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "ws_queue_max = 4");
    rt().block_on(async {
        let c = http();
        let ops = login(&c, &s, "ops1").await;
        let alice = login(&c, &s, "alice").await;
        let bob = login(&c, &s, "bob").await;
        for (user, cur, amount) in [(1, "KRW", 1_000_000_000), (2, "BTC", 100_000_000)] {
            let (st, v) = call(c.post(s.url("/api/v1/deposits")).bearer_auth(&ops)
                .json(&json!({"user": user, "currency": cur, "amount": amount}))).await;
            assert_eq!(st, 200, "{v}");
        }
        // A resting order before anyone subscribes: it must be in the snapshot.
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&bob).json(&json!(
            {"symbol": "BTC-KRW", "client_order_id": 1, "side": "SELL", "price": 15100, "qty": 5}))).await;
        assert_eq!(st, 201, "{v}");

        // Refusals: no symbol, unknown symbol, unknown interval, a second identical subscription.
        let mut fast = ws_connect(&s).await;
        for (msg, reason) in [
            (json!({"op": "subscribe", "channel": "depth"}), "BAD_REQUEST"),
            (json!({"op": "subscribe", "channel": "depth", "symbol": "DOGE-KRW"}), "UNKNOWN_SYMBOL"),
            (json!({"op": "subscribe", "channel": "kline:2m", "symbol": "BTC-KRW"}), "BAD_REQUEST"),
        ] {
            ws_send(&mut fast, msg.clone()).await;
            let v = ws_until(&mut fast, |v| v["op"] == "error").await;
            assert_eq!(v["reason"], reason, "{msg}: {v}");
        }
        let mut book = WsBook::default();
        ws_send(&mut fast, json!({"op": "subscribe", "channel": "depth", "symbol": "BTC-KRW"})).await;
        let v = ws_until(&mut fast, |v| v["op"] == "subscribe").await;
        assert_eq!((&v["ok"], &v["channel"], &v["symbol"]), (&json!(true), &json!("depth"), &json!("BTC-KRW")), "{v}");
        let snap = ws_until(&mut fast, |v| v["channel"] == "depth" && v["type"].is_string()).await;
        assert_eq!((&snap["type"], &snap["md_seq"], &snap["asks"]), (&json!("snapshot"), &v["md_seq"], &json!([[15100, 5, 1]])), "{snap}");
        book.on(&snap);
        ws_send(&mut fast, json!({"op": "subscribe", "channel": "depth", "symbol": "BTC-KRW"})).await;
        let v = ws_until(&mut fast, |v| v["op"] == "error").await;
        assert_eq!(v["reason"], "BAD_REQUEST", "{v}");

        // The slow client subscribes to everything and reads nothing until the end.
        let mut slow = ws_connect(&s).await;
        for ch in ["depth", "trades", "ticker", "kline:1m"] {
            ws_send(&mut slow, json!({"op": "subscribe", "channel": ch, "symbol": "BTC-KRW"})).await;
        }
        let mut tape = ws_connect(&s).await;
        ws_send(&mut tape, json!({"op": "subscribe", "channel": "trades", "symbol": "BTC-KRW"})).await;
        let snap = ws_until(&mut tape, |v| v["channel"] == "trades" && v["type"].is_string()).await;
        assert_eq!((&snap["type"], &snap["trades"]), (&json!("snapshot"), &json!([])), "{snap}");

        // The burst: crossing and resting orders from two users; the fast client reads along.
        let mut trades_rest = 0u64;
        for i in 0..120u64 {
            let (who, side, price) = if i % 2 == 0 {
                (&bob, "SELL", 15000 + (i % 7) as i64)
            } else {
                (&alice, "BUY", 14998 + (i % 9) as i64)
            };
            let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(who).json(&json!(
                {"symbol": "BTC-KRW", "client_order_id": i + 2, "side": side, "price": price, "qty": 1 + i % 3}))).await;
            assert_eq!(st, 201, "{v}");
            trades_rest += v["fills"].as_array().unwrap().len() as u64;
            if i % 3 == 0 {
                // Drain what has arrived so far, without waiting.
                while let Ok(Some(Ok(Message::Text(t)))) =
                    tokio::time::timeout(Duration::from_millis(1), fast.next()).await
                {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["channel"] == "depth" && v["type"].is_string() {
                        book.on(&v);
                    }
                }
            }
        }
        assert!(trades_rest > 0, "the burst traded");
        // A binary session's order reaches the web edge's copy too (while subscriptions hold
        // the market-data feed on, every output crosses the bridge, whatever its origin).
        let mut bin = Client::connect(s.gateway).unwrap();
        login_patient(&mut bin, "bob");
        bin.send(&ClientMsg::Command(ringbook_engine::Command::NewOrder(ringbook_engine::NewOrder::limit(
            ringbook_engine::UserId(2), ringbook_engine::SymbolId(0), ringbook_engine::ClientOrderId(1000),
            ringbook_engine::Side::Sell, ringbook_engine::Price(15300), ringbook_engine::Qty(2),
        )))).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no binary ack");
            if let Some(ServerMsg::Accepted { client_order_id, .. }) = bin.recv_timeout(WAIT).unwrap() {
                if client_order_id == 1000 {
                    break;
                }
            }
        }
        // The binary ack and the web edge's builder are on different threads: the order shows
        // in the web book a moment later at most (bounded wait).
        let deadline = Instant::now() + WAIT;
        let rest = loop {
            let (st, rest) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW?depth=1000"))).await;
            assert_eq!(st, 200, "{rest}");
            if rest["asks"].as_array().unwrap().contains(&json!([15300, 2, 1])) {
                break rest;
            }
            assert!(Instant::now() < deadline, "the binary order never reached the web book: {rest}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let target = rest["md_seq"].as_u64().unwrap();
        assert!(target > 100, "{rest}");
        for (name, ws) in [("fast", &mut fast), ("slow", &mut slow)] {
            let mut b = if name == "fast" { std::mem::take(&mut book) } else { WsBook::default() };
            let mut trades_seen = Vec::new();
            while b.md_seq < target {
                let v = ws_until(ws, |v| v["type"].is_string()).await;
                match v["channel"].as_str() {
                    Some("depth") => b.on(&v),
                    Some("trades") if v["type"] == "update" => trades_seen.push(v["data"]["trade_id"].as_u64().unwrap()),
                    Some("ticker" | "kline:1m") => assert!(v["md_seq"].as_u64().is_some(), "{v}"),
                    _ => {}
                }
            }
            assert_eq!(b.md_seq, target, "{name}");
            assert_eq!(b.json(), (rest["bids"].clone(), rest["asks"].clone()), "{name}: the WebSocket book differs from GET /orderbook");
            assert!(b.snapshots >= 1, "{name}");
        }
        // The tape client (default reading pace, ends in time): every trade once, in order,
        // trade ids contiguous, unless it was conflated to a fresh tape snapshot.
        let mut ids = Vec::new();
        let mut last_ticker = None;
        ws_send(&mut tape, json!({"op": "subscribe", "channel": "ticker", "symbol": "BTC-KRW"})).await;
        while last_ticker.is_none() || (ids.len() as u64) < trades_rest {
            let v = ws_until(&mut tape, |v| v["type"].is_string()).await;
            match (v["channel"].as_str(), v["type"].as_str()) {
                (Some("trades"), Some("update")) => ids.push(v["data"]["trade_id"].as_u64().unwrap()),
                (Some("trades"), Some("snapshot")) => {
                    ids = v["trades"].as_array().unwrap().iter().map(|t| t["trade_id"].as_u64().unwrap()).collect();
                    assert!(!ids.is_empty());
                    // A conflated tape resumes after the snapshot's trades; count from its first.
                    let first = ids[0];
                    ids.retain(|&i| i >= first);
                    if ids.last().copied() == Some(trades_rest) { break; }
                }
                (Some("ticker"), _) => last_ticker = Some(v),
                _ => {}
            }
            if ids.last().copied() == Some(trades_rest) && last_ticker.is_some() { break; }
        }
        for w in ids.windows(2) {
            assert_eq!(w[1], w[0] + 1, "trade ids contiguous: {ids:?}");
        }
        assert_eq!(ids.last().copied(), Some(trades_rest), "the last trade arrived");
        let tk = last_ticker.unwrap();
        assert_eq!(tk["data"]["trades"], json!(trades_rest), "{tk}");
        // Unsubscribe answers; the connection still works.
        ws_send(&mut tape, json!({"op": "unsubscribe", "channel": "trades", "symbol": "BTC-KRW"})).await;
        let v = ws_until(&mut tape, |v| v["op"] == "unsubscribe").await;
        assert_eq!(v["ok"], json!(true), "{v}");
        // Metrics: trades, subscriptions (fast 1, slow 4, tape 1), messages; conflations are
        // reported (how many depends on the machine's pace, so not asserted).
        let m = scrape(&c, &s).await;
        assert_eq!(value(&m, "ringbook_trades_total", &[]), trades_rest as f64);
        assert_eq!(value(&m, "ringbook_md_ws_subscriptions", &[]), 6.0);
        assert!(value(&m, "ringbook_md_ws_messages_total", &[]) > 100.0);
        assert!(value(&m, "ringbook_journal_acked_sequence", &[]) > 120.0);
        eprintln!("conflations: {}", value(&m, "ringbook_md_ws_conflations_total", &[]));
        drop(slow);
        // A closed connection's subscriptions go with it.
        scrape_until(&c, &s, "the closed connection's subscriptions gone", |m| {
            value(m, "ringbook_md_ws_subscriptions", &[]) == 2.0
        })
        .await;
    });
    let (status, _) = s.terminate();
    assert!(status.success());
}

fn craft(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Logs a binary session in (session 1, demo password) with the longest heartbeat interval
/// (60 s): the server ends a session silent for three intervals, and with the default (1 s) a
/// loaded CI box could cut off a session that only reads later in the test.
fn login_patient(c: &mut Client, who: &str) {
    c.login_with(ringbook_client::protocol::client::Login {
        login: ringbook_client::protocol::name32(who),
        password: ringbook_client::protocol::name32(&format!("{who}-demo")),
        session_id: 1,
        last_seen_seq: 0,
        heartbeat_ms: 60_000,
        cancel_on_disconnect: false,
    })
    .unwrap_or_else(|e| panic!("{who}: {e}"));
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn every_error_path_has_its_code_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "");
    rt().block_on(async {
        let c = http();
        let alice = login(&c, &s, "alice").await;
        let ops1 = login(&c, &s, "ops1").await;
        let expect = |st: u16, v: &Value, want_st: u16, code: u64, reason: &str| {
            assert_eq!((st, v["code"].as_u64(), v["reason"].as_str()), (want_st, Some(code), Some(reason)), "{v}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        };
        let order = json!({"symbol": "BTC-KRW", "client_order_id": 1, "side": "BUY", "price": 15000, "qty": 1});
        // Bad JSON, a wrong field, a bad enum value.
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).body("{\"symbol\":")).await;
        expect(st, &v, 400, 4001, "BAD_REQUEST");
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&json!({"nonsense": 1}))).await;
        expect(st, &v, 400, 4001, "BAD_REQUEST");
        let mut o = order.clone();
        o["side"] = json!("UP");
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&o)).await;
        expect(st, &v, 400, 4001, "BAD_REQUEST");
        // Unknown symbol, in a body and in a path.
        let mut o = order.clone();
        o["symbol"] = json!("DOGE-KRW");
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&o)).await;
        expect(st, &v, 404, 3001, "UNKNOWN_SYMBOL");
        let (st, v) = call(c.get(s.url("/api/v1/orderbook/DOGE-KRW"))).await;
        expect(st, &v, 404, 3001, "UNKNOWN_SYMBOL");
        // No token, a bad token, a token signed with another key, an expired token.
        let (st, v) = call(c.post(s.url("/api/v1/orders")).json(&order)).await;
        expect(st, &v, 401, 4002, "UNAUTHORIZED");
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth("garbage").json(&order)).await;
        expect(st, &v, 401, 4002, "UNAUTHORIZED");
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "alice", "role": "user", "id": 1, "acct": 0, "iat": now(), "exp": now() + 60}),
            &jsonwebtoken::EncodingKey::from_secret(b"not the server's secret, 32 bytes+"),
        ).unwrap();
        let (st, v) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&forged)).await;
        expect(st, &v, 401, 4002, "UNAUTHORIZED");
        let expired = craft(json!({"sub": "alice", "role": "user", "id": 1, "acct": 0,
            "iat": now() - 120, "exp": now() - 60}));
        let (st, v) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&expired)).await;
        expect(st, &v, 401, 4003, "TOKEN_EXPIRED");
        // A valid token of the right secret still works (the crafted shape is the real one).
        let fresh = craft(json!({"sub": "alice", "role": "user", "id": 1, "acct": 0, "iat": now(), "exp": now() + 60}));
        let (st, v) = call(c.get(s.url("/api/v1/orders/open")).bearer_auth(&fresh)).await;
        assert_eq!(st, 200, "{v}");
        // Acting for another user: an order, a balance query, a cancel.
        let mut o = order.clone();
        o["user"] = json!(2);
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&o)).await;
        expect(st, &v, 403, 1010, "NOT_YOUR_ACCOUNT");
        let (st, v) = call(c.get(s.url("/api/v1/balances?user=2")).bearer_auth(&alice)).await;
        expect(st, &v, 403, 1010, "NOT_YOUR_ACCOUNT");
        let (st, v) = call(c.delete(s.url("/api/v1/orders/client/1?symbol=BTC-KRW&user=3")).bearer_auth(&alice)).await;
        expect(st, &v, 403, 1010, "NOT_YOUR_ACCOUNT");
        // A user may not deposit; an operator may not trade.
        let (st, v) = call(c.post(s.url("/api/v1/deposits")).bearer_auth(&alice)
            .json(&json!({"user": 1, "currency": "KRW", "amount": 5}))).await;
        expect(st, &v, 403, 1011, "OPERATOR_ONLY");
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&ops1).json(&order)).await;
        expect(st, &v, 403, 1012, "USER_ONLY");
        let (st, v) = call(c.post(s.url("/api/v1/withdrawals/1/approve")).bearer_auth(&alice)).await;
        expect(st, &v, 403, 1011, "OPERATOR_ONLY");
        // Engine rejects: no account yet (no deposit), then insufficient funds.
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&order)).await;
        expect(st, &v, 404, 2001, "UNKNOWN_USER");
        let (st, _) = call(c.post(s.url("/api/v1/deposits")).bearer_auth(&ops1)
            .json(&json!({"user": 1, "currency": "KRW", "amount": 100}))).await;
        assert_eq!(st, 200);
        // The reject consumed client order id 1 (docs/protocol.md, "Idempotency"): resending it
        // is a duplicate whatever changed since; the next id meets the funds check.
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&order)).await;
        expect(st, &v, 409, 3009, "DUPLICATE_CLIENT_ORDER_ID");
        let mut o = order.clone();
        o["client_order_id"] = json!(2);
        let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&o)).await;
        expect(st, &v, 422, 2002, "INSUFFICIENT_FUNDS");
        let (st, v) = call(c.post(s.url("/api/v1/deposits")).bearer_auth(&ops1)
            .json(&json!({"user": 1, "currency": "XYZ", "amount": 100}))).await;
        expect(st, &v, 404, 2004, "UNKNOWN_CURRENCY");
        // Bad credentials; unknown route; a bad path id.
        let (st, v) = call(c.post(s.url("/api/v1/auth/login")).json(&json!({"login": "alice", "password": "nope"}))).await;
        expect(st, &v, 401, 1008, "BAD_CREDENTIALS");
        // A NUL would pad to the same fixed field as the login without it: refused.
        let (st, v) = call(c.post(s.url("/api/v1/auth/login")).json(&json!({"login": "alice\u{0}", "password": "alice-demo"}))).await;
        expect(st, &v, 400, 4001, "BAD_REQUEST");
        let (st, v) = call(c.get(s.url("/api/v1/nothing"))).await;
        expect(st, &v, 404, 4006, "NOT_FOUND");
        let (st, v) = call(c.get(s.url("/api/v1/orders/client/abc")).bearer_auth(&alice)).await;
        expect(st, &v, 400, 4001, "BAD_REQUEST");
        // What the router answers itself is JSON too, its status kept: a method the path does
        // not take, a body over 64 KiB; under /v1/ in Upbit's shape.
        let (st, v) = call(c.put(s.url("/api/v1/orders")).bearer_auth(&alice).json(&json!({}))).await;
        expect(st, &v, 405, 4001, "BAD_REQUEST");
        let big = format!("{{\"login\":\"{}\"}}", "x".repeat(70_000));
        let (st, v) = call(c.post(s.url("/api/v1/auth/login")).header("content-type", "application/json").body(big)).await;
        expect(st, &v, 413, 4001, "BAD_REQUEST");
        let (st, v) = call(c.delete(s.url("/v1/market/all"))).await;
        assert_eq!((st, v["error"]["name"].as_str()), (405, Some("method_not_allowed")), "{v}");
        // WebSocket: a bad token, an operator's token, public channels not served yet.
        let mut ws = ws_connect(&s).await;
        ws_send(&mut ws, json!({"op": "subscribe", "channel": "orders"})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "error").await;
        assert_eq!(v["reason"], "UNAUTHORIZED");
        ws_send(&mut ws, json!({"op": "auth", "token": expired})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "error").await;
        assert_eq!(v["reason"], "TOKEN_EXPIRED");
        ws_send(&mut ws, json!({"op": "auth", "token": ops1})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "error").await;
        assert_eq!(v["reason"], "USER_ONLY");
        // Public channels need no authentication.
        ws_send(&mut ws, json!({"op": "subscribe", "channel": "depth", "symbol": "BTC-KRW"})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "subscribe" || v["op"] == "error").await;
        assert_eq!(v["ok"], json!(true), "{v}");
        // By id too, as the REST paths take it; the reply names the symbol.
        ws_send(&mut ws, json!({"op": "subscribe", "channel": "trades", "symbol": 0})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "subscribe" || v["op"] == "error").await;
        assert_eq!((&v["ok"], &v["symbol"]), (&json!(true), &json!("BTC-KRW")), "{v}");
        ws_send(&mut ws, json!({"op": "subscribe", "channel": "trades", "symbol": -1})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "error").await;
        assert_eq!(v["reason"], "BAD_REQUEST", "{v}");
        // A connection authenticated with a token is closed when the token expires.
        let short = craft(json!({"sub": "alice", "role": "user", "id": 1, "acct": 0,
            "iat": now(), "exp": now() + 2}));
        let mut ws = ws_connect(&s).await;
        ws_send(&mut ws, json!({"op": "auth", "token": short})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "auth" || v["op"] == "error").await;
        if v["op"] == "auth" {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                match tokio::time::timeout_at(deadline, ws.next()).await.expect("closed at expiry") {
                    Some(Ok(Message::Close(Some(f)))) => {
                        assert_eq!((u16::from(f.code), f.reason.as_str()), (1008, "TOKEN_EXPIRED"));
                        break;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("no close frame: {other:?}"),
                }
            }
        } else {
            // Only on a machine so slow that the token expired before it was checked.
            assert_eq!(v["reason"], "TOKEN_EXPIRED");
        }
        // Budgets and expiry (last: their engine rejects raise alice's client-order-id mark):
        // each refusal with its own code, from the edge (a budget of 0,
        // which the engine reads as "none") or from the engine.
        for (i, (extra, code, reason)) in [
            (json!({"type": "MARKET", "budget": 0}), 3015, "INVALID_BUDGET"),
            (json!({"budget": 5000}), 3015, "INVALID_BUDGET"),
            (json!({"type": "MARKET", "side": "SELL", "budget": 5000}), 3015, "INVALID_BUDGET"),
            (json!({"tif": "GTD"}), 3016, "INVALID_EXPIRY"),
            (json!({"tif": "GTC", "expire": now() * 1000 + 60_000}), 3016, "INVALID_EXPIRY"),
            (json!({"tif": "GTD", "expire": 1}), 3017, "EXPIRY_IN_PAST"),
            (json!({"tif": "DAY"}), 3018, "NO_SESSION_END"),
        ]
        .into_iter()
        .enumerate()
        {
            // Each with a fresh client order id: an engine reject consumes its id.
            let mut o = order.clone();
            o["client_order_id"] = json!(100 + i);
            for (k, v) in extra.as_object().unwrap() {
                o[k] = v.clone();
            }
            let (st, v) = call(c.post(s.url("/api/v1/orders")).bearer_auth(&alice).json(&o)).await;
            expect(st, &v, 422, code, reason);
        }
        // History without a projection (no --postgres): 501 for every query, whatever its
        // parameters (a malformed cursor is not the reason it cannot be served).
        for path in [
            "/api/v1/history/orders",
            "/api/v1/history/orders?cursor=zzz",
            "/api/v1/history/trades?cursor=1-2",
            "/api/v1/history/ledger?limit=x",
            "/api/v1/history/klines/BTC-KRW?interval=1m",
            "/api/v1/history/klines/BTC-KRW?interval=7m",
        ] {
            let (st, v) = call(c.get(s.url(path)).bearer_auth(&alice)).await;
            expect(st, &v, 501, 4007, "UNSUPPORTED");
        }
        // A logout ends every token of its login issued until then (two of carol's, one
        // crafted without `iat_ms` as an earlier build issued them) and closes the WebSocket
        // authenticated with one; other logins' tokens and a later login are untouched.
        let open = s.url("/api/v1/orders/open");
        let carol1 = login(&c, &s, "carol").await;
        let carol2 = login(&c, &s, "carol").await;
        let legacy = craft(json!({"sub": "carol", "role": "user", "id": 3, "acct": 2,
            "iat": now() - 1, "exp": now() + 60}));
        let (st, v) = call(c.get(&open).bearer_auth(&legacy)).await;
        assert_eq!(st, 200, "{v}");
        let mut ws = ws_connect(&s).await;
        ws_send(&mut ws, json!({"op": "auth", "token": carol1})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "auth").await;
        assert_eq!(v["ok"], json!(true), "{v}");
        let (st, v) = call(c.post(s.url("/api/v1/auth/logout"))).await;
        expect(st, &v, 401, 4002, "UNAUTHORIZED");
        let (st, v) = call(c.post(s.url("/api/v1/auth/logout")).bearer_auth(&carol2)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!((&v["logged_out"], &v["sockets_closed"]), (&json!("carol"), &json!(1)), "{v}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await.expect("closed at logout") {
                Some(Ok(Message::Close(Some(f)))) => {
                    assert_eq!((u16::from(f.code), f.reason.as_str()), (1008, "TOKEN_REVOKED"));
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
        for tok in [&carol1, &carol2, &legacy] {
            let (st, v) = call(c.get(&open).bearer_auth(tok)).await;
            expect(st, &v, 401, 4012, "TOKEN_REVOKED");
        }
        let mut ws = ws_connect(&s).await;
        ws_send(&mut ws, json!({"op": "auth", "token": carol1})).await;
        let v = ws_until(&mut ws, |v| v["op"] == "error").await;
        assert_eq!(v["reason"], "TOKEN_REVOKED", "{v}");
        let (st, v) = call(c.get(&open).bearer_auth(&alice)).await;
        assert_eq!(st, 200, "alice is not logged out by carol: {v}");
        let carol3 = login(&c, &s, "carol").await;
        let (st, v) = call(c.get(&open).bearer_auth(&carol3)).await;
        assert_eq!(st, 200, "a login after the logout works: {v}");
    });
}

#[test]
fn rate_limits_answer_429_per_account_and_leave_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Three requests per account, refilled at one per second; addresses are generous.
    let s = Server::start(dir.path(), "account_rps = 1\naccount_burst = 3");
    rt().block_on(async {
        let c = http();
        let alice = login(&c, &s, "alice").await;
        let bob = login(&c, &s, "bob").await;
        // Requests until the first 429 (bounded): the burst of three always passes (the bucket
        // starts full), and with a refill of one per second a refusal must come long before 50
        // requests, whatever the machine's speed.
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for _ in 0..50 {
            let r = c
                .get(s.url("/api/v1/orders/open"))
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            if r.status().as_u16() == 429 {
                retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let v: Value = r.json().await.unwrap();
                assert_eq!(
                    (v["code"].as_u64(), v["reason"].as_str()),
                    (Some(4004), Some("RATE_LIMITED"))
                );
                break;
            }
        }
        assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
        assert!(secs >= 1);
        // Bob's bucket is his own.
        let (st, _) = call(c.get(s.url("/api/v1/orders/open")).bearer_auth(&bob)).await;
        assert_eq!(st, 200);
        // WebSocket messages count against the account too: carol's pings after her burst.
        let carol = login(&c, &s, "carol").await;
        let mut ws = ws_connect(&s).await;
        ws_send(&mut ws, json!({"op": "auth", "token": carol})).await;
        ws_until(&mut ws, |v| v["op"] == "auth").await;
        let mut pongs = 0;
        loop {
            assert!(pongs < 50, "no rate limit on WebSocket messages");
            ws_send(&mut ws, json!({"op": "ping"})).await;
            let v = ws_until(&mut ws, |v| v["op"] == "pong" || v["op"] == "error").await;
            if v["op"] == "error" {
                assert_eq!(
                    (v["code"].as_u64(), v["reason"].as_str()),
                    (Some(4004), Some("RATE_LIMITED"))
                );
                break;
            }
            pongs += 1;
        }
        assert!(pongs >= 3, "the burst passes first ({pongs})");
        // Counted in the metrics.
        let m = scrape(&c, &s).await;
        assert!(value(&m, "ringbook_rate_limited_total", &[("scope", "account")]) >= 1.0);
    });
}

/// `/metrics`, parsed.
async fn scrape(c: &reqwest::Client, s: &Server) -> prometheus_parse::Scrape {
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics(&text)
}

/// Scrapes `/metrics` until `f` holds of it (bounded by `WAIT`), and returns that scrape.
async fn scrape_until(
    c: &reqwest::Client,
    s: &Server,
    what: &str,
    f: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(c, s).await;
        if f(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "metrics never showed {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text")
}

fn value(m: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

#[test]
fn csv_endpoints_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "");
    rt().block_on(async {
        let c = http();
        let ops1 = login(&c, &s, "ops1").await;
        let alice = login(&c, &s, "alice").await;
        let bob = login(&c, &s, "bob").await;
        let post = |path: &str, tok: &str, body: &str| {
            c.post(s.url(path))
                .bearer_auth(tok)
                .header("content-type", "text/csv")
                .body(body.to_string())
        };
        // The seed's CSV cancel: user 2 (bob), `order`, symbol 0.
        let cancel = |tok: &str, order: u64| post("/cancel", tok, &format!("2,{order},0")).send();
        let text = |r: reqwest::Response| async move {
            let st = r.status().as_u16();
            (st, r.text().await.unwrap())
        };
        // Deposits (operator): KRW (currency 0) for alice, BTC (currency 2) for bob; a header
        // line is allowed.
        let (st, t) = text(post("/deposit", &ops1, "1,0,5000000").send().await.unwrap()).await;
        assert_eq!(st, 200, "{t}");
        assert_eq!(
            t,
            "userId,currencyId,amount,available,locked\n1,0,5000000,5000000,0\n"
        );
        let (st, _) = text(
            post("/deposit", &ops1, "userId,currencyId,amount\n2,2,100000")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 200);
        // Bob sells 2 lots of BTC-KRW (symbol 0) at 14000; alice buys 1.
        let (st, t) = text(post("/order", &bob, "2,0,14000,2,2").send().await.unwrap()).await;
        assert_eq!(st, 200, "{t}");
        let line = t.lines().nth(1).unwrap().to_string();
        let bob_order: u64 = line.split(',').next().unwrap().parse().unwrap();
        assert!(line.ends_with(",NEW,0,2"), "{t}");
        let (st, t) = text(
            post("/order", &alice, "1,0,14000,1,1")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 200, "{t}");
        assert!(t.lines().nth(1).unwrap().ends_with(",FILLED,1,0"), "{t}");
        let (st, t) = text(
            c.get(s.url("/orderbook?symbolId=0"))
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((st, t.as_str()), (200, "side,price,qty\n2,14000,1\n"));
        // Alice cannot cancel bob's order, nor act as bob.
        let (st, t) = text(cancel(&alice, bob_order).await.unwrap()).await;
        assert_eq!(st, 403, "{t}");
        assert!(t.contains("NOT_YOUR_ACCOUNT"));
        let (st, t) = text(
            post("/order", &alice, "2,0,14000,1,2")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 403, "{t}");
        // A user may not deposit; malformed lines are 400.
        let (st, _) = text(post("/deposit", &alice, "1,0,5").send().await.unwrap()).await;
        assert_eq!(st, 403);
        let (st, t) = text(post("/order", &bob, "2,0,14000").send().await.unwrap()).await;
        assert_eq!(st, 400, "{t}");
        assert!(t.contains("BAD_REQUEST"));
        let (st, _) = text(post("/order", &bob, "2,0,14000,1,3").send().await.unwrap()).await;
        assert_eq!(st, 400);
        // A body of two data lines is refused whole: nothing is credited, not even the first.
        let (st, t) = text(
            post("/deposit", &ops1, "2,1,7\n2,1,7")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 400, "{t}");
        assert!(t.contains("more than one data line"), "{t}");
        let (st, t) = text(post("/deposit", &ops1, "2,1,1").send().await.unwrap()).await;
        assert_eq!(
            (st, t.as_str()),
            (
                200,
                "userId,currencyId,amount,available,locked\n2,1,1,1,0\n"
            )
        );
        // A bad value is named, not taken for a header.
        let (st, t) = text(post("/deposit", &ops1, "2,1,-5").send().await.unwrap()).await;
        assert_eq!(st, 400, "{t}");
        assert!(t.contains("field 3"), "{t}");
        // Bob cancels his remaining lot by the order id /order returned.
        let (st, t) = text(cancel(&bob, bob_order).await.unwrap()).await;
        assert_eq!(
            (st, t),
            (
                200,
                format!("orderId,status,cancelledQty\n{bob_order},CANCELLED,1\n")
            )
        );
        let (st, t) = text(cancel(&bob, bob_order).await.unwrap()).await;
        assert_eq!(st, 404, "{t}");
        // Any live order of the user, not only one /order placed (nor only one placed since the
        // server started): /cancel names it by its engine order id.
        let v: Value = c
            .post(s.url("/api/v1/orders"))
            .bearer_auth(&bob)
            .json(
                // Above the edge's CSV ids, which bob's earlier /order used (they keep growing).
                &json!({"symbol": "BTC-KRW", "client_order_id": u64::MAX, "side": "SELL",
                "price": 15000, "qty": 1}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rest_order = v["order_id"].as_u64().unwrap_or_else(|| panic!("{v}"));
        let (st, t) = text(cancel(&bob, rest_order).await.unwrap()).await;
        assert_eq!(
            (st, t),
            (
                200,
                format!("orderId,status,cancelledQty\n{rest_order},CANCELLED,1\n")
            )
        );
        // Unauthenticated CSV calls are refused like the rest.
        let (st, _) = text(c.get(s.url("/orderbook?symbolId=0")).send().await.unwrap()).await;
        assert_eq!(st, 401);

        // /metrics parses as Prometheus text and carries the gateway's and the edge's counters.
        let r = c.get(s.url("/metrics")).send().await.unwrap();
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let m = metrics(&r.text().await.unwrap());
        assert!(value(&m, "ringbook_gateway_logins_total", &[]) >= 3.0);
        // Three deposits, two CSV orders and a REST one, three cancels (the second one the
        // engine's UNKNOWN_ORDER) and one book query; the requests refused by authorization or
        // as bad CSV were never sequenced.
        assert_eq!(value(&m, "ringbook_gateway_commands_total", &[]), 10.0);
        assert_eq!(value(&m, "ringbook_web_bridge_commands_total", &[]), 10.0);
        assert_eq!(value(&m, "ringbook_web_bridge_rejected_total", &[]), 3.0);
        assert_eq!(value(&m, "ringbook_journal_acked_sequence", &[]), 10.0);
        // The pipeline's gauges: every sequenced command is journaled and came back.
        assert_eq!(value(&m, "ringbook_pipeline_submitted_sequence", &[]), 10.0);
        assert_eq!(value(&m, "ringbook_pipeline_in_flight_commands", &[]), 0.0);
        assert_eq!(value(&m, "ringbook_journal_records_total", &[]), 10.0);
        assert!(value(&m, "ringbook_journal_written_bytes_total", &[]) > 10.0 * 16.0);
        assert_eq!(
            value(
                &m,
                "ringbook_http_requests_total",
                &[("route", "/order"), ("status", "200")]
            ),
            2.0
        );
        assert_eq!(
            value(
                &m,
                "ringbook_http_requests_total",
                &[("route", "/order"), ("status", "403")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &m,
                "ringbook_http_requests_total",
                &[("route", "/orderbook"), ("status", "401")]
            ),
            1.0
        );
        assert_eq!(
            value(&m, "ringbook_web_logins_total", &[("result", "ok")]),
            3.0
        );
        assert_eq!(value(&m, "ringbook_web_ready", &[]), 1.0);
        // Snapshots are due after commands 5 and 10 (`--snapshot-every 5`), written by a
        // background thread; one due while the previous is still being written waits for the
        // next command, and none follows command 10 here: wait for a snapshot, bounded, and
        // accept either.
        let snap = scrape_until(&c, &s, "the snapshot", |m| {
            m.samples
                .iter()
                .any(|x| x.metric == "ringbook_snapshot_last_sequence")
        })
        .await;
        let last = value(&snap, "ringbook_snapshot_last_sequence", &[]);
        assert!(last == 5.0 || last == 10.0, "{last}");
        assert!(value(&snap, "ringbook_snapshot_last_timestamp_seconds", &[]) > 1.7e9);
        assert!(value(&snap, "ringbook_snapshot_age_seconds", &[]) >= 0.0);
        for (code, reason, n) in [
            ("1010", "NOT_YOUR_ACCOUNT", 2.0),
            ("1011", "OPERATOR_ONLY", 1.0),
            ("4001", "BAD_REQUEST", 4.0),
            ("3010", "UNKNOWN_ORDER", 1.0),
            ("4002", "UNAUTHORIZED", 1.0),
        ] {
            assert_eq!(
                value(
                    &m,
                    "ringbook_web_errors_total",
                    &[("code", code), ("reason", reason)]
                ),
                n,
                "{reason}"
            );
        }
        // Counted as sent, refused or not: the refused ones are counted as errors above.
        for (kind, n) in [
            ("new_order", 4.0),
            ("deposit", 4.0),
            ("cancel_order", 4.0),
            ("query_book", 1.0),
        ] {
            assert_eq!(
                value(&m, "ringbook_web_commands_total", &[("kind", kind)]),
                n,
                "{kind}"
            );
        }
        let ack = m
            .samples
            .iter()
            .find(|s| s.metric == "ringbook_web_order_ack_seconds")
            .expect("ack summary");
        match &ack.value {
            prometheus_parse::Value::Summary(q) => {
                assert!(q.iter().any(|q| q.quantile == 0.99 && q.count > 0.0))
            }
            other => panic!("ack latency is not a summary: {other:?}"),
        }
        // Labels are bounded: no user or address appears in any label.
        for smp in &m.samples {
            for (k, _) in smp.labels.iter() {
                assert!(
                    ["route", "status", "scope", "result", "quantile", "code", "reason", "kind"]
                        .contains(&k.as_str()),
                    "{k}"
                );
            }
        }
        // The OpenAPI document names every route.
        let (st, d) = call(c.get(s.url("/api/openapi.json"))).await;
        assert_eq!(st, 200);
        for p in [
            "/api/v1/orders",
            "/deposit",
            "/order",
            "/cancel",
            "/orderbook",
            "/ws",
            "/api/v1/auth/login",
        ] {
            assert!(d["paths"].get(p).is_some(), "{p}");
        }
    });
}

#[test]
fn a_busy_http_port_or_a_short_secret_fails_the_start_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let journal = dir.path().join("journal");
    let out = Proc::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            &addr,
            "--journal",
        ])
        .arg(&journal)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen for HTTP on") && err.contains("--no-http"),
        "{err}"
    );
    assert!(
        !journal.exists(),
        "nothing is created when the HTTP port is busy"
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[web]\njwt_secret = \"short\"\n{DEFAULT_CONFIG}"),
    )
    .unwrap();
    let out = Proc::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .arg("--journal")
        .arg(&journal)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jwt_secret must be at least 32 bytes"));
    assert!(!journal.exists());
}

#[test]
fn a_gtd_order_shows_its_expiry_and_expires_on_an_idle_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "");
    rt().block_on(async {
        let c = http();
        let ops = login(&c, &s, "ops1").await;
        let alice = login(&c, &s, "alice").await;
        let (st, v) = call(
            c.post(s.url("/api/v1/deposits"))
                .bearer_auth(&ops)
                .json(&json!({"user": 1, "currency": "KRW", "amount": 1_000_000})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        // 3 s ahead: an order whose expiry passed before the engine sequenced it would be
        // refused (EXPIRY_IN_PAST), even when a loaded CI box stalls this test for a while.
        let expire = now_ms() + 3000;
        let (st, v) = call(
            c.post(s.url("/api/v1/orders"))
                .bearer_auth(&alice)
                .json(&json!(
            {"symbol": "BTC-KRW", "client_order_id": 5, "side": "BUY", "price": 14000, "qty": 1,
             "tif": "GTD", "expire": expire})),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (201, Some("NEW")), "{v}");
        let id = v["order_id"].as_u64().unwrap();
        let (st, v) = call(
            c.get(s.url(&format!("/api/v1/orders/{id}")))
                .bearer_auth(&alice),
        )
        .await;
        assert_eq!(
            (st, v["tif"].as_str(), v["expire"].as_u64()),
            (200, Some("GTD"), Some(expire)),
            "{v}"
        );
        // Nobody sends a command (the metrics endpoint is not one): the server's own clock
        // tick is what expires the order.
        scrape_until(&c, &s, "a clock tick", |m| {
            value(m, "ringbook_gateway_clock_ticks_total", &[]) >= 1.0
        })
        .await;
        assert!(now_ms() >= expire);
        let (st, v) = call(c.get(s.url("/api/v1/orders/client/5")).bearer_auth(&alice)).await;
        assert_eq!(
            (st, v["status"].as_str(), v["leaves_qty"].as_u64()),
            (200, Some("EXPIRED"), Some(0)),
            "{v}"
        );
        // With its reason, by id too (it was null).
        let (st, v) = call(
            c.get(s.url(&format!("/api/v1/orders/{id}")))
                .bearer_auth(&alice),
        )
        .await;
        assert_eq!(
            (st, v["status"].as_str(), v["reason"].as_str()),
            (200, Some("EXPIRED"), Some("EXPIRED")),
            "{v}"
        );
        let (st, v) = call(c.get(s.url("/api/v1/balances")).bearer_auth(&alice)).await;
        assert_eq!(
            (st, balance(&v, "KRW")),
            (200, (1_000_000, 0)),
            "the lock is refunded: {v}"
        );
    });
}

/// The binary market-data feed's depth snapshot of BTC-KRW: `(md_seq, bids, asks)` as the REST
/// book writes them.
fn binary_depth(s: &Server) -> (u64, Value, Value) {
    use ringbook_client::protocol::marketdata::{Channel, MdMsg};
    use ringbook_client::Received;
    let mut feed = Client::connect(s.gateway).unwrap();
    login_patient(&mut feed, "feed");
    feed.subscribe(
        1,
        ringbook_engine::SymbolId(0),
        Channel::Depth,
        ringbook_engine::marketdata::Interval::M1,
    )
    .unwrap();
    let mut book = ringbook_client::DepthBook::new();
    let deadline = Instant::now() + WAIT;
    let md_seq = loop {
        assert!(Instant::now() < deadline, "no binary depth snapshot");
        if let Some(Received::MarketData(MdMsg::Depth(f))) =
            feed.recv_any_timeout(Duration::from_millis(200)).unwrap()
        {
            if let Some(seq) = book.apply(&f).unwrap() {
                break seq;
            }
        }
    };
    let b = book.book().unwrap();
    let side = |s: ringbook_engine::Side| {
        Value::Array(
            b.levels(s)
                .into_iter()
                .map(|(p, q, n)| json!([p.0, q.0, n]))
                .collect(),
        )
    };
    (
        md_seq,
        side(ringbook_engine::Side::Buy),
        side(ringbook_engine::Side::Sell),
    )
}

/// `n` crossing pairs (bob sells, alice buys) and one resting bid of alice's at `rest`, on the
/// binary protocol; returns once alice's session has seen every fill and the bid accepted.
fn binary_burst(alice: &mut Client, bob: &mut Client, coid: &mut u64, n: u64, rest: i64) {
    use ringbook_engine::{ClientOrderId, Command, NewOrder, Price, Qty, Side, SymbolId, UserId};
    let order = |user: u32, coid: u64, side: Side, price: i64| {
        ClientMsg::Command(Command::NewOrder(NewOrder::limit(
            UserId(user),
            SymbolId(0),
            ClientOrderId(coid),
            side,
            Price(price),
            Qty(1),
        )))
    };
    for _ in 0..n {
        *coid += 1;
        bob.send(&order(2, *coid, Side::Sell, 15_000)).unwrap();
        alice.send(&order(1, *coid, Side::Buy, 15_000)).unwrap();
    }
    *coid += 1;
    alice.send(&order(1, *coid, Side::Buy, rest)).unwrap();
    let deadline = Instant::now() + WAIT;
    let (mut fills, mut rested) = (0, false);
    while fills < n || !rested {
        assert!(Instant::now() < deadline, "alice saw {fills} of {n} fills");
        match alice.recv_timeout(WAIT).unwrap() {
            Some(ServerMsg::Fill { user: 1, .. }) => fills += 1,
            Some(ServerMsg::Accepted {
                client_order_id, ..
            }) if client_order_id == *coid => rested = true,
            Some(_) => {}
            None => panic!("alice: nothing"),
        }
    }
}

/// Issue #13, an idle web edge costs the binary path nothing: binary trading with no
/// WebSocket client and no market-data reader sends the web edge no output at all
/// (`ringbook_web_bridge_forwarded_total` stays 0 — counted, not timed). The first REST read
/// then takes one copy of the gateway's builder and answers exactly the binary feed's
/// snapshot; a WebSocket subscriber joining mid-stream gets a snapshot and contiguous updates
/// that converge with the REST book.
#[test]
fn an_idle_web_edge_forwards_nothing_and_serves_the_gateways_market_data_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), "");
    rt().block_on(async {
        let c = http();
        let ops = login(&c, &s, "ops1").await;
        for (user, cur) in [(1, "KRW"), (2, "BTC")] {
            let (st, v) = call(
                c.post(s.url("/api/v1/deposits"))
                    .bearer_auth(&ops)
                    .json(&json!({"user": user, "currency": cur, "amount": 1u64 << 40})),
            )
            .await;
            assert_eq!(st, 200, "{v}");
        }
        let mut alice = Client::connect(s.gateway).unwrap();
        login_patient(&mut alice, "alice");
        let mut bob = Client::connect(s.gateway).unwrap();
        login_patient(&mut bob, "bob");
        let mut coid = 0;
        binary_burst(&mut alice, &mut bob, &mut coid, 100, 14_000);
        let m = scrape(&c, &s).await;
        assert_eq!(
            value(&m, "ringbook_web_bridge_forwarded_total", &[]),
            0.0,
            "an idle edge got outputs"
        );
        assert_eq!(value(&m, "ringbook_md_web_syncs_total", &[]), 0.0);
        assert_eq!(value(&m, "ringbook_md_web_feed", &[]), 0.0);
        assert_eq!(
            value(&m, "ringbook_trades_total", &[]),
            100.0,
            "trades counted by the gateway"
        );

        // The first read syncs once; it equals the binary feed's snapshot.
        let (st, rest) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW?depth=1000"))).await;
        assert_eq!(st, 200, "{rest}");
        let (md_seq, bids, asks) = binary_depth(&s);
        assert_eq!(
            (json!(md_seq), bids, asks),
            (
                rest["md_seq"].clone(),
                rest["bids"].clone(),
                rest["asks"].clone()
            )
        );
        assert!(md_seq > 0, "{rest}");
        let (st, tape) = call(c.get(s.url("/api/v1/trades/BTC-KRW?limit=1000"))).await;
        assert_eq!(st, 200, "{tape}");
        assert_eq!(
            tape.as_array().unwrap().len(),
            100,
            "the tape from before the sync"
        );
        let m = scrape(&c, &s).await;
        assert_eq!(
            value(&m, "ringbook_md_web_syncs_total", &[]),
            1.0,
            "one sync for both reads"
        );
        assert_eq!(value(&m, "ringbook_md_web_feed", &[]), 1.0);

        // A WebSocket subscriber joining mid-stream: snapshot, then contiguous updates, which
        // converge with the REST book after more binary trading.
        let mut ws = ws_connect(&s).await;
        ws_send(
            &mut ws,
            json!({"op": "subscribe", "channel": "depth", "symbol": "BTC-KRW"}),
        )
        .await;
        let v = ws_until(&mut ws, |v| v["op"] == "subscribe").await;
        assert_eq!(v["ok"], json!(true), "{v}");
        let mut book = WsBook::default();
        let snap = ws_until(&mut ws, |v| {
            v["channel"] == "depth" && v["type"].is_string()
        })
        .await;
        assert_eq!(snap["type"], "snapshot", "{snap}");
        book.on(&snap);
        binary_burst(&mut alice, &mut bob, &mut coid, 60, 14_001);
        let (md_seq, bids, asks) = binary_depth(&s);
        while book.md_seq < md_seq {
            let v = ws_until(&mut ws, |v| {
                v["channel"] == "depth" && v["type"].is_string()
            })
            .await;
            book.on(&v);
        }
        assert_eq!(book.md_seq, md_seq);
        assert_eq!(
            book.json(),
            (bids.clone(), asks.clone()),
            "WebSocket book vs the binary feed's"
        );
        let (st, rest) = call(c.get(s.url("/api/v1/orderbook/BTC-KRW?depth=1000"))).await;
        assert_eq!(st, 200, "{rest}");
        assert_eq!(
            (
                rest["md_seq"].clone(),
                rest["bids"].clone(),
                rest["asks"].clone()
            ),
            (json!(md_seq), bids, asks)
        );
        let m = scrape(&c, &s).await;
        assert_eq!(
            value(&m, "ringbook_md_web_syncs_total", &[]),
            1.0,
            "the feed stayed on"
        );
        assert!(value(&m, "ringbook_web_bridge_forwarded_total", &[]) > 0.0);
    });
    let (status, _) = s.terminate();
    assert!(status.success());
}
