"""The baseline prefix cache for bench/radix_bench.py: a per-block hash chain, as vLLM does it.

Block i's key is hash(parent key, block tokens); the namespace seeds the chain (vLLM's extra
keys). A lookup hashes block after block and probes a dict until the first miss; every hit is
checked against the stored tokens so a hash collision cannot return a wrong block. Unpinned
cached blocks sit in an LRU queue that eviction drains from the front, block by block.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def sha256_hash(parts: tuple[Any, ...]) -> int:
    """SHA-256 over the pickled tuple, as vLLM's current default `sha256` does."""
    return int.from_bytes(hashlib.sha256(pickle.dumps(parts, protocol=5)).digest()[:8])


HASHES: dict[str, Callable[[tuple[Any, ...]], int]] = {
    "builtin": hash,  # Python's tuple hash: the fastest peer (vLLM's old default, since removed)
    "sha256": sha256_hash,
}


@dataclass(slots=True)
class CachedBlock:
    block_id: int
    tokens: tuple[int, ...]
    ref: int = 0


class HashChainCache:
    def __init__(self, block_size: int = 16, hash_fn: str = "builtin") -> None:
        self.block_size = block_size
        self.hash = HASHES[hash_fn]
        self.blocks: dict[int, CachedBlock] = {}
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.evicted = 0

    def block_hashes(self, namespace: bytes, tokens: Sequence[int]) -> list[int]:
        """The chain of full-block hashes (computed once per request, as vLLM does)."""
        bs = self.block_size
        h = self.hash((namespace,))
        out: list[int] = []
        for start in range(0, len(tokens) - bs + 1, bs):
            h = self.hash((h, tuple(tokens[start : start + bs])))
            out.append(h)
        return out

    def match(self, namespace: bytes, tokens: Sequence[int]) -> tuple[list[int], list[int]]:
        """(cached block ids of the longest prefix, the request's block hashes)."""
        bs = self.block_size
        blocks = self.blocks
        hash_fn = self.hash
        h = hash_fn((namespace,))
        hashes: list[int] = []
        ids: list[int] = []
        hit = True
        for start in range(0, len(tokens) - bs + 1, bs):
            blk = tuple(tokens[start : start + bs])
            h = hash_fn((h, blk))
            hashes.append(h)
            if hit:
                entry = blocks.get(h)
                if entry is None or entry.tokens != blk:
                    hit = False
                else:
                    ids.append(entry.block_id)
        return ids, hashes

    def insert(
        self, tokens: Sequence[int], hashes: list[int], block_ids: Sequence[int]
    ) -> list[int]:
        """Cache every full block by its chain hash; returns the caller's ids not adopted."""
        bs = self.block_size
        blocks = self.blocks
        redundant: list[int] = []
        for i, h in enumerate(hashes):
            entry = blocks.get(h)
            if entry is not None:
                if entry.block_id != block_ids[i]:
                    redundant.append(block_ids[i])
                continue
            blocks[h] = CachedBlock(block_ids[i], tuple(tokens[i * bs : (i + 1) * bs]))
            self.lru[h] = None
        return redundant

    def pin(self, hashes: Sequence[int]) -> None:
        for h in hashes:
            entry = self.blocks.get(h)
            if entry is not None:
                if entry.ref == 0:
                    self.lru.pop(h, None)
                entry.ref += 1

    def unpin(self, hashes: Sequence[int]) -> None:
        # Tail blocks first into the queue, so a chain is evicted from its end (as vLLM does).
        for h in reversed(hashes):
            entry = self.blocks.get(h)
            if entry is not None and entry.ref > 0:
                entry.ref -= 1
                if entry.ref == 0:
                    self.lru[h] = None

    def evict(self, n: int) -> list[int]:
        freed: list[int] = []
        while len(freed) < n and self.lru:
            h, _ = self.lru.popitem(last=False)
            freed.append(self.blocks.pop(h).block_id)
        self.evicted += len(freed)
        return freed
