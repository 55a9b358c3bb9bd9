"""Admin API: tenants and their API keys."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import JSONBody

from gateway.auth import admin_guard
from gateway.routes.params import KeyId, TenantId
from gateway.runtime import Runtime
from gateway.schemas.admin import (
    KeyCreate,
    KeyIssued,
    KeyList,
    KeyRead,
    TenantCreate,
    TenantList,
    TenantRead,
    TenantUpdate,
)
from gateway.services.blocking import in_thread

Req = Request[Any, Any, Any]


class TenantController(Controller):
    path = "/admin/tenants"
    guards = [admin_guard]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["admin"]  # noqa: RUF012

    @post("/")
    async def create(self, request: Req, data: JSONBody[TenantCreate]) -> TenantRead:
        return TenantRead.of(await Runtime.of(request).admin.create_tenant(data))

    @get("/")
    async def list_tenants(self, request: Req) -> TenantList:
        views = await in_thread(Runtime.of(request).tenants.list)
        return TenantList([TenantRead.of(v) for v in views])

    @get("/{tenant_id:str}")
    async def get_tenant(self, request: Req, tenant_id: TenantId) -> TenantRead:
        return TenantRead.of(await in_thread(Runtime.of(request).tenants.get, tenant_id))

    @patch("/{tenant_id:str}")
    async def update(
        self, request: Req, tenant_id: TenantId, data: JSONBody[TenantUpdate]
    ) -> TenantRead:
        """Change name, cache policy, quotas or status (`"suspended"` suspends the tenant)."""
        return TenantRead.of(await Runtime.of(request).admin.update_tenant(tenant_id, data))

    @delete("/{tenant_id:str}", status_code=200)
    async def delete_tenant(self, request: Req, tenant_id: TenantId) -> TenantRead:
        """Delete the tenant, its keys and prompts; drop its namespaces from the KV cache."""
        return TenantRead.of(await Runtime.of(request).admin.delete_tenant(tenant_id))


class KeyController(Controller):
    path = "/admin/tenants/{tenant_id:str}/keys"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @post("/")
    async def issue(
        self, request: Req, tenant_id: TenantId, data: JSONBody[KeyCreate | None] = None
    ) -> KeyIssued:
        """Issue a key; `key` (the secret) appears only in this response."""
        name = data.name if data is not None else None
        issued = await in_thread(Runtime.of(request).keys.issue, tenant_id, name)
        return KeyIssued(issued.id, issued.key, issued.prefix)

    @get("/")
    async def list_keys(self, request: Req, tenant_id: TenantId) -> KeyList:
        views = await in_thread(Runtime.of(request).keys.list, tenant_id)
        return KeyList([KeyRead.of(v) for v in views])

    @delete("/{key_id:str}", status_code=200)
    async def revoke(self, request: Req, tenant_id: TenantId, key_id: KeyId) -> KeyRead:
        return KeyRead.of(await Runtime.of(request).admin.revoke_key(tenant_id, key_id))

    @post("/{key_id:str}/rotate")
    async def rotate(self, request: Req, tenant_id: TenantId, key_id: KeyId) -> KeyIssued:
        """Revoke the key and issue its replacement (secret shown once)."""
        issued = await Runtime.of(request).admin.rotate_key(tenant_id, key_id)
        return KeyIssued(issued.id, issued.key, issued.prefix)
