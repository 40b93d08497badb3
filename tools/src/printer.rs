//! The JSON-lines printer shared by `ringbook scenario` (its events and `--final` lines, docs/overview.md §9)
//! and `ringbook journal replay` (the same final-state lines): one place, so both print the
//! same bytes for the same state. The line formats are documented in scenario.rs.

use std::fmt::Write as _;
use std::io::{self, Write};

use ringbook_engine::book::OrderView;
use ringbook_engine::marketdata::{Candle, Interval, MarketData, MdMessage, Ticker};
use ringbook_engine::prelude::*;

/// Formats events as JSON lines into a buffered writer, keeping the first write error.
pub(crate) struct Printer<W: Write> {
    out: W,
    /// Each configured symbol's name as a JSON string literal, by id.
    names: Vec<String>,
    /// Each configured currency's code as a JSON string literal, by id.
    codes: Vec<String>,
    line: String,
    error: Option<io::Error>,
    /// With `--market-data`: the builder fed with every event, its messages printed.
    md: Option<Box<MarketData>>,
}

impl<W: Write> Printer<W> {
    pub(crate) fn new(out: W, config: &Config) -> Printer<W> {
        Printer {
            out,
            names: config
                .symbols
                .iter()
                .map(|s| json_string(&s.name))
                .collect(),
            codes: config
                .currencies
                .iter()
                .map(|c| json_string(&c.code))
                .collect(),
            line: String::with_capacity(512),
            error: None,
            md: None,
        }
    }

    /// Also prints market data: every event feeds a builder, whose trades and depth updates
    /// are printed as they come (`md_trade` right after its `trade`, `md_depth` after the
    /// command's events); `final_state` then starts with every candle and the tickers.
    pub(crate) fn with_market_data(mut self, config: &Config) -> Printer<W> {
        self.md = Some(Box::new(MarketData::new(config)));
        self
    }

    /// The end of a command stamped `ts_ns`: its market-data depth updates (with
    /// `--market-data`; nothing otherwise).
    pub(crate) fn command_done(&mut self, ts_ns: u64) {
        if let Some(mut md) = self.md.take() {
            md.end_command(ts_ns, &mut |m| self.md_message(m));
            self.md = Some(md);
        }
    }

    /// Feeds an event to the market-data builder without printing the event itself.
    pub(crate) fn market_data_event(&mut self, e: &Event) {
        if let Some(mut md) = self.md.take() {
            md.apply(e, &mut |m| self.md_message(m));
            self.md = Some(md);
        }
    }

    /// Writes `text` as it is.
    pub(crate) fn raw(&mut self, text: &str) {
        self.write(text);
    }

    fn md_message(&mut self, m: MdMessage<'_>) {
        let mut l = std::mem::take(&mut self.line);
        l.clear();
        let name = match m {
            MdMessage::Trade(t) => t.symbol,
            MdMessage::Depth(d) => d.symbol,
        };
        md_line(&mut l, &self.symbol(name), m);
        l.push('\n');
        self.write(&l);
        self.line = l;
    }

    /// With `--market-data`: every symbol's candles (interval by interval, oldest first), then
    /// every symbol's 24h ticker.
    fn market_data_final(&mut self) {
        let Some(md) = self.md.take() else { return };
        let mut l = std::mem::take(&mut self.line);
        for s in 0..md.symbols() {
            let id = SymbolId(s as u16);
            for interval in Interval::ALL {
                md.candles(id, interval, usize::MAX, |c| {
                    l.clear();
                    candle_line(&mut l, &self.names[s], interval, c, md.tick_size(id));
                    l.push('\n');
                    self.write(&l);
                });
            }
        }
        for s in 0..md.symbols() {
            l.clear();
            ticker_line(&mut l, &self.names[s], &md.ticker(SymbolId(s as u16)));
            l.push('\n');
            self.write(&l);
        }
        self.line = l;
        self.md = Some(md);
    }

    /// The symbol's name as a JSON string (its id as a string if it is not configured, which
    /// the engine never reports).
    fn symbol(&self, id: SymbolId) -> String {
        match self.names.get(id.0 as usize) {
            Some(name) => name.clone(),
            None => format!("\"{}\"", id.0),
        }
    }

    /// The currency's code as a JSON string (its id as a string if it is not configured,
    /// which the engine never reports).
    fn currency(&self, id: CurrencyId) -> String {
        match self.codes.get(id.0 as usize) {
            Some(code) => code.clone(),
            None => format!("\"{}\"", id.0),
        }
    }

    pub(crate) fn event(&mut self, e: &Event) {
        self.event_line(e);
        self.market_data_event(e);
    }

    fn event_line(&mut self, e: &Event) {
        let mut l = std::mem::take(&mut self.line);
        l.clear();
        // Writing to a String cannot fail.
        let _ = match *e {
            Event::Accepted {
                user,
                symbol,
                client_order_id,
                order_id,
                side,
                order_type,
                price,
                qty,
                ..
            } => write!(
                l,
                r#"{{"event":"accepted","user":{user},"symbol":{},"client_order_id":{client_order_id},"order_id":{order_id},"side":"{}","type":"{}","price":{price},"qty":{qty}}}"#,
                self.symbol(symbol),
                side.name(),
                order_type.name(),
            ),
            Event::Rejected {
                user,
                client_order_id,
                code,
            } => write!(
                l,
                r#"{{"event":"rejected","user":{user},"client_order_id":{client_order_id},"code":{},"reason":"{}"}}"#,
                code.code(),
                code.name(),
            ),
            Event::Trade(ref t) => write!(
                l,
                r#"{{"event":"trade","symbol":{},"trade_id":{},"ts":{},"price":{},"qty":{},"maker_user":{},"maker_client_order_id":{},"taker_user":{},"taker_client_order_id":{},"maker_fee":{},"taker_fee":{},"maker_order_id":{},"taker_order_id":{},"taker_side":"{}","maker_leaves":{},"taker_leaves":{}}}"#,
                self.symbol(t.symbol),
                t.trade_id,
                t.ts,
                t.price,
                t.qty,
                t.maker.user,
                t.maker.client_order_id,
                t.taker.user,
                t.taker.client_order_id,
                t.maker.fee,
                t.taker.fee,
                t.maker.order_id,
                t.taker.order_id,
                t.taker_side.name(),
                t.maker.leaves_qty,
                t.taker.leaves_qty,
            ),
            Event::Cancelled {
                user,
                symbol,
                client_order_id,
                order_id,
                // Settlement's business (the refund's size), not part of the line.
                side: _,
                price: _,
                qty,
                leaves_qty,
                reason,
            } => write!(
                l,
                r#"{{"event":"cancelled","user":{user},"client_order_id":{client_order_id},"qty":{qty},"reason":"{}","symbol":{},"order_id":{order_id},"leaves":{leaves_qty}}}"#,
                reason.name(),
                self.symbol(symbol),
            ),
            Event::Amended {
                user,
                symbol,
                client_order_id,
                order_id,
                price,
                qty,
                ..
            } => write!(
                l,
                r#"{{"event":"amended","user":{user},"client_order_id":{client_order_id},"price":{price},"qty":{qty},"symbol":{},"order_id":{order_id}}}"#,
                self.symbol(symbol),
            ),
            Event::Triggered {
                user,
                symbol,
                client_order_id,
                order_id,
            } => write!(
                l,
                r#"{{"event":"triggered","user":{user},"client_order_id":{client_order_id},"symbol":{},"order_id":{order_id}}}"#,
                self.symbol(symbol),
            ),
            Event::MassCancelled {
                user,
                symbol,
                count,
            } => write!(
                l,
                r#"{{"event":"mass_cancelled","user":{user},"symbol":{},"count":{count}}}"#,
                symbol.map_or_else(|| "null".to_string(), |s| self.symbol(s)),
            ),
            Event::Deposited {
                user,
                currency,
                amount,
            } => write!(
                l,
                r#"{{"event":"deposited","user":{user},"currency":{},"amount":{amount}}}"#,
                self.currency(currency),
            ),
            Event::WithdrawalRequested {
                withdrawal_id,
                user,
                currency,
                amount,
            } => write!(
                l,
                r#"{{"event":"withdrawal_requested","withdrawal_id":{withdrawal_id},"user":{user},"currency":{},"amount":{amount}}}"#,
                self.currency(currency),
            ),
            Event::WithdrawalApproved {
                withdrawal_id,
                operator,
                user,
                approvals,
            } => write!(
                l,
                r#"{{"event":"withdrawal_approved","withdrawal_id":{withdrawal_id},"operator":{operator},"user":{user},"approvals":{approvals}}}"#,
            ),
            Event::WithdrawalCompleted {
                withdrawal_id,
                user,
                currency,
                amount,
            } => write!(
                l,
                r#"{{"event":"withdrawal_completed","withdrawal_id":{withdrawal_id},"user":{user},"currency":{},"amount":{amount}}}"#,
                self.currency(currency),
            ),
            Event::WithdrawalRejected {
                withdrawal_id,
                operator,
                user,
            } => write!(
                l,
                r#"{{"event":"withdrawal_rejected","withdrawal_id":{withdrawal_id},"operator":{operator},"user":{user}}}"#,
            ),
            Event::OperatorRejected {
                operator,
                withdrawal_id,
                code,
            } => write!(
                l,
                r#"{{"event":"rejected","operator":{operator},"withdrawal_id":{withdrawal_id},"code":{},"reason":"{}"}}"#,
                code.code(),
                code.name(),
            ),
            Event::BalanceUpdate {
                user,
                currency,
                available,
                locked,
            } => write!(
                l,
                r#"{{"event":"balance_update","user":{user},"currency":{},"available":{available},"locked":{locked}}}"#,
                self.currency(currency),
            ),
            Event::OrderStatus {
                user,
                client_order_id,
                order: None,
                finished: None,
                ..
            } => write!(
                l,
                r#"{{"event":"order_status","user":{user},"client_order_id":{client_order_id},"found":false}}"#,
            ),
            Event::OrderStatus {
                order: Some(o),
                filled_notional,
                ..
            } => {
                let status = OrderStatus::of_live(o.filled_qty);
                let _ = write!(
                    l,
                    r#"{{"event":"order_status","found":true,"status":"{}","filled_notional":{filled_notional},"#,
                    status.name()
                );
                self.order_fields(&mut l, &o)
            }
            Event::OrderStatus {
                user,
                finished: Some(f),
                ..
            } => {
                let _ = write!(
                    l,
                    r#"{{"event":"order_status","found":true,"status":"{}","#,
                    f.status.name()
                );
                match f.status {
                    OrderStatus::Cancelled(reason) => {
                        let _ = write!(l, r#""reason":"{}","#, reason.name());
                    }
                    OrderStatus::Rejected(code) => {
                        let _ = write!(l, r#""code":{},"reason":"{}","#, code.code(), code.name());
                    }
                    _ => {}
                }
                write!(
                    l,
                    r#""user":{user},"symbol":{},"client_order_id":{},"order_id":{},"side":"{}","type":"{}","price":{},"filled_qty":{},"filled_notional":{},"ts":{}}}"#,
                    self.symbol(f.symbol),
                    f.client_order_id,
                    f.order_id,
                    f.side.name(),
                    f.order_type.name(),
                    f.price,
                    f.filled_qty,
                    f.filled_notional,
                    f.ts,
                )
            }
            Event::OpenOrder(o) => {
                l.push_str(r#"{"event":"open_order","#);
                self.order_fields(&mut l, &o)
            }
            Event::OpenOrdersEnd { user, count } => write!(
                l,
                r#"{{"event":"open_orders_end","user":{user},"count":{count}}}"#,
            ),
            Event::Balance {
                user,
                currency,
                available,
                locked,
            } => write!(
                l,
                r#"{{"event":"balance","user":{user},"currency":{},"available":{available},"locked":{locked}}}"#,
                self.currency(currency),
            ),
            Event::BalancesEnd { user, count } => write!(
                l,
                r#"{{"event":"balances_end","user":{user},"count":{count}}}"#,
            ),
            Event::BookLevel {
                symbol,
                side,
                price,
                qty,
            } => write!(
                l,
                r#"{{"event":"book_level","symbol":{},"side":"{}","price":{price},"qty":{qty}}}"#,
                self.symbol(symbol),
                side.name(),
            ),
            Event::BookEnd {
                symbol,
                bid_levels,
                ask_levels,
            } => write!(
                l,
                r#"{{"event":"book_end","symbol":{},"bid_levels":{bid_levels},"ask_levels":{ask_levels}}}"#,
                self.symbol(symbol),
            ),
        };
        l.push('\n');
        self.write(&l);
        self.line = l;
    }

    /// The fields of a live order (query replies), closing the JSON object.
    fn order_fields(&self, l: &mut String, o: &OrderView) -> std::fmt::Result {
        write!(
            l,
            r#""user":{},"symbol":{},"client_order_id":{},"order_id":{},"side":"{}","type":"{}","tif":"{}","price":{},"stop_price":{},"leaves_qty":{},"visible_qty":{},"filled_qty":{},"display_qty":{},"post_only":{},"stp":"{}"}}"#,
            o.user,
            self.symbol(o.symbol),
            o.client_order_id,
            o.order_id,
            o.side.name(),
            o.order_type.name(),
            o.tif.name(),
            o.price,
            o.stop_price,
            o.leaves_qty,
            o.visible_qty,
            o.filled_qty,
            o.display_qty,
            o.post_only,
            o.stp.name(),
        )?;
        if o.tif.expires() {
            // GTD and DAY orders: when they expire (Unix nanoseconds), before the closing brace.
            l.pop();
            write!(l, r#","expire_at":{}}}"#, o.expire_at)?;
        }
        Ok(())
    }

    /// The `--final` lines: every book; with risk on every open account's balances and the
    /// collected fees; then the state hash.
    pub(crate) fn final_state(&mut self, engine: &Engine) {
        self.market_data_final();
        let mut l = std::mem::take(&mut self.line);
        for s in 0..self.names.len() {
            let id = SymbolId(s as u16);
            l.clear();
            l.push_str(r#"{"event":"book","symbol":"#);
            l.push_str(&self.names[s]);
            for (key, side) in [(r#","bids":["#, Side::Buy), (r#"],"asks":["#, Side::Sell)] {
                l.push_str(key);
                let mut first = true;
                engine.depth(id, side, usize::MAX, |price, qty| {
                    let comma = if first { "" } else { "," };
                    first = false;
                    let _ = write!(l, "{comma}[{price},{qty}]");
                });
            }
            l.push_str("]}\n");
            self.write(&l);
        }
        if engine.risk_mode() == RiskMode::On {
            let accounts = engine.accounts();
            let currencies = (0..self.codes.len()).map(|c| CurrencyId(c as u16));
            for user in accounts.open_users() {
                for currency in currencies.clone() {
                    let b = engine.balance(user, currency);
                    l.clear();
                    let _ = writeln!(
                        l,
                        r#"{{"event":"balance","user":{user},"currency":{},"available":{},"locked":{}}}"#,
                        self.codes[currency.0 as usize], b.available, b.locked,
                    );
                    self.write(&l);
                }
            }
            for currency in currencies {
                l.clear();
                let _ = writeln!(
                    l,
                    r#"{{"event":"fees","currency":{},"collected":{}}}"#,
                    self.codes[currency.0 as usize],
                    accounts.fees(currency),
                );
                self.write(&l);
            }
        }
        l.clear();
        let _ = writeln!(
            l,
            r#"{{"event":"state_hash","hash":"{}"}}"#,
            engine.state_hash()
        );
        self.write(&l);
        self.line = l;
    }

    fn write(&mut self, text: &str) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(text.as_bytes()) {
                self.error = Some(e);
            }
        }
    }

    /// The first write error, if output has failed (taken: asked once).
    pub(crate) fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Flushes the output, or returns the first write error.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

/// A market-data message as one JSON object (no newline); `symbol` is the symbol's name as a
/// JSON string.
pub(crate) fn md_line(l: &mut String, symbol: &str, m: MdMessage<'_>) {
    // Writing to a String cannot fail.
    let _ = match m {
        MdMessage::Trade(t) => write!(
            l,
            r#"{{"event":"md_trade","symbol":{symbol},"trade_id":{},"ts":{},"price":{},"qty":{},"taker_side":"{}","md_seq":{}}}"#,
            t.trade_id,
            t.ts,
            t.price,
            t.qty,
            t.taker_side.name(),
            t.md_seq,
        ),
        MdMessage::Depth(d) => {
            let _ = write!(
                l,
                r#"{{"event":"md_depth","symbol":{symbol},"md_seq":{},"ts":{}"#,
                d.md_seq, d.ts
            );
            for (key, side) in [(r#","bids":["#, Side::Buy), (r#"],"asks":["#, Side::Sell)] {
                l.push_str(key);
                let mut first = true;
                for c in d.changes.iter().filter(|c| c.side == side) {
                    let comma = if first { "" } else { "," };
                    first = false;
                    let _ = write!(l, "{comma}[{},{},{}]", c.price, c.qty, c.count);
                }
            }
            write!(l, r#"],"trades":{}}}"#, d.trades)
        }
    };
}

/// A candle as one JSON object (no newline).
pub(crate) fn candle_line(l: &mut String, symbol: &str, interval: Interval, c: &Candle, tick: u64) {
    let _ = write!(
        l,
        r#"{{"event":"md_candle","symbol":{symbol},"interval":"{}","open_time":{},"open":{},"high":{},"low":{},"close":{},"volume":{},"quote_volume":{},"trades":{}}}"#,
        interval.name(),
        c.open_time,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume,
        c.quote_volume(tick),
        c.trades,
    );
}

/// A 24h ticker as one JSON object (no newline): prices are integers or `null` (no trade),
/// `change_pct` and `vwap` decimal strings (`vwap` `null` without volume).
pub(crate) fn ticker_line(l: &mut String, symbol: &str, t: &Ticker) {
    let price = |p: Option<Price>| p.map_or_else(|| "null".to_string(), |p| p.to_string());
    let level = |b: Option<(Price, Qty)>| {
        b.map_or_else(|| "null".to_string(), |(p, q)| format!("[{p},{q}]"))
    };
    let _ = write!(
        l,
        r#"{{"event":"md_ticker","symbol":{symbol},"open_time":{},"close_time":{},"open":{},"high":{},"low":{},"last":{},"change":{},"change_pct":"{}","volume":{},"quote_volume":{},"vwap":{},"trades":{},"best_bid":{},"best_ask":{}}}"#,
        t.open_time,
        t.close_time,
        price(t.open),
        price(t.high),
        price(t.low),
        price(t.last),
        t.change(),
        t.change_pct(),
        t.volume,
        t.quote_volume,
        t.vwap()
            .map_or_else(|| "null".to_string(), |v| format!("\"{v}\"")),
        t.trades,
        level(t.best_bid),
        level(t.best_ask),
    );
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("BTC-KRW"), r#""BTC-KRW""#);
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }
}
