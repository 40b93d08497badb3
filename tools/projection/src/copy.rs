//! Rows sent to PostgreSQL in its binary `COPY` format, encoded here into one buffer and handed
//! to the connection in large chunks.
//!
//! The synchronous client's `BinaryCopyInWriter` enters its runtime (`block_on`) for every row:
//! ~14 % of the projector's CPU went to that bookkeeping alone (docs/benchmarks.md, "Fifth
//! look"). The format is simple and fixed (PostgreSQL's `COPY` documentation, "Binary Format"):
//! a signature and two words, then per row the field count and per field its byte length (−1:
//! NULL) and its bytes in network order, then −1. PostgreSQL checks every row's field count and
//! every field's length against the column's type, so a row with a field missing or of the
//! wrong width fails the batch loudly. Two columns of one type swapped it cannot see: the
//! projection's tests (verify against the engine's state, tables equal across batch sizes and
//! a rebuild) guard the column order.

use std::io::Write;

use postgres::{CopyInWriter, GenericClient};

use crate::ProjectionError;

/// The buffer is handed to the connection whenever it holds this much.
const CHUNK: usize = 64 * 1024;

/// The signature, the flags word (no OIDs) and the header extension length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One `COPY … FROM STDIN BINARY` in progress.
pub(crate) struct Copy<'a> {
    w: CopyInWriter<'a>,
    buf: Vec<u8>,
    /// Fields per row (the statement's column list).
    fields: i16,
    /// Fields still to be written in the current row (checked in debug builds).
    left: i16,
}

impl std::fmt::Debug for Copy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copy")
            .field("buffered", &self.buf.len())
            .field("fields", &self.fields)
            .finish()
    }
}

impl<'a> Copy<'a> {
    /// Starts `sql` (a `COPY … FROM STDIN BINARY` naming `fields` columns).
    pub(crate) fn start<C: GenericClient>(
        client: &'a mut C,
        sql: &str,
        fields: i16,
    ) -> Result<Copy<'a>, ProjectionError> {
        let w = client.copy_in(sql)?;
        let mut buf = Vec::with_capacity(CHUNK + 1024);
        buf.extend_from_slice(HEADER);
        Ok(Copy {
            w,
            buf,
            fields,
            left: 0,
        })
    }

    /// Begins the next row.
    pub(crate) fn row(&mut self) -> Result<&mut Self, ProjectionError> {
        debug_assert_eq!(self.left, 0, "the previous row is short of fields");
        if self.buf.len() >= CHUNK {
            self.hand_over()?;
        }
        self.buf.extend_from_slice(&self.fields.to_be_bytes());
        self.left = self.fields;
        Ok(self)
    }

    #[inline]
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        debug_assert!(self.left > 0, "more fields than the row has");
        self.left -= 1;
        // Every field here is a fixed-width number or a short name.
        let len = i32::try_from(bytes.len()).expect("a COPY field under 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    /// A NULL.
    pub(crate) fn null(&mut self) -> &mut Self {
        debug_assert!(self.left > 0, "more fields than the row has");
        self.left -= 1;
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// `SMALLINT`.
    pub(crate) fn i16(&mut self, v: i16) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    /// `INTEGER`.
    pub(crate) fn i32(&mut self, v: i32) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    /// `BIGINT`.
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    /// `BOOLEAN`.
    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.field(&[u8::from(v)])
    }

    /// `TEXT`.
    pub(crate) fn text(&mut self, v: &str) -> &mut Self {
        self.field(v.as_bytes())
    }

    /// A nullable `SMALLINT`.
    pub(crate) fn opt_i16(&mut self, v: Option<i16>) -> &mut Self {
        match v {
            Some(v) => self.i16(v),
            None => self.null(),
        }
    }

    /// A nullable `INTEGER`.
    pub(crate) fn opt_i32(&mut self, v: Option<i32>) -> &mut Self {
        match v {
            Some(v) => self.i32(v),
            None => self.null(),
        }
    }

    /// A nullable `BIGINT`.
    pub(crate) fn opt_i64(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    /// A nullable `TEXT`.
    pub(crate) fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// A `u64` as `NUMERIC(20, 0)` (client order ids use the whole `u64` range).
    pub(crate) fn numeric_u64(&mut self, v: u64) -> &mut Self {
        let mut bytes = [0u8; 8 + 2 * 5];
        let len = numeric_u64(v, &mut bytes);
        self.field(&bytes[..len])
    }

    /// Ends the copy (the trailer, the rest of the buffer) and returns the rows PostgreSQL
    /// counted.
    pub(crate) fn finish(mut self) -> Result<u64, ProjectionError> {
        debug_assert_eq!(self.left, 0, "the last row is short of fields");
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.hand_over()?;
        Ok(self.w.finish()?)
    }

    fn hand_over(&mut self) -> Result<(), ProjectionError> {
        self.w.write_all(&self.buf).map_err(|e| {
            // The connection's own error, which the synchronous client always wraps (so a broken
            // connection stays a transient `Db` error and the projector retries); any other
            // would be a client library change, reported as it is.
            match e.into_inner() {
                Some(inner) => match inner.downcast::<postgres::Error>() {
                    Ok(pg) => ProjectionError::Db(*pg),
                    Err(other) => ProjectionError::Data(format!("COPY: {other}")),
                },
                None => ProjectionError::Data("COPY: the connection refused the data".into()),
            }
        })?;
        self.buf.clear();
        Ok(())
    }
}

/// NUMERIC's binary form of `v` into `out`, returning its length: digit count, weight, sign,
/// display scale, then base-10000 digits, most significant first, trailing zero digits left
/// out.
fn numeric_u64(v: u64, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u16; 5];
    let mut n = 0;
    let mut v = v;
    while v > 0 {
        digits[n] = (v % 10_000) as u16;
        v /= 10_000;
        n += 1;
    }
    digits[..n].reverse();
    let weight = if n == 0 { 0 } else { n as i16 - 1 };
    let mut len = n;
    while len > 0 && digits[len - 1] == 0 {
        len -= 1;
    }
    out[0..2].copy_from_slice(&(len as i16).to_be_bytes());
    out[2..4].copy_from_slice(&weight.to_be_bytes());
    // Sign (positive) and display scale (0).
    out[4..8].fill(0);
    for (k, d) in digits[..len].iter().enumerate() {
        out[8 + 2 * k..10 + 2 * k].copy_from_slice(&d.to_be_bytes());
    }
    8 + 2 * len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(v: u64) -> Vec<u8> {
        let mut b = [0u8; 18];
        let n = numeric_u64(v, &mut b);
        b[..n].to_vec()
    }

    #[test]
    fn numeric_digits_are_base_10000_without_trailing_zero_digits() {
        // 0: no digits.
        assert_eq!(numeric(0), [0, 0, 0, 0, 0, 0, 0, 0]);
        // 12345 = 1·10000 + 2345: two digits, weight 1.
        assert_eq!(numeric(12_345), [0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0x09, 0x29]);
        // 10^8 = 1·10000²: one digit (the two zero digits are left out), weight 2.
        assert_eq!(numeric(100_000_000), [0, 1, 0, 2, 0, 0, 0, 0, 0, 1]);
        // u64::MAX = 1844 6744 0737 0955 1615: five digits, weight 4.
        let max = numeric(u64::MAX);
        assert_eq!(&max[..8], [0, 5, 0, 4, 0, 0, 0, 0]);
        let digits: Vec<u16> = max[8..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(digits, [1844, 6744, 737, 955, 1615]);
    }
}
