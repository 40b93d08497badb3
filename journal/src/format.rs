//! The on-disk byte layout: segment header, record frame and file names.
//!
//! Everything is little-endian. This module is the single source of the numbers that
//! docs/journal-format.md tabulates; it encodes and decodes plain byte slices and knows nothing
//! about files or mappings.
//!
//! ```text
//! segment file:  [ header: 64 B ][ frame ][ frame ] … [ end-of-segment frame ][ zeros … ]
//! frame:         [ frame_length u32 | checksum u32 | sequence u64 | timestamp_ns u64 |
//!                  record_type u16 | flags u16 | payload_length u32 | payload | zero padding ]
//! ```
//!
//! A frame's `frame_length` is its whole aligned size (header, payload and padding, a multiple
//! of [`FRAME_ALIGN`]); it is the frame's *commit word*: the writer stores it last, with
//! `Release` ordering, and a frame whose length word is zero does not exist yet. The checksum is
//! CRC32C over every byte from offset 8 to the end of the frame (one contiguous, 8-aligned run:
//! the fastest shape for the CRC instruction). The length word itself is bound by the checksum
//! through `payload_length`, which it covers: a frame is valid only if
//! `frame_length == align8(32 + payload_length)`, so a changed length word is always caught.
//! Every byte of a frame, padding included, is thus checked.

/// The first 8 bytes of every segment file. Also the segment header's commit word: the writer
/// stores it last (`Release`), so a header whose magic is zero has not been written yet.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RINGBJNL";
/// The layout version this crate writes and the only one it reads (see "Versioning" in
/// docs/journal-format.md).
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Bytes of a frame header; the payload starts here, 8-byte aligned.
pub const FRAME_HEADER_LEN: usize = 32;
/// Every frame starts at a multiple of this within its segment, and is a multiple of it long.
pub const FRAME_ALIGN: usize = 8;
/// `flags` bit of the frame that seals a segment: no record follows it in this segment, and the
/// next segment's first sequence is this frame's `sequence`.
pub const FLAG_END_OF_SEGMENT: u16 = 1;
/// Every flag bit a version-1 reader understands.
pub const FLAGS_KNOWN: u16 = FLAG_END_OF_SEGMENT;
/// The largest payload the format can describe (the frame length must fit a `u32`).
pub const PAYLOAD_LEN_FORMAT_MAX: usize = u32::MAX as usize - FRAME_HEADER_LEN - FRAME_ALIGN;

/// The page size segment lengths are a multiple of (mapping, `msync` and `madvise` granularity).
pub const PAGE_SIZE: usize = 4096;

const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FRAME_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FRAME_ALIGN.is_power_of_two());
const _: () = assert!(PAGE_SIZE.is_multiple_of(FRAME_ALIGN));

// Segment header field offsets.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_HEADER_LEN: usize = 10;
const H_ALIGN: usize = 12;
const H_INDEX: usize = 16;
const H_FIRST_SEQUENCE: usize = 24;
const H_SEGMENT_LEN: usize = 32;
const H_RESERVED: usize = 40;
const H_CHECKSUM: usize = 60;

// Frame field offsets.
pub(crate) const F_LENGTH: usize = 0;
pub(crate) const F_CHECKSUM: usize = 4;
const F_SEQUENCE: usize = 8;
const F_TIMESTAMP: usize = 16;
const F_TYPE: usize = 24;
const F_FLAGS: usize = 26;
const F_PAYLOAD_LEN: usize = 28;

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's position in the journal: 0, 1, 2, … (also in its file name).
    pub segment_index: u64,
    /// The sequence of the segment's first record (or, if it has none yet, of the next one).
    pub first_sequence: u64,
    /// The segment file's length in bytes, fixed when it was created.
    pub segment_len_bytes: u64,
}

/// Why a segment header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The magic is zero: the header was never written (an unused, pre-allocated segment).
    Unwritten,
    /// The magic is neither zero nor [`SEGMENT_MAGIC`]: not a ringbook journal segment.
    BadMagic,
    /// The header checksum does not match: the header is torn or damaged.
    BadChecksum {
        /// The checksum the header holds.
        stored: u32,
        /// The checksum of the header's bytes.
        computed: u32,
    },
    /// A version this crate does not read.
    UnsupportedVersion {
        /// The version the header holds.
        found: u16,
    },
    /// A field that version 1 fixes holds another value (header length, alignment, reserved).
    BadField {
        /// The field's name.
        field: &'static str,
    },
}

impl SegmentHeader {
    /// Encodes the header, checksum included.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&SEGMENT_MAGIC);
        b[H_VERSION..H_VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[H_HEADER_LEN..H_HEADER_LEN + 2]
            .copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        b[H_ALIGN..H_ALIGN + 4].copy_from_slice(&(FRAME_ALIGN as u32).to_le_bytes());
        b[H_INDEX..H_INDEX + 8].copy_from_slice(&self.segment_index.to_le_bytes());
        b[H_FIRST_SEQUENCE..H_FIRST_SEQUENCE + 8]
            .copy_from_slice(&self.first_sequence.to_le_bytes());
        b[H_SEGMENT_LEN..H_SEGMENT_LEN + 8].copy_from_slice(&self.segment_len_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&b[..H_CHECKSUM]);
        b[H_CHECKSUM..H_CHECKSUM + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header. `bytes` must hold at least [`SEGMENT_HEADER_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        assert!(bytes.len() >= SEGMENT_HEADER_LEN);
        let magic = &bytes[H_MAGIC..H_MAGIC + 8];
        if magic == [0u8; 8] {
            return Err(HeaderError::Unwritten);
        }
        if magic != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let stored = u32_at(bytes, H_CHECKSUM);
        let computed = crc32c::crc32c(&bytes[..H_CHECKSUM]);
        if stored != computed {
            return Err(HeaderError::BadChecksum { stored, computed });
        }
        let version = u16_at(bytes, H_VERSION);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion { found: version });
        }
        if usize::from(u16_at(bytes, H_HEADER_LEN)) != SEGMENT_HEADER_LEN {
            return Err(HeaderError::BadField {
                field: "header_length",
            });
        }
        if u32_at(bytes, H_ALIGN) as usize != FRAME_ALIGN {
            return Err(HeaderError::BadField {
                field: "frame_alignment",
            });
        }
        if bytes[H_RESERVED..H_CHECKSUM].iter().any(|&b| b != 0) {
            return Err(HeaderError::BadField { field: "reserved" });
        }
        let header = SegmentHeader {
            segment_index: u64_at(bytes, H_INDEX),
            first_sequence: u64_at(bytes, H_FIRST_SEQUENCE),
            segment_len_bytes: u64_at(bytes, H_SEGMENT_LEN),
        };
        let len = header.segment_len_bytes;
        if !len.is_multiple_of(PAGE_SIZE as u64)
            || len < (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64
        {
            return Err(HeaderError::BadField {
                field: "segment_length",
            });
        }
        Ok(header)
    }
}

/// The fixed-size part of a frame, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whole frame length in bytes, padding included.
    pub frame_len: u32,
    /// The stored CRC32C.
    pub checksum: u32,
    /// Record sequence (for an end-of-segment frame: the next segment's first sequence).
    pub sequence: u64,
    /// Record timestamp in nanoseconds (opaque to the journal).
    pub timestamp_ns: u64,
    /// Record type (opaque to the journal).
    pub record_type: u16,
    /// Frame flags ([`FLAG_END_OF_SEGMENT`]).
    pub flags: u16,
    /// Payload bytes (excluding padding).
    pub payload_len: u32,
}

/// Why a frame was rejected. Detected in this order, so a torn frame reports the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length word is not a multiple of 8 at least 32, or the frame would not fit the
    /// segment with room left for an end-of-segment frame.
    BadLength {
        /// The length word.
        frame_len: u32,
    },
    /// The frame runs past the end of a file that is shorter than its header says.
    PastEndOfFile {
        /// The length word.
        frame_len: u32,
    },
    /// The checksum does not match the frame's bytes.
    BadChecksum {
        /// The checksum the frame holds.
        stored: u32,
        /// The checksum of the frame's bytes.
        computed: u32,
    },
    /// Unknown flag bits are set.
    UnknownFlags {
        /// The flags field.
        flags: u16,
    },
    /// The payload length does not agree with the frame length (or an end-of-segment frame has
    /// a payload).
    BadPayloadLength {
        /// The payload length field.
        payload_len: u32,
        /// The length word.
        frame_len: u32,
    },
    /// The segment has no room for even an end-of-segment frame at this offset.
    NoRoom,
}

impl std::fmt::Display for FrameError {
    /// For people (verify, recovery and replay messages): what is wrong with the frame, with
    /// its numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FrameError::BadLength { frame_len } => write!(
                f,
                "a record whose length word {frame_len} is not a valid frame length here"
            ),
            FrameError::PastEndOfFile { frame_len } => write!(
                f,
                "a record of {frame_len} byte(s) that runs past the end of the file"
            ),
            FrameError::BadChecksum { stored, computed } => write!(
                f,
                "a record whose checksum does not match (stored {stored:#010x}, computed \
                 {computed:#010x})"
            ),
            FrameError::UnknownFlags { flags } => {
                write!(f, "a record with unknown flag bits {flags:#06x}")
            }
            FrameError::BadPayloadLength {
                payload_len,
                frame_len,
            } => write!(
                f,
                "a record whose payload length {payload_len} does not fit its frame length \
                 {frame_len}"
            ),
            FrameError::NoRoom => write!(f, "no room for an end-of-segment frame"),
        }
    }
}

/// A frame's aligned length for a payload of `payload_len` bytes.
#[inline]
pub const fn frame_len_for(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// The frame checksum: CRC32C over `body`, the frame's bytes from offset 8 to its end.
#[inline]
pub fn frame_checksum(body: &[u8]) -> u32 {
    crc32c::crc32c(body)
}

/// Writes the frame header's fields from offset 8 to 32 into `frame_from_8` (the frame's bytes
/// starting at offset 8). The length word and checksum are the caller's.
#[inline]
pub(crate) fn encode_frame_fields(
    frame_from_8: &mut [u8],
    sequence: u64,
    timestamp_ns: u64,
    record_type: u16,
    flags: u16,
    payload_len: u32,
) {
    const B: usize = F_SEQUENCE;
    frame_from_8[F_SEQUENCE - B..F_SEQUENCE - B + 8].copy_from_slice(&sequence.to_le_bytes());
    frame_from_8[F_TIMESTAMP - B..F_TIMESTAMP - B + 8].copy_from_slice(&timestamp_ns.to_le_bytes());
    frame_from_8[F_TYPE - B..F_TYPE - B + 2].copy_from_slice(&record_type.to_le_bytes());
    frame_from_8[F_FLAGS - B..F_FLAGS - B + 2].copy_from_slice(&flags.to_le_bytes());
    frame_from_8[F_PAYLOAD_LEN - B..F_PAYLOAD_LEN - B + 4]
        .copy_from_slice(&payload_len.to_le_bytes());
}

/// Decodes and checks one whole frame. `frame` is exactly `frame_len` bytes, starting with the
/// length word; its length has been checked against the segment by the caller.
#[inline]
pub fn decode_frame(frame: &[u8]) -> Result<FrameHeader, FrameError> {
    debug_assert!(frame.len() >= FRAME_HEADER_LEN && frame.len().is_multiple_of(FRAME_ALIGN));
    let frame_len = u32_at(frame, F_LENGTH);
    if frame_len as usize != frame.len() {
        return Err(FrameError::BadLength { frame_len });
    }
    let stored = u32_at(frame, F_CHECKSUM);
    let computed = frame_checksum(&frame[F_SEQUENCE..]);
    if stored != computed {
        return Err(FrameError::BadChecksum { stored, computed });
    }
    let header = FrameHeader {
        frame_len,
        checksum: stored,
        sequence: u64_at(frame, F_SEQUENCE),
        timestamp_ns: u64_at(frame, F_TIMESTAMP),
        record_type: u16_at(frame, F_TYPE),
        flags: u16_at(frame, F_FLAGS),
        payload_len: u32_at(frame, F_PAYLOAD_LEN),
    };
    if header.flags & !FLAGS_KNOWN != 0 {
        return Err(FrameError::UnknownFlags {
            flags: header.flags,
        });
    }
    let payload_len = header.payload_len as usize;
    let consistent = payload_len <= PAYLOAD_LEN_FORMAT_MAX
        && frame_len_for(payload_len) == frame_len as usize
        && (header.flags & FLAG_END_OF_SEGMENT == 0 || payload_len == 0);
    if !consistent {
        return Err(FrameError::BadPayloadLength {
            payload_len: header.payload_len,
            frame_len,
        });
    }
    Ok(header)
}

/// The file name of segment `index`: `segment-` and 20 decimal digits, `.rbj`. Names sort in
/// index order.
pub fn segment_file_name(index: u64) -> String {
    let mut buf = [0u8; SEGMENT_FILE_NAME_LEN];
    segment_file_name_into(index, &mut buf).to_string()
}

/// Length of every segment file name.
pub const SEGMENT_FILE_NAME_LEN: usize = 32;

/// [`segment_file_name`] written into `buf`, without allocating (a segment roll names its
/// next file this way).
pub fn segment_file_name_into(index: u64, buf: &mut [u8; SEGMENT_FILE_NAME_LEN]) -> &str {
    buf[..8].copy_from_slice(b"segment-");
    let mut v = index;
    for d in buf[8..28].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf[28..].copy_from_slice(b".rbj");
    std::str::from_utf8(buf).expect("ASCII")
}

/// The index in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, "segment-", ".rbj")
}

/// The file name of the snapshot covering `sequence`: `snapshot-` and 20 digits, `.rbs`.
pub fn snapshot_file_name(sequence: u64) -> String {
    format!("snapshot-{sequence:020}.rbs")
}

/// The sequence in a snapshot file name, if it is one.
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, "snapshot-", ".rbs")
}

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[inline]
pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_errors_read_as_sentences_with_their_numbers() {
        // They end up in verify, recovery and replay messages (once as Rust debug output:
        // "PastEndOfFile { frame_len: 48 }", a review finding).
        for (e, says) in [
            (FrameError::BadLength { frame_len: 7 }, "length word 7"),
            (FrameError::PastEndOfFile { frame_len: 48 }, "48 byte(s)"),
            (
                FrameError::BadChecksum {
                    stored: 1,
                    computed: 2,
                },
                "stored 0x00000001, computed 0x00000002",
            ),
            (FrameError::UnknownFlags { flags: 4 }, "0x0004"),
            (
                FrameError::BadPayloadLength {
                    payload_len: 9,
                    frame_len: 32,
                },
                "payload length 9",
            ),
            (FrameError::NoRoom, "no room"),
        ] {
            let text = e.to_string();
            assert!(text.contains(says) && !text.contains('{'), "{text}");
        }
    }

    #[test]
    fn header_round_trips_and_rejects_every_flipped_byte() {
        let h = SegmentHeader {
            segment_index: 7,
            first_sequence: 1234,
            segment_len_bytes: 1 << 20,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut b = bytes;
            b[i] ^= 0x5a;
            assert!(SegmentHeader::decode(&b).is_err(), "flip at {i} accepted");
        }
        assert_eq!(
            SegmentHeader::decode(&[0u8; SEGMENT_HEADER_LEN]),
            Err(HeaderError::Unwritten)
        );
    }

    #[test]
    fn frame_lengths_are_aligned() {
        assert_eq!(frame_len_for(0), 32);
        assert_eq!(frame_len_for(1), 40);
        assert_eq!(frame_len_for(8), 40);
        assert_eq!(frame_len_for(64), 96);
        assert_eq!(frame_len_for(65), 104);
    }

    fn frame(payload: &[u8], flags: u16) -> Vec<u8> {
        let len = frame_len_for(payload.len());
        let mut f = vec![0u8; len];
        encode_frame_fields(&mut f[8..], 9, 10, 11, flags, payload.len() as u32);
        f[32..32 + payload.len()].copy_from_slice(payload);
        f[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        let crc = frame_checksum(&f[8..]);
        f[4..8].copy_from_slice(&crc.to_le_bytes());
        f
    }

    #[test]
    fn frame_decodes_and_every_flipped_byte_is_caught() {
        let f = frame(b"hello, journal", 0);
        let h = decode_frame(&f).expect("valid frame");
        assert_eq!(
            (h.sequence, h.timestamp_ns, h.record_type, h.payload_len),
            (9, 10, 11, 14)
        );
        // Every byte, padding and length word included, is checked: the length word through the
        // payload length the checksum covers.
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 1;
            assert!(decode_frame(&g).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn inconsistent_frames_are_rejected_even_with_a_good_checksum() {
        assert!(matches!(
            decode_frame(&frame(b"x", 0x8000)),
            Err(FrameError::UnknownFlags { .. })
        ));
        assert!(matches!(
            decode_frame(&frame(b"x", FLAG_END_OF_SEGMENT)),
            Err(FrameError::BadPayloadLength { .. })
        ));
        let mut f = frame(b"12345678", 0);
        f[28..32].copy_from_slice(&9u32.to_le_bytes());
        let crc = frame_checksum(&f[8..]);
        f[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_frame(&f),
            Err(FrameError::BadPayloadLength { .. })
        ));
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(segment_file_name(3), "segment-00000000000000000003.rbj");
        for i in [0, 1, 9, 10, 12_345, u64::MAX / 7, u64::MAX] {
            assert_eq!(segment_file_name(i), format!("segment-{i:020}.rbj"));
        }
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("segment-3.rbj"), None);
        assert_eq!(parse_snapshot_file_name(&snapshot_file_name(99)), Some(99));
        assert_eq!(
            parse_snapshot_file_name("snapshot-00000000000000000099.rbs.tmp"),
            None
        );
    }

    /// docs/journal-format.md, the layout's specification.
    const SPEC: &str = include_str!("../../docs/journal-format.md");

    /// A spec table row: offset, size, field, the remaining cells.
    type Row = (usize, usize, String, String);

    /// The rows of the first table after the heading starting with `heading`, those whose
    /// offset and size are numbers (not `32 + n`, `n`).
    fn spec_table(heading: &str) -> Vec<Row> {
        let at = SPEC
            .lines()
            .position(|l| l.starts_with(heading))
            .unwrap_or_else(|| panic!("docs/journal-format.md has no heading {heading:?}"));
        SPEC.lines()
            .skip(at + 1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                let offset = cells.first()?.parse().ok()?;
                let size = cells.get(1)?.parse().ok()?;
                Some((
                    offset,
                    size,
                    cells.get(2)?.to_string(),
                    cells[3..].join("|"),
                ))
            })
            .collect()
    }

    /// The rows cover `0..len` back to back.
    fn assert_contiguous(what: &str, rows: &[Row], len: usize) {
        let mut end = 0;
        for (offset, size, field, _) in rows {
            assert_eq!(
                *offset, end,
                "{what}: {field:?} starts at {offset}, not {end}"
            );
            end += size;
        }
        assert_eq!(end, len, "{what}: the table covers {end} bytes, not {len}");
    }

    /// The row of `field`: its offset and size, and the rest of its cells.
    fn row<'a>(what: &str, rows: &'a [Row], field: &str) -> (usize, usize, &'a str) {
        let (offset, size, _, rest) = rows
            .iter()
            .find(|r| r.2 == field)
            .unwrap_or_else(|| panic!("{what}: no row {field:?} in docs/journal-format.md"));
        (*offset, *size, rest.as_str())
    }

    /// The sizes, offsets and values docs/journal-format.md states are the ones this module
    /// (and `snapshot.rs`, `JournalConfig`) use: change one and this fails until the document
    /// says the same.
    #[test]
    fn the_layout_is_the_one_docs_journal_format_md_states() {
        let doc = ringbook_testkit::docs::Doc::new("docs/journal-format.md", SPEC);
        let states = |phrase: String| doc.assert_says(&phrase);

        // Segment header and frame header: every field where the tables say.
        states(format!("### Segment header ({SEGMENT_HEADER_LEN} bytes)"));
        states(format!("[ header {SEGMENT_HEADER_LEN} B ]"));
        states(format!("### Record frame ({FRAME_HEADER_LEN}-byte header"));
        states(format!(
            "Frames start at offset {SEGMENT_HEADER_LEN} and at multiples of {FRAME_ALIGN}"
        ));
        states(format!(
            "A {FRAME_HEADER_LEN}-byte frame with flag bit 0 set"
        ));
        let (header, frame) = ("segment header", "frame header");
        let header_rows = spec_table("### Segment header");
        let frame_rows = spec_table("### Record frame");
        assert_contiguous(header, &header_rows, SEGMENT_HEADER_LEN);
        assert_contiguous(frame, &frame_rows, FRAME_HEADER_LEN);
        for (what, field, offset, size) in [
            (header, "magic", H_MAGIC, SEGMENT_MAGIC.len()),
            (header, "format version", H_VERSION, 2),
            (header, "header length", H_HEADER_LEN, 2),
            (header, "frame alignment", H_ALIGN, 4),
            (header, "segment index", H_INDEX, 8),
            (header, "first sequence", H_FIRST_SEQUENCE, 8),
            (header, "segment length", H_SEGMENT_LEN, 8),
            (header, "reserved", H_RESERVED, H_CHECKSUM - H_RESERVED),
            (header, "header checksum", H_CHECKSUM, 4),
            (frame, "frame length", F_LENGTH, 4),
            (frame, "checksum", F_CHECKSUM, 4),
            (frame, "sequence", F_SEQUENCE, 8),
            (frame, "timestamp (ns)", F_TIMESTAMP, 8),
            (frame, "record type", F_TYPE, 2),
            (frame, "flags", F_FLAGS, 2),
            (frame, "payload length", F_PAYLOAD_LEN, 4),
        ] {
            let rows = if what == header {
                &header_rows
            } else {
                &frame_rows
            };
            let (o, s, _) = row(what, rows, field);
            assert_eq!((o, s), (offset, size), "{what}: {field:?} (offset, size)");
        }
        // The values the header table states.
        let magic = std::str::from_utf8(&SEGMENT_MAGIC).unwrap();
        let value = |field: &str| row(header, &header_rows, field).2.to_string();
        assert!(value("magic").starts_with(&format!("`{magic}`")));
        assert_eq!(value("format version"), FORMAT_VERSION.to_string());
        assert_eq!(value("header length"), SEGMENT_HEADER_LEN.to_string());
        assert_eq!(value("frame alignment"), FRAME_ALIGN.to_string());
        assert_eq!(FLAG_END_OF_SEGMENT, 1 << 0);
        assert!(row(frame, &frame_rows, "flags")
            .2
            .starts_with("bit 0: end of segment"));

        // Snapshot container.
        let what = "snapshot header";
        let rows = spec_table("## Snapshot files");
        let header_len = crate::snapshot::SNAPSHOT_HEADER_LEN;
        assert_contiguous(what, &rows, header_len);
        let magic = std::str::from_utf8(&crate::snapshot::SNAPSHOT_MAGIC).unwrap();
        for field in [
            format!("magic `{magic}`"),
            format!("container version ({})", crate::snapshot::SNAPSHOT_VERSION),
            format!("header length ({header_len})"),
        ] {
            row(what, &rows, &field);
        }

        // Segment files.
        let default_len = crate::JournalConfig::default().segment_len_bytes;
        assert_eq!(default_len % (1 << 20), 0);
        states(format!(
            "a multiple of {PAGE_SIZE}, default {} MiB",
            default_len >> 20
        ));
    }
}
