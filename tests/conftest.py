"""Shared fixtures and helpers for the myalloc integration tests.

The library under test is ``libmyalloc.so``: located through the ``MYALLOC_LIB``
environment variable if set, else ``<repo>/target/release/libmyalloc.so``
(built by ``cargo build --release``).  A missing library makes the tests FAIL
(never skip) with a message saying how to build it.

Fixtures
    lib      absolute path of the library (fails the test if missing)
    build    build("name.c", defines={...}) -> path of an executable compiled
             once per session from tests/c/ (gcc -O1 -g -pthread; g++ for .cpp)
    run      run(exe, args, preload=True, env=None, input=None)
             -> (returncode, stdout, stderr)
    run_ok   run a test program under LD_PRELOAD, require exit 0 and
             "preloaded=1", return its key=value lines as a dict
    report   report(text): adds a line to the "myalloc measurements" summary
             printed at the end of the session

Markers
    slow     long-running tests (CPython regression slice);
             deselect with ``-m "not slow"``
"""

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
C_DIR = TESTS_DIR / "c"
DATA_DIR = TESTS_DIR / "data"

# Extra flags: -fno-builtin keeps gcc from treating malloc/free/memset as
# builtins (it would otherwise delete malloc/free pairs, dead stores before
# free, or turn malloc+memset into calloc -- all of which would make tests
# vacuous).  -fno-allocation-dce does the same for C++ new/delete pairs.
CFLAGS = ["-std=gnu11", "-O1", "-g", "-pthread", "-fno-builtin", "-Wall",
          "-Wno-deprecated-declarations", "-Wno-free-nonheap-object",
          "-Wno-use-after-free", "-Wno-alloc-size-larger-than"]
CXXFLAGS = ["-std=gnu++17", "-O1", "-g", "-pthread", "-fno-builtin",
            "-fno-allocation-dce", "-Wall", "-Wno-deprecated-declarations"]

_MEASUREMENTS_KEY = pytest.StashKey[list]()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: long-running test (CPython regression slice under preload); "
        "deselect with -m 'not slow'")
    config.stash[_MEASUREMENTS_KEY] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(_MEASUREMENTS_KEY, [])
    if lines:
        terminalreporter.section("myalloc measurements")
        for line in lines:
            terminalreporter.write_line(line)


# --------------------------------------------------------------------------
# library location
# --------------------------------------------------------------------------

def lib_path():
    """Absolute path of libmyalloc.so; fails the calling test if missing."""
    env = os.environ.get("MYALLOC_LIB")
    path = Path(env) if env else REPO_DIR / "target" / "release" / "libmyalloc.so"
    path = path.resolve()
    if not path.is_file():
        origin = ("MYALLOC_LIB=" + env) if env else "the default location"
        pytest.fail(
            f"libmyalloc.so not found at {path} ({origin}). Build it with "
            f"`cargo build --release` in {REPO_DIR}, or point MYALLOC_LIB at it.",
            pytrace=False)
    return str(path)


@pytest.fixture(scope="session")
def lib():
    return lib_path()


# --------------------------------------------------------------------------
# compiling the C / C++ test programs (once per session)
# --------------------------------------------------------------------------

class Builder:
    def __init__(self, outdir):
        self.outdir = Path(outdir)
        self.cache = {}

    def __call__(self, source, defines=None, extra=()):
        src = C_DIR / source
        defines = dict(defines or {})
        key = (source, tuple(sorted(defines.items())), tuple(extra))
        if key in self.cache:
            return self.cache[key]
        if not src.is_file():
            pytest.fail(f"test source {src} does not exist", pytrace=False)
        suffix = "".join(f"_{k}{v}" for k, v in sorted(defines.items()))
        suffix = re.sub(r"[^A-Za-z0-9_]", "_", suffix)
        out = self.outdir / f"{src.stem}{suffix}"
        if src.suffix in (".cpp", ".cc"):
            cmd = ["g++", *CXXFLAGS]
        else:
            cmd = ["gcc", *CFLAGS]
        cmd += [f"-D{k}={v}" for k, v in sorted(defines.items())]
        cmd += ["-I", str(C_DIR), str(src), "-o", str(out), *extra, "-ldl"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"compiling {source} failed:\n$ {' '.join(cmd)}\n"
                        f"{proc.stdout}{proc.stderr}", pytrace=False)
        self.cache[key] = str(out)
        return str(out)


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    return Builder(tmp_path_factory.mktemp("bin"))


# --------------------------------------------------------------------------
# running programs
# --------------------------------------------------------------------------

def make_env(preload=True, env=None):
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)
    e.pop("MALLOC_CHECK_", None)
    e.pop("GLIBC_TUNABLES", None)
    e["LC_ALL"] = "C"
    if env:
        for k, v in env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = str(v)
    if preload:
        e["LD_PRELOAD"] = lib_path()
    return e


def run(exe, args=(), preload=True, env=None, input=None, timeout=300,
        binary=False, cwd=None):
    """Run exe (a path or an argv list) and return (returncode, stdout, stderr).

    preload=True puts libmyalloc.so in LD_PRELOAD (and fails the test if the
    library is missing); preload=False runs against glibc's malloc.
    stdout/stderr are str unless binary=True.  A run longer than `timeout`
    seconds is killed (whole process group) and fails the test.
    """
    argv = [str(a) for a in exe] if isinstance(exe, (list, tuple)) else [str(exe)]
    argv += [str(a) for a in args]
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.Popen(
        argv, env=make_env(preload, env), cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(argv)} (preload={preload}) timed out after "
                    f"{timeout}s (deadlock?)\nstdout tail:\n"
                    f"{out[-2000:].decode(errors='replace')}\nstderr tail:\n"
                    f"{err[-2000:].decode(errors='replace')}", pytrace=False)
    if not binary:
        out = out.decode(errors="replace")
        err = err.decode(errors="replace")
    return proc.returncode, out, err


def parse_kv(text):
    """key=value lines -> dict of str (later keys win)."""
    d = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("FAIL"):
            k, _, v = line.partition("=")
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\[\]]*", k.strip()):
                d[k.strip()] = v.strip()
    return d


def describe(rc, out, err, limit=4000):
    return (f"exit status {rc}\n--- stdout ---\n{out[-limit:]}\n"
            f"--- stderr ---\n{err[-limit:]}")


def assert_preloaded(out, rc=None, err=""):
    """The C programs print preloaded=1 when myalloc_stats_get is visible."""
    kv = parse_kv(out)
    assert kv.get("preloaded") == "1", (
        "libmyalloc.so was not active in the program (expected 'preloaded=1': "
        "myalloc_stats_get not found by dlsym)\n" + describe(rc, out, err))


def run_ok(exe, args=(), env=None, input=None, timeout=300):
    """Run under preload; require exit 0 and preloaded=1; return key=values."""
    rc, out, err = run(exe, args, preload=True, env=env, input=input,
                       timeout=timeout)
    assert_preloaded(out, rc, err)
    assert rc == 0, f"{Path(str(exe)).name} {' '.join(map(str, args))}: " + describe(rc, out, err)
    return parse_kv(out)


# Exposed under the names the tests use.
@pytest.fixture(name="run", scope="session")
def _run_fixture():
    return run


@pytest.fixture(name="run_ok", scope="session")
def _run_ok_fixture():
    return run_ok


@pytest.fixture(scope="session")
def report(pytestconfig):
    """report(text) adds a line to the end-of-session measurement summary."""
    lines = pytestconfig.stash[_MEASUREMENTS_KEY]

    def _report(text):
        lines.append(text)
        print(text)
    return _report
