//! Fatal reports: one line on stderr that starts with `myalloc:`, then SIGABRT.
//! Formatting is done by hand into a stack buffer: nothing here allocates.

use crate::sys;

/// A fixed-capacity line buffer.
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    pub const fn new() -> Line {
        Line { buf: [0; 256], len: 0 }
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    pub fn hex(&mut self, v: usize) -> &mut Self {
        self.str("0x").digits(v as u64, 16)
    }

    pub fn dec(&mut self, v: u64) -> &mut Self {
        self.digits(v, 10)
    }

    fn digits(&mut self, v: u64, base: u64) -> &mut Self {
        let mut buf = [0u8; 20];
        let mut n = buf.len();
        let mut x = v;
        loop {
            n -= 1;
            buf[n] = b"0123456789abcdef"[(x % base) as usize];
            x /= base;
            if x == 0 {
                break;
            }
        }
        for &b in &buf[n..] {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn write_to(&self, fd: i32) {
        sys::write_all(fd, self.as_bytes());
    }
}

/// Kinds of heap misuse the allocator detects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Misuse {
    DoubleFree,
    UseAfterFree,
    InteriorPointer,
    InvalidPointer,
    /// Found when a cached block is reused or returned: its tag is gone, so it was freed
    /// twice (and handed out once since) or written to after it was freed.
    FreedBlockChanged,
}

impl Misuse {
    fn text(self) -> &'static str {
        match self {
            Misuse::DoubleFree => "double free of ",
            Misuse::UseAfterFree => "use after free: block already freed at ",
            Misuse::InteriorPointer => "interior pointer ",
            Misuse::InvalidPointer => "invalid pointer ",
            Misuse::FreedBlockChanged => "double free or write after free of ",
        }
    }
}

/// Reports misuse of `addr` by `func` and aborts.
#[cold]
pub fn misuse(func: &str, kind: Misuse, addr: usize) -> ! {
    let mut l = Line::new();
    l.str("myalloc: ").str(func).str("(): ").str(kind.text()).hex(addr);
    match kind {
        Misuse::InvalidPointer => {
            l.str(" (not allocated by myalloc)");
        }
        Misuse::InteriorPointer => {
            l.str(" (not the start of a block)");
        }
        _ => {}
    }
    l.str("\n");
    l.write_to(2);
    sys::abort()
}

/// An internal invariant failed: report and abort.
#[cold]
pub fn internal(what: &str) -> ! {
    let mut l = Line::new();
    l.str("myalloc: internal error: ").str(what).str("\n");
    l.write_to(2);
    sys::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hex_and_decimal() {
        let mut l = Line::new();
        l.str("a ").hex(0xdead_beef).str(" ").dec(0).str(" ").dec(18_446_744_073_709_551_615);
        assert_eq!(l.as_bytes(), b"a 0xdeadbeef 0 18446744073709551615");
    }
}
