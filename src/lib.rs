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
//! * `capi`    – the exported C and C++ allocation API (feature `export`).

pub mod alloc;
pub mod bitmap;
pub mod buddy;
pub mod cache;
pub mod heap;
pub mod init;
pub mod lock;
pub mod report;
pub mod stats;
pub mod sys;

#[cfg(all(feature = "export", not(test)))]
pub mod capi;
