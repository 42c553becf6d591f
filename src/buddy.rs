//! The buddy core: one contiguous arena of 16-byte granules, split and merged by buddy
//! rules, with every block's state kept out of band in per-chunk bitmaps (`bitmap.rs`).
//!
//! Invariants (all guarded by the owner's lock unless a field says otherwise):
//! * A buddy-free block of order `k` starts at a granule index that is a multiple of
//!   `2^k` (relative to `base`), has `start=1` at its first granule, `alloc=0` and
//!   `start=0` on the rest. Its order is out of band too: `ChunkMeta::big_order` of its
//!   64-granule slot for orders >= 6; a lower order is the distance to the next set bit
//!   of its bitmap word. Nothing is written into free memory.
//! * Coalescing is eager: two buddy-free blocks that are buddies of each other never
//!   both exist.
//! * `free_count[k]` of a chunk counts the buddy-free blocks of order `k` starting in it;
//!   `DirEntry::mask` bit `k` is set iff that count is non-zero; `groups[i]` holds at
//!   least the OR of the masks of chunks `64i .. 64i+63` (a bit may stay set after its
//!   last block goes; a search that passes the whole group clears it). Searching these gives lowest-address-first
//!   placement without scanning the whole heap.
//! * A cached block (held by a thread cache) is a live block to the buddy; its
//!   [`CachedHeader`] tells the cache and the misuse checks that it is not the user's.
//! * Small requests are placed at the lowest run of free granules that fits, which may
//!   straddle adjacent buddy-free blocks; whatever is left of them is split back into
//!   aligned free blocks. `run_hint(c)` bounds chunk `c`'s longest free run.
//! * Lock-free readers (`live_block_at`, from `free`) see a writer's changes one word at
//!   a time. Reading the alloc word before a free and the start word after it would show
//!   the freed block as the tail of the live block before it, so they read each pair of
//!   words with `ChunkMeta::pair` (re-read until stable). Writers clear a live granule's
//!   alloc bit before its start bit and set start bits before alloc bits (per word:
//!   freeing and marking make one pass over the pairs, two stores each in that order),
//!   so every state in between describes the same live blocks. Only the metadata of a
//!   live block's own chunk may be read without the lock (a trim may free other chunks'
//!   metadata).
//! * Every granule below `top` belongs to a chunk whose `ChunkMeta` exists; the metadata
//!   blocks are ordinary live blocks inside the arena, so the arena's extent is its whole
//!   footprint. A lazy chunk (`LAZY_BIT`), wholly inside a large live block that starts
//!   in an earlier chunk, has its metadata block reserved but not yet written: readers
//!   get `interior_meta()`, and it is written before any write reaches the chunk
//!   (freeing or shrinking the block).

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering::*};

use crate::bitmap::*;
use crate::sys;

/// Per-chunk directory entry.
#[repr(C)]
pub struct DirEntry {
    /// Granule index of the chunk's `ChunkMeta` plus one; 0 while the chunk has none;
    /// with `LAZY_BIT` added while that metadata is reserved but not written (the
    /// chunk then reads as `interior_meta()`). Written under the lock, read without it
    /// by the free fast path.
    pub meta: AtomicU32,
    /// Bit k: a buddy-free block of order k starts in this chunk.
    pub mask: u32,
}

/// In `DirEntry::meta`: the chunk is lazy. A large block placed in new memory at the
/// top leaves the metadata of the chunks it wholly covers (all but its first)
/// unwritten: they are "allocated, no start", which `interior_meta()` says for them,
/// and written they would be 1/56 of the block, resident, where the block itself may be
/// mostly untouched (GNU sort asks for a buffer of a fraction of the machine's memory).
/// Their metadata blocks are reserved as usual (the break's extent is unchanged), and
/// written when freeing or shrinking the block first reaches them. (Metadata indices
/// stay below 2^31: the arena holds at most 2^31 granules.)
pub const LAZY_BIT: u32 = 1 << 31;
/// Blocks at least this long may leave lazy chunks.
const LAZY_MIN_GRANULES: usize = 2 * CHUNK_GRANULES;

/// Lazy chunks a growth left for the large block about to be placed over them: the
/// granules `[lo, hi)` are neither free nor live until the block is marked; `place` is
/// where the free tail below them starts.
#[derive(Clone, Copy)]
struct LazySpan {
    place: usize,
    lo: usize,
    hi: usize,
}

/// The first 16 bytes of a block parked in a thread cache.
#[repr(C)]
pub struct CachedHeader {
    pub tag: u64,
    pub next: *mut CachedHeader,
}

const CACHED_SALT: u64 = 0x6361_6368_6564_2121;

/// How the arena obtains and returns memory above its top.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// The program break: grows with `sbrk`, shrinks by lowering the break.
    Brk,
    /// A fixed region that is already mapped up to `limit`; `release` says whether
    /// pages given up may be returned with madvise.
    Fixed { release: bool },
}

#[derive(Clone, Copy, Default, Debug)]
pub struct ArenaStats {
    pub grow_calls: u64,
    pub shrink_calls: u64,
    pub madvise_calls: u64,
    pub madvised_bytes: u64,
    /// Granules in live blocks (user, cached and metadata).
    pub live_granules: u64,
    pub meta_granules: u64,
    pub peak_top: u64,
}

/// Growth granularity: the break moves by at least this much, so that small requests do
/// not cost one system call each, and by a fraction of the heap when it is large.
pub const GROW_MIN: usize = 16 << 10;
/// A free tail at least this large is given back to the kernel ...
pub const TRIM_THRESHOLD: usize = 32 << 10;
/// ... keeping this much as a cushion. Each time the arena has had to grow right after
/// giving memory back `FLIPS_TO_DOUBLE` times, the threshold doubles (up to the
/// maximum), so that a program whose footprint swings around the top does not keep
/// moving the break back and forth.
pub const TRIM_KEEP: usize = 8 << 10;
pub const TRIM_THRESHOLD_MAX: usize = 64 << 20;
/// Whatever the threshold has grown to, a heap whose free tail reaches down to within
/// this much of its start (the program freed nearly everything) is trimmed once the tail
/// is this long, so freeing everything gives the memory back.
pub const TRIM_EMPTY_HEAP: usize = 1 << 20;
const FLIPS_TO_DOUBLE: u32 = 2;
/// Automatic purging starts once this much (or 1/8 of the heap) has been freed since the
/// last purge, and releases free blocks of at least `PURGE_MIN_ORDER` (64 KiB): pages
/// handed back and soon faulted in again cost more than they save. `malloc_trim`
/// releases every whole free page.
pub const PURGE_DIRTY_MIN: usize = 2 << 20;
pub const PURGE_MIN_ORDER: usize = 12;
/// Requests below a chunk are placed in the lowest free run that holds them (a run
/// never crosses a chunk boundary).
pub const RUN_MAX: usize = CHUNK_GRANULES - 1;
/// Requests of at most this many granules grow the heap for a run; longer ones that find
/// no run grow it for a buddy block (a run after growth may be cut by the new chunks'
/// metadata, a buddy block of their order may not).
const GROW_RUN_MAX: usize = 64;
/// Run-bound bitmaps per group of chunks: bounds of at least 1, 2, 4, ... 2048.
const FIT_CLASSES: usize = (usize::BITS - RUN_MAX.leading_zeros()) as usize;

/// Order of the largest aligned block that starts at `g` and ends by `hi` (`g < hi`):
/// the next piece when `[g, hi)` is cut into maximal aligned blocks.
#[inline]
fn piece_order(g: usize, hi: usize) -> usize {
    let align = if g == 0 { MAX_ORDER } else { g.trailing_zeros() as usize };
    let fit = (usize::BITS - 1 - (hi - g).leading_zeros()) as usize;
    align.min(fit).min(MAX_ORDER)
}

/// The bitmap a run search for `n` granules visits: the largest `t` with `2^t <= n`
/// (capped at `RUN_MAX`).
#[inline]
fn fit_class(n: usize) -> usize {
    (usize::BITS - 1 - n.min(RUN_MAX).leading_zeros()) as usize
}
/// Largest block the free fast path hands to a thread cache's small-block lists
/// (`cache::CLASSES` is this).
pub const CACHEABLE_GRANULES: usize = 64;
/// Largest block a thread cache holds at all (its mid-size lists; `cache::MID_MAX_GRANULES`
/// is this): a chunk, so a cached block lies in at most two chunks.
pub const CACHED_MAX_GRANULES: usize = CHUNK_GRANULES;
/// Requests of at least this many granules may be placed across free blocks at the top.
const LARGE_GRANULES: usize = CHUNK_GRANULES;
const PAGE_GRANULES: usize = sys::PAGE / GRANULE;

/// The first cache line holds what the lock-free `free` reads (base, top, hi_live, the
/// directory); the fields written under the lock at every refill and flush follow in
/// later lines, so that one thread's refill does not evict that line from the others.
#[repr(C, align(64))]
pub struct Arena {
    /// Address of granule 0; page aligned. Immutable once the arena is published.
    pub base: usize,
    /// `base - GRANULE`: the pairs of the metadata whose directory entry reads `m`
    /// start at `meta_base + 16 m` (entries hold the metadata's granule plus one).
    /// Immutable once the arena is published.
    meta_base: usize,
    /// Granules below the heap top. Written under the lock, read without it.
    top: AtomicUsize,
    /// What the free fast path (`short_block_at`) checks a pointer's granule against:
    /// the top, lowered to `CACHEABLE_GRANULES` below `hi_live`, where the CPU loads a
    /// bitmap pair atomically; else 0. So the one comparison keeps the path off a CPU
    /// it cannot run on, and off the highest live block (every block the path takes
    /// is at most that long, so one starting below this bound ends below `hi_live`).
    /// Stored with `top` and `hi_live` (`set_top`, `set_hi_live`).
    fast_top: AtomicUsize,
    /// End of the highest live block (user, cached or metadata): everything from here
    /// to the top is free. Written under the lock (`set_hi_live`); `free` sends the block
    /// just below the free tail straight back so the top can shrink (its fast path
    /// through `fast_top`, which stays below it).
    hi_live: AtomicUsize,
    /// Most granules the directory can describe.
    pub limit: usize,
    dir: *mut DirEntry,
    groups: *mut u32,
    /// Per group of 64 chunks, `FIT_CLASSES` bitmaps of its chunks: bit `c` of bitmap
    /// `t` is set exactly when `run_hint(c) >= 2^t`. A run search for `n` granules
    /// visits only the chunks of bitmap `floor(log2 n)` instead of walking the group.
    group_fits: *mut u64,
    /// Per chunk, at least the length of its longest run of free granules or `RUN_MAX`,
    /// whichever is less (runs are searched for at most `RUN_MAX` granules): lowered
    /// when a run search fails there, raised by a free to the length of the run it
    /// makes (counted up to `RUN_MAX`), `u16::MAX` for a new chunk. Kept in the
    /// directory, not in the chunk's metadata, so that a search skips a chunk without
    /// touching it. Tight (a failed search stores the longest run it saw, below the
    /// length it wanted), so a search does not rescan a chunk that failed it before;
    /// a coarser one-byte bound cost mid-size searches 28 % more instructions on the
    /// mixed-size churn. Changed under the arena lock (atomic only so that shared
    /// references suffice).
    run_hints: *mut AtomicU16,
    pub source: Source,
    key: u64,
    /// Bytes freed since the last purge of dirty chunks.
    dirty_bytes: usize,
    /// Where the last trim found the reclaimable tail to start (raised by allocations
    /// above it): a free ending at or above it may make the tail long enough to trim.
    tail_hint: usize,
    trim_threshold: usize,
    /// Granules from here to the top have not been handed out since the kernel gave
    /// them (zero: the buddy writes nothing into free memory): a block
    /// allocated entirely above it needs no zeroing for calloc.
    fresh_from: usize,
    /// Whether the last block marked live lay entirely in fresh memory.
    last_fresh: bool,
    last_was_shrink: bool,
    flips: u32,
    pub stats: ArenaStats,
}

// SAFETY: the raw pointers refer to memory owned by the arena; the owner serialises
// mutation with a lock.
unsafe impl Send for Arena {}

#[inline]
fn order_for(n: usize) -> usize {
    if n <= 1 {
        0
    } else {
        (usize::BITS - (n - 1).leading_zeros()) as usize
    }
}

/// The buddy order a request of `n` granules needs, and the alignment a free block's
/// start must be checked for: none when the order's own alignment (relative to `base`,
/// which is page aligned) already gives `align`.
fn search_for(n: usize, align: usize) -> (usize, usize) {
    let k = order_for(n);
    (k, if align <= core::cmp::min(1 << k, PAGE_GRANULES) { 1 } else { align })
}

impl Arena {
    /// An arena over nothing, as a placeholder before initialisation.
    pub const fn empty() -> Arena {
        Arena {
            base: 0,
            meta_base: 0,
            top: AtomicUsize::new(0),
            fast_top: AtomicUsize::new(0),
            hi_live: AtomicUsize::new(0),
            limit: 0,
            dir: core::ptr::null_mut(),
            groups: core::ptr::null_mut(),
            group_fits: core::ptr::null_mut(),
            run_hints: core::ptr::null_mut(),
            source: Source::Brk,
            key: 0,
            dirty_bytes: 0,
            tail_hint: 0,
            trim_threshold: TRIM_THRESHOLD,
            fresh_from: 0,
            last_fresh: false,
            last_was_shrink: false,
            flips: 0,
            stats: ArenaStats {
                grow_calls: 0,
                shrink_calls: 0,
                madvise_calls: 0,
                madvised_bytes: 0,
                live_granules: 0,
                meta_granules: 0,
                peak_top: 0,
            },
        }
    }

    /// Bytes of directory needed for an arena of `limit` granules.
    pub const fn directory_bytes(limit: usize) -> usize {
        let chunks = limit.div_ceil(CHUNK_GRANULES);
        let groups = chunks.div_ceil(64);
        chunks * core::mem::size_of::<DirEntry>() + groups * (FIT_CLASSES * 8 + 4) + chunks * 2
    }

    /// An empty arena at `base` (page aligned) describing at most `limit` granules, with
    /// its directory in `dir_mem` (zeroed, `directory_bytes(limit)` long).
    ///
    /// # Safety
    /// `dir_mem` must be valid, zeroed and exclusively owned by the arena; for
    /// `Source::Fixed`, `[base, base + limit*16)` must be mapped and owned by the arena.
    pub unsafe fn new(base: usize, limit: usize, dir_mem: *mut u8, source: Source, key: u64) -> Arena {
        let chunks = limit.div_ceil(CHUNK_GRANULES);
        let fits_at = chunks * core::mem::size_of::<DirEntry>();
        let groups_at = fits_at + chunks.div_ceil(64) * FIT_CLASSES * 8;
        let hints_at = groups_at + chunks.div_ceil(64) * 4;
        Arena {
            base,
            meta_base: base.wrapping_sub(GRANULE),
            top: AtomicUsize::new(0),
            fast_top: AtomicUsize::new(0),
            hi_live: AtomicUsize::new(0),
            limit: core::cmp::min(limit, 1usize << MAX_ORDER),
            dir: dir_mem as *mut DirEntry,
            groups: dir_mem.add(groups_at) as *mut u32,
            group_fits: dir_mem.add(fits_at) as *mut u64,
            run_hints: dir_mem.add(hints_at) as *mut AtomicU16,
            source,
            key,
            dirty_bytes: 0,
            tail_hint: 0,
            trim_threshold: TRIM_THRESHOLD,
            fresh_from: 0,
            last_fresh: false,
            last_was_shrink: false,
            flips: 0,
            stats: ArenaStats::default(),
        }
    }

    #[inline]
    pub fn top(&self) -> usize {
        self.top.load(Acquire)
    }

    fn set_top(&self, top: usize) {
        self.top.store(top, Release);
        self.refresh_fast_top();
    }

    fn set_hi_live(&self, end: usize) {
        self.hi_live.store(end, Release);
        self.refresh_fast_top();
    }

    fn refresh_fast_top(&self) {
        let bound = self.top().min(self.hi_live().saturating_sub(CACHEABLE_GRANULES));
        self.fast_top.store(if sys::pair_loads_atomic() { bound } else { 0 }, Release);
    }

    /// How low the free tail could reach if the thread-cached blocks ending at `g`
    /// (and below it, back to back) were freed: walks down over buddy-free blocks and
    /// small blocks (up to `CACHEABLE_GRANULES`) carrying the cache tag. Call with the
    /// lock held.
    ///
    /// (Stepping over cached mid-size blocks as well made frees of the top block empty
    /// the whole cache far more often: eleven times on py-ast with pymalloc, whose
    /// peak RSS rose by 1.6 MB. A program that frees nearly everything gets its mid-size
    /// blocks back through `cache::little_left_in_use`, which sees cached blocks of
    /// any length.)
    pub fn reclaimable_start(&self, mut g: usize) -> usize {
        loop {
            let below = self.free_tail_start_from(g);
            if below < g {
                g = below;
                continue;
            }
            match self.cached_block_ending_at(g, CACHEABLE_GRANULES) {
                Some(s) => g = s,
                None => return g,
            }
        }
    }

    /// The start of the thread-cached block of at most `longest` granules (at most
    /// `CACHED_MAX_GRANULES`) that ends at `g`, if one does. Call with the lock held.
    pub fn cached_block_ending_at(&self, g: usize, longest: usize) -> Option<usize> {
        // A cached block is at most a chunk long: it starts at the last start bit below
        // g in g-1's chunk or, when that chunk has none there, in the chunk before.
        let last = g.checked_sub(1)?;
        let s = match self.start_in_chunk(last) {
            Some(s) => s,
            None => self.start_in_chunk((last & !(CHUNK_GRANULES - 1)).checked_sub(1)?)?,
        };
        if g - s > longest || !self.test(Plane::Alloc, s) {
            return None;
        }
        // The tag first: one word, where measuring the block reads its bitmaps to the
        // end (up to a chunk's), and most highest blocks are the program's, not cached.
        let addr = self.addr(s);
        // SAFETY: s starts a live block: its first word is readable.
        let tagged = unsafe { (addr as *const u64).read() } == self.cached_tag(addr);
        (tagged && self.live_end(s) == g).then_some(s)
    }

    /// Treats no memory of this arena as known zero (its source does not zero it).
    pub fn never_fresh(&mut self) {
        self.fresh_from = usize::MAX;
    }

    /// Whether the block most recently allocated lay entirely in fresh (zero) memory.
    pub fn last_alloc_was_fresh(&self) -> bool {
        self.last_fresh
    }

    /// The trim threshold in force.
    pub fn trim_threshold(&self) -> usize {
        self.trim_threshold
    }

    /// End (granule) of the highest live block.
    #[inline]
    pub fn hi_live(&self) -> usize {
        self.hi_live.load(Acquire)
    }

    #[inline]
    pub fn end_addr(&self) -> usize {
        self.base + (self.top() << GRANULE_SHIFT)
    }

    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base) < (self.top() << GRANULE_SHIFT)
    }

    #[inline]
    pub fn addr(&self, g: usize) -> usize {
        self.base + (g << GRANULE_SHIFT)
    }

    #[inline]
    pub fn granule_of(&self, addr: usize) -> usize {
        (addr - self.base) >> GRANULE_SHIFT
    }

    #[inline]
    fn dir(&self, c: usize) -> &DirEntry {
        // SAFETY: callers pass chunk indices below the directory size (top <= limit).
        unsafe { &*self.dir.add(c) }
    }

    #[inline]
    fn dir_mut(&mut self, c: usize) -> &mut DirEntry {
        // SAFETY: as in dir(); &mut self serialises.
        unsafe { &mut *self.dir.add(c) }
    }

    /// The metadata of chunk `c`, if it exists.
    #[inline]
    pub fn meta(&self, c: usize) -> Option<&ChunkMeta> {
        let m = self.dir(c).meta.load(Acquire);
        if m == 0 {
            None
        } else if m & LAZY_BIT != 0 {
            Some(interior_meta())
        } else {
            // SAFETY: any other non-zero entry names a live metadata block inside the arena.
            Some(unsafe { &*(self.addr(m as usize - 1) as *const ChunkMeta) })
        }
    }

    #[inline]
    fn meta_of(&self, g: usize) -> &ChunkMeta {
        match self.meta(g >> CHUNK_SHIFT) {
            Some(m) => m,
            None => crate::report::internal("granule without chunk metadata"),
        }
    }

    #[inline]
    pub fn test(&self, plane: Plane, g: usize) -> bool {
        self.meta_of(g).test(plane, g & (CHUNK_GRANULES - 1))
    }

    /// Drops the interior-word markers of the live granules `[lo, hi)`, which are being
    /// freed (see `ChunkMeta::big_order`).
    fn clear_interior(&self, lo: usize, hi: usize) {
        self.each_chunk_part(lo, hi, |m, a, b| m.clear_interior(a, b));
    }

    /// Calls `f(meta, a, b)` for each chunk's part `[a, b)` (chunk-relative) of `[lo, hi)`.
    #[inline(always)]
    fn each_chunk_part(&self, lo: usize, hi: usize, mut f: impl FnMut(&ChunkMeta, usize, usize)) {
        let mut g = lo;
        while g < hi {
            let chunk_base = g & !(CHUNK_GRANULES - 1);
            let end = core::cmp::min(hi, chunk_base + CHUNK_GRANULES);
            f(self.meta_of(g), g - chunk_base, end - chunk_base);
            g = end;
        }
    }

    /// Sets or clears `[lo, hi)` of a plane across chunks; returns whether any bit was
    /// already in that state.
    #[inline]
    pub fn assign(&self, plane: Plane, lo: usize, hi: usize, on: bool) -> bool {
        let mut already = false;
        self.each_chunk_part(lo, hi, |m, a, b| already |= m.assign(plane, a, b, on));
        already
    }

    /// The live block that starts at `addr` (inside the arena), as `(granule, length)`;
    /// otherwise `Err(inside)`, `inside` saying whether `addr` lies within a live block.
    /// Reads the two bitmap words of the granule once; a block that ends in the same
    /// word (every block of up to 64 granules that does not cross one) costs nothing more.
    ///
    /// Safe without the lock, with one exception: a length of 0 means the block reaches
    /// the end of its chunk and its metadata does not tell whether it runs on, so its
    /// length depends on the next chunk's metadata, which a trim may free at any moment;
    /// ask `live_end` under the lock. (The block's own chunk cannot go away while the
    /// block is live, nor the next one when the block's marker says it runs into it.)
    #[inline(always)]
    pub fn live_block_at(&self, addr: usize) -> Result<(usize, usize), bool> {
        let g = self.granule_of(addr);
        let Some(m) = self.meta(g >> CHUNK_SHIFT) else { return Err(false) };
        let w = (g & (CHUNK_GRANULES - 1)) >> 6;
        let b = g & 63;
        let (alloc, start) = m.pair(w);
        let live = (alloc >> b) & 1 != 0;
        if !live || (start >> b) & 1 == 0 || addr & (GRANULE - 1) != 0 {
            return Err(live);
        }
        // Granules after g in this word that end the block (a start, or not live).
        let stop = ((start | !alloc) >> b) >> 1;
        if stop != 0 {
            return Ok((g, 1 + stop.trailing_zeros() as usize));
        }
        let chunk_base = g & !(CHUNK_GRANULES - 1);
        match m.live_block_end_from_word(w + 1) {
            BlockEnd::At(x) => Ok((g, chunk_base + x - g)),
            BlockEnd::Beyond => {
                // Part of the block lies in the next chunk, so that chunk's metadata
                // stays while the block is live: where the block ends there, if it does.
                let next = chunk_base + CHUNK_GRANULES;
                match self.meta(next >> CHUNK_SHIFT).and_then(|m| m.live_run_end(0)) {
                    Some(x) => Ok((g, next + x - g)),
                    None => Ok((g, 0)),
                }
            }
            // The block reaches its chunk's end: it ends there unless it may run on.
            BlockEnd::Unknown if m.runs_on.load(Acquire) == 0 => Ok((g, chunk_base + CHUNK_GRANULES - g)),
            BlockEnd::Unknown => Ok((g, 0)),
        }
    }

    /// The fast path of `free`: the live block starting at `addr` when it ends inside
    /// the bitmap word of its first granule or the next one of the same chunk (every
    /// small block, up to `CACHEABLE_GRANULES`, that does not reach its chunk's end), as
    /// `(granule, length)`. `None` for everything else, which
    /// [`live_block_at`](Self::live_block_at) then sorts out (other arenas, longer
    /// blocks, misuse).
    #[inline(always)]
    pub fn short_block_at(&self, addr: usize) -> Option<(usize, usize)> {
        // The granule, with any misalignment rotated into the top bits, which puts it
        // far above any top: one comparison checks both (and that the block is not the
        // highest live one, see `fast_top`). A stale bound only sends the call to the
        // slow path, which rereads it, or lets the highest block into the cache, which
        // only delays giving the top back.
        let g = addr.wrapping_sub(self.base).rotate_right(GRANULE_SHIFT as u32);
        if g >= self.fast_top.load(Relaxed) {
            return None;
        }
        // (The metadata stays while a live block, the caller's, lies in the chunk.)
        let m = self.dir(g >> CHUNK_SHIFT).meta.load(Acquire);
        // No metadata, or lazy (only a misused pointer lands inside a lazy chunk).
        if (m as i32) <= 0 {
            return None;
        }
        // The pair of g's word: the metadata starts at granule m - 1, its pairs are
        // granules (see `ChunkMeta::bits`), word w's at byte 16 w, which is g's bits 6..
        // shifted down by 2.
        const LAST_PAIR: usize = (WORDS - 1) << GRANULE_SHIFT;
        let offset = (g >> (6 - GRANULE_SHIFT)) & LAST_PAIR;
        let pair = self.meta_base + ((m as usize) << GRANULE_SHIFT) + offset;
        // SAFETY: the pair of g's word in its chunk's metadata (16-byte aligned, live
        // while the caller's block is); g is below `fast_top`, which is 0 unless the
        // CPU loads pairs atomically (without, the slow path rereads until stable).
        let (alloc, start) = unsafe { sys::load_pair_atomic(pair as *const u64) };
        let b = g & 63;
        if ((alloc & start) >> b) & 1 == 0 {
            return None;
        }
        // Granules from g on in this word that end the block (a start, or not live),
        // g's own start bit cleared: the first one set is the block's length.
        let stop = ((start | !alloc) >> b) & !1;
        if stop != 0 {
            return Some((g, stop.trailing_zeros() as usize));
        }
        if offset == LAST_PAIR {
            // The block reaches its chunk's end, where it ends unless it may run on. (The
            // metadata starts WORDS - 1 pairs before this last one: addressed from `pair`,
            // no other value stays live in a register, and the path saves none.)
            // SAFETY: `pair` is the last pair of g's chunk metadata (above).
            let meta = unsafe { &*((pair - LAST_PAIR) as *const ChunkMeta) };
            return (meta.runs_on.load(Acquire) == 0).then_some((g, 64 - b));
        }
        // The block runs into the next word of the same chunk: it ends there if it is
        // a small one (at most 64 granules).
        // SAFETY: the next pair of the same metadata (not the last); atomic loads as
        // above.
        let (alloc, start) = unsafe { sys::load_pair_atomic((pair + GRANULE) as *const u64) };
        let stop = start | !alloc;
        if stop == 0 {
            return None;
        }
        let n = 64 - b + stop.trailing_zeros() as usize;
        (n <= CACHEABLE_GRANULES).then_some((g, n))
    }

    /// End of the live block that starts at `g` (which must be a live start). Reads the
    /// metadata of the chunks after g's: call it with the lock held.
    #[inline(never)]
    pub fn live_end(&self, g: usize) -> usize {
        let top = self.top();
        let mut from = g + 1;
        while from < top {
            let c = from >> CHUNK_SHIFT;
            let Some(m) = self.meta(c) else { return from };
            if let Some(x) = m.live_run_end(from & (CHUNK_GRANULES - 1)) {
                return core::cmp::min((c << CHUNK_SHIFT) + x, top);
            }
            from = (c + 1) << CHUNK_SHIFT;
        }
        top
    }

    // ----- tags -------------------------------------------------------------------

    /// The tag of a block parked in a thread cache (`cache.rs` computes the same from
    /// `cached_tag(0)`): the address under the per-process random key, so that no
    /// program can write it into a block by chance or on purpose, and one XOR to make.
    #[inline]
    pub fn cached_tag(&self, addr: usize) -> u64 {
        self.key ^ CACHED_SALT ^ addr as u64
    }

    /// Whether a buddy-free block of exactly order `k` may start at `g`, as far as the
    /// bitmaps of `g`'s word tell: `g` starts a free block, which (order < 6) runs
    /// without another set bit to `g + 2^k` or (order >= 6) has that order recorded.
    /// Asked of the buddy of a block of order `k` that is not free, the answer is exact:
    /// a free block there cannot reach into that block, so free granules up to
    /// `g + 2^k` mean it ends there.
    fn is_free_block(&self, g: usize, k: usize) -> bool {
        g + (1 << k) <= self.top() && self.meta_of(g).is_free_block(g & (CHUNK_GRANULES - 1), k)
    }

    /// The order of the buddy-free block starting at `g`, if one does: recorded for
    /// orders >= 6, else the distance to the next set bit of `g`'s word (or to the top).
    fn free_block_order(&self, g: usize) -> Option<usize> {
        let m = self.meta_of(g);
        let i = g & (CHUNK_GRANULES - 1);
        let (alloc, start) = (m.alloc_word(i >> 6), m.start_word(i >> 6));
        let b = i & 63;
        if (start >> b) & 1 == 0 || (alloc >> b) & 1 != 0 {
            return None;
        }
        if b == 0 {
            let k = m.big_order[i >> 6].load(Relaxed) as usize;
            if k != 0 {
                return Some(k);
            }
        }
        let after = ((start | alloc) >> b) >> 1;
        let end = if after != 0 { b + 1 + after.trailing_zeros() as usize } else { 64 };
        let size = core::cmp::min(end - b, self.top().saturating_sub(g));
        (size.is_power_of_two() && size < 64 && b & (size - 1) == 0).then(|| size.trailing_zeros() as usize)
    }

    // ----- free block bookkeeping ---------------------------------------------------

    fn refresh_group(&mut self, grp: usize) {
        let first = grp << 6;
        let last = core::cmp::min(first + 64, self.limit.div_ceil(CHUNK_GRANULES));
        let mut acc = 0;
        for c in first..last {
            acc |= self.dir(c).mask;
        }
        // SAFETY: grp is within the directory.
        unsafe { *self.groups.add(grp) = acc };
    }

    /// Records `[g, g+2^k)` as a buddy-free block (its bits must already read free).
    /// Nothing is written into the block: free memory stays untouched (and fresh memory
    /// zero).
    fn push_free(&mut self, g: usize, k: usize) {
        // SAFETY: as in free_with_merge.
        let m = unsafe { &*(self.meta_of(g) as *const ChunkMeta) };
        self.push_free_in(m, g, k);
    }

    /// `push_free` with `g`'s chunk metadata `m` in hand.
    #[inline]
    fn push_free_in(&mut self, m: &ChunkMeta, g: usize, k: usize) {
        let i = g & (CHUNK_GRANULES - 1);
        if k >= 6 {
            m.big_order[i >> 6].store(k as u8, Relaxed);
        }
        m.set_bit(Plane::Start, i, true);
        if m.count_free(k, 1) == 1 {
            let c = g >> CHUNK_SHIFT;
            self.dir_mut(c).mask |= 1 << k;
            // SAFETY: group index is within the directory.
            unsafe { *self.groups.add(c >> 6) |= 1 << k };
        }
    }

    /// Forgets the buddy-free block at `g` (order `k`); its start bit is left set.
    fn take_free(&mut self, g: usize, k: usize) {
        // SAFETY: as in free_with_merge.
        let m = unsafe { &*(self.meta_of(g) as *const ChunkMeta) };
        self.take_free_in(m, g, k);
    }

    /// `take_free` with `g`'s chunk metadata `m` in hand.
    #[inline]
    fn take_free_in(&mut self, m: &ChunkMeta, g: usize, k: usize) {
        if k >= 6 {
            m.big_order[(g & (CHUNK_GRANULES - 1)) >> 6].store(0, Relaxed);
        }
        if m.count_free(k, -1) == 0 {
            // The group's bit may stay set: `scan_chunks` clears stale bits as it passes.
            self.dir_mut(g >> CHUNK_SHIFT).mask &= !(1 << k);
        }
    }

    /// Gives the granules `[lo, hi)` (whose alloc bits are clear) back to the buddy
    /// system: split into aligned blocks, each merged with free buddies.
    pub fn release_range(&mut self, lo: usize, hi: usize) {
        self.assign(Plane::Start, lo, hi, false);
        self.release_cleared(lo, hi);
    }

    /// `release_range` for granules whose start bits are clear already.
    fn release_cleared(&mut self, lo: usize, hi: usize) {
        let mut g = lo;
        while g < hi {
            let k = piece_order(g, hi);
            self.free_with_merge(g, k);
            g += 1 << k;
        }
        self.raise_run_bounds(lo, hi);
    }

    /// Gives back `[lo, hi)`, the tail of a buddy-free block whose head (up to `lo`)
    /// was just taken and marked live. Its aligned pieces grow in size towards `hi`, and
    /// each one's buddy lies to its left, in the live head or overlapping a larger piece:
    /// none can merge, so they are pushed without looking. No free run grew either, so
    /// the run bounds stay upper bounds as they are.
    fn release_split_tail(&mut self, lo: usize, hi: usize) {
        let mut g = lo;
        while g < hi {
            let k = piece_order(g, hi);
            #[cfg(test)]
            assert!(!self.is_free_block(g ^ (1 << k), k), "split piece {g} of order {k} has a free buddy");
            self.push_free(g, k);
            self.meta_of(g).dirty.store(1, Relaxed);
            g += 1 << k;
        }
    }

    /// Raises the run bounds of the chunks `[lo, hi)` lies in to the length of the free
    /// run it is now part of (the only way a longer run appears).
    fn raise_run_bounds(&self, lo: usize, hi: usize) {
        // Searches are for at most RUN_MAX granules: a bound that high is high enough.
        const CAP: usize = RUN_MAX;
        // The run is followed this far on either side. Past that the bound becomes CAP,
        // which is still an upper bound: a search for a longer run than the chunk has
        // then looks into it once and lowers the bound to what it found. Measuring every
        // run to the end made each release in a chunk being emptied rescan the free
        // words freed before it (4 % of the allocator's instructions on the Python
        // workloads).
        const SIDE: usize = 256;
        let top = self.top();
        let mut g = lo;
        while g < hi {
            let base = g & !(CHUNK_GRANULES - 1);
            let end = core::cmp::min(hi, base + CHUNK_GRANULES);
            let bound = self.run_bound_of(g >> CHUNK_SHIFT);
            if bound >= CAP {
                g = end;
                continue;
            }
            let run = if end - g >= CAP {
                CAP
            } else {
                let limit = core::cmp::min(CHUNK_GRANULES, top - base);
                let m = self.meta_of(g);
                let run = m.free_run_around(g - base, end - base, limit, SIDE);
                // A run followed to SIDE on one side may go on past it.
                if run >= end - g + SIDE { CAP } else { run }
            };
            if run > bound {
                self.set_run_hint(g >> CHUNK_SHIFT, run);
            }
            g = end;
        }
    }

    fn free_with_merge(&mut self, mut g: usize, mut k: usize) {
        // Buddies below a chunk's size lie in g's chunk: merge with its metadata in hand.
        let top = self.top();
        let base = g & !(CHUNK_GRANULES - 1);
        // SAFETY: g's chunk keeps its metadata while the lock (&mut self) is held; the
        // reference is detached from `self` only so that the directory can be updated.
        let m = unsafe { &*(self.meta_of(g) as *const ChunkMeta) };
        while k < CHUNK_SHIFT {
            let buddy = g ^ (1 << k);
            if buddy + (1 << k) > top || !m.is_free_block(buddy - base, k) {
                break;
            }
            self.take_free_in(m, buddy, k);
            m.set_bit(Plane::Start, core::cmp::max(g, buddy) - base, false);
            g = core::cmp::min(g, buddy);
            k += 1;
        }
        if k < CHUNK_SHIFT {
            self.push_free_in(m, g, k);
            m.dirty.store(1, Relaxed);
            return;
        }
        while k < MAX_ORDER {
            let buddy = g ^ (1 << k);
            if !self.is_free_block(buddy, k) {
                break;
            }
            self.take_free(buddy, k);
            let upper = core::cmp::max(g, buddy);
            self.assign(Plane::Start, upper, upper + 1, false);
            g = core::cmp::min(g, buddy);
            k += 1;
        }
        self.push_free(g, k);
        self.meta_of(g).dirty.store(1, Relaxed);
    }

    // ----- search ---------------------------------------------------------------------

    /// Calls `f` on the chunks that have a free block of an order in `want`, in address
    /// order, until it returns something.
    fn scan_chunks<R>(&self, first: usize, want: u32, mut f: impl FnMut(usize) -> Option<R>) -> Option<R> {
        let chunks = self.top().div_ceil(CHUNK_GRANULES);
        let mut grp = first >> 6;
        while grp << 6 < chunks {
            // SAFETY: grp is within the directory.
            if unsafe { *self.groups.add(grp) } & want != 0 {
                let from = core::cmp::max(grp << 6, first);
                let mut seen = 0;
                for c in from..core::cmp::min((grp + 1) << 6, chunks) {
                    let mask = self.dir(c).mask;
                    seen |= mask;
                    if mask & want != 0 {
                        if let Some(r) = f(c) {
                            return Some(r);
                        }
                    }
                }
                if from == grp << 6 {
                    // A whole group seen: drop the bits no chunk of it has any more.
                    // SAFETY: grp is within the directory; the owner's lock is held.
                    unsafe { *self.groups.add(grp) &= seen };
                }
            }
            grp += 1;
        }
        None
    }

    /// Lowest buddy-free block of order >= k in which `n` granules fit at a position
    /// aligned to `align` granules. Returns (block start, order, placement).
    fn find_free(&self, k: usize, n: usize, align: usize) -> Option<(usize, usize, usize)> {
        self.scan_chunks(0, !0u32 << k, |c| self.find_in_chunk(c, k, n, align))
    }

    fn find_in_chunk(&self, c: usize, k: usize, n: usize, align: usize) -> Option<(usize, usize, usize)> {
        let m = self.meta(c)?;
        let step = core::cmp::min(1usize << k, CHUNK_GRANULES);
        let mut from = 0;
        while let Some(i) = m.next_free_start(from, step) {
            let g = (c << CHUNK_SHIFT) + i;
            if let Some(j) = self.free_block_order(g) {
                if j >= k {
                    let at = self.align_up(g, align);
                    if at + n <= g + (1 << j) {
                        return Some((g, j, at));
                    }
                }
            }
            from = i + 1;
        }
        None
    }

    /// Smallest granule index >= g whose address is a multiple of `align` granules.
    #[inline]
    fn align_up(&self, g: usize, align: usize) -> usize {
        if align <= 1 {
            return g;
        }
        let a = self.addr(g);
        let bytes = align << GRANULE_SHIFT;
        self.granule_of((a + bytes - 1) & !(bytes - 1))
    }

    // ----- allocation -------------------------------------------------------------

    /// Marks `[g, g+n)` as one live block.
    fn mark_live(&mut self, g: usize, n: usize) {
        self.mark_live_run(g, n, 1);
    }

    /// Marks `k` live blocks of `n` granules back to back from `g`. (Memory handed out
    /// needs no cleaning: a cache tag never outlives its block's stay in a cache, since
    /// pop and give_back clear it.)
    fn mark_live_run(&mut self, g: usize, n: usize, k: usize) {
        let end = g + n * k;
        self.last_fresh = g >= self.fresh_from;
        if self.fresh_from != usize::MAX {
            self.fresh_from = self.fresh_from.max(end);
        }
        if k == 1 && n > 64 {
            let base = g & !(CHUNK_GRANULES - 1);
            self.meta_of(g).reshape_interior(g - base, g - base, end - base);
        }
        // One pass over the bitmap pairs of the run: in each word, the start bits become
        // the blocks' first granules (whatever free blocks started there before), then
        // the alloc bits are set. In that order: a lock-free reader measuring the block
        // before the run never sees one of its granules allocated and not a start, as if
        // it continued that block. Words already right are not stored (the read-only
        // image of lazy chunks).
        let mut next_start = g;
        let mut base = g & !(CHUNK_GRANULES - 1);
        self.each_chunk_part(g, end, |m, a, b| {
            for (w, mask) in word_spans(a, b) {
                // The word's first granule, and the end of the run's part of it.
                let ws = base + (w << 6);
                let hi = base + core::cmp::min(b, (w + 1) << 6);
                let mut starts = 0u64;
                while next_start < hi {
                    starts |= 1 << (next_start - ws);
                    next_start += n;
                }
                let (start, alloc) = (m.word(Plane::Start, w), m.word(Plane::Alloc, w));
                let old = start.load(Relaxed);
                if (old & !mask) | starts != old {
                    start.store((old & !mask) | starts, Release);
                }
                let old = alloc.load(Relaxed);
                if old | mask != old {
                    alloc.store(old | mask, Release);
                }
            }
            base += CHUNK_GRANULES;
        });
        let base = g & !(CHUNK_GRANULES - 1);
        self.meta_of(g).note_block_end(end - base);
        self.stats.live_granules += (n * k) as u64;
        self.tail_hint = self.tail_hint.max(end);
        if end > self.hi_live() {
            self.set_hi_live(end);
        }
    }

    /// After granules ending at `end` became free: if they were the highest live ones,
    /// find the new highest live end.
    fn lower_hi_live(&mut self, end: usize) {
        if end >= self.hi_live() {
            self.set_hi_live(self.free_tail_start());
        }
    }

    /// Allocates a live block of exactly `n` granules whose address is a multiple of
    /// `align` granules (a power of two). Grows the arena when nothing fits.
    pub fn alloc(&mut self, n: usize, align: usize) -> Option<usize> {
        if let Some(g) = self.alloc_no_grow(n, align) {
            return Some(g);
        }
        if n == 0 || n > self.limit {
            return None;
        }
        let align = align.max(1);
        if n <= GROW_RUN_MAX && align == 1 {
            self.grow(n)?;
            return self.alloc_run(n);
        }
        let (k, search_align) = search_for(n, align);
        if n >= LARGE_GRANULES || search_align > 1 {
            return self.alloc_at_top(n, align);
        }
        self.grow(n + align)?;
        self.alloc_from_free(k, n, search_align).or_else(|| self.alloc_at_top(n, align))
    }

    /// Places `n` granules at the lowest run of free granules that holds them.
    fn alloc_run(&mut self, n: usize) -> Option<usize> {
        let p = self.find_run(n, 0)?;
        let end = self.take_run(p, n);
        self.mark_live(p, n);
        self.release_split_tail(p + n, end);
        Some(p)
    }

    /// Allocates up to `out.len()` blocks of `n` granules, each at the lowest free run
    /// that holds it (one scan for the whole batch: each search resumes where the last
    /// block ended, since nothing below it fits). Returns how many (granules in `out`).
    pub fn alloc_batch(&mut self, n: usize, out: &mut [usize], may_grow: bool) -> usize {
        let mut cursor = 0;
        let mut got = 0;
        while got < out.len() {
            let Some(p) = self.find_run(n, cursor) else {
                let next = if may_grow { self.alloc(n, 1) } else { self.alloc_no_grow(n, 1) };
                match next {
                    Some(g) => {
                        out[got] = g;
                        got += 1;
                        cursor = g + n;
                        continue;
                    }
                    None => break,
                }
            };
            // As many blocks as the run holds go back to back, as one-by-one lowest-first
            // placement would put them, with one split of the free blocks.
            let room = self.free_run_len(p, (out.len() - got) * n);
            let k = core::cmp::max(1, room / n);
            let end = self.take_run(p, k * n);
            self.mark_live_run(p, n, k);
            self.release_split_tail(p + k * n, end);
            for i in 0..k {
                out[got] = p + i * n;
                got += 1;
            }
            cursor = p + k * n;
        }
        got
    }

    /// Free granules from `p` on (at most `max`, within p's chunk and below the top).
    fn free_run_len(&self, p: usize, max: usize) -> usize {
        let end = core::cmp::min(core::cmp::min(p + max, self.top()), (p | (CHUNK_GRANULES - 1)) + 1);
        let base = p & !(CHUNK_GRANULES - 1);
        match self.meta_of(p).first_set_from(Plane::Alloc, p - base, end - base) {
            Some(i) => base + i - p,
            None => end - p,
        }
    }

    /// Takes the free blocks covering `[p, p+n)` (p starts a free block) off the free
    /// lists and returns where the last of them ends, at or past `p+n`. Their start bits
    /// stay until the run is marked live (`mark_live_run` rewrites them); what lies past
    /// `p+n` is the caller's to release then, with `release_cleared` (before, its merges
    /// would take the run's old blocks for free buddies).
    fn take_run(&mut self, p: usize, n: usize) -> usize {
        let mut g = p;
        while g < p + n {
            let Some(k) = self.free_block_order(g) else {
                crate::report::internal("free run is not made of free blocks");
            };
            self.take_free(g, k);
            g += 1 << k;
        }
        g
    }

    /// `take_run` for a run marked live later, after other changes: clears its start
    /// bits and releases what lies past it at once.
    fn take_run_now(&mut self, p: usize, n: usize) {
        let end = self.take_run(p, n);
        self.assign(Plane::Start, p, p + n, false);
        self.release_cleared(p + n, end);
    }

    /// Lowest run of `n` free granules within one chunk, starting at or after `from`.
    /// Chunks (and groups of 64 chunks) whose run bound is below `n` are skipped without
    /// touching their metadata; a failed search lowers the bounds it proved.
    fn find_run(&self, n: usize, from: usize) -> Option<usize> {
        let top = self.top();
        let chunks = top.div_ceil(CHUNK_GRANULES);
        let first = from >> CHUNK_SHIFT;
        // A run of n granules contains an aligned free block of at least this order.
        let min_order = (usize::BITS - 1 - (n + 1).leading_zeros()) as usize - 1;
        let want = !0u32 << min_order;
        let class = fit_class(n);
        for grp in first >> 6..chunks.div_ceil(64) {
            let mut candidates = self.fits(grp, class);
            if grp == first >> 6 {
                candidates &= !0u64 << (first & 63);
            }
            if chunks < (grp + 1) << 6 {
                candidates &= span_mask(0, chunks - (grp << 6));
            }
            while candidates != 0 {
                let c = (grp << 6) + candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                if self.run_bound_of(c) < n {
                    continue;
                }
                let start = if c == first { from & (CHUNK_GRANULES - 1) } else { 0 };
                // Without a free block of min_order there is no run of n.
                let mut bound = n - 1;
                if self.dir(c).mask & want != 0 {
                    let Some(m) = self.meta(c) else { continue };
                    let limit = core::cmp::min(CHUNK_GRANULES, top - (c << CHUNK_SHIFT));
                    let found = if n >= LONG_RUN_MIN && start == 0 {
                        m.find_long_free_run(n, limit)
                    } else {
                        m.find_free_run(n, start, limit)
                    };
                    // The model tests hold the shortcut to the full scan's answer.
                    #[cfg(test)]
                    assert_eq!(found.ok(), m.find_free_run(n, start, limit).ok(), "run of {n} in chunk {c}");
                    match found {
                        Ok(i) => return Some((c << CHUNK_SHIFT) + i),
                        Err(longest) => bound = longest,
                    }
                }
                if start == 0 {
                    self.set_run_hint(c, bound);
                }
            }
        }
        None
    }

    /// The run bound of chunk `c` (see `run_hints`).
    #[inline]
    fn run_hint(&self, c: usize) -> &AtomicU16 {
        // SAFETY: callers pass chunk indices below the directory size (top <= limit).
        unsafe { &*self.run_hints.add(c) }
    }

    /// Group `grp`'s bitmap of chunks whose run bound is at least `2^class`.
    #[inline]
    fn fits(&self, grp: usize, class: usize) -> u64 {
        // SAFETY: the group index is within the directory.
        unsafe { *self.group_fits.add(grp * FIT_CLASSES + class) }
    }

    /// Chunk `c`'s run bound.
    #[inline]
    fn run_bound_of(&self, c: usize) -> usize {
        self.run_hint(c).load(Relaxed) as usize
    }

    /// Sets chunk `c`'s run bound (saturating) and its bits in the group bitmaps.
    fn set_run_hint(&self, c: usize, bound: usize) {
        let bound = bound.min(u16::MAX as usize);
        let old = self.run_hint(c).load(Relaxed) as usize;
        self.run_hint(c).store(bound as u16, Relaxed);
        // Only the bitmaps between the old bound's classes and the new one's change
        // (both start empty with a zero bound, and change only here).
        let classes = |b: usize| if b == 0 { 0 } else { fit_class(b) + 1 };
        let (was, now) = (classes(old), classes(bound));
        let bit = 1u64 << (c & 63);
        for t in was.min(now)..was.max(now) {
            // SAFETY: the group index is within the directory; the owner's lock is held.
            let w = unsafe { &mut *self.group_fits.add((c >> 6) * FIT_CLASSES + t) };
            if now > was {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    /// Like [`alloc`](Self::alloc) but never grows the arena.
    pub fn alloc_no_grow(&mut self, n: usize, align: usize) -> Option<usize> {
        if n == 0 || n > self.limit {
            return None;
        }
        let align = align.max(1);
        if n <= RUN_MAX && align == 1 {
            return self.alloc_run(n);
        }
        let (k, search_align) = search_for(n, align);
        self.alloc_from_free(k, n, search_align)
    }

    fn alloc_from_free(&mut self, k: usize, n: usize, align: usize) -> Option<usize> {
        if k > MAX_ORDER {
            return None;
        }
        let (g, j, at) = self.find_free(k, n, align)?;
        self.take_free(g, j);
        self.mark_live(at, n);
        if at > g {
            self.release_range(g, at);
        }
        if at + n < g + (1 << j) {
            self.release_range(at + n, g + (1 << j));
        }
        Some(at)
    }

    /// Start of the run of buddy-free blocks that ends at the top.
    fn free_tail_start(&self) -> usize {
        self.free_tail_start_from(self.top())
    }

    /// Start of the run of buddy-free blocks that ends at `g`.
    fn free_tail_start_from(&self, mut g: usize) -> usize {
        while let Some(b) = self.free_block_ending_at(g) {
            g = b;
        }
        g
    }

    /// The last start bit at or below granule `g` within g's chunk: the start of the
    /// block holding `g` when that block begins in the same chunk.
    fn start_in_chunk(&self, g: usize) -> Option<usize> {
        let base = g & !(CHUNK_GRANULES - 1);
        self.meta(g >> CHUNK_SHIFT)?.last_set_below(Plane::Start, g - base + 1).map(|i| base + i)
    }

    /// Start of the buddy-free block that ends exactly at `g`, if there is one.
    fn free_block_ending_at(&self, g: usize) -> Option<usize> {
        if g == 0 || g > self.top() {
            return None;
        }
        // The block holding granule g-1 starts at the last start bit at or below it,
        // when that bit is in the same chunk ...
        if let Some(b) = self.start_in_chunk(g - 1) {
            let size = g - b;
            return (size.is_power_of_two() && self.is_free_block(b, size.trailing_zeros() as usize)).then_some(b);
        }
        // ... otherwise it began in an earlier chunk, so it is a block of a chunk or
        // more, starting at a chunk boundary.
        let mut k = CHUNK_SHIFT;
        while k <= MAX_ORDER && (1 << k) <= g {
            let b = g - (1 << k);
            if b & ((1 << k) - 1) == 0 && self.is_free_block(b, k) {
                return Some(b);
            }
            k += 1;
        }
        None
    }

    /// Takes every buddy-free block in `[from, top)` off the free lists (they must form
    /// the free tail); their granules stay unallocated with no start bits.
    fn take_tail(&mut self, from: usize) {
        let mut g = from;
        let top = self.top();
        while g < top {
            let Some(k) = self.free_block_order(g) else {
                crate::report::internal("free tail is not made of free blocks");
            };
            self.take_free(g, k);
            self.assign(Plane::Start, g, g + 1, false);
            g += 1 << k;
        }
    }

    /// Places a block of `n` granules across the free tail and fresh memory above it.
    fn alloc_at_top(&mut self, n: usize, align: usize) -> Option<usize> {
        let tail = self.free_tail_start();
        let at = self.align_up(tail, align);
        let end = at.checked_add(n)?;
        if end > self.top() {
            let huge = (n >= LAZY_MIN_GRANULES).then_some((n, align));
            if let (_, Some(span)) = self.grow_for(end + align - self.top(), huge)? {
                return Some(self.place_over_lazy(span, n, align));
            }
        }
        // Growth may have put chunk metadata at the start of the tail.
        let tail = self.free_tail_start();
        let at = self.align_up(tail, align);
        let top = self.top();
        if at + n > top {
            return None;
        }
        self.take_tail(tail);
        self.mark_live(at, n);
        if at > tail {
            self.release_range(tail, at);
        }
        if at + n < top {
            self.release_range(at + n, top);
        }
        Some(at)
    }

    /// Places the block of `n` granules (at a multiple of `align`) that `grow_for` left
    /// the lazy span for: at the start of the free tail below the span, as
    /// `alloc_at_top` would. Marking it live writes nothing into the lazy chunks, whose
    /// image already says what their bits would.
    fn place_over_lazy(&mut self, span: LazySpan, n: usize, align: usize) -> usize {
        let at = self.align_up(span.place, align);
        if at >= span.lo || at + n < span.hi || at + n > self.top() {
            crate::report::internal("large block does not cover its lazy chunks");
        }
        self.take_run_now(span.place, span.lo - span.place);
        if at + n > span.hi {
            self.take_run_now(span.hi, at + n - span.hi);
        }
        self.mark_live(at, n);
        if at > span.place {
            self.release_range(span.place, at);
        }
        at
    }

    /// The lazy chunks among those `[lo, hi)` touches (a contiguous range: the chunks a
    /// block covers wholly, after its first).
    fn lazy_chunks(&self, lo: usize, hi: usize) -> core::ops::Range<usize> {
        let (first, last) = (lo >> CHUNK_SHIFT, (hi - 1) >> CHUNK_SHIFT);
        let mut c = first;
        let lazy = |c: usize| self.dir(c).meta.load(Relaxed) & LAZY_BIT != 0;
        while c <= last && !lazy(c) {
            c += 1;
        }
        let start = c;
        while c <= last && lazy(c) {
            c += 1;
        }
        let end = c;
        // A block's lazy chunks are one span, and a shrink materialises a suffix of it.
        while c <= last {
            if lazy(c) {
                crate::report::internal("a block's lazy chunks are not contiguous");
            }
            c += 1;
        }
        start..end
    }

    /// Writes the reserved metadata of the lazy chunks `[lo, hi)` touches, as
    /// `interior_meta()` showed it, before the caller changes their granules; when
    /// `discard`, first gives the whole pages of `[lo, hi)` in those chunks back to the
    /// kernel (the caller is freeing them), so that their data and the new metadata
    /// are never resident together. Returns the bytes given back.
    fn materialize_lazy(&mut self, lo: usize, hi: usize, discard: bool) -> usize {
        let lazy = self.lazy_chunks(lo, hi);
        if lazy.is_empty() {
            return 0;
        }
        let clean = if discard {
            let (a, b) = (lo.max(lazy.start << CHUNK_SHIFT), hi.min(lazy.end << CHUNK_SHIFT));
            self.release_whole_pages(a, b)
        } else {
            0
        };
        for c in lazy {
            let p = (self.dir(c).meta.load(Relaxed) & !LAZY_BIT) as usize - 1;
            // SAFETY: `p` is the chunk's reserved metadata block (live, META_BYTES long,
            // inside the arena), which nothing else uses.
            unsafe {
                core::ptr::write_bytes(self.addr(p) as *mut u8, 0, META_BYTES);
                let m = &*(self.addr(p) as *const ChunkMeta);
                for w in 0..WORDS {
                    m.word(Plane::Alloc, w).store(u64::MAX, Relaxed);
                }
                m.chunk.store(c as u32, Relaxed);
            }
            self.dir(c).meta.store(p as u32 + 1, Release);
        }
        clean
    }

    /// Frees the live block `[g, g+n)` (user or internal) into the buddy system.
    /// Frees the live granules `[g, g+n)`. Granules that were not live mean the caller
    /// freed memory twice: that is reported (by address) and the process stopped.
    pub fn free_block(&mut self, g: usize, n: usize) {
        self.free_block_counting(g, n, n << GRANULE_SHIFT, false);
    }

    /// Frees the live block `[g, g+n)` whose contents are garbage and whose whole pages
    /// the caller gave back to the kernel already (a realloc copied it elsewhere,
    /// releasing as it went: waiting for a purge, which keeps the lowest free blocks,
    /// kept both copies of a grown array resident; glibc moves such blocks with mremap).
    /// The arena's source must allow releasing pages.
    pub fn free_block_released(&mut self, g: usize, n: usize) {
        let (lo, hi) = sys::whole_pages(self.addr(g), self.addr(g + n));
        let clean = hi.saturating_sub(lo);
        self.free_block_counting(g, n, (n << GRANULE_SHIFT) - clean, true);
    }

    /// Gives the whole pages inside granules `[g, end)` back to the kernel (madvise),
    /// where the arena's source allows it; returns the bytes released.
    fn release_whole_pages(&mut self, g: usize, end: usize) -> usize {
        if self.source == (Source::Fixed { release: false }) {
            return 0;
        }
        let (lo, hi) = sys::whole_pages(self.addr(g), self.addr(end));
        if hi > lo && sys::release_pages(lo, hi - lo) {
            self.stats.madvise_calls += 1;
            self.stats.madvised_bytes += (hi - lo) as u64;
            hi - lo
        } else {
            0
        }
    }

    /// Frees the live block `[g, g+n)`, `dirty` bytes of which hold data (for purging);
    /// `released`: its whole pages went back to the kernel already.
    fn free_block_counting(&mut self, g: usize, n: usize, dirty: usize, released: bool) {
        let mut dirty = dirty;
        if n > CHUNK_GRANULES {
            dirty -= self.materialize_lazy(g, g + n, !released);
        }
        let mut already_free = false;
        self.each_chunk_part(g, g + n, |m, a, b| already_free |= m.clear_live(a, b));
        if already_free {
            crate::report::misuse("free", crate::report::Misuse::DoubleFree, self.addr(g));
        }
        self.clear_interior(g, g + n);
        self.stats.live_granules -= n as u64;
        self.release_cleared(g, g + n);
        self.lower_hi_live(g + n);
        self.after_free(g + n, n, dirty);
    }

    fn after_free(&mut self, end: usize, freed: usize, dirty: usize) {
        self.dirty_bytes += dirty;
        let threshold = self.trim_threshold;
        if end + (TRIM_THRESHOLD >> GRANULE_SHIFT) >= self.top() || end >= self.tail_hint || freed >= CHUNK_GRANULES {
            self.trim(threshold, TRIM_KEEP);
        }
        let purge_at = core::cmp::max(PURGE_DIRTY_MIN, (self.top() << GRANULE_SHIFT) / 8);
        if self.dirty_bytes >= purge_at {
            self.purge(PURGE_MIN_ORDER, purge_at);
        }
    }

    /// Grows the live block `[g, g+n)` to `m` granules in place when the granules after it
    /// are free (or are the top of the arena, which then grows). Returns success.
    pub fn grow_in_place(&mut self, g: usize, n: usize, m: usize) -> bool {
        let need_end = g + m;
        let mut e = g + n;
        let mut blocks_end = e;
        // Walk the free blocks that follow the block.
        while blocks_end < need_end && blocks_end < self.top() {
            match self.free_block_order(blocks_end) {
                Some(k) => blocks_end += 1 << k,
                None => return false,
            }
        }
        if blocks_end < need_end {
            // The run reached the top: the arena must grow.
            if self.grow(need_end - blocks_end).is_none() {
                return false;
            }
            // New memory was merged into free blocks after our end; walk again.
            blocks_end = e;
            while blocks_end < need_end {
                match self.free_block_order(blocks_end) {
                    Some(k) => blocks_end += 1 << k,
                    None => return false,
                }
            }
        }
        while e < blocks_end {
            let k = self.free_block_order(e).unwrap_or(0);
            self.take_free(e, k);
            e += 1 << k;
        }
        self.assign(Plane::Start, g + n, need_end, false);
        self.assign(Plane::Alloc, g + n, need_end, true);
        let base = g & !(CHUNK_GRANULES - 1);
        let meta = self.meta_of(g);
        meta.reshape_interior(g - base, g + n - base, need_end - base);
        meta.note_block_end(need_end - base);
        self.stats.live_granules += (m - n) as u64;
        if need_end < blocks_end {
            self.release_range(need_end, blocks_end);
        }
        true
    }

    /// Shrinks the live block `[g, g+n)` to `m` granules, freeing its tail.
    pub fn shrink_in_place(&mut self, g: usize, n: usize, m: usize) {
        if m < n {
            let clean = if n > CHUNK_GRANULES { self.materialize_lazy(g + m, g + n, true) } else { 0 };
            self.assign(Plane::Alloc, g + m, g + n, false);
            self.clear_interior(g + m, g + n);
            // (before the freed tail can become a free block whose order this slot holds)
            let base = g & !(CHUNK_GRANULES - 1);
            let meta = self.meta_of(g);
            meta.reshape_interior(g - base, g + n - base, g + m - base);
            meta.note_block_end(g + m - base);
            self.stats.live_granules -= (n - m) as u64;
            self.release_range(g + m, g + n);
            self.lower_hi_live(g + n);
            self.after_free(g + n, n - m, ((n - m) << GRANULE_SHIFT) - clean);
        }
    }

    // ----- growth and release -------------------------------------------------------

    /// Extends the arena by at least `need` free granules above its current free tail
    /// (plus room for new chunk metadata). Returns the old top.
    fn grow(&mut self, need: usize) -> Option<usize> {
        self.grow_for(need, None).map(|(top, _)| top)
    }

    /// `grow`, for a block of `huge.0` granules at a multiple of `huge.1` that the
    /// caller places at the start of the free tail right after: the chunks the block
    /// will wholly cover, after its first, get no metadata (lazy chunks) and come back
    /// as a span the caller must place the block over (`place_over_lazy`).
    fn grow_for(&mut self, need: usize, huge: Option<(usize, usize)>) -> Option<(usize, Option<LazySpan>)> {
        let top = self.top();
        let step = core::cmp::max(GROW_MIN, (top << GRANULE_SHIFT) / 64) >> GRANULE_SHIFT;
        let base_add = core::cmp::max(need, step);
        // Room for the metadata of every chunk the growth reaches into (which itself can
        // reach further), then whole pages.
        let mut add = base_add;
        loop {
            let new_chunks = top.checked_add(add)?.div_ceil(CHUNK_GRANULES) - top.div_ceil(CHUNK_GRANULES);
            let want = (base_add + (new_chunks + 1) * META_GRANULES).div_ceil(PAGE_GRANULES) * PAGE_GRANULES;
            if want <= add {
                break;
            }
            add = want;
        }
        let new_top = top.checked_add(add)?;
        if new_top > self.limit {
            return None;
        }
        if self.source == Source::Brk {
            let old = sys::sbrk(isize::try_from(add << GRANULE_SHIFT).ok()?)?;
            if old != self.addr(top) {
                // Someone else moved the break: this memory is not contiguous with the
                // heap. Give it back and let the caller fall back.
                sys::sbrk(-((add << GRANULE_SHIFT) as isize));
                return None;
            }
        }
        self.stats.grow_calls += 1;
        if self.last_was_shrink {
            self.last_was_shrink = false;
            self.flips += 1;
            if self.flips == FLIPS_TO_DOUBLE {
                self.flips = 0;
                self.trim_threshold = core::cmp::min(self.trim_threshold * 2, TRIM_THRESHOLD_MAX);
            }
        }
        let lazy = self.install_chunks(top, new_top, huge);
        self.stats.peak_top = self.stats.peak_top.max(new_top as u64);
        Some((top, lazy))
    }

    /// Makes `[old_top, new_top)` part of the arena. Metadata for new chunks goes into
    /// free memory below when some fits, else at the start of the free tail, so the free
    /// run that ends at the new top stays as long as possible.
    fn install_chunks(&mut self, old_top: usize, new_top: usize, huge: Option<(usize, usize)>) -> Option<LazySpan> {
        let first_new = old_top.div_ceil(CHUNK_GRANULES);
        let last = new_top.div_ceil(CHUNK_GRANULES);
        let tail = self.free_tail_start();
        self.take_tail(tail);
        let mut place = tail;
        // Places every new chunk's metadata first (no chunk is in use yet, so no
        // reader looks at them), to know where the tail, and a large block, will start.
        for c in first_new..last {
            let at = match self.alloc_from_free(order_for(META_GRANULES), META_GRANULES, 1) {
                Some(g) => g,
                None => {
                    place += META_GRANULES;
                    place - META_GRANULES
                }
            };
            self.dir(c).meta.store(at as u32 + 1, Relaxed);
        }
        // The chunks the large block will cover wholly after its first stay lazy.
        let lazy = huge.and_then(|(n, align)| {
            let at = self.align_up(place, align);
            let end = at.checked_add(n).filter(|&e| e <= new_top)?;
            let lo = core::cmp::max((at + 1).div_ceil(CHUNK_GRANULES), first_new);
            let hi = end >> CHUNK_SHIFT;
            (lo < hi).then_some(lo..hi)
        });
        for c in first_new..last {
            let at = self.dir(c).meta.load(Relaxed);
            if lazy.as_ref().is_some_and(|l| l.contains(&c)) {
                self.set_run_hint(c, 0);
                self.dir(c).meta.store(at | LAZY_BIT, Release);
                continue;
            }
            let at = at as usize - 1;
            // SAFETY: `at` is arena memory below new_top that no block uses; zeroed
            // bitmaps describe an empty chunk.
            unsafe {
                core::ptr::write_bytes(self.addr(at) as *mut u8, 0, META_BYTES);
                let m = &*(self.addr(at) as *const ChunkMeta);
                m.chunk.store(c as u32, Relaxed);
            }
            self.set_run_hint(c, usize::MAX);
            self.dir(c).meta.store(at as u32 + 1, Release);
        }
        self.set_top(new_top);
        // Every chunk now has metadata: record the metadata placed in the tail as live.
        let mut g = tail;
        while g < place {
            self.mark_live(g, META_GRANULES);
            g += META_GRANULES;
        }
        self.stats.meta_granules += ((last - first_new) * META_GRANULES) as u64;
        match lazy {
            None => {
                self.release_range(place, new_top);
                None
            }
            Some(l) => {
                let (lo, hi) = (l.start << CHUNK_SHIFT, l.end << CHUNK_SHIFT);
                self.release_range(place, lo);
                if hi < new_top {
                    self.release_range(hi, new_top);
                }
                Some(LazySpan { place, lo, hi })
            }
        }
    }

    /// The metadata block that ends at `t`, as (start, chunk), if the block ending there
    /// is one.
    fn meta_ending_at(&self, t: usize) -> Option<(usize, usize)> {
        let p = t.checked_sub(META_GRANULES)?;
        if !self.test(Plane::Start, p) || !self.test(Plane::Alloc, p) || self.live_end(p) != t {
            return None;
        }
        // SAFETY: p starts a live block of META_GRANULES granules inside the arena, so
        // reading a ChunkMeta-sized value there is in bounds; the directory check below
        // decides whether it really is metadata.
        let c = unsafe { (*(self.addr(p) as *const ChunkMeta)).chunk.load(Relaxed) } as usize;
        (c < self.limit.div_ceil(CHUNK_GRANULES) && self.dir(c).meta.load(Relaxed) as usize == p + 1).then_some((p, c))
    }

    /// How far the top could come down: below the free tail and below any metadata that
    /// describes only chunks that would be dropped. Returns (lowest start, highest top
    /// that still drops every passed metadata block's chunk).
    fn trim_target(&self) -> (usize, usize) {
        let mut t = self.top();
        let mut ceiling = usize::MAX;
        loop {
            let below = self.free_tail_start_from(t);
            t = below;
            match self.meta_ending_at(t) {
                Some((p, c)) if (c << CHUNK_SHIFT) >= p.div_ceil(PAGE_GRANULES) * PAGE_GRANULES => {
                    ceiling = ceiling.min(c << CHUNK_SHIFT);
                    t = p;
                }
                _ => break,
            }
        }
        (t, ceiling)
    }

    /// Gives the free tail back when it is at least `threshold` bytes, keeping up to
    /// `keep` bytes as a cushion. Returns whether memory was released.
    pub fn trim(&mut self, threshold: usize, keep: usize) -> bool {
        let mut released = false;
        // Freeing the metadata of dropped chunks can lengthen the tail: go round again.
        for _ in 0..8 {
            let top = self.top();
            let (tail, ceiling) = self.trim_target();
            self.tail_hint = tail;
            let tail_bytes = (top - tail) << GRANULE_SHIFT;
            let nearly_empty = tail << GRANULE_SHIFT <= TRIM_EMPTY_HEAP;
            if tail_bytes < threshold && !(nearly_empty && tail_bytes >= threshold.min(TRIM_EMPTY_HEAP)) {
                break;
            }
            let lowest = tail.div_ceil(PAGE_GRANULES) * PAGE_GRANULES;
            let cushioned = (tail + (keep >> GRANULE_SHIFT)).div_ceil(PAGE_GRANULES) * PAGE_GRANULES;
            let new_top = cushioned.min(ceiling).max(lowest);
            if new_top >= top {
                break;
            }
            // Forget the free blocks of the tail; passed metadata blocks go with their
            // chunks below.
            let mut g = tail;
            while g < top {
                if let Some(k) = self.free_block_order(g) {
                    self.take_free(g, k);
                    g += 1 << k;
                } else {
                    g += META_GRANULES;
                }
            }
            let keep_chunks = new_top.div_ceil(CHUNK_GRANULES);
            let old_chunks = top.div_ceil(CHUNK_GRANULES);
            // Clear what the retained chunks record above the tail.
            let clear_end = top.min(keep_chunks << CHUNK_SHIFT);
            if tail < clear_end {
                // Alloc bits first (see "Lock-free readers" at the top).
                self.assign(Plane::Alloc, tail, clear_end, false);
                self.clear_interior(tail, clear_end);
                self.assign(Plane::Start, tail, clear_end, false);
            }
            self.set_top(new_top);
            for c in keep_chunks..old_chunks {
                // (A lazy chunk lies inside a live block, never above the free tail.)
                let m = (self.dir(c).meta.swap(0, AcqRel) & !LAZY_BIT) as usize;
                self.dir_mut(c).mask = 0;
                if m == 0 {
                    continue;
                }
                self.stats.meta_granules -= META_GRANULES as u64;
                self.stats.live_granules -= META_GRANULES as u64;
                if m - 1 < tail {
                    // Metadata in a hole lower down: an ordinary block to free.
                    self.assign(Plane::Alloc, m - 1, m - 1 + META_GRANULES, false);
                    self.clear_interior(m - 1, m - 1 + META_GRANULES);
                    self.release_range(m - 1, m - 1 + META_GRANULES);
                }
            }
            for grp in keep_chunks >> 6..old_chunks.div_ceil(64) {
                self.refresh_group(grp);
            }
            let bytes = (top - new_top) << GRANULE_SHIFT;
            // Whole pages above the new top come back from the kernel zeroed.
            let page_above = (new_top + PAGE_GRANULES - 1) & !(PAGE_GRANULES - 1);
            match self.source {
                Source::Brk => {
                    if sys::sbrk(-(bytes as isize)).is_some() && self.fresh_from != usize::MAX {
                        self.fresh_from = self.fresh_from.min(page_above);
                    }
                }
                Source::Fixed { release } => {
                    if release && sys::release_pages(self.addr(new_top), bytes) {
                        self.stats.madvise_calls += 1;
                        self.stats.madvised_bytes += bytes as u64;
                        self.fresh_from = self.fresh_from.min(page_above);
                    }
                }
            }
            self.stats.shrink_calls += 1;
            self.last_was_shrink = true;
            released = true;
            if tail < new_top {
                self.release_range(tail, new_top);
            }
            self.set_hi_live(self.free_tail_start());
        }
        released
    }

    /// Returns the whole free pages of dirty chunks to the kernel (madvise), from free
    /// blocks of at least order `min_order`, except the lowest `retain` bytes of them:
    /// placement is lowest-address-first, so the lowest free blocks are the ones the next
    /// allocations take, and releasing them would only have them faulted in again.
    pub fn purge(&mut self, min_order: usize, retain: usize) -> usize {
        let mut retained = 0;
        self.dirty_bytes = 0;
        let mut released = 0;
        let chunks = self.top().div_ceil(CHUNK_GRANULES);
        // Only blocks of a page or more can hold a whole page: chunks without one are
        // skipped without touching their bitmaps.
        let min_order = min_order.max(8);
        let worth = u32::MAX << min_order;
        for c in 0..chunks {
            if self.dir(c).mask & worth == 0 {
                continue;
            }
            let Some(m) = self.meta(c) else { continue };
            if m.dirty.swap(0, Relaxed) == 0 {
                continue;
            }
            // The borrow of self through `m` must end before the stats update below.
            let m = m as *const ChunkMeta;
            // SAFETY: the metadata block stays live while the lock is held.
            let m = unsafe { &*m };
            let mut from = 0;
            while let Some(i) = m.next_free_start(from, 1) {
                let g = (c << CHUNK_SHIFT) + i;
                from = i + 1;
                let Some(k) = self.free_block_order(g) else { continue };
                if k < min_order {
                    continue;
                }
                if retained < retain {
                    retained += 1 << (k + GRANULE_SHIFT);
                    // Still dirty: a later purge may release it.
                    m.dirty.store(1, Relaxed);
                    continue;
                }
                released += self.release_whole_pages(g, g + (1 << k));
            }
        }
        released
    }

    // ----- inspection -------------------------------------------------------------

    /// Calls `f(start)` for the first granule of every chunk-metadata block.
    pub fn for_each_metadata(&self, mut f: impl FnMut(usize)) {
        for c in 0..self.top().div_ceil(CHUNK_GRANULES) {
            let m = self.dir(c).meta.load(Acquire) & !LAZY_BIT;
            if m != 0 {
                f(m as usize - 1);
            }
        }
    }

    /// Calls `f(start, granules, state)` for every block below the top, in address order:
    /// state 0 = buddy-free, 1 = live, 2 = parked in a thread cache.
    pub fn for_each_block(&self, mut f: impl FnMut(usize, usize, u8)) {
        let top = self.top();
        let mut g = 0;
        while g < top {
            if self.test(Plane::Alloc, g) {
                let e = self.live_end(g);
                let addr = self.addr(g);
                // SAFETY: a live block of at least one granule: its first word is readable.
                let cached = unsafe { (addr as *const u64).read() } == self.cached_tag(addr);
                f(g, e - g, if cached { 2 } else { 1 });
                g = e;
            } else if let Some(k) = self.free_block_order(g) {
                f(g, 1 << k, 0);
                g += 1 << k;
            } else {
                crate::report::internal("unallocated granule outside any free block");
            }
        }
    }
}

#[cfg(test)]
mod tests;
