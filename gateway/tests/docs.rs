//! The login-throttling numbers docs/protocol.md and docs/operations.md state are the ones the
//! server runs with by default (the `[gateway]` defaults of the engine's config, which
//! `server::auth` applies: the back-off starts with the failure that reaches
//! `login_failures_free`, see `auth.rs`'s `three_free_failures_then_throttled_then_doubling`).

use ringbook_engine::prelude::Config;
use ringbook_testkit::docs::Doc;

/// 1st, 2nd, 3rd, 4th, …
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[test]
fn the_docs_state_the_default_login_throttling() {
    let gw = Config::default().gateway;
    let free = gw.login_failures_free;
    let first_ms = gw.login_backoff_first_ms;
    let max_ms = gw.login_backoff_max_ms;
    assert_eq!(
        max_ms % 1000,
        0,
        "docs/protocol.md states the maximum in seconds"
    );

    let doc = Doc::new("docs/protocol.md", include_str!("../../docs/protocol.md"));
    doc.assert_says(&format!(
        "each tally allows **{free} failures** (`login_failures_free`); the {} starts a \
             back-off of {first_ms} ms (`login_backoff_first_ms`), doubling per further failure \
             up to {} s (`login_backoff_max_ms`)",
        ordinal(free),
        max_ms / 1000
    ));
    doc.assert_says(&format!(
        "`login_addrs_tracked` ({}) entries",
        gw.login_addrs_tracked
    ));

    let doc = Doc::new(
        "docs/operations.md",
        include_str!("../../docs/operations.md"),
    );
    for line in [
        format!("login_failures_free = {free} "),
        format!("login_backoff_first_ms = {first_ms} "),
        format!("login_backoff_max_ms = {max_ms} "),
        format!("login_addrs_tracked = {} ", gw.login_addrs_tracked),
    ] {
        doc.assert_says(&line);
    }
}

#[test]
fn ordinals() {
    let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 111]
        .map(ordinal)
        .into();
    assert_eq!(
        got,
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "111th"]
    );
}
