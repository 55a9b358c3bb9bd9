"""The gateway's long-lived objects, built once at start-up and reached from every handler.

`Runtime.of(connection)` is the single way a handler, guard or dependency finds the registry
services, the engine and the gateway's own caches (kept in the Litestar app state).

Audit records go through one group-commit `AuditWriter` (a background thread that chains every
record queued meanwhile in one transaction) with the server's Ed25519 signer, whose key comes
from settings or is generated once under the data dir (mode 0600). `flush_audit()` at
shutdown commits what is queued and signs the head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from litestar.connection import ASGIConnection

from engine.async_engine import AsyncEngine
from gateway.canonical import ChatCanonicalizer
from gateway.namespaces import ModelIdentity
from gateway.observability import Observability
from gateway.services.admin import AdminService
from gateway.services.inference import InferenceService
from gateway.services.jobs import JobBuilder
from gateway.services.metering import Meter
from gateway.services.namespace_index import NamespaceIndex
from gateway.services.rate_limit import RateLimiter
from gateway.services.variants import VariantResolver
from gateway.settings import Settings
from tenants.audit import AuditStore
from tenants.audit_signing import AuditSigner
from tenants.authenticator import Authenticator
from tenants.database import Database
from tenants.key_service import KeyService
from tenants.prompt_service import PromptService
from tenants.public_prefix_service import PublicPrefixService
from tenants.tenant_service import TenantService
from tenants.usage_writer import MeteredAuditWriter

STATE_KEY = "runtime"


@dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    tenants: TenantService
    keys: KeyService
    prompts: PromptService
    public_prefixes: PublicPrefixService
    audit: AuditStore
    audit_signer: AuditSigner
    audit_writer: MeteredAuditWriter
    authenticator: Authenticator
    engine: AsyncEngine
    canonicalizer: ChatCanonicalizer
    model: ModelIdentity
    namespaces: NamespaceIndex
    variants: VariantResolver
    limiter: RateLimiter
    observability: Observability
    started_at: int
    jobs: JobBuilder = field(init=False)
    inference: InferenceService = field(init=False)
    admin: AdminService = field(init=False)
    meter: Meter = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = JobBuilder(self)
        self.inference = InferenceService(self)
        self.admin = AdminService(self)
        self.meter = Meter(self)

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine, db: Database | None = None) -> Runtime:
        db = db or Database.from_url(settings.resolved_db_url)
        prompts = PromptService(db)
        public_prefixes = PublicPrefixService(db)
        canonicalizer = ChatCanonicalizer(engine.tokenizer)
        signer = AuditSigner.from_settings(
            settings.audit_signing_key, settings.resolved_audit_key_file,
            settings.audit_checkpoint_every,
        )
        return cls(
            settings=settings,
            db=db,
            tenants=TenantService(db),
            keys=KeyService(db),
            prompts=prompts,
            public_prefixes=public_prefixes,
            audit=AuditStore(db, signer),
            audit_signer=signer,
            audit_writer=MeteredAuditWriter(db, signer=signer),
            authenticator=Authenticator(db, cache_ttl_s=settings.auth_cache_ttl_s),
            engine=engine,
            canonicalizer=canonicalizer,
            model=ModelIdentity(engine.model_id, engine.weights_version, engine.kv_dtype),
            namespaces=NamespaceIndex(),
            variants=VariantResolver(
                prompts, public_prefixes, canonicalizer, ttl_s=settings.auth_cache_ttl_s
            ),
            limiter=RateLimiter.of(settings.rate_limit_store, db, settings.redis_url),
            observability=Observability.create(engine.stats, settings.otlp_endpoint),
            started_at=int(time.time()),
        )

    def flush_audit(self) -> None:
        """At shutdown, after the engine stopped: commit the queued audit records, stop the
        writer and sign the chain head. Blocking (run it in a thread)."""
        self.audit_writer.close()

    @staticmethod
    def of(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
        runtime = connection.app.state[STATE_KEY]
        assert isinstance(runtime, Runtime)
        return runtime
