"""The exit-time statistics report: MYALLOC_STATS=1 (text on stderr) and
MYALLOC_STATS_FILE=PATH (one JSON object), on a real program."""

import json
import sys

from conftest import DATA_DIR

FIELDS = [
    "size", "version", "heap_start", "brk_extent", "brk_extent_peak",
    "held_bytes", "held_bytes_peak", "in_use_bytes", "in_use_bytes_peak",
    "live_blocks", "malloc_calls", "free_calls", "realloc_calls", "calloc_calls",
    "memalign_calls", "brk_grow_calls", "brk_shrink_calls", "madvise_calls",
    "madvised_bytes", "mmap_fallback_calls", "mmap_fallback_bytes",
    "cached_bytes", "metadata_bytes", "requested_bytes_total",
]

SCRIPT = "d = [str(i) * 10 for i in range(200000)]\nprint(len(d))\n"


def test_stats_file_is_json_with_every_field(run, tmp_path):
    out = tmp_path / "stats.json"
    rc, stdout, stderr = run([sys.executable, "-c", SCRIPT],
                             env={"PYTHONMALLOC": "malloc", "MYALLOC_STATS_FILE": str(out)})
    assert rc == 0, stderr
    stats = json.loads(out.read_text())
    assert list(stats) == FIELDS
    assert stats["size"] == 8 * len(FIELDS) and stats["version"] == 1
    assert stats["malloc_calls"] > 200000
    assert 0 < stats["brk_extent"] <= stats["brk_extent_peak"] <= stats["held_bytes_peak"]
    assert stats["in_use_bytes"] <= stats["in_use_bytes_peak"]
    # The break kept growing: nothing went to mmap.
    assert stats["mmap_fallback_calls"] == 0 and stats["mmap_fallback_bytes"] == 0
    # 200,000 strings of ~60 bytes were live at once.
    assert stats["brk_extent_peak"] > 200000 * 60


def test_stats_summary_on_stderr_survives_closed_stderr(run):
    # ls closes stderr before exiting (coreutils' close_stdout); the report still comes.
    rc, stdout, stderr = run(["ls", "-la", str(DATA_DIR)], env={"MYALLOC_STATS": "1"})
    assert rc == 0
    lines = [l for l in stderr.splitlines() if l.startswith("myalloc: ")]
    assert any(l.startswith("myalloc: peak brk ") for l in lines), stderr
    assert any(l.startswith("myalloc: calls: malloc ") for l in lines), stderr


def test_stats_file_per_process_with_percent_p(run, tmp_path):
    # A shell that runs two children: each process writes its own file.
    pattern = str(tmp_path / "stats.%p.json")
    rc, stdout, stderr = run(["sh", "-c", "ls / >/dev/null; ls / >/dev/null"],
                             env={"MYALLOC_STATS_FILE": pattern})
    assert rc == 0, stderr
    files = sorted(tmp_path.glob("stats.*.json"))
    assert len(files) >= 2, files  # sh, and each ls it forked (sh may exec the last)
    for f in files:
        pid = f.name.split(".")[1]
        assert pid.isdigit()
        assert json.loads(f.read_text())["version"] == 1
