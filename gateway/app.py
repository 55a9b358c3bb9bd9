"""`create_app(settings)`: the Litestar application with its routes, errors and lifespan.

The lifespan loads the engine (unless one is handed in, as `prefixgate serve` does to show
load progress before listening), builds the `Runtime`, starts the engine's step loop and stops
it (draining) on shutdown, then flushes the audit writer (commit what is queued, sign the head).
OpenAPI is served at /schema.

Edge defaults, chosen on purpose:
- Request bodies are capped at `MAX_BODY_BYTES` (413 past it, checked on Content-Length and
  while streaming the body): far above any prompt the context can hold, far below memory.
- No CORS: no `access-control-allow-*` header is ever sent, so browsers refuse cross-origin
  reads. Tenant keys are server-side secrets; a page that wants the API goes through its own
  backend. Preflights get no grant.
- No response compression: SSE must reach the client token by token, and compressing
  secrets-bearing responses invites BREACH-style length oracles.
- Security headers on every response (gateway/middleware.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from engine.async_engine import AsyncEngine
from engine.engine_config import EngineConfig
from gateway.audit_rejections import audit_rejections_middleware
from gateway.auth import AUTH_LIMITER_KEY, AuthFailureLimiter
from gateway.errors import handle_exception
from gateway.middleware import add_response_headers, request_id_middleware
from gateway.routes.admin_audit import audit_records, audit_verify
from gateway.routes.admin_cache import cache_view
from gateway.routes.admin_prompts import PromptController
from gateway.routes.admin_public_prefixes import PublicPrefixController
from gateway.routes.admin_tenants import KeyController, TenantController
from gateway.routes.admin_usage import UsageController
from gateway.routes.health import healthz, readyz
from gateway.routes.metrics import metrics
from gateway.routes.models import list_models
from gateway.routes.openai import chat_completions, completions
from gateway.runtime import STATE_KEY, Runtime
from gateway.settings import Settings

log = logging.getLogger("prefixgate.gateway")
MAX_BODY_BYTES = 2 * 1024 * 1024


def engine_config(settings: Settings, progress: bool = True) -> EngineConfig:
    return EngineConfig(
        model_dir=str(settings.resolved_model_dir),
        device=settings.device,
        kv_cache_gib=settings.kv_gib,
        kv_fraction=settings.kv_fraction,
        max_num_seqs=settings.max_num_seqs,
        max_queue=settings.max_queue,
        queue_timeout_s=settings.queue_timeout_s,
        progress=progress,
    )


def create_app(settings: Settings, engine: AsyncEngine | None = None) -> Litestar:
    """The gateway app. `settings.admin_token` must be set (see Settings.with_admin_token)."""
    if not settings.admin_token:
        raise ValueError("settings.admin_token must be set before creating the app")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        loaded = engine
        if loaded is None:
            loaded = await anyio.to_thread.run_sync(AsyncEngine.load, engine_config(settings))
        runtime = Runtime.build(settings, loaded)
        app.state[STATE_KEY] = runtime
        await loaded.start()
        try:
            yield
        finally:
            await loaded.stop()
            try:
                await anyio.to_thread.run_sync(runtime.flush_audit)
            except Exception:  # shutdown goes on; `prefixgate audit verify` reports the gap
                log.exception("could not flush the audit writer at shutdown")
            runtime.observability.shutdown()  # flush the spans still batched
            runtime.db.dispose()

    return Litestar(
        route_handlers=[
            chat_completions,
            completions,
            list_models,
            TenantController,
            KeyController,
            PromptController,
            PublicPrefixController,
            cache_view,
            UsageController,
            audit_records,
            audit_verify,
            healthz,
            readyz,
            metrics,
        ],
        middleware=[request_id_middleware, audit_rejections_middleware],
        state=State({AUTH_LIMITER_KEY: AuthFailureLimiter()}),
        request_max_body_size=MAX_BODY_BYTES,
        cors_config=None,
        compression_config=None,
        before_send=[add_response_headers],
        exception_handlers={Exception: handle_exception},
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="prefixgate",
            version="0.1.0",
            description="Multi-tenant prefix-cache gateway: OpenAI-compatible tenant API "
            "(Bearer tenant key) and admin API (Bearer admin token).",
            path="/schema",
        ),
        debug=False,
        logging_config=None,  # uvicorn and the host process configure logging
    )
