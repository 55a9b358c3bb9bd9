"""How long an unused cached prefix may stay, per namespace, and which namespaces never store.

A node expires when `now - last_access > ttl` of its namespace (no TTL: only LRU eviction
removes it). The tree refuses to match expired nodes at once and frees them on `expire()`;
`sweep_at` is a lower bound on the earliest deadline, so `expire()` between deadlines is free.
A `no-store` namespace is never inserted nor looked up: its KV never enters the cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from radix.types import Segment

MAX_TTL_S = 24 * 3600.0


class RetentionPolicy:
    def __init__(self, default_ttl_s: float | None = None) -> None:
        check_ttl(default_ttl_s)
        self.default_ttl_s = default_ttl_s
        self._ttl: dict[bytes, float | None] = {}
        self._no_store: set[bytes] = set()
        self.sweep_at = math.inf

    def set(self, namespace: bytes, ttl_s: float | None, store: bool) -> None:
        check_ttl(ttl_s)
        self._ttl[namespace] = ttl_s
        if store:
            self._no_store.discard(namespace)
        else:
            self._no_store.add(namespace)
        self.sweep_at = -math.inf  # a shorter TTL may expire nodes before the known bound

    def forget(self, namespace: bytes) -> None:
        self._ttl.pop(namespace, None)
        self._no_store.discard(namespace)

    def ttl(self, namespace: bytes) -> float | None:
        return self._ttl.get(namespace, self.default_ttl_s)

    def stores(self, namespace: bytes) -> bool:
        return namespace not in self._no_store

    def expired(self, namespace: bytes, last_access: float, now: float) -> bool:
        ttl = self.ttl(namespace)
        return ttl is not None and now - last_access > ttl

    def touched(self, namespace: bytes, now: float) -> None:
        """A node of `namespace` was created at `now`: its deadline bounds the next sweep."""
        ttl = self.ttl(namespace)
        if ttl is not None:
            self.sweep_at = min(self.sweep_at, now + ttl)

    def storable(self, segments: Sequence[Segment]) -> Sequence[Segment]:
        """The segments before the first no-store one (everything after it is private too)."""
        if not self._no_store:
            return segments
        for i, (ns, _) in enumerate(segments):
            if ns in self._no_store:
                return segments[:i]
        return segments


def check_ttl(ttl_s: float | None) -> None:
    if ttl_s is not None and not 0.0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be in (0, {MAX_TTL_S:.0f}] seconds or None, got {ttl_s}")
