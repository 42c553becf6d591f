//! Per-chunk granule bitmaps: the out-of-band record of every block's extent and state.
//!
//! A chunk is 64 KiB of heap (4096 granules of 16 bytes). Its `ChunkMeta` holds two bits
//! per granule:
//!
//! | `start` | `alloc` | granule is ...                                                 |
//! |---------|---------|----------------------------------------------------------------|
//! | 1       | 1       | the first granule of a live block (user or internal)           |
//! | 0       | 1       | a later granule of a live block                                 |
//! | 1       | 0       | the first granule of a buddy-free block                         |
//! | 0       | 0       | a later granule of a free block, or beyond the heap top          |
//!
//! Blocks parked in thread caches count as live here (`alloc=1`): the cache tags them
//! in-band (see `cache.rs`). So runs of `alloc=0` are exactly the buddy's free memory.
//!
//! So a live block's extent is its start granule plus the run of `alloc=1, start=0`
//! granules after it; no header sits in front of a user's block.
//!
//! Concurrency: bits change only under the arena lock, so a write is a plain load and
//! store (of an atomic word); the lock-free paths (`free`, `malloc_usable_size`, the
//! thread caches) only read them, with atomic loads.

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::*};

pub const GRANULE_SHIFT: usize = 4;
pub const GRANULE: usize = 1 << GRANULE_SHIFT;
pub const CHUNK_SHIFT: usize = 12; // granules per chunk, as a power of two
pub const CHUNK_GRANULES: usize = 1 << CHUNK_SHIFT;
pub const WORDS: usize = CHUNK_GRANULES / 64;
/// Highest buddy order (block of 2^order granules) the core manages.
pub const MAX_ORDER: usize = 31;

#[repr(C, align(16))]
pub struct ChunkMeta {
    /// Word `w` of both planes side by side (`[alloc, start]`), so that one cache line
    /// answers "is a block live here, and where does it end" for a free.
    pub bits: [[AtomicU64; 2]; WORDS],
    /// Buddy-free blocks of each order that start in this chunk. Changed under the arena
    /// lock (atomics only so that shared references suffice; relaxed plain stores).
    pub free_count: [AtomicU16; MAX_ORDER + 1],
    /// Per 64-granule slot `s` (bitmap word `s`), one of:
    /// * the order of the buddy-free block of order >= 6 that starts at the slot's first
    ///   granule (a free block of a lower order lies within one word, and its order is
    ///   the distance to the next set bit);
    /// * `INTERIOR | (k - 1)` when the slot is the first of `k` slots wholly inside a
    ///   live block that starts in an earlier slot of this chunk (and `k` is all such
    ///   slots of the block in this chunk), with `ENDS_AT_WORD` added when the block
    ///   ends exactly where those slots do;
    /// * `END_TAG | e` in the slot right after such `k` slots when the block ends `e`
    ///   granules (1 to 63) into it (the slot's first granule is the block's, so nothing
    ///   else can claim the slot);
    /// * 0.
    ///
    /// With the marker and the end tag, `free` reads where a block of up to 64 KiB ends
    /// from this array, without loading the bitmap pair of the word where it ends
    /// (which, waiting for the marker, was the costliest load of a mid-size free).
    /// Changed under the arena lock; a block's marker and end tag are read without it
    /// only by the block's owner, and do not change while the block is live and
    /// unchanged.
    pub big_order: [AtomicU8; WORDS],
    /// A block was freed here since the last purge. Changed under the arena lock.
    pub dirty: AtomicU32,
    /// The chunk this metadata describes (lets trimming recognise metadata blocks).
    pub chunk: AtomicU32,
    /// Nonzero when the live block holding the chunk's last granule may run on into the
    /// next chunk; zero when it ends at the chunk's end. Lets the owner of a block that
    /// reaches the chunk's end (by the bitmaps) know where it ends without the next
    /// chunk's metadata, which a trim may free at any moment (`BlockEnd::Unknown`).
    /// Kept by `note_block_end` wherever a block holding that granule is marked (only
    /// that block's marking changes it, so it stays put while the block is live); a
    /// stale nonzero value only sends a free to the locked path.
    pub runs_on: AtomicU8,
    /// Every alloc word below this index is full: a search for free granules starts
    /// here (in a heap being filled, the chunk a refill searches is full up to near its
    /// end, and the search walked its full words from the start). Lowered wherever
    /// alloc bits are cleared (`assign`, `clear_live`), raised by `find_free_run` to
    /// the first word it finds not full. Under the arena lock. (0 in the interior
    /// image: it is never searched, and neither change stores a value already there.)
    pub full_below: AtomicU8,
}

/// `big_order` values from this up mark words wholly inside a live block.
pub const INTERIOR: u8 = 0x80;
/// In a marker: the block ends exactly at the end of its interior words (the chunk's
/// end included).
pub const ENDS_AT_WORD: u8 = 0x40;
/// Where a live block ends, as far as its first chunk's metadata tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockEnd {
    /// At this chunk-relative granule (the chunk's end included).
    At(usize),
    /// In a later chunk: its marker says so, so the next chunk holds part of the live
    /// block, and neither that chunk nor its metadata can go away while it is live.
    Beyond,
    /// At or past the chunk's end, which one this chunk does not tell.
    Unknown,
}

/// `big_order` values from this up to `INTERIOR` (exclusive) are end tags.
pub const END_TAG: u8 = 0x40;
/// The `k - 1` of a marker.
const INTERIOR_WORDS: u8 = 0x3f;

/// Runs at least this long hold a whole aligned free word (see `find_long_free_run`).
pub const LONG_RUN_MIN: usize = 127;

pub const META_BYTES: usize = core::mem::size_of::<ChunkMeta>();

/// What the metadata of a chunk wholly inside one live block (that starts in an earlier
/// chunk) holds: every granule allocated, none a start, no free blocks, no markers, and
/// a `chunk` no directory entry matches. Such a chunk of a large block may have no
/// metadata of its own (`Arena`'s lazy chunks); readers are given this image instead.
/// It lies in read-only memory: a write that would change it faults, and `assign`
/// skips writes that change nothing.
#[repr(C, align(16))]
struct InteriorImage {
    bits: [[u64; 2]; WORDS],
    rest: [u8; META_BYTES - WORDS * 16],
}

static INTERIOR_IMAGE: InteriorImage = InteriorImage {
    bits: [[u64::MAX, 0]; WORDS],
    rest: {
        let mut r = [0u8; META_BYTES - WORDS * 16];
        let at = core::mem::offset_of!(ChunkMeta, chunk) - WORDS * 16;
        let mut i = 0;
        while i < 4 {
            r[at + i] = 0xff;
            i += 1;
        }
        r
    },
};
const _: () = assert!(core::mem::size_of::<InteriorImage>() == META_BYTES);
const _: () = assert!(core::mem::align_of::<InteriorImage>() == core::mem::align_of::<ChunkMeta>());

/// The metadata every lazy chunk reads as (see [`InteriorImage`]).
#[inline]
pub fn interior_meta() -> &'static ChunkMeta {
    // SAFETY: same size and alignment as ChunkMeta, whose fields are all integers (or
    // atomics of them), valid for any bit pattern. Only loads reach it: writers
    // materialise a lazy chunk's own metadata first, and `assign` stores nothing where
    // nothing changes.
    unsafe { &*(&INTERIOR_IMAGE as *const InteriorImage as *const ChunkMeta) }
}
// The free fast path addresses word w's pair as granule w of the metadata block.
const _: () = assert!(core::mem::offset_of!(ChunkMeta, bits) == 0);
const _: () = assert!(core::mem::size_of::<[AtomicU64; 2]>() == GRANULE);
pub const META_GRANULES: usize = META_BYTES.div_ceil(GRANULE);

/// Mask of the bits `[lo, hi)` in a word (0 <= lo < hi <= 64).
#[inline]
pub fn span_mask(lo: usize, hi: usize) -> u64 {
    let upper = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// The bitmap words that granules `[lo, hi)` of a chunk lie in, each with the mask of
/// those granules in it.
#[inline]
pub fn word_spans(lo: usize, hi: usize) -> impl Iterator<Item = (usize, u64)> {
    let mut g = lo;
    core::iter::from_fn(move || {
        if g >= hi {
            return None;
        }
        let w = g >> 6;
        let end = core::cmp::min(hi, (w + 1) << 6);
        let mask = span_mask(g & 63, end - (w << 6));
        g = end;
        Some((w, mask))
    })
}

/// Which bitmap of a chunk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Plane {
    Alloc = 0,
    Start = 1,
}

impl ChunkMeta {
    /// Adds `delta` to the free-block count of `order`; returns the new count. Arena
    /// lock held.
    #[inline]
    pub fn count_free(&self, order: usize, delta: i32) -> u16 {
        let c = &self.free_count[order];
        let v = (c.load(Relaxed) as i32 + delta) as u16;
        c.store(v, Relaxed);
        v
    }

    /// Word `w` (granules `64w .. 64w+63`) of one plane.
    #[inline]
    pub fn word(&self, plane: Plane, w: usize) -> &AtomicU64 {
        &self.bits[w][plane as usize]
    }

    #[inline]
    pub fn alloc_word(&self, w: usize) -> u64 {
        self.bits[w][Plane::Alloc as usize].load(Acquire)
    }

    #[inline]
    pub fn start_word(&self, w: usize) -> u64 {
        self.bits[w][Plane::Start as usize].load(Acquire)
    }

    /// `pair` where the CPU loads both words at once; `None` elsewhere.
    #[inline(always)]
    pub fn pair_at_once(&self, w: usize) -> Option<(u64, u64)> {
        // SAFETY: a pair of words of this metadata, 16-byte aligned (`bits`); checked
        // that the CPU loads it at once.
        crate::sys::pair_loads_atomic().then(|| unsafe { crate::sys::load_pair_atomic(self.bits[w].as_ptr() as *const u64) })
    }

    /// Word `w` of both planes as one consistent pair `(alloc, start)`. Writers (under the
    /// arena lock) store one word at a time, so a lock-free reader may load an alloc word
    /// from before a change and a start word from after it: it loads both at once where
    /// the CPU makes a 16-byte load atomic, else re-reads both until neither moved in
    /// between.
    #[inline(always)]
    pub fn pair(&self, w: usize) -> (u64, u64) {
        if let Some(p) = self.pair_at_once(w) {
            return p;
        }
        loop {
            let alloc = self.alloc_word(w);
            let start = self.start_word(w);
            if self.alloc_word(w) == alloc && self.start_word(w) == start {
                return (alloc, start);
            }
            core::hint::spin_loop();
        }
    }

    #[inline]
    pub fn test(&self, plane: Plane, g: usize) -> bool {
        (self.word(plane, g >> 6).load(Relaxed) >> (g & 63)) & 1 != 0
    }

    /// Sets (`on`) or clears the bits `[lo, hi)` of one plane within this chunk and
    /// returns whether any of them was already in the requested state (free's
    /// double-free check; counting them was a software popcount per word on the
    /// baseline x86-64 target, for a caller that only compared the count with zero).
    /// The caller holds the arena lock (the only writer).
    #[inline]
    pub fn assign(&self, plane: Plane, lo: usize, hi: usize, on: bool) -> bool {
        if plane == Plane::Alloc && !on {
            self.lower_full_below(lo >> 6);
        }
        let mut already = 0u64;
        for (w, mask) in word_spans(lo, hi) {
            let old = self.word(plane, w).load(Relaxed);
            let new = if on { old | mask } else { old & !mask };
            if new != old {
                self.word(plane, w).store(new, Release);
            }
            already |= if on { old & mask } else { !old & mask };
        }
        already != 0
    }

    /// Clears both planes over `[lo, hi)`, live granules being freed, and returns whether
    /// any of them was free already (a double free). One pass over the pairs: each alloc
    /// word is stored before its start word, so a lock-free reader measuring the block
    /// before these granules never sees one of them as its continuation (allocated, not
    /// a start). The caller holds the arena lock.
    #[inline]
    pub fn clear_live(&self, lo: usize, hi: usize) -> bool {
        self.lower_full_below(lo >> 6);
        let mut already = 0u64;
        for (w, mask) in word_spans(lo, hi) {
            let (alloc, start) = (self.word(Plane::Alloc, w), self.word(Plane::Start, w));
            let old = alloc.load(Relaxed);
            already |= !old & mask;
            if old & mask != 0 {
                alloc.store(old & !mask, Release);
            }
            let old = start.load(Relaxed);
            if old & mask != 0 {
                start.store(old & !mask, Release);
            }
        }
        already != 0
    }

    /// Word `w` may have free granules now: searches must not start above it.
    #[inline]
    fn lower_full_below(&self, w: usize) {
        if w < self.full_below.load(Relaxed) as usize {
            self.full_below.store(w as u8, Relaxed);
        }
    }

    /// Sets or clears one bit (the caller holds the arena lock).
    #[inline]
    pub fn set_bit(&self, plane: Plane, i: usize, on: bool) {
        let word = self.word(plane, i >> 6);
        let old = word.load(Relaxed);
        let bit = 1u64 << (i & 63);
        word.store(if on { old | bit } else { old & !bit }, Release);
    }

    /// Whether a buddy-free block of exactly order `k` may start at granule `i`, as far
    /// as the bitmaps of `i`'s word tell (see `Arena::is_free_block`; `i + 2^k` must
    /// not pass the arena's top).
    #[inline]
    pub fn is_free_block(&self, i: usize, k: usize) -> bool {
        let (alloc, start) = (self.alloc_word(i >> 6), self.start_word(i >> 6));
        let b = i & 63;
        if (start >> b) & 1 == 0 || (alloc >> b) & 1 != 0 {
            return false;
        }
        if k >= 6 {
            return self.big_order[i >> 6].load(Relaxed) as usize == k;
        }
        let inside = if k == 0 { 0 } else { span_mask(b + 1, b + (1 << k)) };
        (start | alloc) & inside == 0 && (b != 0 || self.big_order[i >> 6].load(Relaxed) == 0)
    }

    /// Records where the block just marked live (or reshaped) ends, `hi` granules from
    /// this chunk's start: past the chunk's end, or exactly at it (`runs_on`; a block
    /// ending earlier does not hold the chunk's last granule). Arena lock held.
    #[inline]
    pub fn note_block_end(&self, hi: usize) {
        let runs_on = match hi.cmp(&CHUNK_GRANULES) {
            core::cmp::Ordering::Less => return,
            core::cmp::Ordering::Equal => 0,
            core::cmp::Ordering::Greater => 1,
        };
        // (No store where nothing changes: see `interior_meta`.)
        if self.runs_on.load(Relaxed) != runs_on {
            self.runs_on.store(runs_on, Release);
        }
    }

    /// Words `[first, last)` of this chunk lie wholly inside the live block `[lo, hi)`
    /// (chunk-relative granules, `hi` may pass the chunk's end) after its first word.
    #[inline]
    fn interior_words(lo: usize, hi: usize) -> (usize, usize) {
        ((lo >> 6) + 1, core::cmp::min(hi, CHUNK_GRANULES) >> 6)
    }

    /// Records the interior words of the live block that starts at `lo` in this chunk
    /// and now ends at `hi`, having ended at `old_hi` (`lo` for a new block; under the
    /// arena lock). Call it before a shrunk block's tail is freed.
    pub fn reshape_interior(&self, lo: usize, old_hi: usize, hi: usize) {
        let (first, last) = Self::interior_words(lo, hi);
        let had_marker = first < Self::interior_words(lo, old_hi).1;
        if had_marker {
            // The old end tag, if the block ended inside a word of this chunk: that
            // word's first granule was the block's (a shrink has not freed it yet), so
            // what its slot holds is this block's tag.
            self.clear_interior(old_hi & !63, old_hi);
        }
        if first < last {
            let mut mark = INTERIOR | (last - first - 1) as u8;
            if hi <= CHUNK_GRANULES {
                if hi & 63 == 0 {
                    mark |= ENDS_AT_WORD;
                } else {
                    self.big_order[last].store(END_TAG | (hi & 63) as u8, Relaxed);
                }
            }
            self.big_order[first].store(mark, Relaxed);
        } else if had_marker {
            // Shrunk out of the slot it marked (which no other block can mark: another
            // block starting in the same word ends before it).
            self.big_order[first].store(0, Relaxed);
        }
    }

    /// Forgets the markers and end tags of the words whose first granule lies in `[lo,
    /// hi)` (live granules about to be freed: no free block starts there, and a marker
    /// or tag there belongs to the block being freed).
    pub fn clear_interior(&self, lo: usize, hi: usize) {
        for w in lo.div_ceil(64)..core::cmp::min(hi, CHUNK_GRANULES).div_ceil(64) {
            if self.big_order[w].load(Relaxed) >= END_TAG {
                self.big_order[w].store(0, Relaxed);
            }
        }
    }

    /// End of the live block that started before word `w` and continues into it: like
    /// `live_run_end(w * 64)`, but read from the marker and end tag when the block
    /// covers word `w` whole. Called by the block's owner.
    #[inline]
    pub fn live_block_end_from_word(&self, w: usize) -> BlockEnd {
        let mut w = w;
        if w < WORDS {
            let mark = self.big_order[w].load(Relaxed);
            if mark >= INTERIOR {
                w += 1 + (mark & INTERIOR_WORDS) as usize;
                if mark & ENDS_AT_WORD != 0 {
                    return BlockEnd::At(w << 6);
                }
                if w >= WORDS {
                    return BlockEnd::Beyond;
                }
                let tag = self.big_order[w].load(Relaxed);
                if (END_TAG..INTERIOR).contains(&tag) {
                    return BlockEnd::At((w << 6) + (tag - END_TAG) as usize);
                }
            }
        }
        match self.live_run_end(w << 6) {
            Some(end) => BlockEnd::At(end),
            None => BlockEnd::Unknown,
        }
    }

    /// First granule in `[from, CHUNK_GRANULES)` whose `start` bit is set or whose
    /// `alloc` bit is clear: the end of a live block that continues at `from`.
    pub fn live_run_end(&self, from: usize) -> Option<usize> {
        if from >= CHUNK_GRANULES {
            return None;
        }
        let mut w = from >> 6;
        let mut skip = span_mask(0, from & 63);
        while w < WORDS {
            let (alloc, start) = self.pair(w);
            let stop = (start | !alloc) & !skip;
            if stop != 0 {
                return Some((w << 6) + stop.trailing_zeros() as usize);
            }
            skip = 0;
            w += 1;
        }
        None
    }

    /// Lowest granule `>= from` that starts a block and is not allocated (a buddy-free
    /// or cached block), restricted to multiples of `align` (a power of two <= 64 or a
    /// multiple of 64).
    pub fn next_free_start(&self, from: usize, align: usize) -> Option<usize> {
        let pattern: u64 = match align {
            1 => u64::MAX,
            2 => 0x5555_5555_5555_5555,
            4 => 0x1111_1111_1111_1111,
            8 => 0x0101_0101_0101_0101,
            16 => 0x0001_0001_0001_0001,
            32 => 0x0000_0001_0000_0001,
            _ => 1,
        };
        let word_step = if align > 64 { align / 64 } else { 1 };
        let mut w = from >> 6;
        if word_step > 1 {
            w = w.div_ceil(word_step) * word_step;
            if w << 6 != from && (from & 63) != 0 {
                // `from` was inside a word: w already rounded up past it.
            }
        }
        let mut skip = if (w << 6) < from { span_mask(0, from & 63) } else { 0 };
        while w < WORDS {
            let cand = self.start_word(w) & !self.alloc_word(w) & pattern & !skip;
            if cand != 0 {
                return Some((w << 6) + cand.trailing_zeros() as usize);
            }
            skip = 0;
            w += word_step;
        }
        None
    }

    /// Lowest run of at least `n` granules with `alloc=0` inside `[from, limit)` of this
    /// chunk: `Ok` with its first granule, or `Err` with a bound below `n` on the longest
    /// free run there (exact for runs that touch a word boundary).
    pub fn find_free_run(&self, n: usize, from: usize, limit: usize) -> Result<usize, usize> {
        debug_assert!((1..=CHUNK_GRANULES).contains(&n));
        // Free granules at the top of the words before `w`, ending at granule `w * 64`.
        let mut carried = 0usize;
        // Longest run seen that touches a word boundary; one that does not is at most
        // 62 granules long (and shorter than n, or it would have been found).
        let mut longest = n.min(63) - 1;
        let words = limit.div_ceil(64);
        // Full words hold no free granule: start past them.
        let full_below = self.full_below.load(Relaxed) as usize;
        let from = if from >> 6 < full_below { full_below << 6 } else { from };
        // While true, every word from `full_below` to `w` has been full.
        let mut all_full = from >> 6 == full_below;
        let mut below_from = span_mask(0, from & 63);
        let mut w = (from >> 6).wrapping_sub(1);
        loop {
            w = w.wrapping_add(1);
            if w >= words {
                return Err(longest.max(carried));
            }
            let alloc = self.alloc_word(w);
            if all_full && alloc != u64::MAX {
                all_full = false;
                if w > full_below {
                    self.full_below.store(w as u8, Relaxed);
                }
            }
            let mut free = !alloc & !below_from;
            below_from = 0;
            if free == 0 {
                // Most words a search passes are full; the interior words of a block
                // that starts in this chunk are skipped at once.
                longest = longest.max(carried);
                carried = 0;
                let mark = self.big_order[w].load(Relaxed);
                if mark >= INTERIOR {
                    w += (mark & INTERIOR_WORDS) as usize;
                }
                continue;
            }
            if (w + 1) << 6 > limit {
                free &= span_mask(0, limit - (w << 6));
            }
            // A run crossing into this word from below comes first.
            let head = (!free).trailing_zeros() as usize;
            if carried + head >= n {
                return Ok((w << 6) - carried);
            }
            longest = longest.max(carried + head);
            // Bit i of `fits` says granules i .. i+n of this word are all free (a run
            // of more than 64 is found by the carried count).
            let mut fits = if n <= 64 { free } else { 0 };
            let mut len = 1;
            while len < n && fits != 0 {
                let step = core::cmp::min(len, n - len);
                fits &= fits >> step;
                len += step;
            }
            // (a shift brings in zeros, so a run reaching past bit 63 is not counted here)
            if fits != 0 {
                return Ok((w << 6) + fits.trailing_zeros() as usize);
            }
            carried = if free == u64::MAX { carried + 64 } else { (!free).leading_zeros() as usize };
        }
    }

    /// [`find_free_run`](Self::find_free_run) from the chunk's start for a run of at
    /// least `LONG_RUN_MIN` granules: such a run holds a whole free word, which lies in
    /// a buddy-free block of order 6 or more (merging is eager) whose order `big_order`
    /// records at its first word; only the runs around those blocks are measured, so a
    /// search reads one line of orders and a few bitmap words instead of all 64.
    pub fn find_long_free_run(&self, n: usize, limit: usize) -> Result<usize, usize> {
        debug_assert!((LONG_RUN_MIN..=CHUNK_GRANULES).contains(&n));
        let words = limit.div_ceil(64);
        // A run around no recorded block holds no whole free word: at most 126 long.
        let mut longest = LONG_RUN_MIN - 1;
        let mut s = 0;
        while s < words {
            let order = self.big_order[s].load(Relaxed) as usize;
            if !(6..END_TAG as usize).contains(&order) {
                s += 1;
                continue;
            }
            let block_end = core::cmp::min((s << 6) + (1usize << order.min(CHUNK_SHIFT)), limit);
            let (lo, hi) = self.free_run_bounds(s << 6, block_end, limit, CHUNK_GRANULES);
            if hi - lo >= n {
                return Ok(lo);
            }
            longest = longest.max(hi - lo);
            s = hi.div_ceil(64);
        }
        Err(longest)
    }

    /// Length of the run of free granules (clear alloc bits) that holds `[lo, hi)`
    /// (free itself), within `[0, limit)`, counting at most about `cap` granules on
    /// either side: the exact length when it is below `cap`.
    pub fn free_run_around(&self, lo: usize, hi: usize, limit: usize, cap: usize) -> usize {
        let (below, above) = self.free_run_bounds(lo, hi, limit, cap);
        above - below
    }

    /// The run of free granules that holds `[lo, hi)` (free itself), within `[0, limit)`,
    /// as `[start, end)`, followed at most about `cap` granules on either side.
    fn free_run_bounds(&self, lo: usize, hi: usize, limit: usize, cap: usize) -> (usize, usize) {
        let mut below = lo;
        while below > 0 && lo - below < cap {
            let w = (below - 1) >> 6;
            let used = self.alloc_word(w) & span_mask(0, below - (w << 6));
            if used != 0 {
                below = (w << 6) + 64 - used.leading_zeros() as usize;
                break;
            }
            below = w << 6;
        }
        let mut above = hi;
        while above < limit && above - hi < cap {
            let w = above >> 6;
            let used = self.alloc_word(w) & !span_mask(0, above & 63);
            let end = if used != 0 { (w << 6) + used.trailing_zeros() as usize } else { (w + 1) << 6 };
            above = core::cmp::min(end, limit);
            if used != 0 {
                break;
            }
        }
        (below, above)
    }

    /// Lowest granule in `[from, limit)` whose bit in `plane` is set.
    pub fn first_set_from(&self, plane: Plane, from: usize, limit: usize) -> Option<usize> {
        let mut w = from >> 6;
        let mut skip = span_mask(0, from & 63);
        while w << 6 < limit {
            let bits = self.word(plane, w).load(Acquire) & !skip;
            if bits != 0 {
                let i = (w << 6) + bits.trailing_zeros() as usize;
                return (i < limit).then_some(i);
            }
            skip = 0;
            w += 1;
        }
        None
    }

    /// Highest granule `< below` whose bit in `plane` is set.
    pub fn last_set_below(&self, plane: Plane, below: usize) -> Option<usize> {
        if below == 0 {
            return None;
        }
        let mut w = (below - 1) >> 6;
        let mut keep = span_mask(0, below - (w << 6));
        loop {
            let bits = self.word(plane, w).load(Acquire) & keep;
            if bits != 0 {
                return Some((w << 6) + 63 - bits.leading_zeros() as usize);
            }
            if w == 0 {
                return None;
            }
            keep = u64::MAX;
            w -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Box<ChunkMeta> {
        // SAFETY: ChunkMeta is plain integers and atomics, valid when zeroed.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    #[test]
    fn meta_is_small() {
        assert_eq!(META_BYTES, 1168);
        assert_eq!(META_GRANULES, 73);
    }

    #[test]
    fn span_masks() {
        assert_eq!(span_mask(0, 64), u64::MAX);
        assert_eq!(span_mask(3, 5), 0b11000);
        assert_eq!(span_mask(63, 64), 1 << 63);
    }

    #[test]
    fn assign_tells_whether_a_bit_was_already_set() {
        let m = meta();
        assert!(!m.assign(Plane::Alloc, 10, 200, true));
        assert!(m.assign(Plane::Alloc, 0, 300, true));
        assert!(m.test(Plane::Alloc, 0) && m.test(Plane::Alloc, 299) && !m.test(Plane::Alloc, 300));
        assert!(!m.assign(Plane::Alloc, 100, 101, false));
        assert!(m.assign(Plane::Alloc, 100, 101, false));
        // One bit already set is enough, across a word boundary too.
        assert!(!m.assign(Plane::Alloc, 400, 410, true) && m.assign(Plane::Alloc, 409, 464, true));
    }

    #[test]
    fn run_end_stops_at_start_or_hole() {
        let m = meta();
        m.assign(Plane::Alloc, 5, 150, true);
        m.assign(Plane::Start, 5, 6, true);
        m.assign(Plane::Start, 90, 91, true);
        assert_eq!(m.live_run_end(6), Some(90));
        assert_eq!(m.live_run_end(91), Some(150));
        assert_eq!(m.live_run_end(4000), Some(4000));
    }

    #[test]
    fn free_runs_are_found_lowest_first() {
        let m = meta();
        m.assign(Plane::Alloc, 0, 4096, true);
        m.assign(Plane::Alloc, 5, 7, false); // run of 2 at 5
        m.assign(Plane::Alloc, 60, 70, false); // run of 10 across a word boundary
        m.assign(Plane::Alloc, 140, 190, false); // run of 50 inside a word
        m.assign(Plane::Alloc, 250, 320, false); // run of 70 across a word boundary
        assert_eq!(m.find_free_run(1, 0, 4096).ok(), Some(5));
        assert_eq!(m.find_free_run(2, 0, 4096).ok(), Some(5));
        assert_eq!(m.find_free_run(3, 0, 4096).ok(), Some(60));
        assert_eq!(m.find_free_run(10, 0, 4096).ok(), Some(60));
        assert_eq!(m.find_free_run(11, 0, 4096).ok(), Some(140));
        assert_eq!(m.find_free_run(50, 0, 4096).ok(), Some(140));
        assert_eq!(m.find_free_run(51, 0, 4096).ok(), Some(250));
        assert_eq!(m.find_free_run(64, 0, 4096).ok(), Some(250));
        assert_eq!(m.find_free_run(64, 0, 300).ok(), None, "the limit cuts the run");
        assert_eq!(m.find_free_run(2, 6, 4096).ok(), Some(60), "runs start at or after `from`");
        assert_eq!(m.find_free_run(40, 260, 4096).ok(), Some(260));
        // A failed search bounds the longest run it saw: exactly for runs that cross a
        // word boundary or end at the limit, by n - 1 for one inside a word.
        assert_eq!(m.find_free_run(71, 0, 4096), Err(70));
        assert_eq!(m.find_free_run(100, 0, 320), Err(70), "a run ending at the limit counts");
        assert_eq!(m.find_free_run(51, 0, 200), Err(50));
        m.assign(Plane::Alloc, 250, 320, true);
        assert_eq!(m.find_free_run(64, 0, 4096).ok(), None);
        m.assign(Plane::Alloc, 4033, 4096, false);
        assert_eq!(m.find_free_run(64, 0, 4096), Err(63), "a run from inside the last word to its end counts");
        m.assign(Plane::Alloc, 4032, 4096, false);
        assert_eq!(m.find_free_run(64, 0, 4096).ok(), Some(4032));
    }

    #[test]
    fn free_run_search_agrees_with_a_granule_walk() {
        let m = meta();
        let mut x = 0x9e3779b97f4a7c15u64;
        for round in 0..300 {
            for w in 0..WORDS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Sparse, dense, mixed and mostly empty words, so that runs of every
                // length occur.
                let bits = match round % 4 {
                    0 => x & (x >> 1) & (x >> 2),
                    1 => x | (x >> 3),
                    2 => x,
                    _ => if x % 5 == 0 { x & (x >> 1) } else { 0 },
                };
                m.word(Plane::Alloc, w).store(bits, Relaxed);
            }
            // (Words written directly: the hint must not claim any of them full.)
            m.full_below.store(0, Relaxed);
            let free = |g: usize| !m.test(Plane::Alloc, g);
            for n in [1, 2, 3, 5, 8, 13, 31, 32, 33, 63, 64, 65, 100, 130, 700, 4000] {
                let from = (x as usize >> 20) % 4096;
                let limit = from + (x as usize >> 40) % (4096 - from) + 1;
                let naive = (from..limit).find(|&g| g + n <= limit && (g..g + n).all(free));
                let got = m.find_free_run(n, from, limit);
                assert_eq!(got.ok(), naive, "n={n} from={from} limit={limit}");
                if let Err(bound) = got {
                    // The bound covers the longest run and stays below n.
                    let mut longest = 0;
                    let mut run = 0;
                    for g in from..limit {
                        run = if free(g) { run + 1 } else { 0 };
                        longest = longest.max(run);
                    }
                    assert!(longest <= bound && bound < n, "n={n}: longest {longest}, bound {bound}");
                }
            }
        }
    }

    #[test]
    fn free_start_search_respects_alignment() {
        let m = meta();
        for g in [3usize, 9, 64, 130, 200, 1024] {
            m.assign(Plane::Start, g, g + 1, true);
        }
        assert_eq!(m.next_free_start(0, 1), Some(3));
        assert_eq!(m.next_free_start(4, 1), Some(9));
        assert_eq!(m.next_free_start(0, 2), Some(64));
        assert_eq!(m.next_free_start(65, 2), Some(130));
        assert_eq!(m.next_free_start(0, 8), Some(64));
        assert_eq!(m.next_free_start(65, 8), Some(200));
        assert_eq!(m.next_free_start(65, 128), Some(1024));
        m.assign(Plane::Alloc, 64, 65, true);
        assert_eq!(m.next_free_start(10, 1), Some(130));
        assert_eq!(m.last_set_below(Plane::Alloc, 64), None);
        assert_eq!(m.last_set_below(Plane::Alloc, 65), Some(64));
        assert_eq!(m.last_set_below(Plane::Alloc, 4096), Some(64));
        assert_eq!(m.last_set_below(Plane::Start, 200), Some(130));
        assert_eq!(m.last_set_below(Plane::Start, 3), None);
        assert_eq!(m.first_set_from(Plane::Alloc, 0, 4096), Some(64));
        assert_eq!(m.first_set_from(Plane::Alloc, 65, 4096), None);
        assert_eq!(m.first_set_from(Plane::Start, 131, 1025), Some(200));
        assert_eq!(m.first_set_from(Plane::Start, 201, 1024), None, "the limit excludes 1024");
    }
}
