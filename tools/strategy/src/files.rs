//! Reading and writing the files a person hands the tools (bots configs, proposals) safely:
//! only regular files are read (a FIFO or a device would block or never end), and a file
//! rewritten in place is replaced whole or not at all.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// The text of `path`, which must be a regular file (or a symbolic link to one): a FIFO, a
/// device or a directory is refused without being opened, and not even a FIFO put in the
/// file's place after that check blocks the open ([`ringbook_journal::open_regular`]).
pub fn read_regular(path: &Path) -> Result<String, String> {
    let mut f = ringbook_journal::open_regular(path, std::fs::OpenOptions::new().read(true))
        .map_err(|e| {
            if ringbook_journal::is_not_regular(&e) {
                format!(
                    "{}: not a regular file (a FIFO, device or directory is not read)",
                    path.display()
                )
            } else {
                format!("cannot read {}: {e}", path.display())
            }
        })?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text)
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same directory is written,
/// flushed to disk and renamed over it, so a failed write (a full disk) leaves the old file as
/// it was. A symbolic link is followed (its target is replaced); the old file's permissions
/// are kept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomic_with(path, bytes, |f, b| f.write_all(b))
}

/// [`write_atomic`] with the write itself supplied (tests make it fail halfway).
pub(crate) fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    write: impl FnOnce(&mut std::fs::File, &[u8]) -> std::io::Result<()>,
) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let target: PathBuf = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(fail)?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if target.file_name().is_none() {
        return Err(format!("cannot write {}: no file name", path.display()));
    }
    // A name of this run's own (the process id alone repeats: 1 in every container, and a
    // file left by a killed run would be in the way), in the same directory (so the rename
    // is atomic) and of a fixed length: a name built from the target's grew past the 255-byte
    // limit on file names for targets of about 225 bytes.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = dir.join(format!(".ringbook-tmp-{}-{nanos}", std::process::id()));
    let mut created = false;
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        created = true;
        if let Ok(m) = std::fs::metadata(&target) {
            f.set_permissions(m.permissions())?;
        }
        write(&mut f, bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)?;
        // The rename itself to disk (best effort: not every file system syncs directories).
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Only what this run created (and did not rename) is removed.
        if created {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(fail(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails halfway (a full disk: a red-team finding destroyed a proposal so)
    /// leaves the old file whole and no temporary file behind.
    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proposal.json");
        std::fs::write(&p, "old contents").unwrap();
        let e = write_atomic_with(&p, b"new contents, longer", |f, b| {
            f.write_all(&b[..4])?;
            Err(std::io::Error::other("No space left on device"))
        })
        .unwrap_err();
        assert!(e.contains("proposal.json") && e.contains("No space"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old contents");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A target whose name is near the 255-byte limit is still written: the temporary name
    /// does not grow with it (a red-team pass saw "File name too long" for ~225 bytes).
    #[test]
    fn a_long_file_name_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(format!("{}.json", "p".repeat(245)));
        assert_eq!(p.file_name().unwrap().len(), 250);
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new contents").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new contents");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let fresh = dir.path().join("q".repeat(250));
        write_atomic(&fresh, b"x").unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "x");
    }

    /// A FIFO is refused without opening it (opening one blocks until a writer comes).
    #[test]
    fn a_fifo_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("bots.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo (coreutils)");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let e = read_regular(&fifo).unwrap_err();
        assert!(
            e.contains("bots.toml") && e.contains("not a regular file"),
            "{e}"
        );
        let e = read_regular(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
