"""RadixTree: maps namespaced token sequences to the engine's physical KV blocks."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from radix.eviction import EvictionPolicy, retain_limit
from radix.integrity import check_tree
from radix.key import Key, build_key
from radix.node import Node
from radix.retention import RetentionPolicy
from radix.types import (
    DetachedNodeError,
    InsertResult,
    Match,
    NamespaceStats,
    RadixStats,
    Segment,
)

_ROOT_NS = b""


class RadixTree:
    """A block-granular radix tree whose nodes each hold a run of blocks of one namespace.

    Children are keyed by `(namespace, first block's tokens)`, so a lookup never follows an
    edge of another namespace: identical tokens in two namespaces are two independent paths.
    Pure Python; the engine owns the blocks, the tree only indexes them.
    """

    def __init__(
        self,
        block_size: int = 16,
        capacity_blocks: int | None = None,
        retain_cap: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        default_ttl_s: float | None = None,
    ) -> None:
        if block_size not in (16, 32):
            raise ValueError(f"block_size must be 16 or 32, got {block_size}")
        if capacity_blocks is not None and capacity_blocks < 0:
            raise ValueError("capacity_blocks must be >= 0")
        if not 0.0 <= retain_cap <= 1.0:
            raise ValueError("retain_cap must be within [0, 1]")
        self.block_size = block_size
        self.capacity_blocks = capacity_blocks
        self._clock = clock
        self._root = Node(_ROOT_NS, (), (), None, 0.0)
        self._policy = EvictionPolicy(retain_limit(retain_cap, capacity_blocks))
        self._retention = RetentionPolicy(default_ttl_s)
        self._ns_nodes: dict[bytes, set[Node]] = {}
        self._held: set[int] = set()
        self._num_nodes = 0
        self._cached = 0
        self._pinned = 0
        self._evicted = 0
        self._hits = 0
        self._lookups = 0
        self._ns_hits: dict[bytes, int] = {}
        self._ns_lookups: dict[bytes, int] = {}

    # --- lookup and insertion ----------------------------------------------------------------
    def match(self, segments: Sequence[Segment]) -> Match:
        """Longest cached whole-block prefix of the key, block by block in its own namespace.

        Refreshes the LRU time of the matched nodes and the hit statistics; ref counts are
        untouched (pin the returned node to keep the blocks). The last matched node is split
        at the match end, so the handle covers exactly the matched blocks. Expired nodes
        (past their namespace's TTL) end the match; no-store namespaces are not looked up.
        """
        key = build_key(self._retention.storable(segments), self.block_size)
        node, pos, path = self._descend(key)
        self._count_lookup(key)
        now = self._clock()
        node, pos, path = self._unexpired(node, pos, path, now)
        if not path:
            return Match((), (), 0, self._root)
        ids: tuple[int, ...] = ()
        owners: tuple[bytes, ...] = ()
        hits = self._ns_hits
        for n in path:
            n.last_access = now
            ids += n.block_ids
            owners += (n.namespace,) * len(n.block_ids)
            hits[n.namespace] = hits.get(n.namespace, 0) + len(n.tokens)
        self._hits += pos
        self._offer(node)
        return Match(ids, owners, pos, node)

    def match_one(self, namespace: bytes, tokens: Sequence[int]) -> Match:
        """`match` for a key of one segment."""
        return self.match(((namespace, tokens),))

    def insert(self, segments: Sequence[Segment], block_ids: Sequence[int]) -> InsertResult:
        """Cache the key's full blocks; `block_ids[i]` is the caller's block for full block i.

        Blocks already cached keep the tree's id; the caller's id there is reported redundant
        unless it is the very same id (a caller that matched first passes the tree's ids back).
        Raises ValueError when too few ids are given or an id to adopt is already indexed.
        """
        bs = self.block_size
        key = build_key(segments, bs)
        num_full = key.full // bs
        storable = self._retention.storable(segments)
        if len(storable) < len(segments):
            key = build_key(storable, bs)
        if len(block_ids) < num_full:
            raise ValueError(f"need {num_full} block ids, got {len(block_ids)}")
        node, pos, path = self._descend(key)
        cached: list[int] = []
        for n in path:
            cached += n.block_ids
        mine = list(block_ids[: key.full // bs])
        fresh = mine[len(cached) :]
        redundant: list[int] = []
        if mine[: len(cached)] != cached:
            redundant = [m for m, c in zip(mine, cached, strict=False) if m != c]
        self._check_new_ids(fresh, redundant)
        now = self._clock()
        for n in path:
            n.last_access = now
        for ns, start, end in key.runs:
            if end <= pos:
                continue
            lo = max(start, pos)
            ids = fresh[(lo - pos) // bs : (end - pos) // bs]
            node = self._attach(node, ns, key.tokens[lo:end], ids, now)
        self._offer(node)
        return InsertResult(tuple(cached + fresh), tuple(redundant), len(fresh), node)

    def insert_one(
        self, namespace: bytes, tokens: Sequence[int], block_ids: Sequence[int]
    ) -> InsertResult:
        """`insert` for a key of one segment."""
        return self.insert(((namespace, tokens),), block_ids)

    # --- pinning -------------------------------------------------------------------------------
    def pin(self, node: object) -> None:
        """+1 ref on the node and every node above it: none of them can be evicted.

        Pinning the root (an empty match) is a no-op; pinning a node that was evicted or
        dropped raises DetachedNodeError (its blocks may already be reused).
        """
        assert isinstance(node, Node)
        if node is self._root:
            return
        if not node.alive:
            raise DetachedNodeError("node was evicted or dropped; match again")
        node.pins += 1
        root = self._root
        while node is not root:
            if node.ref == 0:
                self._pinned += len(node.block_ids)
            node.ref += 1
            node = node.parent
            assert node is not None

    def unpin(self, node: object) -> None:
        """-1 ref from the node up to the root; a no-op for the tree's accounting on a node
        that was dropped meanwhile. Raises ValueError on an unpin without a pin."""
        assert isinstance(node, Node)
        if node is self._root:
            return
        if node.pins <= 0:
            raise ValueError("unpin without a matching pin")
        node.pins -= 1
        if not node.alive:
            stale: Node | None = node
            while stale is not None and not stale.alive and stale.ref > 0:
                stale.ref -= 1
                stale = stale.parent
            return
        root = self._root
        while node is not root:
            assert node.ref > 0, node
            node.ref -= 1
            if node.ref == 0:
                self._pinned -= len(node.block_ids)
                self._offer(node)
            node = node.parent
            assert node is not None

    # --- eviction and removal ----------------------------------------------------------------
    def evict(self, n: int) -> list[int]:
        """Free at least `n` blocks (fewer if impossible) by removing whole unpinned leaves in
        LRU order: leaves of namespaces whose group is over quota first, then all others, and
        retained namespaces' leaves only while retained blocks exceed the retention cap. A
        parent whose last child goes becomes a leaf itself. Returns the freed block ids."""
        freed: list[int] = []
        while len(freed) < n:
            victim = self._policy.pick()
            if victim is None:
                break
            parent = victim.parent
            assert parent is not None
            self._cut(victim)
            self._forget(victim)
            freed.extend(reversed(victim.block_ids))
            self._evicted += len(victim.block_ids)
            self._offer(parent)
        return freed

    def evictable_blocks(self) -> int:
        """Blocks `evict` could free now: exact without retained namespaces, else a lower
        bound (retained blocks count only up to the excess over the retention cap)."""
        unpinned = self._cached - self._pinned
        if not self._policy.retained_blocks:
            return unpinned
        free, kept = self._evictable_with_retention()
        excess = self._policy.retained_blocks - self._policy.retain_limit
        return free + int(min(max(excess, 0), kept))

    def drop_namespace(self, namespace: bytes) -> list[int]:
        """Remove every node of the namespace and everything below them (other namespaces'
        continuations included; pinned nodes too — they are detached and never match again).
        Also clears the namespace's statistics, retention and group binding. Returns the
        block ids the tree no longer holds."""
        freed: list[int] = []
        for top in list(self._ns_nodes.get(namespace, ())):
            if top.alive:
                self._detach(top, freed)
        self._ns_nodes.pop(namespace, None)
        self._retention.forget(namespace)
        self._ns_hits.pop(namespace, None)
        self._ns_lookups.pop(namespace, None)
        self._policy.forget_namespace(namespace)
        self._rebuild_queues()
        return freed

    # --- policy --------------------------------------------------------------------------------
    def set_quota(self, group: bytes, max_blocks: int | None) -> None:
        """Cap the cached blocks of a group of namespaces (None removes the cap). A group over
        its quota loses its LRU leaves before anyone else does."""
        self._policy.set_quota(group, max_blocks)
        self._rebuild_queues()

    def bind(self, namespace: bytes, group: bytes) -> None:
        """Count the namespace toward `group`'s quota (by default it is its own group)."""
        self._policy.bind(namespace, group)
        self._rebuild_queues()

    def retain(self, namespace: bytes, keep: bool = True) -> None:
        """Keep the namespace's blocks from eviction while all retained blocks fit within
        retain_cap * capacity_blocks; beyond that they are evicted last, LRU first."""
        self._policy.retain(namespace, keep)
        self._rebuild_queues()

    def set_retention(self, namespace: bytes, ttl_s: float | None, store: bool = True) -> None:
        """How long the namespace's unused blocks may stay (None: until LRU eviction; at most
        24 h), and whether it is cached at all (`store=False`: never inserted nor looked up)."""
        self._retention.set(namespace, ttl_s, store)

    def stores(self, namespace: bytes) -> bool:
        """False for a no-store namespace: the engine leaves it (and what follows) uncached."""
        return self._retention.stores(namespace)

    def expire(self) -> list[int]:
        """Remove every unpinned node unused for longer than its namespace's TTL, with its
        subtree. Cheap until the earliest deadline passes. Returns the freed block ids."""
        now = self._clock()
        retention = self._retention
        if now < retention.sweep_at:
            return []
        freed: list[int] = []
        retention.sweep_at = float("inf")
        stack = list(self._root.children.values())
        while stack:
            n = stack.pop()
            if retention.expired(n.namespace, n.last_access, now):
                if n.ref == 0:
                    self._detach(n, freed)
                    continue
                retention.sweep_at = min(retention.sweep_at, now + 1.0)  # retry once unpinned
            else:
                ttl = retention.ttl(n.namespace)
                if ttl is not None:
                    retention.sweep_at = min(retention.sweep_at, n.last_access + ttl)
            stack.extend(n.children.values())
        if freed:
            self._rebuild_queues()
        return freed

    # --- statistics ------------------------------------------------------------------------
    def stats(self) -> RadixStats:
        """A snapshot of the whole tree's counters."""
        return RadixStats(
            nodes=self._num_nodes,
            cached_blocks=self._cached,
            pinned_blocks=self._pinned,
            hit_tokens=self._hits,
            lookup_tokens=self._lookups,
            hit_rate=self._hits / self._lookups if self._lookups else 0.0,
            evicted_blocks=self._evicted,
            blocks_per_namespace={ns: b for ns, b in self._policy.ns_blocks.items() if b},
        )

    def namespace_stats(self, namespace: bytes) -> NamespaceStats:
        """One namespace's cached blocks and lookups (zeros for an unknown namespace)."""
        return NamespaceStats(
            blocks=self._policy.ns_blocks.get(namespace, 0),
            hit_tokens=self._ns_hits.get(namespace, 0),
            lookup_tokens=self._ns_lookups.get(namespace, 0),
        )

    def namespaces(self) -> list[bytes]:
        """Namespaces with cached blocks or lookups, sorted."""
        seen = {ns for ns, b in self._policy.ns_blocks.items() if b}
        return sorted(seen | self._ns_lookups.keys())

    def check_integrity(self) -> None:
        """Assert every structural and accounting invariant (tests and the engine call it)."""
        check_tree(self)

    # --- internals -----------------------------------------------------------------------
    def _descend(self, key: Key) -> tuple[Node, int, list[Node]]:
        """Walk the key as far as it is cached; split the last node at the match end.
        Returns the deepest matched node, the matched token count and the matched path."""
        toks = key.tokens
        bs = self.block_size
        node = self._root
        pos = 0
        path: list[Node] = []
        for ns, _, end in key.runs:
            while pos < end:
                child = node.children.get((ns, toks[pos : pos + bs]))
                if child is None:
                    return node, pos, path
                edge = child.tokens
                size = len(edge)
                if size <= end - pos and toks[pos : pos + size] == edge:
                    path.append(child)
                    node = child
                    pos += size
                    continue
                limit = min(size, end - pos)
                k = bs
                # Galloping search for the first differing block: few slice compares, not one
                # Python iteration per block.
                step = 64 * bs
                while step >= bs:
                    if k + step <= limit and toks[pos + k : pos + k + step] == edge[k : k + step]:
                        k += step
                    else:
                        step >>= 1
                node = self._split(child, k) if k < size else child
                path.append(node)
                pos += k
                if k < limit:
                    return node, pos, path
        return node, pos, path

    def _unexpired(
        self, node: Node, pos: int, path: list[Node], now: float
    ) -> tuple[Node, int, list[Node]]:
        """Cut a matched path at its first expired node (what lies below it is unreachable
        until it is swept: `expire` frees the whole subtree)."""
        retention = self._retention
        for i, n in enumerate(path):
            if retention.expired(n.namespace, n.last_access, now):
                kept = path[:i]
                return (kept[-1] if kept else self._root), sum(len(k.tokens) for k in kept), kept
        return node, pos, path

    def _split(self, child: Node, k: int) -> Node:
        """Cut `child` after k tokens; the new top half takes its place under the parent.
        NOTE: the bottom half stays the same object, so handles (pins) keep pointing at the
        deepest blocks; the top inherits the full ref count (every pin below passes it)."""
        bs = self.block_size
        nb = k // bs
        parent = child.parent
        assert parent is not None and 0 < k < len(child.tokens) and k % bs == 0
        top = Node(
            child.namespace, child.tokens[:k], child.block_ids[:nb], parent, child.last_access
        )
        top.ref = child.ref
        parent.children[(child.namespace, child.tokens[:bs])] = top
        child.tokens = child.tokens[k:]
        child.block_ids = child.block_ids[nb:]
        child.parent = top
        top.children[(child.namespace, child.tokens[:bs])] = child
        self._num_nodes += 1
        self._ns_nodes[child.namespace].add(top)
        return top

    def _attach(
        self, parent: Node, ns: bytes, tokens: tuple[int, ...], ids: list[int], now: float
    ) -> Node:
        node = Node(ns, tokens, tuple(ids), parent, now)
        parent.children[(ns, tokens[: self.block_size])] = node
        self._num_nodes += 1
        self._ns_nodes.setdefault(ns, set()).add(node)
        self._held.update(ids)
        self._cached += len(ids)
        self._policy.add_blocks(ns, len(ids))
        self._retention.touched(ns, now)
        return node

    def _check_new_ids(self, fresh: list[int], redundant: list[int]) -> None:
        fresh_set = set(fresh)
        if len(fresh_set) != len(fresh):
            raise ValueError("duplicate block ids in insert")
        if not redundant:
            if not fresh_set.isdisjoint(self._held):
                raise ValueError(f"block ids already indexed: {sorted(fresh_set & self._held)[:8]}")
            return
        clash = (fresh_set | set(redundant)) & self._held
        if clash or not fresh_set.isdisjoint(redundant):
            raise ValueError(f"block ids already indexed by the tree: {sorted(clash)[:8]}")

    def _cut(self, node: Node) -> None:
        parent = node.parent
        assert parent is not None
        del parent.children[(node.namespace, node.tokens[: self.block_size])]
        node.parent = None

    def _forget(self, node: Node) -> None:
        """Account for a node leaving the tree (evicted or dropped)."""
        nb = len(node.block_ids)
        node.alive = False
        if node.ref:
            self._pinned -= nb
        self._num_nodes -= 1
        self._ns_nodes[node.namespace].discard(node)
        self._held.difference_update(node.block_ids)
        self._cached -= nb
        self._policy.add_blocks(node.namespace, -nb)

    def _detach(self, top: Node, freed: list[int]) -> None:
        parent = top.parent
        assert parent is not None
        self._cut(top)
        if top.ref:
            up = parent
            while up is not self._root:
                assert up is not None
                up.ref -= top.ref
                if up.ref == 0:
                    self._pinned -= len(up.block_ids)
                up = up.parent
        stack = [top]
        while stack:
            n = stack.pop()
            stack.extend(n.children.values())
            n.children = {}
            self._forget(n)
            freed.extend(n.block_ids)
        self._offer(parent)

    def _offer(self, node: Node) -> None:
        if node is self._root or node.ref or node.children or not node.alive:
            return
        self._policy.offer(node)
        if self._policy.needs_rebuild(self._num_nodes):
            self._rebuild_queues()

    def _rebuild_queues(self) -> None:
        self._policy.rebuild([n for n in self._walk() if n.ref == 0 and not n.children])

    def _walk(self) -> list[Node]:
        """Every live node except the root, parents before children."""
        out: list[Node] = []
        stack = list(self._root.children.values())
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(n.children.values())
        return out

    def _count_lookup(self, key: Key) -> None:
        self._lookups += len(key.tokens)
        lookups = self._ns_lookups
        for ns, start, end in key.runs:
            lookups[ns] = lookups.get(ns, 0) + end - start
        if key.tail_namespace is not None and len(key.tokens) > key.full:
            tail = key.tail_namespace
            lookups[tail] = lookups.get(tail, 0) + len(key.tokens) - key.full

    def _evictable_with_retention(self) -> tuple[int, int]:
        """(unpinned blocks in subtrees free of retained namespaces, unpinned retained blocks)."""
        free = kept = 0
        has_retained: dict[int, bool] = {}
        for n in reversed(self._walk()):
            below = any(has_retained[id(c)] for c in n.children.values())
            mine = self._policy.is_retained(n.namespace)
            has_retained[id(n)] = below or mine
            if n.ref:
                continue
            if mine:
                kept += len(n.block_ids)
            elif not below:
                free += len(n.block_ids)
        return free, kept
