"""Which allocators to compare, where their libraries are, and their versions.

glibc's malloc is the baseline (no preload) and is always measured: every
ratio in the report is relative to it and every output is checked against
it.  myalloc is this repository's library; the peers (jemalloc, mimalloc,
tcmalloc) are found by globbing the usual library folders, so a Debian
package (bench/install-peers.sh) or a local build both work, and a missing
peer is reported and skipped instead of failing the suite.  Any other
library can be added as ``name=/path/lib.so``.

Every preloaded library is copied into the cache before the run, as
CACHE/lib/<sha256 prefix>.so: the lead may rebuild target/release/libmyalloc.so
while a 10-minute benchmark runs, and a snapshot keeps every run of one
benchmark on one build (its SHA-256 and the git commit are recorded); and
every library's path then has the same length, so no allocator's programs
start with a longer environment (LD_PRELOAD) than another's.  That matters:
the same library run under two allocator names once moved py-json's peak
break by 2.8 % and py-decimal's by 6.7 %, run after run, because the
interpreter's own allocations shift with the size of its environment.
"""

import glob
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MYALLOC = REPO_DIR / "target" / "release" / "libmyalloc.so"
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
            "/lib/x86_64-linux-gnu")

#: Peer allocators: name -> library file names, most preferred first.
PEERS = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc.so"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so"),
}
DEFAULT_ORDER = ("glibc", "myalloc", "jemalloc", "mimalloc", "tcmalloc")


@dataclass
class Allocator:
    """``lib`` is None for glibc (no preload); ``source`` is the path the
    library was found at (``lib`` may be a snapshot copy of it)."""
    name: str
    lib: str
    source: str
    version: str


def find_peer(name):
    for filename in PEERS[name]:
        for folder in LIB_DIRS:
            hits = sorted(glob.glob(os.path.join(folder, filename)))
            if hits:
                return hits[0]
    return None


def discover(spec, myalloc_path, cache_dir):
    """Resolve ``--allocators`` (None = every one available) into Allocator
    objects.  Returns (allocators, skipped) where skipped lists
    (name, reason) for peers that are not installed or cannot be preloaded."""
    wanted = [s.strip() for s in spec.split(",") if s.strip()] if spec else list(DEFAULT_ORDER)
    explicit = bool(spec)
    result = [Allocator("glibc", None, "", glibc_version())]
    skipped = []
    for item in wanted:
        name, _, path = item.partition("=")
        if name == "glibc":
            continue
        if any(a.name == name for a in result):
            raise SystemExit(f"--allocators: {name} given twice")
        if path:
            source = os.path.abspath(path)
        elif name == "myalloc":
            source = str(Path(myalloc_path or DEFAULT_MYALLOC).resolve())
        elif name in PEERS:
            source = find_peer(name)
            if not source:
                skipped.append((name, "not installed (bench/install-peers.sh installs it)"))
                continue
        else:
            raise SystemExit(f"--allocators: unknown allocator {name!r}; "
                             f"use one of {', '.join(DEFAULT_ORDER)} or NAME=/path/lib.so")
        if not os.path.isfile(source):
            msg = f"{source} does not exist"
            if name == "myalloc":
                msg += " (build it with `make build`, or pass --myalloc PATH)"
            if name == "myalloc" or explicit:
                raise SystemExit(f"{name}: {msg}")
            skipped.append((name, msg))
            continue
        lib = snapshot(source, cache_dir)
        problem = preload_problem(lib)
        if problem:
            if name == "myalloc":
                raise SystemExit(f"myalloc: {lib} cannot be preloaded: {problem}")
            skipped.append((name, f"cannot be preloaded: {problem}"))
            continue
        result.append(Allocator(name, lib, source, library_version(name, source)))
    return result, skipped


def preload_width(allocators):
    """Length of the preloaded libraries' paths (snapshots: one length), which
    runs without a preload match with a stand-in (``measure.preload_stand_in``)."""
    return max((len(a.lib) for a in allocators if a.lib), default=0)


def snapshot(source, cache_dir):
    """Copy the library to CACHE/lib/<sha>.so and return that path (the same
    length for every library)."""
    data = Path(source).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(cache_dir).resolve() / "lib"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{digest}.so"
    if not target.exists():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        tmp.rename(target)
    return str(target)


def preload_problem(lib):
    """None if `true` runs with the library preloaded; else ld.so's complaint
    (ld.so only warns and carries on without a library it cannot load, which
    would silently benchmark glibc under the library's name)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["LD_PRELOAD"] = lib
    proc = subprocess.run(["/bin/true"], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or "LD_PRELOAD" in proc.stderr or "cannot" in proc.stderr:
        return proc.stderr.strip() or f"exit status {proc.returncode}"
    return None


def glibc_version():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or "glibc"
    except (ValueError, OSError):
        return "glibc"


def library_version(name, path):
    """Debian package and version owning `path`; for myalloc the git commit of
    this repository (marked -dirty when src/ differs from it); else the
    file's SHA-256 prefix."""
    if name == "myalloc" and Path(path).resolve().is_relative_to(REPO_DIR):
        return "git " + repo_commit()
    pkg = dpkg_owner(path)
    if pkg:
        return pkg
    return "sha256 " + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def dpkg_owner(path):
    """'package version' of the Debian package that ships `path`, or None."""
    if not shutil.which("dpkg-query"):
        return None
    for candidate in dict.fromkeys([path, os.path.realpath(path)]):
        proc = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if proc.returncode == 0 and ":" in proc.stdout:
            pkg = proc.stdout.split(": ", 1)[0].split(",")[0].strip()
            ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                 capture_output=True, text=True)
            if ver.returncode == 0 and ver.stdout:
                return f"{pkg} {ver.stdout.strip()}"
    return None


def repo_commit():
    """Short commit of this repository, '-dirty' if the library's sources or
    build files differ from it.  Read-only git commands only (no index
    refresh: --no-optional-locks)."""
    git = ["git", "--no-optional-locks", "-C", str(REPO_DIR)]
    proc = subprocess.run(git + ["rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if proc.returncode != 0:
        return "unknown"
    commit = proc.stdout.strip()
    dirty = subprocess.run(git + ["diff", "--quiet", "HEAD", "--", "src", "Cargo.toml",
                                  "Cargo.lock"], capture_output=True)
    return commit + ("-dirty" if dirty.returncode == 1 else "")
