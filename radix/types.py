"""The values the radix tree hands across the package boundary (frozen, slotted dataclasses)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Segment = tuple[bytes, Sequence[int]]
"""(namespace, token ids): one piece of a key; its full blocks belong to `namespace`."""


class DetachedNodeError(ValueError):
    """A handle whose node was evicted or dropped was pinned: match again instead."""


@dataclass(frozen=True, slots=True)
class Match:
    """The longest cached whole-block prefix of a key."""

    block_ids: tuple[int, ...]
    namespaces: tuple[bytes, ...]  # owner namespace of each matched block
    num_tokens: int  # len(block_ids) * block_size
    node: object  # opaque handle for pin/unpin


@dataclass(frozen=True, slots=True)
class InsertResult:
    """What an insert kept: the tree's blocks for the key and the caller's blocks to free."""

    block_ids: tuple[int, ...]  # the tree's block for every full block of the key
    redundant: tuple[int, ...]  # caller ids not adopted (those tokens were already cached)
    new_blocks: int  # blocks newly adopted from the caller
    node: object  # handle of the deepest node of the key (for pin/unpin)


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    """One namespace's share of the cache and its lookups."""

    blocks: int
    hit_tokens: int
    lookup_tokens: int

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.lookup_tokens if self.lookup_tokens else 0.0


@dataclass(frozen=True, slots=True)
class RadixStats:
    """Whole-tree counters (a snapshot)."""

    nodes: int  # excluding the root
    cached_blocks: int
    pinned_blocks: int
    hit_tokens: int
    lookup_tokens: int
    hit_rate: float
    evicted_blocks: int
    blocks_per_namespace: dict[bytes, int]
