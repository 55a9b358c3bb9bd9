"""Audits tenant requests that were refused before their handler ran.

The inference handler audits every request it takes (success, rejection, error, abort). A few
refusals happen earlier, in the framework: a body that is not valid JSON or not the schema, a
body over the size limit, a brute-force 429. When such a refusal answers a caller holding a
valid tenant key, this middleware writes the one audit record the handler would have written
(outcome "rejected", the HTTP status as the code). A caller without a valid key has no tenant,
so there is nothing to attribute the record to: those stay unaudited (and are rate limited).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.middleware import REQUEST_ID_KEY
from tenants.schemas import AuditEntry

log = logging.getLogger(__name__)

# Set by the inference handler when it takes a request: from then on it owns the audit record.
AUDIT_OWNED_KEY = "prefixgate.audit_owned"
TENANT_API_PREFIX = "/v1/"


def audit_rejections_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(TENANT_API_PREFIX):
            await app(scope, receive, send)
            return
        state: dict[str, Any] = scope["state"]  # type: ignore[typeddict-item]

        async def audit_then_send(message: Message) -> None:
            # NOTE: the record is durable before the response starts, like every other record.
            if message["type"] == "http.response.start" and message["status"] >= 400 and (
                not state.get(AUDIT_OWNED_KEY)
            ):
                await _audit_refusal(scope, state, message["status"])
            await send(message)

        await app(scope, receive, audit_then_send)

    return middleware


async def _audit_refusal(scope: Scope, state: dict[str, Any], status: int) -> None:
    from gateway.runtime import STATE_KEY  # the runtime imports the routes that import us

    runtime = scope["app"].state.get(STATE_KEY)
    token = _bearer(scope)
    if runtime is None or token is None:
        return
    try:
        principal = runtime.authenticator.authenticate(token)
    except Exception:  # no valid key: no tenant to attribute the record to
        return
    entry = AuditEntry(
        request_id=state[REQUEST_ID_KEY], tenant_id=principal.tenant_id,
        key_id=principal.key_id, namespace=None, variant_name=None, variant_version=None,
        prompt_tokens=0, cached_tokens=0, completion_tokens=0, reused_blocks=0,
        reused_namespaces=(), outcome="rejected", error_code=f"http_{status}", trace_id=None,
    )
    try:
        await runtime.audit_writer.write(entry)
    except Exception:  # the client already has its answer; the gap shows in audit verify
        log.exception("could not audit a refused request")


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None
