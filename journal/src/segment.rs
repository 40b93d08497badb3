//! Segment files: creating, sizing and mapping them, and writing and reading their header.
//!
//! A segment is created at its full length (`ftruncate`, sparse) and never resized afterwards,
//! except by recovery cutting away a torn tail. The writer writes the header only when it
//! starts using the segment (it needs the first sequence), so a segment created ahead of time by
//! the pre-toucher is all zeros until then, and readers and recovery treat a zero header as
//! "not started".

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::JournalError;
use crate::format::{HeaderError, SegmentHeader, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use crate::mapping::Mapping;

/// The magic as the native-order word that is stored and loaded atomically.
pub(crate) const MAGIC_WORD: u64 = u64::from_ne_bytes(SEGMENT_MAGIC);

/// A segment mapped read-write: the writer's (and the pre-toucher's) view.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) index: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) map: Mapping,
}

impl Segment {
    /// Creates segment `index` in `dir`, `len_bytes` long (sparse) and mapped. With `durable`,
    /// the file and the directory entry are synced, so the segment survives a power loss.
    pub(crate) fn create(
        dir: &Path,
        index: u64,
        len_bytes: u64,
        durable: bool,
    ) -> Result<Segment, JournalError> {
        let path = dir::segment_path(dir, index);
        let (file, map) = create_file(dir, &path, len_bytes, durable)?;
        Ok(Segment {
            index,
            path,
            file,
            map,
        })
    }

    /// Turns this segment object, which no one else holds, into a newly created segment
    /// `index`: the old file is closed and unmapped, and the path buffer is reused, so no heap
    /// allocation happens (the pre-toucher recycles the segment the writer left this way, and a
    /// roll costs system calls only).
    pub(crate) fn recreate(
        &mut self,
        dir: &Path,
        index: u64,
        len_bytes: u64,
        durable: bool,
    ) -> Result<(), JournalError> {
        dir::set_segment_path(&mut self.path, dir, index);
        let (file, map) = create_file(dir, &self.path, len_bytes, durable)?;
        self.index = index;
        self.map = map; // unmaps the old segment
        self.file = file; // closes it
        Ok(())
    }

    /// Maps an existing segment read-write (recovery, under the directory lock).
    pub(crate) fn open_existing(path: &Path, index: u64) -> Result<Segment, JournalError> {
        let file = dir::open_regular(path, OpenOptions::new().read(true).write(true))
            .map_err(|e| JournalError::io("open segment", path, e))?;
        let map = Mapping::read_write(&file).map_err(|e| JournalError::io("map", path, e))?;
        Ok(Segment {
            index,
            path: path.to_path_buf(),
            file,
            map,
        })
    }

    /// Mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Writes the header that starts the segment at `first_sequence`. The magic goes last, with
    /// `Release`: a reader that sees it sees the whole header.
    pub(crate) fn write_header(&self, first_sequence: u64) {
        let header = SegmentHeader {
            segment_index: self.index,
            first_sequence,
            segment_len_bytes: self.len() as u64,
        }
        .encode();
        assert_eq!(
            self.map.load_u64_acquire(0),
            0,
            "segment header written twice"
        );
        // SAFETY: the writer is the only one writing a segment, and nothing reads bytes 8..64
        // until the magic below is non-zero: this range is uncommitted and exclusively ours.
        let rest = unsafe { self.map.bytes_mut(8, SEGMENT_HEADER_LEN - 8) };
        rest.copy_from_slice(&header[8..]);
        self.map.store_u64_release(0, MAGIC_WORD);
    }

    /// Reads back the header (the writer's own assertion that it wrote what it meant to).
    pub(crate) fn header(&self) -> Result<SegmentHeader, HeaderError> {
        read_header(&self.map)
    }
}

/// A segment mapped read-only: the readers' view. The mapping covers the file as it was when
/// opened (a file shorter than its header says is read as if the rest were zeros).
#[derive(Debug)]
pub(crate) struct ReadSegment {
    pub(crate) index: u64,
    pub(crate) path: PathBuf,
    pub(crate) file_len: u64,
    /// `None` for an empty file (nothing to map).
    pub(crate) map: Option<Mapping>,
}

impl ReadSegment {
    pub(crate) fn open(path: &Path, index: u64) -> Result<ReadSegment, JournalError> {
        let file = dir::open_regular(path, OpenOptions::new().read(true))
            .map_err(|e| JournalError::io("open segment", path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| JournalError::io("stat segment", path, e))?
            .len();
        let map_len =
            usize::try_from(file_len).map_err(|_| JournalError::io("map", path, too_big()))?;
        let map = if map_len == 0 {
            None
        } else {
            Some(Mapping::read_only(&file, map_len).map_err(|e| JournalError::io("map", path, e))?)
        };
        Ok(ReadSegment {
            index,
            path: path.to_path_buf(),
            file_len,
            map,
        })
    }

    /// The header, or why there is none. A file shorter than a header reads as unwritten.
    pub(crate) fn header(&self) -> Result<SegmentHeader, HeaderError> {
        match &self.map {
            Some(map) => read_header(map),
            None => Err(HeaderError::Unwritten),
        }
    }

    /// For a segment whose header is not (validly) written: the offset of the last byte that
    /// no crash of the writer can have left there, if any — so the file is damage, or not a
    /// segment of ours, rather than an unused pre-allocated one. A segment file is created
    /// empty and then sized to its full length in one call, before anything is written, so:
    /// - a file at least a header long may hold a torn header (a crash while it was written),
    ///   but nothing after it;
    /// - a shorter, non-empty file holds nothing at all (a stray file given a segment's name).
    pub(crate) fn data_without_header(&self) -> Option<usize> {
        let map = self.map.as_ref()?;
        let from = if map.len() < SEGMENT_HEADER_LEN {
            0
        } else {
            SEGMENT_HEADER_LEN
        };
        crate::scan::last_non_zero_byte(map, from, map.len())
    }

    /// Whether this is an unused segment, never started: its header is unwritten or torn (no
    /// magic, or a bad checksum or fixed field) and nothing follows it. What recovery removes
    /// (or starts) after the last started segment, and what `truncate` lets follow it.
    pub(crate) fn unused(&self) -> bool {
        matches!(
            self.header(),
            Err(HeaderError::Unwritten
                | HeaderError::BadChecksum { .. }
                | HeaderError::BadField { .. })
        ) && self.data_without_header().is_none()
    }
}

/// Creates the file at `path` (new, `len_bytes` long, sparse; synced with its directory entry
/// with `durable`) and maps it read-write.
fn create_file(
    dir: &Path,
    path: &Path,
    len_bytes: u64,
    durable: bool,
) -> Result<(File, Mapping), JournalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| JournalError::io("create segment", path, e))?;
    file.set_len(len_bytes)
        .map_err(|e| JournalError::io("size segment", path, e))?;
    if durable {
        file.sync_all()
            .map_err(|e| JournalError::io("fsync segment", path, e))?;
        dir::sync_dir(dir)?;
    }
    let map = Mapping::read_write(&file).map_err(|e| JournalError::io("map", path, e))?;
    assert_eq!(map.len() as u64, len_bytes);
    // A fresh segment is all holes and is only ever written through this mapping: readahead
    // would zero-fill megabytes of the page cache on one fault (8 MiB here) — the cost of a
    // step of pre-touching would depend on where it falls instead of on its size.
    map.no_readahead();
    Ok((file, map))
}

fn too_big() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large to map")
}

/// Reads a header through its commit word: zero magic means unwritten.
pub(crate) fn read_header(map: &Mapping) -> Result<SegmentHeader, HeaderError> {
    if map.len() < SEGMENT_HEADER_LEN {
        // A torn file shorter than a header: treated as unwritten (its body is checked apart).
        return Err(HeaderError::Unwritten);
    }
    if map.load_u64_acquire(0) == 0 {
        return Err(HeaderError::Unwritten);
    }
    // SAFETY: the magic is non-zero, so the header is committed (the writer stored the magic
    // last, with Release, and our Acquire load saw it) and is never written again.
    let bytes = unsafe { map.bytes(0, SEGMENT_HEADER_LEN) };
    SegmentHeader::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh segment's mapping has readahead off (`MADV_RANDOM`: `rr` in the mapping's
    /// `VmFlags`), so a pre-touch step faults what it asks for and no more.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_fresh_segment_is_mapped_without_readahead() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 7, 1 << 20, false).unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let path = segment.path.to_str().unwrap();
        let mut lines = smaps.lines().skip_while(|l| !l.ends_with(path));
        assert!(lines.next().is_some(), "the segment is mapped");
        let flags = lines
            .find(|l| l.starts_with("VmFlags:"))
            .expect("VmFlags line");
        assert!(
            flags.split_whitespace().any(|f| f == "rr"),
            "readahead is on: {flags}"
        );
    }
}
