//! Snapshots: a checksummed, versioned container for an opaque state blob and the sequence it
//! covers.
//!
//! What the blob holds (books, orders, accounts) and how it is encoded is the engine's business;
//! it passes its own `state_format` number so it can version that encoding. Recovery is: load
//! the newest valid snapshot, then replay the journal from `sequence + 1`.
//!
//! # Atomicity
//!
//! A snapshot is written to `.snapshot-<seq>.rbs.tmp`, `fsync`ed, renamed to
//! `snapshot-<seq>.rbs` and the directory `fsync`ed. A crash at any point leaves either no
//! snapshot for that sequence or a whole one (plus, perhaps, a stale temporary file that the
//! next write of that sequence replaces and readers ignore).
//!
//! # Choosing one
//!
//! [`load_latest`] tries snapshots from the newest down and returns the first whose header and
//! state checksums hold; damaged ones are reported, not fatal, so a damaged newest snapshot
//! falls back to the previous one.
//!
//! # Layout (64-byte header, then the state bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `RINGBSNP` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | header length (64) |
//! | 12 | 4 | `state_format` (the caller's) |
//! | 16 | 8 | `sequence` covered (the last record applied to the state) |
//! | 24 | 8 | `timestamp_ns` (the caller's; e.g. the last record's) |
//! | 32 | 8 | state length in bytes |
//! | 40 | 4 | CRC32C of the state bytes |
//! | 44 | 16 | reserved, zero |
//! | 60 | 4 | CRC32C of bytes 0..60 |

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::JournalError;
use crate::format::{parse_snapshot_file_name, u16_at, u32_at, u64_at};

/// The first 8 bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RINGBSNP";
/// The snapshot container version written and read.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 64;

/// A snapshot's header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The file.
    pub path: PathBuf,
    /// The last sequence the state includes.
    pub sequence: u64,
    /// The caller's timestamp.
    pub timestamp_ns: u64,
    /// The caller's version of its state encoding.
    pub state_format: u32,
    /// State bytes.
    pub state_len_bytes: u64,
    /// CRC32C of the state bytes.
    pub state_checksum: u32,
}

/// A loaded snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Its header.
    pub meta: SnapshotMeta,
    /// The state bytes (checksum verified).
    pub state: Vec<u8>,
}

/// Why a snapshot file was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotDamage {
    /// It could not be read.
    Unreadable(io::ErrorKind),
    /// Shorter than a header.
    TooShort,
    /// Not a snapshot file.
    BadMagic,
    /// The header checksum does not match.
    BadHeaderChecksum,
    /// A container version this crate does not read.
    UnsupportedVersion(u16),
    /// Header length or reserved bytes are wrong.
    BadField,
    /// The sequence in the file name is not the one in the header.
    NameMismatch {
        /// In the name.
        name_sequence: u64,
        /// In the header.
        header_sequence: u64,
    },
    /// The file's length is not header + state length.
    LengthMismatch {
        /// What the header implies.
        expected: u64,
        /// The file's length.
        found: u64,
    },
    /// The state bytes do not match their checksum.
    BadStateChecksum {
        /// Stored in the header.
        stored: u32,
        /// Computed.
        computed: u32,
    },
}

impl std::fmt::Display for SnapshotDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            SnapshotDamage::Unreadable(k) => write!(f, "unreadable: {k}"),
            SnapshotDamage::TooShort => write!(f, "shorter than its header"),
            SnapshotDamage::BadMagic => write!(f, "not a snapshot (bad magic)"),
            SnapshotDamage::BadHeaderChecksum => write!(f, "header checksum mismatch"),
            SnapshotDamage::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            SnapshotDamage::BadField => write!(f, "bad header field"),
            SnapshotDamage::NameMismatch {
                name_sequence,
                header_sequence,
            } => write!(
                f,
                "file name says sequence {name_sequence}, header says {header_sequence}"
            ),
            SnapshotDamage::LengthMismatch { expected, found } => {
                write!(f, "file is {found} bytes, header implies {expected}")
            }
            SnapshotDamage::BadStateChecksum { stored, computed } => write!(
                f,
                "state checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
        }
    }
}

fn encode_header(
    sequence: u64,
    timestamp_ns: u64,
    state_format: u32,
    state_len: u64,
    state_checksum: u32,
) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..10].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(SNAPSHOT_HEADER_LEN as u16).to_le_bytes());
    h[12..16].copy_from_slice(&state_format.to_le_bytes());
    h[16..24].copy_from_slice(&sequence.to_le_bytes());
    h[24..32].copy_from_slice(&timestamp_ns.to_le_bytes());
    h[32..40].copy_from_slice(&state_len.to_le_bytes());
    h[40..44].copy_from_slice(&state_checksum.to_le_bytes());
    let crc = crc32c::crc32c(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode_header(path: &Path, h: &[u8]) -> Result<SnapshotMeta, SnapshotDamage> {
    if h.len() < SNAPSHOT_HEADER_LEN {
        return Err(SnapshotDamage::TooShort);
    }
    if h[0..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotDamage::BadMagic);
    }
    if u32_at(h, 60) != crc32c::crc32c(&h[..60]) {
        return Err(SnapshotDamage::BadHeaderChecksum);
    }
    let version = u16_at(h, 8);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotDamage::UnsupportedVersion(version));
    }
    if usize::from(u16_at(h, 10)) != SNAPSHOT_HEADER_LEN || h[44..60].iter().any(|&b| b != 0) {
        return Err(SnapshotDamage::BadField);
    }
    let meta = SnapshotMeta {
        path: path.to_path_buf(),
        state_format: u32_at(h, 12),
        sequence: u64_at(h, 16),
        timestamp_ns: u64_at(h, 24),
        state_len_bytes: u64_at(h, 32),
        state_checksum: u32_at(h, 40),
    };
    let name_sequence = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_snapshot_file_name);
    if let Some(name_sequence) = name_sequence {
        if name_sequence != meta.sequence {
            return Err(SnapshotDamage::NameMismatch {
                name_sequence,
                header_sequence: meta.sequence,
            });
        }
    }
    Ok(meta)
}

/// Writes a snapshot by streaming: `create`, write the state through [`Write`], `finish`.
/// Dropped unfinished, it removes its temporary file.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    file: Option<BufWriter<File>>,
    sequence: u64,
    timestamp_ns: u64,
    state_format: u32,
    state_len: u64,
    state_checksum: u32,
}

impl SnapshotWriter {
    /// Starts the snapshot covering `sequence` in `dir`. Fails if one already exists.
    pub fn create(
        dir: impl AsRef<Path>,
        sequence: u64,
        timestamp_ns: u64,
        state_format: u32,
    ) -> Result<SnapshotWriter, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        let final_path = dir::snapshot_path(&dir, sequence);
        if final_path.exists() {
            return Err(JournalError::Snapshot {
                path: final_path,
                reason: "a snapshot for this sequence already exists",
            });
        }
        let tmp_path = dir.join(format!(".snapshot-{sequence:020}.rbs.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| JournalError::io("create snapshot", &tmp_path, e))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&[0u8; SNAPSHOT_HEADER_LEN])
            .map_err(|e| JournalError::io("write snapshot", &tmp_path, e))?;
        Ok(SnapshotWriter {
            dir,
            tmp_path,
            final_path,
            file: Some(file),
            sequence,
            timestamp_ns,
            state_format,
            state_len: 0,
            state_checksum: 0,
        })
    }

    /// Completes the snapshot: header, `fsync`, rename into place, `fsync` of the directory.
    pub fn finish(mut self) -> Result<SnapshotMeta, JournalError> {
        let tmp = self.tmp_path.clone();
        let file = self.file.take().expect("finish is called once");
        let mut file = file
            .into_inner()
            .map_err(|e| JournalError::io("write snapshot", &tmp, e.into_error()))?;
        let header = encode_header(
            self.sequence,
            self.timestamp_ns,
            self.state_format,
            self.state_len,
            self.state_checksum,
        );
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header))
            .map_err(|e| JournalError::io("write snapshot", &tmp, e))?;
        file.sync_all()
            .map_err(|e| JournalError::io("fsync snapshot", &tmp, e))?;
        drop(file);
        fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|e| JournalError::io("rename snapshot", &self.final_path, e))?;
        dir::sync_dir(&self.dir)?;
        Ok(SnapshotMeta {
            path: self.final_path.clone(),
            sequence: self.sequence,
            timestamp_ns: self.timestamp_ns,
            state_format: self.state_format,
            state_len_bytes: self.state_len,
            state_checksum: self.state_checksum,
        })
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("not finished");
        let n = file.write(buf)?;
        self.state_checksum = crc32c::crc32c_append(self.state_checksum, &buf[..n]);
        self.state_len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not finished").flush()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Unfinished: best effort, a stale temporary file is ignored by readers anyway.
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// Writes the snapshot covering `sequence` atomically (see the module docs).
pub fn write_snapshot(
    dir: impl AsRef<Path>,
    sequence: u64,
    timestamp_ns: u64,
    state_format: u32,
    state: &[u8],
) -> Result<SnapshotMeta, JournalError> {
    let mut w = SnapshotWriter::create(dir, sequence, timestamp_ns, state_format)?;
    w.write_all(state)
        .map_err(|e| JournalError::io("write snapshot", &w.tmp_path, e))?;
    w.finish()
}

/// Reads and checks a snapshot file.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, SnapshotDamage> {
    let mut bytes = Vec::new();
    crate::dir::open_regular(path, OpenOptions::new().read(true))
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| SnapshotDamage::Unreadable(e.kind()))?;
    let meta = decode_header(path, &bytes)?;
    let expected = SNAPSHOT_HEADER_LEN as u64 + meta.state_len_bytes;
    if bytes.len() as u64 != expected {
        return Err(SnapshotDamage::LengthMismatch {
            expected,
            found: bytes.len() as u64,
        });
    }
    let state = &bytes[SNAPSHOT_HEADER_LEN..];
    let computed = crc32c::crc32c(state);
    if computed != meta.state_checksum {
        return Err(SnapshotDamage::BadStateChecksum {
            stored: meta.state_checksum,
            computed,
        });
    }
    bytes.drain(..SNAPSHOT_HEADER_LEN);
    Ok(Snapshot { meta, state: bytes })
}

/// Checks a snapshot file without keeping its state (streams it through the checksum).
pub fn check_snapshot(path: &Path) -> Result<SnapshotMeta, SnapshotDamage> {
    let unreadable = |e: io::Error| SnapshotDamage::Unreadable(e.kind());
    let mut file =
        crate::dir::open_regular(path, OpenOptions::new().read(true)).map_err(unreadable)?;
    let file_len = file.metadata().map_err(unreadable)?.len();
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    if file_len < SNAPSHOT_HEADER_LEN as u64 {
        return Err(SnapshotDamage::TooShort);
    }
    file.read_exact(&mut header).map_err(unreadable)?;
    let meta = decode_header(path, &header)?;
    let expected = SNAPSHOT_HEADER_LEN as u64 + meta.state_len_bytes;
    if file_len != expected {
        return Err(SnapshotDamage::LengthMismatch {
            expected,
            found: file_len,
        });
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    let mut left = meta.state_len_bytes;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..want]).map_err(unreadable)?;
        crc = crc32c::crc32c_append(crc, &buf[..want]);
        left -= want as u64;
    }
    if crc != meta.state_checksum {
        return Err(SnapshotDamage::BadStateChecksum {
            stored: meta.state_checksum,
            computed: crc,
        });
    }
    Ok(meta)
}

/// The newest valid snapshot, and the newer ones that were damaged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatestSnapshot<T> {
    /// The newest snapshot whose checksums hold, if any.
    pub snapshot: Option<T>,
    /// Damaged snapshots newer than it (newest first), each with what is wrong.
    pub damaged: Vec<(PathBuf, SnapshotDamage)>,
}

/// Loads the newest valid snapshot in `dir`, falling back past damaged ones.
pub fn load_latest(dir: impl AsRef<Path>) -> Result<LatestSnapshot<Snapshot>, JournalError> {
    latest_with(dir.as_ref(), read_snapshot)
}

/// Like [`load_latest`], but only checks the newest valid snapshot, without keeping its state.
pub fn latest_valid(dir: impl AsRef<Path>) -> Result<LatestSnapshot<SnapshotMeta>, JournalError> {
    latest_with(dir.as_ref(), check_snapshot)
}

fn latest_with<T>(
    dir: &Path,
    check: impl Fn(&Path) -> Result<T, SnapshotDamage>,
) -> Result<LatestSnapshot<T>, JournalError> {
    let mut result = LatestSnapshot {
        snapshot: None,
        damaged: Vec::new(),
    };
    for (_, path) in dir::list(dir)?.snapshots.iter().rev() {
        match check(path) {
            Ok(s) => {
                result.snapshot = Some(s);
                break;
            }
            Err(damage) => result.damaged.push((path.clone(), damage)),
        }
    }
    Ok(result)
}
