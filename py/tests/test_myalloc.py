"""Tests of the Python package: live statistics under the preload, the command line,
and a model-based test of the private Heap."""

import json
import subprocess
import sys

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import myalloc

MIB = 1 << 20


def run_module(*args, **kw):
    return subprocess.run([sys.executable, "-m", "myalloc", *args], capture_output=True, text=True, **kw)


# ----- the live allocator ----------------------------------------------------------

LIVE_SCRIPT = r"""
import myalloc
assert myalloc.loaded()
s0 = myalloc.stats()
buf = bytearray(10 * 1024 * 1024)
s1 = myalloc.stats()
grew = s1.bytes_in_use - s0.bytes_in_use
print("grew", grew)
for s in (s0, s1):
    d = s.as_dict()
    assert d["version"] == 1 and d["size"] == 8 * len(d), d
    for name in ("brk_extent", "held_bytes", "in_use_bytes"):
        assert d[name + "_peak"] >= d[name], (name, d)
del buf
"""


def test_stats_see_a_10_mib_bytearray():
    r = run_module("run", "--", sys.executable, "-c", LIVE_SCRIPT)
    assert r.returncode == 0, r.stderr
    grew = int(r.stdout.split()[1])
    assert grew >= 10 * MIB


def test_stats_without_the_preload_raise_not_loaded():
    assert not myalloc.loaded()
    with pytest.raises(myalloc.NotLoadedError, match="python -m myalloc run"):
        myalloc.stats()


def test_library_is_shipped_in_the_package():
    lib = myalloc.library_path()
    assert lib.is_file() and lib.name == "libmyalloc.so"
    assert lib.parent == __import__("pathlib").Path(myalloc.__file__).resolve().parent


# ----- the command line ----------------------------------------------------------------

def test_cli_info():
    r = run_module("info")
    assert r.returncode == 0
    assert f"myalloc {myalloc.__version__}" in r.stdout
    assert str(myalloc.library_path()) in r.stdout
    assert "loaded in this process: no" in r.stdout


def test_cli_run_summary_json_and_exit_code(tmp_path):
    out = tmp_path / "s.json"
    script = "import sys; x = [str(i) * 20 for i in range(100000)]; sys.exit(3)"
    r = run_module("run", "--stats", "--json", str(out), "--", sys.executable, "-c", script,
                   env={"PYTHONMALLOC": "malloc", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 3, r.stderr
    assert "myalloc: peak brk" in r.stderr and "myalloc: calls: malloc" in r.stderr
    assert "myalloc: requested_bytes_total = " in r.stderr  # --stats lists every field
    s = json.loads(out.read_text())
    assert list(s) == list(myalloc.Stats.__dataclass_fields__)
    assert s["malloc_calls"] > 100000 and s["brk_extent_peak"] > 100000 * 40


def test_cli_run_keeps_existing_preloads(tmp_path):
    script = "import os; print(os.environ['LD_PRELOAD'])"
    r = run_module("run", "--", sys.executable, "-c", script,
                   env={"LD_PRELOAD": "libdl.so.2", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(myalloc.library_path()), "libdl.so.2"]


def test_cli_run_without_command():
    assert run_module("run").returncode == 2


# ----- the private heap --------------------------------------------------------------

def test_heap_misuse_raises():
    h = myalloc.Heap(64 * 1024)
    a = h.alloc(100)
    with pytest.raises(ValueError, match="inside the block"):
        h.free(a + 16)
    with pytest.raises(ValueError, match="not in this heap"):
        h.free(12345)
    with pytest.raises(ValueError, match="outside"):
        h.read(a, h.usable_size(a) + 1)
    with pytest.raises(ValueError, match="power of two"):
        h.alloc(10, align=24)
    h.free(a)
    with pytest.raises(ValueError, match="free"):
        h.free(a)
    with pytest.raises(ValueError):
        h.realloc(a, 10)
    with pytest.raises(MemoryError):
        h.alloc(1 << 20)
    with pytest.raises(ValueError):
        myalloc.Heap(100)


def test_heap_exhaustion_is_a_memory_error_and_recoverable():
    h = myalloc.Heap(64 * 1024)
    blocks = []
    with pytest.raises(MemoryError):
        while True:
            blocks.append(h.alloc(1000))
    assert len(blocks) > 50
    for b in blocks:
        h.free(b)
    assert h.stats()["live_bytes"] == 0
    h.alloc(1000)


def test_heap_structure_view():
    h = myalloc.Heap(1 << 20)
    a = h.alloc(33 * 1024)
    kinds = {k for _, _, k in h.blocks()}
    assert kinds == {"free", "live", "metadata"}
    live = [(addr, size) for addr, size, k in h.blocks() if k == "live"]
    assert live == [(a, 33 * 1024)]  # exactly the request, not 64 KiB
    h.free(a)
    assert all(k != "live" for _, _, k in h.blocks())
    orders = h.free_blocks_by_order()
    assert all(count >= 1 for count in orders.values())


SIZES = st.integers(min_value=0, max_value=3000) | st.integers(min_value=3000, max_value=40000)


class HeapModel(RuleBasedStateMachine):
    """Random alloc/free/realloc against a dict model: no overlap, alignment, contents
    kept across realloc, statistics equal to the model's, misuse raising."""

    @initialize()
    def setup(self):
        self.heap = myalloc.Heap(512 * 1024)
        self.model = {}  # address -> (requested size, fill byte)
        self.freed = set()
        self.counter = 0

    def fill(self, addr, size):
        self.counter = (self.counter + 1) % 251
        self.heap.write(addr, bytes([self.counter]) * size)
        self.model[addr] = (size, self.counter)

    def check_contents(self, addr, size=None):
        want, byte = self.model[addr]
        n = want if size is None else min(size, want)
        assert self.heap.read(addr, n) == bytes([byte]) * n

    @rule(size=SIZES, align=st.sampled_from([16, 16, 16, 64, 4096]))
    def alloc(self, size, align):
        try:
            a = self.heap.alloc(size, align=align)
        except MemoryError:
            return
        assert a % align == 0 and a % 16 == 0
        assert a not in self.model
        assert self.heap.usable_size(a) >= max(size, 1)
        self.freed.discard(a)
        self.fill(a, size)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def free(self, data):
        a = data.draw(st.sampled_from(sorted(self.model)))
        self.check_contents(a)
        self.heap.free(a)
        del self.model[a]
        self.freed.add(a)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), size=SIZES)
    def realloc(self, data, size):
        a = data.draw(st.sampled_from(sorted(self.model)))
        old, byte = self.model[a]
        try:
            b = self.heap.realloc(a, size)
        except MemoryError:
            self.check_contents(a)
            return
        keep = min(old, size)
        assert self.heap.read(b, keep) == bytes([byte]) * keep
        del self.model[a]
        if b != a:
            self.freed.add(a)
        self.freed.discard(b)
        self.fill(b, size)

    @precondition(lambda self: self.freed)
    @rule(data=st.data())
    def double_free_raises(self, data):
        a = data.draw(st.sampled_from(sorted(self.freed)))
        if a in self.model:
            return
        try:
            self.heap.free(a)
        except ValueError:
            return
        raise AssertionError(f"freeing {a:#x} twice did not raise")

    @precondition(lambda self: self.model)
    @rule(data=st.data(), delta=st.integers(min_value=1, max_value=15))
    def interior_free_raises(self, data, delta):
        a = data.draw(st.sampled_from(sorted(self.model)))
        try:
            self.heap.free(a + delta)
        except ValueError:
            return
        raise AssertionError("freeing an interior pointer did not raise")

    @invariant()
    def no_overlap_and_stats_match(self):
        if not hasattr(self, "heap"):
            return
        spans = sorted((a, a + self.heap.usable_size(a)) for a in self.model)
        for (a0, e0), (a1, _) in zip(spans, spans[1:]):
            assert e0 <= a1, "blocks overlap"
        s = self.heap.stats()
        assert s["live_blocks"] == len(self.model)
        assert s["requested_bytes"] == sum(size for size, _ in self.model.values())
        assert s["live_bytes"] == sum(e - a for a, e in spans)
        live = sorted(a for a, _, k in self.heap.blocks() if k == "live")
        assert live == sorted(self.model)
        assert s["heap_bytes"] <= s["heap_bytes_peak"] <= s["capacity"]


TestHeapModel = HeapModel.TestCase
TestHeapModel.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
