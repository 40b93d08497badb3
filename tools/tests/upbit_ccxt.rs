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
use support::Server;

fn python() -> String {
    std::env::var("RINGBOOK_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "RINGBOOK_TEST_PYTHON is not set: it names a Python with ccxt installed. Run the \
             tests through tools/ci/test.sh (the README's test command), which installs and \
             sets it."
        )
    })
}

fn http_url(s: &mut Server) -> String {
    let line = s.wait_line_seen("web edge on http://");
    let rest = line.split("web edge on http://").nth(1).expect("address");
    format!(
        "http://{}",
        rest.split_whitespace().next().expect("an address")
    )
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
    let journal = dir.join("journal");
    let mut s = Server::start(&[
        "serve",
        "--journal",
        journal.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ]);
    let url = http_url(&mut s);
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
