//! myalloc: a buddy-system memory allocator on the program break.
//!
//! Layers, bottom up (see ARCHITECTURE.md):
//! * `sys`     – every system call (sbrk, mmap, madvise, write, futex).
//! * `lock`    – a futex mutex that never allocates.
//! * `bitmap`  – per-chunk granule bitmaps: the out-of-band block metadata.
//! * `buddy`   – one arena: split, merge, lowest-first placement, growth and trimming.
//! * `heap`    – the process heap: the brk arena plus mmap fallback arenas.
//! * `cache`   – per-thread caches of small blocks in front of the heap.
//! * `alloc`   – malloc/free/realloc/calloc/memalign paths and misuse checks.
//! * `report`  – misuse reports (`myalloc: ...`, then abort).
//! * `stats`   – counters and the `myalloc_stats` struct.
//! * `init`    – load-time and exit-time hooks (fork handlers, thread exit, reports).
//! * `capi`    – the exported C and C++ allocation API.
//!
//! `heap` and everything above it form the process allocator (feature `process`, on by
//! default); without it the crate is only the buddy core, for private heaps.

// Nothing here needs the standard library (the malloc path must not allocate); without
// it the preloaded library carries no panic, formatting and backtrace machinery
// (three quarters of its text), so fewer of its pages become resident in every process.
#![cfg_attr(not(test), no_std)]

pub mod bitmap;
pub mod buddy;
pub mod lock;
pub mod report;
pub mod sys;

#[cfg(feature = "process")]
pub mod alloc;
#[cfg(feature = "process")]
pub mod cache;
#[cfg(feature = "process")]
pub mod heap;
#[cfg(feature = "process")]
pub mod init;
#[cfg(feature = "process")]
pub mod stats;

#[cfg(all(feature = "process", not(test)))]
pub mod capi;

/// The preloaded library's panic handler (the Python extension, built without
/// `process`, uses the standard library's). Nothing on the allocator's paths panics by
/// design; should something, the process stops like at any internal error.
#[cfg(all(feature = "process", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    report::internal("panic")
}
