"""ORM row -> frozen view conversions (the only place that reads ORM objects into schemas)."""

from __future__ import annotations

from tenants.models import ApiKey, AuditRecord, PromptVariant, PublicPrefix, Tenant
from tenants.schemas import (
    ApiKeyView,
    AuditRecordView,
    PromptVersionView,
    PublicPrefixView,
    Quotas,
    TenantView,
)


def quotas_of(row: Tenant) -> Quotas:
    return Quotas(row.max_kv_share, row.requests_per_min, row.tokens_per_min,
                  row.public_prefix_sharing)


def tenant_view(row: Tenant) -> TenantView:
    return TenantView(
        id=row.id,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]
        cache_policy=row.cache_policy,  # type: ignore[arg-type]
        quotas=quotas_of(row),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def key_view(row: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def prompt_view(row: PromptVariant) -> PromptVersionView:
    public = (
        None
        if row.public_prefix_name is None or row.public_prefix_version is None
        else (row.public_prefix_name, row.public_prefix_version)
    )
    return PromptVersionView(
        tenant_id=row.tenant_id,
        name=row.name,
        version=row.version,
        content=row.content,
        content_hash=row.content_hash,
        variables=tuple(row.variables),
        public_prefix=public,
        created_at=row.created_at,
        retired_at=row.retired_at,
    )


def public_prefix_view(row: PublicPrefix) -> PublicPrefixView:
    return PublicPrefixView(
        name=row.name,
        version=row.version,
        content=row.content,
        content_hash=row.content_hash,
        created_at=row.created_at,
        retired_at=row.retired_at,
    )


def block_ids_of(stored: list[list[int | str]] | None) -> tuple[tuple[int, str], ...]:
    """Stored `reused_block_ids` JSON ([[id, ns], ...] or NULL for old records) as a tuple."""
    return tuple((int(block), str(ns)) for block, ns in stored or ())


def audit_view(row: AuditRecord) -> AuditRecordView:
    return AuditRecordView(
        seq=row.seq,
        created_at=row.created_at,
        request_id=row.request_id,
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        namespace=row.namespace,
        variant_name=row.variant_name,
        variant_version=row.variant_version,
        prompt_tokens=row.prompt_tokens,
        cached_tokens=row.cached_tokens,
        completion_tokens=row.completion_tokens,
        reused_blocks=row.reused_blocks,
        reused_namespaces=tuple(row.reused_namespaces),
        reused_block_ids=block_ids_of(row.reused_block_ids),
        outcome=row.outcome,
        error_code=row.error_code,
        trace_id=row.trace_id,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
