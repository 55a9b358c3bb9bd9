"""Unit tests for each behaviour of RadixTree: seams, splits, quotas, retention, drop, stats."""

from __future__ import annotations

import itertools

import pytest

from radix import DetachedNodeError, RadixTree

BS = 16
A, B, C = b"tenant-a", b"tenant-b", b"public"


def toks(n: int, start: int = 0) -> list[int]:
    return list(range(start, start + n))


class FakeClock:
    def __init__(self) -> None:
        self.ticks = itertools.count(1)

    def __call__(self) -> float:
        return float(next(self.ticks))


@pytest.fixture
def tree() -> RadixTree:
    return RadixTree(block_size=BS, clock=FakeClock())


def test_block_size_must_be_16_or_32() -> None:
    RadixTree(block_size=32)
    with pytest.raises(ValueError):
        RadixTree(block_size=8)


def test_match_returns_whole_blocks_only(tree: RadixTree) -> None:
    tree.insert_one(A, toks(40), [1, 2, 99])
    m = tree.match_one(A, toks(40))
    assert m.block_ids == (1, 2) and m.num_tokens == 32 and m.namespaces == (A, A)
    assert tree.match_one(A, toks(31)).block_ids == (1,)
    assert tree.match_one(A, toks(15)).block_ids == ()


def test_block_size_32() -> None:
    tree = RadixTree(block_size=32)
    tree.insert_one(A, toks(100), [1, 2, 3, 4])
    assert tree.match_one(A, toks(64)).block_ids == (1, 2)


def test_extra_ids_for_partial_block_are_ignored(tree: RadixTree) -> None:
    r = tree.insert_one(A, toks(20), [7, 8])
    assert r.block_ids == (7,) and r.redundant == () and r.new_blocks == 1
    assert tree.stats().cached_blocks == 1


def test_too_few_ids_is_an_error(tree: RadixTree) -> None:
    with pytest.raises(ValueError):
        tree.insert_one(A, toks(32), [1])


def test_redundant_ids_are_reported_but_own_ids_are_not(tree: RadixTree) -> None:
    tree.insert_one(A, toks(32), [1, 2])
    r = tree.insert_one(A, toks(64), [1, 9, 3, 4])
    assert r.block_ids == (1, 2, 3, 4)
    assert r.redundant == (9,)
    assert r.new_blocks == 2


def test_adopting_an_id_the_tree_already_holds_is_refused(tree: RadixTree) -> None:
    tree.insert_one(A, toks(32), [1, 2])
    with pytest.raises(ValueError):
        tree.insert_one(B, toks(16), [2])
    with pytest.raises(ValueError):
        tree.insert_one(B, toks(32), [5, 5])
    tree.check_integrity()


def test_identical_tokens_in_two_namespaces_are_independent(tree: RadixTree) -> None:
    tree.insert_one(A, toks(64), [1, 2, 3, 4])
    assert tree.match_one(B, toks(64)).block_ids == ()
    r = tree.insert_one(B, toks(64), [5, 6, 7, 8])
    assert r.new_blocks == 4 and r.redundant == ()
    assert tree.match_one(A, toks(64)).block_ids == (1, 2, 3, 4)
    assert tree.match_one(B, toks(64)).block_ids == (5, 6, 7, 8)
    assert tree.drop_namespace(A) == [1, 2, 3, 4]
    assert tree.match_one(B, toks(64)).block_ids == (5, 6, 7, 8)


def test_split_only_at_block_boundaries(tree: RadixTree) -> None:
    tree.insert_one(A, toks(64), [1, 2, 3, 4])
    assert tree.stats().nodes == 1
    other = [*toks(40), 999, *toks(23, 1000)]  # diverges inside block 2
    r = tree.insert_one(A, other, [5, 6, 7, 8])
    assert r.block_ids == (1, 2, 7, 8) and r.redundant == (5, 6)
    assert tree.stats().nodes == 3  # [1,2] -> {[3,4], [7,8]}
    assert tree.match_one(A, other[:47]).block_ids == (1, 2)
    tree.check_integrity()


def test_partial_match_splits_so_the_handle_covers_the_match(tree: RadixTree) -> None:
    tree.insert_one(A, toks(64), [1, 2, 3, 4])
    m = tree.match_one(A, toks(32))
    assert tree.stats().nodes == 2
    tree.pin(m.node)
    assert tree.stats().pinned_blocks == 2
    assert tree.evict(10) == [4, 3]  # the unmatched tail can still go
    tree.unpin(m.node)
    assert tree.evict(10) == [2, 1]


def test_seam_block_belongs_to_the_later_segment(tree: RadixTree) -> None:
    public = toks(24)  # block 1 spans the seam at token 24
    private = toks(40, 500)
    r = tree.insert([(C, public), (A, private)], [1, 2, 3, 4])
    assert r.block_ids == (1, 2, 3, 4)
    m = tree.match([(C, public), (A, private)])
    assert m.namespaces == (C, A, A, A)
    # Tenant B shares the public block but not the seam block (owned by A).
    m_b = tree.match([(C, public), (B, private)])
    assert m_b.block_ids == (1,) and m_b.namespaces == (C,)
    assert tree.stats().blocks_per_namespace == {C: 1, A: 3}


def test_segment_inside_one_block_owns_nothing(tree: RadixTree) -> None:
    key = [(C, toks(10)), (B, toks(4, 100)), (A, toks(18, 200))]
    tree.insert(key, [1, 2])
    assert tree.match(key).namespaces == (A, A)
    assert tree.match([(A, toks(10) + toks(4, 100) + toks(18, 200))]).block_ids == (1, 2)


def test_private_continuation_is_never_reachable_from_another_tenant(tree: RadixTree) -> None:
    public = toks(32)
    tree.insert([(C, public), (A, toks(32, 100))], [1, 2, 3, 4])
    tree.insert([(C, public), (B, toks(32, 100))], [1, 2, 5, 6])
    assert tree.match([(C, public), (A, toks(32, 100))]).block_ids == (1, 2, 3, 4)
    assert tree.match([(C, public), (B, toks(32, 100))]).block_ids == (1, 2, 5, 6)
    assert tree.match_one(C, public + toks(32, 100)).block_ids == (1, 2)


def test_drop_removes_namespace_and_everything_below(tree: RadixTree) -> None:
    public = toks(32)
    tree.insert([(C, public), (A, toks(32, 100))], [1, 2, 3, 4])
    tree.insert([(C, public), (B, toks(32, 100))], [1, 2, 5, 6])
    tree.insert_one(B, toks(16, 900), [7])
    assert sorted(tree.drop_namespace(C)) == [1, 2, 3, 4, 5, 6]
    assert tree.stats().blocks_per_namespace == {B: 1}
    assert tree.namespaces() == [B]
    tree.check_integrity()


def test_drop_detaches_pinned_nodes_and_unpin_is_then_a_no_op(tree: RadixTree) -> None:
    r = tree.insert_one(A, toks(32), [1, 2])
    tree.pin(r.node)
    keep = tree.insert_one(B, toks(16), [3])
    tree.pin(keep.node)
    assert tree.drop_namespace(A) == [1, 2]
    assert tree.stats().pinned_blocks == 1
    tree.unpin(r.node)
    tree.check_integrity()
    with pytest.raises(DetachedNodeError):
        tree.pin(r.node)
    assert tree.match_one(A, toks(32)).block_ids == ()
    tree.unpin(keep.node)
    assert tree.stats().pinned_blocks == 0


def test_pin_and_unpin_of_an_empty_match_are_no_ops(tree: RadixTree) -> None:
    m = tree.match_one(A, toks(32))
    tree.pin(m.node)
    tree.unpin(m.node)
    tree.check_integrity()


def test_unpin_without_pin_is_an_error(tree: RadixTree) -> None:
    r = tree.insert_one(A, toks(16), [1])
    with pytest.raises(ValueError):
        tree.unpin(r.node)


def test_evict_is_lru_and_interior_nodes_follow_their_children(tree: RadixTree) -> None:
    tree.insert_one(A, toks(32), [1, 2])
    tree.insert_one(A, toks(32) + toks(16, 100), [1, 2, 3])  # [1,2] -> [3]
    tree.insert_one(B, toks(16), [4])
    tree.match_one(A, toks(32) + toks(16, 100))  # A's path is now the most recent
    assert tree.evict(1) == [4]
    assert tree.evict(1) == [3]
    assert tree.evict(1) == [2, 1]  # whole leaves: frees >= n
    assert tree.evict(1) == []
    assert tree.stats().evicted_blocks == 4


def test_pinned_blocks_are_never_evicted(tree: RadixTree) -> None:
    r = tree.insert_one(A, toks(48), [1, 2, 3])
    tree.insert_one(A, toks(32) + toks(16, 500), [1, 2, 4])
    tree.pin(r.node)
    assert tree.evictable_blocks() == 1
    assert tree.evict(100) == [4]
    assert tree.evictable_blocks() == 0
    tree.unpin(r.node)
    assert tree.evictable_blocks() == 3


def test_over_quota_group_is_evicted_first(tree: RadixTree) -> None:
    tree.insert_one(B, toks(16, 100), [9])  # oldest, but B is within quota
    tree.insert_one(A, toks(16), [1])
    tree.insert_one(A, toks(16, 200), [2])
    tree.insert_one(A, toks(16, 300), [3])
    tree.set_quota(b"group-a", 1)
    tree.bind(A, b"group-a")
    assert tree.evict(1) == [1]
    assert tree.evict(1) == [2]
    assert tree.evict(1) == [9]  # A is at its quota now: plain LRU again
    tree.set_quota(b"group-a", None)
    assert tree.evict(1) == [3]


def test_quota_groups_several_namespaces(tree: RadixTree) -> None:
    tree.set_quota(b"org", 2)
    tree.bind(A, b"org")
    tree.bind(B, b"org")
    tree.insert_one(C, toks(16), [7])
    tree.insert_one(A, toks(16), [1])
    tree.insert_one(B, toks(16), [2])
    tree.insert_one(B, toks(16, 50), [3])
    assert tree.evict(1) == [1]
    assert tree.evict(1) == [7]
    tree.check_integrity()


def test_retained_namespace_is_kept_up_to_the_cap(tree: RadixTree) -> None:
    tree = RadixTree(block_size=BS, capacity_blocks=8, retain_cap=0.25, clock=FakeClock())
    tree.insert_one(A, toks(32), [1, 2])  # retained, oldest
    tree.insert_one(B, toks(16), [3])
    tree.retain(A)
    assert tree.evictable_blocks() == 1
    assert tree.evict(5) == [3]  # A's 2 blocks fit the cap (0.25 * 8 = 2)
    tree.insert_one(A, toks(16, 100), [4])  # now 3 retained > 2
    assert tree.evictable_blocks() >= 1
    assert tree.evict(5) == [2, 1]  # LRU among retained, only beyond the cap
    assert tree.evict(5) == []
    tree.retain(A, keep=False)
    assert tree.evict(5) == [4]


def test_retention_without_capacity_keeps_everything(tree: RadixTree) -> None:
    tree.insert_one(A, toks(16), [1])
    tree.retain(A)
    assert tree.evict(1) == [] and tree.evictable_blocks() == 0


def test_stats_count_hits_and_lookups_per_namespace(tree: RadixTree) -> None:
    tree.insert_one(A, toks(32), [1, 2])
    tree.match_one(A, toks(40))  # 32 of 40 hit
    tree.match_one(B, toks(40))  # 0 of 40
    tree.match([(C, toks(8)), (A, toks(24, 8))])  # block owned by A: 32 of 32
    s = tree.stats()
    assert (s.hit_tokens, s.lookup_tokens) == (64, 112)
    assert s.hit_rate == pytest.approx(64 / 112)
    assert s.nodes == 1 and s.cached_blocks == 2 and s.blocks_per_namespace == {A: 2}
    a = tree.namespace_stats(A)
    assert (a.blocks, a.hit_tokens, a.lookup_tokens) == (2, 64, 72)
    assert tree.namespace_stats(B).hit_rate == 0.0
    assert tree.namespaces() == [A, B]  # C owned no block of that key


def test_namespace_must_be_bytes(tree: RadixTree) -> None:
    with pytest.raises(TypeError):
        tree.match_one("tenant", toks(16))  # type: ignore[arg-type]


def test_a_touched_leaf_moves_behind_older_ones(tree: RadixTree) -> None:
    tree.insert_one(A, toks(16), [1])
    tree.insert_one(A, toks(16, 100), [2])
    tree.match_one(A, toks(16))
    assert tree.evict(1) == [2]
