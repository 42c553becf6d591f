"""Allocation-heavy, deterministic workload for the CPython interpreter.

Run by tests/test_programs.py once without and once with LD_PRELOAD (also with
PYTHONMALLOC=malloc, so that every Python object goes through malloc); the
two stdouts must be byte-identical.  Everything printed is deterministic
(fixed seeds, sorted output, digests), independent of PYTHONHASHSEED.
"""

import ast
import decimal
import hashlib
import json
import os
import pickle
import random
import re
import sqlite3
import sys


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def section_json(rng):
    docs = []
    for i in range(300):
        doc = {
            "id": i,
            "name": "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 40))),
            "values": [rng.random() for _ in range(rng.randint(0, 50))],
            "nested": {str(k): [k] * rng.randint(0, 5) for k in range(rng.randint(0, 20))},
        }
        docs.append(doc)
    text = json.dumps(docs, sort_keys=True)
    back = json.loads(text)
    assert back == docs
    big = json.dumps(back, indent=2, sort_keys=True)
    print("json", len(text), len(big), hashlib.sha256(big.encode()).hexdigest()[:16])


def section_ast():
    libdir = os.path.dirname(os.__file__)
    total_nodes = 0
    names = sorted(n for n in os.listdir(libdir) if n.endswith(".py"))[:60]
    for name in names:
        with open(os.path.join(libdir, name), encoding="utf-8") as f:
            src = f.read()
        tree = ast.parse(src)
        total_nodes += sum(1 for _ in ast.walk(tree))
        ast.unparse(tree)
    print("ast", len(names), total_nodes)


def section_sqlite(rng):
    con = sqlite3.connect(":memory:")
    con.execute("create table t (id integer primary key, k text, v real, blob blob)")
    rows = [(i, "k%05d" % rng.randint(0, 9999), rng.random(), bytes(rng.randint(0, 200)))
            for i in range(30000)]
    con.executemany("insert into t values (?, ?, ?, ?)", rows)
    con.execute("create index t_k on t(k)")
    n, s = con.execute("select count(*), sum(length(blob)) from t").fetchone()
    top = con.execute("select k, count(*) c from t group by k order by c desc, k limit 5").fetchall()
    print("sqlite", n, s, top)
    con.close()


def section_re(rng):
    words = ["".join(rng.choice("abcxyz019_") for _ in range(rng.randint(1, 12))) for _ in range(20000)]
    text = " ".join(words)
    pats = [r"\b[a-c]+\d\w*", r"(x+)(y+)?z", r"\d{2,}", r"(?P<w>_[a-z]+_)", r"a.*?b"]
    counts = [len(re.findall(p, text)) for p in pats]
    subbed = re.sub(r"(\d)(\w)", r"\2\1", text)
    print("re", counts, hashlib.sha256(subbed.encode()).hexdigest()[:16])


def section_pickle(rng):
    obj = {i: [str(j) * (j % 7) for j in range(rng.randint(0, 30))] for i in range(3000)}
    obj["tuple"] = tuple(range(1000))
    obj["set"] = sorted({rng.randint(0, 10 ** 6) for _ in range(5000)})
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(obj, protocol=proto)
        assert pickle.loads(data) == obj
    print("pickle", len(pickle.dumps(obj, protocol=4)), digest(sorted(obj["set"])[:50]))


def section_decimal():
    decimal.getcontext().prec = 300
    d = decimal.Decimal(1)
    total = decimal.Decimal(0)
    for i in range(1, 800):
        d = d * decimal.Decimal(i) / decimal.Decimal(i + 1) + decimal.Decimal(1) / decimal.Decimal(i)
        total += d.sqrt()
    print("decimal", str(total)[:60])


def section_churn(rng):
    keep = []
    for i in range(200000):
        keep.append(bytearray(rng.randint(0, 300)))
        if len(keep) > 5000:
            del keep[rng.randint(0, len(keep) - 1)]
    strs = ["x" * rng.randint(0, 2000) for _ in range(20000)]
    print("churn", sum(map(len, keep)), sum(map(len, strs)))


def main():
    rng = random.Random(20240521)
    section_json(rng)
    section_ast()
    section_sqlite(rng)
    section_re(rng)
    section_pickle(rng)
    section_decimal()
    section_churn(rng)
    print("done", sys.version_info[:2])


if __name__ == "__main__":
    main()
