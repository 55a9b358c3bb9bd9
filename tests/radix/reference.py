"""The reference model for the property tests: a dict from block-aligned prefixes to block ids.

A prefix is a tuple of (namespace, block tokens) pairs, so two namespaces never share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Block = tuple[bytes, tuple[int, ...]]
Prefix = tuple[Block, ...]


def blocks_of(segments: Sequence[tuple[bytes, Sequence[int]]], block_size: int) -> Prefix:
    """Full blocks of the key, each owned by the segment holding its last token."""
    tokens: list[int] = []
    owner: list[bytes] = []
    for ns, toks in segments:
        tokens.extend(toks)
        owner.extend([ns] * len(toks))
    n = len(tokens) // block_size
    return tuple(
        (owner[(i + 1) * block_size - 1], tuple(tokens[i * block_size : (i + 1) * block_size]))
        for i in range(n)
    )


@dataclass(eq=False)
class Handle:
    prefix: Prefix
    alive: bool = True


@dataclass
class ReferenceCache:
    block_size: int
    blocks: dict[Prefix, int] = field(default_factory=dict)
    touched: dict[Prefix, int] = field(default_factory=dict)
    pins: list[Handle] = field(default_factory=list)

    def match(self, key: Prefix) -> list[int]:
        ids: list[int] = []
        for i in range(1, len(key) + 1):
            bid = self.blocks.get(key[:i])
            if bid is None:
                break
            ids.append(bid)
        return ids

    def touch(self, key: Prefix, upto: int, now: int) -> None:
        for i in range(1, upto + 1):
            self.touched[key[:i]] = now

    def insert(self, key: Prefix, ids: Sequence[int], now: int) -> tuple[list[int], list[int]]:
        """Returns (tree ids for the key, redundant caller ids)."""
        out: list[int] = []
        redundant: list[int] = []
        for i in range(1, len(key) + 1):
            have = self.blocks.get(key[:i])
            if have is None:
                self.blocks[key[:i]] = ids[i - 1]
                out.append(ids[i - 1])
            else:
                out.append(have)
                if have != ids[i - 1]:
                    redundant.append(ids[i - 1])
        self.touch(key, len(key), now)
        return out, redundant

    def pinned(self) -> set[Prefix]:
        return {h.prefix[:i] for h in self.pins if h.alive for i in range(1, len(h.prefix) + 1)}

    def leaves(self) -> list[Prefix]:
        parents = {p[:-1] for p in self.blocks}
        pinned = self.pinned()
        return [p for p in self.blocks if p not in parents and p not in pinned]

    def evict_order(self, at_least: int) -> list[int]:
        """Evict block by block, least recently touched unpinned leaf first (deepest on ties)."""
        freed: list[int] = []
        while len(freed) < at_least:
            leaves = self.leaves()
            if not leaves:
                break
            victim = min(leaves, key=lambda p: (self.touched[p], -len(p)))
            freed.append(self.blocks.pop(victim))
            del self.touched[victim]
        return freed

    def drop(self, ns: bytes) -> set[int]:
        gone = [p for p in self.blocks if any(b[0] == ns for b in p)]
        for h in self.pins:
            if any(b[0] == ns for b in h.prefix):
                h.alive = False
        freed = {self.blocks.pop(p) for p in gone}
        for p in gone:
            del self.touched[p]
        return freed

    def unpinned_blocks(self) -> int:
        return len(self.blocks) - len(self.pinned() & self.blocks.keys())
