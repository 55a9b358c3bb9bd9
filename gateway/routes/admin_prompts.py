"""Admin API: a tenant's prompt variants (versions, retirement, cache warm-up)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.params import JSONBody

from gateway.auth import admin_guard
from gateway.routes.params import PromptName, TenantId, Version
from gateway.runtime import Runtime
from gateway.schemas.admin import PromptCreate, PromptList, PromptRead, PromptWarm, PromptWarmed
from gateway.services.blocking import in_thread

Req = Request[Any, Any, Any]


class PromptController(Controller):
    path = "/admin/tenants/{tenant_id:str}/prompts"
    guards = [admin_guard]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["admin"]  # noqa: RUF012

    @post("/")
    async def register(
        self, request: Req, tenant_id: TenantId, data: JSONBody[PromptCreate]
    ) -> PromptRead:
        """Register a new version of a prompt (`{{name}}` marks a personalization variable;
        `public_prefix` makes it continue a platform public prefix)."""
        return PromptRead.of(await Runtime.of(request).admin.register_prompt(tenant_id, data))

    @get("/")
    async def list_prompts(self, request: Req, tenant_id: TenantId) -> PromptList:
        views = await in_thread(Runtime.of(request).prompts.list, tenant_id)
        return PromptList([PromptRead.of(v) for v in views])

    @post("/{name:str}/warm", status_code=200)
    async def warm(
        self,
        request: Req,
        tenant_id: TenantId,
        name: PromptName,
        data: JSONBody[PromptWarm | None] = None,
    ) -> PromptWarmed:
        """Prefill the variant's static part into the cache now."""
        version = data.version if data is not None else None
        return await Runtime.of(request).admin.warm_prompt(tenant_id, name, version)

    @delete("/{name:str}/versions/{version:int}", status_code=200)
    async def retire(
        self, request: Req, tenant_id: TenantId, name: PromptName, version: Version
    ) -> PromptRead:
        admin = Runtime.of(request).admin
        return PromptRead.of(await admin.retire_prompt(tenant_id, name, version))
