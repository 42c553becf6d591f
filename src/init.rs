//! Process-level hooks: a load-time constructor (environment, thread-exit key, fork
//! handlers) and an exit-time destructor (statistics report).
//!
//! The heap itself initialises lazily on first use, because ld.so may call malloc before
//! any constructor runs; these hooks only add what needs libc to be up.

use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicBool, Ordering::*};

use crate::cache::ThreadCache;
use crate::heap::HEAP;
use crate::{cache, stats, sys};

static KEY_READY: AtomicBool = AtomicBool::new(false);
static mut KEY: libc::pthread_key_t = 0;
static PRINT_STATS: AtomicBool = AtomicBool::new(false);
/// A private copy of stderr for the exit report: programs such as coreutils close
/// stderr before exiting.
static mut REPORT_FD: i32 = 2;
static mut STATS_FILE: [u8; 4096] = [0; 4096];

/// Ties a new thread cache to the thread-exit key, so that it is returned when the
/// thread ends.
pub fn register_thread_cache(tc: &ThreadCache) {
    if KEY_READY.load(Acquire) {
        // SAFETY: KEY was created before KEY_READY was set; setspecific for a small key
        // index does not allocate (it stores the address, which `thread_exit` gets back).
        unsafe { libc::pthread_setspecific(KEY, tc as *const ThreadCache as *const c_void) };
    }
}

extern "C" fn thread_exit(tc: *mut c_void) {
    // SAFETY: the key's value is the exiting thread's own cache.
    unsafe { cache::retire(tc as *mut cache::ThreadCache) };
}

extern "C" fn before_fork() {
    HEAP.raw_lock();
}

extern "C" fn after_fork_parent() {
    // SAFETY: taken in before_fork by this thread.
    unsafe { HEAP.raw_unlock() };
}

extern "C" fn after_fork_child() {
    // SAFETY: only this thread exists in the child; the lock was held across fork by the
    // thread that is now the child's only one.
    unsafe { HEAP.reset_after_fork() };
    let mut h = HEAP.lock();
    cache::reclaim_after_fork(&mut h);
}

/// Runs when the library is loaded (after libc is initialised).
pub extern "C" fn on_load() {
    let env = sys::getenv(b"MYALLOC_STATS\0");
    // SAFETY: getenv returns null or a NUL-terminated string.
    if !env.is_null() && unsafe { *env } != 0 && unsafe { *env } != b'0' as c_char {
        PRINT_STATS.store(true, Relaxed);
        // SAFETY: duplicating a descriptor; REPORT_FD is written once, here.
        unsafe {
            let fd = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 64);
            if fd >= 0 {
                REPORT_FD = fd;
            }
        }
    }
    let file = sys::getenv(b"MYALLOC_STATS_FILE\0");
    if !file.is_null() {
        // SAFETY: copy the NUL-terminated path into our buffer, truncating to fit.
        unsafe {
            let buf = &mut *core::ptr::addr_of_mut!(STATS_FILE);
            let mut i = 0;
            while i + 1 < buf.len() && *file.add(i) != 0 {
                buf[i] = *file.add(i) as u8;
                i += 1;
            }
            buf[i] = 0;
        }
    }
    // SAFETY: plain libc registration calls; they may allocate, which the allocator
    // handles because the heap initialises lazily and the lock is not held here.
    unsafe {
        if libc::pthread_key_create(core::ptr::addr_of_mut!(KEY), Some(thread_exit)) == 0 {
            KEY_READY.store(true, Release);
        }
        libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child));
    }
}

/// Runs at exit: checks the exiting thread's cache for double frees, then the
/// statistics report, if asked for.
pub extern "C" fn on_exit() {
    cache::verify_current();
    // SAFETY: STATS_FILE is written once at load time.
    let path = unsafe { &*core::ptr::addr_of!(STATS_FILE) };
    let want_file = path[0] != 0;
    if !PRINT_STATS.load(Relaxed) && !want_file {
        return;
    }
    let s = stats::gather();
    if PRINT_STATS.load(Relaxed) {
        // SAFETY: REPORT_FD is only written at load time.
        stats::write_summary(unsafe { REPORT_FD }, &s);
    }
    if want_file {
        let mut expanded = [0u8; 4096 + 24];
        let fd = sys::open_for_write(expand_pid(path, &mut expanded));
        if fd >= 0 {
            stats::write_json(fd, &s);
            sys::close(fd);
        }
    }
}

/// `path` (NUL-terminated) with every `%p` replaced by the process id, so that each
/// process of a command that forks can keep its own statistics file.
fn expand_pid<'a>(path: &[u8], out: &'a mut [u8]) -> &'a CStr {
    // SAFETY: getpid has no preconditions.
    let mut pid = [0u8; 20];
    let mut digits = crate::report::Line::new();
    digits.dec(unsafe { libc::getpid() } as u64);
    let d = digits.as_bytes();
    pid[..d.len()].copy_from_slice(d);
    let mut o = 0;
    let mut i = 0;
    while i < path.len() && path[i] != 0 && o + d.len() + 1 < out.len() {
        if path[i] == b'%' && path.get(i + 1) == Some(&b'p') {
            out[o..o + d.len()].copy_from_slice(&pid[..d.len()]);
            o += d.len();
            i += 2;
        } else {
            out[o] = path[i];
            o += 1;
            i += 1;
        }
    }
    out[o] = 0;
    // SAFETY: `out[o]` is the first NUL: the bytes before it are `path`'s (up to its
    // first NUL) and the pid's digits.
    unsafe { CStr::from_bytes_with_nul_unchecked(&out[..=o]) }
}

#[cfg(not(test))]
mod hooks {
    #[used]
    #[link_section = ".init_array"]
    static ON_LOAD: extern "C" fn() = super::on_load;

    #[used]
    #[link_section = ".fini_array"]
    static ON_EXIT: extern "C" fn() = super::on_exit;
}
