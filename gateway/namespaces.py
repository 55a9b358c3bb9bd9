"""Namespace derivation: which cache namespace each prompt segment may be reused in.

A namespace is SHA-256 over a domain tag and length-prefixed fields (DESIGN.md isolation rule
1): tenant id, model id, weights version, KV dtype, then the scope — a registered variant (its
name, version and content hash) or the tenant's ad-hoc scope — and, where the cache policy or
the request's personalization asks for it, the end user. Length-prefixing keeps
("org_1", "2345") apart from ("org_12345", ""). Namespaces are derived here from the
authenticated identity only, never taken from a caller.

The one deliberate exception is a platform public prefix: its namespace is
H(public tag, content hash, name, version, model identity) — the same for every tenant.

`segment_namespaces` applies the tenant's cache policy (rule 3) and answers the namespaces of
the segments of a request: the public prefix (if any), the shareable static part and the
private part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

DOMAIN_TAG = b"prefixgate/namespace/v1"
PUBLIC_TAG = b"prefixgate/public/v1"
CachePolicy = Literal["tenant", "user", "off"]


def hash_fields(tag: bytes, parts: Iterable[str | bytes]) -> bytes:
    """SHA-256 over `tag` and each part prefixed with its 8-byte big-endian length."""
    h = hashlib.sha256()
    for part in (tag, *parts):
        raw = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return h.digest()


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """What makes KV computed by one engine reusable by another: model, weights, KV dtype."""

    model_id: str
    weights_version: str
    kv_dtype: str


@dataclass(frozen=True, slots=True)
class VariantRef:
    """A registered prompt variant as it enters a namespace: name, version, content hash."""

    name: str
    version: int
    content_hash: str


@dataclass(frozen=True, slots=True)
class PublicRef:
    """A platform public prefix as it enters its namespace: name, version, content hash."""

    name: str
    version: int
    content_hash: str


def derive_public(model: ModelIdentity, public: PublicRef) -> bytes:
    """The namespace of a public prefix: shared by every tenant, by design (rule 1)."""
    return hash_fields(
        PUBLIC_TAG,
        [public.content_hash, public.name, str(public.version), model.model_id,
         model.weights_version, model.kv_dtype],
    )


@dataclass(frozen=True, slots=True)
class EndUser:
    """The end user a private segment is narrowed to.

    `user` is the request's `user` field; without one, a personalized request is narrowed to
    its personalization itself (a hash of the variable values), so it is only ever reused by a
    request carrying exactly the same values.
    """

    kind: Literal["user", "personalization"]
    value: str


def derive(
    tenant_id: str, model: ModelIdentity, variant: VariantRef | None, user: EndUser | None
) -> bytes:
    """The namespace of a (tenant, model, scope, end user) combination."""
    parts: list[str] = [tenant_id, model.model_id, model.weights_version, model.kv_dtype]
    if variant is None:
        parts += ["adhoc"]
    else:
        parts += ["variant", variant.name, str(variant.version), variant.content_hash]
    if user is None:
        parts += ["shared"]
    else:
        parts += [user.kind, user.value]
    return hash_fields(DOMAIN_TAG, parts)


def personalization_user(variables: Mapping[str, str]) -> EndUser:
    """The narrowest scope of an anonymous personalized request: its variable values."""
    items = sorted(variables.items())
    digest = hash_fields(b"prefixgate/personalization/v1", [p for kv in items for p in kv])
    return EndUser("personalization", digest.hex())


@dataclass(frozen=True, slots=True)
class SegmentNamespaces:
    """Namespaces of a request's segments: public prefix, static (variant) part, private part."""

    static: bytes | None
    private: bytes | None
    public: bytes | None = None


def segment_namespaces(
    policy: str,
    tenant_id: str,
    model: ModelIdentity,
    variant: VariantRef | None,
    user: str | None,
    variables: Mapping[str, str] | None,
    public: PublicRef | None = None,
) -> SegmentNamespaces:
    """Apply the tenant's cache policy (DESIGN.md rule 3) to one request.

    - `tenant`: the static part under the variant's (or ad-hoc) namespace shared by the
      tenant's users; the private part under the end user's namespace when the request names
      a `user` or carries personalization, else under the same shared namespace.
    - `user`: every segment under the end user's namespace; no `user`: nothing cached.
    - `off`: nothing cached.
    A public prefix is cached in its public namespace under every policy but `off`.
    """
    if policy == "off":
        return SegmentNamespaces(None, None)
    public_ns = derive_public(model, public) if public is not None else None
    end_user: EndUser | None = None
    if user is not None:
        end_user = EndUser("user", user)
    elif variables:
        end_user = personalization_user(variables)
    if policy == "user":
        if user is None:
            return SegmentNamespaces(None, None, public_ns)
        ns = derive(tenant_id, model, variant, end_user)
        return SegmentNamespaces(ns, ns, public_ns)
    if policy != "tenant":
        raise ValueError(f"unknown cache policy {policy!r}")
    shared = derive(tenant_id, model, variant, None)
    private = shared if end_user is None else derive(tenant_id, model, variant, end_user)
    return SegmentNamespaces(shared, private, public_ns)
