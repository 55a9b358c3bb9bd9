"""Admin API: reviewing the audit trail and checking that it is the one the server wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import FromQuery, Parameter

from gateway.auth import admin_guard
from gateway.namespaces import PublicRef, derive_public
from gateway.runtime import Runtime
from gateway.schemas.admin import AuditList, AuditRecordRead, AuditVerifyRead
from gateway.services.blocking import in_thread
from tenants.audit_verify import verify_chain


@get("/admin/audit", guards=[admin_guard], tags=["admin"])
async def audit_records(
    request: Request[Any, Any, Any],
    tenant_id: FromQuery[str | None] = None,
    request_id: FromQuery[str | None] = None,
    since: FromQuery[datetime | None] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> AuditList:
    """Audit records, filtered by tenant, request id and time (UTC if no offset), oldest first."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    rt = Runtime.of(request)
    records = await in_thread(
        rt.audit.query,
        tenant_id=tenant_id,
        request_id=request_id,
        since=since,
        limit=limit,
    )
    prefixes = await in_thread(rt.public_prefixes.list)
    public = frozenset(
        derive_public(rt.model, PublicRef(p.name, p.version, p.content_hash)).hex()
        for p in prefixes
    )
    block = rt.engine.block_size
    return AuditList([AuditRecordRead.of(r, public, block) for r in records])


@get("/admin/audit/verify", guards=[admin_guard], tags=["admin"])
async def audit_verify(request: Request[Any, Any, Any]) -> AuditVerifyRead:
    """Recompute every hash and link and check the signed checkpoints with the server's key;
    `first_broken` is the first record that can no longer be trusted (null when `ok`)."""
    rt = Runtime.of(request)
    report = await in_thread(
        verify_chain, rt.db, public_key=rt.audit_signer.public_key,
        checkpoint_every=rt.audit_signer.every,
    )
    return AuditVerifyRead(report.ok, report.records, report.first_broken)
