//! The one type shared between `libmyalloc.so` and the programs that read it (the
//! Python extension finds `myalloc_stats_get` at run time and must not link the
//! allocator): `struct myalloc_stats`.
//!
//! Append-only: new fields go at the end and bump [`VERSION`]; a reader passes the size
//! it knows and gets that many bytes; `size` tells it how many the library filled.
#![no_std]

pub const VERSION: u64 = 1;

/// Every field is a `uint64_t` in C.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct MyallocStats {
    /// sizeof(struct myalloc_stats) as filled by the library.
    pub size: u64,
    pub version: u64,
    /// The program break when the allocator first looked at it.
    pub heap_start: u64,
    /// Current break minus `heap_start`.
    pub brk_extent: u64,
    pub brk_extent_peak: u64,
    /// Bytes held from the kernel: break extent plus fallback mappings.
    pub held_bytes: u64,
    pub held_bytes_peak: u64,
    /// Usable bytes of live blocks.
    pub in_use_bytes: u64,
    /// Peak of bytes in blocks handed out (live blocks plus thread-cached ones).
    pub in_use_bytes_peak: u64,
    pub live_blocks: u64,
    pub malloc_calls: u64,
    pub free_calls: u64,
    pub realloc_calls: u64,
    pub calloc_calls: u64,
    pub memalign_calls: u64,
    pub brk_grow_calls: u64,
    pub brk_shrink_calls: u64,
    pub madvise_calls: u64,
    pub madvised_bytes: u64,
    pub mmap_fallback_calls: u64,
    pub mmap_fallback_bytes: u64,
    /// Bytes of free blocks parked in thread caches.
    pub cached_bytes: u64,
    /// Bytes of chunk metadata (bitmaps) inside the heap.
    pub metadata_bytes: u64,
    /// Sum of all requested sizes so far.
    pub requested_bytes_total: u64,
}

/// Field names, in struct order.
pub const FIELDS: [&str; 24] = [
    "size",
    "version",
    "heap_start",
    "brk_extent",
    "brk_extent_peak",
    "held_bytes",
    "held_bytes_peak",
    "in_use_bytes",
    "in_use_bytes_peak",
    "live_blocks",
    "malloc_calls",
    "free_calls",
    "realloc_calls",
    "calloc_calls",
    "memalign_calls",
    "brk_grow_calls",
    "brk_shrink_calls",
    "madvise_calls",
    "madvised_bytes",
    "mmap_fallback_calls",
    "mmap_fallback_bytes",
    "cached_bytes",
    "metadata_bytes",
    "requested_bytes_total",
];

/// The C symbol that fills the struct: `ssize_t myalloc_stats_get(struct myalloc_stats *, size_t)`.
pub const GET_SYMBOL: &[u8] = b"myalloc_stats_get\0";

impl MyallocStats {
    /// The fields in struct order.
    pub fn as_array(&self) -> [u64; 24] {
        [
            self.size,
            self.version,
            self.heap_start,
            self.brk_extent,
            self.brk_extent_peak,
            self.held_bytes,
            self.held_bytes_peak,
            self.in_use_bytes,
            self.in_use_bytes_peak,
            self.live_blocks,
            self.malloc_calls,
            self.free_calls,
            self.realloc_calls,
            self.calloc_calls,
            self.memalign_calls,
            self.brk_grow_calls,
            self.brk_shrink_calls,
            self.madvise_calls,
            self.madvised_bytes,
            self.mmap_fallback_calls,
            self.mmap_fallback_bytes,
            self.cached_bytes,
            self.metadata_bytes,
            self.requested_bytes_total,
        ]
    }
}

const _: () = assert!(core::mem::size_of::<MyallocStats>() == FIELDS.len() * 8);
