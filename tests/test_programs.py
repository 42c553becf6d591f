"""Real programs produce byte-identical output with and without myalloc.

Every program runs twice at the same time (2 cores): once against glibc's
malloc and once under LD_PRELOAD=libmyalloc.so, with stdout and stderr
going to files.  The test requires the plain run to succeed (sanity of the
test itself), the same exit status under the preload, identical stdout
bytes, and no "myalloc:" report on stderr.

The preload is verified for programs we do not control through the dynamic
loader: the preloaded run has LD_DEBUG=bindings with LD_DEBUG_OUTPUT pointing
into the test's temporary directory, and every binding of malloc, free,
calloc and realloc it records, in every process (children included), must
go to libmyalloc.so -- and there must be at least one.

The slow marker selects the CPython regression-test slice
(deselect with -m "not slow"); there the preload is verified by a probe
process with the same environment instead (see that test).
"""

import filecmp
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA_DIR, lib_path, make_env

ALLOC_SYMBOLS = ("malloc", "free", "calloc", "realloc")
BINDING_RE = re.compile(
    r"binding file (.+?) \[\d+\] to (.+?) \[\d+\]: normal symbol `(malloc|free|calloc|realloc)'")


class Result:
    def __init__(self, rc, out, err, debug_prefix):
        self.rc, self.out, self.err, self.debug_prefix = rc, out, err, debug_prefix

    def stderr_tail(self, n=3000):
        return self.err.read_bytes()[-n:].decode(errors="replace")


def run_pair(tmp_path, name, argv, *, env=None, stdin=None, cwd=None, timeout=900):
    """Run argv without and with the preload, concurrently.

    stdin: a path whose contents feed both runs.  Returns (plain, preloaded).
    """
    lib = lib_path()  # fails the test early if the library is missing
    if not shutil.which(str(argv[0])):
        pytest.fail(f"{argv[0]} is not installed on this machine (the test needs it)",
                    pytrace=False)
    procs = []
    for mode in ("plain", "myalloc"):
        out = tmp_path / f"{name}.{mode}.out"
        err = tmp_path / f"{name}.{mode}.err"
        extra = dict(env or {})
        debug_prefix = None
        if mode == "myalloc":
            debug_dir = tmp_path / f"{name}.lddebug"
            debug_dir.mkdir(exist_ok=True)
            debug_prefix = debug_dir / "ld"
            extra["LD_DEBUG"] = "bindings"
            extra["LD_DEBUG_OUTPUT"] = str(debug_prefix)
        e = make_env(preload=(mode == "myalloc"), env=extra)
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        fout, ferr = open(out, "wb"), open(err, "wb")
        p = subprocess.Popen([str(a) for a in argv], env=e, cwd=cwd, stdin=fin,
                             stdout=fout, stderr=ferr, start_new_session=True)
        procs.append((p, out, err, debug_prefix, (fin, fout, ferr)))
    results = []
    for p, out, err, debug_prefix, files in procs:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q, *_ in procs:
                try:
                    os.killpg(q.pid, 9)
                except ProcessLookupError:
                    pass
            pytest.fail(f"{name}: {' '.join(map(str, argv))} timed out after {timeout}s")
        finally:
            for f in files:
                if f is not subprocess.DEVNULL:
                    f.close()
        results.append(Result(rc, out, err, debug_prefix))
    plain, pre = results
    assert plain.rc == 0, (f"{name} fails even without the preload (test problem): "
                           f"exit {plain.rc}\n{plain.stderr_tail()}")
    check_preload_bindings(pre.debug_prefix, lib)
    return plain, pre


def check_preload_bindings(debug_prefix, lib):
    """Every malloc/free/calloc/realloc binding recorded by LD_DEBUG must go to
    libmyalloc.so.  A non-PIE executable that takes the address of free (cc1
    does) gets a canonical PLT entry that other objects bind to; that is fine
    when the executable's own reference to the symbol is bound to the library
    in the same process, because the stub then jumps there."""
    files = sorted(debug_prefix.parent.glob(debug_prefix.name + ".*"))
    assert files, "no LD_DEBUG output was written: the program did not start?"
    lib = os.path.realpath(lib)
    good, bad = 0, []
    for f in files:
        bindings = set()
        with open(f, errors="replace") as fh:
            for line in fh:
                if "normal symbol `" not in line:
                    continue
                m = BINDING_RE.search(line)
                if m:
                    bindings.add((m.group(1), m.group(2), m.group(3)))
        forwarding = {(src, sym) for src, dst, sym in bindings
                      if os.path.realpath(dst) == lib}
        for src, dst, sym in sorted(bindings):
            if os.path.realpath(dst) == lib:
                good += 1
            elif (dst, sym) not in forwarding and len(bad) < 20:
                bad.append(f"{f.name}: {src} -> {dst}: {sym}")
    assert good > 0, ("no malloc/free/calloc/realloc binding to libmyalloc.so was "
                      f"recorded in {len(files)} LD_DEBUG files: was the preload active?")
    assert not bad, ("allocation symbols bound to something other than "
                     "libmyalloc.so:\n" + "\n".join(bad))


def first_difference(a: Path, b: Path):
    la = a.read_bytes().splitlines()
    lb = b.read_bytes().splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i + 1}:\n  glibc:   {x[:300]!r}\n  myalloc: {y[:300]!r}"
    return f"one output is a prefix of the other: {len(la)} vs {len(lb)} lines"


def assert_same(plain, pre, name):
    assert pre.rc == plain.rc, (
        f"{name}: exit status {pre.rc} under myalloc, {plain.rc} under glibc\n"
        f"stderr (myalloc):\n{pre.stderr_tail()}")
    err = pre.err.read_bytes()
    assert b"myalloc:" not in err, f"{name}: myalloc reported an error:\n{pre.stderr_tail()}"
    if not filecmp.cmp(plain.out, pre.out, shallow=False):
        pytest.fail(f"{name}: stdout differs ({plain.out.stat().st_size} bytes under glibc, "
                    f"{pre.out.stat().st_size} under myalloc); first difference at "
                    f"{first_difference(plain.out, pre.out)}\nstderr (myalloc):\n"
                    f"{pre.stderr_tail()}", pytrace=False)
    assert plain.out.stat().st_size > 0, f"{name}: no output at all (test problem)"


# --------------------------------------------------------------------------
# generated inputs (deterministic)
# --------------------------------------------------------------------------

def make_sort_input(path, lines=500_000, seed=1234):
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    with open(path, "w") as f:
        for _ in range(lines):
            word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
            f.write(f"{word}\t{rng.randrange(10 ** 9)}\n")


def make_c_source(path, n_funcs=2000, seed=7):
    rng = random.Random(seed)
    out = ["#include <stddef.h>\n",
           "struct S { int a; long b; double c; char name[32]; };\n"]
    out += [f"static const long table_{t} = {t * 17};\n" for t in range(7)]
    for i in range(n_funcs):
        k = rng.randint(1, 9)
        out.append(
            f"long func_{i}(const int *v, size_t n, struct S *s) {{\n"
            f"    long acc = {rng.randint(0, 1000)};\n"
            f"    for (size_t j = 0; j < n; j++) {{\n"
            f"        if (v[j] % {rng.randint(2, 9)} == 0)\n"
            f"            acc += (v[j] * {rng.randint(2, 99)}) ^ ((long)j << {k});\n"
            f"        else\n"
            f"            acc = acc * 31 + s->a;\n"
            f"    }}\n"
            f"    s->c *= 1.{rng.randint(1, 9)};\n"
            f"    s->name[{i % 32}] = (char)acc;\n"
            f"    return acc + s->b + table_{i % 7};\n"
            f"}}\n")
    out.append("long (*table[])(const int *, size_t, struct S *) = {\n" +
               ",\n".join(f"    func_{i}" for i in range(n_funcs)) + "\n};\n")
    Path(path).write_text("".join(out))


def make_text(path, size, seed=99):
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 12)))
             for _ in range(5000)]
    n = 0
    with open(path, "w") as f:
        while n < size:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 20)))
            line += f" {rng.randrange(10 ** 6)}\n"
            f.write(line)
            n += len(line)


def make_git_repo(path, commits=400):
    """A repository with `commits` commits over 25 files, built by fast-import
    (fixed dates and identities, so `git log` output is reproducible)."""
    rng = random.Random(5)
    env = make_env(preload=False, env=git_env(path.parent))
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], env=env, check=True)
    files = {f"dir{i % 5}/file{i}.txt": [] for i in range(25)}
    stream = []
    for c in range(commits):
        touched = rng.sample(sorted(files), rng.randint(1, 4))
        when = 1_600_000_000 + c * 3600
        stream.append(f"commit refs/heads/main\nmark :{c + 1}\n"
                      f"author Tester {c % 7} <t{c % 7}@example.com> {when} +0000\n"
                      f"committer Tester <t@example.com> {when} +0000\n")
        msg = f"commit {c}: change {', '.join(touched)}\n\n" + "details " * rng.randint(0, 30) + "\n"
        stream.append(f"data {len(msg.encode())}\n{msg}")
        if c:
            stream.append(f"from :{c}\n")
        for name in touched:
            lines = files[name]
            for _ in range(rng.randint(1, 20)):
                op = rng.random()
                if op < 0.6 or not lines:
                    lines.insert(rng.randint(0, len(lines)), f"line {c} {rng.random():.6f}")
                elif op < 0.8:
                    del lines[rng.randrange(len(lines))]
                else:
                    lines[rng.randrange(len(lines))] += " edited"
            body = "\n".join(lines) + "\n"
            stream.append(f"M 100644 inline {name}\ndata {len(body.encode())}\n{body}")
        stream.append("\n")
    subprocess.run(["git", "fast-import", "--quiet"], input="".join(stream).encode(),
                   cwd=path, env=env, check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=path, env=env, check=True)


def git_env(home):
    return {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_PAGER": "cat",
            "PAGER": "cat", "TZ": "UTC", "GIT_CONFIG_GLOBAL": "/dev/null"}


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_ls_recursive(tmp_path):
    plain, pre = run_pair(tmp_path, "ls", ["ls", "-laR", "/usr/share/doc"], env={"TZ": "UTC"})
    assert_same(plain, pre, "ls -laR /usr/share/doc")


def test_grep_recursive(tmp_path):
    plain, pre = run_pair(tmp_path, "grep", ["grep", "-rn", "define", "/usr/include"])
    assert_same(plain, pre, "grep -rn define /usr/include")


@pytest.mark.parametrize("args", [[], ["-t", "\t", "-k2,2n", "-k1,1r", "-S", "2M"]],
                         ids=["default", "numeric_external_merge"])
def test_sort_large_file(tmp_path, args):
    data = tmp_path / "lines.txt"
    make_sort_input(data)
    plain, pre = run_pair(tmp_path, "sort", ["sort", *args, str(data)],
                          env={"TMPDIR": str(tmp_path)})
    assert_same(plain, pre, f"sort {' '.join(args)}")


@pytest.mark.parametrize("pymalloc", ["default", "malloc"])
def test_python_allocation_heavy_script(tmp_path, pymalloc):
    env = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONMALLOC": None if pymalloc == "default" else "malloc"}
    plain, pre = run_pair(tmp_path, "python",
                          [sys.executable, "-s", str(DATA_DIR / "alloc_heavy.py")], env=env)
    assert_same(plain, pre, f"python alloc_heavy.py (PYTHONMALLOC={pymalloc})")
    assert plain.out.read_text().rstrip().endswith(str(sys.version_info[:2])), "script did not finish"


def test_gcc_compiles_large_file(tmp_path):
    src = tmp_path / "big.c"
    make_c_source(src)
    # gcc (driver, cc1) writes the assembly to stdout with -o -
    plain, pre = run_pair(tmp_path, "gcc", ["gcc", "-O2", "-S", "-o", "-", str(src)],
                          env={"TMPDIR": str(tmp_path)})
    assert_same(plain, pre, "gcc -O2 -S big.c")
    assert plain.out.stat().st_size > 1_000_000, "unexpectedly small assembly output"


SQLITE_SCRIPT = """
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, pad BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t
  SELECT x, x % 97,
         printf('name-%08d-%s', (x * 7919) % 200000, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)),
         (x * 37 % 1000) / 7.0,
         zeroblob(x % 300)
  FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp_val ON t(grp, val);
SELECT count(*), round(sum(val), 4), min(name), max(name), sum(length(pad)) FROM t;
SELECT grp, count(*), round(avg(val), 6), max(length(name)) FROM t GROUP BY grp ORDER BY grp;
SELECT count(*) FROM t WHERE name BETWEEN 'name-00010000' AND 'name-00020000';
SELECT group_concat(id) FROM (SELECT id FROM t ORDER BY name DESC LIMIT 40);
SELECT a.grp, count(*) FROM t a JOIN t b ON a.id = b.id + 1 AND a.grp = b.grp + 1
  GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 10;
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
SELECT count(*), round(total(val), 4) FROM t;
"""


def test_sqlite3_indexed_table(tmp_path):
    script = tmp_path / "script.sql"
    script.write_text(SQLITE_SCRIPT)
    plain, pre = run_pair(tmp_path, "sqlite3", ["sqlite3", "-batch", ":memory:"], stdin=script)
    assert_same(plain, pre, "sqlite3 200,000-row table")


PERL_SCRIPT = r"""
use strict; use warnings;
my (%h, %len, @keep);
my $s = "";
for my $i (1 .. 300000) {
    my $k = join "", map { chr(97 + ($i * $_ * 7 + $_) % 26) } 1 .. (1 + $i % 17);
    $h{$k} .= $i % 10;
    $len{length $k}++;
    $s .= $k if $i % 3 == 0;
    $s = substr($s, 5000) if length($s) > 200000;
    push @keep, [$k, $i, "x" x ($i % 500)] if $i % 5 == 0;
    splice(@keep, $i % @keep, 1) if @keep > 20000;
}
my @keys = sort keys %h;
delete $h{$_} for grep { length($_) % 2 } @keys;
my $total = 0;
$total += length $h{$_} for keys %h;
my %rev = map { scalar(reverse $_) => $_ } @keys;
my $joined = join ",", map { "$_=$len{$_}" } sort { $a <=> $b } keys %len;
my @sorted = sort { $a->[1] <=> $b->[1] } @keep;
print scalar(@keys), " ", scalar(keys %h), " $total ", length($s), " ", scalar(keys %rev), "\n";
print "$joined\n", join(",", @keys[0 .. 9]), "\n", $sorted[0][1], " ", $sorted[-1][1], "\n";
"""


def test_perl_hash_and_string_churn(tmp_path):
    plain, pre = run_pair(tmp_path, "perl", ["perl", "-e", PERL_SCRIPT],
                          env={"PERL_HASH_SEED": "0", "PERL_PERTURB_KEYS": "0"})
    assert_same(plain, pre, "perl hash/string churn")


@pytest.mark.parametrize("args", [["--stat"], ["-p", "--stat", "--format=fuller"]],
                         ids=["stat", "patch"])
def test_git_log(tmp_path, args):
    repo = tmp_path / "repo"
    make_git_repo(repo)
    plain, pre = run_pair(tmp_path, "git", ["git", "log", *args], cwd=repo,
                          env=git_env(tmp_path))
    assert_same(plain, pre, f"git log {' '.join(args)}")


def test_xz_compression(tmp_path):
    data = tmp_path / "data.txt"
    make_text(data, 6_000_000)
    plain, pre = run_pair(tmp_path, "xz", ["xz", "-9", "-T1", "-c", str(data)])
    assert_same(plain, pre, "xz -9")
    # and decompress the myalloc-compressed stream under myalloc
    plain_d, pre_d = run_pair(tmp_path, "unxz", ["xz", "-d", "-c"], stdin=pre.out)
    assert_same(plain_d, pre_d, "xz -d")
    assert hashlib.sha256(pre_d.out.read_bytes()).digest() == \
        hashlib.sha256(data.read_bytes()).digest(), "xz round trip lost data"


# --------------------------------------------------------------------------
# CPython's own regression tests, with every object allocated by malloc
# --------------------------------------------------------------------------

REGRTESTS = ["test_dict", "test_json", "test_re", "test_sqlite3", "test_pickle",
             "test_decimal", "test_subprocess", "test_mmap"]


PROVIDER_PROBE = r"""
import ctypes
class DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]
g = ctypes.CDLL(None)
g.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
for name in ("malloc", "free", "calloc", "realloc", "myalloc_stats_get"):
    info = DlInfo()
    try:
        addr = ctypes.cast(getattr(g, name), ctypes.c_void_p).value
    except AttributeError:
        print(name, "MISSING")
        continue
    g.dladdr(addr, ctypes.byref(info))
    print(name, info.dli_fname.decode())
"""


def check_python_provider(env, lib):
    """In a Python process started with `env`, malloc & co. (dlsym through the
    global scope, then dladdr) must come from libmyalloc.so."""
    p = subprocess.run([sys.executable, "-c", PROVIDER_PROBE], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"probe failed: {p.stdout}{p.stderr}"
    lib = os.path.realpath(lib)
    providers = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    wrong = {k: v for k, v in providers.items() if os.path.realpath(v) != lib}
    assert len(providers) == 5 and not wrong, f"preload not active in python: {providers}"


@pytest.mark.slow
def test_cpython_regression_slice(tmp_path):
    """CPython's own tests with PYTHONMALLOC=malloc under the preload.  (LD_DEBUG
    cannot be used here: its output file descriptor is inherited by every
    child and breaks test_subprocess's fd checks, so the preload is verified
    by a probe process started with the same environment.)"""
    probe = subprocess.run([sys.executable, "-c", "import test.libregrtest"],
                           capture_output=True, env=make_env(preload=False))
    if probe.returncode != 0:
        pytest.skip(f"{sys.executable} has no test package (python -m test unavailable)")
    lib = lib_path()
    env = make_env(preload=True, env={"PYTHONMALLOC": "malloc", "TMPDIR": str(tmp_path)})
    check_python_provider(env, lib)
    log = tmp_path / "regrtest.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "test", "-j2", *REGRTESTS],
                                env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=tmp_path,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            pytest.fail("python -m test timed out after 30 minutes")
    text = log.read_text(errors="replace")
    assert "myalloc:" not in text, "myalloc reported an error:\n" + text[-5000:]
    assert rc == 0, f"python -m test exited {rc}:\n" + text[-6000:]
