"""Archiving audit records before a signed checkpoint keeps both halves verifiable."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from tenants.audit import AuditStore
from tenants.audit_archive import archive_before, verify_live
from tenants.audit_export import verify_export
from tenants.audit_signing import AuditSigner
from tenants.database import Database
from tenants.migrate import upgrade
from tenants.models import AuditRecord
from tenants.schemas import AuditEntry
from tests.tenants.db_urls import BACKENDS, empty_database

EVERY = 4


def _append(store: AuditStore, n: int, start: int) -> None:
    for i in range(start, start + n):
        store.append(AuditEntry(request_id=f"req-{i}", tenant_id="ten_a", key_id="key_a",
                                namespace="ab" * 32, prompt_tokens=i, completion_tokens=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_archive_twice_then_verify_files_and_live_chain(backend: str, tmp_path: Path) -> None:
    signer = AuditSigner(Ed25519PrivateKey.generate(), every=EVERY)
    key = signer.public_key
    with empty_database(backend, tmp_path) as url:
        upgrade(url)
        db = Database.from_url(url)
        try:
            store = AuditStore(db, signer)
            _append(store, 10, 1)
            first = archive_before(db, datetime.now(UTC), tmp_path / "archive")
            assert first is not None and (first.first_seq, first.last_seq) == (1, 8)
            assert first.records == 8
            assert verify_export(first.path.read_text().splitlines(), key, EVERY).ok
            live = verify_live(db, key, EVERY)
            assert live.ok and live.records == 2 and live.last_seq == 10
            assert [r.seq for r in store.query(limit=100)] == [9, 10]

            _append(store, 6, 11)
            second = archive_before(db, datetime.now(UTC), tmp_path / "archive")
            assert second is not None and (second.first_seq, second.last_seq) == (9, 16)
            report = verify_export(second.path.read_text().splitlines(), key, EVERY)
            assert report.ok and report.records == 8
            assert verify_live(db, key, EVERY).ok
            assert archive_before(db, datetime.now(UTC), tmp_path / "archive") is None

            _append(store, 3, 17)
            with db.session() as session:  # tampering with the live part is still caught
                session.execute(update(AuditRecord).where(AuditRecord.seq == 18)
                                .values(prompt_tokens=999))
            broken = verify_live(db, key, EVERY)
            assert not broken.ok and broken.first_broken == 18
        finally:
            db.dispose()


def test_tampered_archive_file_is_detected(tmp_path: Path) -> None:
    signer = AuditSigner(Ed25519PrivateKey.generate(), every=EVERY)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    db = Database.from_url(url)
    _append(AuditStore(db, signer), 8, 1)
    result = archive_before(db, datetime.now(UTC), tmp_path)
    assert result is not None
    lines = result.path.read_text().splitlines()
    lines[3] = lines[3].replace('"prompt_tokens":3', '"prompt_tokens":4')
    report = verify_export(lines, signer.public_key, EVERY)
    assert not report.ok and report.first_broken == 3
    db.dispose()
