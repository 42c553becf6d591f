//! Per-thread caches in front of the heap: small blocks (1 to 64 granules, up to 1 KiB)
//! by exact size, mid-size blocks (up to 64 KiB) by size class, and per-class transfer
//! lists between threads. malloc pops and free pushes without taking the heap lock and
//! without reading the block.
//!
//! Invariants:
//! * A cached block stays live in the bitmaps (`alloc=1`) and carries a [`CachedHeader`]
//!   in its first 16 bytes: a tag bound to its address and a per-process key, and the
//!   link of its class list. A block carries the tag exactly while it is on a list:
//!   `pop` and `give_back` clear it before the block is handed out or returned to the
//!   buddy.
//! * Each list is LIFO (the most recently freed block of a size is the next one handed
//!   out) and `count(n)` nodes long (`limits[n] - room[n]`), at most `limits[n]`
//!   after any push (`room[n] >= 0`); the last node links to null.
//! * The granules on all lists (mid-size blocks at their list's class size) are
//!   `budget - budget_room`, at most `budget` after any push (`budget_room >= 0`).
//! * Only the owning thread touches a cache's lists; other threads read its counters
//!   (atomics written by the owner only) when statistics are gathered under the heap lock.
//! * Every live cache is on the list rooted at `REGISTRY.head` (guarded by the heap lock).
//!
//! Double frees. `free` does not read the block (on a random free that read is a cache
//! miss that would dominate the cost of the call). Freeing the head of its class list
//! again is caught at once; any other double free puts one block on a list twice, and
//! that is caught before the block can be handed out twice: `pop` finds the second copy
//! without its tag, `give_back` checks every tag and that the list ends where its count
//! says, the buddy refuses to free a free granule, and at exit the main thread's lists
//! are checked.
//!
//! Thread-local state is one const-initialised pointer without a destructor, read with
//! the initial-exec TLS model on x86-64 (`tls`); thread exit is handled by a
//! `pthread_key_create` destructor registered at load time.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::bitmap::{GRANULE, GRANULE_SHIFT};
use crate::buddy::CachedHeader;
use crate::heap::{Heap, HEAP};
use crate::report::{self, Misuse};
use crate::sys;

pub const CLASSES: usize = crate::buddy::CACHEABLE_GRANULES;
/// Bytes a class may hold before half of it goes back to the heap.
const CLASS_BYTES: usize = 64 << 10;
/// Blocks sorted and returned to the heap together (a stack buffer of addresses).
const FLUSH_BATCH: usize = 256;
/// Bytes of blocks a refill brings in at once (at least one block, at most
/// `REFILL_FEW_BLOCKS`), and at most for a class that keeps refilling
/// (`ThreadCache::refill_volume`).
const REFILL_BYTES: usize = 1 << 10;
const REFILL_MAX_BYTES: usize = 16 << 10;
/// Blocks a usual refill takes at most, and a refill at all (the refill's stack
/// buffers): a class that keeps overflowing refills `scale`-times more.
const REFILL_FEW_BLOCKS: usize = 16;
const REFILL_MAX_BLOCKS: usize = REFILL_FEW_BLOCKS << MAX_SCALE;

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
}

#[inline]
pub fn bump(c: &AtomicU64, by: u64) {
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
    }
}

/// Sums of counters (same shape), used for exited threads and for reports.
pub type Totals = Counters;

#[repr(C)]
pub struct ThreadCache {
    /// List `n` (1 to `CLASSES`): blocks of `n` granules; then the mid-size lists. List
    /// 0 stays empty, so the `malloc` fast path sends a request of 0 bytes on as a miss.
    heads: [*mut CachedHeader; LISTS],
    /// How many more blocks list `n` may take: `limits[n]` less its length (`count`).
    /// Kept as room, not as a length, so that a push is one decrement whose sign tells
    /// the list is over its limit.
    room: [i32; LISTS],
    /// Most blocks list `n` may hold: `LIMITS[n] << scale[n]` (`set_limit`).
    limits: [u32; LISTS],
    /// Class `n` may hold `LIMITS[n] << scale[n]` blocks and refills `scale`-times more
    /// at once: a class that overflows after a refill doubles both (up to `MAX_SCALE`), so that a
    /// program whose frees and mallocs of a size swing widely stops shuttling blocks
    /// through the buddy, while one that only allocates keeps the small default.
    scale: [u8; LISTS],
    /// Class `n` refilled since it last overflowed: only a class that swings between
    /// empty and full grows (a thread that only frees, like a consumer, keeps flushing
    /// small batches, which fit the transfer lists).
    refilled: [bool; LISTS],
    /// Granules class `n` has brought in from the buddy since it was last flushed. A
    /// class that keeps refilling (a program building a large structure) refills more
    /// at once: 1/256 of this, up to `REFILL_MAX_BYTES` (and `REFILL_MAX_BLOCKS`), so
    /// what it may leave cached unused stays a small fraction of what it took.
    refill_volume: [u32; CLASSES + 1],
    /// `budget` less the granules on all lists (mid-size blocks at their list's class
    /// size; `cached_granules`): kept by push and pop, and by the slow paths. Negative
    /// after a push: the cache is over its budget.
    budget_room: isize,
    /// Most granules this thread may keep cached, all lists together: an eighth of the
    /// memory the heap holds, between `BUDGET_MIN` and `BUDGET_MAX` (updated at each
    /// refill from the heap, `set_budget`). Past it, every list gives up half.
    budget: usize,
    /// `tag(addr)` is `key ^ addr` (the arena's cached tag).
    key: u64,
    pub counters: Counters,
    next: *mut ThreadCache,
    prev: *mut ThreadCache,
}

/// The tag of a block at `addr` parked in a cache whose key is `key` (the arena's
/// `cached_tag`, computed from `key = cached_tag(0)`).
#[inline(always)]
fn tag_of(key: u64, addr: usize) -> u64 {
    key ^ addr as u64
}

/// Blocks taken off a list by `ThreadCache::detach`: a null-terminated chain.
struct Detached {
    first: *mut CachedHeader,
    last: *mut CachedHeader,
    moved: usize,
}

/// Blocks of a mid-size list a request looks at for one long enough.
const MID_SEARCH: usize = 4;

/// The first 24 bytes of a cached mid-size block: the list header, then the block's
/// length (a mid-size list holds blocks of several lengths).
#[repr(C)]
struct MidHeader {
    list: CachedHeader,
    granules: usize,
}

/// A cache takes whole cache lines (64 bytes, 4 granules), so that no other thread's
/// block shares a line with it.
const CACHE_GRANULES: usize = core::mem::size_of::<ThreadCache>().div_ceil(64) * 4;

/// Head of the list of live caches, and counters of threads that have exited.
pub struct Registry {
    pub head: *mut ThreadCache,
    pub retired: Totals,
    /// Per class, blocks one thread's cache overflowed with, kept whole for the next
    /// thread whose cache of that class runs dry (a producer/consumer pair passes its
    /// blocks through here instead of through the buddy). A list like a cache's: tagged
    /// blocks, `count` long, at most `2 * LIMITS[n]` blocks.
    pub transfer: [Transfer; CLASSES + 1],
    /// Bytes the heap held after the caches were last emptied because the program had
    /// freed nearly everything, and the bytes then in use (`little_left_in_use`).
    pub reclaimed: (usize, usize),
}

#[derive(Clone, Copy)]
pub struct Transfer {
    head: *mut CachedHeader,
    count: usize,
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
    },
    transfer: [Transfer { head: core::ptr::null_mut(), count: 0 }; CLASSES + 1],
    reclaimed: (0, 0),
};

/// Registry access; the caller must hold the heap lock.
pub fn registry(_locked: &mut Heap) -> &'static mut Registry {
    // SAFETY: the heap lock (proved by the &mut Heap argument) guards the registry.
    unsafe { &mut *core::ptr::addr_of_mut!(REGISTRY) }
}

/// This thread's TLS slot once its cache is gone (thread exit): a marker, never
/// dereferenced; live caches lie above it.
#[allow(clippy::manual_dangling_ptr)]
const DEAD: *mut ThreadCache = 1 as *mut ThreadCache;

/// Mid-size blocks (72 to 4096 granules, up to 64 KiB) are cached by size class: eight
/// classes per doubling, 72, 80, ... 128, 144, ... 4096 granules. List `MID_BASE + c`
/// holds the blocks from class `c`'s size up to the next class's, each with its length
/// in its third word (`MidHeader`). A request takes a block of its own size from the
/// heap (65 to 71 granules: 72), not its class size: rounding up cost up to 1/8 of
/// every mid-size block (Python's parser asks for 8,224-byte arena blocks, which became
/// 9,216). It is served from the list of the largest class size at most its own (the
/// newest of its first blocks that is long enough), else from the next list, whose
/// every block is.
pub const MID_MAX_GRANULES: usize = crate::buddy::CACHED_MAX_GRANULES;
pub const MID_MIN_GRANULES: usize = 72;
const MID_CLASSES: usize = 48;
const MID_BASE: usize = CLASSES + 1;
const LISTS: usize = MID_BASE + MID_CLASSES;

/// Size in granules of mid class `c`.
const fn mid_size(c: usize) -> usize {
    let k = 6 + c / 8;
    (1 << k) + ((c % 8) + 1) * (1 << (k - 3))
}

/// The class of a request of `n` granules (`CLASSES < n <= MID_MAX_GRANULES`): the
/// smallest class size `>= n`.
#[inline]
fn mid_class_for_request(n: usize) -> usize {
    let k = (usize::BITS - 1 - (n - 1).leading_zeros()) as usize; // 2^k < n <= 2^(k+1)
    let step = 1 << (k - 3);
    let j = (n - (1 << k)).div_ceil(step); // 1..=8
    (k - 6) * 8 + j - 1
}

/// The size a mid-size request of `n` granules (`CLASSES < n <= MID_MAX_GRANULES`) is
/// given: its class size.
#[inline]
pub fn mid_rounded(n: usize) -> usize {
    mid_size(mid_class_for_request(n))
}

/// The class a freed block of `n` granules (`MID_MIN_GRANULES <= n <= MID_MAX_GRANULES`)
/// joins: the largest class size `<= n`.
#[inline]
fn mid_class_for_block(n: usize) -> usize {
    let k = (usize::BITS - 1 - n.leading_zeros()) as usize; // 2^k <= n < 2^(k+1)
    let j = (n - (1 << k)) >> (k - 3); // 0..=7
    if j == 0 { (k - 7) * 8 + 7 } else { (k - 6) * 8 + j - 1 }
}

/// Bytes a mid class may hold at first (at least one block); `scale` grows it as for
/// the small classes.
const MID_CLASS_BYTES: usize = 64 << 10;

/// A class may grow to `LIMITS[n] << MAX_SCALE` blocks.
const MAX_SCALE: u8 = 4;
/// Blocks a class may hold at first: `CLASS_BYTES` worth, 8 to 512 (small classes), or
/// `MID_CLASS_BYTES` worth, at least one (mid classes).
const LIMITS: [u32; LISTS] = {
    let mut l = [0u32; LISTS];
    let mut n = 1;
    while n <= CLASSES {
        let k = CLASS_BYTES / (n * GRANULE);
        l[n] = if k < 8 { 8 } else if k > 512 { 512 } else { k as u32 };
        n += 1;
    }
    let mut c = 0;
    while c < MID_CLASSES {
        let k = MID_CLASS_BYTES / (mid_size(c) * GRANULE);
        l[MID_BASE + c] = if k < 1 { 1 } else { k as u32 };
        c += 1;
    }
    l
};

/// Granules of each block on list `i`, for the small classes; the least for mid ones.
const fn list_granules(i: usize) -> usize {
    if i < MID_BASE { i } else { mid_size(i - MID_BASE) }
}

const LIST_GRANULES: [u32; LISTS] = {
    let mut t = [0u32; LISTS];
    let mut i = 1;
    while i < LISTS {
        t[i] = list_granules(i) as u32;
        i += 1;
    }
    t
};

/// Free and cached memory worth emptying the caches for, once the program holds little.
const RECLAIM_MIN: usize = 2 << 20;

/// Bounds of a thread's cache budget. A small program caches little; a large one up to
/// 8 MiB (with 4 MiB the mixed-size pattern, 70 MB live, kept flushing its mid-size
/// lists to the buddy).
const BUDGET_MIN: usize = (1 << 20) / GRANULE;
const BUDGET_MAX: usize = (8 << 20) / GRANULE;

/// The budget for a heap holding `held` bytes.
fn budget_for(held: usize) -> usize {
    ((held / 8) >> GRANULE_SHIFT).clamp(BUDGET_MIN, BUDGET_MAX)
}

/// This thread's cache, created on first use; `None` while the thread is exiting.
#[inline(always)]
pub fn current() -> Option<&'static mut ThreadCache> {
    let p = tls::get();
    if p as usize > DEAD as usize {
        // SAFETY: the pointer names this thread's live cache, used by this thread only.
        return Some(unsafe { &mut *p });
    }
    if p.is_null() {
        return create();
    }
    None
}

/// This thread's cache if it has one (without creating it).
#[inline(always)]
pub fn existing() -> Option<&'static mut ThreadCache> {
    let p = tls::get();
    if p as usize > DEAD as usize {
        // SAFETY: as in current().
        Some(unsafe { &mut *p })
    } else {
        None
    }
}

/// This thread's counters, if it has a cache (without creating one).
#[inline]
pub fn counters() -> Option<&'static Counters> {
    existing().map(|tc| &tc.counters)
}

/// The thread's cache pointer. On x86-64 it is read with the initial-exec model (one
/// `fs`-relative load, where the general-dynamic model of a Rust cdylib calls
/// `__tls_get_addr`); the library is loaded at start-up (LD_PRELOAD or a link
/// dependency), so its TLS block is part of the static TLS area.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tls {
    use super::ThreadCache;

    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".hidden myalloc_thread_cache",
        "myalloc_thread_cache:",
        ".zero 8",
        ".popsection",
    );

    #[inline(always)]
    pub fn get() -> *mut ThreadCache {
        let p: *mut ThreadCache;
        // SAFETY: reads this thread's 8-byte slot, zero (null) until set.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + myalloc_thread_cache@GOTTPOFF]",
                "mov {p}, qword ptr fs:[{p}]",
                p = out(reg) p,
                options(nostack, readonly, preserves_flags),
            );
        }
        p
    }

    #[inline(always)]
    pub fn set(v: *mut ThreadCache) {
        // SAFETY: writes this thread's 8-byte slot.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + myalloc_thread_cache@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {v}",
                t = out(reg) _,
                v = in(reg) v,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod tls {
    use super::ThreadCache;
    use core::cell::Cell;

    thread_local! {
        static CURRENT: Cell<*mut ThreadCache> = const { Cell::new(core::ptr::null_mut()) };
    }

    #[inline(always)]
    pub fn get() -> *mut ThreadCache {
        CURRENT.with(|c| c.get())
    }

    #[inline(always)]
    pub fn set(v: *mut ThreadCache) {
        CURRENT.with(|c| c.set(v))
    }
}

#[cold]
fn create() -> Option<&'static mut ThreadCache> {
    // Mark first, so that anything called from here that allocates takes the slow path.
    tls::set(DEAD);
    let mut h = HEAP.lock();
    let addr = h.alloc(CACHE_GRANULES, 4)?;
    let tc = addr as *mut ThreadCache;
    // SAFETY: a fresh internal block of the right size; zero is a valid empty cache.
    unsafe {
        core::ptr::write_bytes(tc as *mut u8, 0, core::mem::size_of::<ThreadCache>());
        (*tc).key = h.brk.cached_tag(0);
        (*tc).start_empty(BUDGET_MIN);
        let reg = registry(&mut h);
        (*tc).next = reg.head;
        if !reg.head.is_null() {
            (*reg.head).prev = tc;
        }
        reg.head = tc;
    }
    drop(h);
    tls::set(tc);
    // SAFETY: just created for this thread.
    let tc = unsafe { &mut *tc };
    crate::init::register_thread_cache(tc);
    Some(tc)
}

impl ThreadCache {
    /// Gives a zeroed cache (empty lists) its first limits and `budget`, the rooms
    /// following through `set_limit` and `set_budget`.
    fn start_empty(&mut self, budget: usize) {
        for (n, &limit) in LIMITS.iter().enumerate() {
            self.set_limit(n, limit);
        }
        self.set_budget(budget);
    }

    /// Blocks on list `n`.
    #[inline]
    fn count(&self, n: usize) -> usize {
        (self.limits[n] as i64 - self.room[n] as i64) as usize
    }

    fn set_count(&mut self, n: usize, count: usize) {
        self.room[n] = self.limits[n] as i32 - count as i32;
    }

    fn set_limit(&mut self, n: usize, limit: u32) {
        self.room[n] += limit as i32 - self.limits[n] as i32;
        self.limits[n] = limit;
    }

    /// Changes the budget, and the room with it. Call with the lock held: readers of
    /// `cached_granules` hold it, and see the two fields agree.
    fn set_budget(&mut self, budget: usize) {
        self.budget_room += budget as isize - self.budget as isize;
        self.budget = budget;
    }

    #[inline(always)]
    fn tag(&self, addr: usize) -> u64 {
        tag_of(self.key, addr)
    }

    /// Pops the most recently cached block of `n` granules and makes it the user's.
    #[inline(always)]
    pub fn pop(&mut self, n: usize) -> Option<usize> {
        self.pop_list(n, n)
    }

    /// Pops the head of list `i`, whose blocks count as `granules` each.
    #[inline(always)]
    fn pop_list(&mut self, i: usize, granules: usize) -> Option<usize> {
        let h = self.heads[i];
        if h.is_null() {
            return None;
        }
        let addr = h as usize;
        // SAFETY: list nodes are blocks parked in this cache; their header is ours.
        let (tag, next) = unsafe { ((*h).tag, (*h).next) };
        if tag != self.tag(addr) {
            report::misuse("malloc", Misuse::FreedBlockChanged, addr);
        }
        // SAFETY: as above; clearing the tag makes the block the user's again.
        unsafe { (*h).tag = 0 };
        // The next pop of this list reads `next`'s header: start that load now, so a
        // run of mallocs (a program filling a structure) does not wait for each
        // block's line in turn.
        sys::prefetch(next);
        self.heads[i] = next;
        self.room[i] += 1;
        self.budget_room += granules as isize;
        Some(addr)
    }

    /// Parks the live block at `addr` (`n` granules), writing but not reading it.
    #[inline(always)]
    pub fn push(&mut self, addr: usize, n: usize) {
        self.push_list(addr, n, n)
    }

    /// Pushes the block at `addr` on list `i`, whose blocks count as `granules` each.
    #[inline(always)]
    fn push_list(&mut self, addr: usize, i: usize, granules: usize) {
        let h = addr as *mut CachedHeader;
        let head = self.heads[i];
        if h == head {
            report::misuse("free", Misuse::DoubleFree, addr);
        }
        // SAFETY: the block is live and the caller's to give up; 16 bytes, aligned.
        unsafe { h.write(CachedHeader { tag: self.tag(addr), next: head }) };
        self.heads[i] = h;
        // Each count is tested right after its decrement, which sets the flags the test
        // reads (testing both after both reloaded the first).
        self.room[i] -= 1;
        if self.room[i] < 0 {
            return self.overflow_counting(i, granules);
        }
        self.budget_room -= granules as isize;
        if self.budget_room < 0 {
            self.overflow(i);
        }
    }

    /// `push_list`'s list `i` went over its limit before the push was counted in the
    /// budget: counts it, then flushes. (A call of its own, so that the fast path keeps
    /// the budget's decrement and test together.)
    #[cold]
    #[inline(never)]
    fn overflow_counting(&mut self, i: usize, granules: usize) {
        self.budget_room -= granules as isize;
        self.overflow(i);
    }

    /// Pops a block for a mid-size request of `n` granules, if one is cached.
    #[inline]
    pub fn pop_mid(&mut self, n: usize) -> Option<usize> {
        if n < MID_MIN_GRANULES {
            return self.pop_list(MID_BASE, LIST_GRANULES[MID_BASE] as usize);
        }
        let c = mid_class_for_block(n);
        let i = MID_BASE + c;
        if let Some(a) = self.take_fitting(i, n) {
            return Some(a);
        }
        if c + 1 < MID_CLASSES {
            return self.pop_list(i + 1, LIST_GRANULES[i + 1] as usize);
        }
        None
    }

    /// Takes the newest of the first `MID_SEARCH` blocks of mid-size list `i` that holds
    /// `n` granules. (Taking only the head, a list kept the blocks too short for the
    /// requests that came, while those went to the next list or the heap: git log -p
    /// cached 1 MB where rounded sizes had cached 450 KB.)
    fn take_fitting(&mut self, i: usize, n: usize) -> Option<usize> {
        let mut prev: *mut CachedHeader = core::ptr::null_mut();
        let mut cur = self.heads[i];
        for _ in 0..MID_SEARCH {
            if cur.is_null() {
                return None;
            }
            let addr = cur as usize;
            // SAFETY: list nodes are cached mid-size blocks of this cache, each with its
            // `MidHeader`; the tag is checked before the link or length is trusted.
            let (tag, next, granules) = unsafe {
                let m = &*(cur as *const MidHeader);
                (m.list.tag, m.list.next, m.granules)
            };
            if tag != self.tag(addr) {
                report::misuse("malloc", Misuse::FreedBlockChanged, addr);
            }
            if granules >= n {
                // SAFETY: as above; `prev` is the node before `cur` on this list.
                unsafe {
                    (*cur).tag = 0;
                    match prev.is_null() {
                        true => self.heads[i] = next,
                        false => (*prev).next = next,
                    }
                }
                self.room[i] += 1;
                self.budget_room += LIST_GRANULES[i] as isize;
                return Some(addr);
            }
            prev = cur;
            cur = next;
        }
        None
    }

    /// The granules a mid-size request of `n` is given when it comes from the heap (the
    /// cache had none): that counts as its list's refill.
    #[inline]
    pub fn mid_missed(&mut self, n: usize) -> usize {
        if n < MID_MIN_GRANULES {
            self.refilled[MID_BASE] = true;
            return MID_MIN_GRANULES;
        }
        self.refilled[MID_BASE + mid_class_for_block(n)] = true;
        n
    }

    /// Parks the live mid-size block at `addr` (`n` granules, `MID_MIN_GRANULES` to
    /// `MID_MAX_GRANULES`).
    #[inline]
    pub fn push_mid(&mut self, addr: usize, n: usize) {
        let i = MID_BASE + mid_class_for_block(n);
        // SAFETY: the block is live, the caller's to give up, and over 1 KiB long.
        unsafe { (*(addr as *mut MidHeader)).granules = n };
        self.push_list(addr, i, LIST_GRANULES[i] as usize);
    }

    /// Granules parked in this cache (read by statistics from any thread, with the lock
    /// held: the budget changes only under it, and push and pop move the room alone).
    pub fn cached_granules(&self) -> usize {
        // SAFETY: plain words owned by one thread; a value a push or pop is changing is
        // fine for statistics.
        let (budget, room) = unsafe { (core::ptr::read_volatile(&self.budget), core::ptr::read_volatile(&self.budget_room)) };
        (budget as isize - room).max(0) as usize
    }

    /// Takes several blocks of `n` granules from the heap in one lock hold; returns one
    /// and caches the others.
    #[cold]
    pub fn refill(&mut self, n: usize) -> Option<usize> {
        self.refilled[n] = true;
        let taken = sys::keep_errno(|| {
            let mut h = HEAP.lock();
            let t = &mut registry(&mut h).transfer[n];
            let taken = *t;
            *t = Transfer { head: core::ptr::null_mut(), count: 0 };
            taken
        });
        if taken.count > 0 {
            // The list of class n is empty (pop failed): the transfer list becomes it.
            self.heads[n] = taken.head;
            self.set_count(n, taken.count);
            self.budget_room -= (taken.count * n) as isize;
            return self.pop(n);
        }
        let usual = (REFILL_BYTES / (n * GRANULE)).clamp(1, REFILL_FEW_BLOCKS) << self.scale[n];
        let streak = (self.refill_volume[n] as usize / 256 / n).min(REFILL_MAX_BYTES / (n * GRANULE));
        let want = usual.max(streak).min(REFILL_MAX_BLOCKS);
        // (Most refills want a few blocks: the large buffer is only cleared for the rest.)
        let mut few = [0usize; REFILL_FEW_BLOCKS];
        let mut many;
        let got = if want <= REFILL_FEW_BLOCKS {
            &mut few[..want]
        } else {
            many = [0usize; REFILL_MAX_BLOCKS];
            &mut many[..want]
        };
        let k = sys::keep_errno(|| {
            let mut h = HEAP.lock();
            let k = h.alloc_batch(n, got);
            self.set_budget(budget_for(h.held_bytes()));
            k
        });
        if k == 0 {
            return None;
        }
        self.refill_volume[n] = self.refill_volume[n].saturating_add((k * n) as u32);
        // Cache the later ones in reverse, so the lowest addresses are handed out first.
        // (The chain is built in locals: stores into the blocks could alias the cache's
        // fields, which would otherwise be reloaded and stored for every block.)
        let mut head = self.heads[n];
        for &addr in got[1..k].iter().rev() {
            let h = addr as *mut CachedHeader;
            // SAFETY: a live block just allocated for this cache.
            unsafe { h.write(CachedHeader { tag: self.tag(addr), next: head }) };
            head = h;
        }
        self.heads[n] = head;
        self.room[n] -= (k - 1) as i32;
        self.budget_room -= ((k - 1) * n) as isize;
        Some(got[0])
    }

    /// Returns every cached block to the heap (`strict` as for `give_back`). Call with
    /// the lock held.
    pub fn give_all_back(&mut self, h: &mut Heap, strict: bool) {
        for i in 1..LISTS {
            let (head, count) = (self.heads[i], self.count(i));
            self.heads[i] = core::ptr::null_mut();
            self.set_count(i, 0);
            give_back(h, self.key, i, head, count, strict);
        }
        self.budget_room = self.budget as isize;
    }

    /// Returns every block of this cache and of the transfer lists to the heap (cached
    /// blocks anywhere would keep the break up). Call with the lock held.
    pub fn give_all_back_with_transfer(&mut self, h: &mut Heap) {
        drain_transfer(h);
        self.give_all_back(h, true);
    }

    /// Class `n` went over its limit: flush half of it, and let it hold more next time.
    #[cold]
    fn overflow(&mut self, n: usize) {
        let limit = self.limits[n] as usize;
        if self.budget_room < 0 {
            // The whole cache is full: every list gives up half, in one lock hold (a
            // lock and a reclaim check per list cost more than the lists' blocks did
            // on a small heap of 1-64 KiB blocks, where the budget overflows often;
            // the price is that these lists are walked with the lock held).
            sys::keep_errno(|| {
                let mut h = HEAP.lock();
                for i in 1..LISTS {
                    self.flush_locked(&mut h, i, self.count(i) / 2);
                }
                self.reclaim_if_little_left(&mut h);
            });
            return;
        }
        self.flush(n, limit / 2);
        if self.refilled[n] && self.scale[n] < MAX_SCALE {
            self.scale[n] += 1;
            self.set_limit(n, LIMITS[n] << self.scale[n]);
        }
        self.refilled[n] = false;
    }

    /// Trims class `n` to its `keep` oldest blocks. The newer ones (just written, so the
    /// walk to detach them is cheap) go to the transfer list of the class, or back to
    /// the heap when that is full.
    #[cold]
    pub fn flush(&mut self, n: usize, keep: usize) {
        // Detached before the lock is taken: the walk reads the blocks.
        let Some(detached) = self.detach(n, keep) else { return };
        sys::keep_errno(|| {
            let mut h = HEAP.lock();
            self.hand_over(&mut h, n, detached);
            self.reclaim_if_little_left(&mut h);
        });
    }

    /// `flush` with the lock held, without the reclaim check.
    fn flush_locked(&mut self, h: &mut Heap, n: usize, keep: usize) {
        if let Some(detached) = self.detach(n, keep) {
            self.hand_over(h, n, detached);
        }
    }

    /// Takes all but the `keep` oldest blocks off list `n`: (first, last, how many).
    fn detach(&mut self, n: usize, keep: usize) -> Option<Detached> {
        let count = self.count(n);
        if count <= keep {
            return None;
        }
        let moved = count - keep;
        if n <= CLASSES {
            // The class had more than it needed: refills start small again.
            self.refill_volume[n] = 0;
        }
        let first = self.heads[n];
        let mut last = first;
        for _ in 1..moved {
            // SAFETY: list nodes are cached blocks owned by this cache; the first
            // `count` links are non-null.
            last = unsafe { (*last).next };
        }
        // SAFETY: as above.
        unsafe {
            self.heads[n] = (*last).next;
            (*last).next = core::ptr::null_mut();
        }
        self.set_count(n, keep);
        self.budget_room += (moved * LIST_GRANULES[n] as usize) as isize;
        Some(Detached { first, last, moved })
    }

    /// Gives detached blocks of list `n` to the class's transfer list, or back to the
    /// heap when that is full. Call with the lock held.
    fn hand_over(&self, h: &mut Heap, n: usize, d: Detached) {
        let reg = registry(h);
        if n < MID_BASE && reg.transfer[n].count + d.moved <= (LIMITS[n] as usize) << 1 {
            let t = &mut reg.transfer[n];
            // SAFETY: `last` ends the detached list, which is ours.
            unsafe { (*d.last).next = t.head };
            t.head = d.first;
            t.count += d.moved;
        } else {
            give_back(h, self.key, n, d.first, d.moved, true);
        }
    }

    /// After a flush: when the program has freed nearly everything but what is cached
    /// (blocks a refill brought in unused, or freed before the highest block was) may
    /// hold the top up, gives it all back, so the heap can shrink.
    fn reclaim_if_little_left(&mut self, h: &mut Heap) {
        if let Some(in_use) = little_left_in_use(h) {
            self.give_all_back_with_transfer(h);
            let held = h.held_bytes();
            registry(h).reclaimed = (held, in_use);
        }
    }

    /// Checks every list of this cache: each node tagged, each list as long as its
    /// count. A block freed twice and not reused since is found here at exit.
    pub fn verify(&self) {
        for n in 1..LISTS {
            let count = self.count(n);
            let mut cur = self.heads[n];
            for _ in 0..count {
                if cur.is_null() {
                    report::internal("thread cache list shorter than its count");
                }
                // SAFETY: list nodes are cached blocks of this cache.
                unsafe {
                    if (*cur).tag != self.tag(cur as usize) {
                        report::misuse("free", Misuse::FreedBlockChanged, cur as usize);
                    }
                    cur = (*cur).next;
                }
            }
            if !cur.is_null() {
                // A block pushed twice made the list a cycle: name the block (a second,
                // quadratic walk, only on this error path; no stack array, as exit may
                // run on a small thread stack).
                report::misuse("free", Misuse::DoubleFree, self.repeated_node(n).unwrap_or(cur as usize));
            }
        }
    }

    /// The first node of list `n` that appears again within its first `count(n) + 1`
    /// nodes.
    fn repeated_node(&self, n: usize) -> Option<usize> {
        let count = self.count(n);
        let mut a = self.heads[n];
        for i in 0..=count {
            let mut b = a;
            for _ in i + 1..=count {
                // SAFETY: the walk in `verify` showed these first count+1 links non-null.
                b = unsafe { (*b).next };
                if b.is_null() {
                    break;
                }
                if b == a {
                    return Some(a as usize);
                }
            }
            // SAFETY: as above.
            a = unsafe { (*a).next };
            if a.is_null() {
                return None;
            }
        }
        None
    }
}

/// At exit: checks the calling thread's cache, if it has one (see `verify`).
pub fn verify_current() {
    let p = tls::get();
    if p as usize > DEAD as usize {
        // SAFETY: this thread's live cache.
        unsafe { (*p).verify() };
    }
}

/// Gives the `count` cached blocks of `n` granules listed from `cur` back to the heap,
/// in address order, adjacent blocks as one range: blocks freed together were often
/// allocated together, and one release of a range costs the buddy far less than one per
/// block. Every block's tag is checked and cleared; a list longer than its count means a
/// block was freed twice. Not `strict` (the caches of threads that did not survive a
/// fork, which may have stopped in the middle of a push or pop) a block without its tag
/// is left alone instead of reported. Call with the lock held.
fn give_back(h: &mut Heap, key: u64, n: usize, mut cur: *mut CachedHeader, count: usize, strict: bool) {
    let mut batch = [0usize; FLUSH_BATCH];
    let mut left = count;
    while left > 0 {
        let mut k = 0;
        while k < FLUSH_BATCH && left > 0 {
            let addr = cur as usize;
            if cur.is_null() {
                if !strict {
                    left = 0;
                    break;
                }
                report::internal("thread cache list shorter than its count");
            }
            left -= 1;
            // SAFETY: list nodes are cached blocks of the list's owner; read the link
            // before the buddy reuses the header.
            unsafe {
                let tagged = (*cur).tag == tag_of(key, addr);
                cur = (*cur).next;
                if !tagged {
                    if strict {
                        report::misuse("free", Misuse::FreedBlockChanged, addr);
                    }
                    continue;
                }
                (*(addr as *mut CachedHeader)).tag = 0;
            }
            batch[k] = addr;
            k += 1;
        }
        let blocks = &mut batch[..k];
        blocks.sort_unstable();
        if n >= MID_BASE {
            // Mid-size blocks have several lengths: each is freed whole, its
            // length read from the bitmaps.
            for (i, &addr) in blocks.iter().enumerate() {
                if i > 0 && blocks[i - 1] == addr {
                    report::misuse("free", Misuse::DoubleFree, addr);
                }
                match h.live_granules(addr) {
                    Some(len) => h.free_block_at(addr, len),
                    None => report::misuse("free", Misuse::DoubleFree, addr),
                }
            }
            continue;
        }
        let bytes = n * GRANULE;
        let mut i = 0;
        while i < k {
            let mut j = i + 1;
            while j < k && blocks[j] == blocks[j - 1] + bytes {
                j += 1;
            }
            if j < k && blocks[j] == blocks[j - 1] {
                report::misuse("free", Misuse::DoubleFree, blocks[j]);
            }
            // A range never spans two arenas: each arena ends at its top, which is free.
            h.free_block_at(blocks[i], n * (j - i));
            i = j;
        }
    }
    if strict && !cur.is_null() {
        report::misuse("free", Misuse::DoubleFree, cur as usize);
    }
}

/// Returns every block of the cache `tc` to the heap, removes it from the registry
/// (keeping its counters) and frees it. Call with the lock held.
///
/// `strict` as for `give_back`.
///
/// # Safety
/// `tc` must be a registered cache that no thread uses any more.
unsafe fn dispose(h: &mut Heap, tc: *mut ThreadCache, strict: bool) {
    (*tc).give_all_back(h, strict);
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
    tls::set(DEAD);
    dispose(&mut HEAP.lock(), tc, true);
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
    let me = tls::get();
    let mut cur = registry(h).head;
    while !cur.is_null() {
        // SAFETY: registry nodes are live caches; only this thread exists now.
        let next = unsafe { (*cur).next };
        if cur != me {
            // SAFETY: its thread did not survive the fork.
            unsafe { dispose(h, cur, false) };
        }
        cur = next;
    }
}

/// Sums every thread's counters into `out`; returns the bytes of blocks cached (thread
/// caches and transfer lists) and the bytes of the caches themselves. Call with the lock
/// held.
pub fn totals(h: &mut Heap, out: &Totals) -> (usize, usize) {
    let reg = registry(h);
    reg.retired.add_into(out);
    each_cache(reg, |tc| tc.counters.add_into(out));
    cached_and_caches(reg)
}

/// Calls `f` on every live cache. Call with the lock held (proved by `reg`).
fn each_cache(reg: &Registry, mut f: impl FnMut(&ThreadCache)) {
    let mut cur = reg.head;
    while !cur.is_null() {
        // SAFETY: registry nodes are live caches; what other threads write in them
        // (counters, `budget_room`) is read as atomics or volatile words.
        unsafe {
            f(&*cur);
            cur = (*cur).next;
        }
    }
}

/// Bytes of blocks cached (thread caches and transfer lists), and bytes of the caches
/// themselves.
fn cached_and_caches(reg: &Registry) -> (usize, usize) {
    let (mut cached, mut caches) = (0, 0);
    each_cache(reg, |tc| {
        cached += tc.cached_granules();
        caches += CACHE_GRANULES;
    });
    for (n, t) in reg.transfer.iter().enumerate() {
        cached += t.count * n;
    }
    (cached << GRANULE_SHIFT, caches << GRANULE_SHIFT)
}

/// Bytes the program holds: the heap's live blocks but for the cached ones and the
/// caches themselves (`cached` and `caches` as `totals` returns them).
pub fn in_use_bytes(h: &Heap, cached: usize, caches: usize) -> usize {
    h.reserved_bytes().saturating_sub(cached + caches)
}

/// The bytes the program holds (live, not cached), if they are under a sixteenth of
/// what the heap holds and the rest is worth giving back (`RECLAIM_MIN`): the program
/// has freed nearly everything. Not again until the heap has grown or the bytes in use
/// have halved since the last time (`Registry::reclaimed`; when the top cannot come
/// down, emptying the caches at every overflow would only cost refills). Call with the
/// lock held.
fn little_left_in_use(h: &mut Heap) -> Option<usize> {
    // Only worth it when a cached block holds the top up; tested first, as it costs
    // one block's header where the rest walks every thread's cache.
    h.brk.cached_block_ending_at(h.brk.hi_live(), crate::buddy::CACHED_MAX_GRANULES)?;
    let held = h.held_bytes();
    let reg = registry(h);
    let (cached, caches) = cached_and_caches(reg);
    let (last_held, last_in_use) = reg.reclaimed;
    let in_use = in_use_bytes(h, cached, caches);
    if in_use.saturating_mul(16) >= held || held - in_use < RECLAIM_MIN {
        return None;
    }
    if held <= last_held && in_use.saturating_mul(2) >= last_in_use {
        return None;
    }
    Some(in_use)
}

/// Returns every block of the transfer lists to the heap (before trimming: they may
/// hold the top up). Call with the lock held.
pub fn drain_transfer(h: &mut Heap) {
    let key = h.brk.cached_tag(0);
    for n in 1..=CLASSES {
        let t = registry(h).transfer[n];
        registry(h).transfer[n] = Transfer { head: core::ptr::null_mut(), count: 0 };
        give_back(h, key, n, t.head, t.count, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mid_classes_cover_the_range_in_order() {
        assert_eq!(mid_size(0), MID_MIN_GRANULES);
        assert_eq!(mid_size(MID_CLASSES - 1), MID_MAX_GRANULES);
        for c in 1..MID_CLASSES {
            let (lo, hi) = (mid_size(c - 1), mid_size(c));
            assert!(hi > lo && (hi - lo) * 8 <= lo, "classes {} and {c}: {lo} -> {hi}", c - 1);
        }
    }

    #[test]
    fn a_request_gets_the_smallest_class_that_holds_it() {
        for n in CLASSES + 1..=MID_MAX_GRANULES {
            let c = mid_class_for_request(n);
            assert!(mid_size(c) >= n, "request {n}: class {c} of {}", mid_size(c));
            assert!(c == 0 || mid_size(c - 1) < n, "request {n}: class {c} is not the smallest");
        }
    }

    /// An empty cache whose lists never reach a limit in these tests (a flush would
    /// give the test's blocks to the process heap).
    fn roomy_cache() -> ThreadCache {
        // SAFETY: zero is a valid empty cache (as `create` makes one).
        let mut tc: ThreadCache = unsafe { core::mem::zeroed() };
        tc.start_empty(isize::MAX as usize);
        tc
    }

    #[test]
    fn a_mid_request_takes_a_cached_block_only_if_it_is_long_enough() {
        let mut tc = roomy_cache();
        let mut mem = vec![[0u128; 1024]; 2];
        let (a, b) = (mem[0].as_mut_ptr() as usize, mem[1].as_mut_ptr() as usize);
        // 514 granules (Python's 8,224-byte parser blocks): the list of 512 to 575.
        tc.push_mid(a, 514);
        assert_eq!(tc.pop_mid(514), Some(a), "a block of the request's own length");
        tc.push_mid(a, 513);
        assert_eq!(tc.pop_mid(514), None, "one granule short, and the next list is empty");
        tc.push_mid(b, 600);
        assert_eq!(tc.pop_mid(514), Some(b), "the next list's blocks (576 to 639) all fit");
        assert_eq!(tc.pop_mid(513), Some(a));
        // A newer block too short for the request does not hide an older one that fits.
        tc.push_mid(a, 514);
        tc.push_mid(b, 513);
        assert_eq!(tc.pop_mid(514), Some(a), "the second block of the list");
        assert_eq!(tc.pop_mid(514), None, "the one left is too short");
        assert_eq!(tc.pop_mid(513), Some(b));
        // 65 to 71 granules: below the first class, served by it (72 to 79).
        tc.push_mid(a, 72);
        assert_eq!(tc.pop_mid(65), Some(a));
        assert_eq!(tc.mid_missed(65), MID_MIN_GRANULES);
        assert_eq!(tc.mid_missed(514), 514, "taken from the heap at its own length");
        assert_eq!((tc.pop_mid(514), tc.cached_granules()), (None, 0));
    }

    #[test]
    fn a_block_joins_the_largest_class_it_can_serve() {
        for n in MID_MIN_GRANULES..=MID_MAX_GRANULES {
            let c = mid_class_for_block(n);
            assert!(mid_size(c) <= n, "block {n}: class {c} of {}", mid_size(c));
            assert!(c == MID_CLASSES - 1 || mid_size(c + 1) > n, "block {n}: class {c} is not the largest");
        }
    }
}
