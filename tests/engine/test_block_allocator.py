"""BlockAllocator: ref counts, fork / copy-on-write, and the accounting invariant under random
sequences of operations (free + cached-unpinned + in-use == total at every step)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.block_allocator import BlockAllocator, NoFreeBlocks


def test_allocate_free_and_refcounts():
    alloc = BlockAllocator(4)
    a = alloc.allocate(3)
    assert len(set(a)) == 3 and alloc.num_free == 1
    assert all(alloc.refcount(b) == 1 for b in a)
    alloc.incref(a[:1])
    alloc.free(a)
    assert alloc.num_free == 3 and alloc.refcount(a[0]) == 1
    alloc.free(a[:1])
    assert alloc.num_free == 4 and alloc.refcount(a[0]) == 0


def test_allocation_is_all_or_nothing():
    alloc = BlockAllocator(2)
    alloc.allocate(1)
    with pytest.raises(NoFreeBlocks) as info:
        alloc.allocate(2)
    assert (info.value.wanted, info.value.free) == (2, 1)
    assert alloc.num_free == 1


def test_double_free_is_caught():
    alloc = BlockAllocator(2)
    (b,) = alloc.allocate(1)
    alloc.free([b])
    with pytest.raises(AssertionError):
        alloc.free([b])


def test_fork_shares_and_copy_on_write_splits_the_written_block():
    alloc = BlockAllocator(8, block_size=4)
    parent = alloc.allocate(2)
    child = alloc.fork(parent)
    assert child == parent and all(alloc.refcount(b) == 2 for b in parent)
    moved = alloc.copy_on_write(child, pos=6)  # position 6 lives in block index 1
    assert moved is not None
    src, dst = moved
    assert src == parent[1] and child == [parent[0], dst] and dst not in parent
    assert alloc.refcount(src) == 1 and alloc.refcount(dst) == 1
    assert alloc.copy_on_write(child, pos=7) is None  # now private: no copy
    alloc.free(parent)
    alloc.free(child)
    assert alloc.num_free == 8


_OPS = st.lists(
    st.tuples(st.sampled_from(["alloc", "free", "fork", "cow", "cache", "uncache"]),
              st.integers(0, 7), st.integers(1, 5)),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_random_operations_keep_the_accounting_invariant(ops):
    total = 24
    alloc = BlockAllocator(total, block_size=4)
    tables: list[list[int]] = []  # sequences' block tables (one reference per listing)
    cached: set[int] = set()  # blocks a prefix cache holds one reference on
    for op, pick, n in ops:
        if op == "alloc":
            try:
                tables.append(alloc.allocate(n))
            except NoFreeBlocks:
                assert alloc.num_free < n
        elif op == "free" and tables:
            alloc.free(tables.pop(pick % len(tables)))
        elif op == "fork" and tables:
            tables.append(alloc.fork(tables[pick % len(tables)]))
        elif op == "cow" and tables:
            table = tables[pick % len(tables)]
            if alloc.num_free:
                alloc.copy_on_write(table, pos=(n * 3) % (len(table) * 4))
        elif op == "cache" and tables:
            fresh = [b for b in tables[pick % len(tables)] if b not in cached]
            alloc.incref(fresh)
            cached.update(fresh)
        elif op == "uncache" and cached:
            block = sorted(cached)[pick % len(cached)]
            cached.discard(block)
            alloc.free([block])
        in_use = {b for t in tables for b in t}
        cached_unpinned = cached - in_use
        assert alloc.num_free + len(cached_unpinned) + len(in_use) == total
        for b in range(total):
            want = sum(t.count(b) for t in tables) + (b in cached)
            assert alloc.refcount(b) == want
