"""Resolving a request's `prompt_variant` and caching its pre-tokenized shareable segments.

A version's content is immutable (and so is a public prefix version's), so the token ids of
its public and static segments are cached for good per (tenant, name, version, content hash).
Which version "newest" means, and whether a version is retired, can change: resolutions are
cached for `ttl_s` and dropped at once when this process registers or retires a version.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import anyio.to_thread

from gateway.canonical import ChatCanonicalizer, VariantText, VariantTokens
from gateway.namespaces import PublicRef, VariantRef
from tenants.prompt_service import PromptService
from tenants.public_prefix_service import PublicPrefixService
from tenants.schemas import PromptVersionView, PublicPrefixView


@dataclass(frozen=True, slots=True)
class ResolvedVariant:
    view: PromptVersionView
    public_view: PublicPrefixView | None
    text: VariantText
    tokens: VariantTokens

    @property
    def ref(self) -> VariantRef:
        return VariantRef(self.view.name, self.view.version, self.view.content_hash)

    @property
    def public_ref(self) -> PublicRef | None:
        p = self.public_view
        return PublicRef(p.name, p.version, p.content_hash) if p is not None else None


class VariantResolver:
    def __init__(
        self,
        prompts: PromptService,
        public_prefixes: PublicPrefixService,
        canonicalizer: ChatCanonicalizer,
        ttl_s: float = 1.0,
        max_tokenized: int = 4096,
    ) -> None:
        self._prompts = prompts
        self._public = public_prefixes
        self._canon = canonicalizer
        self._ttl_s = ttl_s
        self._max_tokenized = max_tokenized
        self._views: dict[tuple[str, str, int | None], tuple[float, PromptVersionView]] = {}
        self._public_views: dict[tuple[str, int], tuple[float, PublicPrefixView]] = {}
        self._tokenized: OrderedDict[tuple[str, str, int, str], ResolvedVariant] = OrderedDict()

    async def resolve(self, tenant_id: str, name: str, version: int | None) -> ResolvedVariant:
        key = (tenant_id, name, version)
        now = time.monotonic()
        cached = self._views.get(key)
        if cached is not None and cached[0] > now:
            view = cached[1]
        else:
            view = await anyio.to_thread.run_sync(self._prompts.resolve, tenant_id, name, version)
            self._views[key] = (now + self._ttl_s, view)
        public = None
        if view.public_prefix is not None:
            cached_public = self._public_views.get(view.public_prefix)
            if cached_public is not None and cached_public[0] > now:
                public = cached_public[1]
            else:
                public = await anyio.to_thread.run_sync(
                    self._public.resolve, *view.public_prefix
                )
                self._public_views[view.public_prefix] = (now + self._ttl_s, public)
        return self.tokenized(view, public)

    def tokenized(
        self, view: PromptVersionView, public: PublicPrefixView | None = None
    ) -> ResolvedVariant:
        """The view with its shareable segments tokenized (once per version)."""
        assert (view.public_prefix is None) == (public is None)
        tkey = (view.tenant_id, view.name, view.version, view.content_hash)
        resolved = self._tokenized.get(tkey)
        if resolved is None or resolved.public_view != public:
            text = VariantText.parse(view.content)
            assert text.variables == view.variables, "registry and gateway parse {{vars}} alike"
            tokens = self._canon.variant_static(text, public.content if public else None)
            resolved = ResolvedVariant(view, public, text, tokens)
            self._tokenized[tkey] = resolved
            if len(self._tokenized) > self._max_tokenized:
                self._tokenized.popitem(last=False)
        else:
            self._tokenized.move_to_end(tkey)
        return resolved

    def invalidate(self, tenant_id: str, name: str | None = None) -> None:
        """Forget resolutions of a tenant's variant (all of its variants if `name` is None)."""
        for key in [k for k in self._views if k[0] == tenant_id and name in (None, k[1])]:
            del self._views[key]

    def invalidate_public(self, name: str) -> None:
        """Forget resolutions of a public prefix (after a version is retired)."""
        for key in [k for k in self._public_views if k[0] == name]:
            del self._public_views[key]
