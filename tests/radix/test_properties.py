"""Random interleavings of match/insert/pin/unpin/evict/drop against the reference model."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from radix import RadixTree
from tests.radix.reference import Handle, ReferenceCache, blocks_of

BS = 16
NAMESPACES = (b"public", b"tenant-a", b"tenant-b")
# A few block patterns shared by every namespace: identical tokens meet in different namespaces.
PATTERNS = tuple(tuple(range(p * 100, p * 100 + BS)) for p in range(3))


@st.composite
def keys(draw: st.DrawFn) -> list[tuple[bytes, list[int]]]:
    """1-3 segments cut at arbitrary (not block-aligned) points over 0-6 blocks + a tail."""
    blocks = draw(st.lists(st.sampled_from(PATTERNS), max_size=6))
    tokens = [t for b in blocks for t in b] + list(range(7000, 7000 + draw(st.integers(0, 20))))
    cuts = sorted(draw(st.lists(st.integers(0, len(tokens)), max_size=2)))
    bounds = [0, *cuts, len(tokens)]
    return [
        (draw(st.sampled_from(NAMESPACES)), tokens[lo:hi]) for lo, hi in itertools.pairwise(bounds)
    ]


class RadixMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.tree = RadixTree(block_size=BS, clock=self._tick)
        self.ref = ReferenceCache(BS)
        self.next_id = itertools.count()
        self.handles: list[tuple[object, Handle]] = []
        self.hits: dict[bytes, int] = {}
        self.lookups: dict[bytes, int] = {}
        self.history: list[list[tuple[bytes, list[int]]]] = []

    def _tick(self) -> float:
        self.now += 1
        return float(self.now)

    def _count(self, segments: list[tuple[bytes, list[int]]], matched: int) -> None:
        key = blocks_of(segments, BS)
        for ns, _ in key:
            self.lookups[ns] = self.lookups.get(ns, 0) + BS
        tail = sum(len(t) for _, t in segments) - len(key) * BS
        if tail:
            last = [ns for ns, t in segments if t][-1]
            self.lookups[last] = self.lookups.get(last, 0) + tail
        for ns, _ in key[:matched]:
            self.hits[ns] = self.hits.get(ns, 0) + BS

    def _pin(self, node: object, prefix: tuple) -> None:
        if prefix:
            self.tree.pin(node)
            handle = Handle(prefix)
            self.ref.pins.append(handle)
            self.handles.append((node, handle))

    @precondition(lambda self: self.history)
    @rule(data=st.data(), pin=st.booleans())
    def rematch(self, data: st.DataObject, pin: bool) -> None:
        """Look up (a prefix of) a key inserted before: hits, partial hits, splits."""
        segments = data.draw(st.sampled_from(self.history))
        cut = data.draw(st.integers(0, sum(len(t) for _, t in segments)))
        kept: list[tuple[bytes, list[int]]] = []
        for ns, toks in segments:
            kept.append((ns, toks[:cut]))
            cut = max(0, cut - len(toks))
        self.match(kept, pin)

    @rule(segments=keys(), pin=st.booleans())
    def match(self, segments: list[tuple[bytes, list[int]]], pin: bool) -> None:
        key = blocks_of(segments, BS)
        m = self.tree.match(segments)
        expected = self.ref.match(key)
        assert list(m.block_ids) == expected
        assert list(m.namespaces) == [ns for ns, _ in key[: len(expected)]]
        assert m.num_tokens == len(expected) * BS
        if expected:
            self.ref.touch(key, len(expected), self.now)
        self._count(segments, len(expected))
        if pin:
            self._pin(m.node, key[: len(expected)])

    @rule(segments=keys(), reuse=st.booleans(), pin=st.booleans(), extra=st.integers(0, 1))
    def insert(
        self, segments: list[tuple[bytes, list[int]]], reuse: bool, pin: bool, extra: int
    ) -> None:
        self.history.append(segments)
        key = blocks_of(segments, BS)
        ids = [next(self.next_id) + 1000 for _ in range(len(key) + extra)]
        if reuse:
            cached = self.ref.match(key)
            ids[: len(cached)] = cached
        cached_before = len(self.ref.match(key))
        r = self.tree.insert(segments, ids)
        expected, redundant = self.ref.insert(key, ids, self.now)
        assert list(r.block_ids) == expected
        assert list(r.redundant) == redundant
        assert r.new_blocks == len(key) - cached_before
        if pin:
            self._pin(r.node, key)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def unpin(self, data: st.DataObject) -> None:
        node, handle = self.handles.pop(data.draw(st.integers(0, len(self.handles) - 1)))
        self.tree.unpin(node)
        self.ref.pins.remove(handle)

    @rule(n=st.integers(0, 8))
    def evict(self, n: int) -> None:
        before = self.tree.evictable_blocks()
        pinned = {self.ref.blocks[p] for p in self.ref.pinned() if p in self.ref.blocks}
        freed = self.tree.evict(n)
        assert not set(freed) & pinned, "evicted a pinned block"
        assert len(freed) >= min(n, before)
        assert freed == self.ref.evict_order(len(freed)), "not LRU order"

    @rule(ns=st.sampled_from(NAMESPACES))
    def drop(self, ns: bytes) -> None:
        freed = self.tree.drop_namespace(ns)
        assert len(freed) == len(set(freed))
        assert set(freed) == self.ref.drop(ns)
        self.hits.pop(ns, None)
        self.lookups.pop(ns, None)

    @invariant()
    def consistent(self) -> None:
        self.tree.check_integrity()
        s = self.tree.stats()
        assert s.cached_blocks == len(self.ref.blocks)
        assert self.tree.evictable_blocks() == self.ref.unpinned_blocks()
        assert s.pinned_blocks == len(self.ref.pinned() & self.ref.blocks.keys())
        per_ns: dict[bytes, int] = {}
        for p in self.ref.blocks:
            per_ns[p[-1][0]] = per_ns.get(p[-1][0], 0) + 1
        assert s.blocks_per_namespace == per_ns
        for ns in NAMESPACES:
            st_ns = self.tree.namespace_stats(ns)
            assert st_ns.hit_tokens == self.hits.get(ns, 0)
            assert st_ns.lookup_tokens == self.lookups.get(ns, 0)


RadixMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRadixProperties = RadixMachine.TestCase
