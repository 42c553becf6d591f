#!/usr/bin/env python3
"""Benchmark myalloc against glibc's malloc, jemalloc, mimalloc and tcmalloc.

    python3 bench/run.py [--quick] [--only LIST] [--allocators LIST]
                         [--reps N] [--out DIR] [--myalloc PATH] ...

Two phases, in this order:

1. traced: each workload once per allocator under strace (two at a time on
   a 2-core machine: the figures taken here are exact counts, not times).
   This gives peak brk, peak held memory, myalloc's own statistics, and the
   reference output: glibc's.  An allocator whose output differs from
   glibc's is a failure and is not timed.
2. timed: REPS rounds; in each, every workload runs once per allocator
   back to back (allocators interleaved, their order rotated each round so
   none always runs first), one at a time, through the C launcher (wall
   time, CPU time, peak RSS).  Outputs are checked again.

Reports (terminal table, results.json, measurements.csv, summary.csv,
chart.png, REPORT.md) go to --out.  Exit status: 0, or 1 if any workload
failed under any allocator (the reports are written either way), 2 for a
usage or setup error.
"""

import argparse
import datetime
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import allocators as alloc_mod  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
from measure import (MeasureError, RunDir, build_helper, find_strace, run_slug,  # noqa: E402
                     timed_run, traced_run)
from progress import Progress  # noqa: E402
from workloads import build_workloads, real_python, select  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Benchmark myalloc against glibc malloc and peer allocators.",
        epilog="Examples: --only 'py-*,gcc'   --allocators myalloc,jemalloc   "
               "--allocators myalloc,old=/tmp/libmyalloc-old.so")
    p.add_argument("--out", default=str(BENCH_DIR / "results"),
                   help="folder for the reports (default: bench/results)")
    p.add_argument("--quick", action="store_true",
                   help="smaller inputs and one repetition (about 2 minutes)")
    p.add_argument("--only", help="comma-separated workload names or patterns "
                   "(py-json, py-json/malloc, 'py-*', python, cli, gcc, ...)")
    p.add_argument("--allocators", help="comma-separated: glibc, myalloc, jemalloc, mimalloc, "
                   "tcmalloc, or NAME=/path/lib.so (default: all installed; glibc is "
                   "always included as the baseline)")
    p.add_argument("--myalloc", help="myalloc library (default target/release/libmyalloc.so)")
    p.add_argument("--reps", type=int, help="timed repetitions (default 3, quick 1)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="traced runs in parallel (default 2)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    p.add_argument("--cache", default=str(BENCH_DIR / ".cache"),
                   help="inputs, helpers and scratch folders (default bench/.cache)")
    p.add_argument("--python", help="interpreter for the Python workloads "
                   "(default: this one, resolved past any shim)")
    p.add_argument("--keep-traces", action="store_true", help="keep strace output files")
    p.add_argument("--list", action="store_true", help="list workloads and allocators, then exit")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.reps < 1 or args.jobs < 1:
        p.error("--reps and --jobs must be at least 1")
    return args


def run_record(workload, allocator, phase, rep, res):
    """A flat, JSON-ready record of one run."""
    rec = {"workload": workload.name, "allocator": allocator.name, "phase": phase, "rep": rep,
           "ok": res.error is None, "status": res.status, "error": res.error,
           "output_sha256": res.output_sha256}
    if phase == "time":
        rec.update(wall_s=res.wall_s, user_s=res.user_s, sys_s=res.sys_s,
                   maxrss_kib=res.maxrss_kib)
    else:
        rec["traced_wall_s"] = res.wall_s
        if res.trace:
            t = res.trace.as_dict()
            images = sorted(t.pop("images"), key=lambda i: -i["peak_held"])[:20]
            rec.update(t)
            rec["images"] = images
        rec["myalloc_stats"] = res.myalloc_stats
    return rec


class Bench:
    """State of one benchmark run: plan, results, failures."""

    def __init__(self, args):
        self.args = args
        self.cache = Path(args.cache).resolve()
        self.scratch = self.cache / "run"
        self.runs = []
        self.failures = {}
        self.reference = {}
        # Length of the preloaded libraries' paths (all snapshots: one length).
        self.preload_width = 0

    def fail(self, workload, allocator, reason, progress):
        key = (workload.name, allocator.name)
        if key not in self.failures:
            self.failures[key] = reason
            progress.write(f"FAIL {workload.name} under {allocator.name}: {reason}")

    def rundir(self, workload, allocator, phase):
        slug = workload.name.replace("/", "_")
        return RunDir(self.scratch / slug / f"{run_slug(allocator.name)}-{phase}")

    # -- phase 1 -------------------------------------------------------------

    def trace_phase(self, workloads, allocators, strace, progress):
        def one(task):
            w, a = task
            rd = self.rundir(w, a, "trace")
            res = traced_run(w.command, a.lib, rd, strace, self.args.timeout,
                             keep_trace=self.args.keep_traces,
                             preload_width=self.preload_width)
            if res.error is None and not self.args.keep_traces:
                shutil.rmtree(rd.root, ignore_errors=True)
            return w, a, res

        tasks = [(w, a) for w in workloads for a in allocators]
        results = {}
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            for w, a, res in pool.map(one, tasks):
                results[(w.name, a.name)] = res
                self.runs.append(run_record(w, a, "trace", 0, res))
                progress.step(f"traced {w.name} / {a.name}")
        for w in workloads:
            base = results[(w.name, "glibc")]
            if base.error:
                for a in allocators:
                    self.fail(w, a, f"the glibc run itself failed ({base.error}); "
                                    f"workload broken", progress)
                continue
            self.reference[w.name] = base.output_sha256
            for a in allocators[1:]:
                res = results[(w.name, a.name)]
                if res.error:
                    self.fail(w, a, f"traced run: {res.error}", progress)
                elif res.output_sha256 != base.output_sha256:
                    self.fail(w, a, "output differs from glibc's (traced run; kept in "
                                    f"{self.rundir(w, a, 'trace').root})", progress)

    # -- phase 2 -------------------------------------------------------------

    def time_phase(self, workloads, allocators, launcher, progress):
        n = len(allocators)
        for rep in range(self.args.reps):
            order = allocators[rep % n:] + allocators[:rep % n]
            for w in workloads:
                if w.warmup:
                    progress.set_label(f"rep {rep + 1}: warm-up {w.name}")
                    rd = self.rundir(w, allocators[0], "warmup")
                    timed_run(w.command, None, rd, launcher, self.args.timeout)
                    shutil.rmtree(rd.root, ignore_errors=True)
                    progress.step(f"rep {rep + 1}: warm-up {w.name}")
                for a in order:
                    if (w.name, a.name) in self.failures:
                        progress.step(f"rep {rep + 1}: skip {w.name} / {a.name} (failed)")
                        continue
                    progress.set_label(f"rep {rep + 1}: {w.name} / {a.name}")
                    rd = self.rundir(w, a, "time")
                    res = timed_run(w.command, a.lib, rd, launcher, self.args.timeout,
                                    preload_width=self.preload_width)
                    if res.error is None and res.output_sha256 != self.reference.get(w.name):
                        res.error = "output differs from glibc's (timed run)"
                    self.runs.append(run_record(w, a, "time", rep + 1, res))
                    if res.error:
                        self.fail(w, a, f"timed run {rep + 1}: {res.error} (kept in {rd.root})",
                                  progress)
                    else:
                        shutil.rmtree(rd.root, ignore_errors=True)
                    progress.step(f"rep {rep + 1}: {w.name} / {a.name}")


def main(argv=None):
    args = parse_args(argv)
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        strace = find_strace()
        launcher = build_helper("launch", cache)
    except MeasureError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    allocators, skipped = alloc_mod.discover(args.allocators, args.myalloc, cache)
    for name, reason in skipped:
        print(f"bench: skipping {name}: {reason}", file=sys.stderr)
    notes = []
    stale = stale_library(args.myalloc, allocators)
    if stale:
        notes.append(stale)
        print(f"bench: warning: {stale}", file=sys.stderr)

    started = time.monotonic()
    print(f"bench: preparing inputs in {cache} ...", file=sys.stderr)
    python = real_python(args.python)
    workloads = select(build_workloads(cache, args.quick, python), args.only)
    if args.list:
        for w in workloads:
            print(f"{w.name:22s} {w.description}\n{'':22s} $ {w.display_command()}")
        for a in allocators:
            print(f"allocator {a.name:9s} {a.source or '(no preload)'}  {a.version}")
        return 0

    n_w, n_a = len(workloads), len(allocators)
    warmups = sum(1 for w in workloads if w.warmup)
    total = n_w * n_a + args.reps * (n_w * n_a + warmups)
    print(f"bench: {n_w} workloads x {n_a} allocators ({', '.join(a.name for a in allocators)}); "
          f"1 traced + {args.reps} timed run(s) each", file=sys.stderr)

    bench = Bench(args)
    bench.preload_width = alloc_mod.preload_width(allocators)
    shutil.rmtree(bench.scratch, ignore_errors=True)
    start_stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    progress = Progress(total)
    if not progress.run("bench",
                        lambda: bench.trace_phase(workloads, allocators, strace, progress),
                        lambda: bench.time_phase(workloads, allocators, launcher, progress)):
        return 130

    results = report.results_document(
        args, start_stamp, time.monotonic() - started, machine.describe(python), allocators,
        skipped, "workload", workloads, notes, sys.argv[1:] if argv is None else list(argv),
        bench.runs, bench.failures)
    out = Path(args.out)
    text = report.write_all(results, out)
    sys.stdout.write(text)
    print(f"\nbench: {time.monotonic() - started:.0f} s; reports in {out}/: REPORT.md, "
          f"chart.png, results.json, measurements.csv, summary.csv")
    return 1 if bench.failures else 0


def stale_library(myalloc_path, allocators):
    """A warning if myalloc's library is older than its newest source file
    (benchmarking an old build by mistake)."""
    mine = next((a for a in allocators if a.name == "myalloc"), None)
    src = alloc_mod.REPO_DIR / "src"
    if not mine or not src.is_dir() or myalloc_path:
        return None
    newest = max((p.stat().st_mtime for p in src.rglob("*.rs")), default=0)
    if Path(mine.source).stat().st_mtime < newest:
        return f"{mine.source} is older than the newest file in src/ (run `make build`)"
    return None


if __name__ == "__main__":
    sys.exit(main())
