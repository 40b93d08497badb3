//! Transparent huge pages for the large tables allocated at start (the order pool, the
//! client-order-id index's bucket heads, the per-slot notionals).
//!
//! A pool sized for millions of orders spans hundreds of megabytes; with 4 KiB pages each random
//! access to it is also a TLB miss once it spans more than the TLB reaches (a few MiB). Where the
//! OS offers transparent huge pages on request (Linux with
//! `/sys/kernel/mm/transparent_hugepage/enabled` at `madvise` or `always`), [`filled_vec`] asks
//! for them with `madvise(MADV_HUGEPAGE)` *before* the table is first written, so the kernel backs
//! it with 2 MiB pages as it faults in. Elsewhere, or when the kernel refuses (THP `never`, an
//! old kernel), the call fails harmlessly and the table has ordinary pages: same contents, same
//! behaviour, only the TLB reach differs. `[capacity] huge_pages = false` turns the request off
//! (docs/configuration.md); docs/benchmarks.md has the measured effect.

/// A vector of `n` copies of `value`, backed by transparent huge pages where the OS offers them
/// and `huge` asks for it. Every element is written here (the pages are faulted in at start,
/// not on the hot path).
pub(crate) fn filled_vec<T: Clone>(n: usize, value: T, huge: bool) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    if huge {
        advise_huge(v.as_mut_ptr().cast::<u8>(), n * std::mem::size_of::<T>());
    }
    v.resize(n, value);
    v
}

/// Below this a table gains nothing from huge pages.
const THRESHOLD: usize = 2 << 20;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_huge(start: *mut u8, len: usize) {
    const PAGE: usize = 4096;
    const MADV_HUGEPAGE: i32 = 14;
    extern "C" {
        fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
    }
    if len < THRESHOLD {
        return;
    }
    // madvise wants a page-aligned start; the allocation's whole pages inside it suffice.
    let from = (start as usize).next_multiple_of(PAGE);
    let to = (start as usize + len) & !(PAGE - 1);
    if to > from {
        // SAFETY: [from, to) lies inside the allocation `start .. start + len` this process
        // owns; MADV_HUGEPAGE changes only how the kernel backs it, never its contents or
        // validity. A failure (no THP support) leaves ordinary pages and is ignored.
        unsafe { madvise(from as *mut u8, to - from, MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_start: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_do_not_depend_on_the_request() {
        for huge in [false, true] {
            let v = filled_vec(THRESHOLD, 7u32, huge);
            assert_eq!(v.len(), THRESHOLD);
            assert!(v.iter().all(|&x| x == 7));
        }
        assert!(filled_vec(0, 1u8, true).is_empty());
    }
}
