"""Tenant API: `GET /v1/models` — the one model this gateway serves."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import Provide

from gateway.auth import TenantPrincipal, tenant_principal
from gateway.runtime import Runtime
from gateway.schemas.openai_common import ModelCard, ModelList


@get("/v1/models", dependencies={"principal": Provide(tenant_principal)}, tags=["openai"])
async def list_models(request: Request[Any, Any, Any], principal: TenantPrincipal) -> ModelList:
    rt = Runtime.of(request)
    return ModelList([ModelCard(rt.model.model_id, rt.started_at)])
