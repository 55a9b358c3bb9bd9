"""Operations: liveness (`/healthz`) and readiness (`/readyz`: the engine is running)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get

from gateway.errors import ApiError
from gateway.runtime import Runtime


class Health(msgspec.Struct):
    status: str


@get("/healthz", tags=["ops"])
async def healthz() -> Health:
    return Health("ok")


@get("/readyz", tags=["ops"])
async def readyz(request: Request[Any, Any, Any]) -> Health:
    if not Runtime.of(request).engine.ready:
        raise ApiError(503, "The engine is not ready.", "engine_not_ready", None, 1.0)
    return Health("ready")
