//! The one little-endian reader and writer, and the field vocabulary both binary formats are
//! declared in.
//!
//! The journal codec ([`crate::codec`]) and the wire protocol (`ringbook-protocol`) write
//! fixed layouts of the same few field types: integers, the id newtypes, the order enums and
//! flags. [`Field`] says once how each type is written and read (its width, its bytes, which
//! values are invalid), [`LeWriter`] and [`LeReader`] do the sequential little-endian work
//! without panicking or allocating, and the [`le_put!`](crate::le_put),
//! [`le_get!`](crate::le_get) and [`le_size!`](crate::le_size) macros turn one ordered
//! layout list into the writes, the reads and the byte count. Each format keeps a table of its
//! messages (`codec.rs` for the journal, `client.rs` for the wire) where each message is one
//! layout line; docs/architecture.md, "One vocabulary", says how to add a field.
//!
//! A layout list is a comma-separated list of items, each either `name: Type` (a local
//! variable `name` of a type that implements [`Field`]), `[pad N]` (N zero bytes that must
//! read back as zero) or `[skip N]` (N bytes written as zero and ignored when read: the server's
//! messages, whose reader is lenient about padding).
//!
//! ```
//! use ringbook_engine::le::{FieldError, LeReader, LeWriter};
//! use ringbook_engine::prelude::*;
//! use ringbook_engine::{le_get, le_put, le_size};
//!
//! const BYTES: usize = le_size!(user: UserId, [pad 2], side: Side);
//! let (user, side) = (UserId(7), Side::Sell);
//! let mut buf = [0u8; BYTES];
//! let mut w = LeWriter::new(&mut buf, 0);
//! le_put!(w; user: UserId, [pad 2], side: Side);
//! assert_eq!(w.at(), BYTES);
//! assert_eq!(buf, [7, 0, 0, 0, 0, 0, 1]);
//!
//! fn read(bytes: &[u8]) -> Result<(UserId, Side), FieldError> {
//!     let mut r = LeReader::new(bytes);
//!     le_get!(r; user: UserId, [pad 2], side: Side);
//!     Ok((user, side))
//! }
//! assert_eq!(read(&buf), Ok((UserId(7), Side::Sell)));
//! assert_eq!(read(&[7, 0, 0, 0, 0, 0, 2]), Err(FieldError::BadEnum { field: "side", value: 2 }));
//! ```

use crate::codes::{CancelReason, RejectCode};
use crate::types::{
    ClientOrderId, CurrencyId, Liquidity, OperatorId, OrderId, OrderType, Price, Qty, Side,
    StpMode, SymbolId, TimeInForce, TradeId, UserId, WithdrawalId,
};

/// Why a field's bytes are not a value of its type. Each format turns it into its own error
/// (the journal's `DecodeError`, the wire's `INVALID_FIELD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldError {
    /// An enum byte with no meaning (for example side 7).
    BadEnum {
        /// The field's name in the layout.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A flag byte other than 0 or 1.
    BadFlags {
        /// The byte found.
        value: u8,
    },
    /// Padding that is not zero.
    NonZero {
        /// What was not zero.
        field: &'static str,
    },
}

impl From<FieldError> for RejectCode {
    /// On the wire every malformed field is `INVALID_FIELD`.
    fn from(_: FieldError) -> RejectCode {
        RejectCode::InvalidField
    }
}

/// Sequential little-endian writes into a buffer. A write past its end is dropped (the
/// position still advances, so a caller comparing positions sees it); layouts are sized at
/// compile time against their buffers, so that never happens, and a bug cannot panic a server.
#[derive(Debug)]
pub struct LeWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> LeWriter<'a> {
    /// A writer that starts at byte `at` of `buf`.
    #[inline]
    pub fn new(buf: &'a mut [u8], at: usize) -> LeWriter<'a> {
        LeWriter { buf, at }
    }

    /// The position of the next write.
    #[inline]
    pub fn at(&self) -> usize {
        self.at
    }

    /// Writes raw bytes.
    #[inline]
    pub fn bytes<const N: usize>(&mut self, bytes: [u8; N]) -> &mut Self {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + N) {
            dst.copy_from_slice(&bytes);
        }
        self.at += N;
        self
    }

    /// Writes one field.
    #[inline]
    pub fn put<T: Field>(&mut self, v: T) -> &mut Self {
        v.put(self);
        self
    }

    /// Writes `n` zero bytes (padding).
    #[inline]
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + n) {
            dst.fill(0);
        }
        self.at += n;
        self
    }

    /// Writes a `u8`.
    #[inline]
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes([v])
    }
    /// Writes a `u16`.
    #[inline]
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(v.to_le_bytes())
    }
    /// Writes a `u32`.
    #[inline]
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(v.to_le_bytes())
    }
    /// Writes a `u64`.
    #[inline]
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(v.to_le_bytes())
    }
    /// Writes an `i64`.
    #[inline]
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(v.to_le_bytes())
    }
}

/// Sequential little-endian reads from a slice. A read past the end yields zeros and marks the
/// reader short ([`LeReader::exact`] is then false), so reading never panics; formats check the
/// whole length up front and [`LeReader::exact`] after.
#[derive(Debug)]
pub struct LeReader<'a> {
    bytes: &'a [u8],
    at: usize,
    short: bool,
}

impl<'a> LeReader<'a> {
    /// A reader at the start of `bytes`.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> LeReader<'a> {
        LeReader {
            bytes,
            at: 0,
            short: false,
        }
    }

    /// A reader at byte `at` of `bytes`.
    #[inline]
    pub fn at_offset(bytes: &'a [u8], at: usize) -> LeReader<'a> {
        LeReader {
            bytes,
            at,
            short: false,
        }
    }

    /// The position of the next read.
    #[inline]
    pub fn at(&self) -> usize {
        self.at
    }

    /// True if every byte was read and no read ran past the end.
    #[inline]
    pub fn exact(&self) -> bool {
        !self.short && self.at == self.bytes.len()
    }

    /// Reads `N` raw bytes (zeros past the end).
    #[inline]
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        match self.bytes.get(self.at..self.at + N) {
            Some(s) => out.copy_from_slice(s),
            None => self.short = true,
        }
        self.at += N;
        out
    }

    /// Reads one field named `field` (the name goes into a [`FieldError`]).
    #[inline]
    pub fn get<T: Field>(&mut self, field: &'static str) -> Result<T, FieldError> {
        T::get(self, field)
    }

    /// Reads `n` bytes of padding, which must be zero.
    #[inline]
    pub fn zeros(&mut self, n: usize) -> Result<(), FieldError> {
        let ok = match self.bytes.get(self.at..self.at + n) {
            Some(s) => s.iter().all(|&b| b == 0),
            None => {
                self.short = true;
                true
            }
        };
        self.at += n;
        if ok {
            Ok(())
        } else {
            Err(FieldError::NonZero { field: "padding" })
        }
    }

    /// Skips `n` bytes, whatever they hold.
    #[inline]
    pub fn skip(&mut self, n: usize) {
        if self.at + n > self.bytes.len() {
            self.short = true;
        }
        self.at += n;
    }

    /// Reads a `u8`.
    #[inline]
    pub fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    /// Reads a `u16`.
    #[inline]
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    /// Reads a `u32`.
    #[inline]
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    /// Reads a `u64`.
    #[inline]
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    /// Reads an `i64`.
    #[inline]
    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.bytes())
    }
}

/// A type with one fixed little-endian encoding, usable in a layout list.
pub trait Field: Sized + Copy {
    /// The encoded width.
    const BYTES: usize;
    /// Writes the value.
    fn put(self, w: &mut LeWriter<'_>);
    /// Reads a value; `field` names it in an error.
    fn get(r: &mut LeReader<'_>, field: &'static str) -> Result<Self, FieldError>;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            #[inline]
            fn put(self, w: &mut LeWriter<'_>) {
                w.bytes(self.to_le_bytes());
            }
            #[inline]
            fn get(r: &mut LeReader<'_>, _: &'static str) -> Result<Self, FieldError> {
                Ok(<$t>::from_le_bytes(r.bytes()))
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64, i64);

macro_rules! newtype_field {
    ($($t:ident($inner:ty)),*) => {$(
        impl Field for $t {
            const BYTES: usize = <$inner as Field>::BYTES;
            #[inline]
            fn put(self, w: &mut LeWriter<'_>) {
                self.0.put(w);
            }
            #[inline]
            fn get(r: &mut LeReader<'_>, field: &'static str) -> Result<Self, FieldError> {
                <$inner as Field>::get(r, field).map($t)
            }
        }
    )*};
}
newtype_field!(
    UserId(u32),
    SymbolId(u16),
    CurrencyId(u16),
    ClientOrderId(u64),
    OrderId(u64),
    OperatorId(u32),
    WithdrawalId(u64),
    TradeId(u64),
    Price(i64),
    Qty(u64)
);

/// An array: its elements in order (names and credentials are `[u8; 32]`, a book message's
/// levels an array of pairs).
impl<T: Field + Default, const N: usize> Field for [T; N] {
    const BYTES: usize = T::BYTES * N;
    #[inline]
    fn put(self, w: &mut LeWriter<'_>) {
        for v in self {
            v.put(w);
        }
    }
    #[inline]
    fn get(r: &mut LeReader<'_>, field: &'static str) -> Result<Self, FieldError> {
        let mut out = [T::default(); N];
        for v in &mut out {
            *v = T::get(r, field)?;
        }
        Ok(out)
    }
}

/// A pair: the first, then the second (a book level's price and quantity).
impl<A: Field, B: Field> Field for (A, B) {
    const BYTES: usize = A::BYTES + B::BYTES;
    #[inline]
    fn put(self, w: &mut LeWriter<'_>) {
        self.0.put(w);
        self.1.put(w);
    }
    #[inline]
    fn get(r: &mut LeReader<'_>, field: &'static str) -> Result<Self, FieldError> {
        Ok((A::get(r, field)?, B::get(r, field)?))
    }
}

/// A flag: one byte, 0 or 1; any other byte is [`FieldError::BadFlags`].
impl Field for bool {
    const BYTES: usize = 1;
    #[inline]
    fn put(self, w: &mut LeWriter<'_>) {
        w.u8(self as u8);
    }
    #[inline]
    fn get(r: &mut LeReader<'_>, _: &'static str) -> Result<Self, FieldError> {
        match r.u8() {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(FieldError::BadFlags { value }),
        }
    }
}

/// The order enums on the wire: one byte, the `#[repr(u8)]` discriminant (their tables are in
/// `types.rs` and `codes.rs`); an unknown byte is [`FieldError::BadEnum`].
macro_rules! enum_field {
    ($($t:ident),*) => {$(
        impl Field for $t {
            const BYTES: usize = 1;
            #[inline]
            fn put(self, w: &mut LeWriter<'_>) {
                w.u8(self as u8);
            }
            #[inline]
            fn get(r: &mut LeReader<'_>, field: &'static str) -> Result<Self, FieldError> {
                let value = r.u8();
                $t::from_u8(value).ok_or(FieldError::BadEnum { field, value })
            }
        }
    )*};
}
enum_field!(
    Side,
    OrderType,
    TimeInForce,
    StpMode,
    CancelReason,
    Liquidity
);

/// Writes a layout list (see the [module docs](crate::le)) with a [`LeWriter`]: each
/// `name: Type` writes the local `name` as a `Type`, each `[pad N]` or `[skip N]` writes N zero
/// bytes.
#[macro_export]
macro_rules! le_put {
    ($w:ident;) => {};
    ($w:ident; [$pad:ident $n:literal] $(, $($rest:tt)*)?) => {
        $w.zeros($n);
        $crate::le_put!($w; $($($rest)*)?);
    };
    ($w:ident; $f:ident : $t:ty $(, $($rest:tt)*)?) => {
        $w.put::<$t>($f);
        $crate::le_put!($w; $($($rest)*)?);
    };
}

/// Reads a layout list (see the [module docs](crate::le)) with a [`LeReader`] into local
/// variables of the same names; a bad field returns its [`FieldError`] through `?` (so the
/// calling function's error type must convert from it).
#[macro_export]
macro_rules! le_get {
    ($r:ident;) => {};
    ($r:ident; [pad $n:literal] $(, $($rest:tt)*)?) => {
        $r.zeros($n)?;
        $crate::le_get!($r; $($($rest)*)?);
    };
    ($r:ident; [skip $n:literal] $(, $($rest:tt)*)?) => {
        $r.skip($n);
        $crate::le_get!($r; $($($rest)*)?);
    };
    ($r:ident; $f:ident : $t:ty $(, $($rest:tt)*)?) => {
        let $f = $r.get::<$t>(stringify!($f))?;
        $crate::le_get!($r; $($($rest)*)?);
    };
}

/// The byte count of a layout list (see the [module docs](crate::le)), as a constant
/// expression.
#[macro_export]
macro_rules! le_size {
    () => { 0usize };
    ([$pad:ident $n:literal] $(, $($rest:tt)*)?) => {
        $n + $crate::le_size!($($($rest)*)?)
    };
    ($f:ident : $t:ty $(, $($rest:tt)*)?) => {
        <$t as $crate::le::Field>::BYTES + $crate::le_size!($($($rest)*)?)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_bytes_are_the_discriminants_and_unknown_bytes_are_errors() {
        for v in 0..=u8::MAX {
            if let Some(s) = Side::from_u8(v) {
                assert_eq!(s as u8, v);
            }
            if let Some(t) = OrderType::from_u8(v) {
                assert_eq!(t as u8, v);
            }
            if let Some(t) = TimeInForce::from_u8(v) {
                assert_eq!(t as u8, v);
            }
            if let Some(s) = StpMode::from_u8(v) {
                assert_eq!(s as u8, v);
            }
        }
        assert_eq!(Side::from_u8(2), None);
        assert_eq!(OrderType::from_u8(4), None);
        assert_eq!(TimeInForce::from_u8(5), None);
        assert_eq!(StpMode::from_u8(5), None);
        let mut r = LeReader::new(&[3]);
        assert_eq!(
            r.get::<TimeInForce>("tif"),
            Ok(TimeInForce::Gtd),
            "3 is GTD"
        );
        let mut r = LeReader::new(&[9]);
        assert_eq!(
            r.get::<StpMode>("stp"),
            Err(FieldError::BadEnum {
                field: "stp",
                value: 9
            })
        );
    }

    fn table_is_consistent<T: crate::types::Vocab + PartialEq + std::fmt::Debug>(
        byte: fn(T) -> u8,
        from_u8: fn(u8) -> Option<T>,
        from_name: fn(&str) -> Option<T>,
    ) {
        for pair in T::ALL.windows(2) {
            assert!(
                byte(pair[0]) < byte(pair[1]),
                "{:?} before {:?}",
                pair[0],
                pair[1]
            );
        }
        for &v in T::ALL {
            assert_eq!(from_u8(byte(v)), Some(v));
            assert_eq!(from_name(v.name()), Some(v));
            assert_eq!(from_name(&v.name().to_ascii_lowercase()), None);
        }
        let known = (0..=u8::MAX).filter(|&b| from_u8(b).is_some()).count();
        assert_eq!(known, T::ALL.len());
    }

    #[test]
    fn every_vocabulary_table_is_in_byte_order_and_round_trips_bytes_and_names() {
        table_is_consistent(|v: Side| v as u8, Side::from_u8, Side::from_name);
        table_is_consistent(
            |v: OrderType| v as u8,
            OrderType::from_u8,
            OrderType::from_name,
        );
        table_is_consistent(
            |v: TimeInForce| v as u8,
            TimeInForce::from_u8,
            TimeInForce::from_name,
        );
        table_is_consistent(|v: StpMode| v as u8, StpMode::from_u8, StpMode::from_name);
        table_is_consistent(
            |v: Liquidity| v as u8,
            Liquidity::from_u8,
            Liquidity::from_name,
        );
        table_is_consistent(
            |v: CancelReason| v as u8,
            CancelReason::from_u8,
            CancelReason::from_name,
        );
        assert_eq!(TimeInForce::from_name("DAY"), Some(TimeInForce::Day));
        assert_eq!(
            CancelReason::from_name("STP"),
            Some(CancelReason::SelfTrade)
        );
    }

    #[test]
    fn reads_past_the_end_are_zero_and_not_exact_and_writes_past_the_end_are_dropped() {
        let mut r = LeReader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), 0x0201);
        assert_eq!(r.u32(), 0);
        assert!(!r.exact());
        let mut r = LeReader::new(&[0, 1]);
        assert_eq!(r.zeros(2), Err(FieldError::NonZero { field: "padding" }));
        let mut buf = [0xAAu8; 3];
        let mut w = LeWriter::new(&mut buf, 1);
        w.u8(1).u16(0xFFFF);
        assert_eq!(w.at(), 4);
        assert_eq!(buf, [0xAA, 1, 0xAA]);
        let mut r = LeReader::new(&[2]);
        assert_eq!(r.get::<bool>("f"), Err(FieldError::BadFlags { value: 2 }));
    }
}
