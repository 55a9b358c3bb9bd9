"""API key -> Principal, with a short-lived in-memory cache in front of the database.

The token names its key id, so a lookup is one primary-key read; the presented secret is
hashed and compared with `hmac.compare_digest` against the stored sha256, on the warm path
too. Changes made through this process's services invalidate the cache at once; changes made
by other processes are seen after at most `cache_ttl_s`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from tenants import invalidation
from tenants.database import Database
from tenants.errors import AuthError, AuthReason
from tenants.ids import split_token
from tenants.models import ApiKey, Tenant
from tenants.models.base import utcnow
from tenants.schemas import Principal
from tenants.views import quotas_of

log = logging.getLogger("prefixgate.tenants")
_UNKNOWN_KEY_HASH = "0" * 64
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class _Entry:
    secret_hash: str
    principal: Principal
    refusal: AuthReason | None
    expires_at: float
    last_used_at: datetime | None


class Authenticator:
    def __init__(self, db: Database, cache_ttl_s: float = 1.0, max_entries: int = 100_000) -> None:
        assert cache_ttl_s >= 0 and max_entries > 0
        self.db = db
        self.cache_ttl_s = cache_ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, _Entry] = {}
        self._generation = 0
        invalidation.subscribe(self)

    def authenticate(self, secret: str) -> Principal:
        """The principal of a `pgk_<key id>_<secret>` token, or AuthError."""
        parts = split_token(secret) if isinstance(secret, str) else None
        if parts is None:
            raise AuthError("invalid_key")
        key_id, key_secret = parts
        entry = self._cache.get(key_id)
        cold = entry is None or entry.expires_at <= time.monotonic()
        if cold:
            entry = self._load(key_id)
        presented = hashlib.sha256(key_secret.encode("ascii")).hexdigest()
        expected = entry.secret_hash if entry is not None else _UNKNOWN_KEY_HASH
        if not hmac.compare_digest(presented, expected) or entry is None:
            raise AuthError("invalid_key")
        if entry.refusal is not None:
            raise AuthError(entry.refusal)
        if cold and (entry.last_used_at is None
                     or utcnow() - entry.last_used_at >= _LAST_USED_RESOLUTION):
            self._touch(key_id)
        return entry.principal

    def invalidate_key(self, key_id: str) -> None:
        self._generation += 1
        self._cache.pop(key_id, None)

    def invalidate_tenant(self, tenant_id: str) -> None:
        self._generation += 1
        for key_id, entry in list(self._cache.items()):
            if entry.principal.tenant_id == tenant_id:
                self._cache.pop(key_id, None)

    def _load(self, key_id: str) -> _Entry | None:
        generation = self._generation
        with self.db.session() as session:
            found = session.execute(
                select(ApiKey, Tenant).join(Tenant, ApiKey.tenant_id == Tenant.id)
                .where(ApiKey.id == key_id)
            ).first()
            if found is None:
                self._cache.pop(key_id, None)
                return None
            key, tenant = found
            refusal: AuthReason | None = None
            if key.revoked_at is not None:
                refusal = "revoked"
            elif tenant.status != "active":
                refusal = "suspended"
            principal = Principal(
                tenant_id=tenant.id,
                tenant_name=tenant.name,
                key_id=key.id,
                scopes=tuple(key.scopes),
                cache_policy=tenant.cache_policy,  # type: ignore[arg-type]
                quotas=quotas_of(tenant),
            )
            entry = _Entry(key.secret_hash, principal, refusal,
                           time.monotonic() + self.cache_ttl_s, key.last_used_at)
        if generation == self._generation:
            if len(self._cache) >= self.max_entries:
                self._evict()
            self._cache[key_id] = entry
        return entry

    def _touch(self, key_id: str) -> None:
        """Record use, coarsely: at most one write per key per minute, only on a cold lookup."""
        now = utcnow()
        try:
            with self.db.session() as session:
                session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .where((ApiKey.last_used_at.is_(None))
                           | (ApiKey.last_used_at < now - _LAST_USED_RESOLUTION))
                    .values(last_used_at=now)
                )
        except OperationalError:
            # A busy or read-only database must not refuse a valid key; the next cold
            # lookup records the use instead.
            log.warning("could not record last use of key %s", key_id, exc_info=True)

    def _evict(self) -> None:
        now = time.monotonic()
        for key_id, entry in list(self._cache.items()):
            if entry.expires_at <= now:
                self._cache.pop(key_id, None)
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
