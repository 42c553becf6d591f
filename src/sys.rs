//! Kernel interface: every system call the allocator makes goes through this module.
//!
//! `sbrk` is called through libc by name, so a harness that interposes `sbrk`/`brk`
//! sees every byte the allocator takes from the break. Nothing here allocates.

use core::ffi::c_void;

pub const PAGE: usize = 4096;

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Calls that moved the break up / down, and madvise calls with the bytes they released.
pub static BRK_GROW_CALLS: AtomicU64 = AtomicU64::new(0);
pub static BRK_SHRINK_CALLS: AtomicU64 = AtomicU64::new(0);
pub static MADVISE_CALLS: AtomicU64 = AtomicU64::new(0);
pub static MADVISED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Moves the program break by `delta` bytes; returns the old break, or `None` if the
/// kernel (or an interposed `sbrk`) refused.
/// Whether the `sbrk` this library calls is the C library's (whose new memory the kernel
/// zeroes), not one a program defines itself.
pub fn sbrk_is_libcs() -> bool {
    // glibc's `sbrk` is a weak alias of its `__sbrk`: both names bind to one function
    // unless an object before libc in the lookup order (the program, a preloaded
    // library) defines `sbrk`. (Asking the loader which object holds `sbrk`, with
    // dladdr, walked libc's symbol table: 97,000 instructions at every start.)
    extern "C" {
        fn __sbrk(increment: libc::intptr_t) -> *mut c_void;
    }
    core::ptr::eq(libc::sbrk as *const (), __sbrk as *const ())
}

pub fn sbrk(delta: isize) -> Option<usize> {
    // SAFETY: sbrk has no memory-safety preconditions; the caller owns what it returns.
    let old = unsafe { libc::sbrk(delta as libc::intptr_t) };
    if old as isize == -1 {
        None
    } else {
        if delta > 0 {
            BRK_GROW_CALLS.fetch_add(1, Relaxed);
        } else if delta < 0 {
            BRK_SHRINK_CALLS.fetch_add(1, Relaxed);
        }
        Some(old as usize)
    }
}

/// The current program break.
pub fn current_break() -> usize {
    sbrk(0).unwrap_or(0)
}

/// Maps `len` bytes of fresh, zeroed, private anonymous memory (reserved lazily).
pub fn map_anonymous(len: usize) -> Option<usize> {
    // SAFETY: an anonymous private mapping at a kernel-chosen address aliases nothing.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p as usize)
    }
}

/// Unmaps a region obtained from [`map_anonymous`].
pub fn unmap(addr: usize, len: usize) {
    // SAFETY: the caller passes a whole mapping it owns and no longer references.
    unsafe { libc::munmap(addr as *mut c_void, len) };
}

/// The whole pages inside `[start, end)`: `(lo, hi)` with `lo` the first page boundary
/// at or after `start` and `hi` the last at or before `end` (`hi <= lo`: none).
#[inline]
pub fn whole_pages(start: usize, end: usize) -> (usize, usize) {
    ((start + PAGE - 1) & !(PAGE - 1), end & !(PAGE - 1))
}

/// Tells the kernel the pages of `[addr, addr+len)` are not needed: their frames are
/// released and they read back as zero. `addr` and `len` must be page multiples.
/// Returns false when the kernel refused (the memory then keeps its contents).
pub fn release_pages(addr: usize, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    MADVISE_CALLS.fetch_add(1, Relaxed);
    // SAFETY: the caller owns the range and holds no live data in it.
    let ok = unsafe { libc::madvise(addr as *mut c_void, len, libc::MADV_DONTNEED) == 0 };
    if ok {
        MADVISED_BYTES.fetch_add(len as u64, Relaxed);
    }
    ok
}

/// Writes all of `buf` to file descriptor `fd`, retrying on short writes.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const c_void, buf.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Opens `path` for writing, truncating; returns the fd or -1.
pub fn open_for_write(path: &core::ffi::CStr) -> i32 {
    // SAFETY: a CStr is NUL-terminated.
    unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, 0o644) }
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor we opened.
    unsafe { libc::close(fd) };
}

pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: i32) {
    // SAFETY: as in errno().
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f` and puts `errno` back as it was: for paths that may make system calls on
/// behalf of a function that must not change errno (`free`).
#[inline]
pub fn keep_errno<R>(f: impl FnOnce() -> R) -> R {
    let saved = errno();
    let r = f();
    set_errno(saved);
    r
}

/// Ends the process with SIGABRT.
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions and does not return.
    unsafe { libc::abort() }
}

/// Reads an environment variable without allocating; `name` is NUL-terminated.
pub fn getenv(name: &[u8]) -> *const libc::c_char {
    // SAFETY: name is NUL-terminated; getenv only reads the environment.
    unsafe { libc::getenv(name.as_ptr() as *const libc::c_char) }
}

/// Blocks while `*word == expected` (futex wait, private).
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: word is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        )
    };
}

/// Wakes one waiter on `word`.
pub fn futex_wake_one(word: &core::sync::atomic::AtomicU32) {
    // SAFETY: word is a valid, aligned u32.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1) };
}

/// Whether an aligned 16-byte load is atomic on this CPU (see `load_pair_atomic`).
static ATOMIC_LOAD16: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Checks the CPU once (at heap initialisation): Intel and AMD guarantee that aligned
/// 16-byte SSE loads are atomic on every processor that supports AVX.
pub fn detect_cpu() {
    #[cfg(target_arch = "x86_64")]
    {
        let ecx = core::arch::x86_64::__cpuid(1).ecx;
        ATOMIC_LOAD16.store(ecx & (1 << 28) != 0, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether `load_pair_atomic` may be used on this CPU (known after `detect_cpu`).
#[inline(always)]
pub fn pair_loads_atomic() -> bool {
    ATOMIC_LOAD16.load(core::sync::atomic::Ordering::Relaxed)
}

/// Loads the two words at `p` as one atomic access.
///
/// # Safety
/// `p` is a valid, 16-byte aligned pair of words and `pair_loads_atomic()` is true.
#[inline(always)]
pub unsafe fn load_pair_atomic(p: *const u64) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        let (lo, hi): (u64, u64);
        // SAFETY: movdqa is a single 16-byte load, atomic on this CPU (the caller's
        // contract, from detect_cpu), and like every x86 load it is ordered after
        // earlier loads (acquire).
        unsafe {
            core::arch::asm!(
                "movdqa {x}, xmmword ptr [{p}]",
                "movq {lo}, {x}",
                "pextrq {hi}, {x}, 1",
                p = in(reg) p,
                x = out(xmm_reg) _,
                lo = out(reg) lo,
                hi = out(reg) hi,
                options(nostack, readonly, preserves_flags),
            );
        }
        (lo, hi)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = p;
        unreachable!("pair_loads_atomic() is never true here")
    }
}

/// Asks the CPU to bring the line at `p` into the cache: a hint that never faults, on
/// any address (null included), and changes no memory.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch reads nothing architecturally and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
