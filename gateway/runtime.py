"""The gateway's long-lived objects, built once at start-up and reached from every handler.

`Runtime.of(connection)` is the single way a handler, guard or dependency finds the registry
services, the engine and the gateway's own caches (kept in the Litestar app state).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from litestar.connection import ASGIConnection

from engine.async_engine import AsyncEngine
from gateway.canonical import ChatCanonicalizer
from gateway.namespaces import ModelIdentity
from gateway.services.admin import AdminService
from gateway.services.inference import InferenceService
from gateway.services.jobs import JobBuilder
from gateway.services.namespace_index import NamespaceIndex
from gateway.services.rate_limit import RateLimiter
from gateway.services.variants import VariantResolver
from gateway.settings import Settings
from tenants.audit import AuditStore
from tenants.authenticator import Authenticator
from tenants.database import Database
from tenants.key_service import KeyService
from tenants.prompt_service import PromptService
from tenants.public_prefix_service import PublicPrefixService
from tenants.tenant_service import TenantService

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
    authenticator: Authenticator
    engine: AsyncEngine
    canonicalizer: ChatCanonicalizer
    model: ModelIdentity
    namespaces: NamespaceIndex
    variants: VariantResolver
    limiter: RateLimiter
    started_at: int
    jobs: JobBuilder = field(init=False)
    inference: InferenceService = field(init=False)
    admin: AdminService = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = JobBuilder(self)
        self.inference = InferenceService(self)
        self.admin = AdminService(self)

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine, db: Database | None = None) -> Runtime:
        db = db or Database.from_url(settings.resolved_db_url)
        prompts = PromptService(db)
        public_prefixes = PublicPrefixService(db)
        canonicalizer = ChatCanonicalizer(engine.tokenizer)
        return cls(
            settings=settings,
            db=db,
            tenants=TenantService(db),
            keys=KeyService(db),
            prompts=prompts,
            public_prefixes=public_prefixes,
            audit=AuditStore(db),
            authenticator=Authenticator(db, cache_ttl_s=settings.auth_cache_ttl_s),
            engine=engine,
            canonicalizer=canonicalizer,
            model=ModelIdentity(engine.model_id, engine.weights_version, engine.kv_dtype),
            namespaces=NamespaceIndex(),
            variants=VariantResolver(
                prompts, public_prefixes, canonicalizer, ttl_s=settings.auth_cache_ttl_s
            ),
            limiter=RateLimiter(),
            started_at=int(time.time()),
        )

    @staticmethod
    def of(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
        runtime = connection.app.state[STATE_KEY]
        assert isinstance(runtime, Runtime)
        return runtime
