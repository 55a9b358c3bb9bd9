"""A lazy min-heap of eviction candidates ordered by last access (stale entries skipped)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from radix.node import Node


class LruHeap:
    """Entries are `(last_access, seq, node)`; an entry is live while the node is still an
    unpinned leaf with that same access time and `belongs(node)` holds. Pushing again after
    every change is cheaper than deleting: stale entries are dropped when they reach the top."""

    __slots__ = ("_belongs", "_heap", "_seq")

    def __init__(self, belongs: Callable[[Node], bool]) -> None:
        self._heap: list[tuple[float, int, Node]] = []
        self._seq = itertools.count()
        self._belongs = belongs

    def push(self, node: Node) -> None:
        heapq.heappush(self._heap, (node.last_access, next(self._seq), node))

    def peek(self) -> Node | None:
        """The least recently used live candidate, or None."""
        heap = self._heap
        while heap:
            t, _, node = heap[0]
            if (
                node.alive
                and node.ref == 0
                and not node.children
                and node.last_access == t
                and self._belongs(node)
            ):
                return node
            heapq.heappop(heap)
        return None

    def rebuild(self, nodes: list[Node]) -> None:
        """Replace the contents (after a policy change moved nodes between heaps)."""
        self._heap = [(n.last_access, next(self._seq), n) for n in nodes]
        heapq.heapify(self._heap)

    def queued(self) -> set[int]:
        """ids of the nodes with an entry at their current access time (integrity checks)."""
        return {id(n) for t, _, n in self._heap if t == n.last_access}

    def __len__(self) -> int:
        return len(self._heap)
