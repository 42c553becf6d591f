"""Semantics of the C and C++ allocation API under LD_PRELOAD=libmyalloc.so.

Each case runs a small program from tests/c/ (it prints "preloaded=1" when
the library is active, "FAIL ..." lines for each broken check, and exits
non-zero on failure).  Most of these cases also pass against glibc, except
the ones glibc 2.36 gets wrong on purpose (aligned_alloc with a
non-power-of-two alignment, __posix_memalign, myalloc's own symbols).
"""

import os
import re

import pytest

from conftest import assert_preloaded, describe, lib_path

C_API = [
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
    "malloc_trim", "mallinfo", "mallinfo2", "malloc_stats", "mallopt",
    "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc",
    "__libc_memalign", "__libc_valloc", "__libc_pvalloc", "__posix_memalign",
    "myalloc_stats_get",
]
CXX_API = [
    "_Znwm", "_Znam", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm",
    "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
    "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
    "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
]


def test_every_entry_point_comes_from_myalloc(build, run):
    """Each C and C++ allocation symbol resolves (dlsym RTLD_DEFAULT) to
    libmyalloc.so, so no pointer can cross between allocators."""
    exe = build("symbols.c")
    rc, out, err = run(exe, C_API + CXX_API)
    assert_preloaded(out, rc, err)
    assert rc == 0, describe(rc, out, err)
    lib = os.path.realpath(lib_path())
    provider = dict(re.findall(r"^sym (\S+)=(.*)$", out, re.M))
    assert set(provider) == set(C_API + CXX_API), describe(rc, out, err)
    wrong = {s: p for s, p in provider.items()
             if p == "MISSING" or os.path.realpath(p) != lib}
    assert not wrong, ("symbols not provided by libmyalloc.so:\n" +
                       "\n".join(f"  {s}: {p}" for s, p in sorted(wrong.items())))


def test_stats_api(build, run_ok):
    run_ok(build("stats_api.c"))


@pytest.mark.parametrize("case", ["malloc", "memalign", "posix_memalign",
                                  "aligned_alloc", "valloc", "pvalloc"])
def test_alignment(build, run_ok, case):
    run_ok(build("alignment.c"), [case])


@pytest.mark.parametrize("case", [
    "malloc0", "huge", "calloc_overflow", "reallocarray_overflow",
    "posix_memalign_einval", "aligned_alloc_einval", "free_null",
    "free_errno", "realloc_null", "realloc_zero"])
def test_edge_cases(build, run_ok, case):
    run_ok(build("edge_cases.c"), [case])


@pytest.mark.parametrize("case", ["small", "large"])
def test_usable_size(build, run_ok, case):
    run_ok(build("usable_size.c"), [case])


@pytest.mark.parametrize("case", ["small", "large", "same"])
def test_realloc_preserves_contents(build, run_ok, case):
    run_ok(build("realloc.c"), [case])


@pytest.mark.parametrize("case", ["dirty", "large"])
def test_calloc_zeroes(build, run_ok, case):
    run_ok(build("calloc.c"), [case])


@pytest.mark.parametrize("case", ["mallinfo2", "malloc_trim", "mallopt"])
def test_introspection(build, run_ok, case):
    run_ok(build("introspection.c"), [case])


def test_malloc_stats_writes_to_stderr(build, run):
    rc, out, err = run(build("introspection.c"), ["malloc_stats"])
    assert_preloaded(out, rc, err)
    assert rc == 0, describe(rc, out, err)
    assert "malloc_stats_called=1" in out, describe(rc, out, err)
    assert err.strip(), "malloc_stats() wrote nothing to stderr"


def test_libc_internal_names(build, run_ok):
    run_ok(build("libc_aliases.c"))


@pytest.mark.parametrize("case", ["objects", "arrays", "containers",
                                  "aligned", "explicit"])
def test_cxx(build, run_ok, case):
    run_ok(build("cxx_new.cpp"), [case])


def test_cxx_nothrow_new_huge_returns_null(build, run_ok):
    kv = run_ok(build("cxx_new.cpp"), ["nothrow_huge"])
    assert kv.get("nothrow_null") == "1"


def test_cxx_new_huge_throws_bad_alloc(build, run):
    rc, out, err = run(build("cxx_new.cpp"), ["throw_huge"])
    assert_preloaded(out, rc, err)
    assert rc == 0, describe(rc, out, err)
    caught = re.findall(r"^caught (\S+)$", out, re.M)
    assert caught == ["new", "new[]", "aligned_new", "aligned_new[]",
                      "new_char_array", "vector_reserve"], describe(rc, out, err)


def test_reuse_is_lifo(build, run_ok):
    """The most recently freed block of a size is the next one handed out."""
    kv = run_ok(build("lifo.c"))
    assert kv["lifo_pairs_ok"] == "1" and kv["lifo_top_ok"] == "1", kv
