"""Frozen views the services return; no ORM object ever leaves `tenants/`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from tenants.errors import Invalid

TenantStatus = Literal["active", "suspended"]
CachePolicy = Literal["tenant", "user", "off"]
# Quotas and versions are stored in INTEGER columns: 32-bit on PostgreSQL.
DB_INT_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Quotas:
    """Per-tenant limits; None means unlimited. Validated on construction (-> Invalid)."""

    max_kv_share: float | None = None
    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    public_prefix_sharing: bool = True
    """False: platform public prefixes are cached in the tenant's own namespaces instead (the
    tenant neither reuses nor contributes to the shared public blocks)."""

    def __post_init__(self) -> None:
        share = self.max_kv_share
        if share is not None and (
            isinstance(share, bool)
            or not isinstance(share, int | float)
            or not math.isfinite(share)
            or not 0.0 < share <= 1.0
        ):
            raise Invalid("quotas.max_kv_share must be a number in (0, 1]")
        for name in ("requests_per_min", "tokens_per_min"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int)
                or not 0 < value <= DB_INT_MAX
            ):
                raise Invalid(f"quotas.{name} must be an integer in 1..{DB_INT_MAX}")
        if not isinstance(self.public_prefix_sharing, bool):
            raise Invalid("quotas.public_prefix_sharing must be a boolean")


@dataclass(frozen=True, slots=True)
class TenantView:
    id: str
    name: str
    status: TenantStatus
    cache_policy: CachePolicy
    quotas: Quotas
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    id: str
    tenant_id: str
    name: str | None
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly issued key; `key` is the full secret token, shown once and hidden from repr."""

    id: str
    key: str = field(repr=False)
    prefix: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated request acts for."""

    tenant_id: str
    tenant_name: str
    key_id: str
    scopes: tuple[str, ...]
    cache_policy: CachePolicy
    quotas: Quotas


@dataclass(frozen=True, slots=True)
class PromptVersionView:
    tenant_id: str
    name: str
    version: int
    content: str
    content_hash: str
    variables: tuple[str, ...]
    public_prefix: tuple[str, int] | None
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class PublicPrefixView:
    name: str
    version: int
    content: str
    content_hash: str
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What the gateway records about one request (handed to `AuditStore.append`)."""

    request_id: str
    tenant_id: str
    key_id: str | None
    namespace: str | None
    variant_name: str | None = None
    variant_version: int | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reused_blocks: int = 0
    reused_namespaces: tuple[str, ...] = ()
    reused_block_ids: tuple[tuple[int, str], ...] = ()
    """Every reused block as (block id, owner namespace hex), in prompt order (DESIGN rule 5)."""
    outcome: str = "ok"
    error_code: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecordView:
    """A stored audit record: its place in the chain plus every `AuditEntry` field."""

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
    reused_namespaces: tuple[str, ...]
    reused_block_ids: tuple[tuple[int, str], ...]
    """Empty for records written before block ids were recorded (migration 0003)."""
    outcome: str
    error_code: str | None
    trace_id: str | None
    prev_hash: str
    hash: str
