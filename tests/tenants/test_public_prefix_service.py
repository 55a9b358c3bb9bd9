"""PublicPrefixService: platform-level versions, resolve and retire."""

from __future__ import annotations

import hashlib

import pytest

from tenants import PublicPrefixService
from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound


def test_register_resolve_retire(db: Database) -> None:
    service = PublicPrefixService(db)
    first = service.register("safety", "Be safe.")
    second = service.register("safety", "Be safe and kind.")
    assert (first.version, second.version) == (1, 2)
    assert second.content_hash == hashlib.sha256(b"Be safe and kind.").hexdigest()
    assert service.resolve("safety").version == 2
    assert service.resolve("safety", 1).content == "Be safe."
    service.retire("safety", 2)
    assert service.resolve("safety").version == 1
    with pytest.raises(Conflict):
        service.resolve("safety", 2)
    with pytest.raises(Conflict):
        service.retire("safety", 2)
    service.retire("safety", 1)
    with pytest.raises(Conflict):
        service.resolve("safety")
    assert [(p.name, p.version) for p in service.list()] == [("safety", 1), ("safety", 2)]


def test_unknown_and_invalid(db: Database) -> None:
    service = PublicPrefixService(db)
    with pytest.raises(NotFound):
        service.resolve("missing")
    with pytest.raises(NotFound):
        service.retire("missing", 1)
    with pytest.raises(Invalid):
        service.register("bad name", "x")
    with pytest.raises(Invalid):
        service.register("ok", "")
