"""Multi-threaded use and fork() under LD_PRELOAD=libmyalloc.so.

All loops are bounded by iteration counts (not time).  Children created by
fork() arm alarm() so that an allocator deadlock after fork shows up as a
child killed by SIGALRM instead of a hang; every program also runs under a
timeout.
"""

import pytest


def test_stress_8_threads_with_forking_thread(build, run_ok):
    """8 threads malloc/calloc/realloc/free 8 B..64 KiB (some 1 MiB) blocks
    with address-derived patterns, a third of the blocks freed by another
    thread; a ninth thread forks 50 children that allocate and must exit 0."""
    kv = run_ok(build("thread_stress.c"), timeout=300)
    assert kv["ops"] == str(8 * 40000)
    assert int(kv["handoffs"]) > 10000, "too few cross-thread frees happened"
    assert kv["children_ok"] == "50" and kv["children_failed"] == "0", kv


def test_thread_create_join_1000_times(build, run_ok, report):
    """1000 short-lived threads each allocate, free most and hand the rest to
    the main thread; memory must not grow with the number of dead threads."""
    kv = run_ok(build("thread_churn.c"), ["churn"], timeout=300)
    growth = int(kv["rss_growth"])
    report(f"1000 thread lifetimes: RssAnon growth after the first 100: {growth} bytes")
    assert kv["threads"] == "1000"
    assert growth < 16 << 20, (
        f"RssAnon grew by {growth} bytes over 900 thread lifetimes: memory of "
        f"exited threads (caches?) is not reused ({kv})")


def test_threads_exit_holding_cached_blocks(build, run_ok):
    """Threads exit with blocks in their caches and live blocks that other
    threads free later."""
    kv = run_ok(build("thread_churn.c"), ["exit_cached"], timeout=300)
    assert kv["threads"] == "320"


@pytest.mark.parametrize("mode", ["exec", "alloc"])
def test_fork_from_multithreaded_process(build, run_ok, mode):
    """fork() while 4 other threads allocate; the child either execs /bin/true
    or keeps allocating (and frees blocks inherited from the parent)."""
    kv = run_ok(build("fork_threads.c"), [mode], timeout=300)
    assert kv["children_ok"] == "100" and kv["children_failed"] == "0", kv
