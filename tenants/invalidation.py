"""In-process fan-out of key/tenant changes to every live Authenticator cache."""

from __future__ import annotations

import weakref
from typing import Protocol


class _Listener(Protocol):
    def invalidate_key(self, key_id: str) -> None: ...

    def invalidate_tenant(self, tenant_id: str) -> None: ...


_listeners: weakref.WeakSet[_Listener] = weakref.WeakSet()


def subscribe(listener: _Listener) -> None:
    _listeners.add(listener)


def key_changed(key_id: str) -> None:
    for listener in list(_listeners):
        listener.invalidate_key(key_id)


def tenant_changed(tenant_id: str) -> None:
    for listener in list(_listeners):
        listener.invalidate_tenant(tenant_id)
