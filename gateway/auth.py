"""Authentication of the two API scopes: tenant API keys and the admin token.

Tenant routes take a `Principal` dependency. The registry's Authenticator is called on the
event loop: its warm path is an in-memory hit of a few microseconds (cheaper than a hop to a
worker thread), and its cold path — one primary-key read, at most once per key per cache TTL —
is short enough to take inline. The admin token is compared in constant time. The scopes are
separate: the admin token is refused on the tenant API and a tenant key on the admin API
(403), while a token that is neither is 401.
"""

from __future__ import annotations

import hmac
from typing import TypeAlias

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from gateway.errors import ApiError
from gateway.runtime import Runtime
from tenants.errors import AuthError
from tenants.schemas import Principal

INFERENCE_SCOPE = "inference"
# How a tenant route declares the `principal` dependency (provided by `tenant_principal`).
TenantPrincipal: TypeAlias = NamedDependency[Principal]


def bearer_token(connection: ASGIConnection) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "You didn't provide an API key. Use the header `Authorization: Bearer <key>`.",
            "missing_api_key",
        )
    return token


def is_admin_token(runtime: Runtime, token: str) -> bool:
    expected = runtime.settings.admin_token
    assert expected, "the admin token is set before the app starts"
    return hmac.compare_digest(token.encode(), expected.encode())


async def tenant_principal(request: ASGIConnection) -> Principal:
    """Dependency of the tenant API: the caller's Principal, with the inference scope."""
    runtime = Runtime.of(request)
    token = bearer_token(request)
    if is_admin_token(runtime, token):
        raise ApiError(403, "The admin token cannot call the tenant API.", "insufficient_scope")
    principal = runtime.authenticator.authenticate(token)
    if INFERENCE_SCOPE not in principal.scopes:
        raise ApiError(403, "This API key lacks the inference scope.", "insufficient_scope")
    return principal


async def admin_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Guard of the admin API: only the admin token passes; a tenant key is 403."""
    runtime = Runtime.of(connection)
    token = bearer_token(connection)
    if is_admin_token(runtime, token):
        return
    try:
        await anyio.to_thread.run_sync(runtime.authenticator.authenticate, token)
    except AuthError:
        raise ApiError(401, "Incorrect admin token provided.", "invalid_admin_token") from None
    raise ApiError(403, "Tenant API keys cannot call the admin API.", "insufficient_scope")
