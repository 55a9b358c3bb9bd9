"""A request id, a Server-Timing header and the security headers on every HTTP response.

The id (`x-request-id`) is generated here, never taken from the caller, so audit records
cannot be made to collide. `server-timing` reports the caller's own request: `total` (from
the moment a route took the request to the response head) and `engine` (the engine's own
time, set by the handler), so the gateway's overhead is `total - engine`.

The security headers suit a JSON/SSE API that no browser page should embed or sniff:
`nosniff`, no framing, no referrer, and `no-store` unless the handler chose a cache policy (SSE
says `no-cache`). The content security policy forbids everything except on the interactive
OpenAPI pages under /schema, which load their own scripts and styles.

Two pieces, because Litestar runs middleware only for routed requests: the middleware stamps
the id and start time before the handler runs; the app-level `before_send` hook writes the
headers on every response, 404/405/413 included (minting an id where no route ran).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_KEY = "prefixgate.request_id"
START_KEY = "prefixgate.start"
ENGINE_S_KEY = "prefixgate.engine_s"
SCHEMA_PATH = "/schema"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state: dict[str, Any] = scope["state"]  # type: ignore[typeddict-item]
            state[START_KEY] = time.perf_counter()
            state[REQUEST_ID_KEY] = new_request_id()
        await app(scope, receive, send)

    return middleware


async def add_response_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: x-request-id, server-timing and the security headers."""
    if message["type"] != "http.response.start":
        return
    state: dict[str, Any] = scope.setdefault("state", {})  # type: ignore[typeddict-item]
    request_id = state.setdefault(REQUEST_ID_KEY, new_request_id())
    headers = list(message.get("headers", ()))
    present = {bytes(name).lower() for name, _ in headers}
    headers.append((b"x-request-id", request_id.encode()))
    start = state.get(START_KEY)
    if start is not None:
        timing = f"total;dur={(time.perf_counter() - start) * 1e3:.3f}"
        engine_s = state.get(ENGINE_S_KEY)
        if engine_s is not None:
            timing += f", engine;dur={engine_s * 1e3:.3f}"
        headers.append((b"server-timing", timing.encode()))
    headers.extend(SECURITY_HEADERS)
    if not str(scope.get("path", "")).startswith(SCHEMA_PATH):
        headers.append(API_CSP)
    if b"cache-control" not in present:
        headers.append((b"cache-control", b"no-store"))
    message["headers"] = headers  # type: ignore[typeddict-unknown-key]
