"""`create_app(settings)`: the Litestar application with its routes, errors and lifespan.

The lifespan loads the engine (unless one is handed in, as `prefixgate serve` does to show
load progress before listening), builds the `Runtime`, starts the engine's step loop and stops
it (draining) on shutdown. OpenAPI is served at /schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from engine.async_engine import AsyncEngine
from engine.engine_config import EngineConfig
from gateway.errors import handle_exception
from gateway.middleware import add_response_headers, request_id_middleware
from gateway.routes.admin_audit import audit_records
from gateway.routes.admin_cache import cache_view
from gateway.routes.admin_prompts import PromptController
from gateway.routes.admin_public_prefixes import PublicPrefixController
from gateway.routes.admin_tenants import KeyController, TenantController
from gateway.routes.health import healthz, readyz
from gateway.routes.models import list_models
from gateway.routes.openai import chat_completions, completions
from gateway.runtime import STATE_KEY, Runtime
from gateway.settings import Settings


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
            audit_records,
            healthz,
            readyz,
        ],
        middleware=[request_id_middleware],
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
