"""Tests of the benchmark suite (bench/), not of the allocator.

1. The measurement: bench/brkmove.c moves the program break and its
   anonymous mappings by known amounts; the suite's strace code
   (bench/measure.py) must report exactly those amounts, and the C launcher
   must report the program's own peak RSS (not this Python process's).
   strace is required: without it these tests FAIL and say how to install it.
2. The reports: from the fixed sample data in
   bench/fixtures/sample-results.json, bench/report.py must write the
   terminal table, results.json, the CSVs, REPORT.md and chart.png with the
   expected figures (ratios, geometric means, best marks, failures).
3. The speed benchmark: bench/speed/churn.c in its --check mode (every
   block filled and verified) for every pattern, under glibc and under
   myalloc, with identical output lines; bench/speed_report.py's medians and
   ratios from fixed data; the runner's output check against glibc.

Fast (a few seconds): tiny C programs and two matplotlib charts.
"""

import csv
import importlib.util
import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH_DIR))

import measure  # noqa: E402
import report  # noqa: E402
import workloads  # noqa: E402

MiB = 1 << 20
KiB = 1 << 10
FIXTURE = BENCH_DIR / "fixtures" / "sample-results.json"


def require_strace():
    if not shutil.which("strace"):
        pytest.fail("strace is not installed: the benchmark's peak-brk measurement needs it. "
                    "Install it with `make test-deps` or `bench/install-peers.sh` (as root), "
                    "or `apt-get install strace`.", pytrace=False)
    return measure.find_strace()


@pytest.fixture(scope="module")
def helpers(tmp_path_factory):
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.fail("gcc is needed to build bench/brkmove.c and bench/launch.c", pytrace=False)
    cache = tmp_path_factory.mktemp("bench-cache")
    return {"brkmove": measure.build_helper("brkmove", cache),
            "launch": measure.build_helper("launch", cache)}


# --------------------------------------------------------------------------
# 1. measurement
# --------------------------------------------------------------------------

def test_strace_peak_brk_is_exact(helpers, tmp_path):
    strace = require_strace()
    rd = measure.RunDir(tmp_path / "run")
    res = measure.traced_run(measure.Command([helpers["brkmove"]]), None, rd, strace, 60)
    assert res.error is None, res.error
    assert rd.stdout.read_text() == "brkmove ok\n"
    t = res.trace
    # +1 MiB, +3 MiB, -2 MiB, +512 KiB: the break peaks 4 MiB above its start.
    assert t.peak_brk == 4 * MiB
    assert t.peak_brk_main == 4 * MiB
    assert t.processes == 1
    (img,) = t.images
    assert img.main and img.command.startswith("brkmove")
    assert img.brk_extent == 2 * MiB + 512 * KiB
    # 8 MiB mapped, a hole punched, the head unmapped, the 4 MiB tail grown to
    # 12 MiB by mremap (the peak), then unmapped; file and shared mappings do
    # not count.  The loader's own mappings are the same at peak and at exit.
    assert img.peak_held - img.held == 12 * MiB
    assert img.peak_held >= 2 * MiB + 512 * KiB + 12 * MiB
    assert t.peak_held == img.peak_held


def test_strace_sees_preloaded_children(helpers, tmp_path):
    """A workload that starts a child: per-process figures, and the child's
    exec gives it a fresh image (its peak is not mixed with the parent's)."""
    strace = require_strace()
    rd = measure.RunDir(tmp_path / "run")
    cmd = measure.Command([helpers["launch"], tmp_path / "r.txt", "--", helpers["brkmove"]])
    res = measure.traced_run(cmd, None, rd, strace, 60)
    assert res.error is None, res.error
    t = res.trace
    assert t.processes == 2
    assert t.peak_brk == 4 * MiB
    assert t.peak_brk_command.startswith("brkmove")
    assert t.peak_brk_main < 1 * MiB      # the launcher itself barely uses the heap


def test_launcher_reports_the_programs_own_rss(helpers, tmp_path):
    rd = measure.RunDir(tmp_path / "run")
    res = measure.timed_run(measure.Command([helpers["brkmove"]]), None, rd,
                            helpers["launch"], 60)
    assert res.error is None, res.error
    # brkmove touches 4 MiB of break (2.5 MiB left) and then 12 MiB of mapping.
    assert res.maxrss_kib * KiB >= 14 * MiB
    # A child forked from this pytest process would start from pytest's RSS.
    assert res.maxrss_kib * KiB < 24 * MiB
    assert res.wall_s > 0 and res.status == 0
    assert res.output_sha256 == measure.hash_outputs(rd)


def test_launcher_passes_exit_status(helpers, tmp_path):
    rd = measure.RunDir(tmp_path / "run")
    res = measure.timed_run(measure.Command(["sh", "-c", "exit 3"]), None, rd,
                            helpers["launch"], 60)
    assert res.status == 3 and res.error and res.output_sha256 is None


def test_trace_parser_threads_exec_and_split_calls():
    """Synthetic strace -f output: a thread's calls belong to its process
    (even when printed before its clone returns), unfinished/resumed halves
    join, failed calls change nothing, MAP_FIXED replaces, mremap moves."""
    lines = """\
100 execve("/usr/bin/prog", ["prog"], 0x7ffd /* 3 vars */) = 0
100 brk(NULL)                   = 0x10000000
100 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000
100 brk(0x10100000 <unfinished ...>
101 brk(0x10300000)             = 0x10300000
100 <... brk resumed>)          = 0x10100000
100 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, exit_signal=0}, 88) = 101
101 mmap(NULL, 1048576, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000100000
101 mmap(0x7f0000100000, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED, 3, 0) = 0x7f0000100000
100 mmap(NULL, 1073741824, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)
100 mremap(0x7f0000000000, 8192, 65536, MREMAP_MAYMOVE) = 0x7f0000200000
100 brk(0x10000000)             = 0x10000000
100 vfork( <unfinished ...>
102 execve("/nonexistent/child", ["child"], 0x1 /* 3 vars */) = -1 ENOENT (No such file or directory)
102 execve("/usr/bin/child", ["child"], 0x1 /* 3 vars */ <unfinished ...>
100 <... vfork resumed>)          = 102
102 <... execve resumed>)       = 0
102 brk(NULL)                   = 0x20000000
102 brk(0x20500000)             = 0x20500000
--- SIGCHLD {si_signo=SIGCHLD} ---
100 munmap(0x7f0000200000, 65536) = 0
+++ exited with 0 +++
""".splitlines(True)
    t = measure.parse_trace(lines)
    prog, child = t.images
    assert (prog.command, child.command) == ("prog", "child")
    assert prog.main and not child.main
    assert prog.peak_brk == 0x300000           # the thread's brk counts for its process
    assert child.peak_brk == 0x500000
    assert t.peak_brk == 0x500000 and t.peak_brk_command == "child"
    assert t.peak_brk_main == 0x300000
    assert t.processes == 2
    # held peak of prog: the thread's 3 MiB break + 8 KiB mapping (the break
    # is back to 1 MiB when the thread maps 1 MiB; the failed 1 GiB mmap is
    # ignored); then 4 KiB of the 1 MiB is replaced by a file mapping.
    assert prog.peak_held == 0x300000 + 8192
    assert prog.held == 1048576 - 4096          # break back to start, mremap'd block unmapped


def test_range_set_split_and_merge():
    rs = measure.RangeSet()
    rs.add(0, 100)
    assert rs.remove(20, 30) == 10 and rs.total == 90
    rs.add(25, 200)
    assert rs.total == 20 + 175 and rs.covered(0, 1000) == 195
    assert rs.remove(0, 1000) == 195 and rs.total == 0 and not rs.starts


def test_every_allocator_runs_with_an_environment_of_one_size(tmp_path):
    # The same library under two allocator names, from paths of different
    # lengths, once gave py-json a 2.8 % higher peak break (the interpreter's
    # allocations shift with its environment): library snapshots and run
    # folders must not depend on either.
    import allocators
    short, long_ = tmp_path / "a.so", tmp_path / "a-much-longer-library-name.so"
    short.write_bytes(b"one build")
    long_.write_bytes(b"another build")
    cache = tmp_path / "cache"
    snaps = [allocators.snapshot(str(p), cache) for p in (short, long_)]
    assert snaps[0] != snaps[1] and len(snaps[0]) == len(snaps[1])
    assert Path(snaps[1]).read_bytes() == b"another build"
    slugs = [measure.run_slug(n) for n in ("myalloc", "x", "jemalloc-5.3-local")]
    assert len(set(slugs)) == 3 and len({len(s) for s in slugs}) == 1
    # glibc's runs (no preload) get a stand-in as long as LD_PRELOAD=<snapshot>.
    found = [allocators.Allocator(name, lib, "", "")
             for name, lib in (("glibc", None), ("a", snaps[0]), ("b", snaps[1]))]
    assert allocators.preload_width(found) == len(snaps[0])
    [(var, value)] = measure.preload_stand_in(None, len(snaps[0])).items()
    assert len(f"{var}={value}") == len(f"LD_PRELOAD={snaps[0]}")
    assert measure.preload_stand_in(snaps[0], len(snaps[0])) == {}


def test_workload_selection():
    ws = [workloads.Workload(n, g, "", measure.Command(["true"]), base=b)
          for n, g, b in (("py-json/pymalloc", "python", "py-json"),
                          ("py-json/malloc", "python", "py-json"),
                          ("gcc", "cli", "gcc"))]
    names = lambda sel: [w.name for w in sel]  # noqa: E731
    assert names(workloads.select(ws, "py-json")) == ["py-json/pymalloc", "py-json/malloc"]
    assert names(workloads.select(ws, "py-json/malloc,gcc")) == ["py-json/malloc", "gcc"]
    assert names(workloads.select(ws, "cli")) == ["gcc"]
    with pytest.raises(SystemExit):
        workloads.select(ws, "nope")


# --------------------------------------------------------------------------
# 2. reports from fixed data
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    return json.loads(FIXTURE.read_text())


def test_summary_figures(sample):
    rows = {(r["workload"], r["allocator"]): r for r in report.summarize(sample)}
    assert len(rows) == 9
    r = rows[("py-json/pymalloc", "glibc")]
    assert r["time_median_s"] == pytest.approx(1.1)
    assert (r["time_min_s"], r["time_max_s"], r["time_reps"]) == (1.0, 1.2, 3)
    assert r["rss_median_bytes"] == 40980 * 1024
    g = rows[("gcc", "myalloc")]
    assert g["peak_brk"] == 40 * MiB and g["peak_brk_main"] == 256 * KiB
    assert g["myalloc_brk_diff"] == 4096
    assert rows[("py-json/pymalloc", "myalloc")]["myalloc_brk_diff"] == 0
    f = rows[("sort", "jemalloc")]
    assert f["status"] == "FAIL" and "differs" in f["reason"] and f["time_median_s"] is None


def test_ratio_tables(sample):
    tables = {t["key"]: t for t in report.build_tables(sample)}
    time_t = tables["time"]
    json_row = time_t["rows"][0]
    assert json_row["ratios"]["myalloc"] == pytest.approx(1.0 / 1.1)
    assert json_row["best"] == "myalloc"
    # myalloc: 1/1.1, 2.2/2.0, 0.5/1.0 -> geometric mean 0.5 ** (1/3)
    assert time_t["geomean"]["myalloc"] == pytest.approx(0.5 ** (1 / 3))
    assert time_t["geomean"]["jemalloc"] == pytest.approx((1.21 / 1.1 * 0.9) ** 0.5)
    assert time_t["geomean_counts"]["jemalloc"] == 2      # sort failed
    assert time_t["geomean_best"] == "myalloc"
    brk = tables["brk"]
    assert brk["rows"][0]["values"]["jemalloc"] == 0
    assert brk["geomean"]["jemalloc"] is None               # never calls brk: not averaged
    assert brk["rows"][0]["best"] == "myalloc"              # 0 is not ranked


def test_terminal_table(sample):
    text = report.terminal_report(sample)
    lines = text.splitlines()
    time_block = lines[lines.index(next(l for l in lines if l.startswith("Wall time"))):]
    gm = next(l for l in time_block if "geometric mean" in l)
    assert gm.split()[2:] == ["1.00", "0.79*", "0.99", "(2/3)"]
    json_line = next(l for l in time_block if l.strip().startswith("py-json/pymalloc"))
    assert json_line.split()[1:] == ["1.100", "s", "0.91*", "1.10"]
    assert "no brk" in text
    assert "FAIL" in text and "sort under jemalloc" in text
    assert "largest difference over all: 4096 bytes" in text


def test_report_files(sample, tmp_path):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.fail("matplotlib is missing: `pip install -r bench/requirements.txt` "
                    "(make test-deps installs it)", pytrace=False)
    text = report.write_all(json.loads(FIXTURE.read_text()), tmp_path)
    assert "geometric mean" in text

    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["summary"]) == 9 and len(data["runs"]) == len(sample["runs"])

    with open(tmp_path / "measurements.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(sample["runs"])
    assert rows[0]["workload"] == "py-json/pymalloc" and rows[0]["phase"] == "trace"
    with open(tmp_path / "summary.csv") as f:
        srows = list(csv.DictReader(f))
    assert len(srows) == 9
    gcc_my = next(r for r in srows if r["workload"] == "gcc" and r["allocator"] == "myalloc")
    assert float(gcc_my["time_median_s"]) == pytest.approx(2.2)
    assert int(gcc_my["peak_brk"]) == 40 * MiB

    md = (tmp_path / "REPORT.md").read_text()
    assert "![chart](chart.png)" in md
    assert "Sample CPU 9000" in md and "glibc 2.36" in md and "0123456789ab" in md
    assert "libjemalloc2:amd64 5.3.0-1" in md
    assert "| py-json/pymalloc | 1.100 s | **0.91** | 1.10 |" in md
    assert "**sort** under **jemalloc**" in md
    assert "skipped tcmalloc" in md

    png = (tmp_path / "chart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1200 and height >= 300
    assert len(png) > 20_000


# --------------------------------------------------------------------------
# 3. the speed benchmark (bench/speed.py, bench/speed/churn.c, bench/speed_report.py)
# --------------------------------------------------------------------------

import speed  # noqa: E402
import speed_report  # noqa: E402

SPEED_PATTERNS = [name for name, _, _, _ in speed.C_PATTERNS]


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.fail("gcc is needed to build bench/speed/churn.c", pytrace=False)
    return measure.build_helper("churn", tmp_path_factory.mktemp("speed-cache"),
                                source=speed.CHURN_SRC, flags=("-pthread", "-lm"))


@pytest.mark.parametrize("pattern", SPEED_PATTERNS)
def test_churn_check_mode_same_under_glibc_and_myalloc(churn, lib, run, pattern):
    """Every block filled and verified (--check) under both allocators; the
    checksum line is the same in both, and the same as without --check (what
    the timed runs compare)."""
    args = [pattern, "--pairs", "20000", "--live", "300"]
    outputs = []
    for preload, extra in ((False, ["--check"]), (True, ["--check"]), (True, [])):
        rc, out, err = run(churn, args + extra, preload=preload, timeout=60)
        assert rc == 0, f"{pattern} {extra} preload={preload}: exit {rc}\n{err[-2000:]}"
        outputs.append(out)
    assert outputs[0] == outputs[1] == outputs[2]
    line = outputs[0].strip()
    assert line.startswith(f"churn {pattern} threads=") and "checksum=" in line
    assert len(outputs[0].splitlines()) == 1


def test_churn_threads_at_volume_under_myalloc(churn, run):
    """Producer/consumer and two churning threads at full speed, every block
    verified: a regression test for a race in which `free` read a neighbour's
    alloc bits from before a free and its start bits from after it, took two
    blocks for one and later handed the second one out twice (it failed about
    one run in ten)."""
    for i in range(8):
        for pattern, pairs in (("prodcons", "3000000"), ("threads2", "600000")):
            extra = ["--check"] if i == 0 else []
            rc, out, err = run(churn, [pattern, "--pairs", pairs, "--live", "20000"] + extra,
                               timeout=120)
            assert rc == 0, f"{pattern} run {i}: exit {rc}\n{err[-2000:]}"


def test_floor_allocator_serves_the_single_thread_patterns(churn, run, tmp_path):
    """bench/speed/floor.c, the do-nothing-more allocator the README's speed
    section compares against, really serves churn's single-thread patterns:
    every block verified, the same checksum as glibc's."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    floor = tmp_path / "floor.so"
    proc = subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-fno-builtin", "-shared", "-fPIC",
                           "-o", str(floor), str(speed.CHURN_SRC.parent / "floor.c")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for pattern in ("small", "mixed"):
        args = [pattern, "--pairs", "20000", "--live", "300", "--check"]
        rc, want, err = run(churn, args, preload=False, timeout=60)
        assert rc == 0, err[-2000:]
        rc, got, err = run(churn, args, preload=False, env={"LD_PRELOAD": floor}, timeout=60)
        assert rc == 0, f"{pattern} under floor.so: exit {rc}\n{err[-2000:]}"
        assert got == want


import instructions  # noqa: E402


def _valgrind():
    if not instructions.valgrind():
        pytest.fail("valgrind is missing: `make test-deps` (as root) installs it",
                    pytrace=False)
    return instructions.valgrind()


def test_instruction_counts_see_exactly_the_padding(churn, tmp_path):
    """bench/instructions.py counts one steady pair: floor.c with FREE_PADDING
    instructions in its free counts exactly that many more per pair, glibc more
    than floor, and every library prints glibc's checksum."""
    _valgrind()
    pats = [("scale-1", ["scale-1", "--live", "2000"], 10_000, "test")]
    t = instructions.measure_all(churn, [("glibc", None)], tmp_path, patterns=pats)
    got = {lib: c for (_, lib), c in t.counts.items()}
    assert set(got) == {"glibc", "floor", f"floor+{instructions.FLOOR_PADDING}"}
    assert all(not c.error for c in got.values()), {k: c.error for k, c in got.items()}
    floor, padded = got["floor"].per_pair, got[f"floor+{instructions.FLOOR_PADDING}"].per_pair
    assert padded - floor == pytest.approx(instructions.FLOOR_PADDING, abs=0.5)
    assert got["glibc"].per_pair > floor > 50
    assert got["glibc"].output.startswith("churn scale-1 ") and \
        len({c.output for c in got.values()}) == 1
    assert instructions.to_json(t)["patterns"] == [{"name": "scale-1", "description": "test"}]


def test_instruction_counts_keep_myalloc_on_the_break(churn, lib, tmp_path):
    """A heap larger than valgrind's 8 MB break segment sends myalloc to its mmap
    fallback arenas (another free path): such a count is refused, not reported.
    With bench/speed/sbrk_shim.c preloaded first the same heap stays on the break
    and is counted."""
    tool = _valgrind()
    args = ["scale-1", "--live", "100000"]
    off = instructions.count(tool, churn, "scale-1", args, 2000, "myalloc", lib)
    assert off.per_pair is None and "fallback" in off.error
    shim = instructions.shim_lib(tmp_path)
    on = instructions.count(tool, churn, "scale-1", args, 2000, "myalloc", lib, shim)
    assert on.per_pair is not None and on.per_pair > 0, on.error


def test_churn_rejects_bad_arguments(churn, run):
    for args in (["nope"], ["small", "--pairs", "0"], ["scale-x"], []):
        rc, _, err = run(churn, args, preload=False, timeout=30)
        assert rc == 2 and ("usage" in err or "positive" in err or "thread count" in err)


def _speed_sample():
    """Four patterns x four allocators, three runs each; prodcons fails under
    jemalloc in its second run."""
    walls = {
        "small": {"glibc": [1.0, 1.2, 1.1], "myalloc": [0.5, 0.6, 0.55],
                  "jemalloc": [0.44, 0.40, 0.42], "mimalloc": [0.33, 0.35, 0.30]},
        "prodcons": {"glibc": [0.5, 0.5, 0.6], "myalloc": [2.0, 2.2, 1.8],
                     "jemalloc": [0.3], "mimalloc": [0.2, 0.25, 0.15]},
        "py-json": {"glibc": [1.0, 1.0, 1.0], "myalloc": [1.2, 1.1, 1.3],
                    "jemalloc": [0.8, 0.9, 0.7], "mimalloc": [0.9, 1.0, 0.95]},
        "py-ast": {"glibc": [2.0, 2.1, 1.9], "myalloc": [1.5, 1.6, 1.4],
                   "jemalloc": [1.6, 1.7, 1.8], "mimalloc": [2.5, 2.4, 2.6]},
    }
    runs = []
    for pattern, per in walls.items():
        for alloc, ws in per.items():
            for rep, w in enumerate(ws, 1):
                runs.append({"pattern": pattern, "allocator": alloc, "rep": rep, "ok": True,
                             "error": None, "status": 0, "wall_s": w, "output": "x"})
    runs.append({"pattern": "prodcons", "allocator": "jemalloc", "rep": 2, "ok": False,
                 "error": "exit status 134: double free", "status": 134, "wall_s": 0.1})
    return {
        "meta": {"mode": "full", "reps": 3, "started": "2024-01-01 00:00 UTC",
                 "duration_s": 60, "argv": ["--reps", "3"], "notes": [], "skipped": [],
                 "machine": {"cpu": "Sample CPU 9000", "cores": 2, "glibc": "glibc 2.36"},
                 "allocators": [{"name": a, "lib": None, "source": "", "version": "v"}
                                for a in ("glibc", "myalloc", "jemalloc", "mimalloc")],
                 "patterns": [{"name": "small", "group": "c"}, {"name": "prodcons", "group": "c"},
                              {"name": "py-json", "group": "python"},
                              {"name": "py-ast", "group": "python"}]},
        "runs": runs,
        "failures": [{"pattern": "prodcons", "allocator": "jemalloc",
                      "reason": "run 2: exit status 134: double free"}],
    }


def test_speed_summary_and_ratios():
    sample = _speed_sample()
    rows = {(r["pattern"], r["allocator"]): r for r in speed_report.summarize(sample)}
    assert len(rows) == 16
    s = rows[("small", "glibc")]
    assert (s["median_s"], s["min_s"], s["max_s"], s["runs"]) == \
        (pytest.approx(1.1), 1.0, 1.2, 3)
    assert rows[("prodcons", "jemalloc")]["status"] == "FAIL"
    assert rows[("prodcons", "jemalloc")]["median_s"] is None   # the good run is not used

    t = speed_report.speed_table(sample)
    small, prodcons, pyjson, pyast = t["rows"]
    assert small["over_myalloc"]["glibc"] == pytest.approx(2.0)
    assert small["over_myalloc"]["jemalloc"] == pytest.approx(0.42 / 0.55)
    assert small["best_peer"] == "mimalloc"
    assert small["my_best"] == pytest.approx(0.55 / 0.33)
    assert small["my_glibc"] == pytest.approx(0.5)
    assert prodcons["values"]["jemalloc"] == "FAIL"
    assert prodcons["over_myalloc"]["jemalloc"] is None
    assert (prodcons["best_peer"], prodcons["my_best"]) == ("mimalloc", pytest.approx(10.0))
    assert prodcons["my_glibc"] == pytest.approx(4.0)
    assert (pyast["best_peer"], pyast["my_best"]) == ("jemalloc", pytest.approx(1.5 / 1.7))
    c, py = t["geomeans"]["c"], t["geomeans"]["python"]
    assert c["my_glibc"] == pytest.approx(2 ** 0.5)
    assert c["my_best"] == pytest.approx((0.55 / 0.33 * 10) ** 0.5)
    assert c["over_myalloc"]["jemalloc"] == pytest.approx(0.42 / 0.55)   # small only
    assert py["my_glibc"] == pytest.approx((1.2 * 0.75) ** 0.5)
    assert py["over_myalloc"]["jemalloc"] == pytest.approx((0.8 / 1.2 * 1.7 / 1.5) ** 0.5)
    # Paired: the median over rounds of the ratio within each round.
    assert small["paired_glibc"] == pytest.approx(0.5)
    assert small["paired_best"] == pytest.approx(0.6 / 0.35)   # rounds: 1.52, 1.71, 1.83
    assert prodcons["paired_best"] == pytest.approx(10.0)       # 10, 8.8, 12
    assert pyast["paired_glibc"] == pytest.approx(0.75)
    assert py["paired_glibc"] == pytest.approx((1.2 * 0.75) ** 0.5)
    verdicts = {what: (ok, pv) for what, _, _, ok, pv in speed_report.targets(t)}
    assert verdicts["py-ast: myalloc/glibc"] == (True, pytest.approx(0.75))
    assert verdicts["small: myalloc/best peer"] == (False, pytest.approx(0.6 / 0.35))


def test_speed_terminal_table_and_files(tmp_path):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.fail("matplotlib is missing: `pip install -r bench/requirements.txt`",
                    pytrace=False)
    text = speed_report.write_all(_speed_sample(), tmp_path)
    lines = text.splitlines()

    def cells(name):
        words = name.split()
        return next(ln for ln in lines if ln.split()[:len(words)] == words).split()
    assert cells("small")[1:] == ["1.100", "(2.00)", "0.550", "0.420", "(0.76)", "0.330",
                                  "(0.60)", "1.67", "mimalloc", "0.50"]
    assert cells("prodcons")[1:] == ["0.500", "(0.25)", "2.000", "FAIL", "0.200", "(0.10)",
                                     "10.00", "mimalloc", "4.00"]
    assert cells("geomean Python")[-1] == f"{0.9 ** 0.5:.2f}"
    assert "This machine has 2 cores" in text and "max(1, N/2)" in text
    scaled = _speed_sample()
    scaled["meta"]["patterns"] += [{"name": "scale-2", "group": "c"},
                                   {"name": "scale-4", "group": "c"}]
    assert "scale-4 run more threads than cores" in speed_report.cores_note(scaled)
    assert "not parallel speed-up" in speed_report.cores_note(scaled)
    assert "prodcons under jemalloc: run 2: exit status 134" in text
    assert (tmp_path / "table.txt").read_text() == text

    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["runs"]) == len(_speed_sample()["runs"]) and len(data["summary"]) == 16
    with open(tmp_path / "speed.csv") as f:
        rows = {(r["pattern"], r["allocator"]): r for r in csv.DictReader(f)}
    assert float(rows[("small", "myalloc")]["median_s"]) == pytest.approx(0.55)
    assert float(rows[("small", "myalloc")]["over_glibc"]) == pytest.approx(0.5)
    assert float(rows[("py-ast", "jemalloc")]["over_myalloc"]) == pytest.approx(1.7 / 1.5)
    assert rows[("prodcons", "jemalloc")]["status"] == "FAIL"

    md = (tmp_path / "REPORT.md").read_text()
    assert "| small | 1.100 (2.00) | 0.550 | 0.420 (0.76) | 0.330 (0.60) | 1.67 mimalloc " \
           "| 0.50 |" in md
    assert "| small | 1.100 [1.000-1.200] | 0.550 [0.500-0.600] |" in md
    assert "![chart](chart.png)" in md and "Sample CPU 9000" in md
    assert "This machine has 2 cores" in md and "make bench-speed" in md
    assert "**prodcons** under **jemalloc**" in md
    png = (tmp_path / "chart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Not counted: no counts in these results." in md
    assert "Instructions per pair (valgrind" not in text


def test_speed_report_instruction_table(tmp_path):
    """The instruction counts appear in the terminal table and REPORT.md, each
    with its excess over floor; a failed count is named with its reason."""
    sample = _speed_sample()
    sample["instructions"] = {
        "libraries": ["glibc", "myalloc", "floor", "floor+40"], "padding": 40,
        "patterns": [{"name": "scale-1", "description": "small sizes"},
                     {"name": "mixed", "description": "mixed sizes"}],
        "counts": [{"pattern": "scale-1", "library": lib, "pairs": 10, "per_pair": v,
                    "error": None if v else "valgrind run failed"}
                   for lib, v in (("glibc", 241.0), ("myalloc", None), ("floor", 127.0),
                                  ("floor+40", 167.0))]
        + [{"pattern": "mixed", "library": lib, "pairs": 10, "per_pair": v, "error": None}
           for lib, v in (("glibc", 492.0), ("myalloc", 443.0))]}
    text = speed_report.terminal_report(sample)
    assert "  scale-1  241 (+114)   failed    127  167 (+40)" in text
    assert "  mixed           492      443      -          -" in text
    assert "failed: scale-1 under myalloc: valgrind run failed" in text
    md = "\n".join(speed_report.instructions_markdown(sample))
    assert "| scale-1 | 241 (+114) | failed | 127 | 167 (+40) |" in md
    assert "| mixed | 492 | 443 | - | - |" in md
    assert "`floor+40` is floor with 40 instructions" in md


def test_speed_run_checks_outputs_against_glibc(tmp_path):
    """A run whose output differs from glibc's fails and is reported; the
    others pass and their folders are removed."""
    class Args:
        reps, timeout = 1, 10

    bench = speed.SpeedRun(Args, None, tmp_path)
    progress = speed.Progress(3, stream=io.StringIO())
    w = workloads.Workload("small", "c", "", measure.Command(["true"]))
    done = {}
    for name, sha in (("myalloc", "aaa"), ("glibc", "aaa"), ("jemalloc", "bbb")):
        rd = measure.RunDir(tmp_path / name).reset()
        done[name] = ({"pattern": "small", "allocator": name, "rep": 1, "ok": True,
                       "error": None, "output": f"line {sha}", "output_sha256": sha}, rd)
    bench.verify(w, done, progress)
    assert [r["ok"] for r in bench.runs] == [True, True, False]
    assert list(bench.failures) == [("small", "jemalloc")]
    assert "'line bbb' instead of 'line aaa'" in bench.failures[("small", "jemalloc")]
    assert not (tmp_path / "glibc").exists() and (tmp_path / "jemalloc").exists()
