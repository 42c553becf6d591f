"""The benchmark's workloads: real programs with realistic allocation patterns.

Two groups:

* Python (bench/pyworkloads.py): eight programs, each run twice -- with the
  default pymalloc, which serves objects up to 512 bytes from its own arenas
  and asks malloc only for 256 KiB arenas and large objects, and with
  ``PYTHONMALLOC=malloc``, which sends every object through the allocator
  under test (a very different, much heavier load).
* command-line programs: ls, grep, sort, gcc, sqlite3, git, xz -- each with a
  distinct malloc profile (many small directory entries, one big line
  buffer, a huge sort buffer, compiler obstacks and GC pages, page cache,
  packfile windows, the LZMA match finder).

Every workload writes its result to stdout or into its working folder; the
suite hashes both and requires the same hash under every allocator.
"""

import fnmatch
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from inputs import ensure_inputs, git_env
from measure import Command

BENCH_DIR = Path(__file__).resolve().parent

PY_WORKLOADS = ("json", "ast", "sqlite", "regex", "pickle", "churn", "decimal", "strings")
PY_MODES = ("pymalloc", "malloc")


@dataclass
class Workload:
    """One benchmark program.  ``warmup`` asks for one untimed run at the
    start of each timing round (for file-system-bound programs whose first run
    after other work is slowed by a cold dentry/page cache)."""
    name: str
    group: str
    description: str
    command: Command
    warmup: bool = False
    base: str = ""
    tags: list = field(default_factory=list)

    def display_command(self):
        parts = []
        for key, value in sorted(self.command.env.items()):
            if key in ("PYTHONMALLOC",):
                parts.append(f"{key}={value}")
        parts += [_quote(_short(a)) for a in self.command.argv]
        text = " ".join(parts)
        if self.command.stdin:
            text += " < " + _short(self.command.stdin)
        return text


def _quote(text):
    """Shell-quote for display, leaving the $CACHE placeholder readable."""
    return text if text.startswith("$CACHE") else shlex.quote(text)


def _short(arg):
    """Shorten absolute paths into the cache/bench folders for display."""
    s = str(arg)
    for prefix, label in ((str(BENCH_DIR / ".cache"), "$CACHE"), (str(BENCH_DIR), "bench")):
        if s.startswith(prefix + "/"):
            return label + s[len(prefix):]
    return s


def real_python(python=None):
    """The real interpreter binary (never the pyenv bash shim: under
    LD_PRELOAD that shim's bash would run on the allocator too).  Resolves
    symlinks and checks for an ELF header."""
    path = Path(os.path.realpath(python or sys.executable))
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            raise SystemExit(f"{path} is not an ELF executable (a shim?); pass --python "
                             "with the real interpreter")
    return path


def build_workloads(cache_dir, quick, python=None):
    """All workloads for full or quick mode, generating their inputs first."""
    mode = "quick" if quick else "full"
    inputs = ensure_inputs(cache_dir, mode)
    python = real_python(python)
    scale = 0.25 if quick else 1.0
    out = []

    py_desc = {
        "json": "json.loads/dumps of a %s document, 3 rounds" % _size(inputs / "data.json"),
        "ast": "ast.parse + compile() of standard-library modules",
        "sqlite": "sqlite3 module: in-memory table, indexes, GROUP BY",
        "regex": "re.findall/finditer/sub/split over a %s log" % _size(inputs / "log.txt"),
        "pickle": "pickle dumps/loads of an object graph, 4 rounds",
        "churn": "dict/list churn: random replacement in a 20k working set",
        "decimal": "decimal arithmetic at 60 digits (sqrt, ln, division)",
        "strings": "string building: f-strings, replace, join, split, encode",
    }
    for name in PY_WORKLOADS:
        for pymode in PY_MODES:
            out.append(Workload(
                name=f"py-{name}/{pymode}", group="python", base=f"py-{name}",
                description=py_desc[name] + (" (PYTHONMALLOC=malloc)" if pymode == "malloc"
                                             else " (pymalloc)"),
                command=Command(
                    argv=[python, "-s", BENCH_DIR / "pyworkloads.py", name, scale, inputs],
                    env={"PYTHONMALLOC": pymode, "PYTHONHASHSEED": "0",
                         "PYTHONDONTWRITEBYTECODE": "1"})))

    ls_root = "/usr/share" if quick else "/usr"
    grep_root = "/usr/include/c++" if quick else "/usr/include"
    sort_in = inputs / "sort.txt"
    out += [
        Workload("ls", "cli", f"ls -laR {ls_root}: directory listing, many small allocations",
                 Command(["ls", "-laR", ls_root]), warmup=True),
        Workload("grep", "cli", f"grep -rn over {grep_root} (output to a file)",
                 Command(["grep", "-rn", "-E", r"alloc|free|struct [a-z_]+ \{", grep_root]),
                 warmup=True),
        Workload("sort", "cli", f"GNU sort of {_size(sort_in)} ({_lines(sort_in)} lines)",
                 Command(["sort", "-o", "sorted.txt", sort_in])),
        Workload("gcc", "cli", f"gcc -O2 -c of a generated {_size(inputs / 'big.c')} C file",
                 Command(["gcc", "-O2", "-c", "-o", "big.o", inputs / "big.c"])),
        Workload("sqlite3", "cli", "sqlite3 shell: CTE bulk insert, index, joins, window functions",
                 Command(["sqlite3", ":memory:"], stdin=str(inputs / "script.sql"))),
        Workload("git-log", "cli", "git log -p on a generated repository",
                 Command(["git", "--no-pager", "-C", inputs / "repo.git", "log", "-p"],
                         env=_git_env_delta())),
        Workload("xz", "cli", f"xz -6 -T1 of {_size(inputs / 'xz.txt')} of text",
                 Command(["xz", "-6", "-T1", "-c", inputs / "xz.txt"])),
    ]
    for w in out:
        if not w.base:
            w.base = w.name
    return out


def _git_env_delta():
    """Only the variables git_env() sets, as a delta for the run's environment."""
    full = git_env()
    return {k: full[k] for k in ("GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "HOME")}


def _size(path):
    n = Path(path).stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _lines(path):
    with open(path, "rb") as f:
        n = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def select(workloads, only):
    """Filter by --only: comma-separated names or shell patterns, matched
    against the full name (``py-json/malloc``) and the base name
    (``py-json`` selects both Python modes; ``py-*`` all Python)."""
    if not only:
        return list(workloads)
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [w for w in workloads
              if any(fnmatch.fnmatchcase(w.name, p) or fnmatch.fnmatchcase(w.base, p)
                     or fnmatch.fnmatchcase(w.group, p) for p in patterns)]
    unknown = [p for p in patterns
               if not any(fnmatch.fnmatchcase(w.name, p) or fnmatch.fnmatchcase(w.base, p)
                          or fnmatch.fnmatchcase(w.group, p) for w in workloads)]
    if unknown:
        names = ", ".join(w.name for w in workloads)
        raise SystemExit(f"--only: no workload matches {', '.join(unknown)} (known: {names})")
    return chosen
