"""Authenticator: valid keys pass; wrong, revoked, suspended and deleted keys are refused."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from tenants import Authenticator, KeyService, TenantService
from tenants.database import Database
from tenants.errors import AuthError
from tenants.models import ApiKey, Tenant
from tenants.models.base import utcnow
from tenants.schemas import Quotas


def _refused(auth: Authenticator, token: str) -> str:
    with pytest.raises(AuthError) as info:
        auth.authenticate(token)
    return info.value.reason


def test_valid_key_gives_principal(db: Database) -> None:
    tenant = TenantService(db).create("acme", cache_policy="user",
                                      quotas=Quotas(requests_per_min=10))
    issued = KeyService(db).issue(tenant.id, scopes=("inference",))
    principal = Authenticator(db).authenticate(issued.key)
    assert (principal.tenant_id, principal.tenant_name, principal.key_id) == (
        tenant.id, "acme", issued.id)
    assert principal.cache_policy == "user" and principal.quotas.requests_per_min == 10
    assert principal.scopes == ("inference",)
    [view] = KeyService(db).list(tenant.id)
    assert view.last_used_at is not None


def test_wrong_and_malformed_keys_are_invalid(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    issued = KeyService(db).issue(tenant.id)
    auth = Authenticator(db)
    auth.authenticate(issued.key)  # warm the cache: the secret is still checked after this
    tampered = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    other_id = issued.key.replace(issued.id, "key_0123456789abcdef")
    for token in (tampered, other_id, "", "sk-123", issued.prefix, issued.key + "!"):
        assert _refused(auth, token) == "invalid_key"


def test_revoked_key_is_refused_at_once(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    keys = KeyService(db)
    issued = keys.issue(tenant.id)
    auth = Authenticator(db, cache_ttl_s=60.0)
    auth.authenticate(issued.key)
    keys.revoke(tenant.id, issued.id)
    assert _refused(auth, issued.key) == "revoked"


def test_rotated_key_replaces_old(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    keys = KeyService(db)
    old = keys.issue(tenant.id)
    auth = Authenticator(db, cache_ttl_s=60.0)
    auth.authenticate(old.key)
    new = keys.rotate(tenant.id, old.id)
    assert _refused(auth, old.key) == "revoked"
    assert auth.authenticate(new.key).key_id == new.id


def test_suspended_tenant_is_refused_then_restored(db: Database) -> None:
    tenants = TenantService(db)
    tenant = tenants.create("acme")
    issued = KeyService(db).issue(tenant.id)
    auth = Authenticator(db, cache_ttl_s=60.0)
    auth.authenticate(issued.key)
    tenants.suspend(tenant.id)
    assert _refused(auth, issued.key) == "suspended"
    tenants.update(tenant.id, status="active", cache_policy="off")
    assert auth.authenticate(issued.key).cache_policy == "off"


def test_deleted_tenant_keys_stop_working(db: Database) -> None:
    tenants = TenantService(db)
    tenant = tenants.create("acme")
    issued = KeyService(db).issue(tenant.id)
    auth = Authenticator(db, cache_ttl_s=60.0)
    auth.authenticate(issued.key)
    tenants.delete(tenant.id)
    assert _refused(auth, issued.key) == "invalid_key"


def test_changes_from_another_process_are_seen_within_ttl(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    issued = KeyService(db).issue(tenant.id)
    auth = Authenticator(db, cache_ttl_s=0.2)
    auth.authenticate(issued.key)
    # Another process changes the rows directly; this process hears nothing about it.
    with db.session() as session:
        session.execute(update(ApiKey).where(ApiKey.id == issued.id).values(revoked_at=utcnow()))
        session.execute(update(Tenant).where(Tenant.id == tenant.id).values(status="suspended"))
    auth.authenticate(issued.key)  # still cached
    time.sleep(0.25)
    assert _refused(auth, issued.key) == "revoked"


def test_invalidate_methods_drop_cache_entries(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    issued = KeyService(db).issue(tenant.id)
    auth = Authenticator(db, cache_ttl_s=60.0)
    auth.authenticate(issued.key)
    with db.session() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant.id).values(name="renamed"))
    assert auth.authenticate(issued.key).tenant_name == "acme"
    auth.invalidate_tenant(tenant.id)
    assert auth.authenticate(issued.key).tenant_name == "renamed"
    with db.session() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant.id).values(name="again"))
    auth.invalidate_key(issued.id)
    assert auth.authenticate(issued.key).tenant_name == "again"
