"""Deterministic input files for the workloads, generated once into a cache dir.

Why generated rather than shipped: the inputs are tens of megabytes (a large
text file to sort and compress, a large C file for gcc, a git repository with
thousands of commits); generating them from fixed seeds keeps the repository
small and every machine's inputs byte-identical.  Each input set lives in its
own folder (``inputs-full`` / ``inputs-quick``) with a stamp recording the
generator version and sizes; a folder whose stamp differs is rebuilt, so
changing a size here invalidates the cache by itself.

Only the standard library is used, and the generators run in the suite's own
Python process (they are not measured).
"""

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

#: Bump when a generator changes its output for the same sizes.
GENERATOR_VERSION = 3

#: Input sizes per mode, chosen so each workload takes ~1-3 s untraced under
#: glibc on the reference machine (2 cores) in full mode and well under 1 s in
#: quick mode.
SIZES = {
    "full": {"json_records": 12_000, "log_lines": 40_000, "sort_lines": 1_500_000,
             "c_functions": 90, "git_commits": 4_000, "xz_bytes": 2_200_000},
    "quick": {"json_records": 3_000, "log_lines": 10_000, "sort_lines": 300_000,
              "c_functions": 40, "git_commits": 800, "xz_bytes": 300_000},
}

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
         "mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
         "xray yankee zulu malloc free realloc calloc buddy block page arena heap "
         "break extent cache thread lock bitmap order split merge").split()


def ensure_inputs(cache_dir, mode):
    """Return the input folder for `mode`, generating it if missing or stale."""
    sizes = SIZES[mode]
    folder = Path(cache_dir) / f"inputs-{mode}"
    stamp = folder / "STAMP.json"
    want = {"version": GENERATOR_VERSION, "sizes": sizes}
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return folder
        except ValueError:
            pass
    if folder.exists():
        shutil.rmtree(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    gen_json(tmp / "data.json", sizes["json_records"])
    gen_log(tmp / "log.txt", sizes["log_lines"])
    gen_sort(tmp / "sort.txt", sizes["sort_lines"])
    gen_c(tmp / "big.c", sizes["c_functions"])
    gen_sql(tmp / "script.sql", sizes["sort_lines"] // 5)
    gen_git(tmp / "repo.git", sizes["git_commits"])
    gen_text(tmp / "xz.txt", sizes["xz_bytes"])
    (tmp / "STAMP.json").write_text(json.dumps(want, sort_keys=True))
    tmp.rename(folder)
    return folder


def _sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def gen_json(path, n):
    """A JSON document of `n` nested records (strings, floats, lists, dicts)."""
    rng = random.Random(1)
    records = []
    for i in range(n):
        records.append({
            "id": i,
            "name": f"user{rng.randrange(10**6):06d}",
            "score": round(rng.random() * 100, 4),
            "tags": rng.sample(WORDS, rng.randrange(1, 6)),
            "attrs": {w: rng.randrange(1000) for w in rng.sample(WORDS, 4)},
            "text": _sentence(rng, rng.randrange(3, 15)),
        })
    path.write_text(json.dumps({"version": 1, "records": records}))


def gen_log(path, n):
    """A web-server-like log: IP addresses, key=value pairs, free text."""
    rng = random.Random(2)
    with open(path, "w") as f:
        for i in range(n):
            ip = ".".join(str(rng.randrange(256)) for _ in range(4))
            f.write(f'{ip} - [{i:08d}] method=GET path=/{rng.choice(WORDS)}/{i % 977} '
                    f'status={rng.choice((200, 200, 200, 304, 404, 500))} '
                    f'agent="{_sentence(rng, 3)}" msg={_sentence(rng, rng.randrange(2, 9))}\n')


def gen_sort(path, n):
    """Lines of words and numbers in random order, for `sort`."""
    rng = random.Random(3)
    with open(path, "w") as f:
        for _ in range(n):
            f.write(f"{rng.choice(WORDS)} {rng.randrange(10**9):09d} {_sentence(rng, 3)}\n")


def gen_c(path, n):
    """A large C translation unit: `n` functions with loops, switches and
    inlinable helpers, enough to keep gcc -O2's middle end busy."""
    rng = random.Random(4)
    out = ["#include <stddef.h>\n",
           "static inline int mix(int a, int b) { return (a * 31) ^ (b >> 3); }\n",
           "struct pt { int x, y, z; double w; };\n"]
    for i in range(n):
        k = [rng.randrange(1, 97) for _ in range(6)]
        cases = "".join(f"    case {c}: acc = mix(acc, {c * k[0]}); break;\n"
                        for c in range(8))
        out.append(
            f"int f{i}(const int *v, size_t n, struct pt *p) {{\n"
            f"  int acc = {k[1]};\n"
            f"  for (size_t j = 0; j < n; j++) {{\n"
            f"    acc += v[j] * {k[2]} + (int)(j % {k[3]});\n"
            f"    if (acc > {k[4] * 1000}) acc = mix(acc, v[j]);\n"
            f"    p[j % 4].x += acc; p[j % 4].w += acc * 0.{k[5]};\n"
            f"  }}\n"
            f"  switch (acc & 7) {{\n{cases}  }}\n"
            f"  return acc{' + f%d(v, n / 2, p)' % rng.randrange(i) if i and rng.random() < 0.3 else ''};\n"
            f"}}\n")
    out.append("int (*const table[])(const int *, size_t, struct pt *) = {\n")
    out.append(",\n".join(f"  f{i}" for i in range(n)))
    out.append("\n};\n")
    path.write_text("".join(out))


def gen_sql(path, rows):
    """An SQL script for the sqlite3 command-line shell: bulk insert through a
    recursive CTE, indexes, joins, window functions and sorting."""
    path.write_text(f"""\
PRAGMA cache_size = -200000;
CREATE TABLE t (id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val INTEGER);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows})
INSERT INTO t SELECT i, (i * 7919) % 1000, printf('n%08d', (i * 104729) % 1000003), (i * 31) % 10007 FROM c;
CREATE INDEX t_name ON t(name);
CREATE TABLE g AS SELECT grp, count(*) AS n, sum(val) AS s FROM t GROUP BY grp;
SELECT grp, n, s FROM g ORDER BY s DESC LIMIT 20;
SELECT count(*), sum(t.val * g.n) FROM t JOIN g USING (grp);
SELECT name, val, rank() OVER (PARTITION BY grp ORDER BY val DESC) AS r FROM t
  WHERE grp < 50 ORDER BY grp, r, name LIMIT 2000;
SELECT group_concat(name, ',') FROM (SELECT name FROM t ORDER BY val, name LIMIT 5000);
SELECT count(DISTINCT val), max(length(name)) FROM t;
""")


def gen_git(path, commits):
    """A bare git repository with `commits` commits over a few dozen files,
    built with `git fast-import` from fixed authors and dates so the history
    (and therefore `git log -p`) is identical on every machine."""
    rng = random.Random(5)
    files = {f"src/file{i:02d}.txt": [_sentence(rng, 8) for _ in range(40)] for i in range(30)}
    stream = []
    for c in range(commits):
        stamp = 1_600_000_000 + c * 3600
        changed = rng.sample(sorted(files), rng.randrange(1, 4))
        ops = []
        for name in changed:
            lines = files[name]
            for _ in range(rng.randrange(1, 6)):
                pos = rng.randrange(len(lines))
                if rng.random() < 0.5:
                    lines[pos] = _sentence(rng, 8)
                else:
                    lines.insert(pos, _sentence(rng, 6))
            data = ("\n".join(lines) + "\n").encode()
            ops.append(b"M 100644 inline %s\ndata %d\n%s\n" % (name.encode(), len(data), data))
        msg = f"change {c}: {_sentence(rng, 5)}\n".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(b"author Bench Author <bench@example.org> %d +0000\n" % stamp)
        stream.append(b"committer Bench Author <bench@example.org> %d +0000\n" % stamp)
        stream.append(b"data %d\n%s" % (len(msg), msg))
        stream.extend(ops)
        stream.append(b"\n")
    env = git_env()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(stream),
                   check=True, env=env)


def git_env(home=None):
    """Environment for git that ignores the user's and system configuration."""
    env = dict(os.environ)
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                "HOME": str(home or "/nonexistent"), "LC_ALL": "C", "TZ": "UTC"})
    return env


def gen_text(path, size):
    """Compressible English-like text for xz: words with a skewed frequency."""
    rng = random.Random(6)
    weights = [1 / (i + 1) for i in range(len(WORDS))]
    chunks = []
    total = 0
    while total < size:
        line = " ".join(rng.choices(WORDS, weights, k=12)) + f" {rng.randrange(10**6)}\n"
        chunks.append(line)
        total += len(line)
    path.write_text("".join(chunks))
