//! Reference data on the wire (docs/protocol.md, "Reference data"): the server's currencies and
//! symbols, the same entries as its configuration's `[[currencies]]` and `[[symbols]]`.
//!
//! The entries form one list — every currency by id, then every symbol by id — read in pages:
//! a `ReferenceData { first }` request is answered with the entries from index `first` (at
//! most a page of them), then a `ReferenceEnd` that counts the currencies and symbols and says
//! where the next page starts (`next`; the list is done when it equals their sum). [`ReferenceData::entry`] makes the server's
//! messages; [`ReferenceData::take`] rebuilds the lists from them on the client's side.

use std::collections::HashMap;

use ringbook_engine::config::{Config, CurrencyConfig, SymbolConfig};

use super::{name32, name32_str, ServerMsg};

/// A server's currencies and symbols, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceData {
    /// Every currency, by id (ids are dense from 0).
    pub currencies: Vec<CurrencyConfig>,
    /// Every symbol, by id (ids are dense from 0); `base` and `quote` are currency codes.
    pub symbols: Vec<SymbolConfig>,
}

/// Why reference-data messages could not be put together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceError(pub String);

impl std::fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReferenceError {}

impl ReferenceData {
    /// The reference data of an engine configuration.
    pub fn of(config: &Config) -> ReferenceData {
        ReferenceData {
            currencies: config.currencies.clone(),
            symbols: config.symbols.clone(),
        }
    }

    /// Entries in the list: currencies, then symbols.
    pub fn len(&self) -> usize {
        self.currencies.len() + self.symbols.len()
    }

    /// Whether there are none (a server that publishes no reference data).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The symbol named `name`.
    pub fn symbol(&self, name: &str) -> Option<&SymbolConfig> {
        self.symbols.iter().find(|s| s.name == name)
    }

    /// The names of `symbols` for a message: the first `max`, then how many more.
    pub fn names_of(symbols: &[SymbolConfig], max: usize) -> String {
        let mut names: Vec<&str> = symbols.iter().take(max).map(|s| s.name.as_str()).collect();
        let more = symbols.len().saturating_sub(max);
        let more = format!("{more} more");
        if symbols.len() > max {
            names.push(&more);
        }
        names.join(", ")
    }

    /// The currency with code `code`.
    pub fn currency(&self, code: &str) -> Option<&CurrencyConfig> {
        self.currencies.iter().find(|c| c.code == code)
    }

    /// Every entry of the list as a message, in order (sequence number 0: the session numbers
    /// it; request id 0: [`ReferenceData::for_request`] sets it). Symbols carry their
    /// currencies as ids; a symbol whose currency code is not among the currencies (not a
    /// validated configuration) carries `u16::MAX`. Made once (the gateway keeps them), so a
    /// request costs a copy per entry, not a lookup.
    pub fn messages(&self) -> Vec<ServerMsg> {
        let ids: HashMap<&str, u16> = self
            .currencies
            .iter()
            .map(|c| (c.code.as_str(), c.id))
            .collect();
        let id = |code: &str| ids.get(code).copied().unwrap_or(u16::MAX);
        let currencies = self.currencies.iter().map(|c| ServerMsg::CurrencyInfo {
            seq: 0,
            request_id: 0,
            currency: c.id,
            scale: c.scale,
            code: name32(&c.code),
        });
        let symbols = self.symbols.iter().map(|s| ServerMsg::SymbolInfo {
            seq: 0,
            request_id: 0,
            symbol: s.id,
            base: id(&s.base),
            quote: id(&s.quote),
            lot_size: s.lot_size,
            tick_size: s.tick_size,
            price_min: s.price_min,
            price_max: s.price_max,
            max_order_qty: s.max_order_qty,
            maker_fee_bps: s.maker_fee_bps,
            taker_fee_bps: s.taker_fee_bps,
            name: name32(&s.name),
        });
        currencies.chain(symbols).collect()
    }

    /// A reference message with `request_id` set (other messages unchanged).
    pub fn for_request(mut msg: ServerMsg, request_id: u64) -> ServerMsg {
        if let ServerMsg::CurrencyInfo { request_id: r, .. }
        | ServerMsg::SymbolInfo { request_id: r, .. }
        | ServerMsg::ReferenceEnd { request_id: r, .. } = &mut msg
        {
            *r = request_id;
        }
        msg
    }

    /// The end of a page whose next entry is `next` (the list's length when it is done).
    pub fn end(&self, request_id: u64, next: usize) -> ServerMsg {
        ReferenceData::end_for(request_id, self.currencies.len(), self.symbols.len(), next)
    }

    /// The end of a page of a list of `currencies` and `symbols` whose next entry is `next`.
    pub fn end_for(request_id: u64, currencies: usize, symbols: usize, next: usize) -> ServerMsg {
        ServerMsg::ReferenceEnd {
            seq: 0,
            request_id,
            currencies: currencies as u32,
            symbols: symbols as u32,
            next: next.min(currencies + symbols) as u32,
        }
    }

    /// Adds one reference message received (the client's side), in the order the server sent
    /// them: currencies before symbols, each list by id. Checks that ids are dense and in order,
    /// and that a symbol's currencies are ones received already. Other messages are ignored
    /// (`Ok(false)`).
    pub fn take(&mut self, msg: &ServerMsg) -> Result<bool, ReferenceError> {
        let err = |what: String| Err(ReferenceError(what));
        match *msg {
            ServerMsg::CurrencyInfo {
                currency,
                scale,
                code,
                ..
            } => {
                if !self.symbols.is_empty() || usize::from(currency) != self.currencies.len() {
                    return err(format!(
                        "currency {currency} ({}) out of order: expected id {}{}",
                        name32_str(&code),
                        self.currencies.len(),
                        if self.symbols.is_empty() {
                            ""
                        } else {
                            ", before any symbol"
                        }
                    ));
                }
                self.currencies.push(CurrencyConfig {
                    id: currency,
                    code: name32_str(&code).to_string(),
                    scale,
                });
            }
            ServerMsg::SymbolInfo {
                symbol,
                base,
                quote,
                lot_size,
                tick_size,
                price_min,
                price_max,
                max_order_qty,
                maker_fee_bps,
                taker_fee_bps,
                name,
                ..
            } => {
                let name = name32_str(&name).to_string();
                if usize::from(symbol) != self.symbols.len() {
                    return err(format!(
                        "symbol {symbol} ({name}) out of order: expected id {}",
                        self.symbols.len()
                    ));
                }
                let code = |id: u16| {
                    self.currencies
                        .get(usize::from(id))
                        .map(|c| c.code.clone())
                        .ok_or_else(|| {
                            ReferenceError(format!(
                                "symbol {name}: currency {id} was not announced"
                            ))
                        })
                };
                let (base, quote) = (code(base)?, code(quote)?);
                self.symbols.push(SymbolConfig {
                    id: symbol,
                    name,
                    base,
                    quote,
                    lot_size,
                    tick_size,
                    price_min,
                    price_max,
                    maker_fee_bps,
                    taker_fee_bps,
                    max_order_qty,
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_of_the_default_config_comes_back_as_it_was() {
        let config = Config::default();
        let r = ReferenceData::of(&config);
        assert_eq!(r.len(), config.currencies.len() + config.symbols.len());
        let mut back = ReferenceData::default();
        let messages = r.messages();
        assert_eq!(messages.len(), r.len());
        for m in messages {
            let m = ReferenceData::for_request(m, 9);
            assert!(matches!(
                m,
                ServerMsg::CurrencyInfo { request_id: 9, .. }
                    | ServerMsg::SymbolInfo { request_id: 9, .. }
            ));
            assert_eq!(back.take(&m), Ok(true));
        }
        assert_eq!(back, r);
        let done = r.len() as u32;
        assert!(matches!(r.end(9, r.len()), ServerMsg::ReferenceEnd { next, .. } if next == done));
        assert!(matches!(
            r.end(9, 1),
            ServerMsg::ReferenceEnd { next: 1, .. }
        ));
    }

    #[test]
    fn out_of_order_or_unannounced_entries_are_refused() {
        let r = ReferenceData::of(&Config::default());
        let messages = r.messages();
        let first_symbol = messages[r.currencies.len()];
        // A symbol before its currencies.
        let mut back = ReferenceData::default();
        assert!(back.take(&first_symbol).is_err());
        // A currency skipped.
        let mut back = ReferenceData::default();
        assert!(back.take(&messages[1]).is_err());
        // A currency after a symbol.
        let mut back = ReferenceData::default();
        for m in &messages[..r.currencies.len()] {
            back.take(m).unwrap();
        }
        back.take(&first_symbol).unwrap();
        let late = ServerMsg::CurrencyInfo {
            seq: 0,
            request_id: 1,
            currency: r.currencies.len() as u16,
            scale: 0,
            code: name32("XYZ"),
        };
        assert!(back.take(&late).is_err());
        assert_eq!(back.take(&ServerMsg::Heartbeat), Ok(false));
    }

    #[test]
    fn long_lists_of_names_are_cut() {
        let r = ReferenceData::of(&Config::default());
        assert_eq!(
            ReferenceData::names_of(&r.symbols, 8),
            "BTC-KRW, ETH-KRW, AAPL-USD"
        );
        assert_eq!(ReferenceData::names_of(&r.symbols, 1), "BTC-KRW, 2 more");
    }
}
