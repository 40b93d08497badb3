//! Reference data and capacities, from TOML with an embedded default.
//!
//! Loading validates everything the engine relies on, so a bad file is one clear error at
//! start-up rather than a surprise on the hot path. See docs/configuration.md.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::types::{CurrencyId, Price, SymbolId};

/// The embedded default configuration (currencies KRW, USD, BTC, ETH, AAPL; symbols BTC-KRW,
/// ETH-KRW, AAPL-USD).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// The most price levels one side of one symbol may have (the band's width in ticks).
pub const PRICE_LEVELS_MAX: u64 = 1 << 24;
/// The most live orders the pool may be sized for (indices are `u32` with a sentinel).
pub const ORDERS_MAX: u32 = 1 << 28;
/// The most users.
pub const USERS_MAX: u32 = 1 << 24;
/// The most symbols (ids are `u16`).
pub const SYMBOLS_MAX: usize = 1 << 12;
/// The most currencies (ids are `u16`).
pub const CURRENCIES_MAX: usize = 1 << 12;
/// The largest currency scale (decimal digits of the minimal unit).
pub const CURRENCY_SCALE_MAX: u8 = 18;
/// The most pending withdrawals.
pub const WITHDRAWALS_MAX: u32 = 1 << 20;
/// Fees are basis points; 10 000 bps = 100 %.
pub const FEE_BPS_MAX: u32 = 10_000;

const _: () = assert!(ORDERS_MAX < u32::MAX, "u32::MAX is the pool's null index");
const _: () = assert!(PRICE_LEVELS_MAX <= u32::MAX as u64, "level indices are u32");
const _: () = assert!(SYMBOLS_MAX <= u16::MAX as usize + 1);

/// Pool sizes, fixed at start-up.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Live orders (resting plus untriggered stops) across all symbols. A full pool rejects new
    /// orders with `ORDER_POOL_FULL`.
    pub orders_max: u32,
    /// Users: valid user ids are `0 .. users_max`.
    pub users_max: u32,
    /// Withdrawals awaiting approval at once; more are rejected with `WITHDRAWAL_POOL_FULL`.
    #[serde(default = "default_withdrawals_max")]
    pub withdrawals_max: u32,
    /// Withdrawals one user may have awaiting approval at once (at least 1; above
    /// `withdrawals_max` it is `withdrawals_max`); more are rejected with `WITHDRAWAL_LIMIT`.
    /// So one user cannot fill the pool and stall everyone else's withdrawals.
    #[serde(default = "default_withdrawals_per_user")]
    pub withdrawals_per_user: u32,
    /// Ask the OS for transparent huge pages for the order pool and the client-order-id index
    /// (`madvise`, Linux; ignored where not offered). Only speed depends on it.
    #[serde(default = "default_huge_pages")]
    pub huge_pages: bool,
}

fn default_huge_pages() -> bool {
    true
}

fn default_withdrawals_max() -> u32 {
    1024
}

fn default_withdrawals_per_user() -> u32 {
    16
}

/// Who may approve withdrawals.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// Operator ids: back-office staff, a namespace separate from user ids. A withdrawal needs
    /// approvals from two distinct operators.
    #[serde(default)]
    pub operators: Vec<u32>,
}

/// The gateway's logins and connection limits (optional; only `ringbook serve` reads it). See
/// docs/operations.md. The gateway checks how the limits relate to each other when it starts.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Who may log in, and as which user or operator.
    #[serde(default)]
    pub accounts: Vec<GatewayAccount>,
    /// Connection slots for logged-in sessions.
    #[serde(default = "gw_conns_max")]
    pub conns_max: usize,
    /// Connection slots for connections that have not logged in yet (a separate budget, so
    /// unauthenticated connections can never take a logged-in session's slot).
    #[serde(default = "gw_prelogin_max")]
    pub prelogin_max: usize,
    /// Not-yet-logged-in connections one source address may hold at once.
    #[serde(default = "gw_prelogin_per_addr_max")]
    pub prelogin_per_addr_max: usize,
    /// Time a new connection has to log in, in milliseconds.
    #[serde(default = "gw_login_timeout_ms")]
    pub login_timeout_ms: u64,
    /// Sessions remembered at once (attached or awaiting reconnect).
    #[serde(default = "gw_sessions_max")]
    pub sessions_max: usize,
    /// Sessions one login may hold at once.
    #[serde(default = "gw_sessions_per_account_max")]
    pub sessions_per_account_max: usize,
    /// Failed logins allowed (per account and per address) before logins are throttled.
    #[serde(default = "gw_login_failures_free")]
    pub login_failures_free: u32,
    /// The first login back-off in milliseconds; it doubles per further failure.
    #[serde(default = "gw_login_backoff_first_ms")]
    pub login_backoff_first_ms: u64,
    /// The longest login back-off in milliseconds.
    #[serde(default = "gw_login_backoff_max_ms")]
    pub login_backoff_max_ms: u64,
    /// Source addresses whose failed logins are tracked individually.
    #[serde(default = "gw_login_addrs_tracked")]
    pub login_addrs_tracked: usize,
    /// Sequenced frames each session keeps for retransmission after a reconnect; a session
    /// pauses its reading at half of it (also how far a slow reader may fall behind).
    #[serde(default = "gw_retransmit_msgs")]
    pub retransmit_msgs: usize,
    /// Inbound buffer per connection, in bytes (holds at least one frame).
    #[serde(default = "gw_in_bytes")]
    pub in_bytes: usize,
    /// Outbound buffer per connection, in bytes (holds at least two frames).
    #[serde(default = "gw_out_bytes")]
    pub out_bytes: usize,
    /// Heartbeat interval for a client whose login asks for none, in milliseconds.
    #[serde(default = "gw_heartbeat_default_ms")]
    pub heartbeat_default_ms: u64,
    /// Silence longer than this many heartbeat intervals ends the session.
    #[serde(default = "gw_heartbeat_timeouts")]
    pub heartbeat_timeouts: u32,
    /// Messages per second one connection may send (token bucket; burst: one second's worth).
    #[serde(default = "gw_msgs_per_sec_max")]
    pub msgs_per_sec_max: u64,
    /// How long a connection paused on its outbound backlog may take less than
    /// `slow_consumer_drain_bytes` of its output before it is cut off as a slow consumer, in
    /// milliseconds.
    #[serde(default = "gw_slow_consumer_timeout_ms")]
    pub slow_consumer_timeout_ms: u64,
    /// What such a connection must take of its socket's queued bytes per
    /// `slow_consumer_timeout_ms`, when no write of the gateway's succeeds meanwhile.
    #[serde(default = "gw_slow_consumer_drain_bytes")]
    pub slow_consumer_drain_bytes: usize,
    /// How long shutdown waits for outputs and buffered writes, and a closing connection for
    /// its last frames to be written, in milliseconds.
    #[serde(default = "gw_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// API key pairs for the web edge's Upbit-compatible Open API (docs/upbit-api.md): each
    /// acts for one user login of `accounts`.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
}

fn gw_conns_max() -> usize {
    64
}
fn gw_prelogin_max() -> usize {
    16
}
fn gw_prelogin_per_addr_max() -> usize {
    4
}
fn gw_login_timeout_ms() -> u64 {
    2_000
}
fn gw_sessions_max() -> usize {
    128
}
fn gw_sessions_per_account_max() -> usize {
    16
}
fn gw_login_failures_free() -> u32 {
    3
}
fn gw_login_backoff_first_ms() -> u64 {
    200
}
fn gw_login_backoff_max_ms() -> u64 {
    30_000
}
fn gw_login_addrs_tracked() -> usize {
    1024
}
fn gw_retransmit_msgs() -> usize {
    4096
}
fn gw_in_bytes() -> usize {
    16 << 10
}
fn gw_out_bytes() -> usize {
    256 << 10
}
fn gw_heartbeat_default_ms() -> u64 {
    1_000
}
fn gw_heartbeat_timeouts() -> u32 {
    3
}
fn gw_msgs_per_sec_max() -> u64 {
    2_000_000
}
fn gw_slow_consumer_timeout_ms() -> u64 {
    2_000
}
fn gw_slow_consumer_drain_bytes() -> usize {
    16 << 10
}
fn gw_drain_timeout_ms() -> u64 {
    2_000
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            accounts: Vec::new(),
            conns_max: gw_conns_max(),
            prelogin_max: gw_prelogin_max(),
            prelogin_per_addr_max: gw_prelogin_per_addr_max(),
            login_timeout_ms: gw_login_timeout_ms(),
            sessions_max: gw_sessions_max(),
            sessions_per_account_max: gw_sessions_per_account_max(),
            login_failures_free: gw_login_failures_free(),
            login_backoff_first_ms: gw_login_backoff_first_ms(),
            login_backoff_max_ms: gw_login_backoff_max_ms(),
            login_addrs_tracked: gw_login_addrs_tracked(),
            retransmit_msgs: gw_retransmit_msgs(),
            in_bytes: gw_in_bytes(),
            out_bytes: gw_out_bytes(),
            heartbeat_default_ms: gw_heartbeat_default_ms(),
            heartbeat_timeouts: gw_heartbeat_timeouts(),
            msgs_per_sec_max: gw_msgs_per_sec_max(),
            slow_consumer_timeout_ms: gw_slow_consumer_timeout_ms(),
            slow_consumer_drain_bytes: gw_slow_consumer_drain_bytes(),
            drain_timeout_ms: gw_drain_timeout_ms(),
            api_keys: Vec::new(),
        }
    }
}

/// One API key pair (`[[gateway.api_keys]]`): an access key, its secret (the HS256 key the
/// client signs its JWTs with), the gateway login it acts for (a user login) and what it may do.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The public half, sent in every request's JWT (`access_key`).
    pub access_key: String,
    /// The signing secret; never logged or printed.
    pub secret_key: String,
    /// The login (of `gateway.accounts`, a user login) the key acts for.
    pub account: String,
    /// Any of `read`, `trade`, `withdraw`.
    pub permissions: Vec<String>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("ApiKey")
            .field("access_key", &self.access_key)
            .field("account", &self.account)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// The permissions an API key may hold.
pub const API_KEY_PERMISSIONS: [&str; 3] = ["read", "trade", "withdraw"];
/// The shortest and longest API key secret, in bytes.
pub const API_SECRET_BYTES: std::ops::RangeInclusive<usize> = 8..=256;

/// One gateway login: exactly one of `user`, `operator` or `market_data = true`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayAccount {
    /// Login name (1..=32 bytes of ASCII letters, digits, `-`, `_`, `.`).
    pub login: String,
    /// Credential (1..=32 bytes), compared in constant time by the gateway.
    pub password: String,
    /// The user id this login trades for.
    #[serde(default)]
    pub user: Option<u32>,
    /// The operator id this login acts as (must be listed in `accounts.operators`).
    #[serde(default)]
    pub operator: Option<u32>,
    /// A market-data login: it may subscribe to public market data (and ask for book
    /// snapshots) and nothing else; it sees no private data.
    #[serde(default)]
    pub market_data: bool,
}

impl fmt::Debug for GatewayAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the credential.
        f.debug_struct("GatewayAccount")
            .field("login", &self.login)
            .field("user", &self.user)
            .field("operator", &self.operator)
            .field("market_data", &self.market_data)
            .finish_non_exhaustive()
    }
}

/// The longest currency code or symbol name, in bytes (a fixed-width field of the protocol's
/// reference data).
pub const NAME_BYTES_MAX: usize = 32;

/// The longest gateway login name or password, in bytes (fixed-width fields on the wire).
pub const GATEWAY_CREDENTIAL_BYTES_MAX: usize = 32;

/// One currency.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CurrencyConfig {
    /// Dense id: currencies must be numbered 0, 1, 2, … in file order.
    pub id: u16,
    /// Code, e.g. `KRW`.
    pub code: String,
    /// Decimal digits of the minimal unit (KRW 0, USD 2, BTC 8).
    pub scale: u8,
}

/// One tradable symbol.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SymbolConfig {
    /// Dense id: symbols must be numbered 0, 1, 2, … in file order.
    pub id: u16,
    /// Name, e.g. `BTC-KRW`.
    pub name: String,
    /// Base currency code (what is bought and sold).
    pub base: String,
    /// Quote currency code (what prices and fees are paid in).
    pub quote: String,
    /// Base minimal units per lot.
    pub lot_size: u64,
    /// Quote minimal units per tick, per lot: notional = price × qty × tick_size.
    pub tick_size: u64,
    /// Lowest price accepted, in ticks (≥ 1).
    pub price_min: i64,
    /// Highest price accepted, in ticks.
    pub price_max: i64,
    /// Maker fee in basis points of notional.
    pub maker_fee_bps: u32,
    /// Taker fee in basis points of notional.
    pub taker_fee_bps: u32,
    /// Largest quantity of one order, in lots.
    pub max_order_qty: u64,
}

impl SymbolConfig {
    /// Price levels per side: the band's width in ticks.
    pub fn price_levels(&self) -> u64 {
        (self.price_max - self.price_min) as u64 + 1
    }

    /// True if `price` lies within the band.
    #[inline]
    pub fn in_band(&self, price: Price) -> bool {
        price.0 >= self.price_min && price.0 <= self.price_max
    }
}

/// How the engine treats a new order's client order id (docs/protocol.md, "Idempotency").
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ClientOrderIdRule {
    /// Each user's client order ids must strictly increase: a new order whose id is at or below
    /// the highest id that user has sent (the high-water mark, kept in engine state, snapshots
    /// and replay) is rejected as `DUPLICATE_CLIENT_ORDER_ID`, so a resent order can never be
    /// executed twice, even after a restart. The default.
    #[default]
    Increasing,
    /// Only an id naming one of the user's live orders is refused; a finished order's id may
    /// be used again. For replays of foreign feeds and benchmarks that reuse ids; it does not
    /// protect against resends.
    UniqueLive,
}

/// Engine rules (the `[engine]` section; optional).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// `"increasing"` (default) or `"unique_live"`.
    #[serde(default)]
    pub client_order_ids: ClientOrderIdRule,
    /// Finished orders remembered per user for status queries (0 ..= 64, default 16; 0: none).
    #[serde(default = "default_finished_orders_per_user")]
    pub finished_orders_per_user: u32,
}

/// The most finished orders a user's status window may hold.
pub const FINISHED_ORDERS_PER_USER_MAX: u32 = 64;

fn default_finished_orders_per_user() -> u32 {
    16
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            client_order_ids: ClientOrderIdRule::default(),
            finished_orders_per_user: default_finished_orders_per_user(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pool sizes.
    pub capacity: Capacity,
    /// Currencies, in id order.
    pub currencies: Vec<CurrencyConfig>,
    /// Symbols, in id order.
    pub symbols: Vec<SymbolConfig>,
    /// Operators (withdrawal approval).
    #[serde(default)]
    pub accounts: AccountsConfig,
    /// Engine rules: the client-order-id rule.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Gateway logins (optional).
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Market-data sizes (optional; defaults in the embedded config).
    #[serde(default)]
    pub market_data: MarketDataConfig,
    /// The web edge (HTTP/WebSocket) limits (optional; only `ringbook serve` reads it).
    #[serde(default)]
    pub web: WebConfig,
    /// The trading session (optional): when DAY orders expire.
    #[serde(default)]
    pub schedule: ScheduleConfig,
}

/// The trading session (`[schedule]`; optional). docs/matching.md, "Expiry".
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The daily session end, `"HH:MM"` in UTC: DAY orders expire at the first such time after
    /// their command's engine time. Absent: DAY orders are rejected (`NO_SESSION_END`).
    #[serde(default)]
    pub day_end_utc: Option<String>,
}

/// Nanoseconds in a day.
pub const DAY_NS: u64 = 86_400_000_000_000;

impl ScheduleConfig {
    /// The session end as an offset from midnight UTC, nanoseconds (`None`: not configured).
    /// Validated by [`Config::validate`]: a config that passed it has a well-formed time.
    pub fn day_end_offset_ns(&self) -> Option<u64> {
        self.day_end_utc
            .as_deref()
            .map(|t| parse_hh_mm(t).expect("validated config"))
    }
}

/// `"HH:MM"` (00:00 ..= 23:59) as nanoseconds after midnight.
fn parse_hh_mm(text: &str) -> Result<u64, String> {
    let bad = || format!("schedule.day_end_utc = {text:?} must be \"HH:MM\" (00:00 to 23:59)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h * 60 + m) * 60_000_000_000)
}

/// The web edge's token, queue and rate-limit settings (`[web]`; every key optional). See
/// docs/http-api.md and docs/operations.md.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// HS256 secret for the tokens (at least 32 bytes); a random one per start when absent
    /// (tokens then die with the process).
    pub jwt_secret: Option<String>,
    /// Token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// Requests per second one account may make (token bucket refill).
    pub account_rps: u32,
    /// Burst one account may make (bucket size).
    pub account_burst: u32,
    /// Requests per second one source address may make.
    pub addr_rps: u32,
    /// Burst one source address may make.
    pub addr_burst: u32,
    /// Source addresses with a bucket of their own; beyond, new addresses share one bucket.
    pub addrs_tracked: usize,
    /// Web requests in flight to the gateway at once (the bounded queue into its loop); more
    /// are refused with 503 `WEB_BUSY`.
    pub requests_max: usize,
    /// Events buffered from the gateway loop to the web edge's dispatcher.
    pub events_max: usize,
    /// HTTP connections open at once (WebSocket connections included); more are answered
    /// 503 `TOO_MANY_CONNECTIONS` and closed.
    pub conns_max: usize,
    /// HTTP connections open at once from one source address (WebSocket included).
    pub conns_per_addr: usize,
    /// Milliseconds a connection has to send a request's whole header, counted from its opening
    /// or its previous response; a slower or idle connection is closed.
    pub header_timeout_ms: u64,
    /// Milliseconds a request's body has to arrive whole, counted from its header; a slower one
    /// is answered 408 `BODY_TIMEOUT` and its connection closed.
    pub body_timeout_ms: u64,
    /// Milliseconds a connection may take nothing of what it is sent (a client that does not
    /// read its answers, a WebSocket subscriber that stopped reading) before it is closed.
    pub send_timeout_ms: u64,
    /// WebSocket connections at once.
    pub ws_conns_max: usize,
    /// Messages queued for one WebSocket connection; a private backlog beyond it closes the
    /// connection (`SLOW_CONSUMER`).
    pub ws_queue_max: usize,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            jwt_secret: None,
            token_ttl_secs: 900,
            account_rps: 2_000,
            account_burst: 4_000,
            addr_rps: 5_000,
            addr_burst: 10_000,
            addrs_tracked: 4_096,
            requests_max: 4_096,
            events_max: 1 << 16,
            conns_max: 8_192,
            conns_per_addr: 256,
            header_timeout_ms: 15_000,
            body_timeout_ms: 15_000,
            send_timeout_ms: 30_000,
            ws_conns_max: 1_024,
            ws_queue_max: 1_024,
        }
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("WebConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "…"))
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("account_rps", &self.account_rps)
            .field("account_burst", &self.account_burst)
            .field("addr_rps", &self.addr_rps)
            .field("addr_burst", &self.addr_burst)
            .field("addrs_tracked", &self.addrs_tracked)
            .field("requests_max", &self.requests_max)
            .field("events_max", &self.events_max)
            .field("conns_max", &self.conns_max)
            .field("conns_per_addr", &self.conns_per_addr)
            .field("header_timeout_ms", &self.header_timeout_ms)
            .field("body_timeout_ms", &self.body_timeout_ms)
            .field("send_timeout_ms", &self.send_timeout_ms)
            .field("ws_conns_max", &self.ws_conns_max)
            .field("ws_queue_max", &self.ws_queue_max)
            .finish()
    }
}

/// Sizes of the market-data builder ([`crate::marketdata`], docs/market-data.md): everything it
/// keeps is allocated from these at start-up.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MarketDataConfig {
    /// Trades kept per symbol in the trade tape (a ring: the last `tape_len` trades).
    pub tape_len: u32,
    /// Candles kept per symbol and interval (a ring: the latest `candles_history`).
    pub candles_history: u32,
}

impl Default for MarketDataConfig {
    fn default() -> MarketDataConfig {
        MarketDataConfig {
            tape_len: 1000,
            candles_history: 1000,
        }
    }
}

/// The most trades a tape, or candles an interval's history, may keep.
pub const MARKET_DATA_RING_MAX: u32 = 1 << 20;

/// A configuration that cannot be used; the message names the offending entry and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    Io(String),
    /// The TOML did not parse or did not match the schema.
    Parse(String),
    /// The values are inconsistent or out of range.
    Invalid(String),
    /// The tables the values size need more memory than this process may take
    /// ([`crate::memory::check`]).
    Memory(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io(m) => write!(f, "cannot read config: {m}"),
            ConfigError::Parse(m) => write!(f, "config does not parse: {m}"),
            ConfigError::Invalid(m) => write!(f, "invalid config: {m}"),
            ConfigError::Memory(m) => write!(f, "config does not fit in memory: {m}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Default for Config {
    fn default() -> Config {
        Config::from_toml_str(DEFAULT_CONFIG_TOML).expect("the embedded default config is valid")
    }
}

impl Config {
    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io(format!("{}: {e}", path.display())))?;
        Config::from_toml_str(&text)
    }

    /// Checks every rule in docs/configuration.md.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Some(t) = self.schedule.day_end_utc.as_deref() {
            if let Err(m) = parse_hh_mm(t) {
                return bad(m);
            }
        }
        let cap = &self.capacity;
        if cap.orders_max == 0 || cap.orders_max > ORDERS_MAX {
            return bad(format!(
                "capacity.orders_max = {} must be in 1..={ORDERS_MAX}",
                cap.orders_max
            ));
        }
        if cap.users_max == 0 || cap.users_max > USERS_MAX {
            return bad(format!(
                "capacity.users_max = {} must be in 1..={USERS_MAX}",
                cap.users_max
            ));
        }
        if self.engine.finished_orders_per_user > FINISHED_ORDERS_PER_USER_MAX {
            return bad(format!(
                "engine.finished_orders_per_user = {} must be at most {FINISHED_ORDERS_PER_USER_MAX}",
                self.engine.finished_orders_per_user
            ));
        }
        if cap.withdrawals_per_user == 0 {
            return bad("capacity.withdrawals_per_user must be at least 1".into());
        }
        if cap.withdrawals_max > WITHDRAWALS_MAX {
            return bad(format!(
                "capacity.withdrawals_max = {} must be at most {WITHDRAWALS_MAX}",
                cap.withdrawals_max
            ));
        }
        for (i, op) in self.accounts.operators.iter().enumerate() {
            if self.accounts.operators[..i].contains(op) {
                return bad(format!("accounts.operators lists operator {op} twice"));
            }
        }
        for (i, a) in self.gateway.accounts.iter().enumerate() {
            let ok_name = |t: &str| {
                !t.is_empty()
                    && t.len() <= GATEWAY_CREDENTIAL_BYTES_MAX
                    && t.bytes().all(|b| b.is_ascii_graphic())
            };
            if !ok_name(&a.login)
                || !a
                    .login
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return bad(format!("gateway.accounts[{i}]: login {:?} must be 1..={GATEWAY_CREDENTIAL_BYTES_MAX} ASCII letters, digits, '-', '_' or '.'", a.login));
            }
            if !ok_name(&a.password) {
                return bad(format!("gateway.accounts[{i}] ({:?}): password must be 1..={GATEWAY_CREDENTIAL_BYTES_MAX} printable ASCII bytes", a.login));
            }
            if self.gateway.accounts[..i]
                .iter()
                .any(|o| o.login == a.login)
            {
                return bad(format!(
                    "gateway.accounts: login {:?} is defined twice",
                    a.login
                ));
            }
            match (a.user, a.operator, a.market_data) {
                (Some(u), None, false) if u < cap.users_max => {}
                (None, Some(op), false) if self.accounts.operators.contains(&op) => {}
                (None, None, true) => {}
                _ => return bad(format!("gateway.accounts[{i}] ({:?}): set exactly one of user (below capacity.users_max), operator (listed in accounts.operators) or market_data = true", a.login)),
            }
        }
        for (i, k) in self.gateway.api_keys.iter().enumerate() {
            if k.access_key.is_empty()
                || k.access_key.len() > 128
                || !k.access_key.bytes().all(|b| b.is_ascii_graphic())
            {
                return bad(format!(
                    "gateway.api_keys[{i}]: access_key {:?} must be 1..=128 printable ASCII bytes",
                    k.access_key
                ));
            }
            if self.gateway.api_keys[..i]
                .iter()
                .any(|o| o.access_key == k.access_key)
            {
                return bad(format!(
                    "gateway.api_keys: access_key {:?} is defined twice",
                    k.access_key
                ));
            }
            if !API_SECRET_BYTES.contains(&k.secret_key.len()) {
                return bad(format!(
                    "gateway.api_keys[{i}] ({:?}): secret_key must be {}..={} bytes",
                    k.access_key,
                    API_SECRET_BYTES.start(),
                    API_SECRET_BYTES.end()
                ));
            }
            match self.gateway.accounts.iter().find(|a| a.login == k.account) {
                Some(a) if a.user.is_some() => {}
                _ => return bad(format!("gateway.api_keys[{i}] ({:?}): account {:?} must be a user login of gateway.accounts", k.access_key, k.account)),
            }
            if let Some(p) = k
                .permissions
                .iter()
                .find(|p| !API_KEY_PERMISSIONS.contains(&p.as_str()))
            {
                return bad(format!(
                    "gateway.api_keys[{i}] ({:?}): permission {p:?} is not one of read, trade, withdraw",
                    k.access_key
                ));
            }
        }
        let md = &self.market_data;
        if md.tape_len == 0 || md.tape_len > MARKET_DATA_RING_MAX {
            return bad(format!(
                "market_data.tape_len = {} must be in 1..={MARKET_DATA_RING_MAX}",
                md.tape_len
            ));
        }
        if md.candles_history == 0 || md.candles_history > MARKET_DATA_RING_MAX {
            return bad(format!(
                "market_data.candles_history = {} must be in 1..={MARKET_DATA_RING_MAX}",
                md.candles_history
            ));
        }
        if self.currencies.is_empty() || self.currencies.len() > CURRENCIES_MAX {
            return bad(format!("there must be 1..={CURRENCIES_MAX} currencies"));
        }
        for (i, c) in self.currencies.iter().enumerate() {
            if c.id as usize != i {
                return bad(format!("currency {:?}: id {} but it is entry {i}; ids must be 0, 1, 2, … in file order", c.code, c.id));
            }
            if c.code.is_empty()
                || c.code.len() > NAME_BYTES_MAX
                || !c.code.chars().all(|ch| ch.is_ascii_alphanumeric())
            {
                return bad(format!(
                    "currency {i}: code {:?} must be 1..={NAME_BYTES_MAX} ASCII letters and digits",
                    c.code
                ));
            }
            if self.currencies[..i].iter().any(|o| o.code == c.code) {
                return bad(format!("currency {:?} is defined twice", c.code));
            }
            if c.scale > CURRENCY_SCALE_MAX {
                return bad(format!(
                    "currency {:?}: scale {} exceeds {CURRENCY_SCALE_MAX}",
                    c.code, c.scale
                ));
            }
        }
        if self.symbols.is_empty() || self.symbols.len() > SYMBOLS_MAX {
            return bad(format!("there must be 1..={SYMBOLS_MAX} symbols"));
        }
        for (i, s) in self.symbols.iter().enumerate() {
            let name = &s.name;
            if s.id as usize != i {
                return bad(format!("symbol {name:?}: id {} but it is entry {i}; ids must be 0, 1, 2, … in file order", s.id));
            }
            if name.is_empty() || self.symbols[..i].iter().any(|o| &o.name == name) {
                return bad(format!(
                    "symbol {i}: name {name:?} is empty or defined twice"
                ));
            }
            if name.len() > NAME_BYTES_MAX || !name.chars().all(|ch| ch.is_ascii_graphic()) {
                return bad(format!(
                    "symbol {i}: name {name:?} must be at most {NAME_BYTES_MAX} bytes of printable \
                     ASCII without spaces (the protocol's reference data carries it in 32 bytes)"
                ));
            }
            let (Some(base), Some(quote)) = (self.currency_id(&s.base), self.currency_id(&s.quote))
            else {
                return bad(format!(
                    "symbol {name:?}: base {:?} or quote {:?} is not a configured currency",
                    s.base, s.quote
                ));
            };
            if base == quote {
                return bad(format!(
                    "symbol {name:?}: base and quote are both {:?}",
                    s.base
                ));
            }
            if s.lot_size == 0 || s.tick_size == 0 {
                return bad(format!(
                    "symbol {name:?}: lot_size and tick_size must be at least 1"
                ));
            }
            if s.price_min < 1 || s.price_max < s.price_min {
                return bad(format!(
                    "symbol {name:?}: price band {}..={} must satisfy 1 <= price_min <= price_max",
                    s.price_min, s.price_max
                ));
            }
            if s.price_levels() > PRICE_LEVELS_MAX {
                return bad(format!(
                    "symbol {name:?}: price band of {} ticks exceeds {PRICE_LEVELS_MAX} levels",
                    s.price_levels()
                ));
            }
            if s.maker_fee_bps > FEE_BPS_MAX || s.taker_fee_bps > FEE_BPS_MAX {
                return bad(format!(
                    "symbol {name:?}: fees must be at most {FEE_BPS_MAX} bps"
                ));
            }
            if s.maker_fee_bps > s.taker_fee_bps {
                return bad(format!(
                    "symbol {name:?}: maker_fee_bps {} exceeds taker_fee_bps {}; a buy's lock provides for the taker fee",
                    s.maker_fee_bps, s.taker_fee_bps
                ));
            }
            if s.max_order_qty == 0
                || u128::from(s.max_order_qty) * u128::from(cap.orders_max) > u128::from(u64::MAX)
            {
                return bad(format!(
                    "symbol {name:?}: max_order_qty must be at least 1 and max_order_qty × orders_max must fit in 64 bits (so no level total can overflow)"
                ));
            }
        }
        Ok(())
    }

    /// The id of the currency with this code.
    pub fn currency_id(&self, code: &str) -> Option<CurrencyId> {
        self.currencies
            .iter()
            .position(|c| c.code == code)
            .map(|i| CurrencyId(i as u16))
    }

    /// The id of the symbol with this name.
    pub fn symbol_id(&self, name: &str) -> Option<SymbolId> {
        self.symbols
            .iter()
            .position(|s| s.name == name)
            .map(|i| SymbolId(i as u16))
    }

    /// The symbol with this id.
    pub fn symbol(&self, id: SymbolId) -> Option<&SymbolConfig> {
        self.symbols.get(id.0 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_complete() {
        let c = Config::default();
        let codes: Vec<_> = c.currencies.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["KRW", "USD", "BTC", "ETH", "AAPL"]);
        let names: Vec<_> = c.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["BTC-KRW", "ETH-KRW", "AAPL-USD"]);
        assert_eq!(c.symbol_id("AAPL-USD"), Some(SymbolId(2)));
        assert_eq!(c.currency_id("BTC"), Some(CurrencyId(2)));
        assert_eq!(c.engine.client_order_ids, ClientOrderIdRule::Increasing);
    }

    #[test]
    fn schedule_day_end_is_optional_and_checked() {
        assert_eq!(Config::default().schedule.day_end_offset_ns(), None);
        let with = |t: &str| {
            Config::from_toml_str(&format!(
                "{DEFAULT_CONFIG_TOML}\n[schedule]\nday_end_utc = \"{t}\"\n"
            ))
        };
        assert_eq!(
            with("15:30").unwrap().schedule.day_end_offset_ns(),
            Some((15 * 60 + 30) * 60_000_000_000)
        );
        assert_eq!(with("00:00").unwrap().schedule.day_end_offset_ns(), Some(0));
        for bad in ["24:00", "12:60", "1:30", "12-30", "ab:cd", ""] {
            assert!(
                matches!(with(bad), Err(ConfigError::Invalid(m)) if m.contains("day_end_utc")),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn finished_orders_per_user_defaults_to_16_and_is_bounded() {
        let without = DEFAULT_CONFIG_TOML.replace("finished_orders_per_user = 16", "");
        assert_ne!(without, DEFAULT_CONFIG_TOML);
        let c = Config::from_toml_str(&without).unwrap();
        assert_eq!(c.engine.finished_orders_per_user, 16);
        let none = DEFAULT_CONFIG_TOML.replace(
            "finished_orders_per_user = 16",
            "finished_orders_per_user = 0",
        );
        assert_eq!(
            Config::from_toml_str(&none)
                .unwrap()
                .engine
                .finished_orders_per_user,
            0
        );
        let big = DEFAULT_CONFIG_TOML.replace(
            "finished_orders_per_user = 16",
            "finished_orders_per_user = 65",
        );
        assert!(matches!(
            Config::from_toml_str(&big).and_then(|c| c.validate().map(|()| c)),
            Err(ConfigError::Invalid(m)) if m.contains("finished_orders_per_user")
        ));
    }

    #[test]
    fn client_order_id_rule_parses_and_defaults_to_increasing() {
        let without = DEFAULT_CONFIG_TOML
            .replace("[engine]", "")
            .replace("client_order_ids = \"increasing\"", "")
            .replace("finished_orders_per_user = 16", "");
        assert_ne!(without, DEFAULT_CONFIG_TOML);
        assert_eq!(
            Config::from_toml_str(&without)
                .unwrap()
                .engine
                .client_order_ids,
            ClientOrderIdRule::Increasing
        );
        let live = DEFAULT_CONFIG_TOML.replace(
            "client_order_ids = \"increasing\"",
            "client_order_ids = \"unique_live\"",
        );
        assert_eq!(
            Config::from_toml_str(&live)
                .unwrap()
                .engine
                .client_order_ids,
            ClientOrderIdRule::UniqueLive
        );
        let bad = DEFAULT_CONFIG_TOML.replace(
            "client_order_ids = \"increasing\"",
            "client_order_ids = \"sometimes\"",
        );
        assert!(matches!(
            Config::from_toml_str(&bad),
            Err(ConfigError::Parse(m)) if m.contains("sometimes") || m.contains("unknown variant")
        ));
    }

    #[test]
    fn the_web_section_is_optional_typed_and_never_prints_its_secret() {
        assert_eq!(Config::default().web, WebConfig::default());
        let text = format!(
            "[web]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\ntoken_ttl_secs = 60\n\
             addr_rps = 7\n{DEFAULT_CONFIG_TOML}"
        );
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!((c.web.token_ttl_secs, c.web.addr_rps), (60, 7));
        assert_eq!(c.web.account_rps, WebConfig::default().account_rps);
        assert!(!format!("{:?}", c.web).contains("0123456789abcdef"));
        let bad = format!("[web]\nno_such_key = 1\n{DEFAULT_CONFIG_TOML}");
        assert!(matches!(
            Config::from_toml_str(&bad),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn api_keys_are_validated_and_their_secrets_never_printed() {
        let d = Config::default();
        assert_eq!(d.gateway.api_keys.len(), 4);
        assert_eq!(d.gateway.api_keys[0].access_key, "alice-access-demo");
        let dbg = format!("{:?}", d.gateway.api_keys);
        assert!(
            dbg.contains("bob-access-demo") && !dbg.contains("secret-demo"),
            "{dbg}"
        );
        let with = |key: &str| format!("{DEFAULT_CONFIG_TOML}\n[[gateway.api_keys]]\n{key}\n");
        let ok = with("access_key = \"k\"\nsecret_key = \"12345678\"\naccount = \"dave\"\npermissions = [\"read\"]");
        assert_eq!(
            Config::from_toml_str(&ok).unwrap().gateway.api_keys.len(),
            5
        );
        for (bad, why) in [
            ("access_key = \"alice-access-demo\"\nsecret_key = \"12345678\"\naccount = \"dave\"\npermissions = []", "twice"),
            ("access_key = \"k\"\nsecret_key = \"short\"\naccount = \"dave\"\npermissions = []", "secret_key"),
            ("access_key = \"k\"\nsecret_key = \"12345678\"\naccount = \"nobody\"\npermissions = []", "user login"),
            ("access_key = \"k\"\nsecret_key = \"12345678\"\naccount = \"ops1\"\npermissions = []", "user login"),
            ("access_key = \"k\"\nsecret_key = \"12345678\"\naccount = \"dave\"\npermissions = [\"admin\"]", "permission"),
            ("access_key = \"\"\nsecret_key = \"12345678\"\naccount = \"dave\"\npermissions = []", "access_key"),
        ] {
            match Config::from_toml_str(&with(bad)) {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn gateway_limits_default_and_parse_before_or_after_the_accounts() {
        let d = Config::default();
        assert_eq!(
            GatewayConfig {
                accounts: d.gateway.accounts.clone(),
                api_keys: d.gateway.api_keys.clone(),
                ..GatewayConfig::default()
            },
            d.gateway
        );
        assert_eq!(d.gateway.login_failures_free, 3);
        let before = format!("[gateway]\nprelogin_max = 5\n{DEFAULT_CONFIG_TOML}");
        let after = format!("{DEFAULT_CONFIG_TOML}\n[gateway]\nlogin_timeout_ms = 700\n");
        let before = Config::from_toml_str(&before).unwrap();
        let after = Config::from_toml_str(&after).unwrap();
        assert_eq!(
            (before.gateway.prelogin_max, before.gateway.login_timeout_ms),
            (5, 2_000)
        );
        assert_eq!(
            (after.gateway.prelogin_max, after.gateway.login_timeout_ms),
            (16, 700)
        );
        assert_eq!(after.gateway.accounts, d.gateway.accounts);
        let typo = format!("[gateway]\nprelogin_maxx = 5\n{DEFAULT_CONFIG_TOML}");
        assert!(matches!(
            Config::from_toml_str(&typo),
            Err(ConfigError::Parse(_))
        ));
    }

    fn with(edit: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut c = Config::default();
        edit(&mut c);
        c.validate()
    }

    #[test]
    fn invalid_values_are_named() {
        let err = |r: Result<(), ConfigError>| r.unwrap_err().to_string();
        assert!(err(with(|c| c.capacity.orders_max = 0)).contains("orders_max"));
        assert!(err(with(|c| c.symbols[1].id = 7)).contains("ETH-KRW"));
        assert!(
            err(with(|c| c.symbols[0].quote = "XXX".into())).contains("not a configured currency")
        );
        assert!(err(with(|c| c.symbols[0].quote = "BTC".into())).contains("base and quote"));
        assert!(err(with(|c| c.symbols[2].price_min = 0)).contains("price band"));
        assert!(err(with(|c| c.symbols[2].price_max = 1 << 30)).contains("levels"));
        assert!(err(with(|c| c.symbols[0].tick_size = 0)).contains("tick_size"));
        assert!(err(with(|c| c.symbols[0].taker_fee_bps = 10_001)).contains("fees"));
        assert!(err(with(|c| c.currencies[4].code = "KRW".into())).contains("twice"));
        assert!(err(with(|c| c.currencies[0].scale = 19)).contains("scale"));
        // Names travel in the protocol's 32-byte reference-data fields.
        assert!(err(with(|c| c.currencies[4].code = "K".repeat(33))).contains("1..=32"));
        assert!(err(with(|c| c.symbols[0].name = "B".repeat(33))).contains("at most 32 bytes"));
        assert!(err(with(|c| c.symbols[0].name = "BTC KRW".into())).contains("printable"));
        assert!(with(|c| c.symbols[0].name = "B".repeat(32)).is_ok());
        assert!(err(with(|c| c.symbols[0].maker_fee_bps = 11)).contains("maker_fee_bps"));
        assert!(err(with(|c| c.accounts.operators = vec![1, 2, 1])).contains("twice"));
        assert!(
            err(with(|c| c.symbols[0].max_order_qty = u64::MAX / 1000)).contains("max_order_qty")
        );
        assert!(err(with(|c| c.capacity.withdrawals_max = u32::MAX)).contains("withdrawals_max"));
        assert!(err(with(|c| c.capacity.withdrawals_per_user = 0)).contains("withdrawals_per_user"));
        assert!(err(with(|c| c.market_data.tape_len = 0)).contains("market_data.tape_len"));
        assert!(err(with(|c| c.market_data.candles_history = 1 << 21))
            .contains("market_data.candles_history"));
    }

    #[test]
    fn parse_errors_are_reported() {
        assert!(matches!(
            Config::from_toml_str("capacity = 3"),
            Err(ConfigError::Parse(_))
        ));
        let unknown_field = DEFAULT_CONFIG_TOML.replace("users_max", "users_maxx");
        assert!(matches!(
            Config::from_toml_str(&unknown_field),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            Config::load(Path::new("/nonexistent/ringbook.toml")),
            Err(ConfigError::Io(_))
        ));
    }
}
