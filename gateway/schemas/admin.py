"""Admin API shapes: tenants, API keys, prompt variants, cache view, audit records.

Split into create/update/read Structs; `*Read.of(view)` converts the registry's frozen
dataclasses (tenants/schemas.py) so the routes stay one-liners. Public prefixes are the
platform's (admin-registered) shared prompt heads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from tenants.schemas import (
    ApiKeyView,
    AuditRecordView,
    PromptVersionView,
    PublicPrefixView,
    TenantView,
)

Policy = Literal["tenant", "user", "off"]


class QuotasBody(msgspec.Struct, forbid_unknown_fields=True):
    max_kv_share: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None
    requests_per_min: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tokens_per_min: Annotated[int, msgspec.Meta(ge=1)] | None = None
    public_prefix_sharing: bool = True
    """False: platform public prefixes are cached in the tenant's own namespaces."""


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    cache_policy: Policy = "tenant"
    quotas: QuotasBody | None = None


class TenantUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out (or null) stay as they are; `quotas` replaces all three quotas."""

    name: str | None = None
    cache_policy: Policy | None = None
    quotas: QuotasBody | None = None
    status: Literal["active", "suspended"] | None = None


class TenantRead(msgspec.Struct):
    id: str
    name: str
    cache_policy: str
    status: str
    quotas: QuotasBody
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, v: TenantView) -> TenantRead:
        q = v.quotas
        return cls(
            v.id,
            v.name,
            v.cache_policy,
            v.status,
            QuotasBody(q.max_kv_share, q.requests_per_min, q.tokens_per_min,
                       q.public_prefix_sharing),
            v.created_at,
            v.updated_at,
        )


class TenantList(msgspec.Struct):
    data: list[TenantRead]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None


class KeyIssued(msgspec.Struct):
    """A new API key. `key` is the secret: shown only in this response."""

    id: str
    key: str
    prefix: str


class KeyRead(msgspec.Struct):
    id: str
    tenant_id: str
    name: str | None
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, v: ApiKeyView) -> KeyRead:
        return cls(
            v.id,
            v.tenant_id,
            v.name,
            v.prefix,
            list(v.scopes),
            v.created_at,
            v.last_used_at,
            v.revoked_at,
        )


class KeyList(msgspec.Struct):
    data: list[KeyRead]


class PublicPrefixRef(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    version: int


class PromptCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A prompt version; with `public_prefix` the prompt continues that platform prefix."""

    name: str
    content: str
    public_prefix: PublicPrefixRef | None = None


class PromptRead(msgspec.Struct):
    name: str
    version: int
    content_hash: str
    variables: list[str]
    content: str
    created_at: datetime
    retired_at: datetime | None
    public_prefix: PublicPrefixRef | None = None

    @classmethod
    def of(cls, v: PromptVersionView) -> PromptRead:
        public = PublicPrefixRef(*v.public_prefix) if v.public_prefix else None
        return cls(
            v.name,
            v.version,
            v.content_hash,
            list(v.variables),
            v.content,
            v.created_at,
            v.retired_at,
            public,
        )


class PromptList(msgspec.Struct):
    data: list[PromptRead]


class PublicPrefixCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    content: str


class PublicPrefixRead(msgspec.Struct):
    name: str
    version: int
    content_hash: str
    content: str
    created_at: datetime
    retired_at: datetime | None

    @classmethod
    def of(cls, v: PublicPrefixView) -> PublicPrefixRead:
        return cls(v.name, v.version, v.content_hash, v.content, v.created_at, v.retired_at)


class PublicPrefixList(msgspec.Struct):
    data: list[PublicPrefixRead]


class PromptWarm(msgspec.Struct, forbid_unknown_fields=True):
    """Optional body of `warm`: which version (default: the newest non-retired)."""

    version: int | None = None


class PromptWarmed(msgspec.Struct):
    name: str
    version: int
    cached_tokens: int


class CacheEntry(msgspec.Struct):
    """One namespace's cached blocks. `tenant_id`/`variant` are set when the gateway knows."""

    namespace: str
    blocks: int
    hit_tokens: int
    lookup_tokens: int
    hit_rate: float
    tenant_id: str | None = None
    variant: str | None = None
    scope: str | None = None


class CacheView(msgspec.Struct):
    data: list[CacheEntry]


class AuditRecordRead(msgspec.Struct):
    seq: int
    created_at: datetime
    request_id: str
    tenant_id: str
    key_id: str | None
    namespace: str | None
    variant_name: str | None
    variant_version: int | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reused_blocks: int
    reused_namespaces: list[str]
    reused_block_ids: list[tuple[int, str]]
    """Every reused KV block as [block id, owner namespace hex] (empty before migration 0003)."""
    outcome: str
    error_code: str | None
    trace_id: str | None
    prev_hash: str
    hash: str
    public_cached_tokens: int = 0
    """Computed, not stored: the part of `cached_tokens` reused from platform public prefixes
    (distinct public-owned blocks x block size, at most `cached_tokens`)."""

    @classmethod
    def of(
        cls, v: AuditRecordView, public_namespaces: frozenset[str] = frozenset(),
        block_size: int = 16,
    ) -> AuditRecordRead:
        public_blocks = {b for b, ns in v.reused_block_ids if ns in public_namespaces}
        return cls(
            v.seq,
            v.created_at,
            v.request_id,
            v.tenant_id,
            v.key_id,
            v.namespace,
            v.variant_name,
            v.variant_version,
            v.prompt_tokens,
            v.cached_tokens,
            v.completion_tokens,
            v.reused_blocks,
            list(v.reused_namespaces),
            list(v.reused_block_ids),
            v.outcome,
            v.error_code,
            v.trace_id,
            v.prev_hash,
            v.hash,
            min(len(public_blocks) * block_size, v.cached_tokens),
        )


class AuditList(msgspec.Struct):
    data: list[AuditRecordRead]


class AuditVerifyRead(msgspec.Struct):
    """The chain check: hashes, links and signed checkpoints, against the server's key."""

    ok: bool
    records: int
    first_broken: int | None
