"""Instructions per malloc/free pair: a speed figure the machine's load cannot move.

Wall times on a shared machine swing by 2x between runs; the number of instructions
a pattern executes under an allocator does not.  `valgrind --tool=cachegrind`
counts them (no cache simulation: only the count).  Each pattern runs twice, with
P and 2P pairs, and the figure is the difference divided by P: the program's
start-up, the filling of its live slots and the freeing of them at the end cancel
out, what is left is one steady pair (the program's own work plus one free and one
malloc, with the allocator's refills, flushes and trims spread over the pairs).  P
is several times the live count: freeing everything at the end costs more after a
longer churn until the heap's layout has settled (`small` counted 259 a pair with
P = 100,000, 192 and 189 from 200,000 on), and rare events (a trim, a purge) need
many pairs to average out (`mixed` swung between 395 and 647 below 640,000).

The count matters because churn's loops wait on cache misses whose overlap depends
on the CPU's out-of-order window: every instruction the allocator adds to a pair
takes a slot of it.  `floor.c` (the least an allocator can do) is counted as a
reference, and once more with `FREE_PADDING` instructions added to its `free`,
which calibrates that: the padding executes nothing, yet the README measures what
it costs in time.

Valgrind gives a program a break (brk) segment of 8 MB; past it myalloc would
continue in mmap fallback arenas, whose `free` takes another path.  Every run
therefore preloads `speed/sbrk_shim.c` first, whose `sbrk` serves the break from a
reserved mapping (allocators that call the kernel's brk directly, glibc's, still
meet the limit and continue in mappings), and a myalloc run that reports a fallback
anyway is refused.
"""
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from measure import MeasureError, build_helper, clean_env

BENCH_DIR = Path(__file__).resolve().parent
FLOOR_SRC = BENCH_DIR / "speed" / "floor.c"

#: Instructions of padding in the calibration build of floor.c.
FLOOR_PADDING = 40

SHIM_SRC = BENCH_DIR / "speed" / "sbrk_shim.c"

#: name, churn arguments, P (pairs of the shorter run), description.
PATTERNS = [
    ("small", ["small", "--live", "100000"], 800_000,
     "the issue's pattern: 100,000 live blocks of 8-256 B"),
    ("mixed", ["mixed", "--live", "10000"], 640_000,
     "10,000 live blocks of 8 B-64 KiB (log-uniform)"),
    ("scale-1", ["scale-1", "--live", "20000"], 320_000,
     "the small pattern on 20,000 live blocks (they stay in cache)"),
    ("mixed-300", ["mixed", "--live", "300"], 200_000,
     "mixed sizes on 300 live blocks: a 5 MB heap, whose thread cache may hold 1 MiB"),
]

#: Quick runs count with P divided by this (the figures move by a few %).
QUICK_DIVISOR = 4

#: Patterns not counted under floor: it never reuses a block of 4 KiB or more (a bump
#: pointer), so a long `mixed` run exhausts its 4 GiB reservation.
FLOOR_SKIPS = {"mixed"}

_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")
_FALLBACK = re.compile(r"mmap fallback (\d+)")


def valgrind():
    """Path of valgrind, or None."""
    return shutil.which("valgrind")


def floor_libs(cache_dir):
    """Builds floor.so and its padded twin; returns {name: path}."""
    out = {}
    for name, pad in (("floor", 0), (f"floor+{FLOOR_PADDING}", FLOOR_PADDING)):
        out[name] = build_helper(
            f"floor-pad{pad}", cache_dir, source=FLOOR_SRC,
            flags=("-fno-builtin", "-shared", "-fPIC", f"-DFREE_PADDING={pad}"))
    return out


def shim_lib(cache_dir):
    """Builds the sbrk shim (see the module's text)."""
    return build_helper("sbrk-shim", cache_dir, source=SHIM_SRC, flags=("-shared", "-fPIC"))


@dataclass
class Count:
    """One pattern under one library: total instructions of the P- and 2P-pair runs."""
    pattern: str
    library: str
    pairs: int
    short: int = 0
    long: int = 0
    output: str = ""
    error: str = ""

    @property
    def per_pair(self):
        return (self.long - self.short) / self.pairs if not self.error else None


def run_counted(tool, churn, args, pairs, lib, shim, timeout):
    """Total instructions of one churn run under valgrind, its first output line and
    the number of mmap fallbacks myalloc reported (None if it reported nothing)."""
    env = clean_env({"MYALLOC_STATS": "1"})
    preload = [str(x) for x in (shim, lib) if x]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    argv = [tool, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            str(churn)] + args + ["--pairs", str(pairs)]
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeasureError(f"{' '.join(argv)}: no result in {timeout:.0f} s") from None
    m = _IREFS.search(p.stderr)
    if p.returncode != 0 or not m:
        tail = " | ".join(p.stderr.strip().splitlines()[-3:])
        raise MeasureError(f"valgrind run failed (status {p.returncode}): {tail}")
    fb = _FALLBACK.search(p.stderr)
    line = (p.stdout.strip().splitlines() or [""])[0]
    return int(m.group(1).replace(",", "")), line, int(fb.group(1)) if fb else None


def count(tool, churn, pattern, args, pairs, name, lib, shim=None, timeout=900):
    """Counts one pattern under one library (lib None: glibc), with the sbrk shim
    preloaded first when given."""
    c = Count(pattern, name, pairs)
    try:
        c.short, _, fb1 = run_counted(tool, churn, args, pairs, lib, shim, timeout)
        c.long, c.output, fb2 = run_counted(tool, churn, args, 2 * pairs, lib, shim, timeout)
    except MeasureError as exc:
        c.error = str(exc)
        return c
    if (fb1 or 0) + (fb2 or 0):
        c.error = ("myalloc left the break for an mmap fallback arena under valgrind "
                   "(its 8 MB break segment): not the path being measured")
    elif c.long <= c.short:
        c.error = f"the longer run counted fewer instructions ({c.long} <= {c.short})"
    return c


@dataclass
class Table:
    """Counts of every pattern under every library, in the order they were given."""
    libraries: list
    patterns: list                                  # [(name, description)]
    counts: dict = field(default_factory=dict)      # (pattern, library) -> Count

    def rows(self):
        return [(name, desc) for name, desc in self.patterns
                if any(p == name for p, _ in self.counts)]


def measure_all(churn, libraries, cache_dir, progress=None, patterns=PATTERNS, quick=False):
    """libraries: [(name, path or None)], glibc first.  Adds floor and its padded
    twin.  Returns a Table; a run whose output differs from glibc's is an error."""
    tool = valgrind()
    if not tool:
        raise MeasureError("valgrind is not installed")
    libs = list(libraries) + list(floor_libs(cache_dir).items())
    shim = shim_lib(cache_dir)
    table = Table([name for name, _ in libs], [(name, desc) for name, _, _, desc in patterns])
    for pattern, args, pairs, _ in patterns:
        pairs = max(1, pairs // QUICK_DIVISOR) if quick else pairs
        reference = None
        for name, lib in libs:
            if name.startswith("floor") and pattern in FLOOR_SKIPS:
                if progress:
                    progress.step(f"instructions: {pattern} / {name} (not counted)")
                continue
            if progress:
                progress.set_label(f"instructions: {pattern} / {name}")
            c = count(tool, churn, pattern, args, pairs, name, lib, shim)
            if not c.error:
                if reference is None:
                    reference = c.output
                elif c.output != reference:
                    c.error = f"output {c.output!r} differs from {reference!r}"
            table.counts[(pattern, name)] = c
            if progress:
                progress.step(f"instructions: {pattern} / {name}")
    return table


def to_json(table):
    return {"libraries": table.libraries, "padding": FLOOR_PADDING,
            "patterns": [{"name": n, "description": d} for n, d in table.rows()],
            "counts": [{"pattern": c.pattern, "library": c.library, "pairs": c.pairs,
                        "instructions_short": c.short, "instructions_long": c.long,
                        "per_pair": c.per_pair, "error": c.error or None}
                       for c in table.counts.values()]}
