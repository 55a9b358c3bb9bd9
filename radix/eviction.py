"""Which leaf goes next: LRU within tiers — over-quota groups, then the rest, then retained
namespaces beyond the retention cap. Also keeps the per-namespace and per-group block counts."""

from __future__ import annotations

import math

from radix.lru import LruHeap
from radix.node import Node


class EvictionPolicy:
    """Quotas apply to groups of namespaces (default: a namespace is its own group); retained
    namespaces keep their blocks while all retained blocks fit under `retain_limit`."""

    def __init__(self, retain_limit: float) -> None:
        self.retain_limit = retain_limit
        self.ns_blocks: dict[bytes, int] = {}
        self.group_blocks: dict[bytes, int] = {}
        self.retained_blocks = 0
        self._group_of: dict[bytes, bytes] = {}
        self._quota: dict[bytes, int] = {}
        self._retained: set[bytes] = set()
        self._normal = LruHeap(lambda n: n.namespace not in self._retained)
        self._kept = LruHeap(lambda n: n.namespace in self._retained)
        self._by_group: dict[bytes, LruHeap] = {}

    # --- configuration -------------------------------------------------------------------
    def group_of(self, ns: bytes) -> bytes:
        return self._group_of.get(ns, ns)

    def set_quota(self, group: bytes, max_blocks: int | None) -> None:
        if max_blocks is None:
            self._quota.pop(group, None)
            self._by_group.pop(group, None)
            return
        if max_blocks < 0:
            raise ValueError("max_blocks must be >= 0")
        self._quota[group] = max_blocks
        self._by_group.setdefault(group, self._group_heap(group))

    def bind(self, ns: bytes, group: bytes) -> None:
        blocks = self.ns_blocks.get(ns, 0)
        self._shift_group(self.group_of(ns), -blocks)
        if group == ns:
            self._group_of.pop(ns, None)
        else:
            self._group_of[ns] = group
        self._shift_group(group, blocks)

    def retain(self, ns: bytes, keep: bool) -> None:
        if keep and ns not in self._retained:
            self._retained.add(ns)
            self.retained_blocks += self.ns_blocks.get(ns, 0)
        elif not keep and ns in self._retained:
            self._retained.discard(ns)
            self.retained_blocks -= self.ns_blocks.get(ns, 0)

    def is_retained(self, ns: bytes) -> bool:
        return ns in self._retained

    def forget_namespace(self, ns: bytes) -> None:
        """Drop a namespace's settings once its blocks are gone."""
        assert self.ns_blocks.get(ns, 0) == 0
        self.ns_blocks.pop(ns, None)
        self.retain(ns, False)
        self._group_of.pop(ns, None)
        if not self.group_blocks.get(ns, 0):
            self.group_blocks.pop(ns, None)

    # --- accounting ----------------------------------------------------------------------
    def add_blocks(self, ns: bytes, delta: int) -> None:
        self.ns_blocks[ns] = self.ns_blocks.get(ns, 0) + delta
        self._shift_group(self.group_of(ns), delta)
        if ns in self._retained:
            self.retained_blocks += delta

    def _shift_group(self, group: bytes, delta: int) -> None:
        if delta:
            self.group_blocks[group] = self.group_blocks.get(group, 0) + delta

    # --- candidates ----------------------------------------------------------------------
    def offer(self, node: Node) -> None:
        """Register an unpinned leaf (again) after its access time or state changed."""
        ns = node.namespace
        if ns in self._retained:
            self._kept.push(node)
            return
        self._normal.push(node)
        heap = self._by_group.get(self.group_of(ns))
        if heap is not None:
            heap.push(node)

    def pick(self) -> Node | None:
        """The next leaf to evict, or None when nothing may go."""
        victim: Node | None = None
        for group, heap in self._by_group.items():
            if self.group_blocks.get(group, 0) > self._quota[group]:
                cand = heap.peek()
                if cand is not None and (victim is None or cand.last_access < victim.last_access):
                    victim = cand
        if victim is None:
            victim = self._normal.peek()
        if victim is None and self.retained_blocks > self.retain_limit:
            victim = self._kept.peek()
        return victim

    def needs_rebuild(self, num_nodes: int) -> bool:
        limit = 4 * num_nodes + 1024
        return len(self._normal) > limit or len(self._kept) > limit

    def rebuild(self, candidates: list[Node]) -> None:
        """Refill every heap from the current unpinned leaves (drops stale entries)."""
        self._normal.rebuild([n for n in candidates if n.namespace not in self._retained])
        self._kept.rebuild([n for n in candidates if n.namespace in self._retained])
        for group, heap in self._by_group.items():
            heap.rebuild(
                [
                    n
                    for n in candidates
                    if n.namespace not in self._retained and self.group_of(n.namespace) == group
                ]
            )

    def check(self, candidates: list[Node]) -> None:
        """Assert that `pick` can reach every unpinned leaf and that the counts add up."""
        normal, kept = self._normal.queued(), self._kept.queued()
        groups = {g: h.queued() for g, h in self._by_group.items()}
        for n in candidates:
            if n.namespace in self._retained:
                assert id(n) in kept, n
                continue
            assert id(n) in normal, n
            group = self.group_of(n.namespace)
            assert group not in groups or id(n) in groups[group], n
        grouped: dict[bytes, int] = {}
        for ns, b in self.ns_blocks.items():
            assert b >= 0, (ns, b)
            grouped[self.group_of(ns)] = grouped.get(self.group_of(ns), 0) + b
        assert {g: b for g, b in grouped.items() if b} == {
            g: b for g, b in self.group_blocks.items() if b
        }
        assert self.retained_blocks == sum(self.ns_blocks.get(ns, 0) for ns in self._retained)

    def _group_heap(self, group: bytes) -> LruHeap:
        return LruHeap(
            lambda n: n.namespace not in self._retained and self.group_of(n.namespace) == group
        )


def retain_limit(retain_cap: float, capacity_blocks: int | None) -> float:
    """Retained blocks allowed: a share of the pool, unbounded when the pool size is unknown."""
    if capacity_blocks is None:
        return math.inf
    return retain_cap * capacity_blocks
