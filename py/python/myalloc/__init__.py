"""myalloc from Python: run on the allocator, read its statistics, experiment with it.

* :func:`library_path` -- the ``libmyalloc.so`` shipped in this package, for ``LD_PRELOAD``.
* :func:`loaded` -- whether this process's ``malloc`` is myalloc.
* :func:`stats` -- the live allocator's statistics (raises :class:`NotLoadedError` when
  the process does not run on myalloc).
* :class:`Heap` -- a private heap over its own memory, driven by the same buddy code:
  allocate, free, resize, and look at the buddy structure.
* ``python -m myalloc run -- CMD ...`` runs a command on myalloc and summarises its
  statistics; ``python -m myalloc info`` says what is installed and loaded.

Python's own small-object allocator (pymalloc) serves most objects up to 512 bytes;
set ``PYTHONMALLOC=malloc`` to send every object through ``malloc``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict

from . import _native
from ._native import Heap

__all__ = ["Heap", "NotLoadedError", "Stats", "library_path", "loaded", "stats", "__version__"]
__version__ = "0.1.0"


class NotLoadedError(RuntimeError):
    """The process does not run on myalloc, so there are no live statistics."""


def library_path() -> Path:
    """Path of the ``libmyalloc.so`` inside this package (use it in ``LD_PRELOAD``)."""
    return Path(__file__).resolve().with_name("libmyalloc.so")


def loaded() -> bool:
    """Whether this process's ``malloc`` is myalloc."""
    return _native.loaded()


@dataclass(frozen=True)
class Stats:
    """The allocator's statistics (``struct myalloc_stats``), all in bytes or counts."""

    size: int
    """Bytes of the struct the library filled."""
    version: int
    heap_start: int
    """The program break when myalloc first looked at it."""
    brk_extent: int
    """Current break minus ``heap_start``: all of the heap, metadata included."""
    brk_extent_peak: int
    held_bytes: int
    """Bytes held from the kernel: break extent plus fallback mappings."""
    held_bytes_peak: int
    in_use_bytes: int
    """Usable bytes of live blocks."""
    in_use_bytes_peak: int
    """Peak of bytes in live and thread-cached blocks."""
    live_blocks: int
    malloc_calls: int
    free_calls: int
    realloc_calls: int
    calloc_calls: int
    memalign_calls: int
    brk_grow_calls: int
    brk_shrink_calls: int
    madvise_calls: int
    madvised_bytes: int
    mmap_fallback_calls: int
    mmap_fallback_bytes: int
    cached_bytes: int
    """Free blocks parked in thread caches."""
    metadata_bytes: int
    """The heap's own bitmaps (inside the break)."""
    requested_bytes_total: int
    """Sum of every size asked for so far."""

    @property
    def bytes_in_use(self) -> int:
        """Usable bytes of live blocks (same as ``in_use_bytes``)."""
        return self.in_use_bytes

    def as_dict(self) -> Dict[str, int]:
        """The fields as a dict, in struct order."""
        return asdict(self)


_FIELDS = [f.name for f in fields(Stats)]
assert _FIELDS == list(_native.STATS_FIELDS), "Stats fields out of step with the native module"


def stats() -> Stats:
    """The live allocator's statistics.

    Raises :class:`NotLoadedError` when the process does not run on myalloc.
    """
    raw = _native.stats_raw()
    if raw is None:
        raise NotLoadedError(
            "this process does not run on myalloc: start it with "
            "`python -m myalloc run -- python ...` or "
            f"`LD_PRELOAD={library_path()} python ...`"
        )
    values = list(raw) + [0] * (len(_FIELDS) - len(raw))
    return Stats(*values[: len(_FIELDS)])
