"""Admin API: platform public prefixes (shared prompt heads every tenant may build on)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.params import JSONBody

from gateway.auth import admin_guard
from gateway.routes.params import PromptName, Version
from gateway.runtime import Runtime
from gateway.schemas.admin import PublicPrefixCreate, PublicPrefixList, PublicPrefixRead
from gateway.services.blocking import in_thread

Req = Request[Any, Any, Any]


class PublicPrefixController(Controller):
    path = "/admin/public-prefixes"
    guards = [admin_guard]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["admin"]  # noqa: RUF012

    @post("/")
    async def register(self, request: Req, data: JSONBody[PublicPrefixCreate]) -> PublicPrefixRead:
        """Register the next version of a public prefix (cached once for all tenants)."""
        rt = Runtime.of(request)
        return PublicPrefixRead.of(
            await in_thread(rt.public_prefixes.register, data.name, data.content)
        )

    @get("/")
    async def list_prefixes(self, request: Req) -> PublicPrefixList:
        views = await in_thread(Runtime.of(request).public_prefixes.list)
        return PublicPrefixList([PublicPrefixRead.of(v) for v in views])

    @delete("/{name:str}/versions/{version:int}", status_code=200)
    async def retire(self, request: Req, name: PromptName, version: Version) -> PublicPrefixRead:
        admin = Runtime.of(request).admin
        return PublicPrefixRead.of(await admin.retire_public_prefix(name, version))
