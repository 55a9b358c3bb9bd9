"""`BlockAllocator`: physical KV blocks handed out from a free list, shared by reference count.

Every holder of a block owns one reference: each sequence whose block table lists it and the
prefix cache while it indexes it. A block returns to the free list when its last reference goes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from engine.errors import EngineError


class NoFreeBlocks(EngineError):
    """Fewer free blocks than asked for; the caller may evict cached blocks and retry."""

    def __init__(self, wanted: int, free: int) -> None:
        super().__init__(f"wanted {wanted} KV blocks, {free} free")
        self.wanted = wanted
        self.free = free


class BlockAllocator:
    def __init__(self, num_blocks: int, block_size: int = 16) -> None:
        assert num_blocks > 0 and block_size > 0
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: deque[int] = deque(range(num_blocks))
        self._refs = [0] * num_blocks

    @property
    def num_free(self) -> int:
        return len(self._free)

    def refcount(self, block_id: int) -> int:
        return self._refs[block_id]

    def allocate(self, n: int) -> list[int]:
        """n fresh blocks, each with one reference; all or nothing."""
        if n > len(self._free):
            raise NoFreeBlocks(n, len(self._free))
        ids = [self._free.popleft() for _ in range(n)]
        for b in ids:
            assert self._refs[b] == 0, b
            self._refs[b] = 1
        return ids

    def incref(self, ids: Iterable[int]) -> None:
        """One more reference on each (already allocated) block."""
        for b in ids:
            assert self._refs[b] > 0, f"incref of free block {b}"
            self._refs[b] += 1

    def free(self, ids: Iterable[int]) -> None:
        """Drop one reference on each block; blocks left without one become free again."""
        for b in ids:
            assert self._refs[b] > 0, f"double free of block {b}"
            self._refs[b] -= 1
            if self._refs[b] == 0:
                self._free.append(b)

    def fork(self, block_table: Sequence[int]) -> list[int]:
        """A second table sharing every block of `block_table` (one more reference each).

        Before writing into a shared block the new owner calls `copy_on_write`."""
        self.incref(block_table)
        return list(block_table)

    def copy_on_write(self, block_table: list[int], pos: int) -> tuple[int, int] | None:
        """Make the block holding token position `pos` private to `block_table` before a write.

        Returns (src, dst) when the block was shared: `block_table` now lists the fresh block
        `dst` and the caller must copy the KV content (`ModelRunner.copy_block(src, dst)`).
        Returns None when the block already had a single owner."""
        i = pos // self.block_size
        src = block_table[i]
        if self._refs[src] == 1:
            return None
        (dst,) = self.allocate(1)
        self.free([src])
        block_table[i] = dst
        return src, dst
