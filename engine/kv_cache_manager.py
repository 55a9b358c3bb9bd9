"""Ties the block allocator to the radix tree: reuse on admission, insert after prefill, release.

Reference counting: every holder of a physical block owns one reference on it — each sequence
whose block table lists it, and the radix tree while it indexes it. A block returns to the free
list when its last reference goes. The tree's reference is dropped on eviction or when a
namespace is dropped; a sequence's references are dropped when it finishes or is preempted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.block_allocator import BlockAllocator, NoFreeBlocks
from engine.errors import IsolationViolation
from engine.messages import ReusedBlock
from engine.sequence import Sequence as Seq
from radix import RadixTree

Key = list[tuple[bytes, Sequence[int]]]


class KVCacheManager:
    def __init__(self, allocator: BlockAllocator, tree: RadixTree, block_size: int) -> None:
        self.allocator = allocator
        self.tree = tree
        self.block_size = block_size
        # Blocks the tree holds a reference on (mirrors the tree; used for the accounting check).
        self.tree_blocks: set[int] = set()
        self.evicted_blocks = 0

    # --- keys -----------------------------------------------------------------------------
    def cache_key(self, seq: Seq, num_tokens: int | None = None) -> Key:
        """The cacheable part of a sequence as radix segments: segments up to the first one
        without a namespace or with a no-store one. Generated tokens extend the last segment
        only when every prompt segment is cacheable (they belong to the request's own,
        narrowest namespace)."""
        key: Key = []
        segments = seq.request.segments
        for seg in segments:
            if seg.namespace is None or not self.tree.stores(seg.namespace):
                break
            key.append((seg.namespace, seg.token_ids))
        if key and len(key) == len(segments) and seq.num_generated:
            ns, toks = key[-1]
            key[-1] = (ns, tuple(toks) + tuple(seq.generated_ids))
        if num_tokens is not None:
            key = _truncate(key, num_tokens)
        return key

    def block_owners(self, key: Key) -> list[bytes]:
        """Expected owner namespace of each full block: the segment holding its last token."""
        owners: list[bytes] = []
        end = 0
        bs = self.block_size
        for ns, toks in key:
            end += len(toks)
            while (len(owners) + 1) * bs <= end:
                owners.append(ns)
        return owners

    # --- admission --------------------------------------------------------------------------
    def match_and_pin(self, seq: Seq) -> None:
        """Reuse the longest cached prefix: check every block's owner, pin, take references."""
        assert not seq.block_table and seq.cache_node is None
        self.expire()
        key = self.cache_key(seq)
        if not key:
            return
        match = self.tree.match(key)
        # Logits for the last prompt token are needed unless the request only warms the cache.
        limit = seq.num_tokens - 1 if seq.request.sampling.max_tokens > 0 else seq.num_tokens
        n = min(len(match.block_ids), limit // self.block_size)
        owners = self.block_owners(key)
        for i in range(n):
            if match.namespaces[i] != owners[i]:
                raise IsolationViolation(
                    seq.request_id, match.block_ids[i], owners[i], match.namespaces[i]
                )
        if n == 0:
            return
        self.tree.pin(match.node)
        seq.cache_node = match.node
        ids = list(match.block_ids[:n])
        self.allocator.incref(ids)
        seq.block_table = ids
        seq.num_computed = n * self.block_size
        seq.num_cached_tokens = seq.num_computed
        seq.reused = tuple(
            ReusedBlock(b, ns) for b, ns in zip(ids, match.namespaces[:n], strict=True)
        )

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def available_blocks(self) -> int:
        """Blocks obtainable now: free ones plus what eviction of unpinned cache can free."""
        return self.allocator.num_free + self.tree.evictable_blocks()

    # --- growth -----------------------------------------------------------------------------
    def ensure_blocks(self, seq: Seq, num_tokens: int) -> bool:
        """Grow the block table to cover `num_tokens` (less the tokens dropped from its KV);
        evict cached blocks if the pool is dry."""
        need = self.blocks_needed(num_tokens - seq.kv_shift) - len(seq.block_table)
        if need <= 0:
            return True
        ids = self.allocate(need)
        if ids is None:
            return False
        seq.block_table.extend(ids)
        return True

    def allocate(self, n: int) -> list[int] | None:
        try:
            return self.allocator.allocate(n)
        except NoFreeBlocks:
            pass
        self.evict(n - self.allocator.num_free)
        try:
            return self.allocator.allocate(n)
        except NoFreeBlocks:
            return None

    def evict(self, n: int) -> int:
        if n <= 0:
            return 0
        ids = self.tree.evict(n)
        self._release_tree_refs(ids)
        self.evicted_blocks += len(ids)
        return len(ids)

    def expire(self) -> int:
        """Free the blocks of prefixes unused past their namespace's retention TTL."""
        ids = self.tree.expire()
        if ids:
            self._release_tree_refs(ids)
        return len(ids)

    # --- insertion --------------------------------------------------------------------------
    def insert(self, seq: Seq, num_tokens: int) -> None:
        """Index the sequence's first `num_tokens` computed tokens (full blocks) for reuse.
        A sequence that dropped KV (window, eviction) no longer maps positions to its table,
        and compressed KV is never shared: it inserts nothing."""
        if seq.kv_shift:
            return
        key = self.cache_key(seq, num_tokens)
        n_full = sum(len(t) for _, t in key) // self.block_size
        if n_full == 0 or (n_full <= len(seq.reused) and seq.cache_node is not None):
            return
        table = seq.block_table[:n_full]
        res = self.tree.insert(key, table)
        # NOTE: a reused block normally stays in the tree; if its namespace was dropped while
        # this sequence ran, the tree adopts the sequence's copy again and needs a reference.
        adopted = [
            mine
            for theirs, mine in zip(res.block_ids, table, strict=True)
            if theirs == mine and mine not in self.tree_blocks
        ]
        assert len(adopted) == res.new_blocks, (adopted, res.new_blocks)
        self.allocator.incref(adopted)
        self.tree_blocks.update(adopted)
        seq.inserted_blocks += len(adopted)
        self.tree.pin(res.node)
        if seq.cache_node is not None:
            self.tree.unpin(seq.cache_node)
        seq.cache_node = res.node

    # --- release ----------------------------------------------------------------------------
    def release(self, seq: Seq) -> None:
        """Drop the sequence's pin and block references (blocks the tree keeps stay cached)."""
        if seq.cache_node is not None:
            self.tree.unpin(seq.cache_node)
            seq.cache_node = None
        if seq.block_table:
            self.allocator.free(seq.block_table)
            seq.block_table = []

    def drop_namespaces(self, namespaces: Iterable[bytes]) -> int:
        dropped = 0
        for ns in namespaces:
            ids = self.tree.drop_namespace(ns)
            self._release_tree_refs(ids)
            dropped += len(ids)
        return dropped

    def _release_tree_refs(self, ids: Sequence[int]) -> None:
        assert all(i in self.tree_blocks for i in ids)
        self.tree_blocks.difference_update(ids)
        self.allocator.free(list(ids))

    # --- accounting -------------------------------------------------------------------------
    def check_accounting(self, seqs: Iterable[Seq]) -> None:
        """free + cached-unpinned + in-use == total, and every reference is accounted for."""
        expected: dict[int, int] = {b: 1 for b in self.tree_blocks}
        in_use: set[int] = set()
        for seq in seqs:
            for b in seq.block_table:
                expected[b] = expected.get(b, 0) + 1
                in_use.add(b)
        total = self.allocator.num_blocks
        for b in range(total):
            assert self.allocator.refcount(b) == expected.get(b, 0), (
                b,
                self.allocator.refcount(b),
                expected.get(b, 0),
            )
        cached_only = len(self.tree_blocks - in_use)
        assert self.allocator.num_free + cached_only + len(in_use) == total
        assert self.tree.stats().cached_blocks == len(self.tree_blocks)


def _truncate(key: Key, num_tokens: int) -> Key:
    out: Key = []
    left = num_tokens
    for ns, toks in key:
        if left <= 0:
            break
        out.append((ns, toks[:left]))
        left -= len(toks)
    return out
