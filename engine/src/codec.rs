//! The binary command codec: one [`Command`] as a short, fixed little-endian byte string.
//!
//! This is the journal's record payload and the replay input: every command the engine is fed
//! is encoded with [`encode`] before it is applied, and [`decode`] turns the bytes back into the
//! identical command. The layout of every kind is fixed (no varints, no optional fields), so a
//! kind byte tells the length, encoding never allocates and never fails, and decoding is a
//! bounds check plus a few loads. docs/command-format.md has the tables.
//!
//! ```
//! use ringbook_engine::codec::{decode, encode, COMMAND_BYTES_MAX};
//! use ringbook_engine::prelude::*;
//!
//! let cmd = Command::Deposit { user: UserId(7), currency: CurrencyId(1), amount: 1_000 };
//! let mut buf = [0u8; COMMAND_BYTES_MAX];
//! let len = encode(&cmd, &mut buf);
//! assert_eq!(decode(&buf[..len]), Ok(cmd));
//! ```
//!
//! Decoding is total: any byte string gives a command or a [`DecodeError`], never a panic, and a
//! string that decodes re-encodes to exactly the same bytes (one command, one encoding — there
//! are no padding bytes or unused bits that could differ). The codec checks the *shape* of a
//! command, not its meaning: an unknown symbol or an out-of-band price decodes fine and is
//! rejected by the engine exactly as it was when the command was first applied.
//!
//! The format version is not repeated in every record: [`COMMAND_FORMAT_VERSION`] is meant to
//! be stored once by the container (the journal's segment header or record type), and checked
//! before decoding. Tested by unit tests below and by property tests in `tests/codec.rs`.

use std::fmt;

use crate::command::{Command, NewOrder, Query};
use crate::le::{FieldError, LeReader, LeWriter};
use crate::types::{
    ClientOrderId, CurrencyId, OperatorId, OrderId, OrderType, Price, Qty, Side, StpMode, SymbolId,
    TimeInForce, UserId, WithdrawalId,
};
use crate::{le_get, le_put, le_size};

/// The version of the byte layout below; bump it (and keep a decoder for the old one) whenever
/// any layout changes.
pub const COMMAND_FORMAT_VERSION: u16 = 1;

/// Kind byte of [`Command::NewOrder`].
pub const KIND_NEW_ORDER: u8 = 1;
/// Kind byte of [`Command::Cancel`].
pub const KIND_CANCEL: u8 = 2;
/// Kind byte of [`Command::Amend`].
pub const KIND_AMEND: u8 = 3;
/// Kind byte of [`Command::MassCancel`].
pub const KIND_MASS_CANCEL: u8 = 4;
/// Kind byte of [`Command::Deposit`].
pub const KIND_DEPOSIT: u8 = 5;
/// Kind byte of [`Command::Withdraw`].
pub const KIND_WITHDRAW: u8 = 6;
/// Kind byte of [`Command::ApproveWithdrawal`].
pub const KIND_APPROVE_WITHDRAWAL: u8 = 7;
/// Kind byte of [`Command::RejectWithdrawal`].
pub const KIND_REJECT_WITHDRAWAL: u8 = 8;
/// Kind byte of [`Query::Order`].
pub const KIND_QUERY_ORDER: u8 = 9;
/// Kind byte of [`Query::OpenOrders`].
pub const KIND_QUERY_OPEN_ORDERS: u8 = 10;
/// Kind byte of [`Query::Balances`].
pub const KIND_QUERY_BALANCES: u8 = 11;
/// Kind byte of [`Query::Book`].
pub const KIND_QUERY_BOOK: u8 = 12;
/// Kind byte of [`Command::CancelOrder`] (added after the first release of format 1: a reader
/// that predates it reports [`DecodeError::UnknownKind`]).
pub const KIND_CANCEL_ORDER: u8 = 13;
/// Kind byte of [`Command::AmendOrder`] (added as [`KIND_CANCEL_ORDER`] was).
pub const KIND_AMEND_ORDER: u8 = 14;
/// Kind byte of a [`Command::NewOrder`] with a quote budget or an expiry time (either
/// non-zero): the new-order layout followed by `budget` and `expire_at` (added as
/// [`KIND_CANCEL_ORDER`] was). A new order with neither is always [`KIND_NEW_ORDER`].
pub const KIND_NEW_ORDER_EXT: u8 = 15;
/// Kind byte of [`Command::Tick`] (added as [`KIND_CANCEL_ORDER`] was).
pub const KIND_TICK: u8 = 16;
/// Kind byte of [`Query::OrderById`] (added as [`KIND_CANCEL_ORDER`] was).
pub const KIND_QUERY_ORDER_BY_ID: u8 = 17;

/// The journal layout of every command: its kind byte, the name of its encoded length, the
/// command's shape (used both as the `match` pattern that encodes and as the expression that
/// decodes) and its fields in byte order after the kind byte (see [`crate::le`]). From this one
/// table come [`encode`], [`decode`], [`encoded_len`] and the `*_BYTES` constants. A mass cancel
/// (whose flags byte packs an `Option` and a flag) is written by hand below the table.
macro_rules! journal_layouts {
    ($( $kind:ident => $(#[$doc:meta])* $size:ident: ($($shape:tt)+) [$($layout:tt)*]; )*) => {
        $(
            $(#[$doc])*
            pub const $size: usize = 1 + le_size!($($layout)*);
            const _: () = assert!($size <= COMMAND_BYTES_MAX);
        )*

        /// The encoded length of `cmd`.
        #[inline]
        #[allow(unused_variables)]
        pub fn encoded_len(cmd: &Command) -> usize {
            match *cmd {
                $($($shape)+ => $size,)*
                Command::MassCancel { .. } => MASS_CANCEL_BYTES,
            }
        }

        /// The fixed length of the command with kind byte `kind`, if there is one.
        #[inline]
        fn kind_len(kind: u8) -> Option<usize> {
            match kind {
                $($kind => Some($size),)*
                KIND_MASS_CANCEL => Some(MASS_CANCEL_BYTES),
                _ => None,
            }
        }

        /// Writes `cmd`, kind byte first.
        #[inline]
        fn put(cmd: &Command, w: &mut LeWriter<'_>) {
            match *cmd {
                $($($shape)+ => {
                    w.u8($kind);
                    le_put!(w; $($layout)*);
                })*
                Command::MassCancel {
                    user,
                    symbol,
                    on_disconnect,
                } => put_mass_cancel(w, user, symbol, on_disconnect),
            }
        }

        /// Reads the fields after the kind byte `kind` (already known to be a kind).
        #[inline]
        fn get(kind: u8, r: &mut LeReader<'_>) -> Result<Command, DecodeError> {
            Ok(match kind {
                $($kind => {
                    le_get!(r; $($layout)*);
                    $($shape)+
                })*
                KIND_MASS_CANCEL => get_mass_cancel(r)?,
                _ => return Err(DecodeError::UnknownKind(kind)),
            })
        }
    };
}

journal_layouts! {
    KIND_NEW_ORDER => /// Encoded length of a new order.
    NEW_ORDER_BYTES: (Command::NewOrder(NewOrder { side, order_type, tif, stp, post_only, symbol,
        user, client_order_id, price, qty, stop_price, display_qty, budget: 0, expire_at: 0 }))
        [side: Side, order_type: OrderType, tif: TimeInForce, stp: StpMode, post_only: bool,
        symbol: SymbolId, user: UserId, client_order_id: ClientOrderId, price: Price, qty: Qty,
        stop_price: Price, display_qty: Qty];
    KIND_NEW_ORDER_EXT => /// Encoded length of a new order with a budget or an expiry
    /// ([`KIND_NEW_ORDER_EXT`]).
    NEW_ORDER_EXT_BYTES: (Command::NewOrder(NewOrder { side, order_type, tif, stp, post_only,
        symbol, user, client_order_id, price, qty, stop_price, display_qty, budget, expire_at }))
        [side: Side, order_type: OrderType, tif: TimeInForce, stp: StpMode, post_only: bool,
        symbol: SymbolId, user: UserId, client_order_id: ClientOrderId, price: Price, qty: Qty,
        stop_price: Price, display_qty: Qty, budget: u64, expire_at: u64];
    KIND_TICK => /// Encoded length of a tick: the kind byte alone.
    TICK_BYTES: (Command::Tick) [];
    KIND_CANCEL => /// Encoded length of a cancel.
    CANCEL_BYTES: (Command::Cancel { user, symbol, client_order_id })
        [symbol: SymbolId, user: UserId, client_order_id: ClientOrderId];
    KIND_AMEND => /// Encoded length of an amend.
    AMEND_BYTES: (Command::Amend { user, symbol, client_order_id, price, qty })
        [symbol: SymbolId, user: UserId, client_order_id: ClientOrderId, price: Price, qty: Qty];
    KIND_CANCEL_ORDER => /// Encoded length of a cancel by order id.
    CANCEL_ORDER_BYTES: (Command::CancelOrder { user, symbol, order_id })
        [symbol: SymbolId, user: UserId, order_id: OrderId];
    KIND_AMEND_ORDER => /// Encoded length of an amend by order id.
    AMEND_ORDER_BYTES: (Command::AmendOrder { user, symbol, order_id, price, qty })
        [symbol: SymbolId, user: UserId, order_id: OrderId, price: Price, qty: Qty];
    KIND_DEPOSIT => /// Encoded length of a deposit.
    FUNDS_BYTES: (Command::Deposit { user, currency, amount })
        [currency: CurrencyId, user: UserId, amount: u64];
    KIND_WITHDRAW => /// Encoded length of a withdrawal request.
    WITHDRAW_BYTES: (Command::Withdraw { user, currency, amount })
        [currency: CurrencyId, user: UserId, amount: u64];
    KIND_APPROVE_WITHDRAWAL => /// Encoded length of a withdrawal approval.
    OPERATOR_BYTES: (Command::ApproveWithdrawal { operator, withdrawal_id })
        [operator: OperatorId, withdrawal_id: WithdrawalId];
    KIND_REJECT_WITHDRAWAL => /// Encoded length of a withdrawal rejection.
    REJECT_WITHDRAWAL_BYTES: (Command::RejectWithdrawal { operator, withdrawal_id })
        [operator: OperatorId, withdrawal_id: WithdrawalId];
    KIND_QUERY_ORDER => /// Encoded length of [`Query::Order`].
    QUERY_ORDER_BYTES: (Command::Query(Query::Order { user, client_order_id }))
        [user: UserId, client_order_id: ClientOrderId];
    KIND_QUERY_ORDER_BY_ID => /// Encoded length of [`Query::OrderById`].
    QUERY_ORDER_BY_ID_BYTES: (Command::Query(Query::OrderById { user, order_id }))
        [user: UserId, order_id: OrderId];
    KIND_QUERY_OPEN_ORDERS => /// Encoded length of [`Query::OpenOrders`].
    QUERY_OPEN_ORDERS_BYTES: (Command::Query(Query::OpenOrders { user, limit }))
        [user: UserId, limit: u32];
    KIND_QUERY_BALANCES => /// Encoded length of [`Query::Balances`].
    QUERY_BALANCES_BYTES: (Command::Query(Query::Balances { user })) [user: UserId];
    KIND_QUERY_BOOK => /// Encoded length of [`Query::Book`].
    QUERY_BOOK_BYTES: (Command::Query(Query::Book { symbol, depth }))
        [symbol: SymbolId, depth: u32];
}

/// Encoded length of a mass cancel: kind, flags, symbol, user.
pub const MASS_CANCEL_BYTES: usize = 1 + le_size!(flags: u8, symbol: SymbolId, user: UserId);

/// The longest encoding of any command: the size of [`encode`]'s buffer.
pub const COMMAND_BYTES_MAX: usize = 68;
const _: () = assert!(COMMAND_BYTES_MAX == NEW_ORDER_EXT_BYTES);
const _: () = assert!(MASS_CANCEL_BYTES <= COMMAND_BYTES_MAX);

/// Mass-cancel flag bit: the command names one symbol.
const FLAG_HAS_SYMBOL: u8 = 1;
/// Mass-cancel flag bit: issued for a cancel-on-disconnect session that ended.
const FLAG_ON_DISCONNECT: u8 = 2;

/// Why a byte string is not a command. Cheap to return and to copy; never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// No bytes at all. Cause: an empty record payload. Fix: the writer must store the bytes
    /// [`encode`] returned, all of them.
    Empty,
    /// The kind byte names no command. Cause: corruption, or bytes of another record type or a
    /// newer format version. Fix: check the container's record type and
    /// [`COMMAND_FORMAT_VERSION`] before decoding; otherwise treat the record as corrupt.
    UnknownKind(u8),
    /// Fewer bytes than the kind's fixed length. Cause: a torn or cut record. Fix: the journal
    /// must hand over the whole payload; a torn tail record is truncated away on recovery.
    Truncated {
        /// The kind byte.
        kind: u8,
        /// The kind's length.
        needed: usize,
        /// The bytes given.
        got: usize,
    },
    /// More bytes than the kind's fixed length. Cause: a payload with padding or two commands
    /// run together. Fix: pass exactly one encoded command (the journal stores lengths).
    TrailingBytes {
        /// The kind byte.
        kind: u8,
        /// The kind's length.
        expected: usize,
        /// The bytes given.
        got: usize,
    },
    /// An enum field holds a value with no meaning (for example side 7). Cause: corruption or a
    /// newer format. Fix: treat the record as corrupt, or upgrade the reader.
    BadEnum {
        /// The field: `side`, `order_type`, `tif` or `stp`.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A flags byte has bits set that mean nothing in this version. Cause and fix as for
    /// [`DecodeError::BadEnum`].
    BadFlags {
        /// The flags byte found.
        value: u8,
    },
    /// A field that must be zero is not (a mass cancel without a symbol whose symbol bytes are
    /// not zero), so the bytes are not the one encoding of any command. Cause and fix as for
    /// [`DecodeError::BadEnum`].
    NonCanonical {
        /// The field.
        field: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Empty => f.write_str("empty command record"),
            DecodeError::UnknownKind(k) => write!(f, "unknown command kind {k}"),
            DecodeError::Truncated { kind, needed, got } => write!(
                f,
                "command kind {kind} needs {needed} bytes, record has {got}"
            ),
            DecodeError::TrailingBytes {
                kind,
                expected,
                got,
            } => write!(
                f,
                "command kind {kind} is {expected} bytes, record has {got}"
            ),
            DecodeError::BadEnum { field, value } => {
                write!(f, "command field {field} has no value {value}")
            }
            DecodeError::BadFlags { value } => write!(f, "command flags {value:#04x} unknown"),
            DecodeError::NonCanonical { field } => {
                write!(f, "command field {field} must be zero")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<FieldError> for DecodeError {
    fn from(e: FieldError) -> DecodeError {
        match e {
            FieldError::BadEnum { field, value } => DecodeError::BadEnum { field, value },
            FieldError::BadFlags { value } => DecodeError::BadFlags { value },
            FieldError::NonZero { field } => DecodeError::NonCanonical { field },
        }
    }
}

#[inline]
fn put_mass_cancel(
    w: &mut LeWriter<'_>,
    user: UserId,
    symbol: Option<SymbolId>,
    on_disconnect: bool,
) {
    let flags = if symbol.is_some() { FLAG_HAS_SYMBOL } else { 0 }
        | if on_disconnect { FLAG_ON_DISCONNECT } else { 0 };
    w.u8(KIND_MASS_CANCEL)
        .u8(flags)
        .put(symbol.unwrap_or(SymbolId(0)))
        .put(user);
}

#[inline]
fn get_mass_cancel(r: &mut LeReader<'_>) -> Result<Command, DecodeError> {
    let flags = r.u8();
    if flags & !(FLAG_HAS_SYMBOL | FLAG_ON_DISCONNECT) != 0 {
        return Err(DecodeError::BadFlags { value: flags });
    }
    let symbol = r.u16();
    if flags & FLAG_HAS_SYMBOL == 0 && symbol != 0 {
        return Err(DecodeError::NonCanonical { field: "symbol" });
    }
    Ok(Command::MassCancel {
        symbol: (flags & FLAG_HAS_SYMBOL != 0).then_some(SymbolId(symbol)),
        user: UserId(r.u32()),
        on_disconnect: flags & FLAG_ON_DISCONNECT != 0,
    })
}

/// Writes `cmd` into `buf` and returns its length (see [`encoded_len`]); the rest of `buf` is
/// left as it was. Never allocates, never fails.
#[inline]
pub fn encode(cmd: &Command, buf: &mut [u8; COMMAND_BYTES_MAX]) -> usize {
    let mut w = LeWriter::new(buf, 0);
    put(cmd, &mut w);
    debug_assert_eq!(w.at(), encoded_len(cmd));
    w.at()
}

/// A [`Side`] from its byte (`0` buy, `1` sell): [`Side::from_u8`].
pub fn side_from_u8(v: u8) -> Option<Side> {
    Side::from_u8(v)
}

/// An [`OrderType`] from its byte (its `#[repr(u8)]` value): [`OrderType::from_u8`].
pub fn order_type_from_u8(v: u8) -> Option<OrderType> {
    OrderType::from_u8(v)
}

/// A [`TimeInForce`] from its byte (its `#[repr(u8)]` value): [`TimeInForce::from_u8`].
pub fn tif_from_u8(v: u8) -> Option<TimeInForce> {
    TimeInForce::from_u8(v)
}

/// An [`StpMode`] from its byte (its `#[repr(u8)]` value): [`StpMode::from_u8`].
pub fn stp_from_u8(v: u8) -> Option<StpMode> {
    StpMode::from_u8(v)
}

/// Reads one command from exactly `bytes` (one whole record payload).
pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
    let Some(&kind) = bytes.first() else {
        return Err(DecodeError::Empty);
    };
    let Some(len) = kind_len(kind) else {
        return Err(DecodeError::UnknownKind(kind));
    };
    if bytes.len() < len {
        return Err(DecodeError::Truncated {
            kind,
            needed: len,
            got: bytes.len(),
        });
    }
    if bytes.len() > len {
        return Err(DecodeError::TrailingBytes {
            kind,
            expected: len,
            got: bytes.len(),
        });
    }
    let mut r = LeReader::at_offset(bytes, 1);
    let cmd = get(kind, &mut r)?;
    if let Command::NewOrder(NewOrder {
        budget: 0,
        expire_at: 0,
        ..
    }) = cmd
    {
        if kind == KIND_NEW_ORDER_EXT {
            // Such an order is encoded as KIND_NEW_ORDER: one command, one encoding.
            return Err(DecodeError::NonCanonical {
                field: "budget and expire_at",
            });
        }
    }
    debug_assert!(r.exact());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(cmd: Command) -> Vec<u8> {
        let mut buf = [0xAAu8; COMMAND_BYTES_MAX];
        let len = encode(&cmd, &mut buf);
        assert_eq!(len, encoded_len(&cmd));
        assert_eq!(decode(&buf[..len]), Ok(cmd));
        buf[..len].to_vec()
    }

    #[test]
    fn known_bytes_of_a_deposit() {
        let bytes = round_trip(Command::Deposit {
            user: UserId(0x0403_0201),
            currency: CurrencyId(0x0605),
            amount: 0x0f0e_0d0c_0b0a_0908,
        });
        assert_eq!(
            bytes,
            [5, 0x05, 0x06, 0x01, 0x02, 0x03, 0x04, 8, 9, 10, 11, 12, 13, 14, 15]
        );
    }

    #[test]
    fn known_bytes_of_a_new_order() {
        let mut o = NewOrder::limit(
            UserId(7),
            SymbolId(2),
            ClientOrderId(9),
            Side::Sell,
            Price(-3),
            Qty(5),
        );
        o.post_only = true;
        o.stp = StpMode::Decrement;
        let bytes = round_trip(Command::NewOrder(o));
        assert_eq!(&bytes[..8], &[KIND_NEW_ORDER, 1, 0, 0, 4, 1, 2, 0]);
        assert_eq!(&bytes[8..12], &7u32.to_le_bytes());
        assert_eq!(&bytes[20..28], &(-3i64).to_le_bytes());
        assert_eq!(bytes.len(), NEW_ORDER_BYTES);
    }

    #[test]
    fn budget_and_expiry_orders_and_ticks_round_trip_with_known_bytes() {
        let budget =
            NewOrder::market_budget(UserId(7), SymbolId(2), ClientOrderId(9), Price(100), 0x0102);
        let bytes = round_trip(Command::NewOrder(budget));
        assert_eq!(bytes.len(), NEW_ORDER_EXT_BYTES);
        assert_eq!(bytes[0], KIND_NEW_ORDER_EXT);
        assert_eq!(&bytes[52..60], &0x0102u64.to_le_bytes());
        assert_eq!(&bytes[60..68], &0u64.to_le_bytes());
        let gtd = NewOrder::limit_gtd(
            UserId(7),
            SymbolId(2),
            ClientOrderId(10),
            Side::Buy,
            Price(100),
            Qty(1),
            1_700_000_000_000_000_000,
        );
        let bytes = round_trip(Command::NewOrder(gtd));
        assert_eq!(bytes[3], TimeInForce::Gtd as u8);
        assert_eq!(&bytes[60..68], &1_700_000_000_000_000_000u64.to_le_bytes());
        // The extended kind with neither field is not the one encoding of any command.
        let mut plain = bytes.clone();
        plain[52..68].fill(0);
        assert_eq!(
            decode(&plain),
            Err(DecodeError::NonCanonical {
                field: "budget and expire_at"
            })
        );
        // Without budget and expiry a new order keeps the old kind and length.
        let mut day = gtd;
        day.tif = TimeInForce::Day;
        day.expire_at = 0;
        assert_eq!(round_trip(Command::NewOrder(day)).len(), NEW_ORDER_BYTES);
        assert_eq!(round_trip(Command::Tick), vec![KIND_TICK]);
        assert_eq!(
            decode(&[KIND_TICK, 0]),
            Err(DecodeError::TrailingBytes {
                kind: KIND_TICK,
                expected: 1,
                got: 2
            })
        );
    }

    #[test]
    fn mass_cancel_with_and_without_symbol() {
        let none = round_trip(Command::MassCancel {
            user: UserId(3),
            symbol: None,
            on_disconnect: false,
        });
        assert_eq!(none, [KIND_MASS_CANCEL, 0, 0, 0, 3, 0, 0, 0]);
        let zero = round_trip(Command::MassCancel {
            user: UserId(3),
            symbol: Some(SymbolId(0)),
            on_disconnect: false,
        });
        assert_eq!(zero, [KIND_MASS_CANCEL, 1, 0, 0, 3, 0, 0, 0]);
        let cod = round_trip(Command::MassCancel {
            user: UserId(3),
            symbol: None,
            on_disconnect: true,
        });
        assert_eq!(cod, [KIND_MASS_CANCEL, 2, 0, 0, 3, 0, 0, 0]);
        let mut bad = none.clone();
        bad[2] = 1;
        assert_eq!(
            decode(&bad),
            Err(DecodeError::NonCanonical { field: "symbol" })
        );
        bad[1] = 4;
        assert_eq!(decode(&bad), Err(DecodeError::BadFlags { value: 4 }));
    }

    #[test]
    fn by_order_id_commands_round_trip_with_known_bytes() {
        let cancel = round_trip(Command::CancelOrder {
            user: UserId(3),
            symbol: SymbolId(1),
            order_id: OrderId(0x0102),
        });
        assert_eq!(
            cancel,
            [KIND_CANCEL_ORDER, 1, 0, 3, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
        );
        let amend = round_trip(Command::AmendOrder {
            user: UserId(3),
            symbol: SymbolId(1),
            order_id: OrderId(7),
            price: Price(-1),
            qty: Qty(5),
        });
        assert_eq!(amend.len(), AMEND_BYTES);
        assert_eq!(
            &amend[..15],
            &[KIND_AMEND_ORDER, 1, 0, 3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&amend[15..23], &(-1i64).to_le_bytes());
        assert_eq!(
            decode(&cancel[..14]).unwrap_err(),
            DecodeError::Truncated {
                kind: KIND_CANCEL_ORDER,
                needed: CANCEL_BYTES,
                got: 14
            }
        );
    }

    #[test]
    fn queries_round_trip_with_known_bytes() {
        let order = round_trip(Command::Query(Query::Order {
            user: UserId(2),
            client_order_id: ClientOrderId(0x0102),
        }));
        assert_eq!(
            order,
            [KIND_QUERY_ORDER, 2, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
        );
        let open = round_trip(Command::Query(Query::OpenOrders {
            user: UserId(3),
            limit: 256,
        }));
        assert_eq!(open, [KIND_QUERY_OPEN_ORDERS, 3, 0, 0, 0, 0, 1, 0, 0]);
        let balances = round_trip(Command::Query(Query::Balances { user: UserId(4) }));
        assert_eq!(balances, [KIND_QUERY_BALANCES, 4, 0, 0, 0]);
        let book = round_trip(Command::Query(Query::Book {
            symbol: SymbolId(1),
            depth: 10,
        }));
        assert_eq!(book, [KIND_QUERY_BOOK, 1, 0, 10, 0, 0, 0]);
    }

    #[test]
    fn errors_name_their_cause() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[0]), Err(DecodeError::UnknownKind(0)));
        assert_eq!(decode(&[99, 1, 2]), Err(DecodeError::UnknownKind(99)));
        assert_eq!(
            decode(&[KIND_CANCEL, 0]),
            Err(DecodeError::Truncated {
                kind: KIND_CANCEL,
                needed: CANCEL_BYTES,
                got: 2
            })
        );
        let mut long = round_trip(Command::Cancel {
            user: UserId(1),
            symbol: SymbolId(1),
            client_order_id: ClientOrderId(1),
        });
        long.push(0);
        assert_eq!(
            decode(&long),
            Err(DecodeError::TrailingBytes {
                kind: KIND_CANCEL,
                expected: CANCEL_BYTES,
                got: CANCEL_BYTES + 1
            })
        );
        let mut order = round_trip(Command::NewOrder(NewOrder::limit(
            UserId(1),
            SymbolId(0),
            ClientOrderId(1),
            Side::Buy,
            Price(1),
            Qty(1),
        )));
        for (at, field, value) in [
            (1, "side", 2),
            (2, "order_type", 4),
            (3, "tif", 5),
            (4, "stp", 5),
        ] {
            let mut bad = order.clone();
            bad[at] = value;
            assert_eq!(decode(&bad), Err(DecodeError::BadEnum { field, value }));
            assert!(!decode(&bad).unwrap_err().to_string().is_empty());
        }
        order[5] = 0x80;
        assert_eq!(decode(&order), Err(DecodeError::BadFlags { value: 0x80 }));
    }
}
