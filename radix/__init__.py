"""Namespaced, block-granular radix tree of KV-cache blocks (pure Python, no torch)."""

from radix.tree import RadixTree
from radix.types import (
    DetachedNodeError,
    InsertResult,
    Match,
    NamespaceStats,
    RadixStats,
    Segment,
)

__all__ = [
    "DetachedNodeError",
    "InsertResult",
    "Match",
    "NamespaceStats",
    "RadixStats",
    "RadixTree",
    "Segment",
]
