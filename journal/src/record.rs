//! A journal record as readers see it: borrowed from the mapped segment, never copied.

/// One record: what `append` was given. The payload borrows the segment's mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's sequence (contiguous across the journal).
    pub sequence: u64,
    /// The caller's record type.
    pub record_type: u16,
    /// The caller's timestamp, in nanoseconds.
    pub timestamp_ns: u64,
    /// The payload bytes (8-byte aligned in the mapping).
    pub payload: &'a [u8],
}

/// Where a record's frame lies: its segment and byte offset in the segment file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordPosition {
    /// The segment's index.
    pub segment_index: u64,
    /// Byte offset of the frame (its length word) in the segment file.
    pub offset: u64,
    /// The frame's whole length, padding included.
    pub frame_len_bytes: u32,
}
