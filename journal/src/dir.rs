//! The journal directory: which files are segments and snapshots, the writer's lock file, and
//! `fsync` of the directory itself (so that creating, renaming and removing files is durable).
//!
//! ```text
//! DIR/journal.lock                              held (flock) by the one writer
//! DIR/journal.created                           written once, when the journal is created
//! DIR/segment-00000000000000000000.rbj          segments, by index
//! DIR/snapshot-00000000000000001234.rbs         snapshots, by the sequence they cover
//! ```
//! Other files are ignored (and reported by `ringbook journal verify`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::JournalError;
use crate::format::{
    parse_segment_file_name, parse_snapshot_file_name, segment_file_name, snapshot_file_name,
};

/// The name of the writer's lock file.
pub const LOCK_FILE_NAME: &str = "journal.lock";

/// The name of the marker file a writer leaves when it creates a journal (and adds to a
/// journal that has segments but no marker). A directory with the marker and no segment file
/// lost its segments: recovery refuses it instead of starting an empty journal.
pub const CREATED_FILE_NAME: &str = "journal.created";

/// The path of segment `index` in `dir`.
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(segment_file_name(index))
}

/// Rewrites `path` to the path of segment `index` in `dir`, reusing its buffer: no heap
/// allocation once the buffer has held one such path (every segment path in a directory has
/// the same length).
pub(crate) fn set_segment_path(path: &mut PathBuf, dir: &Path, index: u64) {
    let mut name = [0u8; crate::format::SEGMENT_FILE_NAME_LEN];
    let name = crate::format::segment_file_name_into(index, &mut name);
    let os = path.as_mut_os_string();
    os.clear();
    os.push(dir.as_os_str());
    path.push(name);
}

/// The path of the snapshot covering `sequence` in `dir`.
pub fn snapshot_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(snapshot_file_name(sequence))
}

/// Opens `path` with `options`, failing unless it is a regular file (following symlinks):
/// opening a FIFO given a segment's or snapshot's name would block until its other end came (a
/// red-team pass hung `journal verify` so), and opening a device can have effects of its own (a
/// watchdog arms, a tape rewinds, a terminal becomes the controlling one). So the path is
/// checked first and only a regular file is opened — with `O_NONBLOCK` and `O_NOCTTY` — and
/// what was opened is checked again on the descriptor: a FIFO or a device put in the file's
/// place between the check and the open cannot block it or become anyone's terminal. Refused:
/// an error for which [`is_not_regular`] is true (a FIFO opened for writing with no reader and
/// a directory opened for writing, which `open` itself refuses in that race, included).
/// `O_NONBLOCK` stays set: it has no effect on a regular file's reads, writes or mappings.
/// Custom flags set on `options` are replaced. (Public: the tools open the files a person
/// hands them — bots configs, backtest parameters — the same way.)
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let refused = || io::Error::new(io::ErrorKind::InvalidInput, NotRegular);
    if !fs::metadata(path)?.is_file() {
        return Err(refused());
    }
    open_checked(path, options)
}

/// [`open_regular`] after its check of the path: what a race that put a FIFO, a device or a
/// directory in the file's place after that check meets.
fn open_checked(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let refused = || io::Error::new(io::ErrorKind::InvalidInput, NotRegular);
    let file = match options
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::EISDIR)) => {
            return Err(refused())
        }
        Err(e) => return Err(e),
    };
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(refused())
    }
}

/// Whether `e` is [`open_regular`]'s refusal of something that is not a regular file.
pub fn is_not_regular(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}

/// [`open_regular`]'s refusal.
#[derive(Debug)]
struct NotRegular;

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file")
    }
}

impl std::error::Error for NotRegular {}

/// What a journal directory holds, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirListing {
    /// Segment files `(index, path)`, in index order.
    pub segments: Vec<(u64, PathBuf)>,
    /// Snapshot files `(sequence, path)`, in sequence order.
    pub snapshots: Vec<(u64, PathBuf)>,
    /// Every other entry (except the lock file).
    pub other: Vec<PathBuf>,
}

/// Lists `dir`. A missing directory is an error.
pub fn list(dir: &Path) -> Result<DirListing, JournalError> {
    let mut listing = DirListing::default();
    let entries = fs::read_dir(dir).map_err(|e| JournalError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io("list", dir, e))?;
        let name = entry.file_name();
        let path = entry.path();
        match name.to_str() {
            Some(n) if n == LOCK_FILE_NAME || n == CREATED_FILE_NAME => {}
            Some(n) => {
                if let Some(index) = parse_segment_file_name(n) {
                    listing.segments.push((index, path));
                } else if let Some(sequence) = parse_snapshot_file_name(n) {
                    listing.snapshots.push((sequence, path));
                } else {
                    listing.other.push(path);
                }
            }
            None => listing.other.push(path),
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    listing.other.sort();
    Ok(listing)
}

/// `fsync` on the directory, so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io("fsync directory", dir, e))
}

/// The writer's exclusive lock on a journal directory (`flock` on `journal.lock`), released
/// when dropped or when the process dies.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock without waiting; [`JournalError::Locked`] if another writer holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, JournalError> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| JournalError::io("open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(JournalError::Locked { path }),
            Err(fs::TryLockError::Error(e)) => Err(JournalError::io("lock", &path, e)),
        }
    }
}

/// Whether the journal in `dir` has its creation marker.
pub(crate) fn has_marker(dir: &Path) -> bool {
    dir.join(CREATED_FILE_NAME).exists()
}

/// Writes the creation marker (with `durable`, the file and the directory are synced).
pub(crate) fn write_marker(dir: &Path, durable: bool) -> Result<(), JournalError> {
    let path = dir.join(CREATED_FILE_NAME);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| JournalError::io("create marker", &path, e))?;
    let mut file = file;
    io::Write::write_all(
        &mut file,
        b"ringbook journal: segments and snapshots live in this directory\n",
    )
    .map_err(|e| JournalError::io("write marker", &path, e))?;
    if durable {
        file.sync_all()
            .map_err(|e| JournalError::io("fsync marker", &path, e))?;
        sync_dir(dir)?;
    }
    Ok(())
}

/// Creates `dir` (and parents) if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), JournalError> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(JournalError::io("create directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO is refused whichever way it is opened, without blocking, both by the check of the
    /// path and by the open that follows it (what a FIFO put in a file's place after the check
    /// meets: before, the check and a plain blocking open were two steps, and such a FIFO
    /// blocked the open).
    #[test]
    fn open_regular_refuses_a_fifo_without_blocking() {
        use std::os::unix::ffi::OsStrExt;
        let dir =
            std::env::temp_dir().join(format!("ringbook-open-regular-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = fs::remove_file(&fifo);
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file system entry.
        #[allow(unsafe_code)]
        let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(made, 0, "mkfifo: {}", io::Error::last_os_error());
        for open in [open_regular, open_checked] {
            for options in [
                OpenOptions::new().read(true),
                OpenOptions::new().read(true).write(true),
                OpenOptions::new().write(true),
            ] {
                let e = open(&fifo, options).unwrap_err();
                assert!(is_not_regular(&e), "{e}");
                assert_eq!(e.to_string(), "not a regular file");
            }
            for options in [
                OpenOptions::new().read(true),
                OpenOptions::new().write(true),
            ] {
                let e = open(&dir, options).unwrap_err();
                assert!(is_not_regular(&e), "{e}");
            }
        }
        // Another error is not a refusal.
        let e = open_regular(&dir.join("missing"), OpenOptions::new().read(true)).unwrap_err();
        assert!(
            !is_not_regular(&e) && e.kind() == io::ErrorKind::NotFound,
            "{e}"
        );
        let file = dir.join("file");
        fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file, OpenOptions::new().read(true)).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
