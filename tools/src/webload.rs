//! `ringbook loadgen --http URL` and `--ws URL`: load on the web edge, measured from outside.
//!
//! ```sh
//! # REST orders at a fixed rate, latency from each order's intended send time
//! ringbook loadgen --http http://127.0.0.1:8080 --connections 2 --rate 5000 --seconds 5
//! # 1,000 WebSocket subscribers to depth and trades while 20,000 trades happen
//! ringbook loadgen --ws http://127.0.0.1:8080 --subscribers 1000 --trades 20000 --rate 10000
//! ```
//!
//! Both modes log in through `POST /api/v1/auth/login` as the embedded configuration's demo
//! users (`alice`…`dave`, password `<login>-demo`) and fund them as `ops1` through
//! `POST /api/v1/deposits`, so they run against the README's `serve`. The server's `[web]`
//! rate limits apply to this load like to any client: raise `account_rps`/`addr_rps` (and their
//! bursts) for rates above them; refusals are counted and reported, never hidden.
//!
//! **`--http`**: `--connections` threads (1..=4, one demo user each: client order ids must
//! increase per user), each with its own HTTP/1.1 keep-alive connection, send
//! `POST /api/v1/orders` one after the other on a fixed schedule (`--rate` over all
//! connections). With one connection every order is an IOC buy below the market (accepted,
//! remainder cancelled); with more, even connections rest GTC sells and odd ones send IOC buys
//! at the same price, so the run trades. Latency runs from the order's *intended* send time
//! (coordinated-omission corrected; `--max` sends back to back and measures from the send) to
//! the end of the response, recorded in HdrHistogram. A hiccup meter runs alone for one second
//! first and its percentiles are printed beside the latencies: the machine's own floor.
//!
//! **`--ws`**: `--subscribers` WebSocket connections each subscribe to `depth` and `trades` of
//! `--symbol`; each keeps its own copy of the book from the snapshot and updates, and checks that
//! depth `md_seq` grows by exactly one per update and trade ids by one per trade (a fresh
//! snapshot — after the server conflated a slow subscriber — restarts both checks). Once all
//! have their snapshots, `bob` rests one large sell and `--connections` buyers (`alice`,
//! `carol`, `dave`) take it one lot at a time over REST until `--trades` trades happened (or
//! `--seconds` passed) at up to `--rate` per second. Then every subscriber must reach the final
//! `md_seq` of `GET /api/v1/orderbook` and hold exactly that book; the report counts updates
//! delivered, snapshots, gaps and mismatched books (the last two must be 0), and, with
//! `--server-pid`, the server's resident memory.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Demo users (login, account id) the web modes trade as.
const USERS: [(&str, u32); 4] = [("alice", 1), ("bob", 2), ("carol", 3), ("dave", 4)];
/// The most `--http` connections: one demo user each.
pub const HTTP_CONNECTIONS_MAX: usize = 4;
/// The most `--ws` subscribers.
pub const SUBSCRIBERS_MAX: usize = 10_000;
/// The most levels compared per side at the end of a `--ws` run.
const DEPTH_COMPARED: u32 = 1000;
/// The bound on every wait that only a broken run exceeds (subscribing, convergence).
const WAIT: Duration = Duration::from_secs(120);

/// What the web modes take from `ringbook loadgen`'s arguments.
#[derive(Debug, Clone)]
pub struct WebLoad {
    /// `http://host:port` of the web edge (loopback only).
    pub base: String,
    /// Connections (`--http`) or buyer connections (`--ws`).
    pub connections: usize,
    /// Orders per second over all connections.
    pub rate: u64,
    /// Back to back instead of a schedule (`--http`).
    pub max: bool,
    /// Length of the run.
    pub seconds: u64,
    /// Symbol name.
    pub symbol: String,
    /// WebSocket subscribers (`--ws`).
    pub subscribers: usize,
    /// Stop after this many trades (`--ws`).
    pub trades: Option<u64>,
    /// The server's process id, to report its memory (`--ws`).
    pub server_pid: Option<u32>,
    /// One JSON object instead of text.
    pub json: bool,
}

/// Checks that `url` is `http://<loopback>:<port>` and returns it without a trailing slash.
pub fn loopback_base(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: expected http://HOST:PORT"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(format!("{url}: expected http://HOST:PORT with no path"));
    }
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!(
            "{url} is not a loopback address: loadgen only targets this machine"
        ));
    }
    Ok(format!("http://{hostport}"))
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().map_err(|e| e.to_string())
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

async fn login(c: &reqwest::Client, base: &str, who: &str) -> Result<String, String> {
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": who, "password": format!("{who}-demo")}))
        .send()
        .await
        .map_err(|e| format!("login {who}: {e}"))?;
    let status = r.status();
    let v: Value = r.json().await.map_err(|e| format!("login {who}: {e}"))?;
    match v["token"].as_str() {
        Some(t) if status.is_success() => Ok(t.to_string()),
        _ => Err(format!("login {who}: {status} {v}")),
    }
}

/// Deposits ample funds of every currency for the demo users, as `ops1`.
async fn fund(c: &reqwest::Client, base: &str) -> Result<(), String> {
    let ops = login(c, base, "ops1").await?;
    let currencies: Value = c
        .get(format!("{base}/api/v1/currencies"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = currencies
        .as_array()
        .ok_or("GET /api/v1/currencies: not a list")?
        .iter()
        .filter_map(|c| c["code"].as_str().map(str::to_string))
        .collect();
    if names.is_empty() {
        return Err(format!(
            "GET /api/v1/currencies: no currency codes in {currencies}"
        ));
    }
    for &(_, user) in &USERS {
        for name in &names {
            let r = c
                .post(format!("{base}/api/v1/deposits"))
                .bearer_auth(&ops)
                .json(&json!({"user": user, "currency": name, "amount": 1u64 << 50}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                let s = r.status();
                return Err(format!(
                    "deposit {name} for user {user}: {s} {}",
                    r.text().await.unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Waits until `due`, giving the core away meanwhile (the server shares this machine).
fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        if due - now > Duration::from_millis(2) {
            std::thread::sleep(due - now - Duration::from_millis(1));
        } else {
            std::thread::yield_now();
        }
    }
}

/// One `--http` connection's results.
struct HttpOutcome {
    hist: Histogram<u64>,
    ok: u64,
    limited: u64,
    errors: u64,
    first_error: Option<String>,
}

/// `loadgen --http`.
pub fn run_http(w: &WebLoad) -> Result<(), String> {
    if w.connections == 0 || w.connections > HTTP_CONNECTIONS_MAX {
        return Err(format!(
            "--http takes --connections 1..={HTTP_CONNECTIONS_MAX} (one demo user each)"
        ));
    }
    let rt = runtime(1)?;
    rt.block_on(async {
        let c = http_client()?;
        fund(&c, &w.base).await
    })
    .map_err(|e| format!("preparing accounts on {}: {e}", w.base))?;
    drop(rt);

    // The machine's own floor in the same run: a hiccup meter alone for one second (at the
    // offered interval), before the orders.
    let floor = crate::hiccup::measure_alone(
        crate::hiccup::HiccupConfig::new((1e9 / w.rate as f64).max(1.0) as u64),
        Duration::from_secs(1),
    )?;
    let per_conn = (w.rate * w.seconds / w.connections as u64).max(1);
    let interval_ns = (1e9 * w.connections as f64 / w.rate as f64) as u64;
    let start = Instant::now() + Duration::from_millis(200);
    let mut threads = Vec::new();
    for (k, &(who, _)) in USERS.iter().enumerate().take(w.connections) {
        let w = w.clone();
        threads.push(std::thread::spawn(
            move || -> Result<HttpOutcome, String> {
                let rt = runtime(1)?;
                let c = http_client()?;
                let token = rt.block_on(login(&c, &w.base, who))?;
                let url = format!("{}/api/v1/orders", w.base);
                // Client order ids above the clock: they keep increasing across runs.
                let coid0 = now_ns();
                let mut out = HttpOutcome {
                    hist: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                        .map_err(|e| e.to_string())?,
                    ok: 0,
                    limited: 0,
                    errors: 0,
                    first_error: None,
                };
                for i in 0..per_conn {
                    let (side, tif) = if w.connections == 1 || k % 2 == 1 {
                        ("BUY", "IOC")
                    } else {
                        ("SELL", "GTC")
                    };
                    let body = json!({"symbol": w.symbol, "client_order_id": coid0 + i,
                    "side": side, "type": "LIMIT", "tif": tif, "price": 15000, "qty": 1});
                    let due = start + Duration::from_nanos(i * interval_ns);
                    let sent = if w.max {
                        Instant::now()
                    } else {
                        wait_until(due);
                        due
                    };
                    let r = rt.block_on(async {
                        let r = c.post(&url).bearer_auth(&token).json(&body).send().await?;
                        let status = r.status();
                        let text = r.text().await?;
                        Ok::<_, reqwest::Error>((status, text))
                    });
                    let elapsed = sent.elapsed().as_nanos() as u64;
                    match r {
                        Ok((s, _)) if s.is_success() => {
                            out.ok += 1;
                            let _ = out.hist.record(elapsed.max(1));
                        }
                        Ok((s, _)) if s.as_u16() == 429 => out.limited += 1,
                        Ok((s, text)) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(format!("{s} {text}"));
                        }
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(e.to_string());
                        }
                    }
                }
                Ok(out)
            },
        ));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap();
    let (mut ok, mut limited, mut errors, mut first_error) = (0, 0, 0, None);
    for t in threads {
        let o = t.join().map_err(|_| "a sender thread panicked")??;
        hist.add(&o.hist).map_err(|e| e.to_string())?;
        ok += o.ok;
        limited += o.limited;
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let q = |p: f64| hist.value_at_quantile(p);
    if w.json {
        println!(
            "{}",
            json!({"mode": "http", "connections": w.connections, "offered_rate": if w.max { Value::Null } else { json!(w.rate) },
                "ok": ok, "rate_limited": limited, "errors": errors, "first_error": first_error,
                "orders_per_sec": ok as f64 / secs,
                "p50_ns": q(0.5), "p90_ns": q(0.9), "p99_ns": q(0.99), "p999_ns": q(0.999), "max_ns": hist.max(),
                "hiccup_alone_p99_ns": floor.p99_ns, "hiccup_alone_p999_ns": floor.p999_ns, "hiccup_alone_max_ns": floor.max_ns})
        );
    } else {
        println!(
            "loadgen --http {}: {} connections, {} orders accepted ({:.0}/s), {} rate-limited (429), {} errors",
            w.base,
            w.connections,
            ok,
            ok as f64 / secs,
            limited,
            errors
        );
        println!(
            "order -> response{}: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            if w.max {
                " (from send)"
            } else {
                " (from intended send time)"
            },
            q(0.5) as f64 / 1e3,
            q(0.9) as f64 / 1e3,
            q(0.99) as f64 / 1e3,
            q(0.999) as f64 / 1e3,
            hist.max() as f64 / 1e3
        );
        println!(
            "machine floor (hiccup meter alone, 1 s before the run): p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            floor.p99_ns as f64 / 1e3,
            floor.p999_ns as f64 / 1e3,
            floor.max_ns as f64 / 1e3
        );
        if let Some(e) = first_error {
            println!("first error: {e}");
        }
    }
    if ok == 0 {
        return Err("no order was accepted".into());
    }
    Ok(())
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct SubOutcome {
    depth_updates: u64,
    trade_updates: u64,
    snapshots: u64,
    gaps: u64,
    errors: u64,
    bids: BTreeMap<u64, (u64, u64)>,
    asks: BTreeMap<u64, (u64, u64)>,
    depth_seq: u64,
    first_error: Option<String>,
}

fn levels(v: &Value) -> BTreeMap<u64, (u64, u64)> {
    let mut m = BTreeMap::new();
    for l in v.as_array().into_iter().flatten() {
        let (p, q, n) = (l[0].as_u64(), l[1].as_u64(), l[2].as_u64());
        if let (Some(p), Some(q)) = (p, q) {
            m.insert(p, (q, n.unwrap_or(0)));
        }
    }
    m
}

fn apply(side: &mut BTreeMap<u64, (u64, u64)>, changes: &Value) {
    for l in changes.as_array().into_iter().flatten() {
        let (Some(p), Some(q)) = (l[0].as_u64(), l[1].as_u64()) else {
            continue;
        };
        if q == 0 {
            side.remove(&p);
        } else {
            side.insert(p, (q, l[2].as_u64().unwrap_or(0)));
        }
    }
}

/// Handles one message of a subscriber; returns whether both snapshots have arrived.
fn on_message(o: &mut SubOutcome, last_trade: &mut Option<u64>, v: &Value) -> Result<(), String> {
    match (v["channel"].as_str(), v["type"].as_str()) {
        (Some("depth"), Some("snapshot")) => {
            o.snapshots += 1;
            o.depth_seq = v["md_seq"]
                .as_u64()
                .ok_or("depth snapshot without md_seq")?;
            o.bids = levels(&v["bids"]);
            o.asks = levels(&v["asks"]);
        }
        (Some("depth"), Some("update")) => {
            let seq = v["md_seq"].as_u64().ok_or("depth update without md_seq")?;
            if seq <= o.depth_seq {
                return Ok(()); // older than the latest snapshot
            }
            if seq != o.depth_seq + 1 {
                o.gaps += 1;
            }
            o.depth_updates += 1;
            o.depth_seq = seq;
            apply(&mut o.bids, &v["bids"]);
            apply(&mut o.asks, &v["asks"]);
        }
        (Some("trades"), Some("snapshot")) => {
            o.snapshots += 1;
            *last_trade = Some(
                v["trades"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["trade_id"].as_u64())
                    .max()
                    .unwrap_or(0),
            );
        }
        (Some("trades"), Some("update")) => {
            let id = v["data"]["trade_id"]
                .as_u64()
                .ok_or("trade update without trade_id")?;
            let last = last_trade.unwrap_or(0);
            if id <= last {
                return Ok(());
            }
            if id != last + 1 {
                o.gaps += 1;
            }
            o.trade_updates += 1;
            *last_trade = Some(id);
        }
        _ if v["op"] == "error" => return Err(format!("server error: {v}")),
        _ => {}
    }
    Ok(())
}

/// The shared progress of the subscribers.
struct Progress {
    /// Subscribers that have both snapshots.
    ready: AtomicUsize,
    /// Each subscriber's depth `md_seq`.
    seqs: Vec<AtomicU64>,
    stop: AtomicBool,
}

async fn subscriber(
    k: usize,
    url: String,
    symbol: String,
    progress: Arc<Progress>,
) -> Result<SubOutcome, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| {
            // A 503 is the server refusing the connection (TOO_MANY_CONNECTIONS: all of them
            // come from one address, so `[web] conns_per_addr` must exceed --subscribers); any
            // other failure is more likely this process's own descriptor limit.
            let hint = match &e {
                tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503 => {
                    "the server refused it: every subscriber comes from this one address, so \
                     the server's `[web] conns_per_addr` (and `conns_max`) must exceed \
                     --subscribers (docs/operations.md)"
                }
                _ => "each subscriber is a socket: `ulimit -n`",
            };
            format!("subscriber {k}: connect: {e} ({hint})")
        })?;
    for ch in ["depth", "trades"] {
        ws.send(Message::Text(
            json!({"op": "subscribe", "channel": ch, "symbol": symbol})
                .to_string()
                .into(),
        ))
        .await
        .map_err(|e| format!("subscriber {k}: {e}"))?;
    }
    let mut o = SubOutcome::default();
    let mut last_trade = None;
    let mut counted_ready = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if progress.stop.load(Ordering::Relaxed) { break; }
                continue;
            }
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                return Err(format!("subscriber {k}: closed by the server: {f:?}"))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("subscriber {k}: {e}")),
            None => return Err(format!("subscriber {k}: connection ended")),
        };
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("subscriber {k}: {e}: {text}"))?;
        if let Err(e) = on_message(&mut o, &mut last_trade, &v) {
            o.errors += 1;
            o.first_error.get_or_insert(e);
        }
        if !counted_ready && o.snapshots >= 2 {
            counted_ready = true;
            progress.ready.fetch_add(1, Ordering::Relaxed);
        }
        progress.seqs[k].store(o.depth_seq, Ordering::Relaxed);
    }
    let _ = ws.close(None).await;
    Ok(o)
}

/// `loadgen --ws`.
pub fn run_ws(w: &WebLoad) -> Result<(), String> {
    if w.subscribers == 0 || w.subscribers > SUBSCRIBERS_MAX {
        return Err(format!("--subscribers must be 1..={SUBSCRIBERS_MAX}"));
    }
    if w.connections == 0 || w.connections > 3 {
        return Err("--ws takes --connections 1..=3 (buyers alice, carol, dave)".into());
    }
    let rt = runtime(2)?;
    let ws_url = format!("{}/ws", w.base.replacen("http://", "ws://", 1));
    let progress = Arc::new(Progress {
        ready: AtomicUsize::new(0),
        seqs: (0..w.subscribers).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });
    rt.block_on(async {
        let c = http_client()?;
        fund(&c, &w.base).await?;

        // 1. Subscribers, connected a few at a time, all holding both snapshots.
        let mut subs = Vec::with_capacity(w.subscribers);
        for k in 0..w.subscribers {
            subs.push(tokio::spawn(subscriber(
                k,
                ws_url.clone(),
                w.symbol.clone(),
                progress.clone(),
            )));
            if k % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let deadline = Instant::now() + WAIT;
        while progress.ready.load(Ordering::Relaxed) < w.subscribers {
            if subs.iter().any(|s| s.is_finished()) || Instant::now() > deadline {
                progress.stop.store(true, Ordering::Relaxed);
                for s in subs {
                    if let Ok(Err(e)) = s.await {
                        return Err(e);
                    }
                }
                return Err(format!(
                    "only {} of {} subscribers got their snapshots",
                    progress.ready.load(Ordering::Relaxed),
                    w.subscribers
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // 2. The trades: bob rests a large sell, the buyers take it one lot at a time.
        let bob = login(&c, &w.base, "bob").await?;
        let trades_wanted = w.trades.unwrap_or(u64::MAX);
        let r = c
            .post(format!("{}/api/v1/orders", w.base))
            .bearer_auth(&bob)
            .json(&json!({"symbol": w.symbol, "client_order_id": now_ns(), "side": "SELL",
                "type": "LIMIT", "tif": "GTC", "price": 20000,
                "qty": trades_wanted.min(1_000_000)}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("bob's resting sell: {}", r.text().await.unwrap_or_default()));
        }
        let started = Instant::now();
        let end = started + Duration::from_secs(w.seconds);
        let done = Arc::new(AtomicU64::new(0));
        let limited = Arc::new(AtomicU64::new(0));
        let issued = Arc::new(AtomicU64::new(0));
        let per_buyer_ns = (1e9 * w.connections as f64 / w.rate as f64) as u64;
        // The buyers get a runtime thread of their own: the subscribers' parsing must not
        // decide the trade rate.
        let buyers_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut buyers = Vec::new();
        for b in 0..w.connections {
            let who = ["alice", "carol", "dave"][b];
            let (c, base, symbol) = (c.clone(), w.base.clone(), w.symbol.clone());
            let (done, limited, issued) = (done.clone(), limited.clone(), issued.clone());
            buyers.push(buyers_rt.spawn(async move {
                let token = login(&c, &base, who).await?;
                let coid0 = now_ns();
                let mut i = 0u64;
                let mut next = tokio::time::Instant::now();
                while Instant::now() < end {
                    // Reserve one of the wanted trades before sending, so concurrent buyers
                    // never overshoot the count (a refusal gives the reservation back).
                    if issued.fetch_add(1, Ordering::Relaxed) >= trades_wanted {
                        break;
                    }
                    tokio::time::sleep_until(next).await;
                    next += Duration::from_nanos(per_buyer_ns);
                    let r = c
                        .post(format!("{base}/api/v1/orders"))
                        .bearer_auth(&token)
                        .json(&json!({"symbol": symbol, "client_order_id": coid0 + i,
                            "side": "BUY", "type": "LIMIT", "tif": "IOC", "price": 20000, "qty": 1}))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    i += 1;
                    match r.status().as_u16() {
                        200 | 201 => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => {
                            limited.fetch_add(1, Ordering::Relaxed);
                            issued.fetch_sub(1, Ordering::Relaxed);
                        }
                        _ => return Err(format!("{who}'s buy: {}", r.text().await.unwrap_or_default())),
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for b in buyers {
            b.await.map_err(|e| e.to_string())??;
        }
        let trading = started.elapsed();
        buyers_rt.shutdown_background();

        // 3. Every subscriber reaches the final book.
        let book: Value = c
            .get(format!(
                "{}/api/v1/orderbook/{}?depth={DEPTH_COMPARED}",
                w.base, w.symbol
            ))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let final_seq = book["md_seq"]
            .as_u64()
            .ok_or("the server runs without market data (no md_seq)")?;
        let deadline = Instant::now() + WAIT;
        loop {
            let behind = progress
                .seqs
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) < final_seq)
                .count();
            if behind == 0 {
                break;
            }
            if Instant::now() > deadline || subs.iter().any(|s| s.is_finished()) {
                progress.stop.store(true, Ordering::Relaxed);
                return Err(format!(
                    "{behind} of {} subscribers did not reach md_seq {final_seq}",
                    w.subscribers
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let converged = started.elapsed();
        progress.stop.store(true, Ordering::Relaxed);
        let (want_bids, want_asks) = (levels(&book["bids"]), levels(&book["asks"]));
        let mut total = SubOutcome::default();
        let mut mismatched = 0u64;
        for s in subs {
            let o = s.await.map_err(|e| e.to_string())??;
            let top = |m: &BTreeMap<u64, (u64, u64)>, bids: bool| -> Vec<(u64, (u64, u64))> {
                let it: Box<dyn Iterator<Item = (&u64, &(u64, u64))>> =
                    if bids { Box::new(m.iter().rev()) } else { Box::new(m.iter()) };
                it.take(DEPTH_COMPARED as usize).map(|(p, l)| (*p, *l)).collect()
            };
            if o.depth_seq != final_seq
                || top(&o.bids, true) != top(&want_bids, true)
                || top(&o.asks, false) != top(&want_asks, false)
            {
                mismatched += 1;
            }
            total.depth_updates += o.depth_updates;
            total.trade_updates += o.trade_updates;
            total.snapshots += o.snapshots;
            total.gaps += o.gaps;
            total.errors += o.errors;
            if total.first_error.is_none() {
                total.first_error = o.first_error;
            }
        }
        let trades = done.load(Ordering::Relaxed);
        let memory = w.server_pid.and_then(server_memory);
        let delivered = total.depth_updates + total.trade_updates;
        let conflations = total.snapshots.saturating_sub(2 * w.subscribers as u64);
        if w.json {
            println!(
                "{}",
                json!({"mode": "ws", "subscribers": w.subscribers, "trades": trades,
                    "trades_per_sec": trades as f64 / trading.as_secs_f64().max(1e-9),
                    "rate_limited": limited.load(Ordering::Relaxed),
                    "final_md_seq": final_seq, "depth_updates": total.depth_updates,
                    "trade_updates": total.trade_updates, "snapshots": total.snapshots,
                    "resnapshots": conflations, "gaps": total.gaps, "errors": total.errors,
                    "first_error": total.first_error, "mismatched_books": mismatched,
                    "updates_per_sec": delivered as f64 / converged.as_secs_f64().max(1e-9),
                    "converged_ms": converged.as_millis() as u64,
                    "server_vm_hwm_kib": memory.map(|m| m.0), "server_vm_rss_kib": memory.map(|m| m.1)})
            );
        } else {
            println!(
                "loadgen --ws {}: {} subscribers, {} trades in {:.2} s ({:.0}/s, {} rate-limited)",
                w.base,
                w.subscribers,
                trades,
                trading.as_secs_f64(),
                trades as f64 / trading.as_secs_f64().max(1e-9),
                limited.load(Ordering::Relaxed)
            );
            println!(
                "delivered {} depth and {} trade updates ({:.0}/s until all converged at {:.2} s); \
                 {} re-snapshots after conflation; gaps {}; books different from the server's {}; errors {}",
                total.depth_updates,
                total.trade_updates,
                delivered as f64 / converged.as_secs_f64().max(1e-9),
                converged.as_secs_f64(),
                conflations,
                total.gaps,
                mismatched,
                total.errors
            );
            if let Some((hwm, rss)) = memory {
                println!("server memory: peak {} MiB, now {} MiB", hwm / 1024, rss / 1024);
            }
        }
        if total.gaps > 0 || mismatched > 0 || total.errors > 0 {
            return Err(format!(
                "{} gaps, {mismatched} mismatched books, {} errors ({:?})",
                total.gaps, total.errors, total.first_error
            ));
        }
        Ok(())
    })
}

/// The server's peak and current resident memory in KiB, from `/proc/PID/status`.
fn server_memory(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
