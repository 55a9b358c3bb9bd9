"""An issued secret never reaches the database file, the logs, or an object's repr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tenants import AuditStore, Authenticator, KeyService, TenantService
from tenants.database import Database
from tenants.errors import AuthError
from tenants.ids import split_token
from tenants.migrate import upgrade
from tenants.schemas import AuditEntry


def test_secret_is_nowhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    db = Database.from_url(url, echo="debug")  # statements, parameters and result rows
    tenant = TenantService(db).create("acme")
    keys = KeyService(db)
    first = keys.issue(tenant.id, name="svc")
    auth = Authenticator(db, cache_ttl_s=0.0)
    principal = auth.authenticate(first.key)
    second = keys.rotate(tenant.id, first.id)
    with pytest.raises(AuthError) as refused:
        auth.authenticate(first.key)
    auth.authenticate(second.key)
    AuditStore(db).append(AuditEntry("req-1", tenant.id, principal.key_id, "ab" * 32))
    listed = keys.list(tenant.id)
    db.dispose()

    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    texts = [caplog.text, repr(first), repr(second), repr(principal), repr(listed),
             str(refused.value), repr(refused.value)]
    assert "INSERT INTO api_keys" in caplog.text and first.id.encode() in files  # the net works
    for issued in (first, second):
        parts = split_token(issued.key)
        assert parts is not None
        for needle in (issued.key, parts[1]):
            assert needle.encode() not in files
            assert all(needle not in text for text in texts)
