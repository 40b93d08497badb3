//! A memory-mapped segment file and the only `unsafe` memory access in the crate.
//!
//! A [`Mapping`] is a `memmap2::MmapRaw`: a raw pointer and a length, shared between the writer
//! and any number of readers (threads of this process, or other processes mapping the same
//! file). Rust references into it are created only for byte ranges nobody is writing:
//!
//! - **The writer** owns the bytes past the last committed frame. It fills a frame's body through
//!   a `&mut [u8]` that covers exactly that frame minus its length word, then publishes the frame
//!   by storing the length word with `Release` ([`Mapping::store_u32_release`]).
//! - **Readers** `Acquire`-load a frame's length word ([`Mapping::load_u32_acquire`]); only when
//!   it is non-zero do they take a `&[u8]` of the frame. The Release/Acquire pair makes every
//!   byte the writer wrote before the length visible to the reader, and the writer never touches
//!   a committed frame again, so the shared reference is never aliased by a write.
//! - **Segment headers** follow the same protocol with the 8-byte magic as the commit word.
//!
//! Across processes the same pairing holds: both map the same page-cache pages (`MAP_SHARED`),
//! and the hardware's ordering for aligned atomic accesses does not care which process issued
//! them.
//!
//! What is *not* protected: another process truncating or rewriting a segment behind our back
//! (only a writer recovering a crashed journal truncates, under the directory lock, before any
//! reader should be started), and readers that look *past* the committed end to tell a torn tail
//! from mid-segment corruption ([`crate::scan`]): those scans are for journals without a live
//! writer in this process, as their documentation says.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{Advice, MmapOptions, MmapRaw, UncheckedAdvice};

/// A mapped segment file (read-write for the writer, read-only for readers).
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Maps all of `file` read-write (shared). The file must be open for reading and writing.
    pub(crate) fn read_write(file: &File) -> io::Result<Mapping> {
        let raw = MmapOptions::new().map_raw(file)?;
        Ok(Mapping { raw })
    }

    /// Maps the first `len` bytes of `file` read-only (shared).
    pub(crate) fn read_only(file: &File, len: usize) -> io::Result<Mapping> {
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(Mapping { raw })
    }

    /// Mapped length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    #[inline]
    fn check(&self, offset: usize, len: usize, align: usize) {
        assert!(
            offset.is_multiple_of(align) && len <= self.len() && offset <= self.len() - len,
            "mapping access out of bounds or misaligned: offset {offset}, len {len}, mapped {}",
            self.len()
        );
    }

    /// `Acquire`-loads the little-endian `u32` at `offset` (4-byte aligned).
    #[inline]
    pub(crate) fn load_u32_acquire(&self, offset: usize) -> u32 {
        self.check(offset, 4, 4);
        // SAFETY: the range is inside the mapping (checked) and 4-byte aligned (the mapping is
        // page aligned and `offset % 4 == 0`), so it is a valid `AtomicU32` location for the
        // mapping's lifetime, which outlives this call. All concurrent writers of this word use
        // atomic stores (`store_u32_release`), so this is not a data race.
        let word = unsafe { AtomicU32::from_ptr(self.raw.as_mut_ptr().add(offset).cast::<u32>()) };
        u32::from_le(word.load(Ordering::Acquire))
    }

    /// `Release`-stores `value` little-endian at `offset` (4-byte aligned): publishes every byte
    /// written before it. Writer only.
    #[inline]
    pub(crate) fn store_u32_release(&self, offset: usize, value: u32) {
        self.check(offset, 4, 4);
        // SAFETY: as in `load_u32_acquire`; the word is only ever accessed atomically once the
        // frame is live, and this store is what makes it live.
        let word = unsafe { AtomicU32::from_ptr(self.raw.as_mut_ptr().add(offset).cast::<u32>()) };
        word.store(value.to_le(), Ordering::Release);
    }

    /// `Acquire`-loads the 8 bytes at `offset` (8-byte aligned) as a native-order `u64`; used for
    /// the segment magic, compared as bytes.
    #[inline]
    pub(crate) fn load_u64_acquire(&self, offset: usize) -> u64 {
        self.check(offset, 8, 8);
        // SAFETY: inside the mapping (checked) and 8-byte aligned, so a valid `AtomicU64`
        // location; the only concurrent writer of this word stores it atomically.
        let word = unsafe { AtomicU64::from_ptr(self.raw.as_mut_ptr().add(offset).cast::<u64>()) };
        word.load(Ordering::Acquire)
    }

    /// `Release`-stores the native-order `u64` `value` at `offset` (8-byte aligned). Writer only.
    #[inline]
    pub(crate) fn store_u64_release(&self, offset: usize, value: u64) {
        self.check(offset, 8, 8);
        // SAFETY: as in `load_u64_acquire`.
        let word = unsafe { AtomicU64::from_ptr(self.raw.as_mut_ptr().add(offset).cast::<u64>()) };
        word.store(value, Ordering::Release);
    }

    /// The bytes `offset..offset + len`, shared.
    ///
    /// # Safety
    ///
    /// Nobody may write these bytes while the returned reference lives: they belong to a
    /// committed frame or header (whose commit word the caller `Acquire`-loaded as non-zero), or
    /// the caller knows no writer is active on this journal (recovery under the directory lock,
    /// offline tools).
    #[inline]
    pub(crate) unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        self.check(offset, len, 1);
        // SAFETY: in bounds (checked); the mapping lives as long as `&self`; immutability for
        // the reference's lifetime is the caller's contract above.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(offset), len) }
    }

    /// The bytes `offset..offset + len`, exclusively.
    ///
    /// # Safety
    ///
    /// The caller is the journal's single writer, the range lies past the last committed frame
    /// (so no reader holds a reference into it: readers only reference committed frames), and
    /// the caller holds no other reference into the range. The mapping must be read-write.
    #[inline]
    #[allow(clippy::mut_from_ref)] // the exclusivity is the caller's contract, as documented
    pub(crate) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        self.check(offset, len, 1);
        // SAFETY: in bounds (checked); exclusivity and writability are the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().add(offset), len) }
    }

    /// Pre-faults `offset..offset + len` writable (`MADV_POPULATE_WRITE`, Linux ≥ 5.14): page
    /// tables are filled and the file's blocks reserved, without touching the bytes, so it is
    /// safe while the writer writes elsewhere in (or even inside) the range.
    pub(crate) fn populate_write(&self, offset: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.check(offset, len, 1);
        #[cfg(target_os = "linux")]
        {
            self.raw.advise_range(Advice::PopulateWrite, offset, len)
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.raw.advise_range(Advice::WillNeed, offset, len)
        }
    }

    /// Turns readahead off for faults in this mapping (`MADV_RANDOM`): a fault maps the one page
    /// it needs. For a fresh segment, whose pages are holes: without it a single fault zero-fills
    /// a whole readahead window (`read_ahead_kb`, 8 MiB on this machine's disk), 10–40 ms of
    /// kernel time in one go on the pre-toucher (docs/benchmarks.md). Best effort: advice only.
    pub(crate) fn no_readahead(&self) {
        let _ = self.raw.advise(Advice::Random);
    }

    /// Drops this mapping's page-table entries for `offset..offset + len` (`MADV_DONTNEED`), so
    /// that the pre-toucher can take a left segment's mapping down a piece at a time instead of
    /// in one `munmap` of every page (1–9 ms for 64 MiB here, docs/benchmarks.md). The pages stay
    /// in the page cache, dirty ones stay dirty (they are written back as before), and a later
    /// access faults the same file bytes back in: nothing anyone can read changes.
    pub(crate) fn release(&self, offset: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.check(offset, len, 1);
        // SAFETY: every `Mapping` is a shared mapping of a file (`map_raw`, `map_raw_read_only`:
        // MAP_SHARED). For a shared file mapping MADV_DONTNEED only unmaps the pages; the next
        // access maps the page cache's same bytes again (it zero-fills only private anonymous or
        // copy-on-write pages, which a `Mapping` never has). So no byte any reference into the
        // mapping can observe changes.
        unsafe {
            self.raw
                .unchecked_advise_range(UncheckedAdvice::DontNeed, offset, len)
        }
    }

    /// Pre-faults the whole mapping readable (`MADV_POPULATE_READ`, Linux ≥ 5.14): one system
    /// call instead of a page fault every few pages while a reader walks the segment. Best
    /// effort: where unsupported, the reader simply takes the faults.
    pub(crate) fn prefault_read(&self) {
        #[cfg(target_os = "linux")]
        {
            let _ = self.raw.advise(Advice::PopulateRead);
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = self.raw.advise(Advice::WillNeed);
        }
    }

    /// Writes a zero byte to every page of `offset..offset + len` (the fallback pre-touch on
    /// kernels without `MADV_POPULATE_WRITE`). Only for a segment that no one else has seen yet.
    ///
    /// # Safety
    ///
    /// No other thread of this process may access the range, and the range must be all zeros
    /// (a fresh segment), so that other processes mapping it observe no change.
    pub(crate) unsafe fn touch_pages_zero(&self, offset: usize, len: usize) {
        self.check(offset, len, 1);
        let mut at = offset;
        while at < offset + len {
            // SAFETY: in bounds; exclusive by the caller's contract; writing the zero that is
            // already there changes nothing anyone can observe.
            unsafe { self.raw.as_mut_ptr().add(at).write_volatile(0) };
            at = (at / crate::format::PAGE_SIZE + 1) * crate::format::PAGE_SIZE;
        }
    }

    /// `msync(MS_SYNC)` of `offset..offset + len` (rounded out to pages).
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.check(offset, len, 1);
        self.raw.flush_range(offset, len)
    }
}
