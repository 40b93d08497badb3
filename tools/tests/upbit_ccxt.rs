//! The Upbit-compatible Open API (docs/upbit-api.md) driven by a client no one here wrote:
//! ccxt's `upbit` driver (Python), pointed at the real `ringbook serve` on loopback ports, runs
//! tools/tests/ccxt/upbit_check.py — quotation, balances, orders that trade, cancels, closed
//! orders, withdrawals with two operator approvals, every error case mapped to ccxt's
//! exceptions, and ccxt.pro's WebSocket watchers.
//!
//! Needs `RINGBOOK_TEST_PYTHON` (a Python with ccxt), which the README's test command
//! tools/ci/test.sh provides; without it the test fails and says so.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn python() -> String {
    std::env::var("RINGBOOK_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "RINGBOOK_TEST_PYTHON is not set: it names a Python with ccxt installed. Run the \
             tests through tools/ci/test.sh (the README's test command), which installs and \
             sets it."
        )
    })
}

async fn post(c: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut rb = c.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.expect("HTTP request");
    let status = r.status();
    let v: Value = r.json().await.expect("a JSON reply");
    assert!(status.is_success(), "{status}: {v}");
    v
}

#[test]
fn ccxt_upbit_driver_trades_on_ringbook() {
    let py = python();
    let dir = std::env::temp_dir().join(format!("ringbook-upbit-ccxt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut s, url) = support::serve_web(&dir, "", &[]);
    // Fund alice (10,000,000 KRW) and bob (1 BTC) as operator ops1.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder()
            .timeout(support::WAIT)
            .build()
            .unwrap();
        let login = post(
            &c,
            format!("{url}/api/v1/auth/login"),
            None,
            json!({"login": "ops1", "password": "ops1-demo"}),
        )
        .await;
        let tok = login["token"].as_str().unwrap().to_string();
        for (user, currency, amount) in [
            (1, "KRW", 10_000_000u64),
            (2, "BTC", 100_000_000),
            (2, "KRW", 1_000_000),
        ] {
            post(
                &c,
                format!("{url}/api/v1/deposits"),
                Some(&tok),
                json!({"user": user, "currency": currency, "amount": amount}),
            )
            .await;
        }
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ccxt/upbit_check.py");
    let mut child = Command::new(&py)
        .arg(script)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {py}: {e}"));
    // Bounded: a hung client fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "upbit_check.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{:#?}",
        out.status,
        s.log_now()
    );
    println!("{stdout}");
    let (status, _) = s.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A signed Upbit request without parameters (no query hash needed), nonce `nonce`.
fn upbit_token(access: &str, secret: &str, nonce: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"access_key": access, "nonce": nonce}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An empty directory of this test's own under the system's temporary one.
fn fresh_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringbook-upbit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A single-threaded runtime and an HTTP client that gives up after `support::WAIT`.
fn runtime_and_client() -> (tokio::runtime::Runtime, reqwest::Client) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = reqwest::Client::builder()
        .timeout(support::WAIT)
        .build()
        .unwrap();
    (rt, c)
}

/// An address over its rate limit is refused before its key is looked at: on Upbit's routes in
/// Upbit's shape, with `Remaining-Req` of the route's group at 0 and `Retry-After` (it was the
/// `/api` shape without `Remaining-Req`: a docs review finding); on `/api` routes as before.
#[test]
fn an_address_over_its_limit_is_refused_in_each_apis_own_shape() {
    let dir = fresh_dir("addr");
    let default = include_str!("../../engine/src/default_config.toml");
    let config = format!("[web]\naddr_rps = 1\naddr_burst = 3\n{default}");
    let (s, url) = support::serve_config(&dir, &config, &[]);
    let (rt, c) = runtime_and_client();
    rt.block_on(async {
        // Spend the address's burst (it refills at one a second: a bounded run reaches 429).
        let mut n = 0;
        loop {
            let r = c.get(format!("{url}/v1/market/all")).send().await.unwrap();
            if r.status() == 429 {
                break;
            }
            assert_eq!(r.status(), 200);
            n += 1;
            assert!(n < 50, "the address's limit never answered 429");
        }
        // Each checked request is sent until it is refused: a stall on a loaded host can
        // refill a token meanwhile (one a second), and a request that spends it is served.
        for (k, (path, signed, group)) in [
            ("/v1/ticker?markets=KRW-BTC", false, "market"),
            ("/v1/candles/minutes/1?market=KRW-BTC", false, "market"),
            ("/v1/accounts", true, "default"),
            ("/websocket/v1/private", true, "default"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut tries = 0;
            let r = loop {
                let mut rb = c.get(format!("{url}{path}"));
                if signed {
                    let nonce = format!("addr-{k}-{tries}");
                    rb = rb.bearer_auth(upbit_token(
                        "alice-access-demo",
                        "alice-secret-demo",
                        &nonce,
                    ));
                }
                let r = rb.send().await.unwrap();
                if r.status() == 429 {
                    break r;
                }
                tries += 1;
                assert!(tries < 50, "{path}: never refused ({})", r.status());
            };
            let header = |h: &str| r.headers().get(h).map(|v| v.to_str().unwrap().to_string());
            let (rem, retry) = (header("remaining-req"), header("retry-after"));
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                v["error"]["name"].as_str(),
                Some("too_many_requests"),
                "{path}: {v}"
            );
            let want = format!("group={group}; min=0; sec=0");
            assert_eq!(rem.as_deref(), Some(want.as_str()), "{path}");
            assert!(
                retry.is_some_and(|s| s.parse::<u64>().unwrap() >= 1),
                "{path}"
            );
        }
        let mut tries = 0;
        let r = loop {
            let r = c.get(format!("{url}/api/v1/symbols")).send().await.unwrap();
            if r.status() == 429 {
                break r;
            }
            tries += 1;
            assert!(tries < 50, "/api/v1/symbols: never refused");
        };
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["reason"], "RATE_LIMITED", "{v}");
    });
    let (status, _) = s.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Permissions, the per-account rate limit with `Remaining-Req`, replays and Upbit's error shape,
/// on a server whose config makes carol's key read-only and the account limit tiny.
#[test]
fn permissions_rate_limits_and_replays() {
    let dir = fresh_dir("limits");
    let default = include_str!("../../engine/src/default_config.toml");
    let carol = "account = \"carol\"\npermissions = [\"read\", \"trade\", \"withdraw\"]";
    assert!(default.contains(carol), "the default config's carol key");
    let config = format!(
        "[web]\naccount_rps = 1\naccount_burst = 2\n{}",
        default.replace(carol, "account = \"carol\"\npermissions = [\"read\"]")
    );
    let (s, url) = support::serve_config(&dir, &config, &[]);
    let (rt, c) = runtime_and_client();
    rt.block_on(async {
        let send = |method: reqwest::Method, path: &str, tok: Option<String>| {
            let mut rb = c.request(method, format!("{url}{path}"));
            if let Some(t) = tok {
                rb = rb.bearer_auth(t);
            }
            async move {
                let r = rb.send().await.expect("HTTP request");
                let status = r.status().as_u16();
                let remaining = r
                    .headers()
                    .get("remaining-req")
                    .map(|v| v.to_str().unwrap().to_string());
                let v: Value = r.json().await.expect("JSON");
                (status, v, remaining)
            }
        };
        let carol = |n: &str| Some(upbit_token("carol-access-demo", "carol-secret-demo", n));
        // No token at all.
        let (st, v, _) = send(reqwest::Method::GET, "/v1/accounts", None).await;
        assert_eq!(
            (st, v["error"]["name"].as_str()),
            (401, Some("jwt_verification")),
            "{v}"
        );
        // Read: allowed, one of the two requests of the burst left.
        let (st, v, rem) = send(reqwest::Method::GET, "/v1/accounts", carol("n-1")).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v, json!([]), "carol has no balances");
        assert_eq!(rem.as_deref(), Some("group=default; min=1; sec=1"));
        // The same token again: a replay.
        let (st, v, _) = send(reqwest::Method::GET, "/v1/accounts", carol("n-1")).await;
        assert_eq!(
            (st, v["error"]["name"].as_str()),
            (401, Some("nonce_used")),
            "{v}"
        );
        // Trade with a read-only key: out_of_scope (ccxt: PermissionDenied).
        let (st, v, _) = send(reqwest::Method::DELETE, "/v1/orders/open", carol("n-2")).await;
        assert_eq!(
            (st, v["error"]["name"].as_str()),
            (401, Some("out_of_scope")),
            "{v}"
        );
        // Spend the rest of the burst (it refills at one request a second, so a bounded run
        // of requests reaches the limit however slowly they go): 429 with nothing remaining.
        let mut limited = None;
        for i in 0..50 {
            let (st, v, rem) = send(
                reqwest::Method::GET,
                "/v1/accounts",
                carol(&format!("n-burst-{i}")),
            )
            .await;
            if st == 429 {
                limited = Some((v, rem));
                break;
            }
            assert_eq!(st, 200, "{v}");
        }
        let (v, rem) = limited.expect("the account's limit answers 429");
        assert_eq!(
            (v["error"]["name"].as_str(), rem.as_deref()),
            (
                Some("too_many_requests"),
                Some("group=default; min=0; sec=0")
            ),
            "{v}"
        );
        // Another account is not affected; an unknown route under /v1 answers in Upbit's shape.
        let alice = Some(upbit_token("alice-access-demo", "alice-secret-demo", "a-1"));
        let (st, _, _) = send(reqwest::Method::GET, "/v1/accounts", alice).await;
        assert_eq!(st, 200);
        for path in ["/v1/status/wallet", "/v1/", "/v1"] {
            let (st, v, rem) = send(reqwest::Method::GET, path, None).await;
            assert_eq!(
                (st, v["error"]["name"].as_str()),
                (404, Some("not_found")),
                "{path}: {v}"
            );
            assert!(rem.is_none());
        }
        let (st, _, rem) = send(reqwest::Method::GET, "/v1/market/all", None).await;
        assert_eq!(st, 200);
        assert!(rem.unwrap().starts_with("group=market; "));
    });
    let (status, _) = s.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
