"""Cache retention enforced by the radix tree: unused prefixes expire after their namespace's
TTL (no longer matched, then freed), pinned ones wait; no-store namespaces are never cached."""

from __future__ import annotations

import pytest

from radix import RadixTree

BS = 16
A, B, PUB = b"tenant-a", b"tenant-b", b"public"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def toks(n: int, start: int = 0) -> list[int]:
    return list(range(start, start + n))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tree(clock: Clock) -> RadixTree:
    return RadixTree(block_size=BS, clock=clock)


def test_expired_prefix_is_not_matched_and_is_freed(tree: RadixTree, clock: Clock) -> None:
    tree.set_retention(A, 300.0)
    tree.insert_one(A, toks(32), [1, 2])
    tree.insert_one(B, toks(32), [3, 4])  # no TTL: LRU only
    clock.now = 200.0
    assert tree.match_one(A, toks(32)).num_tokens == 32  # a use refreshes the clock
    clock.now = 450.0
    assert tree.match_one(A, toks(32)).num_tokens == 32  # 250 s unused: still within 300
    clock.now = 751.0
    assert tree.match_one(A, toks(32)).num_tokens == 0  # 301 s unused: expired
    assert sorted(tree.expire()) == [1, 2]
    assert tree.expire() == []
    assert tree.stats().cached_blocks == 2 and tree.match_one(B, toks(32)).num_tokens == 32
    tree.check_integrity()


def test_a_pinned_prefix_is_freed_only_once_released(tree: RadixTree, clock: Clock) -> None:
    tree.set_retention(A, 10.0)
    res = tree.insert_one(A, toks(16), [7])
    tree.pin(res.node)
    clock.now = 60.0
    assert tree.expire() == []
    tree.unpin(res.node)
    clock.now = 61.5
    assert tree.expire() == [7]
    tree.check_integrity()


def test_an_expired_parent_takes_its_subtree(tree: RadixTree, clock: Clock) -> None:
    tree.set_retention(PUB, 5.0)
    tree.set_retention(A, 100.0)
    tree.insert(((PUB, toks(16)), (A, toks(16, 500))), [1, 2])
    clock.now = 6.0
    assert tree.match(((PUB, toks(16)), (A, toks(16, 500)))).num_tokens == 0
    assert sorted(tree.expire()) == [1, 2]
    tree.check_integrity()


def test_default_ttl_and_bounds(clock: Clock) -> None:
    tree = RadixTree(block_size=BS, clock=clock, default_ttl_s=300.0)
    tree.insert_one(A, toks(16), [1])
    clock.now = 301.0
    assert tree.expire() == [1]
    with pytest.raises(ValueError):
        tree.set_retention(A, 24 * 3600.0 + 1)
    with pytest.raises(ValueError):
        tree.set_retention(A, 0.0)


def test_no_store_namespace_is_never_inserted_nor_looked_up(tree: RadixTree) -> None:
    tree.set_retention(B, 300.0, store=False)
    res = tree.insert(((PUB, toks(16)), (B, toks(32, 100))), [1, 2, 3])
    assert res.block_ids == (1,)  # the public part before it may be cached; B's part is not
    assert tree.match_one(B, toks(32, 100)).num_tokens == 0
    assert B not in tree.namespaces() and B not in tree.stats().blocks_per_namespace
    assert tree.namespace_stats(B).lookup_tokens == 0
    tree.set_retention(B, 300.0, store=True)
    tree.insert_one(B, toks(16, 100), [9])
    assert tree.match_one(B, toks(16, 100)).num_tokens == 16
    tree.check_integrity()
