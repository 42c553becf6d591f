//! Statistics: the `myalloc_stats` struct shared with C and Python, how it is gathered,
//! and the exit-time report (`MYALLOC_STATS=1` to stderr, `MYALLOC_STATS_FILE` as JSON).
//!
//! The struct itself lives in the small `myalloc-abi` crate, shared with readers.

use core::sync::atomic::Ordering::Relaxed;

use crate::cache::{self, Totals};
use crate::heap::HEAP;
use crate::report::Line;
use crate::sys;

pub use myalloc_abi::{MyallocStats, FIELDS, VERSION};

/// Gathers the statistics of the live process heap.
pub fn gather() -> MyallocStats {
    let totals = Totals::default();
    let mut h = HEAP.lock();
    h.ready();
    let (cached, caches) = cache::totals(&mut h, &totals);
    MyallocStats {
        size: core::mem::size_of::<MyallocStats>() as u64,
        version: VERSION,
        heap_start: h.heap_start as u64,
        brk_extent: h.brk_extent() as u64,
        brk_extent_peak: h.brk_extent_peak() as u64,
        held_bytes: h.held_bytes() as u64,
        held_bytes_peak: h.held_peak.max(h.held_bytes()) as u64,
        // Live granules are user blocks, cached blocks and the caches themselves.
        in_use_bytes: cache::in_use_bytes(&h, cached, caches) as u64,
        in_use_bytes_peak: h.reserved_peak.max(h.reserved_bytes()) as u64,
        live_blocks: totals.malloc.load(Relaxed).saturating_sub(totals.free.load(Relaxed)),
        malloc_calls: totals.malloc.load(Relaxed),
        free_calls: totals.free.load(Relaxed),
        realloc_calls: totals.realloc.load(Relaxed),
        calloc_calls: totals.calloc.load(Relaxed),
        memalign_calls: totals.memalign.load(Relaxed),
        brk_grow_calls: sys::BRK_GROW_CALLS.load(Relaxed),
        brk_shrink_calls: sys::BRK_SHRINK_CALLS.load(Relaxed),
        madvise_calls: sys::MADVISE_CALLS.load(Relaxed),
        madvised_bytes: sys::MADVISED_BYTES.load(Relaxed),
        mmap_fallback_calls: h.mmap_calls,
        mmap_fallback_bytes: h.map_bytes as u64,
        cached_bytes: cached as u64,
        metadata_bytes: h.metadata_bytes() as u64,
        requested_bytes_total: totals.requested.load(Relaxed),
    }
}

fn mib(l: &mut Line, bytes: u64) {
    if bytes < 1 << 20 {
        let tenths = bytes * 10 / (1 << 10);
        l.dec(tenths / 10).str(".").dec(tenths % 10).str(" KiB");
    } else {
        let tenths = bytes * 10 / (1 << 20);
        l.dec(tenths / 10).str(".").dec(tenths % 10).str(" MiB");
    }
}

/// Writes the human-readable summary to `fd`.
pub fn write_summary(fd: i32, s: &MyallocStats) {
    let mut l = Line::new();
    l.str("myalloc: peak brk ");
    mib(&mut l, s.brk_extent_peak);
    l.str(" (now ");
    mib(&mut l, s.brk_extent);
    l.str("), peak held ");
    mib(&mut l, s.held_bytes_peak);
    l.str(" (now ");
    mib(&mut l, s.held_bytes);
    l.str(")\n");
    l.write_to(fd);
    let mut l = Line::new();
    l.str("myalloc: in use ").dec(s.in_use_bytes).str(" bytes in ").dec(s.live_blocks);
    l.str(" blocks, peak ");
    mib(&mut l, s.in_use_bytes_peak);
    l.str(", cached ").dec(s.cached_bytes).str(" bytes, metadata ").dec(s.metadata_bytes).str(" bytes\n");
    l.write_to(fd);
    let mut l = Line::new();
    l.str("myalloc: calls: malloc ").dec(s.malloc_calls).str(", free ").dec(s.free_calls);
    l.str(", realloc ").dec(s.realloc_calls).str(", calloc ").dec(s.calloc_calls);
    l.str(", memalign ").dec(s.memalign_calls).str("\n");
    l.write_to(fd);
    let mut l = Line::new();
    l.str("myalloc: kernel: brk grow ").dec(s.brk_grow_calls).str(", brk shrink ").dec(s.brk_shrink_calls);
    l.str(", madvise ").dec(s.madvise_calls).str(" (").dec(s.madvised_bytes).str(" bytes)");
    l.str(", mmap fallback ").dec(s.mmap_fallback_calls).str(" (").dec(s.mmap_fallback_bytes).str(" bytes)\n");
    l.write_to(fd);
}

/// Writes the statistics as one JSON object to `fd`.
pub fn write_json(fd: i32, s: &MyallocStats) {
    let values = s.as_array();
    let mut l = Line::new();
    l.str("{");
    for (i, (name, v)) in FIELDS.iter().zip(values.iter()).enumerate() {
        if i > 0 {
            l.str(", ");
        }
        l.str("\"").str(name).str("\": ").dec(*v);
        if l.as_bytes().len() > 200 {
            l.write_to(fd);
            l = Line::new();
        }
    }
    l.str("}\n");
    l.write_to(fd);
}

