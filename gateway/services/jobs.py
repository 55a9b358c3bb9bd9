"""Turning an authenticated OpenAI request into a `Job`: canonical segments, namespaces, sampling.

This is where the isolation rules meet a request: the prompt is canonicalized
(gateway/canonical.py), each segment gets the namespace the tenant's cache policy allows
(gateway/namespaces.py), and the namespaces are recorded with their owner for the cache view
and tenant deletion. Quotas and the context length are checked before anything is queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from engine.messages import (
    CacheReport,
    EngineRequest,
    PromptSegment,
    RequestResult,
    SamplingParams,
)
from gateway.canonical import Message
from gateway.errors import ApiError
from gateway.namespaces import PublicRef, SegmentNamespaces, VariantRef, segment_namespaces
from gateway.schemas.openai_chat import ChatCompletionRequest
from gateway.schemas.openai_common import stop_list
from gateway.schemas.openai_completions import CompletionRequest
from gateway.services.namespace_index import NamespaceLabel
from gateway.services.variants import ResolvedVariant
from tenants.schemas import Principal

if TYPE_CHECKING:
    from gateway.runtime import Runtime


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """One prompt's canonical segments (a completion request may carry several prompts)."""

    segments: tuple[PromptSegment, ...]

    @property
    def num_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.segments)


@dataclass(slots=True)
class ChoiceOutput:
    """What one choice (one engine request) produced so far."""

    index: int
    pieces: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    result: RequestResult | None = None
    public_cached_tokens: int = 0  # of result.cached_tokens, those of a platform public prefix

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(slots=True)
class Job:
    """Everything needed to run, answer and audit one API request."""

    request_id: str
    principal: Principal
    model: str
    prompts: list[PreparedPrompt]
    n: int
    sampling: SamplingParams
    stream: bool
    include_usage: bool
    variant: ResolvedVariant | None
    audit_namespace: bytes | None
    allowed_namespaces: frozenset[bytes]
    public_namespace: bytes | None = None  # the platform public prefix's, when shared
    outputs: list[ChoiceOutput] = field(default_factory=list)
    engine_s: float = 0.0
    block_size: int = 16  # the engine's KV block (cache writes = inserted blocks x this)

    def __post_init__(self) -> None:
        self.outputs = [ChoiceOutput(i) for i in range(self.num_choices)]

    @property
    def num_choices(self) -> int:
        return len(self.prompts) * self.n

    def prompt_index(self, choice: int) -> int:
        return choice // self.n

    def engine_requests(self) -> list[EngineRequest]:
        """n requests per prompt; choice k of a seeded request gets seed + k."""
        out = []
        for choice in range(self.num_choices):
            sampling = self.sampling
            if sampling.seed is not None and choice:
                sampling = replace(sampling, seed=sampling.seed + choice)
            out.append(
                EngineRequest(
                    request_id=f"{self.request_id}.{choice}",
                    segments=self.prompts[self.prompt_index(choice)].segments,
                    sampling=sampling,
                    tenant=self.principal.tenant_id,
                    max_kv_share=self.principal.quotas.max_kv_share,
                )
            )
        return out

    def public_cached_tokens(self, report: CacheReport) -> int:
        """Reused tokens owned by the public prefix's namespace (whole blocks, within cached)."""
        if self.public_namespace is None:
            return 0
        blocks = sum(1 for b in report.reused if b.namespace == self.public_namespace)
        return min(blocks * self.block_size, report.cached_tokens)

    def foreign_namespaces(self, report: CacheReport) -> list[bytes]:
        """Owners of reused blocks that are not this request's namespaces (must be empty)."""
        return [ns for ns in report.namespaces if ns not in self.allowed_namespaces]


def public_label(public: PublicRef) -> NamespaceLabel:
    return NamespaceLabel(None, f"public:{public.name}@{public.version}", "public")


class JobBuilder:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def chat(self, principal: Principal, req: ChatCompletionRequest, rid: str) -> Job:
        self._check_common(req.model, req.n)
        if not req.messages:
            raise ApiError(400, "`messages` must contain at least one message.", "invalid_value",
                           "messages")
        if req.prompt_variables and req.prompt_variant is None:
            raise ApiError(400, "`prompt_variables` needs a `prompt_variant`.", "invalid_value",
                           "prompt_variables")
        messages = [
            Message("system" if m.role == "developer" else m.role, m.text()) for m in req.messages
        ]
        variant = None
        if req.prompt_variant is not None:
            variant = await self.rt.variants.resolve(
                principal.tenant_id, req.prompt_variant.name, req.prompt_variant.version
            )
        canon = self.rt.canonicalizer.chat(
            messages,
            variant.text if variant else None,
            variant.tokens if variant else None,
            req.prompt_variables,
        )
        ns = self._namespaces(principal, variant, req.user, req.prompt_variables)
        # Opted out of public sharing (no public namespace): the public text is the tenant's own.
        public_ns = ns.public if ns.public is not None else ns.static
        pieces = ((public_ns, canon.public), (ns.static, canon.static), (ns.private, canon.private))
        segments = tuple(PromptSegment(namespace, ids) for namespace, ids in pieces if ids)
        max_tokens = req.max_completion_tokens or req.max_tokens
        return self._job(
            rid, principal, req.model, [PreparedPrompt(segments)], req.n, req.stream,
            req.stream_options.include_usage if req.stream_options else False,
            self._sampling(segments, max_tokens, req.temperature, req.top_p, req.seed, req.stop),
            variant, ns,
        )

    async def completion(self, principal: Principal, req: CompletionRequest, rid: str) -> Job:
        self._check_common(req.model, req.n)
        ns = self._namespaces(principal, None, req.user, None)
        prompts = []
        for text in req.prompts():
            ids = self.rt.canonicalizer.completion(text)
            if not ids:
                raise ApiError(400, "`prompt` must not be empty.", "invalid_value", "prompt")
            prompts.append(PreparedPrompt((PromptSegment(ns.private, ids),)))
        longest = max(prompts, key=lambda p: p.num_tokens).segments
        sampling = self._sampling(
            longest, req.max_tokens, req.temperature, req.top_p, req.seed, req.stop
        )
        return self._job(
            rid, principal, req.model, prompts, req.n, req.stream,
            req.stream_options.include_usage if req.stream_options else False,
            sampling, None, ns,
        )

    def _check_common(self, model: str, n: int) -> None:
        if model != self.rt.model.model_id:
            raise ApiError(404, f"The model `{model}` does not exist.", "model_not_found", "model")
        if n > self.rt.settings.max_n:
            raise ApiError(400, f"`n` must be at most {self.rt.settings.max_n}.", "invalid_value",
                           "n")

    def _namespaces(
        self,
        principal: Principal,
        variant: ResolvedVariant | None,
        user: str | None,
        variables: dict[str, str] | None,
    ) -> SegmentNamespaces:
        ref: VariantRef | None = variant.ref if variant else None
        public = variant.public_ref if variant and principal.quotas.public_prefix_sharing else None
        ns = segment_namespaces(
            principal.cache_policy, principal.tenant_id, self.rt.model, ref, user, variables,
            public,
        )
        label = f"{ref.name}@{ref.version}" if ref else None
        narrowed = "user" if user is not None else "personalization" if variables else "shared"
        self.rt.namespaces.record_all(
            [
                (ns.static, NamespaceLabel(principal.tenant_id, label, "shared")),
                (ns.private, NamespaceLabel(principal.tenant_id, label, narrowed)),
            ]
        )
        if public is not None and ns.public is not None:
            self.rt.namespaces.record(ns.public, public_label(public))
        return ns

    def _sampling(
        self,
        segments: tuple[PromptSegment, ...],
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        stop: str | list[str] | None,
    ) -> SamplingParams:
        prompt_tokens = sum(len(s.token_ids) for s in segments)
        limit = self.rt.engine.max_model_len
        if prompt_tokens >= limit:
            raise ApiError(
                400,
                f"This model's maximum context length is {limit} tokens; your prompt has "
                f"{prompt_tokens} tokens.",
                "context_length_exceeded", "messages",
            )
        if max_tokens is None:
            max_tokens = min(self.rt.settings.default_max_tokens, limit - prompt_tokens)
        if prompt_tokens + max_tokens > limit:
            raise ApiError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, "
                f"{max_tokens} in the completion).",
                "context_length_exceeded", "max_tokens",
            )
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            seed=seed,
            stop_strings=stop_list(stop),
        )

    def _job(
        self,
        rid: str,
        principal: Principal,
        model: str,
        prompts: list[PreparedPrompt],
        n: int,
        stream: bool,
        include_usage: bool,
        sampling: SamplingParams,
        variant: ResolvedVariant | None,
        ns: SegmentNamespaces,
    ) -> Job:
        q = principal.quotas
        tokens = sum(p.num_tokens for p in prompts) + sampling.max_tokens * n * len(prompts)
        self.rt.limiter.acquire(principal.tenant_id, q.requests_per_min, q.tokens_per_min, tokens)
        allowed = frozenset(x for x in (ns.public, ns.static, ns.private) if x is not None)
        return Job(
            request_id=rid, principal=principal, model=model, prompts=prompts, n=n,
            sampling=sampling, stream=stream, include_usage=include_usage, variant=variant,
            audit_namespace=ns.private, allowed_namespaces=allowed, public_namespace=ns.public,
            block_size=self.rt.engine.block_size,
        )
