//! The allocation paths behind the C API: size to granules, the cache fast paths, the
//! locked slow paths, misuse checks, realloc in place and calloc zeroing.
//!
//! Fast paths in one glance: `malloc` of up to 1 KiB pops the thread cache (one atomic
//! bit update, no lock); `free` finds the block's extent in the bitmaps and pushes it.

use core::ptr;

use crate::bitmap::{Plane, GRANULE, GRANULE_SHIFT, MAX_ORDER};
use crate::buddy::Arena;
use crate::cache::{self, bump, ThreadCache, CLASSES, MID_MAX_GRANULES, MID_MIN_GRANULES};
use crate::heap::{self, HEAP};
use crate::report::{self, Misuse};
use crate::sys;

/// Largest request served (one block of the highest order).
pub const MAX_REQUEST: usize = (1usize << (MAX_ORDER + GRANULE_SHIFT)) - GRANULE;
/// Callocs at least this large get whole pages zeroed by the kernel instead of memset.
const KERNEL_ZERO_MIN: usize = 256 << 10;

/// Granules for a request of `size` bytes (0 bytes still get a unique block).
#[inline]
pub fn granules(size: usize) -> Option<usize> {
    if size > MAX_REQUEST {
        None
    } else {
        Some(granules_unchecked(size))
    }
}

/// Granules for `size` bytes, which the caller knows to be at most `MAX_REQUEST`.
#[inline(always)]
fn granules_unchecked(size: usize) -> usize {
    core::cmp::max(1, (size + GRANULE - 1) >> GRANULE_SHIFT)
}

// Bytes in use are not counted per call: statistics derive them from the heap's live
// granules minus what the thread caches hold.
#[inline(always)]
fn count_alloc(tc: Option<&mut ThreadCache>, size: usize) {
    if let Some(tc) = tc {
        let c = &tc.counters;
        bump(&c.malloc, 1);
        bump(&c.requested, size as u64);
    }
}

#[inline(always)]
fn count_free(tc: Option<&mut ThreadCache>) {
    if let Some(tc) = tc {
        bump(&tc.counters.free, 1);
    }
}

/// Allocates `size` bytes; null when the heap is exhausted or the size is impossible.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    match malloc_cached(size) {
        Some(p) => p,
        None => malloc_other(size),
    }
}

/// The fast path of `malloc`: a small block popped from this thread's cache. No call is
/// made on it, so it needs no saved registers; the rest is `malloc_other`.
#[inline(always)]
pub fn malloc_cached(size: usize) -> Option<*mut u8> {
    if size <= CLASSES * GRANULE {
        if let Some(tc) = cache::existing() {
            // malloc(0) asks for list 0, which is always empty: `malloc_other` gives it
            // one granule (two instructions less here than rounding 0 up).
            let n = (size + GRANULE - 1) >> GRANULE_SHIFT;
            let a = tc.pop(n)?;
            count_alloc(Some(tc), size);
            return Some(a as *mut u8);
        }
    }
    None
}

/// Every allocation the fast path cannot serve: a refill, a new thread's cache, larger
/// sizes.
#[inline(never)]
pub fn malloc_other(size: usize) -> *mut u8 {
    if size <= CLASSES * GRANULE {
        if let Some(tc) = cache::current() {
            let n = granules_unchecked(size);
            let Some(a) = tc.pop(n).or_else(|| tc.refill(n)) else { return ptr::null_mut() };
            count_alloc(Some(tc), size);
            return a as *mut u8;
        }
    }
    malloc_locked(size)
}

#[cold]
fn malloc_locked(size: usize) -> *mut u8 {
    let Some(n) = granules(size) else { return ptr::null_mut() };
    alloc_beyond_small(size, n).map_or(ptr::null_mut(), |(a, _)| a as *mut u8)
}

/// Allocates `n` granules (for `size` bytes) when the small-block cache cannot: from the
/// mid-size cache, else from the heap.
/// Returns the address and whether the block is known to be zero.
fn alloc_beyond_small(size: usize, n: usize) -> Option<(usize, bool)> {
    let mut tc = cache::current();
    let mut n = n;
    if n > CLASSES && n <= MID_MAX_GRANULES {
        if let Some(t) = tc.as_deref_mut() {
            if let Some(a) = t.pop_mid(n) {
                count_alloc(Some(t), size);
                return Some((a, false));
            }
            n = t.mid_missed(n);
        }
    }
    let got = HEAP.lock().alloc_maybe_zero(n);
    let (a, fresh) = got?;
    count_alloc(tc, size);
    Some((a, fresh))
}

/// Allocates `size` bytes at a multiple of `align` (a power of two).
pub fn memalign(align: usize, size: usize) -> *mut u8 {
    if align <= GRANULE {
        return malloc(size);
    }
    let Some(n) = granules(size) else { return ptr::null_mut() };
    let align_g = align >> GRANULE_SHIFT;
    if align_g > 1 << MAX_ORDER {
        return ptr::null_mut();
    }
    let got = HEAP.lock().alloc(n, align_g);
    match got {
        Some(a) => {
            let mut tc = cache::current();
            if let Some(t) = tc.as_deref_mut() {
                bump(&t.counters.memalign, 1);
            }
            count_alloc(tc, size);
            a as *mut u8
        }
        None => ptr::null_mut(),
    }
}

/// A live block found from a user pointer.
pub struct Live {
    pub arena: &'static Arena,
    pub addr: usize,
    pub g: usize,
    pub n: usize,
}

/// Reports `func`'s misuse `freed` and aborts if the live block at `addr` carries the
/// cache tag: it was freed and is parked in a thread cache.
#[inline(always)]
fn reject_if_parked(arena: &Arena, addr: usize, func: &str, freed: Misuse) {
    // SAFETY: a live block starts at `addr` (the caller measured it): its first word is
    // readable.
    let first_word = unsafe { (addr as *const u64).read_volatile() };
    if first_word == arena.cached_tag(addr) {
        report::misuse(func, freed, addr);
    }
}

/// Finds the live block that starts at `p`, or reports the misuse and aborts. Unlike
/// the free fast path it reads the block, so a block parked in a thread cache (already
/// freed) is recognised by its tag.
pub fn lookup_live(p: *mut u8, func: &str) -> Live {
    let addr = p as usize;
    let freed = if func == "free" { Misuse::DoubleFree } else { Misuse::UseAfterFree };
    let Some(arena) = heap::arena_of(addr) else {
        // Memory the heap once held and gave back to the kernel was freed.
        let kind = if heap::was_heap(addr) { freed } else { Misuse::InvalidPointer };
        report::misuse(func, kind, addr);
    };
    match arena.live_block_at(addr) {
        Ok((g, n)) => {
            let n = if n == 0 {
                let _locked = HEAP.lock();
                arena.live_end(g) - g
            } else {
                n
            };
            reject_if_parked(arena, addr, func, freed);
            Live { arena, addr, g, n }
        }
        Err(true) => report::misuse(func, Misuse::InteriorPointer, addr),
        Err(false) => report::misuse(func, freed, addr),
    }
}

/// Frees the block at `p` (null: nothing, on the slow path: a null pointer fails the
/// fast path's arena check, far below the heap). The fast path: a small block of the brk heap that
/// ends in the bitmap word where it starts or the next one, and is not the highest live
/// block, goes to the thread cache; one or two bitmap pairs are read, the block only
/// written. No call is made on that path, so it needs no saved registers; everything
/// else goes to `free_other`.
#[inline(always)]
pub fn free(p: *mut u8) {
    if let Some(tc) = cache::existing() {
        let arena = heap::brk_arena();
        if let Some((_, n)) = arena.short_block_at(p as usize) {
            count_free(Some(&mut *tc));
            tc.push(p as usize, n);
            return;
        }
    }
    free_other(p)
}

/// Frees what the fast path left: longer blocks (up to 64 KiB go to the thread cache),
/// blocks of fallback arenas, the highest live block, misuse, and everything on a CPU
/// without atomic 16-byte loads.
#[inline(never)]
fn free_other(p: *mut u8) {
    if p.is_null() {
        return;
    }
    let addr = p as usize;
    if let (Some(tc), Some(arena)) = (cache::current(), heap::arena_of(addr)) {
        // n == 0: the block reaches its chunk's end; the slow path measures it.
        if let Ok((g, n @ 1..)) = arena.live_block_at(addr) {
            if g + n != arena.hi_live() {
                if n <= CLASSES {
                    count_free(Some(&mut *tc));
                    tc.push(addr, n);
                    return;
                }
                if (MID_MIN_GRANULES..=MID_MAX_GRANULES).contains(&n) {
                    count_free(Some(&mut *tc));
                    tc.push_mid(addr, n);
                    return;
                }
            }
        }
    }
    sys::keep_errno(|| free_slow(p));
}

/// Every other free: misuse reports, large blocks, and the highest live block.
#[cold]
fn free_slow(p: *mut u8) {
    let b = lookup_live(p, "free");
    let mut tc = cache::current();
    count_free(tc.as_deref_mut());
    let mid = (MID_MIN_GRANULES..=MID_MAX_GRANULES).contains(&b.n);
    if b.n <= CLASSES || mid {
        if let Some(tc) = tc {
            if b.g + b.n != b.arena.hi_live() || !top_release_pays(b.arena, b.g) {
                if mid {
                    tc.push_mid(b.addr, b.n);
                } else {
                    tc.push(b.addr, b.n);
                }
                return;
            }
            // The highest live block, with enough free or cached memory below it that
            // the break can come down: free it for real, and everything cached (cached
            // blocks anywhere below would keep the break up).
            free_locked(b.addr, b.n, "free", Contents::Kept);
            tc.give_all_back_with_transfer(&mut HEAP.lock());
            return;
        }
    }
    free_locked(b.addr, b.n, "free", Contents::Kept);
}

/// Whether freeing the highest live block (at `g`) and the cached blocks below it would
/// make a free tail long enough to trim. Otherwise the block goes to the cache, which
/// keeps reuse LIFO.
fn top_release_pays(arena: &Arena, g: usize) -> bool {
    let _h = HEAP.lock();
    let start = arena.reclaimable_start(g);
    (arena.top() - start) << GRANULE_SHIFT >= arena.trim_threshold()
}

/// What a block being freed still holds: the program's data, or nothing (a realloc
/// copied it away and gave its whole pages back to the kernel: `copy_releasing`).
enum Contents {
    Kept,
    Released,
}

fn free_locked(addr: usize, n: usize, func: &str, contents: Contents) {
    let mut h = HEAP.lock();
    let Some(arena) = h.arena_mut(addr) else {
        report::misuse(func, Misuse::InvalidPointer, addr);
    };
    let g = arena.granule_of(addr);
    // Another thread may have freed it since the lock-free check.
    if !arena.test(Plane::Alloc, g) {
        drop(h);
        report::misuse(func, Misuse::DoubleFree, addr);
    }
    match contents {
        Contents::Kept => arena.free_block(g, n),
        Contents::Released => arena.free_block_released(g, n),
    }
}

/// Counts a call of realloc (whatever it turns into).
pub fn note_realloc() {
    if let Some(c) = cache::current().map(|tc| &tc.counters) {
        bump(&c.realloc, 1);
    }
}

/// Usable bytes of the live block at `p`.
pub fn usable_size(p: *mut u8) -> usize {
    lookup_live(p, "malloc_usable_size").n << GRANULE_SHIFT
}

/// A small block shrunk by fewer granules than this keeps its length: giving the tail
/// back would take the lock for less than a quarter of a kilobyte.
const SHRINK_MIN_GRANULES: usize = 16;

/// Resizes the block at `p` (non-null) to `size` bytes (non-zero), in place when the
/// usable size allows or the granules after it are free; moves it otherwise.
///
/// Most of an interpreter's calls are on small blocks (a string or buffer trimmed to
/// what it holds, or grown by a few bytes): those are measured without the lock, as
/// `free` measures them, and one that holds `size` and is not shrunk by
/// `SHRINK_MIN_GRANULES` or more is returned as it is, without a call.
#[inline]
pub fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    let arena = heap::brk_arena();
    // (A size past the small classes skips the look: its block is most often a larger
    // one, which this path would load and then leave to `lookup_live` to measure.)
    let small = if size <= CLASSES << GRANULE_SHIFT { arena.short_block_at(p as usize) } else { None };
    let Some((g, n)) = small else {
        let b = lookup_live(p, "realloc");
        return resize(b.addr, b.g, b.n, size);
    };
    reject_if_parked(arena, p as usize, "realloc", Misuse::UseAfterFree);
    let usable = n << GRANULE_SHIFT;
    if size <= usable && usable - size < SHRINK_MIN_GRANULES << GRANULE_SHIFT {
        return p;
    }
    resize(p as usize, g, n, size)
}

/// `realloc` of the live block of `n` granules at `addr` (granule `g`), checked not to
/// be parked in a cache: shrunk, grown in place, or moved.
fn resize(addr: usize, g: usize, n: usize, size: usize) -> *mut u8 {
    let p = addr as *mut u8;
    let Some(m) = granules(size) else { return ptr::null_mut() };
    if m <= n {
        // Shrinking gives the tail back only when it is worth a lock: a mid-size block
        // keeps its class size (see growing below), a larger one any whole granule.
        let keep = match m {
            _ if m <= CLASSES => if n - m >= SHRINK_MIN_GRANULES { m } else { n },
            _ if m <= MID_MAX_GRANULES => cache::mid_rounded(m).min(n),
            _ => m,
        };
        if keep < n {
            let mut h = HEAP.lock();
            if let Some(arena) = h.arena_mut(addr) {
                arena.shrink_in_place(g, n, keep);
            }
        }
        return p;
    }
    // A mid-size block grows to its class size: a block grown a few bytes at a time (a
    // string appended to) then needs the lock once per class step instead of once per
    // granule.
    let roomy = if m > CLASSES && m <= MID_MAX_GRANULES { cache::mid_rounded(m) } else { m };
    let grown = {
        let mut h = HEAP.lock();
        match h.arena_mut(addr) {
            Some(arena) => arena.grow_in_place(g, n, roomy) || (roomy > m && arena.grow_in_place(g, n, m)),
            None => false,
        }
    };
    if grown {
        return p;
    }
    let q = malloc(size);
    if q.is_null() {
        return q;
    }
    if n >= DISCARD_MIN_GRANULES {
        // (Every arena of the process heap, the break and the fallback mappings, lets
        // pages go back to the kernel.)
        sys::keep_errno(|| copy_releasing(addr, q as usize, n << GRANULE_SHIFT));
        // (Counted as the free it replaces.)
        count_free(cache::current());
        sys::keep_errno(|| free_locked(addr, n, "realloc", Contents::Released));
    } else {
        // SAFETY: both blocks are live and distinct; the old one holds n granules.
        unsafe { ptr::copy_nonoverlapping(addr as *const u8, q, n << GRANULE_SHIFT) };
        free(p);
    }
    q
}

/// A block a realloc moves away from gives its pages back at once from this size on
/// (glibc serves blocks from 128 KiB on with mmap and moves them with mremap).
const DISCARD_MIN_GRANULES: usize = (128 << 10) >> GRANULE_SHIFT;

/// A large block is copied in steps of this many bytes, each step's source pages given
/// back before the next: copied whole, both copies were resident at once (an array
/// doubled by realloc peaked at three times its old size: GNU ls's 2.6 MB array grown
/// to 5.3 MB cost 1 MB of peak RSS over glibc, which moves it with mremap).
const COPY_STEP: usize = 256 << 10;

/// Copies `len` bytes from the live block at `from` (which the caller then frees) to
/// the distinct live block at `to`, giving back the source's whole pages as it goes.
fn copy_releasing(from: usize, to: usize, len: usize) {
    // The source's whole pages are released up to here.
    let mut released = sys::whole_pages(from, from + len).0;
    let mut done = 0;
    while done < len {
        let step = core::cmp::min(COPY_STEP, len - done);
        // SAFETY: both ranges lie inside their blocks (len is the source's size, the
        // destination is at least as large) and the blocks are distinct.
        unsafe { ptr::copy_nonoverlapping((from + done) as *const u8, (to + done) as *mut u8, step) };
        done += step;
        // The source's whole pages copied so far: its data is dead (the block is freed
        // right after), and no other block shares a whole page inside it.
        let (_, hi) = sys::whole_pages(released, from + done);
        if hi > released {
            sys::release_pages(released, hi - released);
            released = hi;
        }
    }
}

/// Allocates zeroed memory for `count * size` bytes; null on overflow. Small blocks come
/// from the thread cache and are cleared; a larger one taken from memory the heap has
/// not handed out since the kernel gave it is zero already.
pub fn calloc(count: usize, size: usize) -> *mut u8 {
    let Some(total) = count.checked_mul(size) else { return ptr::null_mut() };
    if let Some(c) = cache::counters() {
        bump(&c.calloc, 1);
    }
    let n = match granules(total) {
        Some(n) if n > CLASSES => n,
        Some(_) => {
            let p = malloc(total);
            if !p.is_null() {
                // SAFETY: a fresh block of at least `total` bytes.
                unsafe { ptr::write_bytes(p, 0, total) };
            }
            return p;
        }
        None => return ptr::null_mut(),
    };
    let Some((a, fresh)) = alloc_beyond_small(total, n) else { return ptr::null_mut() };
    if !fresh {
        zero(a, total);
    }
    a as *mut u8
}

/// Zeroes `[addr, addr+len)`: memset for small ranges; for large ones the kernel zeroes
/// whole pages (madvise), so untouched pages stay untouched.
fn zero(addr: usize, len: usize) {
    if len >= KERNEL_ZERO_MIN {
        let (lo, hi) = sys::whole_pages(addr, addr + len);
        // SAFETY: [lo, hi) lies inside the live block we own and holds no data yet.
        if hi > lo && sys::release_pages(lo, hi - lo) && unsafe { (lo as *const u64).read_volatile() } == 0 {
            // SAFETY: the edges are inside the block.
            unsafe {
                ptr::write_bytes(addr as *mut u8, 0, lo - addr);
                ptr::write_bytes(hi as *mut u8, 0, addr + len - hi);
            }
            return;
        }
    }
    // SAFETY: the block holds at least len bytes.
    unsafe { ptr::write_bytes(addr as *mut u8, 0, len) };
}
