"""Type stubs of the native part of myalloc (pyo3)."""

from typing import Dict, List, Optional, Tuple

STATS_FIELDS: List[str]
STATS_VERSION: int
GRANULE: int
CHUNK_BYTES: int

def loaded() -> bool:
    """Whether this process's malloc is myalloc."""

def stats_raw() -> Optional[List[int]]:
    """The live statistics in struct order, or None without myalloc."""

class Heap:
    """A private heap over its own mapping, run by myalloc's buddy code.

    Addresses are ints. A bad address, a double free or an access outside a block
    raises ValueError; an exhausted heap raises MemoryError.
    """

    def __init__(self, capacity: int = 1048576) -> None: ...
    @property
    def base(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    def alloc(self, size: int, align: int = 16) -> int:
        """Allocate `size` bytes; returns the block's address."""
    def free(self, addr: int) -> None:
        """Free the block at `addr`."""
    def realloc(self, addr: int, size: int) -> int:
        """Resize the block at `addr`, in place when possible; returns its address."""
    def usable_size(self, addr: int) -> int:
        """Bytes usable in the block at `addr`."""
    def write(self, addr: int, data: bytes, offset: int = 0) -> None:
        """Copy `data` into the block at `addr`."""
    def read(self, addr: int, size: int, offset: int = 0) -> bytes:
        """Copy `size` bytes out of the block at `addr`."""
    def stats(self) -> Dict[str, int]:
        """capacity, heap_bytes(_peak), live_blocks, live_bytes, requested_bytes,
        metadata_bytes, free_bytes, grow_calls, shrink_calls."""
    def blocks(self) -> List[Tuple[int, int, str]]:
        """(address, size, kind) for every block, kind "free", "live" or "metadata"."""
    def free_blocks_by_order(self) -> Dict[int, int]:
        """{order: count} of free buddy blocks (order k = 16 * 2**k bytes)."""
