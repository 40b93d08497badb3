//! How much memory a configuration's fixed tables take, and whether this machine has it.
//!
//! Everything the engine and the market-data builder keep is allocated when they are built,
//! sized from the configuration (`[capacity]`, the symbols' price bands, `[market_data]`), and
//! written there, so it is resident from the start. A configuration at the documented maxima
//! needs tens of GiB (`capacity.orders_max = 2^28` alone is ~35 GiB for the engine): built on a
//! machine without it, the allocation fails and the process aborts, or the kernel kills it as
//! it fills the tables. [`check`] refuses such a configuration first, with one line that says what it needs,
//! what is available and which setting takes the most.
//!
//! [`Footprint::of`] adds up the same sizes the constructors allocate (each table's `bytes_for`
//! sits beside its constructor); `engine/tests/memory.rs` measures the constructors with a
//! counting allocator and holds the two to within a few percent.

use std::fmt;

use crate::config::{Config, ConfigError};
use crate::marketdata::MarketData;
use crate::matching::Matcher;
use crate::risk::accounts::Accounts;

/// The bytes a configuration's tables take, by what sizes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// The engine's tables per order slot (`capacity.orders_max`, rounded up to a power of
    /// two): the order pool, the client-order-id index, the per-order notionals and the expiry
    /// queue.
    pub engine_orders: u64,
    /// The engine's tables per user (`capacity.users_max`): balances (one per currency),
    /// finished-order windows, order lists, client-order-id marks; and pending withdrawals.
    pub engine_users: u64,
    /// The engine's price levels: four sides (bids, asks, two of stops) per symbol, a level per
    /// tick of its band.
    pub engine_levels: u64,
    /// The market-data builder's per-order records (`capacity.orders_max`).
    pub market_data_orders: u64,
    /// The market-data builder's per-symbol tables: two sides of levels per band, the trade
    /// tape and the candle histories (`[market_data]`).
    pub market_data_symbols: u64,
}

impl Footprint {
    /// The footprint of a validated configuration.
    pub fn of(config: &Config) -> Footprint {
        let (engine_orders, matcher_users, engine_levels) = Matcher::bytes_for(config);
        let cap = &config.capacity;
        let accounts =
            Accounts::bytes_for(cap.users_max, config.currencies.len(), cap.withdrawals_max);
        let (market_data_orders, market_data_symbols) = MarketData::bytes_for(config);
        Footprint {
            engine_orders,
            engine_users: matcher_users + accounts,
            engine_levels,
            market_data_orders,
            market_data_symbols,
        }
    }

    /// One engine's tables.
    pub fn engine(&self) -> u64 {
        self.engine_orders + self.engine_users + self.engine_levels
    }

    /// One market-data builder's tables.
    pub fn market_data(&self) -> u64 {
        self.market_data_orders + self.market_data_symbols
    }

    /// `engines` engines and `market_data` builders.
    pub fn total(&self, engines: u64, market_data: u64) -> u64 {
        self.engine()
            .saturating_mul(engines)
            .saturating_add(self.market_data().saturating_mul(market_data))
    }
}

/// The memory this process may still take, and what limits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// What bounds it (the tightest of the limits read).
    pub limit: &'static str,
}

/// The memory this process may still take: the least of the machine's available memory and
/// swap (`MemAvailable + SwapFree`, /proc/meminfo), the room left under its cgroup's
/// `memory.max` (cgroup v2), and the room left under its address-space limit (`ulimit -v`).
/// `None` where none of them can be read (not Linux).
pub fn available() -> Option<Available> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mut best: Option<Available> = None;
    let mut offer = |bytes: Option<u64>, limit: &'static str| {
        if let Some(bytes) = bytes {
            if best.is_none_or(|b| bytes < b.bytes) {
                best = Some(Available { bytes, limit });
            }
        }
    };
    offer(
        read("/proc/meminfo").and_then(|m| meminfo_available(&m)),
        "MemAvailable + SwapFree in /proc/meminfo",
    );
    offer(
        read("/proc/self/cgroup")
            .and_then(|c| cgroup_path(&c))
            .and_then(|dir| {
                let max = read(&format!("/sys/fs/cgroup{dir}/memory.max"))?;
                let current = read(&format!("/sys/fs/cgroup{dir}/memory.current"))?;
                let stat = read(&format!("/sys/fs/cgroup{dir}/memory.stat")).unwrap_or_default();
                cgroup_room(&max, &current, &stat)
            }),
        "the cgroup's memory.max",
    );
    offer(
        read("/proc/self/limits").and_then(|l| {
            let limit = address_space_limit(&l)?;
            let used = read("/proc/self/status").and_then(|s| status_kib(&s, "VmSize:"))?;
            Some(limit.saturating_sub(used * 1024))
        }),
        "the address-space limit (ulimit -v)",
    );
    best
}

/// What a process builds from one configuration: engines, market-data builders, and any other
/// buffers it sizes from it (named, e.g. a server's connection buffers).
#[derive(Clone, Debug, Default)]
pub struct Copies {
    /// Engines.
    pub engines: u64,
    /// Market-data builders.
    pub market_data: u64,
    /// Other buffers: (bytes, what sizes them).
    pub others: Vec<(u64, String)>,
}

impl Copies {
    /// One engine and nothing else (what [`crate::Engine::new`] checks).
    pub fn engine() -> Copies {
        Copies {
            engines: 1,
            ..Copies::default()
        }
    }

    /// The bytes all of it takes.
    pub fn bytes(&self, footprint: &Footprint) -> u64 {
        self.others
            .iter()
            .fold(footprint.total(self.engines, self.market_data), |sum, o| {
                sum.saturating_add(o.0)
            })
    }
}

/// Refuses a validated configuration whose tables, as many `copies` of them as a process
/// builds, need more memory than this process may take ([`available`]). Where that cannot be
/// read, nothing is refused.
pub fn check(config: &Config, copies: &Copies) -> Result<Footprint, ConfigError> {
    let footprint = Footprint::of(config);
    if let Some(available) = available() {
        fits(config, &footprint, copies, available)?;
    }
    Ok(footprint)
}

/// [`check`] against a given availability.
pub fn fits(
    config: &Config,
    footprint: &Footprint,
    copies: &Copies,
    available: Available,
) -> Result<(), ConfigError> {
    let need = copies.bytes(footprint);
    if need <= available.bytes {
        return Ok(());
    }
    let (engines, market_data) = (copies.engines, copies.market_data);
    let cap = &config.capacity;
    // Saturating, as `Footprint::total` is: `copies` may say anything.
    let times = |bytes: u64, n: u64| bytes.saturating_mul(n);
    let orders = times(footprint.engine_orders, engines)
        .saturating_add(times(footprint.market_data_orders, market_data));
    let users = times(footprint.engine_users, engines);
    let levels = times(footprint.engine_levels, engines)
        .saturating_add(times(footprint.market_data_symbols, market_data));
    let widest = config
        .symbols
        .iter()
        .max_by_key(|s| s.price_levels())
        .map(|s| format!("{} ({} ticks)", s.name, s.price_levels()))
        .unwrap_or_default();
    let parts = [
        (orders, format!("capacity.orders_max = {}", cap.orders_max)),
        (
            users,
            format!(
                "capacity.users_max = {} (× {} currencies)",
                cap.users_max,
                config.currencies.len()
            ),
        ),
        (
            levels,
            format!(
                "the price bands of {} symbol(s) (the widest: {widest})",
                config.symbols.len()
            ),
        ),
    ];
    let (most, what) = parts
        .iter()
        .chain(&copies.others)
        .max_by_key(|p| p.0)
        .map(|(b, w)| (*b, w.as_str()))
        .expect("three parts");
    let tables = match (engines, market_data, copies.others.len()) {
        (1, 0, 0) => "the engine's tables".to_string(),
        (e, m, 0) => format!("the tables of {e} engine(s) and {m} market-data builder(s)"),
        (e, m, _) => {
            format!("the tables of {e} engine(s) and {m} market-data builder(s), and the buffers")
        }
    };
    Err(ConfigError::Memory(format!(
        "{tables} need {} but this process may take {} ({}); {} of it is for {what}",
        Bytes(need),
        Bytes(available.bytes),
        available.limit,
        Bytes(most),
    )))
}

/// A byte count as GiB or MiB with one decimal.
#[derive(Clone, Copy, Debug)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: f64 = (1u64 << 20) as f64;
        let b = self.0 as f64;
        if b >= 1024.0 * MIB {
            write!(f, "{:.1} GiB", b / (1024.0 * MIB))
        } else {
            write!(f, "{:.1} MiB", b / MIB)
        }
    }
}

/// `MemAvailable + SwapFree` from /proc/meminfo's text, in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    let available = status_kib(meminfo, "MemAvailable:")?;
    let swap = status_kib(meminfo, "SwapFree:").unwrap_or(0);
    Some((available + swap) * 1024)
}

/// A `Key:   N kB` line's N.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The cgroup v2 path of this process (`0::/PATH` in /proc/self/cgroup).
fn cgroup_path(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(path.trim_end_matches('/').to_string())
}

/// The room under a cgroup's `memory.max` (`max`: none) given its `memory.current`, less the
/// page cache it holds (`file` in `memory.stat`: the kernel reclaims it on demand — `serve`
/// reads the whole journal before it builds its engine).
fn cgroup_room(max: &str, current: &str, stat: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    let file: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("file "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Some(max.saturating_sub(current.saturating_sub(file)))
}

/// The soft address-space limit from /proc/self/limits (`unlimited`: none).
fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft = line
        .strip_prefix("Max address space")?
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_read_from_their_files() {
        let meminfo =
            "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n\
                       SwapTotal: 0 kB\nSwapFree:        1000 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(20_001_000 * 1024));
        assert_eq!(
            status_kib("Name:\tx\nVmSize:\t  123456 kB\n", "VmSize:"),
            Some(123_456)
        );
        assert_eq!(
            cgroup_path("0::/user.slice/a.scope\n"),
            Some("/user.slice/a.scope".into())
        );
        assert_eq!(cgroup_path("0::/\n"), Some(String::new()));
        assert_eq!(cgroup_path("12:memory:/x\n"), None, "cgroup v1 is not read");
        assert_eq!(cgroup_room("max\n", "100\n", ""), None);
        assert_eq!(cgroup_room("1000\n", "300\n", ""), Some(700));
        let stat = "anon 100\nfile 150\nkernel 50\n";
        assert_eq!(cgroup_room("1000\n", "300\n", stat), Some(850));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max data size             unlimited            unlimited            bytes     \n\
                      Max address space         4294967296           unlimited            bytes     \n";
        assert_eq!(address_space_limit(limits), Some(1 << 32));
        let unlimited = limits.replace("4294967296          ", "unlimited           ");
        assert_eq!(address_space_limit(&unlimited), None);
    }

    #[test]
    fn a_configuration_that_does_not_fit_is_refused_naming_what_takes_the_most() {
        let mut config = Config::default();
        config.capacity.orders_max = 1 << 28;
        config.validate().unwrap();
        let f = Footprint::of(&config);
        assert!(f.engine_orders > 16 << 30, "{f:?}");
        let room = |bytes| Available {
            bytes,
            limit: "test",
        };
        let one = Copies::engine();
        let err = fits(&config, &f, &one, room(8 << 30))
            .unwrap_err()
            .to_string();
        assert!(err.contains("capacity.orders_max = 268435456"), "{err}");
        assert!(err.contains("8.0 GiB (test)"), "{err}");
        assert!(fits(&config, &f, &one, room(f.engine())).is_ok());
        let with_md = Copies {
            market_data: 1,
            ..Copies::engine()
        };
        assert!(fits(&config, &f, &with_md, room(f.engine())).is_err());
        // Another part that takes more is the one named.
        let buffers = Copies {
            others: vec![(1 << 40, "the buffers".into())],
            ..Copies::engine()
        };
        let err = fits(&config, &f, &buffers, room(8 << 30))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1024.0 GiB of it is for the buffers"), "{err}");
        // Any number of copies: refused, never an overflow (a red-team finding).
        let hostile = Copies {
            engines: 1 << 40,
            market_data: u64::MAX,
            others: vec![(u64::MAX, "more".into())],
        };
        assert!(fits(&config, &f, &hostile, room(8 << 30)).is_err());
        // The embedded default fits in a few hundred MiB, engine and market data together.
        let small = Footprint::of(&Config::default());
        assert!(small.total(1, 1) < 512 << 20, "{small:?}");
    }
}
