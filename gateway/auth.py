"""Authentication of the two API scopes: tenant API keys and the admin token.

Tenant routes take a `Principal` dependency. The registry's Authenticator is called on the
event loop: its warm path is an in-memory hit of a few microseconds (cheaper than a hop to a
worker thread), and its cold path — one primary-key read, at most once per key per cache TTL —
is short enough to take inline. The admin token is compared in constant time. The scopes are
separate: the admin token is refused on the tenant API and a tenant key on the admin API
(403), while a token that is neither is 401.

Guessing is rate limited per source address: after `max_failures` refused credentials (401)
within `window_s`, every authenticated call from that address is answered 429 with
Retry-After until the oldest failure leaves the window. The check runs before the credential
is looked at, so while blocked a right key and a wrong one get the same answer (no oracle),
and a success does not clear the count (one valid key cannot launder guesses).
"""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from collections.abc import Callable
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
AUTH_LIMITER_KEY = "auth_failures"
# How a tenant route declares the `principal` dependency (provided by `tenant_principal`).
TenantPrincipal: TypeAlias = NamedDependency[Principal]


class AuthFailureLimiter:
    """Refused credentials per source address in a sliding window; bounded memory."""

    def __init__(
        self,
        max_failures: int = 20,
        window_s: float = 60.0,
        max_sources: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert max_failures >= 1 and window_s > 0 and max_sources >= 1
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_sources = max_sources
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def check(self, source: str) -> None:
        """Raise 429 while `source` has used up its failures for the window."""
        stamps = self._recent(source, self._clock())
        if stamps is not None and len(stamps) >= self.max_failures:
            wait = stamps[0] + self.window_s - self._clock()
            raise ApiError(
                429,
                "Too many failed authentication attempts from this address; retry later.",
                "too_many_auth_failures",
                None,
                max(1.0, math.ceil(wait)),
            )

    def record_failure(self, source: str) -> None:
        now = self._clock()
        stamps = self._recent(source, now)
        if stamps is None:
            if len(self._failures) >= self.max_sources:
                self._prune(now)
            stamps = self._failures.setdefault(source, deque(maxlen=self.max_failures))
        stamps.append(now)

    def _recent(self, source: str, now: float) -> deque[float] | None:
        stamps = self._failures.get(source)
        if stamps is None:
            return None
        while stamps and stamps[0] <= now - self.window_s:
            stamps.popleft()
        if not stamps:
            del self._failures[source]
            return None
        return stamps

    def _prune(self, now: float) -> None:
        for source in list(self._failures):
            self._recent(source, now)
        if len(self._failures) >= self.max_sources:  # a flood of sources: start over
            self._failures.clear()


def source_of(connection: ASGIConnection) -> str:
    client = connection.scope.get("client")
    return client[0] if client else "unknown"


def _limiter(connection: ASGIConnection) -> AuthFailureLimiter:
    limiter = connection.app.state[AUTH_LIMITER_KEY]
    assert isinstance(limiter, AuthFailureLimiter)
    return limiter


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
    limiter, source = _limiter(request), source_of(request)
    limiter.check(source)
    token = bearer_token(request)
    if is_admin_token(runtime, token):
        raise ApiError(403, "The admin token cannot call the tenant API.", "insufficient_scope")
    try:
        principal = runtime.authenticator.authenticate(token)
    except AuthError as exc:
        if exc.reason != "suspended":  # a wrong or revoked secret: a guess
            limiter.record_failure(source)
        raise
    if INFERENCE_SCOPE not in principal.scopes:
        raise ApiError(403, "This API key lacks the inference scope.", "insufficient_scope")
    return principal


async def admin_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Guard of the admin API: only the admin token passes; a tenant key is 403."""
    runtime = Runtime.of(connection)
    limiter, source = _limiter(connection), source_of(connection)
    limiter.check(source)
    token = bearer_token(connection)
    if is_admin_token(runtime, token):
        return
    try:
        await anyio.to_thread.run_sync(runtime.authenticator.authenticate, token)
    except AuthError:
        limiter.record_failure(source)
        raise ApiError(401, "Incorrect admin token provided.", "invalid_admin_token") from None
    raise ApiError(403, "Tenant API keys cannot call the admin API.", "insufficient_scope")
