"""Which tenant (and variant) each namespace the gateway has used belongs to.

Namespaces are one-way hashes, so the engine cannot tell whose blocks it holds. The gateway
records every namespace it derives, so the admin cache view can label them and deleting a
tenant can drop exactly its namespaces from the cache. The KV cache lives in this process's
memory, so this in-memory index covers every namespace the cache can hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NamespaceLabel:
    """Who a namespace belongs to: tenant (None: a platform public prefix), variant
    ("name@version") and scope kind."""

    tenant_id: str | None
    variant: str | None
    scope: str  # "public", "shared", "user" or "personalization"


class NamespaceIndex:
    """namespace -> label, and tenant -> its namespaces. Used from the event loop only."""

    def __init__(self) -> None:
        self._labels: dict[bytes, NamespaceLabel] = {}
        self._by_tenant: dict[str, set[bytes]] = {}

    def record(self, namespace: bytes, label: NamespaceLabel) -> None:
        if namespace in self._labels:
            return
        self._labels[namespace] = label
        if label.tenant_id is not None:
            self._by_tenant.setdefault(label.tenant_id, set()).add(namespace)

    def record_all(self, items: Iterable[tuple[bytes | None, NamespaceLabel]]) -> None:
        for namespace, label in items:
            if namespace is not None:
                self.record(namespace, label)

    def label(self, namespace: bytes) -> NamespaceLabel | None:
        return self._labels.get(namespace)

    def of_tenant(self, tenant_id: str) -> frozenset[bytes]:
        return frozenset(self._by_tenant.get(tenant_id, ()))

    def forget_tenant(self, tenant_id: str) -> frozenset[bytes]:
        """Remove and return the tenant's namespaces (the caller drops them from the cache)."""
        namespaces = frozenset(self._by_tenant.pop(tenant_id, ()))
        for ns in namespaces:
            del self._labels[ns]
        return namespaces
