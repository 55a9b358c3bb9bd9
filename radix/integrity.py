"""check_tree: recomputes everything the tree keeps incrementally and asserts it matches."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radix.tree import RadixTree


def check_tree(tree: RadixTree) -> None:
    bs = tree.block_size
    root = tree._root
    assert root.parent is None and root.alive and not root.block_ids
    ids: list[int] = []
    by_ns: dict[bytes, set[int]] = {}
    ns_blocks: dict[bytes, int] = {}
    pinned = 0
    candidates = []
    nodes = tree._walk()
    for n in nodes:
        parent = n.parent
        assert n.alive and parent is not None and parent.alive, n
        assert parent.children.get((n.namespace, n.tokens[:bs])) is n, n
        assert n.block_ids and len(n.tokens) == len(n.block_ids) * bs, n
        assert parent is root or parent.last_access >= n.last_access, (parent, n)
        assert n.pins >= 0 and n.ref == n.pins + sum(c.ref for c in n.children.values()), n
        ids.extend(n.block_ids)
        by_ns.setdefault(n.namespace, set()).add(id(n))
        ns_blocks[n.namespace] = ns_blocks.get(n.namespace, 0) + len(n.block_ids)
        if n.ref:
            pinned += len(n.block_ids)
        elif not n.children:
            candidates.append(n)
    assert len(ids) == len(set(ids)), "a block id is held twice"
    assert set(ids) == tree._held
    assert tree._num_nodes == len(nodes)
    assert tree._cached == len(ids)
    assert tree._pinned == pinned, (tree._pinned, pinned)
    assert {ns: {id(n) for n in s} for ns, s in tree._ns_nodes.items() if s} == by_ns
    policy = tree._policy
    assert {ns: b for ns, b in policy.ns_blocks.items() if b} == ns_blocks
    policy.check(candidates)
