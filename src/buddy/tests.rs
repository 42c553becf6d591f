//! Unit and model-based tests of the buddy core over a private region.

use super::*;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;

pub struct TestArena {
    pub arena: Arena,
    mem: *mut u8,
    dir: *mut u8,
    mem_layout: Layout,
    dir_layout: Layout,
}

impl TestArena {
    pub fn new(bytes: usize) -> TestArena {
        // Before the arena first grows: the free fast path's bound (`fast_top`) follows
        // the top only where pair loads are atomic, as the process heap's does.
        crate::sys::detect_cpu();
        let limit = bytes / GRANULE;
        let mem_layout = Layout::from_size_align(bytes, sys::PAGE).unwrap();
        let dir_layout = Layout::from_size_align(Arena::directory_bytes(limit).max(8), 8).unwrap();
        // SAFETY: non-zero sizes; the memory is owned by the TestArena until drop.
        let (mem, dir) = unsafe { (alloc_zeroed(mem_layout), alloc_zeroed(dir_layout)) };
        // Poison: the arena must not rely on fresh memory being zero.
        // SAFETY: mem is valid for `bytes`.
        unsafe { core::ptr::write_bytes(mem, 0xA5, bytes) };
        // SAFETY: both regions are valid, zeroed (dir) and exclusively owned.
        let arena = unsafe { Arena::new(mem as usize, limit, dir, Source::Fixed { release: false }, 0x1234_5678) };
        TestArena { arena, mem, dir, mem_layout, dir_layout }
    }
}

impl Drop for TestArena {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with these layouts.
        unsafe {
            dealloc(self.mem, self.mem_layout);
            dealloc(self.dir, self.dir_layout);
        }
    }
}

/// Blocks as (start, granules, state) in address order.
fn blocks(a: &Arena) -> Vec<(usize, usize, u8)> {
    let mut v = Vec::new();
    a.for_each_block(|g, n, s| v.push((g, n, s)));
    v
}

fn meta_starts(a: &Arena) -> Vec<usize> {
    (0..a.top().div_ceil(CHUNK_GRANULES))
        .filter_map(|c| {
            let m = a.dir(c).meta.load(Relaxed) & !LAZY_BIT;
            (m != 0).then(|| m as usize - 1)
        })
        .collect()
}

/// Checks every structural invariant against the model of live user blocks.
fn check(a: &Arena, model: &BTreeMap<usize, usize>) {
    // The free fast path checks pointers against `fast_top`: stored with every top and
    // every highest live end.
    let bound = a.top().min(a.hi_live().saturating_sub(CACHEABLE_GRANULES));
    assert_eq!(a.fast_top.load(Relaxed), if sys::pair_loads_atomic() { bound } else { 0 });
    let metas = meta_starts(a);
    let mut live = 0usize;
    let mut expect_next = 0;
    let mut free_counts: BTreeMap<(usize, usize), u16> = BTreeMap::new();
    let all = blocks(a);
    for &(g, n, state) in &all {
        assert_eq!(g, expect_next, "blocks must tile the arena");
        expect_next = g + n;
        match state {
            1 => {
                live += n;
                if let Some(&m) = model.get(&g) {
                    assert_eq!(m, n, "live block at {g} has the wrong extent");
                } else {
                    assert!(metas.contains(&g) && n == META_GRANULES, "unknown live block at {g}+{n}");
                }
            }
            0 => {
                assert!(n.is_power_of_two());
                let k = n.trailing_zeros() as usize;
                assert_eq!(g % n, 0, "free block {g} of order {k} misaligned");
                let buddy = g ^ n;
                assert!(!a.is_free_block(buddy, k), "free buddies {g} and {buddy} were not merged");
                *free_counts.entry((g >> CHUNK_SHIFT, k)).or_default() += 1;
            }
            _ => panic!("no cached blocks expected in buddy tests"),
        }
    }
    assert_eq!(expect_next, a.top());
    assert_eq!(live as u64, a.stats.live_granules);
    // A lazy chunk lies inside one live block that starts in an earlier chunk, and its
    // reserved metadata block is live.
    for c in 0..a.top().div_ceil(CHUNK_GRANULES) {
        let m = a.dir(c).meta.load(Relaxed);
        if m & LAZY_BIT == 0 {
            continue;
        }
        let g0 = c << CHUNK_SHIFT;
        let (b, n, state) = all[all.partition_point(|&(b, _, _)| b <= g0) - 1];
        assert!(state == 1 && b < g0 && b + n >= g0 + CHUNK_GRANULES, "lazy chunk {c} in block {b}+{n} ({state})");
        assert!(metas.contains(&((m & !LAZY_BIT) as usize - 1)), "lazy chunk {c}: no reserved metadata");
    }
    for (&g, &n) in model {
        assert!(a.test(Plane::Start, g) && a.test(Plane::Alloc, g));
        assert_eq!(a.live_end(g), g + n);
    }
    for c in 0..a.top().div_ceil(CHUNK_GRANULES) {
        let m = a.meta(c).unwrap();
        // Searches skip the words below `full_below`: they must hold no free granule.
        for w in 0..m.full_below.load(Relaxed) as usize {
            assert_eq!(m.alloc_word(w), u64::MAX, "chunk {c}: word {w} below full_below has free granules");
        }
        let mut mask = 0u32;
        for k in 0..=MAX_ORDER {
            let want = free_counts.get(&(c, k)).copied().unwrap_or(0);
            assert_eq!(m.free_count[k].load(Relaxed), want, "chunk {c} order {k} count");
            if want > 0 {
                mask |= 1 << k;
            }
        }
        assert_eq!(a.dir(c).mask, mask);
    }
    // Out-of-band orders: a slot records exactly the free block of order >= 6 starting
    // at it; run bounds are upper bounds of the longest free run, per chunk and group.
    // Runs the per-chunk search can see: adjacent free blocks that start in the chunk
    // (a block of a chunk or more counts once, in its first chunk).
    let mut longest: BTreeMap<usize, usize> = BTreeMap::new();
    let mut run = (usize::MAX, 0usize, 0usize); // (chunk, end, length)
    for &(g, n, state) in &all {
        if state != 0 {
            continue;
        }
        let k = n.trailing_zeros() as usize;
        let m = a.meta(g >> CHUNK_SHIFT).unwrap();
        let slot = m.big_order[(g & (CHUNK_GRANULES - 1)) >> 6].load(Relaxed) as usize;
        if k >= 6 {
            assert_eq!(slot, k, "free block {g} of order {k}: slot records {slot}");
        }
        let c = g >> CHUNK_SHIFT;
        let len = core::cmp::min(n, CHUNK_GRANULES);
        run = if run.0 == c && run.1 == g { (c, g + n, run.2 + len) } else { (c, g + n, len) };
        let e = longest.entry(c).or_default();
        *e = core::cmp::max(*e, run.2);
    }
    // Interior-word markers: exactly one per live block with whole words after its
    // first, in its first chunk, counting those words; and an end tag in the slot after
    // them when the block ends inside that word.
    let mut markers: BTreeMap<(usize, usize), u8> = BTreeMap::new();
    for &(g, n, state) in &all {
        if state == 1 {
            let base = g & !(CHUNK_GRANULES - 1);
            let (first, last) = (((g - base) >> 6) + 1, core::cmp::min(g + n - base, CHUNK_GRANULES) >> 6);
            if first < last {
                let end = g + n - base;
                let at_word = end <= CHUNK_GRANULES && end & 63 == 0;
                let flag = if at_word { ENDS_AT_WORD } else { 0 };
                markers.insert((base >> CHUNK_SHIFT, first), INTERIOR | flag | (last - first - 1) as u8);
                if end < CHUNK_GRANULES && !at_word {
                    markers.insert((base >> CHUNK_SHIFT, last), END_TAG | (end & 63) as u8);
                }
            }
            // The lock-free lookup of free() measures every block that ends before its
            // chunk does, those that its marker shows ending at the chunk's end or in
            // the next chunk, and those that reach the end when `runs_on` says they stop
            // there; the rest are measured under the lock. It never measures wrong.
            let m = a.meta(g >> CHUNK_SHIFT).unwrap();
            if n > CHUNK_GRANULES - (g - base) {
                assert_ne!(m.runs_on.load(Relaxed), 0, "block {g}+{n} runs past its chunk, unflagged");
            }
            if g + n < base + CHUNK_GRANULES && g + n < a.top() {
                assert_eq!(a.live_block_at(a.addr(g)), Ok((g, n)), "live block at {g}+{n}");
            } else {
                let marked = first < last && g + n < base + 2 * CHUNK_GRANULES;
                let flagged = m.runs_on.load(Relaxed) != 0;
                let got = a.live_block_at(a.addr(g));
                assert!(got == Ok((g, n)) || (!marked && flagged && got == Ok((g, 0))), "live block at {g}+{n}: {got:?}");
            }
            // The free fast path answers for small blocks or declines.
            if let Some(got) = a.short_block_at(a.addr(g)) {
                assert_eq!(got, (g, n), "short block at {g}+{n}");
            }
        }
    }
    for c in 0..a.top().div_ceil(CHUNK_GRANULES) {
        let m = a.meta(c).unwrap();
        for w in 0..WORDS {
            let k = m.big_order[w].load(Relaxed);
            let g = (c << CHUNK_SHIFT) + (w << 6);
            if k >= END_TAG {
                assert_eq!(markers.remove(&(c, w)), Some(k), "stale interior marker or end tag {k:#x} at {g}");
            } else if k != 0 {
                let k = k as usize;
                assert!(all.iter().any(|&(b, n, s)| b == g && s == 0 && n == 1 << k), "stale order {k} at {g}");
            }
        }
        if let Some((&(mc, mw), &v)) = markers.range((c, 0)..(c + 1, 0)).next() {
            let g0 = (mc << CHUNK_SHIFT) + (mw << 6);
            let blk = all.iter().find(|&&(b, n, s)| s == 1 && b < g0 && b + n > g0);
            panic!("chunk {c}: interior marker or end tag {v:#x} missing at word {mw} (slot holds {:#x}); block {blk:?}; metas {metas:?}", m.big_order[mw].load(Relaxed));
        }
        let got = longest.get(&c).copied().unwrap_or(0);
        let hint = a.run_bound_of(c);
        assert!(hint >= got.min(RUN_MAX), "chunk {c}: run bound below a run of {got}");
        for t in 0..FIT_CLASSES {
            let listed = a.fits(c >> 6, t) & (1 << (c & 63)) != 0;
            assert_eq!(listed, hint >= 1 << t, "chunk {c}: fit bitmap {t} disagrees with its bound {hint}");
        }
    }
}

/// A small deterministic PRNG for the model tests.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fill(a: &Arena, g: usize, n: usize, seed: u8) {
    // SAFETY: [g, g+n) is a live block the test owns.
    unsafe { core::ptr::write_bytes(a.addr(g) as *mut u8, seed, n * GRANULE) };
}

fn verify(a: &Arena, g: usize, n: usize, seed: u8) {
    // SAFETY: as in fill.
    let s = unsafe { core::slice::from_raw_parts(a.addr(g) as *const u8, n * GRANULE) };
    assert!(s.iter().all(|&b| b == seed), "block {g} was overwritten");
}

#[test]
fn split_returns_the_tail_as_buddies() {
    let mut t = TestArena::new(1 << 20);
    let a = &mut t.arena;
    // 100 granules come from a 128-granule block; the 28 left are returned as the
    // aligned buddies 4 + 8 + 16.
    let g = a.alloc(100, 1).unwrap();
    assert_eq!(g % 128, 0);
    let after: Vec<_> = blocks(a).into_iter().filter(|b| b.0 >= g).take(4).collect();
    assert_eq!(after, vec![(g, 100, 1), (g + 100, 4, 0), (g + 104, 8, 0), (g + 112, 16, 0)]);
    check(a, &BTreeMap::from([(g, 100)]));
    a.free_block(g, 100);
    assert!(blocks(a).iter().any(|&(b, n, s)| s == 0 && b <= g && b + n >= g + 128), "freeing recomposes the block");
}

#[test]
fn requests_are_served_exactly() {
    let mut t = TestArena::new(4 << 20);
    let a = &mut t.arena;
    let before = a.stats.live_granules - a.stats.meta_granules;
    let g = a.alloc(33 * 1024 / GRANULE, 1).unwrap();
    assert_eq!(a.stats.live_granules - a.stats.meta_granules - before, 33 * 64, "a 33 KiB request holds 33 KiB, not 64");
    assert_eq!(a.live_end(g) - g, 33 * 64);
    a.free_block(g, 33 * 64);
    assert_eq!(a.stats.live_granules - a.stats.meta_granules, before);
    check(a, &BTreeMap::new());
}

#[test]
fn freed_neighbours_coalesce() {
    let mut t = TestArena::new(4 << 20);
    let a = &mut t.arena;
    // Fill the holes left below, so that the 128 blocks are adjacent.
    let pin = a.alloc(4096, 1).unwrap();
    let smalls: Vec<_> = (0..128).map(|_| a.alloc(1, 1).unwrap()).collect();
    let lo = smalls[0];
    for w in smalls.windows(2) {
        assert_eq!(w[1], w[0] + 1, "8-byte requests are packed one granule apart");
    }
    for &g in &smalls {
        a.free_block(g, 1);
    }
    let big = a.alloc(64, 1).unwrap(); // 1024 bytes
    assert!(big >= lo && big + 64 <= lo + 128, "1024-byte block reuses the freed space");
    let _ = pin;
}

#[test]
fn small_requests_land_in_a_freed_block() {
    let mut t = TestArena::new(4 << 20);
    let a = &mut t.arena;
    // Use up every hole below, then take a 4096-byte block and pin what follows it.
    let mut fill_holes = Vec::new();
    loop {
        let g = a.alloc(1, 1).unwrap();
        fill_holes.push(g);
        if g % 256 == 255 {
            break;
        }
    }
    let x = a.alloc(256, 1).unwrap();
    let _pin = a.alloc(1, 1).unwrap();
    a.free_block(x, 256);
    for i in 0..64 {
        let n = 1 + i % 4;
        let g = a.alloc(n, 1).unwrap();
        assert!(g >= x && g + n <= x + 256, "request {i} went to {g}, outside the freed block {x}");
    }
}

#[test]
fn small_requests_pack_without_gaps() {
    let mut t = TestArena::new(4 << 20);
    let a = &mut t.arena;
    let mut rng = Rng(5);
    let mut total = 0;
    let mut lo = usize::MAX;
    let mut hi = 0;
    for _ in 0..20_000 {
        let n = 1 + rng.below(8) as usize;
        let g = a.alloc(n, 1).unwrap();
        total += n;
        lo = lo.min(g);
        hi = hi.max(g + n);
    }
    // Only chunk metadata and the ends of chunks (runs do not cross chunks) are lost.
    let chunks = hi.div_ceil(CHUNK_GRANULES);
    let metas = meta_starts(a).into_iter().filter(|&m| m >= lo && m < hi).count();
    let waste = hi - lo - total - metas * META_GRANULES;
    assert!(waste <= chunks * 8, "{waste} granules lost over {chunks} chunks");
}

#[test]
fn placement_is_lowest_address_first() {
    let mut t = TestArena::new(4 << 20);
    let a = &mut t.arena;
    let v: Vec<_> = (0..10).map(|_| a.alloc(4, 1).unwrap()).collect();
    a.free_block(v[2], 4);
    a.free_block(v[7], 4);
    assert_eq!(a.alloc(4, 1), Some(v[2]), "the lower free block is used first");
    a.free_block(v[5], 4);
    assert_eq!(a.alloc(4, 1), Some(v[5]), "the lowest fit is used, not the most recent");
}

#[test]
fn aligned_allocations() {
    let mut t = TestArena::new(16 << 20);
    let a = &mut t.arena;
    let mut model = BTreeMap::new();
    for (n, align) in [(1usize, 4usize), (3, 256), (100, 8192), (5, 131072), (70000, 65536)] {
        let g = a.alloc(n, align).unwrap();
        assert_eq!(a.addr(g) % (align * GRANULE), 0, "n={n} align={align}");
        model.insert(g, n);
        check(a, &model);
    }
}

#[test]
fn growth_is_batched_and_small() {
    let mut t = TestArena::new(16 << 20);
    let a = &mut t.arena;
    let mut rng = Rng(7);
    let mut end = 0;
    for _ in 0..128 {
        let n = 1 + rng.below(8) as usize;
        let g = a.alloc(n, 1).unwrap();
        end = end.max(g + n);
    }
    assert!(a.stats.grow_calls <= 3, "{} growths", a.stats.grow_calls);
    let tail = (a.top() - end) * GRANULE;
    assert!(tail <= 32 << 10, "unused tail {tail} bytes");
}

#[test]
fn freeing_everything_gives_the_memory_back() {
    let mut t = TestArena::new(64 << 20);
    let a = &mut t.arena;
    let mut rng = Rng(99);
    let mut v = Vec::new();
    for _ in 0..20_000 {
        let n = 1 + rng.below(200) as usize;
        v.push((a.alloc(n, 1).unwrap(), n));
    }
    v.push((a.alloc(1 << 18, 1).unwrap(), 1 << 18)); // a 4 MiB block too
    assert!(a.top() * GRANULE > 8 << 20);
    for &(g, n) in v.iter().rev() {
        a.free_block(g, n);
    }
    check(a, &BTreeMap::new());
    assert!(a.top() * GRANULE <= 64 << 10, "top stayed at {} bytes", a.top() * GRANULE);
}

/// Marks the live block at `g` as thread-cached (its tag in its first word).
fn tag_cached(a: &Arena, g: usize) {
    let addr = a.addr(g);
    // SAFETY: g starts a live block of the test arena.
    unsafe { (addr as *mut u64).write(a.cached_tag(addr)) };
}

#[test]
fn cached_blocks_of_every_cached_length_are_seen_below_the_top() {
    let mut t = TestArena::new(16 << 20);
    let a = &mut t.arena;
    // Four chunks with their metadata in place, so that nothing below grows the heap.
    let room = a.alloc(3 * CHUNK_GRANULES, 1).unwrap();
    let _guard = a.alloc(1, 1).unwrap();
    a.free_block(room, 3 * CHUNK_GRANULES);
    // A user block, then cached ones: small, mid-size (3,000 bytes) and one that
    // runs from its chunk into the next (a block grown in place across the boundary).
    let user = a.alloc(40, 1).unwrap();
    let small = a.alloc(30, 1).unwrap();
    let mid = a.alloc(188, 1).unwrap();
    let fill = CHUNK_GRANULES - (mid + 188) % CHUNK_GRANULES - 100;
    let filler = a.alloc(fill, 1).unwrap();
    let cross = a.alloc(100, 1).unwrap();
    assert_eq!(cross + 100, (cross / CHUNK_GRANULES + 1) * CHUNK_GRANULES, "ends at its chunk's end");
    assert!(a.grow_in_place(cross, 100, 1500), "grown across the chunk boundary");
    for (g, n) in [(small, 30), (mid, 188), (cross, 1500)] {
        assert_eq!(a.cached_block_ending_at(g + n, CACHED_MAX_GRANULES), None, "not cached yet: {n} granules");
        tag_cached(a, g);
        assert_eq!(a.cached_block_ending_at(g + n, CACHED_MAX_GRANULES), Some(g), "cached block of {n} granules");
    }
    assert_eq!(a.cached_block_ending_at(mid + 188, CACHEABLE_GRANULES), None, "longer than asked for");
    assert_eq!(a.cached_block_ending_at(filler + fill, CACHED_MAX_GRANULES), None, "user block");
    // The walk below a freed top block steps over free and small cached blocks only.
    a.free_block(filler, fill);
    assert_eq!(a.reclaimable_start(cross + 1500), cross + 1500, "a mid-size cached block stops it");
    assert_eq!(a.reclaimable_start(mid), user + 40, "over the small cached block to the user's");
}

#[test]
fn topmost_free_lowers_the_top() {
    let mut t = TestArena::new(16 << 20);
    let a = &mut t.arena;
    let v: Vec<_> = (0..66).map(|_| a.alloc(32, 1).unwrap()).collect();
    for &g in &v[..65] {
        a.free_block(g, 32);
    }
    a.free_block(v[65], 32);
    assert!(a.top() <= v[58], "top {} not below block 58 at {}", a.top(), v[58]);
}

#[test]
fn realloc_grows_in_place_at_the_top_and_into_free_neighbours() {
    let mut t = TestArena::new(128 << 20);
    let a = &mut t.arena;
    let mib = (1 << 20) / GRANULE;
    let mut g = a.alloc(mib, 1).unwrap();
    let mut n = mib;
    let mut moves = 0;
    for step in 2..=64 {
        let m = step * mib;
        if !a.grow_in_place(g, n, m) {
            let ng = a.alloc(m, 1).unwrap_or_else(|| panic!("step {step} moves {moves} top {} g {g}", a.top()));
            a.free_block(g, n);
            g = ng;
            moves += 1;
        }
        n = m;
    }
    assert!(moves < 8, "{moves} moves");
    check(a, &BTreeMap::from([(g, n)]));
    // Into a free neighbour.
    let x = a.alloc(10, 1).unwrap();
    let y = a.alloc(10, 1).unwrap();
    let _z = a.alloc(10, 1).unwrap();
    a.free_block(y, 10);
    assert!(x < y && y < _z);
    assert!(!a.grow_in_place(x, 10, _z - x + 1), "cannot grow over a live block");
    assert!(a.grow_in_place(x, 10, _z - x), "grows into the freed neighbour");
    a.shrink_in_place(g, n, 5);
    check(a, &BTreeMap::from([(g, 5), (x, _z - x), (_z, 10)]));
}

#[test]
fn a_block_ending_at_its_chunks_end_is_measured_without_the_lock() {
    let mut t = TestArena::new(4 << 20);
    let a = &mut t.arena;
    crate::sys::detect_cpu();
    let mut model = BTreeMap::new();
    // Lowest-first placement packs one-granule blocks up to the chunk's end.
    let g = loop {
        let g = a.alloc(1, 1).unwrap();
        model.insert(g, 1);
        if (g + 1) & (CHUNK_GRANULES - 1) == 0 {
            break g;
        }
    };
    // The highest live block never takes the free fast path (`fast_top`).
    assert_eq!(a.short_block_at(a.addr(g)), None);
    let above = a.alloc(CACHEABLE_GRANULES + 1, 1).unwrap();
    model.insert(above, CACHEABLE_GRANULES + 1);
    assert!(above > g);
    // Its bitmap word ends with it, so only `runs_on` tells that nothing runs on.
    assert_eq!(a.meta(g >> CHUNK_SHIFT).unwrap().runs_on.load(Relaxed), 0);
    assert_eq!(a.live_block_at(a.addr(g)), Ok((g, 1)));
    assert_eq!(a.short_block_at(a.addr(g)), Some((g, 1)));
    // A block that runs on into the next chunk sets it; shrunk to end at its chunk's
    // end, it clears it.
    let big = a.alloc(2 + CHUNK_GRANULES, 1).unwrap();
    let base = big & !(CHUNK_GRANULES - 1);
    assert!(big + 2 + CHUNK_GRANULES > base + CHUNK_GRANULES);
    let runs_on = |a: &Arena| a.meta(big >> CHUNK_SHIFT).unwrap().runs_on.load(Relaxed);
    assert_ne!(runs_on(a), 0);
    model.insert(big, 2 + CHUNK_GRANULES);
    check(a, &model);
    let to_end = base + CHUNK_GRANULES - big;
    a.shrink_in_place(big, 2 + CHUNK_GRANULES, to_end);
    assert_eq!(runs_on(a), 0);
    assert_eq!(a.live_block_at(a.addr(big)), Ok((big, to_end)));
    model.insert(big, to_end);
    check(a, &model);
}

#[test]
fn fixed_region_exhaustion_is_reported() {
    let mut t = TestArena::new(256 << 10);
    let a = &mut t.arena;
    let mut count = 0;
    while a.alloc(1, 1).is_some() {
        count += 1;
    }
    // 256 KiB with 1/64 metadata: well over 12,000 one-granule blocks.
    assert!(count > 12_000, "only {count}");
}

/// What a model run draws: block sizes, alignments, how far a grow-in-place reaches.
struct ModelPlan {
    arena_bytes: usize,
    steps: usize,
    check_every: usize,
    size: fn(&mut Rng) -> usize,
    align: fn(&mut Rng) -> usize,
    grow_by: fn(&mut Rng) -> usize,
}

/// Random allocations, frees, grows and shrinks against a model of the live blocks,
/// their contents checked and the invariants too every `check_every` steps; everything
/// is freed at the end. Returns the most lazy chunks seen at once.
fn run_model(seed: u64, plan: &ModelPlan) -> usize {
    let mut t = TestArena::new(plan.arena_bytes);
    let a = &mut t.arena;
    let mut rng = Rng(seed);
    let mut model: BTreeMap<usize, usize> = BTreeMap::new();
    let mut seeds: BTreeMap<usize, u8> = BTreeMap::new();
    let mut lazy_seen = 0;
    for step in 0..plan.steps {
        let op = rng.below(10);
        if op < 5 || model.is_empty() {
            let n = (plan.size)(&mut rng);
            let align = (plan.align)(&mut rng);
            let g = a.alloc(n, align).unwrap();
            assert_eq!(a.addr(g) % (align * GRANULE), 0);
            let s = (rng.next() & 0xff) as u8;
            fill(a, g, n, s);
            model.insert(g, n);
            seeds.insert(g, s);
        } else {
            let idx = rng.below(model.len() as u64) as usize;
            let (&g, &n) = model.iter().nth(idx).unwrap();
            verify(a, g, n, seeds[&g]);
            match op {
                5..=7 => {
                    a.free_block(g, n);
                    model.remove(&g);
                    seeds.remove(&g);
                }
                8 => {
                    let m = n + (plan.grow_by)(&mut rng);
                    if a.grow_in_place(g, n, m) {
                        model.insert(g, m);
                        fill(a, g, m, seeds[&g]);
                    }
                }
                _ => {
                    let m = 1 + rng.below(n as u64) as usize;
                    a.shrink_in_place(g, n, m);
                    model.insert(g, m);
                }
            }
        }
        lazy_seen = lazy_seen.max(lazy_count(a));
        if step % plan.check_every == 0 {
            check(a, &model);
        }
    }
    check(a, &model);
    for (&g, &n) in &model {
        verify(a, g, n, seeds[&g]);
        a.free_block(g, n);
    }
    check(a, &BTreeMap::new());
    assert_eq!(lazy_count(a), 0);
    lazy_seen
}

#[test]
fn model_random_operations() {
    let plan = ModelPlan {
        arena_bytes: 64 << 20,
        steps: 6000,
        check_every: 97,
        size: |rng| match rng.below(20) {
            0 => 1 + rng.below(20_000) as usize,
            1..=4 => 1 + rng.below(300) as usize,
            _ => 1 + rng.below(16) as usize,
        },
        align: |rng| if rng.below(10) == 0 { 1 << rng.below(10) } else { 1 },
        grow_by: |rng| 1 + rng.below(64) as usize,
    };
    for seed in [1u64, 2, 3, 0xdead_beef] {
        run_model(seed, &plan);
    }
}

#[test]
fn model_random_operations_with_large_blocks() {
    let plan = ModelPlan {
        arena_bytes: 512 << 20,
        steps: 1500,
        check_every: 50,
        size: |rng| match rng.below(10) {
            0..=2 => LAZY_MIN_GRANULES + rng.below(40 * CHUNK_GRANULES as u64) as usize,
            3..=4 => 1 + rng.below(5000) as usize,
            _ => 1 + rng.below(64) as usize,
        },
        align: |rng| if rng.below(8) == 0 { 1 << rng.below(14) } else { 1 },
        grow_by: |rng| 1 + rng.below(3 * CHUNK_GRANULES as u64) as usize,
    };
    for seed in [5u64, 6] {
        assert!(run_model(seed, &plan) > 0, "no large block left lazy chunks");
    }
}

#[test]
fn aligned_allocation_sequences_stay_consistent() {
    let mut t = TestArena::new(256 << 20);
    let a = &mut t.arena;
    let mut align = 1;
    while align <= 1 << 18 {
        for n in [1usize, 2, align.max(1), align + 1, 3 * align + 1, 6250] {
            let mut model = BTreeMap::new();
            let v: Vec<_> = (0..4).map(|k| a.alloc(n, align).unwrap_or_else(|| panic!("n={n} align={align} k={k} top={}", a.top()))).collect();
            for &g in &v {
                assert_eq!(a.addr(g) % (align * GRANULE), 0);
                model.insert(g, n);
            }
            check(a, &model);
            for &g in &v {
                a.free_block(g, n);
            }
            check(a, &BTreeMap::new());
        }
        align *= 2;
    }
}

#[test]
fn swinging_top_stops_moving_the_break_but_freeing_everything_still_trims() {
    let mut t = TestArena::new(256 << 20);
    let a = &mut t.arena;
    // 2 MiB of live data below the swing (a nearly empty heap is always trimmed).
    let live = (2 << 20) / GRANULE;
    let base_block = a.alloc(live, 1).unwrap();
    let big = (4 << 20) / GRANULE;
    for _ in 0..40 {
        let g = a.alloc(big, 1).unwrap();
        a.free_block(g, big);
    }
    // After a few flips the threshold exceeds the swing: the break stays put.
    assert!(a.stats.shrink_calls < 20, "{} shrinks for 40 swings", a.stats.shrink_calls);
    assert!(a.trim_threshold() > 4 << 20);
    // The program then frees everything: the heap goes back to (nearly) nothing.
    a.free_block(base_block, live);
    assert!(a.top() * GRANULE <= 1 << 20, "top stayed at {} bytes", a.top() * GRANULE);
}

fn lazy_count(a: &Arena) -> usize {
    (0..a.top().div_ceil(CHUNK_GRANULES)).filter(|&c| a.dir(c).meta.load(Relaxed) & LAZY_BIT != 0).count()
}

#[test]
fn large_blocks_leave_their_interior_chunks_without_metadata() {
    let mut t = TestArena::new(256 << 20);
    let a = &mut t.arena;
    let pin = a.alloc(100, 1).unwrap();
    let n = (64 << 20) / GRANULE;
    let g = a.alloc(n, 1).unwrap();
    let chunks = n / CHUNK_GRANULES;
    let lazy = lazy_count(a);
    assert!(lazy + 2 >= chunks && lazy < chunks, "{lazy} lazy chunks for a block over {chunks}");
    // Their metadata is reserved (it has its place), not written.
    let reserved = (0..a.top().div_ceil(CHUNK_GRANULES)).filter(|&c| a.dir(c).meta.load(Relaxed) & LAZY_BIT != 0);
    for c in reserved {
        let p = (a.dir(c).meta.load(Relaxed) & !LAZY_BIT) as usize - 1;
        assert!(p < g && a.test(Plane::Start, p) && a.live_end(p) == p + META_GRANULES);
    }
    let mut model = BTreeMap::from([(pin, 100), (g, n)]);
    check(a, &model);
    // Readers see the interior: inside a live block, no start.
    assert_eq!(a.live_block_at(a.addr(g + n / 2)), Err(true));
    assert!(a.test(Plane::Alloc, g + n / 2) && !a.test(Plane::Start, g + n / 2));
    // The data is the program's, as in any block.
    fill(a, g, n, 7);
    verify(a, g, n, 7);
    // A block above it, so that freeing it leaves a hole with metadata of its own.
    let above = loop {
        let x = a.alloc(10, 1).unwrap();
        model.insert(x, 10);
        if x > g {
            break x;
        }
    };
    a.free_block(g, n);
    model.remove(&g);
    assert_eq!(lazy_count(a), 0);
    check(a, &model);
    // The hole serves later requests like any free memory.
    let h = a.alloc(n / 2, 1).unwrap();
    assert!(h < above, "reused the freed block's memory");
    model.insert(h, n / 2);
    check(a, &model);
    for (x, m) in model.clone() {
        if x != pin {
            a.free_block(x, m);
            model.remove(&x);
        }
    }
    check(a, &model);
    assert!(a.top() * GRANULE <= 1 << 20, "top stayed at {} bytes", a.top() * GRANULE);
}

#[test]
fn shrinking_and_growing_a_block_with_lazy_chunks() {
    let mut t = TestArena::new(256 << 20);
    let a = &mut t.arena;
    let _pin = a.alloc(3, 1).unwrap();
    // Aligned, and ending 5 granules into its last chunk.
    let g = a.alloc(((16 << 20) / GRANULE) + 5, 4096).unwrap();
    let mut n = ((16 << 20) / GRANULE) + 5;
    assert_eq!(a.addr(g) % (4096 * GRANULE), 0);
    assert!(lazy_count(a) > 0);
    let mut model = BTreeMap::from([(_pin, 3), (g, n)]);
    check(a, &model);
    // Half of it: the freed chunks get metadata, the kept ones stay lazy.
    let before = lazy_count(a);
    let m = n / 2 + 77;
    a.shrink_in_place(g, n, m);
    n = m;
    model.insert(g, n);
    check(a, &model);
    let after = lazy_count(a);
    assert!(after > 0 && after < before, "lazy chunks {before} -> {after}");
    // A few granules, from inside the last lazy chunk: that one chunk gets metadata.
    let last_lazy = (0..a.top().div_ceil(CHUNK_GRANULES)).filter(|&c| a.dir(c).meta.load(Relaxed) & LAZY_BIT != 0).max().unwrap();
    let m = ((last_lazy + 1) << CHUNK_SHIFT) - 3 - g;
    a.shrink_in_place(g, n, m);
    n = m;
    model.insert(g, n);
    check(a, &model);
    assert_eq!(lazy_count(a), after - 1);
    // Growing it back over the freed memory, then freeing it: consistent throughout.
    assert!(a.grow_in_place(g, n, n + 3 * CHUNK_GRANULES));
    n += 3 * CHUNK_GRANULES;
    model.insert(g, n);
    check(a, &model);
    fill(a, g, n, 3);
    a.free_block(g, n);
    model.remove(&g);
    check(a, &model);
    assert_eq!(lazy_count(a), 0);
}
