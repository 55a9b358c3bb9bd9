"""Tenant API: `POST /v1/chat/completions` and `POST /v1/completions` (OpenAI shapes)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody
from litestar.response import Stream

from gateway.auth import TenantPrincipal, tenant_principal
from gateway.errors import ErrorBody
from gateway.runtime import Runtime
from gateway.schemas.openai_chat import ChatCompletion, ChatCompletionRequest
from gateway.schemas.openai_completions import Completion, CompletionRequest
from gateway.services.render import ChatRenderer, CompletionRenderer

_ERRORS = {
    status: ResponseSpec(ErrorBody, description=what)
    for status, what in (
        (400, "Invalid request"),
        (401, "Missing, invalid or revoked API key"),
        (403, "Suspended tenant or wrong scope"),
        (404, "Unknown model or prompt variant"),
        (429, "Rate limit, quota or overload (see Retry-After)"),
        (503, "Engine not ready"),
    )
}
_DEPS = {"principal": Provide(tenant_principal)}


@post(
    "/v1/chat/completions",
    status_code=200,
    dependencies=_DEPS,
    tags=["openai"],
    responses={200: ResponseSpec(ChatCompletion, description="Completion or SSE"), **_ERRORS},
)
async def chat_completions(
    request: Request[Any, Any, Any],
    data: JSONBody[ChatCompletionRequest],
    principal: TenantPrincipal,
) -> Response[bytes] | Stream:
    """OpenAI chat completion; `prompt_variant`/`prompt_variables` select a registered prompt."""
    rt = Runtime.of(request)
    return await rt.inference.handle(
        principal, request, lambda rid: rt.jobs.chat(principal, data, rid), ChatRenderer()
    )


@post(
    "/v1/completions",
    status_code=200,
    dependencies=_DEPS,
    tags=["openai"],
    responses={200: ResponseSpec(Completion, description="Completion or SSE"), **_ERRORS},
)
async def completions(
    request: Request[Any, Any, Any], data: JSONBody[CompletionRequest], principal: TenantPrincipal
) -> Response[bytes] | Stream:
    """OpenAI text completion (raw prompt, cached in the tenant's ad-hoc namespace)."""
    rt = Runtime.of(request)
    return await rt.inference.handle(
        principal, request, lambda rid: rt.jobs.completion(principal, data, rid),
        CompletionRenderer(),
    )
