"""TenantService: CRUD, unique names, validation, and cascading delete."""

from __future__ import annotations

import pytest

from tenants import KeyService, PromptService, TenantService
from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound
from tenants.schemas import Quotas


def test_create_get_list(db: Database) -> None:
    service = TenantService(db)
    acme = service.create("acme", cache_policy="user",
                          quotas=Quotas(max_kv_share=0.25, requests_per_min=60))
    other = service.create("other.co")
    assert acme.id.startswith("ten_") and acme.id != other.id
    assert acme.status == "active" and acme.cache_policy == "user"
    assert acme.quotas == Quotas(max_kv_share=0.25, requests_per_min=60, tokens_per_min=None)
    assert acme.created_at.tzinfo is not None
    assert service.get(acme.id) == acme
    assert [t.name for t in service.list()] == ["acme", "other.co"]


def test_duplicate_name_is_conflict(db: Database) -> None:
    service = TenantService(db)
    first = service.create("acme")
    second = service.create("beta")
    with pytest.raises(Conflict):
        service.create("acme")
    with pytest.raises(Conflict):
        service.update(second.id, name="acme")
    assert service.get(first.id).name == "acme"


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "slash/name", "ünï", None])
def test_bad_names_are_invalid(db: Database, name: object) -> None:
    with pytest.raises(Invalid):
        TenantService(db).create(name)  # type: ignore[arg-type]


def test_bad_policy_and_quotas_are_invalid(db: Database) -> None:
    service = TenantService(db)
    with pytest.raises(Invalid):
        service.create("acme", cache_policy="everyone")
    for bad in ({"max_kv_share": 0.0}, {"max_kv_share": 1.5}, {"requests_per_min": 0},
                {"tokens_per_min": -5}, {"tokens_per_min": 2.5}):
        with pytest.raises(Invalid):
            Quotas(**bad)  # type: ignore[arg-type]
    tenant = service.create("acme")
    with pytest.raises(Invalid):
        service.update(tenant.id, status="deleted")


def test_update_and_suspend(db: Database) -> None:
    service = TenantService(db)
    tenant = service.create("acme")
    changed = service.update(tenant.id, name="acme-2", cache_policy="off",
                             quotas=Quotas(tokens_per_min=1000))
    assert (changed.name, changed.cache_policy, changed.quotas.tokens_per_min) == (
        "acme-2", "off", 1000)
    assert changed.updated_at >= tenant.updated_at
    assert service.suspend(tenant.id).status == "suspended"
    assert service.update(tenant.id, status="active").status == "active"


def test_unknown_tenant_is_not_found(db: Database) -> None:
    service = TenantService(db)
    for call in (lambda: service.get("ten_missing"), lambda: service.suspend("ten_missing"),
                 lambda: service.delete("ten_missing"),
                 lambda: KeyService(db).issue("ten_missing")):
        with pytest.raises(NotFound):
            call()


def test_delete_takes_keys_and_variants_with_it(db: Database) -> None:
    tenants, keys, prompts = TenantService(db), KeyService(db), PromptService(db)
    tenant = tenants.create("acme")
    keep = tenants.create("keep")
    keys.issue(tenant.id)
    keys.issue(keep.id)
    prompts.register(tenant.id, "sys", "You are helpful.")
    assert tenants.delete(tenant.id).id == tenant.id
    with pytest.raises(NotFound):
        tenants.get(tenant.id)
    with pytest.raises(NotFound):
        keys.list(tenant.id)
    recreated = tenants.create("acme")
    assert keys.list(recreated.id) == [] and prompts.list(recreated.id) == []
    assert len(keys.list(keep.id)) == 1
