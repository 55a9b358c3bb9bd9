"""PromptService: monotonic immutable versions, templates, retire, races."""

from __future__ import annotations

import hashlib
import threading
import unicodedata

import pytest

from tenants import PromptService, PublicPrefixService, TenantService
from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound
from tenants.models import PromptVariant


def test_versions_are_monotonic_per_name_and_tenant(db: Database) -> None:
    tenants, prompts = TenantService(db), PromptService(db)
    acme, beta = tenants.create("acme"), tenants.create("beta")
    assert [prompts.register(acme.id, "sys", f"v{i}").version for i in range(3)] == [1, 2, 3]
    assert prompts.register(acme.id, "other", "x").version == 1
    assert prompts.register(beta.id, "sys", "x").version == 1
    assert [(p.name, p.version) for p in prompts.list(acme.id)] == [
        ("other", 1), ("sys", 1), ("sys", 2), ("sys", 3)]


def test_template_variables_and_nfc_hash(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    decomposed = "Cafe\u0301 for {{user_name}}, {{ plan }} and {{user_name}} again."
    view = PromptService(db).register(tenant.id, "sys", decomposed)
    nfc = unicodedata.normalize("NFC", decomposed)
    assert view.content == nfc
    assert view.content_hash == hashlib.sha256(nfc.encode()).hexdigest()
    assert view.variables == ("user_name", "plan")


@pytest.mark.parametrize("content", ["", "   ", "Hi {{ }}", "Hi {{user name}}", "Hi {{x",
                                     "Hi x}}", "{{1abc}}"])
def test_bad_content_is_invalid(db: Database, content: str) -> None:
    tenant = TenantService(db).create("acme")
    with pytest.raises(Invalid):
        PromptService(db).register(tenant.id, "sys", content)


def test_stored_content_is_immutable(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    PromptService(db).register(tenant.id, "sys", "original")
    with pytest.raises(Conflict), db.session() as session:
        row = session.query(PromptVariant).one()
        row.content = "changed"
    assert PromptService(db).resolve(tenant.id, "sys", 1).content == "original"


def test_resolve_and_retire(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    prompts = PromptService(db)
    prompts.register(tenant.id, "sys", "one")
    prompts.register(tenant.id, "sys", "two")
    assert prompts.resolve(tenant.id, "sys").version == 2
    assert prompts.retire(tenant.id, "sys", 2).retired_at is not None
    assert prompts.resolve(tenant.id, "sys").content == "one"
    with pytest.raises(Conflict):
        prompts.resolve(tenant.id, "sys", 2)
    with pytest.raises(Conflict):
        prompts.retire(tenant.id, "sys", 2)
    prompts.retire(tenant.id, "sys", 1)
    with pytest.raises(Conflict):
        prompts.resolve(tenant.id, "sys")
    assert prompts.register(tenant.id, "sys", "three").version == 3
    with pytest.raises(NotFound):
        prompts.resolve(tenant.id, "missing")
    with pytest.raises(NotFound):
        prompts.resolve(tenant.id, "sys", 9)


def test_variants_are_private_to_their_tenant(db: Database) -> None:
    tenants, prompts = TenantService(db), PromptService(db)
    acme, beta = tenants.create("acme"), tenants.create("beta")
    prompts.register(acme.id, "sys", "secret plan")
    with pytest.raises(NotFound):
        prompts.resolve(beta.id, "sys")
    assert prompts.list(beta.id) == []


def test_public_prefix_reference(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    public, prompts = PublicPrefixService(db), PromptService(db)
    base = public.register("safety", "Be safe.")
    view = prompts.register(tenant.id, "sys", "Hi", public_prefix=("safety", base.version))
    assert view.public_prefix == ("safety", 1)
    with pytest.raises(NotFound):
        prompts.register(tenant.id, "sys", "Hi", public_prefix=("safety", 7))
    public.retire("safety", 1)
    with pytest.raises(Conflict):
        prompts.register(tenant.id, "sys", "Hi", public_prefix=("safety", 1))
    with pytest.raises(Invalid):
        prompts.register(tenant.id, "sys", "Hi", public_prefix=("safety", 0))


def test_concurrent_registration_gives_distinct_versions(db: Database) -> None:
    tenant = TenantService(db).create("acme")
    prompts = PromptService(db)
    threads, per_thread = 6, 4
    versions: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                versions.append(prompts.register(tenant.id, "sys", f"t{n} r{i}").version)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors
    assert sorted(versions) == list(range(1, threads * per_thread + 1))
    assert [p.version for p in prompts.list(tenant.id)] == sorted(versions)
