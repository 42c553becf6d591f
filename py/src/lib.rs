//! `myalloc._native`: the live allocator's statistics, found at run time in the
//! preloaded library, and private heaps driven by the buddy core.
//!
//! This module links the buddy core only (`myalloc` without its `process` feature): it
//! exports no malloc, so it never becomes a second allocator in the process.

use std::collections::BTreeMap;

use myalloc::bitmap::{Plane, CHUNK_GRANULES, GRANULE, GRANULE_SHIFT};
use myalloc::buddy::{Arena, Source};
use myalloc_abi::{MyallocStats, FIELDS, GET_SYMBOL, VERSION};
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

type StatsGet = unsafe extern "C" fn(*mut MyallocStats, usize) -> isize;

fn stats_fn() -> Option<StatsGet> {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the process.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, GET_SYMBOL.as_ptr() as *const libc::c_char) };
    if p.is_null() {
        None
    } else {
        // SAFETY: the symbol is myalloc_stats_get, whose signature is StatsGet.
        Some(unsafe { std::mem::transmute::<*mut libc::c_void, StatsGet>(p) })
    }
}

/// Whether this process's malloc is myalloc (its statistics function is present).
#[pyfunction]
fn loaded() -> bool {
    stats_fn().is_some()
}

/// The live allocator's statistics as a tuple in struct order, or None when the
/// process does not run on myalloc.
#[pyfunction]
fn stats_raw() -> PyResult<Option<Vec<u64>>> {
    let Some(get) = stats_fn() else { return Ok(None) };
    let mut s = MyallocStats::default();
    // SAFETY: `s` is a writable struct of the size we pass.
    let n = unsafe { get(&mut s, std::mem::size_of::<MyallocStats>()) };
    if n < 16 {
        return Err(PyValueError::new_err("myalloc_stats_get returned no data"));
    }
    let filled = (n as usize / 8).min(FIELDS.len());
    Ok(Some(s.as_array()[..filled].to_vec()))
}

/// A private heap over its own mapping, run by the same buddy code as the allocator.
///
/// Addresses are plain integers; the heap checks every one it is given, so a bad
/// address, a double free or an exhausted heap raises `ValueError` or `MemoryError`.
#[pyclass(module = "myalloc")]
struct Heap {
    /// The heap proper; the mutex makes the class safe to share between threads.
    inner: std::sync::Mutex<HeapState>,
}

struct HeapState {
    arena: Arena,
    map: usize,
    map_len: usize,
    capacity: usize,
    /// Live user blocks: address -> requested size.
    live: BTreeMap<usize, usize>,
}

impl Heap {
    fn state(&self) -> std::sync::MutexGuard<'_, HeapState> {
        // A panic cannot leave the state half-updated in a way that matters more than
        // refusing all further use would, so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for HeapState {
    fn drop(&mut self) {
        // The mapping was created in `new` and nothing refers to it after drop.
        myalloc::sys::unmap(self.map, self.map_len);
    }
}

const PAGE: usize = 4096;

impl HeapState {
    fn granules(&self, size: usize) -> PyResult<usize> {
        if size > self.capacity {
            return Err(PyMemoryError::new_err(format!("{size} bytes do not fit in a {}-byte heap", self.capacity)));
        }
        Ok(size.max(1).div_ceil(GRANULE))
    }

    /// The live user block at `addr`, as (granule, granules), or the reason it is not.
    fn live_block(&self, addr: usize, what: &str) -> PyResult<(usize, usize)> {
        if self.live.contains_key(&addr) {
            let g = self.arena.granule_of(addr);
            return Ok((g, self.arena.live_end(g) - g));
        }
        let msg = if !self.arena.contains(addr) {
            format!("{what}: {addr:#x} is not in this heap")
        } else {
            let g = self.arena.granule_of(addr);
            let inside = self.live.range(..=addr).next_back().filter(|(&a, _)| {
                let ga = self.arena.granule_of(a);
                addr < self.arena.addr(self.arena.live_end(ga))
            });
            if let Some((&a, _)) = inside {
                format!("{what}: {addr:#x} is inside the block at {a:#x}, not its start")
            } else if !self.arena.test(Plane::Alloc, g) {
                format!("{what}: {addr:#x} is free (double free or never allocated)")
            } else {
                format!("{what}: {addr:#x} is not a block allocated by this heap")
            }
        };
        Err(PyValueError::new_err(msg))
    }

    fn bounds(&self, addr: usize, offset: usize, len: usize) -> PyResult<()> {
        let (_, n) = self.live_block(addr, "access")?;
        match offset.checked_add(len) {
            Some(end) if end <= n * GRANULE => Ok(()),
            _ => Err(PyValueError::new_err(format!(
                "access of {len} bytes at offset {offset} is outside the {}-byte block at {addr:#x}",
                n * GRANULE
            ))),
        }
    }
}

#[pymethods]
impl Heap {
    /// A heap of `capacity` bytes (rounded up to whole pages).
    #[new]
    #[pyo3(signature = (capacity = 1 << 20))]
    fn new(capacity: usize) -> PyResult<Self> {
        if !(PAGE..=1 << 36).contains(&capacity) {
            return Err(PyValueError::new_err("capacity must be between 4 KiB and 64 GiB"));
        }
        let capacity = capacity.div_ceil(PAGE) * PAGE;
        let limit = capacity / GRANULE;
        let dir = Arena::directory_bytes(limit).div_ceil(PAGE) * PAGE;
        let len = dir + capacity;
        let Some(map) = myalloc::sys::map_anonymous(len) else {
            return Err(PyMemoryError::new_err("cannot map the heap"));
        };
        // SAFETY: the mapping is zeroed and exclusively ours: directory first, then
        // the heap memory.
        let arena = unsafe { Arena::new(map + dir, limit, map as *mut u8, Source::Fixed { release: true }, 0x6d79_616c) };
        let state = HeapState { arena, map, map_len: len, capacity, live: BTreeMap::new() };
        Ok(Heap { inner: std::sync::Mutex::new(state) })
    }

    /// Allocates `size` bytes aligned to `align` (a power of two); returns the address.
    #[pyo3(signature = (size, align = 16))]
    fn alloc(&self, size: usize, align: usize) -> PyResult<usize> {
        let mut st = self.state();
        let this = &mut *st;
        if !align.is_power_of_two() {
            return Err(PyValueError::new_err(format!("alignment {align} is not a power of two")));
        }
        let n = this.granules(size)?;
        match this.arena.alloc(n, (align / GRANULE).max(1)) {
            Some(g) => {
                let addr = this.arena.addr(g);
                this.live.insert(addr, size);
                Ok(addr)
            }
            None => Err(PyMemoryError::new_err(format!("heap exhausted: no room for {size} bytes"))),
        }
    }

    /// Frees the block at `addr`.
    fn free(&self, addr: usize) -> PyResult<()> {
        let mut st = self.state();
        let this = &mut *st;
        let (g, n) = this.live_block(addr, "free")?;
        this.live.remove(&addr);
        this.arena.free_block(g, n);
        Ok(())
    }

    /// Resizes the block at `addr` to `size` bytes, in place when possible; returns
    /// the (possibly new) address. Contents are kept up to the smaller size.
    fn realloc(&self, addr: usize, size: usize) -> PyResult<usize> {
        let mut st = self.state();
        let this = &mut *st;
        let (g, n) = this.live_block(addr, "realloc")?;
        let m = this.granules(size)?;
        if m <= n {
            this.arena.shrink_in_place(g, n, m);
            this.live.insert(addr, size);
            return Ok(addr);
        }
        if this.arena.grow_in_place(g, n, m) {
            this.live.insert(addr, size);
            return Ok(addr);
        }
        let Some(ng) = this.arena.alloc(m, 1) else {
            return Err(PyMemoryError::new_err(format!("heap exhausted: no room for {size} bytes")));
        };
        let new = this.arena.addr(ng);
        // SAFETY: two distinct live blocks of the heap; the old one holds n granules.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, new as *mut u8, n * GRANULE) };
        this.live.remove(&addr);
        this.arena.free_block(g, n);
        this.live.insert(new, size);
        Ok(new)
    }

    /// Bytes usable in the block at `addr` (its size rounded up to 16).
    fn usable_size(&self, addr: usize) -> PyResult<usize> {
        let st = self.state();
        let this = &*st;
        Ok(this.live_block(addr, "usable_size")?.1 * GRANULE)
    }

    /// Writes `data` into the block at `addr`, `offset` bytes in.
    #[pyo3(signature = (addr, data, offset = 0))]
    fn write(&self, addr: usize, data: &[u8], offset: usize) -> PyResult<()> {
        let mut st = self.state();
        let this = &mut *st;
        this.bounds(addr, offset, data.len())?;
        // SAFETY: bounds() checked the range lies inside a live block of this heap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (addr + offset) as *mut u8, data.len()) };
        Ok(())
    }

    /// Reads `size` bytes of the block at `addr`, `offset` bytes in.
    #[pyo3(signature = (addr, size, offset = 0))]
    fn read<'py>(&self, py: Python<'py>, addr: usize, size: usize, offset: usize) -> PyResult<Bound<'py, PyBytes>> {
        let st = self.state();
        let this = &*st;
        this.bounds(addr, offset, size)?;
        // SAFETY: bounds() checked the range lies inside a live block of this heap.
        let s = unsafe { std::slice::from_raw_parts((addr + offset) as *const u8, size) };
        Ok(PyBytes::new(py, s))
    }

    /// Address of the heap's first byte.
    #[getter]
    fn base(&self) -> usize {
        let st = self.state();
        let this = &*st;
        this.arena.base
    }

    /// Bytes the heap may grow to.
    #[getter]
    fn capacity(&self) -> usize {
        let st = self.state();
        let this = &*st;
        this.capacity
    }

    /// Counters and sizes: a dict of ints.
    fn stats(&self) -> BTreeMap<&'static str, u64> {
        let st = self.state();
        let this = &*st;
        let s = &this.arena.stats;
        let top = (this.arena.top() << GRANULE_SHIFT) as u64;
        let user_granules = s.live_granules - s.meta_granules;
        let mut m = BTreeMap::new();
        m.insert("capacity", this.capacity as u64);
        m.insert("heap_bytes", top);
        m.insert("heap_bytes_peak", s.peak_top << GRANULE_SHIFT);
        m.insert("live_blocks", this.live.len() as u64);
        m.insert("live_bytes", user_granules << GRANULE_SHIFT);
        m.insert("requested_bytes", this.live.values().map(|&v| v as u64).sum());
        m.insert("metadata_bytes", s.meta_granules << GRANULE_SHIFT);
        m.insert("free_bytes", top - (s.live_granules << GRANULE_SHIFT));
        m.insert("grow_calls", s.grow_calls);
        m.insert("shrink_calls", s.shrink_calls);
        m
    }

    /// Every block below the top in address order, as (address, size, kind) with kind
    /// "free", "live" or "metadata".
    fn blocks(&self) -> Vec<(usize, usize, &'static str)> {
        let st = self.state();
        let this = &*st;
        let mut metas = Vec::new();
        this.arena.for_each_metadata(|g| metas.push(g));
        let mut out = Vec::new();
        this.arena.for_each_block(|g, n, state| {
            let kind = match state {
                0 => "free",
                _ if metas.contains(&g) => "metadata",
                _ => "live",
            };
            out.push((this.arena.addr(g), n * GRANULE, kind));
        });
        out
    }

    /// Free buddy blocks by order: {order: count}, a block of order k being 16 * 2**k
    /// bytes.
    fn free_blocks_by_order(&self) -> BTreeMap<u32, usize> {
        let st = self.state();
        let this = &*st;
        let mut m = BTreeMap::new();
        this.arena.for_each_block(|_, n, state| {
            if state == 0 {
                *m.entry(n.trailing_zeros()).or_insert(0) += 1;
            }
        });
        m
    }

    fn __repr__(&self) -> String {
        let st = self.state();
        let this = &*st;
        format!(
            "<myalloc.Heap capacity={} used={} live_blocks={}>",
            this.capacity,
            this.arena.top() << GRANULE_SHIFT,
            this.live.len()
        )
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(loaded, m)?)?;
    m.add_function(wrap_pyfunction!(stats_raw, m)?)?;
    m.add_class::<Heap>()?;
    m.add("STATS_FIELDS", FIELDS.to_vec())?;
    m.add("STATS_VERSION", VERSION)?;
    m.add("GRANULE", GRANULE)?;
    m.add("CHUNK_BYTES", CHUNK_GRANULES * GRANULE)?;
    Ok(())
}
