//! Per-thread caches of small blocks (1 to 64 granules, up to 1 KiB) in front of the
//! heap: malloc pops and free pushes without taking the heap lock.
//!
//! Invariants:
//! * A cached block stays live in the bitmaps (`alloc=1`) and carries a [`CachedHeader`]
//!   (tag bound to its address and a per-process key) in its first 16 bytes. The tag is
//!   set by a compare-and-swap when the block is freed, so a second free of it, even a
//!   racing one in another thread, is caught; it is cleared when the block is handed out
//!   again. Each class list is LIFO: the most recently freed block of a size is the next
//!   one handed out.
//! * `counts[n]` is the length of list `n`; `cached_granules` their total size.
//! * Only the owning thread touches a cache's lists; other threads read its counters
//!   (atomics written by the owner only) when statistics are gathered under the heap lock.
//! * Every live cache is on the list rooted at `CACHES` (guarded by the heap lock).
//!
//! Thread-local state is one const-initialised pointer without a destructor; thread exit
//! is handled by a `pthread_key_create` destructor registered at load time.

use core::cell::Cell;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering::{AcqRel, Acquire, Relaxed}};

use crate::bitmap::{GRANULE, GRANULE_SHIFT};
use crate::buddy::{Arena, CachedHeader};
use crate::heap::{self, Heap, HEAP};
use crate::report::{self, Misuse};

pub const CLASSES: usize = crate::buddy::CACHEABLE_GRANULES;
/// Bytes a class may hold before half of it goes back to the heap.
const CLASS_BYTES: usize = 32 << 10;
/// Blocks sorted and returned to the heap together (a stack buffer of addresses).
const FLUSH_BATCH: usize = 256;
/// Bytes of blocks a refill brings in at once.
const REFILL_BYTES: usize = 1 << 10;

/// Operation counters of one thread. Written by the owner only.
#[derive(Default)]
#[repr(C)]
pub struct Counters {
    pub malloc: AtomicU64,
    pub free: AtomicU64,
    pub realloc: AtomicU64,
    pub calloc: AtomicU64,
    pub memalign: AtomicU64,
    pub requested: AtomicU64,
    /// Usable bytes of live blocks allocated minus freed by this thread.
    pub in_use: AtomicI64,
    pub live: AtomicI64,
}

#[inline]
pub fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

#[inline]
pub fn shift(c: &AtomicI64, by: i64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

impl Counters {
    pub fn add_into(&self, t: &Totals) {
        for (dst, src) in [
            (&t.malloc, &self.malloc),
            (&t.free, &self.free),
            (&t.realloc, &self.realloc),
            (&t.calloc, &self.calloc),
            (&t.memalign, &self.memalign),
            (&t.requested, &self.requested),
        ] {
            bump(dst, src.load(Relaxed));
        }
        shift(&t.in_use, self.in_use.load(Relaxed));
        shift(&t.live, self.live.load(Relaxed));
    }
}

/// Sums of counters (same shape), used for exited threads and for reports.
pub type Totals = Counters;

#[repr(C)]
pub struct ThreadCache {
    heads: [*mut CachedHeader; CLASSES + 1],
    counts: [u32; CLASSES + 1],
    pub cached_granules: usize,
    pub counters: Counters,
    next: *mut ThreadCache,
    prev: *mut ThreadCache,
}

const CACHE_GRANULES: usize = core::mem::size_of::<ThreadCache>().div_ceil(GRANULE);

/// Head of the list of live caches, and counters of threads that have exited.
pub struct Registry {
    pub head: *mut ThreadCache,
    pub retired: Totals,
}

pub static mut REGISTRY: Registry = Registry {
    head: core::ptr::null_mut(),
    retired: Counters {
        malloc: AtomicU64::new(0),
        free: AtomicU64::new(0),
        realloc: AtomicU64::new(0),
        calloc: AtomicU64::new(0),
        memalign: AtomicU64::new(0),
        requested: AtomicU64::new(0),
        in_use: AtomicI64::new(0),
        live: AtomicI64::new(0),
    },
};

/// Registry access; the caller must hold the heap lock.
pub fn registry(_locked: &mut Heap) -> &'static mut Registry {
    // SAFETY: the heap lock (proved by the &mut Heap argument) guards the registry.
    unsafe { &mut *core::ptr::addr_of_mut!(REGISTRY) }
}

const DEAD: *mut ThreadCache = 1 as *mut ThreadCache;

thread_local! {
    static CURRENT: Cell<*mut ThreadCache> = const { Cell::new(core::ptr::null_mut()) };
}

/// Blocks a class may hold.
#[inline]
fn class_limit(n: usize) -> u32 {
    (CLASS_BYTES / (n * GRANULE)).clamp(8, 512) as u32
}

/// This thread's cache, created on first use; `None` while the thread is exiting.
#[inline]
pub fn current() -> Option<&'static mut ThreadCache> {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        return create();
    }
    if p == DEAD {
        return None;
    }
    // SAFETY: the pointer names this thread's live cache, used by this thread only.
    Some(unsafe { &mut *p })
}

/// This thread's counters, if it has a cache (without creating one).
#[inline]
pub fn counters() -> Option<&'static Counters> {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() || p == DEAD {
        None
    } else {
        // SAFETY: as in current().
        Some(unsafe { &(*p).counters })
    }
}

#[cold]
fn create() -> Option<&'static mut ThreadCache> {
    // Mark first, so that anything called from here that allocates takes the slow path.
    CURRENT.with(|c| c.set(DEAD));
    let mut h = HEAP.lock();
    let addr = h.alloc(CACHE_GRANULES, 1)?;
    let tc = addr as *mut ThreadCache;
    // SAFETY: a fresh internal block of the right size; zero is a valid empty cache.
    unsafe {
        core::ptr::write_bytes(tc as *mut u8, 0, core::mem::size_of::<ThreadCache>());
        let reg = registry(&mut h);
        (*tc).next = reg.head;
        if !reg.head.is_null() {
            (*reg.head).prev = tc;
        }
        reg.head = tc;
    }
    drop(h);
    CURRENT.with(|c| c.set(tc));
    crate::init::register_thread_cache(tc as *mut core::ffi::c_void);
    // SAFETY: just created for this thread.
    Some(unsafe { &mut *tc })
}

impl ThreadCache {
    /// Pops the most recently cached block of `n` granules and makes it live.
    #[inline]
    pub fn pop(&mut self, n: usize) -> Option<usize> {
        let h = self.heads[n];
        if h.is_null() {
            return None;
        }
        let addr = h as usize;
        let arena = heap::arena_of(addr)?;
        // SAFETY: cached blocks belong to this cache; their header is ours.
        let (tag, next) = unsafe { ((*h).tag, (*h).next) };
        if tag != arena.cached_tag(addr) {
            report::misuse("malloc", Misuse::Corruption, addr);
        }
        // SAFETY: as above; clearing the tag makes the block the user's again.
        unsafe { (*h).tag = 0 };
        self.heads[n] = next;
        self.counts[n] -= 1;
        self.cached_granules -= n;
        Some(addr)
    }

    /// Parks the live block at `addr` (`n` granules). `seen` is the first word of the
    /// block as the misuse check read it; if it changed since, another thread freed the
    /// block concurrently.
    #[inline]
    pub fn push(&mut self, arena: &Arena, addr: usize, n: usize, seen: u64) {
        let h = addr as *mut CachedHeader;
        // SAFETY: the block is live and owned by the caller; its first word is aligned.
        let tag = unsafe { AtomicU64::from_ptr(h as *mut u64) };
        if tag.compare_exchange(seen, arena.cached_tag(addr), AcqRel, Acquire).is_err() {
            report::misuse("free", Misuse::DoubleFree, addr);
        }
        // SAFETY: the block is now this cache's.
        unsafe { (*h).next = self.heads[n] };
        self.heads[n] = h;
        self.counts[n] += 1;
        self.cached_granules += n;
        if self.counts[n] > class_limit(n) {
            self.flush(n, class_limit(n) as usize / 2);
        }
    }

    /// Takes several blocks of `n` granules from the heap in one lock hold; returns one
    /// and caches the others.
    #[cold]
    pub fn refill(&mut self, n: usize) -> Option<usize> {
        let want = (REFILL_BYTES / (n * GRANULE)).clamp(1, 16);
        let mut got = [0usize; 16];
        let k = HEAP.lock().alloc_batch(n, &mut got[..want]);
        if k == 0 {
            return None;
        }
        // Cache the later ones in reverse, so the lowest addresses are handed out first.
        for i in (1..k).rev() {
            let addr = got[i];
            let arena = heap::arena_of(addr)?;
            let h = addr as *mut CachedHeader;
            // SAFETY: a live block just allocated for this cache.
            unsafe { h.write(CachedHeader { tag: arena.cached_tag(addr), next: self.heads[n] }) };
            self.heads[n] = h;
            self.counts[n] += 1;
            self.cached_granules += n;
        }
        Some(got[0])
    }

    /// Returns to the heap, one after the other, the cached blocks that end where the
    /// free tail of `arena` begins, so that cached blocks do not hold the top up.
    pub fn release_below_free_tail(&mut self, arena: &Arena) {
        'again: loop {
            let hi = arena.hi_live();
            for n in 1..=CLASSES {
                let mut link: *mut *mut CachedHeader = &mut self.heads[n];
                // SAFETY: the lists hold this cache's blocks; `link` points at the head
                // slot or at a node's `next` field.
                unsafe {
                    while !(*link).is_null() {
                        let b = *link;
                        let addr = b as usize;
                        if arena.contains(addr) && arena.granule_of(addr) + n == hi {
                            *link = (*b).next;
                            self.counts[n] -= 1;
                            self.cached_granules -= n;
                            HEAP.lock().free_block_at(addr, n);
                            continue 'again;
                        }
                        link = &mut (*b).next;
                    }
                }
            }
            return;
        }
    }

    /// Returns the blocks of class `n` beyond the `keep` most recent to the heap.
    pub fn flush(&mut self, n: usize, keep: usize) {
        let mut prev: *mut CachedHeader = core::ptr::null_mut();
        let mut cur = self.heads[n];
        for _ in 0..keep {
            if cur.is_null() {
                return;
            }
            prev = cur;
            // SAFETY: list nodes are cached blocks owned by this cache.
            cur = unsafe { (*cur).next };
        }
        if prev.is_null() {
            self.heads[n] = core::ptr::null_mut();
        } else {
            // SAFETY: as above.
            unsafe { (*prev).next = core::ptr::null_mut() };
        }
        let given = give_back(&mut HEAP.lock(), n, cur);
        self.counts[n] -= given as u32;
        self.cached_granules -= given * n;
    }

}

/// Gives the list of cached blocks of `n` granules that starts at `cur` back to the
/// heap, in address order, adjacent blocks as one range: blocks freed together were
/// often allocated together, and one release of a range costs the buddy far less than
/// one per block. Returns how many blocks. Call with the lock held.
fn give_back(h: &mut Heap, n: usize, mut cur: *mut CachedHeader) -> usize {
    let mut batch = [0usize; FLUSH_BATCH];
    let mut given = 0;
    while !cur.is_null() {
        let mut k = 0;
        while k < FLUSH_BATCH && !cur.is_null() {
            batch[k] = cur as usize;
            // SAFETY: list nodes are cached blocks of the list's owner; read the link
            // before the buddy reuses the header.
            cur = unsafe { (*cur).next };
            k += 1;
        }
        given += k;
        let blocks = &mut batch[..k];
        blocks.sort_unstable();
        let bytes = n * GRANULE;
        let mut i = 0;
        while i < k {
            let mut j = i + 1;
            while j < k && blocks[j] == blocks[j - 1] + bytes {
                j += 1;
            }
            // A range never spans two arenas: each arena ends at its top, which is free.
            h.free_block_at(blocks[i], n * (j - i));
            i = j;
        }
    }
    given
}

/// Returns every block of the cache `tc` to the heap, removes it from the registry
/// (keeping its counters) and frees it. Call with the lock held.
///
/// # Safety
/// `tc` must be a registered cache that no thread uses any more.
unsafe fn dispose(h: &mut Heap, tc: *mut ThreadCache) {
    for n in 1..=CLASSES {
        give_back(h, n, (*tc).heads[n]);
    }
    unlink(h, tc);
    h.free_block_at(tc as usize, CACHE_GRANULES);
}

/// Thread exit: give the cache's blocks back, keep its counters, free the cache.
///
/// # Safety
/// `tc` must be the exiting thread's cache.
pub unsafe fn retire(tc: *mut ThreadCache) {
    if tc.is_null() || tc == DEAD {
        return;
    }
    CURRENT.with(|c| c.set(DEAD));
    dispose(&mut HEAP.lock(), tc);
}

/// Removes `tc` from the registry, folding its counters into the retired totals.
fn unlink(h: &mut Heap, tc: *mut ThreadCache) {
    let reg = registry(h);
    // SAFETY: tc is on the registry list, guarded by the heap lock.
    unsafe {
        (*tc).counters.add_into(&reg.retired);
        if (*tc).prev.is_null() {
            reg.head = (*tc).next;
        } else {
            (*(*tc).prev).next = (*tc).next;
        }
        if !(*tc).next.is_null() {
            (*(*tc).next).prev = (*tc).prev;
        }
    }
}

/// In a child after fork only the forking thread exists: the caches of the other
/// threads are reclaimed (their blocks go back to the heap). Call with the lock held
/// and the registry consistent.
pub fn reclaim_after_fork(h: &mut Heap) {
    let me = CURRENT.with(|c| c.get());
    let mut cur = registry(h).head;
    while !cur.is_null() {
        // SAFETY: registry nodes are live caches; only this thread exists now.
        let next = unsafe { (*cur).next };
        if cur != me {
            // SAFETY: its thread did not survive the fork.
            unsafe { dispose(h, cur) };
        }
        cur = next;
    }
}

/// Sums every thread's counters and cached bytes. Call with the lock held.
pub fn totals(h: &mut Heap, out: &Totals) -> usize {
    let reg = registry(h);
    reg.retired.add_into(out);
    let mut cached = 0;
    let mut cur = reg.head;
    while !cur.is_null() {
        // SAFETY: registry nodes are live caches; counters are atomics.
        unsafe {
            (*cur).counters.add_into(out);
            cached += core::ptr::read_volatile(&(*cur).cached_granules) << GRANULE_SHIFT;
            cur = (*cur).next;
        }
    }
    cached
}
