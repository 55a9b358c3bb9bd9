"""KeyService: issue, list, revoke, rotate; token format."""

from __future__ import annotations

import pytest

from tenants import KeyService, TenantService
from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound
from tenants.ids import split_token


def test_issue_and_list(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    keys = KeyService(db)
    issued = keys.issue(tenant.id, name="ci", scopes=("inference", "admin"))
    assert issued.id.startswith("key_") and issued.key.startswith(issued.prefix + "_")
    parts = split_token(issued.key)
    assert parts is not None and parts[0] == issued.id and len(parts[1]) >= 43
    [view] = keys.list(tenant.id)
    assert (view.id, view.name, view.prefix, view.scopes) == (
        issued.id, "ci", issued.prefix, ("inference", "admin"))
    assert view.revoked_at is None and view.last_used_at is None


def test_secrets_are_distinct(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    keys = KeyService(db)
    assert len({keys.issue(tenant.id).key for _ in range(5)}) == 5


def test_revoke_and_rotate(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    keys = KeyService(db)
    first = keys.issue(tenant.id, name="svc", scopes=("inference",))
    rotated = keys.rotate(tenant.id, first.id)
    assert rotated.id != first.id and rotated.key != first.key
    views = {view.id: view for view in keys.list(tenant.id)}
    assert views[first.id].revoked_at is not None
    assert views[rotated.id].revoked_at is None and views[rotated.id].name == "svc"
    with pytest.raises(Conflict):
        keys.revoke(tenant.id, first.id)
    with pytest.raises(Conflict):
        keys.rotate(tenant.id, first.id)
    assert keys.revoke(tenant.id, rotated.id).revoked_at is not None


def test_key_of_another_tenant_is_not_found(db: Database) -> None:
    service = TenantService(db)
    acme, beta = service.create("acme"), service.create("beta")
    keys = KeyService(db)
    issued = keys.issue(acme.id)
    with pytest.raises(NotFound):
        keys.revoke(beta.id, issued.id)
    with pytest.raises(NotFound):
        keys.revoke(acme.id, "key_0000000000000000")


@pytest.mark.parametrize("scopes", [(), "inference", ("bad scope",)])
def test_bad_scopes_are_invalid(db: Database, scopes: object) -> None:
    tenant = TenantService(db).create("acme")
    with pytest.raises(Invalid):
        KeyService(db).issue(tenant.id, scopes=scopes)  # type: ignore[arg-type]
