"""Admin actions that touch more than the registry: the cache, the auth cache, variant caches.

Deleting a tenant drops every namespace it used from the KV cache; suspending, revoking or
changing a tenant takes effect at once in this process (auth cache invalidated); registering
or retiring a prompt version drops the cached resolution of that name; `warm` prefills a
variant's static part into its namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.messages import PromptSegment
from gateway.middleware import new_request_id
from gateway.namespaces import segment_namespaces
from gateway.schemas.admin import (
    CacheEntry,
    PromptCreate,
    PromptWarmed,
    QuotasBody,
    TenantCreate,
    TenantUpdate,
)
from gateway.services.blocking import in_thread
from gateway.services.jobs import public_label
from gateway.services.namespace_index import NamespaceLabel
from tenants.schemas import (
    ApiKeyView,
    IssuedKey,
    PromptVersionView,
    PublicPrefixView,
    Quotas,
    TenantView,
)

if TYPE_CHECKING:
    from gateway.runtime import Runtime


def quotas_of(body: QuotasBody | None) -> Quotas | None:
    if body is None:
        return None
    return Quotas(body.max_kv_share, body.requests_per_min, body.tokens_per_min,
                  body.public_prefix_sharing)


class AdminService:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # --- tenants -------------------------------------------------------------------------------
    async def create_tenant(self, data: TenantCreate) -> TenantView:
        return await in_thread(
            self.rt.tenants.create, data.name, data.cache_policy, quotas_of(data.quotas)
        )

    async def update_tenant(self, tenant_id: str, data: TenantUpdate) -> TenantView:
        before = await in_thread(self.rt.tenants.get, tenant_id)
        after = await in_thread(
            self.rt.tenants.update,
            tenant_id,
            name=data.name,
            cache_policy=data.cache_policy,
            quotas=quotas_of(data.quotas),
            status=data.status,
        )
        self.rt.authenticator.invalidate_tenant(tenant_id)
        if after.cache_policy != before.cache_policy:
            await self._drop_cache(tenant_id)
        return after

    async def delete_tenant(self, tenant_id: str) -> TenantView:
        deleted = await in_thread(self.rt.tenants.delete, tenant_id)
        self.rt.authenticator.invalidate_tenant(tenant_id)
        self.rt.variants.invalidate(tenant_id)
        self.rt.limiter.forget(tenant_id)
        await self._drop_cache(tenant_id)
        return deleted

    async def _drop_cache(self, tenant_id: str) -> int:
        """Free the tenant's cached blocks (in a thread: it waits for the engine's step lock)."""
        namespaces = self.rt.namespaces.forget_tenant(tenant_id)
        return await in_thread(self.rt.engine.drop_namespaces, namespaces)

    # --- keys ----------------------------------------------------------------------------------
    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKeyView:
        view = await in_thread(self.rt.keys.revoke, tenant_id, key_id)
        self.rt.authenticator.invalidate_key(key_id)
        return view

    async def rotate_key(self, tenant_id: str, key_id: str) -> IssuedKey:
        issued = await in_thread(self.rt.keys.rotate, tenant_id, key_id)
        self.rt.authenticator.invalidate_key(key_id)
        return issued

    # --- prompts -------------------------------------------------------------------------------
    async def register_prompt(self, tenant_id: str, data: PromptCreate) -> PromptVersionView:
        ref = data.public_prefix
        public = (ref.name, ref.version) if ref is not None else None
        view = await in_thread(self.rt.prompts.register, tenant_id, data.name, data.content, public)
        self.rt.variants.invalidate(tenant_id, data.name)
        return view

    async def retire_prompt(self, tenant_id: str, name: str, version: int) -> PromptVersionView:
        view = await in_thread(self.rt.prompts.retire, tenant_id, name, version)
        self.rt.variants.invalidate(tenant_id, name)
        return view

    async def warm_prompt(self, tenant_id: str, name: str, version: int | None) -> PromptWarmed:
        """Prefill the variant's shareable segments (public prefix, static part) under their
        namespaces; answer the tokens now cached (counting only what the tenant's policy lets
        an anonymous request reuse)."""
        tenant = await in_thread(self.rt.tenants.get, tenant_id)
        self.rt.variants.invalidate(tenant_id, name)
        variant = await self.rt.variants.resolve(tenant_id, name, version)
        view, tokens = variant.view, variant.tokens
        ns = segment_namespaces(
            tenant.cache_policy, tenant_id, self.rt.model, variant.ref, None, None,
            variant.public_ref,
        )
        segments = []
        for namespace, ids in ((ns.public, tokens.public), (ns.static, tokens.static)):
            if not ids:
                continue
            if namespace is None:  # matching stops at the first uncacheable segment
                break
            segments.append(PromptSegment(namespace, ids))
        if not segments:
            return PromptWarmed(view.name, view.version, 0)
        if ns.static is not None:
            label = NamespaceLabel(tenant_id, f"{view.name}@{view.version}", "shared")
            self.rt.namespaces.record(ns.static, label)
        if variant.public_ref is not None and ns.public is not None:
            self.rt.namespaces.record(ns.public, public_label(variant.public_ref))
        await self.rt.meter.apply_retention(tenant_id, [s.namespace for s in segments])
        result = await self.rt.engine.warm(new_request_id(), segments)
        cached = result.cached_tokens + result.cache.inserted_blocks * self.rt.engine.block_size
        total = sum(len(seg.token_ids) for seg in segments)
        return PromptWarmed(view.name, view.version, min(cached, total))

    # --- public prefixes -----------------------------------------------------------------------
    async def retire_public_prefix(self, name: str, version: int) -> PublicPrefixView:
        view = await in_thread(self.rt.public_prefixes.retire, name, version)
        self.rt.variants.invalidate_public(name)
        return view

    # --- cache view ----------------------------------------------------------------------------
    async def cache_view(self) -> list[CacheEntry]:
        entries = []
        for st in await in_thread(self.rt.engine.cache_view):
            label = self.rt.namespaces.label(st.namespace)
            entries.append(
                CacheEntry(
                    namespace=st.namespace.hex(),
                    blocks=st.blocks,
                    hit_tokens=st.hit_tokens,
                    lookup_tokens=st.lookup_tokens,
                    hit_rate=st.hit_rate,
                    tenant_id=label.tenant_id if label else None,
                    variant=label.variant if label else None,
                    scope=label.scope if label else None,
                )
            )
        return entries
