"""Heap misuse is caught: one "myalloc: ..." line on stderr, then SIGABRT.

For each case tests/c/misuse.c prints bad=<pointer> (printf %p, flushed)
before the bad call.  The library must write exactly one stderr line that
starts with "myalloc:", contains the keyword for the problem and the
address as 0x<lowercase hex>, and the address must equal the pointer.
"""

import re
import signal

import pytest

from conftest import assert_preloaded, describe

CASES = [
    # case,                  keyword,             function
    ("double_free",          "double free",       "free"),
    ("double_free_large",    "double free",       "free"),
    ("double_free_thread",   "double free",       "free"),
    ("double_free_later",    "double free",       "free"),
    ("double_free_reused",   "double free",       "malloc"),
    ("interior16",           "interior pointer",  "free"),
    ("interior8",            "interior pointer",  "free"),
    ("interior_large",       "interior pointer",  "free"),
    ("use_after_free_large", "use after free",    "realloc"),
    ("stack",                "invalid pointer",   "free"),
    ("wild",                 "invalid pointer",   "free"),
    ("mmap",                 "invalid pointer",   "free"),
    ("mmap_page",            "invalid pointer",   "free"),
    ("realloc_freed",        "use after free",    "realloc"),
    ("realloc_freed_large",  "use after free",    "realloc"),
    ("realloc_freed_shrink", "use after free",    "realloc"),
]


@pytest.mark.parametrize("case,keyword,function", CASES,
                         ids=[c[0] for c in CASES])
def test_misuse_aborts_with_one_line(build, run, case, keyword, function):
    rc, out, err = run(build("misuse.c"), [case])
    assert_preloaded(out, rc, err)
    info = describe(rc, out, err)
    m = re.search(r"^bad=(0x[0-9a-f]+)$", out, re.M)
    assert m, "the program did not print the bad pointer\n" + info
    bad = int(m.group(1), 16)
    assert "survived" not in out, f"the process survived {case}\n" + info
    assert rc == -signal.SIGABRT, "expected death by SIGABRT (-6)\n" + info

    myalloc_lines = [l for l in err.splitlines() if l.startswith("myalloc:")]
    assert len(myalloc_lines) == 1, (
        f"expected exactly one 'myalloc:' line on stderr, got {len(myalloc_lines)}\n" + info)
    pattern = re.compile(r"^myalloc: .*" + re.escape(keyword) + r".*0x[0-9a-f]+")
    matching = [l for l in err.splitlines() if pattern.search(l)]
    assert len(matching) == 1, (
        f"expected one stderr line matching {pattern.pattern!r}\n" + info)
    line = matching[0]
    addresses = [int(h, 16) for h in re.findall(r"0x([0-9a-f]+)", line)]
    assert bad in addresses, (
        f"the report does not name the pointer {bad:#x}: {line!r}")
    assert re.search(r"\b" + function + r"\b", line), (
        f"the report does not name the function {function}(): {line!r}")
