"""Operations: `GET /metrics`, the Prometheus text format, for the admin token only.

Per-tenant usage is in there, so a tenant key is refused like on the admin API (DESIGN.md
rule 6); Prometheus sends the token with `authorization: {type: Bearer, credentials_file: ...}`.
The scrape reads the engine's stats under its lock, so it runs in a worker thread.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Request, Response, get

from gateway.auth import admin_guard
from gateway.metrics import MEDIA_TYPE
from gateway.runtime import Runtime


@get("/metrics", guards=[admin_guard], tags=["ops"], media_type=MEDIA_TYPE)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Gateway and engine metrics (requests, tokens, cache hits, latency, KV cache, queue)."""
    body = await anyio.to_thread.run_sync(Runtime.of(request).observability.metrics.exposition)
    return Response(content=body, media_type=MEDIA_TYPE)
