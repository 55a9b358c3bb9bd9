"""Admin API: what the KV prefix cache holds, per namespace."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from gateway.auth import admin_guard
from gateway.runtime import Runtime
from gateway.schemas.admin import CacheView


@get("/admin/cache", guards=[admin_guard], tags=["admin"])
async def cache_view(request: Request[Any, Any, Any]) -> CacheView:
    """Blocks and hit rate per namespace (hex), labelled with its tenant/variant when known."""
    return CacheView(await Runtime.of(request).admin.cache_view())
