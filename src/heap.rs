//! The process heap: the brk arena, plus mapped fallback arenas used only once the break
//! cannot grow (another mapping above it, a resource limit, an interposed `sbrk` that
//! ran out).
//!
//! Invariants:
//! * Every arena's `base`, `limit` and directory are fixed before the arena is published
//!   (`BRK_READY` for the brk arena, `MAPS_PUBLISHED` for mapped ones); after that only
//!   `top` and the bitmaps change, so lookups by address need no lock.
//! * All mutation of arena free structures happens under `HEAP`.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

use crate::bitmap::{GRANULE, GRANULE_SHIFT, MAX_ORDER};
use crate::buddy::{Arena, Source};
use crate::lock::Mutex;
use crate::sys;

/// Largest brk heap the static directory can describe (32 GiB); beyond it, mapped arenas.
const BRK_LIMIT_GRANULES: usize = 1 << MAX_ORDER;
const BRK_DIR_BYTES: usize = Arena::directory_bytes(BRK_LIMIT_GRANULES);
/// Size of a mapped fallback arena's reservation (untouched pages cost nothing).
const MAP_ARENA_BYTES: usize = 1 << 30;
const MAX_MAPS: usize = 64;

#[repr(C, align(4096))]
struct BrkDirectory([u8; BRK_DIR_BYTES]);

/// The brk arena's directory: about 10 bytes per 64 KiB chunk (see
/// `Arena::directory_bytes`), touched only as the heap grows.
static mut BRK_DIR: BrkDirectory = BrkDirectory([0; BRK_DIR_BYTES]);

pub struct Heap {
    pub brk: Arena,
    /// The break when the allocator first looked at it (before aligning).
    pub heap_start: usize,
    pub brk_failed: bool,
    pub maps: [Option<MappedArena>; MAX_MAPS],
    pub map_bytes: usize,
    pub map_bytes_peak: usize,
    pub mmap_calls: u64,
    pub key: u64,
    /// Peaks sampled whenever the heap hands out a block: bytes held from the kernel,
    /// and bytes in blocks given to users and thread caches.
    pub held_peak: usize,
    pub reserved_peak: usize,
}

pub struct MappedArena {
    pub arena: Arena,
    pub map_base: usize,
    pub map_len: usize,
}

pub static HEAP: Mutex<Heap> = Mutex::new(Heap {
    brk: Arena::empty(),
    heap_start: 0,
    brk_failed: false,
    maps: [const { None }; MAX_MAPS],
    map_bytes: 0,
    map_bytes_peak: 0,
    mmap_calls: 0,
    key: 0,
    held_peak: 0,
    reserved_peak: 0,
});

static BRK_READY: AtomicBool = AtomicBool::new(false);
/// Highest address the brk heap has reached, for lock-free "was this heap memory?".
static BRK_PEAK_END: AtomicUsize = AtomicUsize::new(0);
static MAPS_PUBLISHED: AtomicUsize = AtomicUsize::new(0);

/// Read-only view of the heap for lock-free lookups.
#[inline]
fn heap_view() -> &'static Heap {
    // SAFETY: lock-free readers only touch fields that are immutable after publication
    // (base, limit, directory pointer) or atomic (top, directory entries, bitmaps).
    unsafe { &*HEAP.get_unchecked() }
}

/// Initialises the heap on first use (called with the lock held).
fn init(h: &mut Heap) {
    if BRK_READY.load(Relaxed) {
        return;
    }
    h.key = random_key();
    sys::detect_cpu();
    let start = sys::current_break();
    h.heap_start = start;
    let aligned = (start + sys::PAGE - 1) & !(sys::PAGE - 1);
    let ok = start != 0 && (aligned == start || sys::sbrk((aligned - start) as isize) == Some(start));
    // BRK_DIR is used by this arena only, under the heap lock or via atomic entries.
    let dir = core::ptr::addr_of_mut!(BRK_DIR) as *mut u8;
    // SAFETY: the directory is zeroed static memory owned by the brk arena.
    h.brk = unsafe { Arena::new(aligned, BRK_LIMIT_GRANULES, dir, Source::Brk, h.key) };
    if !sys::sbrk_is_libcs() {
        // A program's own sbrk may hand out memory that is not zero.
        h.brk.never_fresh();
    }
    h.brk_failed = !ok;
    BRK_READY.store(true, Release);
}

fn random_key() -> u64 {
    // SAFETY: getauxval has no preconditions; AT_RANDOM points at 16 random bytes
    // provided by the kernel for the life of the process.
    unsafe {
        let p = libc::getauxval(libc::AT_RANDOM) as *const u64;
        if p.is_null() {
            0x9e37_79b9_7f4a_7c15 ^ (&BRK_READY as *const _ as u64)
        } else {
            p.read_unaligned() ^ p.add(1).read_unaligned().rotate_left(32)
        }
    }
}

impl Heap {
    /// Ensures the heap is initialised; call with the lock held.
    #[inline]
    pub fn ready(&mut self) -> &mut Self {
        if !BRK_READY.load(Acquire) {
            init(self);
        }
        self
    }

    /// Allocates `n` granules aligned to `align` granules from the brk arena, falling
    /// back to mapped arenas when the break cannot grow. Returns the address.
    pub fn alloc(&mut self, n: usize, align: usize) -> Option<usize> {
        let a = self.alloc_inner(n, align)?;
        self.note_peaks();
        Some(a)
    }

    /// Like `alloc(n, 1)`, also telling whether the block is known to be zero (it lies
    /// in memory not handed out since the kernel gave it).
    pub fn alloc_maybe_zero(&mut self, n: usize) -> Option<(usize, bool)> {
        let a = self.alloc(n, 1)?;
        let fresh = self.arena_mut(a).is_some_and(|arena| arena.last_alloc_was_fresh());
        Some((a, fresh))
    }

    /// Allocates up to `out.len()` blocks of `n` granules (addresses), in one search
    /// when possible; returns how many.
    pub fn alloc_batch(&mut self, n: usize, out: &mut [usize]) -> usize {
        self.ready();
        {
            // Once the break cannot grow, the brk arena still serves what fits.
            let got = self.brk.alloc_batch(n, out, !self.brk_failed);
            if got > 0 {
                for a in &mut out[..got] {
                    *a = self.brk.addr(*a);
                }
                self.note_peaks();
                return got;
            }
        }
        let Some(a) = self.alloc(n, 1) else { return 0 };
        out[0] = a;
        if self.brk.contains(a) {
            return 1;
        }
        // A mapped arena: the rest of the batch from the same one.
        let Some(arena) = self.arena_mut(a) else { return 1 };
        let more = arena.alloc_batch(n, &mut out[1..], true);
        for g in &mut out[1..1 + more] {
            *g = arena.addr(*g);
        }
        self.note_peaks();
        1 + more
    }

    /// The mapped arenas (slots are filled in order and never emptied, so all of them
    /// lie below `MAPS_PUBLISHED`; without the bound, every allocation from the heap
    /// walked all `MAX_MAPS` slots to update the peaks). Safe without the lock too:
    /// a slot below the bound was published whole.
    fn mapped(&self) -> impl Iterator<Item = &MappedArena> {
        self.maps[..MAPS_PUBLISHED.load(Acquire)].iter().flatten()
    }

    fn mapped_mut(&mut self) -> impl Iterator<Item = &mut MappedArena> {
        self.maps[..MAPS_PUBLISHED.load(Relaxed)].iter_mut().flatten()
    }

    fn note_peaks(&mut self) {
        BRK_PEAK_END.fetch_max(self.brk.base + ((self.brk.stats.peak_top as usize) << GRANULE_SHIFT), Relaxed);
        self.held_peak = self.held_peak.max(self.held_bytes());
        self.reserved_peak = self.reserved_peak.max(self.reserved_bytes());
    }

    /// Bytes held from the kernel: the break extent plus fallback mappings.
    pub fn held_bytes(&self) -> usize {
        self.brk_extent() + self.map_bytes
    }

    /// Bytes in blocks handed out to users and thread caches (metadata excluded).
    pub fn reserved_bytes(&self) -> usize {
        let mut g = self.brk.stats.live_granules - self.brk.stats.meta_granules;
        for m in self.mapped() {
            g += m.arena.stats.live_granules - m.arena.stats.meta_granules;
        }
        (g as usize) << GRANULE_SHIFT
    }

    /// Bytes of chunk metadata in all arenas.
    pub fn metadata_bytes(&self) -> usize {
        let mut g = self.brk.stats.meta_granules;
        for m in self.mapped() {
            g += m.arena.stats.meta_granules;
        }
        (g as usize) << GRANULE_SHIFT
    }

    fn alloc_inner(&mut self, n: usize, align: usize) -> Option<usize> {
        self.ready();
        if !self.brk_failed {
            if let Some(g) = self.brk.alloc(n, align) {
                return Some(self.brk.addr(g));
            }
            // Nothing fitted and the break would not move: from now on, mapped arenas.
            self.brk_failed = true;
        } else if let Some(g) = self.brk.alloc_no_grow(n, align) {
            return Some(self.brk.addr(g));
        }
        for m in self.mapped_mut() {
            if let Some(g) = m.arena.alloc(n, align) {
                return Some(m.arena.addr(g));
            }
        }
        let arena = self.new_mapped_arena(n, align)?;
        let g = arena.alloc(n, align)?;
        Some(arena.addr(g))
    }

    fn new_mapped_arena(&mut self, n: usize, align: usize) -> Option<&mut Arena> {
        let slot = self.maps.iter().position(|m| m.is_none())?;
        let want = n.checked_add(align)?.checked_mul(GRANULE)?.checked_add(8 << 20)?;
        let data = core::cmp::max(MAP_ARENA_BYTES, want.div_ceil(sys::PAGE) * sys::PAGE);
        let limit = data / GRANULE;
        if limit > 1 << MAX_ORDER {
            return None;
        }
        let dir_bytes = Arena::directory_bytes(limit).div_ceil(sys::PAGE) * sys::PAGE;
        let len = dir_bytes + data;
        let map = sys::map_anonymous(len)?;
        self.mmap_calls += 1;
        self.map_bytes += len;
        self.map_bytes_peak = self.map_bytes_peak.max(self.map_bytes);
        // SAFETY: the fresh mapping is zeroed and exclusively ours: the directory at
        // its start, the arena's memory after it.
        let arena = unsafe { Arena::new(map + dir_bytes, limit, map as *mut u8, Source::Fixed { release: true }, self.key) };
        self.maps[slot] = Some(MappedArena { arena, map_base: map, map_len: len });
        MAPS_PUBLISHED.fetch_max(slot + 1, Release);
        self.maps[slot].as_mut().map(|m| &mut m.arena)
    }

    /// The arena holding `addr`, for callers that hold the lock.
    pub fn arena_mut(&mut self, addr: usize) -> Option<&mut Arena> {
        if self.brk.contains(addr) {
            return Some(&mut self.brk);
        }
        self.mapped_mut().map(|m| &mut m.arena).find(|a| a.contains(addr))
    }

    /// Frees the live block of `n` granules at `addr` (a block this allocator handed
    /// out: user, cached or internal); an address in no arena is ignored.
    pub fn free_block_at(&mut self, addr: usize, n: usize) {
        if let Some(arena) = self.arena_mut(addr) {
            let g = arena.granule_of(addr);
            arena.free_block(g, n);
        }
    }

    /// Granules of the live block that starts at `addr`, if one does (the lock is held,
    /// so a block running into the next chunk can be measured).
    pub fn live_granules(&mut self, addr: usize) -> Option<usize> {
        let arena = self.arena_mut(addr)?;
        match arena.live_block_at(addr).ok()? {
            (g, 0) => Some(arena.live_end(g) - g),
            (_, n) => Some(n),
        }
    }

    /// Returns free memory to the kernel: trims every arena's top and releases the free
    /// pages inside. Returns whether anything was released.
    pub fn trim_all(&mut self, pad: usize) -> bool {
        self.ready();
        let mut any = self.brk.trim(sys::PAGE, pad) | (self.brk.purge(0, 0) > 0);
        for m in self.mapped_mut() {
            any |= m.arena.trim(sys::PAGE, pad) | (m.arena.purge(0, 0) > 0);
        }
        any
    }

    /// Bytes of break above the heap start.
    pub fn brk_extent(&self) -> usize {
        if self.heap_start == 0 {
            0
        } else {
            self.brk.end_addr() - self.heap_start
        }
    }

    pub fn brk_extent_peak(&self) -> usize {
        if self.heap_start == 0 {
            0
        } else {
            self.brk.base + ((self.brk.stats.peak_top as usize) << GRANULE_SHIFT) - self.heap_start
        }
    }
}

/// Whether `addr` lies in memory the brk heap held at some point (above its current top
/// but below its peak): a pointer there was freed and given back.
pub fn was_heap(addr: usize) -> bool {
    let h = heap_view();
    addr >= h.brk.base && addr < BRK_PEAK_END.load(Relaxed)
}

/// The brk arena, for lock-free lookups (its base and directory never move).
#[inline(always)]
pub fn brk_arena() -> &'static Arena {
    &heap_view().brk
}

/// The arena holding `addr`, without the lock (see the module invariants).
#[inline]
pub fn arena_of(addr: usize) -> Option<&'static Arena> {
    let h = heap_view();
    if h.brk.contains(addr) {
        return Some(&h.brk);
    }
    h.mapped().map(|m| &m.arena).find(|a| a.contains(addr))
}
