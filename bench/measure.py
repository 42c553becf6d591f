"""How the suite measures one run of one workload under one allocator.

Two kinds of run, kept separate because each perturbs the other's figures:

* traced runs (``traced_run``): ``strace -f --seccomp-bpf`` records every
  brk/mmap/munmap/mremap call of the workload and of every process it starts.
  From that we compute, exactly, the peak program break and the peak memory
  held from the kernel (break extent + anonymous private mappings) per
  process.  ``--seccomp-bpf`` keeps the cost near 1.04x (without it strace
  stops the tracee on every system call), but the timing is still not used.
  The preload goes in with ``strace -E LD_PRELOAD=...`` so strace itself runs
  on glibc.
* timed runs (``timed_run``): the workload is started by ``bench/launch`` (a
  tiny C fork+exec+wait4 program) so that ``ru_maxrss`` is the workload's own
  peak RSS -- a child forked from this Python process would inherit our RSS as
  its floor -- and the wall clock covers only the workload.

Both kinds hash the workload's stdout and every file it leaves in its working
folder, so the suite can refuse to time an allocator that changes a result.
"""

import bisect
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PAGE = 4096

#: System calls traced: the four that change the address space's heap and
#: anonymous memory, plus those needed to tell processes, threads and exec'd
#: images apart (a thread's calls are printed under its own tid).
TRACED_SYSCALLS = "brk,mmap,munmap,mremap,execve,execveat,clone,clone3,fork,vfork"

#: Environment variables that would change which allocator or allocator
#: settings a workload gets; removed from every run's environment.
SCRUBBED_ENV = ("LD_PRELOAD", "LD_LIBRARY_PATH", "MALLOC_CHECK_", "MALLOC_ARENA_MAX",
                "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES",
                "MALLOC_CONF", "JE_MALLOC_CONF", "MIMALLOC_VERBOSE", "TCMALLOC_RELEASE_RATE",
                "PYTHONMALLOC", "PYTHONHASHSEED", "PYTHONSTARTUP", "PYTHONPATH",
                "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "MYALLOC_STATS", "MYALLOC_STATS_FILE")


class MeasureError(RuntimeError):
    """A measurement tool is missing or broken (not a workload failure)."""


# --------------------------------------------------------------------------
# helper programs
# --------------------------------------------------------------------------

def build_helper(name, cache_dir, source=None, flags=()):
    """Compile bench/NAME.c (or SOURCE) into CACHE/bin/NAME-<hash> (only when
    the source or FLAGS changed) and return its path.  FLAGS go after the
    source (-pthread, -lm).  Helpers are built here rather than shipped
    because the suite must run wherever gcc does."""
    src = Path(source) if source else BENCH_DIR / f"{name}.c"
    out_dir = Path(cache_dir).resolve() / "bin"
    out_dir.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256(src.read_bytes())
    if flags:
        h.update(("\0" + " ".join(flags)).encode())
    exe = out_dir / f"{name}-{h.hexdigest()[:12]}"
    if not exe.exists():
        gcc = shutil.which("gcc") or shutil.which("cc")
        if not gcc:
            raise MeasureError("gcc is needed to build the benchmark helpers")
        tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
        proc = subprocess.run([gcc, "-O2", "-Wall", "-o", str(tmp), str(src), *flags],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise MeasureError(f"building {src.name} failed:\n{proc.stderr}")
        tmp.rename(exe)
    return exe


def find_strace():
    """Path of strace, or a MeasureError telling how to install it."""
    path = shutil.which("strace")
    if not path:
        raise MeasureError("strace is not installed; it measures peak brk. Install it with "
                           "`bench/install-peers.sh` (as root) or `make test-deps`")
    return path


def clean_env(extra=None):
    """The environment every run starts from: ours, minus anything that
    selects or tunes an allocator, with a fixed locale and time zone (so
    `sort`, `ls` and `git log` print the same bytes everywhere)."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update({"LC_ALL": "C", "TZ": "UTC"})
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


# --------------------------------------------------------------------------
# running and hashing
# --------------------------------------------------------------------------

@dataclass
class Command:
    """What to run: argv, extra environment, optional stdin file.  The run's
    working folder is fresh and empty; files left in it count as output."""
    argv: list
    env: dict = field(default_factory=dict)
    stdin: str = None


#: What a run without a preload (glibc's) gets in place of LD_PRELOAD: a value
#: as long as the preloaded runs' library paths (``preload_width``), so that
#: every allocator's programs start with an environment of one size.
NO_PRELOAD_VAR = "MYALLOC_BENCH_NO_PRELOAD"


def preload_stand_in(preload, preload_width):
    """The environment entry a run without a preload gets (none with one)."""
    if preload or not preload_width:
        return {}
    width = len("LD_PRELOAD=") + preload_width - len(NO_PRELOAD_VAR + "=")
    return {NO_PRELOAD_VAR: "-" * max(width, 0)}


def run_slug(allocator_name):
    """The allocator's part of a run folder's name: the same length for every
    allocator (the folder is the program's working directory and, in traced
    runs, part of MYALLOC_STATS_FILE, so a longer name was a longer
    environment; see allocators.py)."""
    return hashlib.sha256(allocator_name.encode()).hexdigest()[:8]


@dataclass
class RunDir:
    """The files of one run: ``work/`` (cwd), stdout, stderr and side files."""
    root: Path

    @property
    def work(self):
        return self.root / "work"

    @property
    def stdout(self):
        return self.root / "stdout"

    @property
    def stderr(self):
        return self.root / "stderr"

    def reset(self):
        if self.root.exists():
            shutil.rmtree(self.root)
        self.work.mkdir(parents=True)
        return self

    def stderr_tail(self, limit=600):
        try:
            data = self.stderr.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode(errors="replace").strip()


def hash_outputs(rundir):
    """SHA-256 over stdout and every file in the working folder (name and
    contents, in sorted order): the run's observable result."""
    h = hashlib.sha256()
    h.update(b"stdout\0")
    _hash_file(h, rundir.stdout)
    for path in sorted(p for p in rundir.work.rglob("*") if p.is_file()):
        h.update(b"\0file\0" + str(path.relative_to(rundir.work)).encode() + b"\0")
        _hash_file(h, path)
    return h.hexdigest()


def _hash_file(h, path):
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def _run(argv, env, rundir, stdin, timeout):
    """Run argv in rundir.work with stdout/stderr to files; kill the whole
    process group on timeout.  Returns (exit status, timed_out)."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    try:
        with open(rundir.stdout, "wb") as fout, open(rundir.stderr, "wb") as ferr:
            proc = subprocess.Popen([str(a) for a in argv], env=env, cwd=rundir.work,
                                    stdin=fin, stdout=fout, stderr=ferr,
                                    start_new_session=True)
            try:
                return proc.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return None, True
            except BaseException:
                _kill_group(proc)   # Ctrl-C: leave no workload running
                raise
    finally:
        if stdin:
            fin.close()


def _kill_group(proc):
    """Kill the run's whole process group (its own session, see _run)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class TimedResult:
    status: int
    timed_out: bool
    wall_s: float = None
    user_s: float = None
    sys_s: float = None
    maxrss_kib: int = None
    output_sha256: str = None
    error: str = None


def timed_run(cmd, preload, rundir, launcher, timeout, preload_width=0):
    """One untraced run through the launcher: wall time, CPU time, peak RSS.
    ``preload_width``: see ``preload_stand_in``."""
    rundir.reset()
    result_file = rundir.root / "launch.txt"
    argv = [launcher, result_file]
    if preload:
        argv += ["-p", preload]
    argv += ["--"] + list(cmd.argv)
    env = clean_env(dict(cmd.env, **preload_stand_in(preload, preload_width)))
    status, timed_out = _run(argv, env, rundir, cmd.stdin, timeout)
    if timed_out:
        return TimedResult(status=None, timed_out=True, error=f"timed out after {timeout} s")
    fields = {}
    if result_file.exists():
        for line in result_file.read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = int(value)
    if "status" not in fields:
        return TimedResult(status=status, timed_out=False,
                           error=f"launcher failed (exit {status}): {rundir.stderr_tail()}")
    res = TimedResult(status=fields["status"], timed_out=False,
                      wall_s=fields["wall_ns"] / 1e9, user_s=fields["utime_us"] / 1e6,
                      sys_s=fields["stime_us"] / 1e6, maxrss_kib=fields["maxrss_kib"])
    if res.status != 0:
        res.error = f"exit status {res.status}: {rundir.stderr_tail()}"
    else:
        res.output_sha256 = hash_outputs(rundir)
    return res


@dataclass
class TracedResult:
    status: int
    timed_out: bool
    trace: "TraceSummary" = None
    myalloc_stats: dict = None
    output_sha256: str = None
    error: str = None
    wall_s: float = None


def traced_run(cmd, preload, rundir, strace, timeout, keep_trace=False, preload_width=0):
    """One run under strace: exact per-process peak brk and held memory, plus
    myalloc's own statistics file (written by the last process to exit, which
    for every workload here is the top process: it waits for its children)."""
    rundir.reset()
    trace_file = rundir.root / "trace.txt"
    stats_file = rundir.root / "myalloc-stats.json"
    argv = [strace, "-f", "--seccomp-bpf", "-qq", "-e", f"trace={TRACED_SYSCALLS}",
            "-o", trace_file]
    if preload:
        argv += ["-E", f"LD_PRELOAD={preload}"]
    argv += ["--"] + list(cmd.argv)
    env = clean_env(dict(cmd.env, MYALLOC_STATS_FILE=stats_file,
                         **preload_stand_in(preload, preload_width)))
    start = time.monotonic()
    status, timed_out = _run(argv, env, rundir, cmd.stdin, timeout)
    wall = time.monotonic() - start
    if timed_out:
        return TracedResult(status=None, timed_out=True, error=f"timed out after {timeout} s")
    res = TracedResult(status=status, timed_out=False, wall_s=wall)
    if status != 0:
        res.error = f"exit status {status}: {rundir.stderr_tail()}"
        return res
    if not trace_file.exists():
        res.error = f"strace wrote no trace: {rundir.stderr_tail()}"
        return res
    res.trace = parse_trace(trace_file)
    if not keep_trace:
        trace_file.unlink()
    if stats_file.exists():
        try:
            res.myalloc_stats = json.loads(stats_file.read_text())
        except ValueError as exc:
            res.error = f"unreadable MYALLOC_STATS_FILE: {exc}"
    res.output_sha256 = hash_outputs(rundir)
    return res


# --------------------------------------------------------------------------
# strace parsing
# --------------------------------------------------------------------------

class RangeSet:
    """Disjoint half-open address ranges with their total size: enough to
    follow mmap/munmap/mremap exactly, including partial unmaps that split a
    mapping and MAP_FIXED mappings placed over part of an existing one."""

    def __init__(self):
        self.starts = []
        self.ends = {}
        self.total = 0

    def add(self, start, end):
        self.remove(start, end)
        bisect.insort(self.starts, start)
        self.ends[start] = end
        self.total += end - start

    def remove(self, start, end):
        """Remove [start, end) and return how many bytes were covered."""
        i = bisect.bisect_right(self.starts, start) - 1
        if i < 0:
            i = 0
        removed = 0
        while i < len(self.starts) and self.starts[i] < end:
            s = self.starts[i]
            e = self.ends[s]
            if e <= start:
                i += 1
                continue
            del self.starts[i]
            del self.ends[s]
            self.total -= e - s
            lo, hi = max(s, start), min(e, end)
            removed += hi - lo
            if s < lo:
                bisect.insort(self.starts, s)
                self.ends[s] = lo
                self.total += lo - s
                i += 1
            if hi < e:
                bisect.insort(self.starts, hi)
                self.ends[hi] = e
                self.total += e - hi
                i += 1
        return removed

    def covered(self, start, end):
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        n = 0
        while i < len(self.starts) and self.starts[i] < end:
            s = self.starts[i]
            n += max(0, min(self.ends[s], end) - max(s, start))
            i += 1
        return n


class Image:
    """One process image: a process from its exec (or fork) until its next
    exec or exit.  Figures are relative to the image's first break and to the
    anonymous mappings it made itself (a forked child's inherited mappings are
    unknown to us and not counted)."""

    def __init__(self, pid, command, main=False):
        self.pid = pid
        self.command = command
        self.main = main
        self.first_brk = None
        self.cur_brk = None
        self.max_brk = None
        self.anon = RangeSet()
        self.peak_held = 0
        self.brk_calls = 0
        self.map_calls = 0

    @property
    def brk_extent(self):
        if self.first_brk is None:
            return 0
        return max(0, self.cur_brk - self.first_brk)

    @property
    def peak_brk(self):
        if self.first_brk is None:
            return 0
        return self.max_brk - self.first_brk

    @property
    def held(self):
        return self.brk_extent + self.anon.total

    def note(self):
        self.peak_held = max(self.peak_held, self.held)

    def as_dict(self):
        return {"pid": self.pid, "command": self.command, "main": self.main,
                "peak_brk": self.peak_brk, "peak_held": self.peak_held,
                "final_brk": self.brk_extent, "final_held": self.held,
                "brk_calls": self.brk_calls, "map_calls": self.map_calls}


@dataclass
class TraceSummary:
    """Per-trace result.  ``peak_brk``/``peak_held`` are the maxima over all
    process images (the figure for multi-process workloads such as gcc is its
    largest process, e.g. cc1); the ``*_main`` figures are the top process's."""
    peak_brk: int
    peak_held: int
    peak_brk_main: int
    peak_held_main: int
    peak_brk_command: str
    peak_held_command: str
    processes: int
    images: list

    def as_dict(self):
        d = dict(self.__dict__)
        d["images"] = [i.as_dict() for i in self.images]
        return d


_LINE_RE = re.compile(r"^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(.*)$")
_CALL_RE = re.compile(r"^(\w+)\((.*)$")
_UNFINISHED = " <unfinished ...>"
_RESUMED_RE = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")


_RESULT_RE = re.compile(r"^(.*)\)\s+=\s+(\S+)(?:\s.*)?$")


def _split_result(rest):
    """'args)   = ret [ERRNO (text)]' -> (args, ret); (rest, None) if the
    call has no result (a process that exited inside it)."""
    m = _RESULT_RE.match(rest)
    if not m or m.group(2) == "?":
        return rest, None
    return m.group(1), m.group(2)


def _int(token):
    return int(token, 0)


def _page_up(n):
    return (n + PAGE - 1) & ~(PAGE - 1)


def iter_calls(lines):
    """Yield (tid, name, args, ret) for every completed system call, joining
    '<unfinished ...>' halves with their '<... resumed>' rest (with -f the
    calls of different threads interleave).  tid is None without -f."""
    pending = {}
    for raw in lines:
        m = _LINE_RE.match(raw.rstrip("\n"))
        tid_s = m.group(1) or m.group(2)
        tid = int(tid_s) if tid_s else None
        text = m.group(3)
        if text.startswith("---") or text.startswith("+++"):
            continue
        if text.endswith(_UNFINISHED):
            pending[tid] = text[: -len(_UNFINISHED)]
            continue
        r = _RESUMED_RE.match(text)
        if r:
            head = pending.pop(tid, None)
            if head is None:
                continue
            text = head + r.group(2)
        c = _CALL_RE.match(text)
        if not c:
            continue
        args, ret = _split_result(c.group(2))
        if ret is None:
            continue
        yield tid, c.group(1), args, ret


def parse_trace(path_or_lines):
    """Summarise an ``strace -f`` trace of TRACED_SYSCALLS (see TraceSummary).

    Two passes: the first maps thread ids to their process (clone with
    CLONE_THREAD) -- needed first because a new thread's own calls can be
    printed before its parent's clone returns -- the second replays the
    address-space calls per process image."""
    if isinstance(path_or_lines, (str, Path)):
        with open(path_or_lines, errors="replace") as f:
            calls = list(iter_calls(f))
    else:
        calls = list(iter_calls(path_or_lines))

    parent_of_thread = {}
    parent_of_process = {}
    for tid, name, args, ret in calls:
        if name in ("clone", "clone3", "fork", "vfork") and ret.isdigit():
            if "CLONE_THREAD" in args:
                parent_of_thread[int(ret)] = tid
            else:
                parent_of_process[int(ret)] = tid

    def tgid(tid):
        seen = 0
        while tid in parent_of_thread and seen < 10_000:
            tid = parent_of_thread[tid]
            seen += 1
        return tid

    images = []
    current = {}          # tgid -> Image
    top = None
    for tid, name, args, ret in calls:
        pid = tgid(tid)
        if top is None:
            top = pid
        if name in ("execve", "execveat"):
            if ret != "0":
                continue
            m = re.search(r'"((?:[^"\\]|\\.)*)"', args)
            command = os.path.basename(m.group(1)) if m else "?"
            main = pid == top and not any(i.pid == top for i in images)
            img = Image(pid, command, main=main)
            images.append(img)
            current[pid] = img
            continue
        img = current.get(pid)
        if img is None:
            # A forked child before any exec: an image of its own, named after
            # its parent's command.
            parent = current.get(tgid(parent_of_process.get(pid, -1)))
            command = (parent.command if parent else "?") + " (fork)"
            img = Image(pid, command, main=(pid == top and not images))
            images.append(img)
            current[pid] = img
        if ret.startswith("-"):
            continue  # failed call: nothing changed
        if name == "brk":
            value = _int(ret)
            img.brk_calls += 1
            if img.first_brk is None:
                img.first_brk = img.max_brk = value
            img.cur_brk = value
            img.max_brk = max(img.max_brk, value)
        elif name == "mmap":
            a = [s.strip() for s in args.split(",")]
            if len(a) < 6:
                continue
            start = _int(ret)
            end = start + _page_up(_int(a[1]))
            img.map_calls += 1
            img.anon.remove(start, end)   # a MAP_FIXED mapping replaces what was there
            if "MAP_ANONYMOUS" in a[3] and "MAP_PRIVATE" in a[3]:
                img.anon.add(start, end)
        elif name == "munmap":
            a = [s.strip() for s in args.split(",")]
            start = _int(a[0])
            img.map_calls += 1
            img.anon.remove(start, start + _page_up(_int(a[1])))
        elif name == "mremap":
            a = [s.strip() for s in args.split(",")]
            old, old_size, new_size = _int(a[0]), _page_up(_int(a[1])), _page_up(_int(a[2]))
            new = _int(ret)
            img.map_calls += 1
            if old_size and img.anon.covered(old, old + old_size):
                img.anon.remove(old, old + old_size)
                img.anon.add(new, new + new_size)
            elif new != old:
                img.anon.remove(new, new + new_size)
        else:
            continue
        img.note()

    for img in images:
        img.note()
    if not images:
        return TraceSummary(0, 0, 0, 0, "", "", 0, [])
    mains = [i for i in images if i.main] or images[:1]
    by_brk = max(images, key=lambda i: i.peak_brk)
    by_held = max(images, key=lambda i: i.peak_held)
    return TraceSummary(
        peak_brk=by_brk.peak_brk, peak_held=by_held.peak_held,
        peak_brk_main=max(i.peak_brk for i in mains),
        peak_held_main=max(i.peak_held for i in mains),
        peak_brk_command=by_brk.command, peak_held_command=by_held.command,
        processes=len({i.pid for i in images}), images=images)
