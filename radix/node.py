"""A radix tree node: a run of whole blocks of one namespace (a compressed edge)."""

from __future__ import annotations


class Node:
    """Holds `tokens` (flat, len == len(block_ids) * block_size) and their physical blocks.

    NOTE: `ref` counts the pins of this node and of every node below it (a pin walks to the
    root), so a node with ref == 0 has an entirely unpinned subtree. `alive` turns False when
    the node leaves the tree (evicted or dropped); a dropped subtree keeps its internal parent
    links but its top is cut loose (parent None), so unpinning a stale handle never reaches a
    live node.
    """

    __slots__ = (
        "alive",
        "block_ids",
        "children",
        "last_access",
        "namespace",
        "parent",
        "pins",
        "ref",
        "tokens",
    )

    def __init__(
        self,
        namespace: bytes,
        tokens: tuple[int, ...],
        block_ids: tuple[int, ...],
        parent: Node | None,
        last_access: float,
    ) -> None:
        self.namespace = namespace
        self.tokens = tokens
        self.block_ids = block_ids
        self.parent = parent
        self.children: dict[tuple[bytes, tuple[int, ...]], Node] = {}
        self.ref = 0  # pins of this node and of all nodes below it
        self.pins = 0  # pins taken on this node itself (handles pointing here)
        self.last_access = last_access
        self.alive = True

    @property
    def num_blocks(self) -> int:
        return len(self.block_ids)

    def __repr__(self) -> str:
        return (
            f"Node(ns={self.namespace!r}, blocks={self.block_ids}, ref={self.ref}, "
            f"t={self.last_access}, children={len(self.children)})"
        )
