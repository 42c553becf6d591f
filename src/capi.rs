//! The exported C allocation API: every glibc entry point, its errno conventions, and
//! the C++ operators. Each function is a thin shell over `alloc`.

use core::ffi::{c_int, c_void};
use core::ptr;

use crate::alloc;
use crate::heap::HEAP;
use crate::stats::{self, MyallocStats};
use crate::sys;

type Ptr = *mut c_void;

#[inline]
fn enomem_if_null(p: *mut u8) -> Ptr {
    if p.is_null() {
        sys::set_errno(libc::ENOMEM);
    }
    p as Ptr
}

#[no_mangle]
pub extern "C" fn malloc(size: usize) -> Ptr {
    match alloc::malloc_cached(size) {
        Some(p) => p as Ptr,
        None => malloc_other(size),
    }
}

#[inline(never)]
fn malloc_other(size: usize) -> Ptr {
    enomem_if_null(alloc::malloc_other(size))
}

#[no_mangle]
pub extern "C" fn free(p: Ptr) {
    alloc::free(p as *mut u8);
}

#[no_mangle]
pub extern "C" fn calloc(count: usize, size: usize) -> Ptr {
    enomem_if_null(alloc::calloc(count, size))
}

#[no_mangle]
pub extern "C" fn realloc(p: Ptr, size: usize) -> Ptr {
    alloc::note_realloc();
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // glibc frees and returns NULL.
        free(p);
        return ptr::null_mut();
    }
    enomem_if_null(alloc::realloc(p as *mut u8, size))
}

#[no_mangle]
pub extern "C" fn reallocarray(p: Ptr, count: usize, size: usize) -> Ptr {
    match count.checked_mul(size) {
        Some(total) => realloc(p, total),
        None => {
            sys::set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// # Safety
/// `out` must be valid for a write of one pointer (when the call succeeds).
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut Ptr, align: usize, size: usize) -> c_int {
    // (A power of two is a multiple of the pointer size from that size on.)
    if !align.is_power_of_two() || align < core::mem::size_of::<Ptr>() {
        return libc::EINVAL;
    }
    let saved = sys::errno();
    let p = alloc::memalign(align, size);
    sys::set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid pointer to store the result.
    unsafe { *out = p as Ptr };
    0
}

#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> Ptr {
    if !align.is_power_of_two() {
        sys::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    enomem_if_null(alloc::memalign(align, size))
}

#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> Ptr {
    // glibc rounds a non-power-of-two alignment up to the next power of two.
    if align > usize::MAX / 2 + 1 {
        sys::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    enomem_if_null(alloc::memalign(align.max(1).next_power_of_two(), size))
}

#[no_mangle]
pub extern "C" fn valloc(size: usize) -> Ptr {
    enomem_if_null(alloc::memalign(sys::PAGE, size))
}

#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> Ptr {
    let Some(rounded) = size.max(1).checked_add(sys::PAGE - 1) else {
        sys::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    enomem_if_null(alloc::memalign(sys::PAGE, rounded & !(sys::PAGE - 1)))
}

#[no_mangle]
pub extern "C" fn malloc_usable_size(p: Ptr) -> usize {
    if p.is_null() {
        0
    } else {
        alloc::usable_size(p as *mut u8)
    }
}

#[no_mangle]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
    let saved = sys::errno();
    let released = {
        let mut h = HEAP.lock();
        crate::cache::drain_transfer(&mut h);
        h.trim_all(pad)
    };
    sys::set_errno(saved);
    released as c_int
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Default)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (int fields).
#[repr(C)]
#[derive(Default)]
pub struct Mallinfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

#[no_mangle]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    let s = stats::gather();
    Mallinfo2 {
        arena: s.brk_extent as usize,
        ordblks: 0,
        smblks: 0,
        hblks: s.mmap_fallback_calls as usize,
        hblkhd: s.mmap_fallback_bytes as usize,
        usmblks: s.held_bytes_peak as usize,
        fsmblks: s.cached_bytes as usize,
        uordblks: s.in_use_bytes as usize,
        fordblks: (s.held_bytes.saturating_sub(s.in_use_bytes)) as usize,
        keepcost: 0,
    }
}

#[no_mangle]
pub extern "C" fn mallinfo() -> Mallinfo {
    let m = mallinfo2();
    let c = |v: usize| v.min(c_int::MAX as usize) as c_int;
    Mallinfo {
        arena: c(m.arena),
        ordblks: c(m.ordblks),
        smblks: c(m.smblks),
        hblks: c(m.hblks),
        hblkhd: c(m.hblkhd),
        usmblks: c(m.usmblks),
        fsmblks: c(m.fsmblks),
        uordblks: c(m.uordblks),
        fordblks: c(m.fordblks),
        keepcost: c(m.keepcost),
    }
}

#[no_mangle]
pub extern "C" fn malloc_stats() {
    stats::write_summary(2, &stats::gather());
}

/// Accepted and ignored: the allocator has no tunables of glibc's kind.
#[no_mangle]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    1
}

/// Fills `out` with up to `size` bytes of the statistics struct; returns the number of
/// bytes written, or -1 when `out` is null.
#[no_mangle]
pub extern "C" fn myalloc_stats_get(out: *mut MyallocStats, size: usize) -> isize {
    if out.is_null() {
        return -1;
    }
    let s = stats::gather();
    let n = size.min(core::mem::size_of::<MyallocStats>());
    // SAFETY: the caller provides `size` writable bytes at `out`.
    unsafe { ptr::copy_nonoverlapping(&s as *const MyallocStats as *const u8, out as *mut u8, n) };
    n as isize
}

// ----- glibc's internal names -------------------------------------------------------

#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> Ptr {
    malloc(size)
}
#[no_mangle]
pub extern "C" fn __libc_free(p: Ptr) {
    free(p)
}
#[no_mangle]
pub extern "C" fn __libc_calloc(count: usize, size: usize) -> Ptr {
    calloc(count, size)
}
#[no_mangle]
pub extern "C" fn __libc_realloc(p: Ptr, size: usize) -> Ptr {
    realloc(p, size)
}
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> Ptr {
    memalign(align, size)
}
#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> Ptr {
    valloc(size)
}
#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> Ptr {
    pvalloc(size)
}
/// # Safety
/// As for `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(out: *mut Ptr, align: usize, size: usize) -> c_int {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { posix_memalign(out, align, size) }
}

// ----- C++ operators ------------------------------------------------------------------
//
// Itanium C++ ABI names. A throwing `new` that cannot allocate calls the installed
// new-handler until it gives up, then throws std::bad_alloc with libstdc++'s own thrower,
// looked up at run time so the library does not depend on libstdc++. The exception must
// not unwind through a Rust frame (panic=abort frames cannot be unwound), so the four
// throwing operators are naked functions: they call `cxx_new_or_null` and, on null,
// tail-jump to the thrower with the caller's frame on top of the stack.

type NewHandler = Option<extern "C" fn()>;

/// std::__throw_bad_alloc, once looked up.
static mut CXX_THROW_BAD_ALLOC: usize = 0;

fn cxx_symbol(name: &[u8]) -> *mut c_void {
    // SAFETY: name is NUL-terminated; dlsym may allocate, which is fine outside our lock.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr() as *const libc::c_char) }
}

/// Allocates for a throwing `operator new`; on failure runs the new-handler loop and
/// returns null only when std::bad_alloc must be thrown (the thrower is then known).
extern "C" fn cxx_new_or_null(size: usize, align: usize) -> Ptr {
    let attempt = || if align <= 16 { alloc::malloc(size) } else { alloc::memalign(align, size) };
    let p = attempt();
    if !p.is_null() {
        return p as Ptr;
    }
    loop {
        let get = cxx_symbol(b"_ZSt15get_new_handlerv\0");
        if get.is_null() {
            break;
        }
        // SAFETY: std::get_new_handler() has this signature in the Itanium ABI.
        let get: extern "C" fn() -> NewHandler = unsafe { core::mem::transmute(get) };
        let Some(handler) = get() else { break };
        handler();
        let p = attempt();
        if !p.is_null() {
            return p as Ptr;
        }
    }
    let throw = cxx_symbol(b"_ZSt17__throw_bad_allocv\0");
    if throw.is_null() {
        crate::report::internal("operator new: out of memory and no std::bad_alloc to throw");
    }
    // SAFETY: a word written before the naked caller reads it, on the same thread.
    unsafe { CXX_THROW_BAD_ALLOC = throw as usize };
    ptr::null_mut()
}

macro_rules! cxx_throwing_new {
    ($name:ident, aligned) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub extern "C" fn $name(size: usize, align: usize) -> Ptr {
            core::arch::naked_asm!(
                "sub rsp, 8",
                "call {alloc}",
                "add rsp, 8",
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "jmp qword ptr [rip + {throw}]",
                alloc = sym cxx_new_or_null,
                throw = sym CXX_THROW_BAD_ALLOC,
            )
        }
    };
    ($name:ident) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub extern "C" fn $name(size: usize) -> Ptr {
            core::arch::naked_asm!(
                "xor esi, esi",
                "sub rsp, 8",
                "call {alloc}",
                "add rsp, 8",
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "jmp qword ptr [rip + {throw}]",
                alloc = sym cxx_new_or_null,
                throw = sym CXX_THROW_BAD_ALLOC,
            )
        }
    };
}

cxx_throwing_new!(_Znwm);
cxx_throwing_new!(_Znam);
cxx_throwing_new!(_ZnwmSt11align_val_t, aligned);
cxx_throwing_new!(_ZnamSt11align_val_t, aligned);

macro_rules! cxx_operators {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:expr;)*) => {
        $(
            #[no_mangle]
            pub extern "C" fn $name($($arg: $ty),*) -> $ret {
                $body
            }
        )*
    };
}

cxx_operators! {
    _ZnwmRKSt9nothrow_t(size: usize, _nt: Ptr) -> Ptr = alloc::malloc(size) as Ptr;
    _ZnamRKSt9nothrow_t(size: usize, _nt: Ptr) -> Ptr = alloc::malloc(size) as Ptr;
    _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: Ptr) -> Ptr = alloc::memalign(align, size) as Ptr;
    _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: Ptr) -> Ptr = alloc::memalign(align, size) as Ptr;
    _ZdlPv(p: Ptr) -> () = free(p);
    _ZdaPv(p: Ptr) -> () = free(p);
    _ZdlPvm(p: Ptr, _size: usize) -> () = free(p);
    _ZdaPvm(p: Ptr, _size: usize) -> () = free(p);
    _ZdlPvRKSt9nothrow_t(p: Ptr, _nt: Ptr) -> () = free(p);
    _ZdaPvRKSt9nothrow_t(p: Ptr, _nt: Ptr) -> () = free(p);
    _ZdlPvSt11align_val_t(p: Ptr, _align: usize) -> () = free(p);
    _ZdaPvSt11align_val_t(p: Ptr, _align: usize) -> () = free(p);
    _ZdlPvmSt11align_val_t(p: Ptr, _size: usize, _align: usize) -> () = free(p);
    _ZdaPvmSt11align_val_t(p: Ptr, _size: usize, _align: usize) -> () = free(p);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(p: Ptr, _align: usize, _nt: Ptr) -> () = free(p);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(p: Ptr, _align: usize, _nt: Ptr) -> () = free(p);
}
