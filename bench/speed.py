#!/usr/bin/env python3
"""Speed benchmark: wall time of allocation-heavy patterns under each allocator.

    python3 bench/speed.py [--quick] [--reps N] [--only LIST] [--allocators LIST]
                           [--out DIR] [--myalloc PATH] ...

The patterns are bench/speed/churn.c (built here with gcc -O2 -pthread) run
as small, mixed, threads2, prodcons and scale-1/2/4/8, plus the Python
workloads of the main suite (bench/pyworkloads.py) under PYTHONMALLOC=malloc,
so that every Python object goes through the allocator.

Each repetition round runs every pattern under every allocator back to back
(the allocator order rotated each round), one run at a time, through the
suite's C launcher (bench/launch.c).  Every run's output must equal glibc's
(the C patterns print a checksum of the bytes read back from their blocks);
a run that differs or crashes is a failure: reported, not timed, and the
pattern is not run again under that allocator.

Reports (terminal table, results.json, speed.csv, chart.png, REPORT.md; see
bench/speed_report.py) go to --out.  Exit status 0, 1 if any run failed (the
reports are written either way), 2 for a usage or setup error.
"""

import argparse
import datetime
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import allocators as alloc_mod  # noqa: E402
import instructions  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
import speed_report  # noqa: E402
from measure import (Command, MeasureError, RunDir, build_helper, run_slug,  # noqa: E402
                     timed_run)
from progress import Progress  # noqa: E402
from run import stale_library  # noqa: E402
from workloads import Workload, build_workloads, real_python, select  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
CHURN_SRC = BENCH_DIR / "speed" / "churn.c"

#: The C patterns: name, description, and (pairs, live) for full and quick runs.
#: Full counts put each pattern near 1 s under glibc 2.36 on the 2-core
#: reference machine (a shared AMD EPYC virtual machine):
#: * small: the issue's pattern as given, 30M pairs on 100,000 live blocks.
#:   Every free touches a cold block (the slot array and the 15 MB of blocks
#:   exceed the caches): ~250 ns a pair under glibc, ~8 s a run.
#: * mixed: 10,000 live blocks of ~7 KiB average (70 MB live), 2.5M pairs.
#: * threads2: small's live count on each of two threads, small's pairs split
#:   between them (2M each): the same total work as small.
#: * prodcons: 10M blocks through the ring.
#: * scale-N: a fixed 3M pairs on 20,000 live blocks per thread; scale-8 does
#:   8 times scale-1's work (several seconds under glibc: 8 threads on 2 cores
#:   evict each other's caches, so it costs more than 4 times scale-2).
#: Quick counts are half the pairs (small: 2M), with the same live counts, so the
#: same heap shapes.
#: A full run (5 rounds, 5 allocators) takes about 11 minutes here, quick ~1. Five
#: rounds, not three: single runs on this shared VM swing by 30 % or more, and a
#: median of three still moved ratios by 0.2 from one full run to the next.
C_PATTERNS = [
    ("small", "1 thread: {live:,} live blocks of 8-256 B (uniform); {pairs} pairs of "
              "free + malloc of a random slot", (30_000_000, 100_000), (2_000_000, 100_000)),
    ("mixed", "1 thread: {live:,} live blocks of 8 B-64 KiB (log-uniform); {pairs} "
              "pairs", (2_500_000, 10_000), (1_250_000, 10_000)),
    ("threads2", "2 threads, each the small pattern on its own {live:,} live blocks; "
                 "{pairs} pairs in total (half each)", (4_000_000, 100_000),
     (2_000_000, 100_000)),
    ("prodcons", "producer thread mallocs {pairs} blocks of 8-256 B, passes them "
                 "through a lock-free ring to a consumer thread that reads and frees "
                 "them (every free remote)", (10_000_000, 0), (5_000_000, 0)),
] + [
    (f"scale-{n}", f"the small pattern on {n} thread{'s' if n > 1 else ''}, each with its "
                   "own {live:,} live blocks and {pairs} pairs (fixed work per thread)",
     (3_000_000, 20_000), (1_500_000, 20_000)) for n in (1, 2, 4, 8)
]


def _millions(n):
    return f"{n / 1e6:g}M"


def c_patterns(churn, quick):
    """The C patterns as suite Workloads (group "c"; scale-N share base "scale")."""
    out = []
    for name, desc, full, short in C_PATTERNS:
        pairs, live = short if quick else full
        argv = [churn, name, "--pairs", str(pairs)]
        if live:
            argv += ["--live", str(live)]
        out.append(Workload(name=name, group="c",
                            base="scale" if name.startswith("scale-") else name,
                            description=desc.format(pairs=_millions(pairs), live=live),
                            command=Command(argv)))
    return out


def python_patterns(cache, quick, python):
    """The main suite's Python workloads in their PYTHONMALLOC=malloc mode,
    named after the workload (py-json, ...)."""
    out = []
    for w in build_workloads(cache, quick, python):
        if w.group == "python" and w.command.env.get("PYTHONMALLOC") == "malloc":
            out.append(Workload(name=w.base, group="python", base=w.base,
                                description=w.description, command=w.command))
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Speed benchmark: allocation patterns and Python workloads under "
                    "glibc, myalloc and the peer allocators.",
        epilog="Examples: --only small,mixed   --only 'scale'   --only python   "
               "--allocators myalloc,mimalloc   --allocators myalloc,old=/tmp/old.so")
    p.add_argument("--out", default=str(BENCH_DIR / "results-speed"),
                   help="folder for the reports (default: bench/results-speed)")
    p.add_argument("--quick", action="store_true",
                   help="half the pairs, smaller Python inputs, one repetition")
    p.add_argument("--only", help="comma-separated pattern names or shell patterns "
                   "(small, mixed, threads2, prodcons, scale-4, scale, c, python, 'py-*')")
    p.add_argument("--allocators", help="comma-separated: glibc, myalloc, jemalloc, mimalloc, "
                   "tcmalloc, or NAME=/path/lib.so (default: all installed; glibc is "
                   "always included as the reference)")
    p.add_argument("--myalloc", help="myalloc library (default target/release/libmyalloc.so)")
    p.add_argument("--reps", type=int, help="repetitions (default 5, quick 1)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per run (default 300)")
    p.add_argument("--cache", default=str(BENCH_DIR / ".cache"),
                   help="helpers, inputs and scratch folders (default bench/.cache)")
    p.add_argument("--python", help="interpreter for the Python workloads "
                   "(default: this one, resolved past any shim)")
    p.add_argument("--no-instructions", dest="instructions", action="store_false",
                   help="skip the instruction counts (valgrind; done when a C pattern is "
                   "selected, about 3 minutes in all, 1 quick)")
    p.add_argument("--list", action="store_true", help="list patterns and allocators, then exit")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 5
    if args.reps < 1:
        p.error("--reps must be at least 1")
    return args


class SpeedRun:
    """The timed rounds and their verdicts."""

    def __init__(self, args, launcher, scratch):
        self.args = args
        self.launcher = launcher
        self.scratch = scratch
        self.runs = []
        self.failures = {}         # (pattern, allocator) -> reason
        self.reference = {}        # pattern -> (output sha256, first output line)
        self.preload_width = 0     # see measure.preload_stand_in

    def fail(self, pattern, allocator, reason, progress):
        if (pattern, allocator) not in self.failures:
            self.failures[(pattern, allocator)] = reason
            progress.write(f"FAIL {pattern} under {allocator}: {reason}")

    def one(self, w, a, rep):
        rd = RunDir(self.scratch / w.name / run_slug(a.name))
        res = timed_run(w.command, a.lib, rd, self.launcher, self.args.timeout,
                        preload_width=self.preload_width)
        try:
            line = rd.stdout.read_text(errors="replace").strip().splitlines()[0][:200]
        except (OSError, IndexError):
            line = ""
        rec = {"pattern": w.name, "allocator": a.name, "rep": rep, "ok": res.error is None,
               "error": res.error, "status": res.status, "wall_s": res.wall_s,
               "user_s": res.user_s, "sys_s": res.sys_s, "maxrss_kib": res.maxrss_kib,
               "output": line, "output_sha256": res.output_sha256}
        return rec, rd

    def verify(self, w, done, progress):
        """Check one round's runs of pattern w against glibc's output."""
        glibc = done.get("glibc")
        if w.name not in self.reference and glibc and glibc[0]["ok"]:
            self.reference[w.name] = (glibc[0]["output_sha256"], glibc[0]["output"])
        ref = self.reference.get(w.name)
        for name, (rec, rd) in done.items():
            if rec["ok"] and ref is None:
                rec["ok"] = False
                rec["error"] = "no reference: the glibc run failed"
            elif rec["ok"] and rec["output_sha256"] != ref[0]:
                rec["ok"] = False
                rec["error"] = (f"output differs from glibc's: {rec['output']!r} "
                                f"instead of {ref[1]!r}")
            self.runs.append(rec)
            if rec["ok"]:
                shutil.rmtree(rd.root, ignore_errors=True)
            else:
                self.fail(w.name, name, f"run {rec['rep']}: {rec['error']} (kept in {rd.root})",
                          progress)

    def rounds(self, patterns, allocators, progress):
        n = len(allocators)
        for rep in range(1, self.args.reps + 1):
            order = allocators[(rep - 1) % n:] + allocators[:(rep - 1) % n]
            for w in patterns:
                done = {}
                for a in order:
                    if (w.name, a.name) in self.failures:
                        progress.step(f"rep {rep}: skip {w.name} / {a.name} (failed)")
                        continue
                    progress.set_label(f"rep {rep}: {w.name} / {a.name}")
                    done[a.name] = self.one(w, a, rep)
                    progress.step(f"rep {rep}: {w.name} / {a.name}")
                self.verify(w, done, progress)


def count_instructions(args, patterns, allocators, churn, cache):
    """Instructions per pair of the single-thread C patterns (bench/instructions.py),
    as a results.json section; {"skipped": why} when not counted, None if Ctrl-C
    stopped them."""
    if not args.instructions:
        return {"skipped": "--no-instructions"}
    if not any(w.group == "c" for w in patterns):
        return {"skipped": "no C pattern selected"}
    libs = [(a.name, a.lib) for a in allocators]
    progress = Progress(len(instructions.PATTERNS) * (len(libs) + 2))
    tables = []
    try:
        if not progress.run("instructions", lambda: tables.append(
                instructions.measure_all(churn, libs, cache, progress, quick=args.quick))):
            return None
    except MeasureError as exc:
        print(f"speed: no instruction counts: {exc}", file=sys.stderr)
        return {"skipped": str(exc)}
    return instructions.to_json(tables[0])


def main(argv=None):
    args = parse_args(argv)
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        launcher = build_helper("launch", cache)
        churn = build_helper("churn", cache, source=CHURN_SRC, flags=("-pthread", "-lm"))
    except MeasureError as exc:
        print(f"speed: {exc}", file=sys.stderr)
        return 2
    try:
        allocators, skipped = alloc_mod.discover(args.allocators, args.myalloc, cache)
        python = real_python(args.python)
        print(f"speed: preparing inputs in {cache} ...", file=sys.stderr)
        patterns = select(c_patterns(churn, args.quick)
                          + python_patterns(cache, args.quick, python), args.only)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"speed: {exc.code}", file=sys.stderr)
            return 2
        raise
    for name, reason in skipped:
        print(f"speed: skipping {name}: {reason}", file=sys.stderr)
    notes = []
    stale = stale_library(args.myalloc, allocators)
    if stale:
        notes.append(stale)
        print(f"speed: warning: {stale}", file=sys.stderr)
    if args.list:
        for w in patterns:
            print(f"{w.name:10s} {w.description}\n{'':10s} $ {w.display_command()}")
        for a in allocators:
            print(f"allocator {a.name:9s} {a.source or '(no preload)'}  {a.version}")
        return 0

    started = time.monotonic()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"speed: {len(patterns)} patterns x {len(allocators)} allocators "
          f"({', '.join(a.name for a in allocators)}), {args.reps} round(s)", file=sys.stderr)
    scratch = cache / "speed-run"
    shutil.rmtree(scratch, ignore_errors=True)
    bench = SpeedRun(args, launcher, scratch)
    bench.preload_width = alloc_mod.preload_width(allocators)
    progress = Progress(args.reps * len(patterns) * len(allocators))
    if not progress.run("speed", lambda: bench.rounds(patterns, allocators, progress)):
        return 130

    counted = count_instructions(args, patterns, allocators, churn, cache)
    if counted is None:
        return 130
    results = report.results_document(
        args, stamp, time.monotonic() - started, machine.describe(python), allocators,
        skipped, "pattern", patterns, notes, sys.argv[1:] if argv is None else list(argv),
        bench.runs, bench.failures)
    results["instructions"] = counted
    out = Path(args.out)
    sys.stdout.write(speed_report.write_all(results, out))
    print(f"\nspeed: {time.monotonic() - started:.0f} s; reports in {out}/: REPORT.md, "
          f"chart.png, results.json, speed.csv")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
