"""AuditWriter: group commit keeps the chain linear, and a crash loses no acknowledged record."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tenants.audit import AuditStore
from tenants.audit_verify import verify_chain
from tenants.audit_writer import AuditWriter, WriterClosed
from tenants.database import Database
from tenants.errors import Invalid
from tenants.schemas import AuditEntry
from tenants.server_key import load_or_create_private_key
from tests.tenants.audit_support import RECORDS, Attacker, audit_db, entry, new_signer

__all__ = ["audit_db"]
ROOT = Path(__file__).resolve().parents[2]


async def test_concurrent_writes_are_batched_and_linear(audit_db: Database) -> None:
    signer = new_signer(8)
    writer = AuditWriter(audit_db, signer=signer, max_batch=16)
    store = AuditStore(audit_db, signer)
    try:
        views = await asyncio.gather(*(writer.write(entry(i)) for i in range(1, 61)),
                                     asyncio.to_thread(store.append, entry(1000)))
    finally:
        await asyncio.to_thread(writer.close)
    assert sorted(v.seq for v in views) == list(range(1, 62))
    assert writer.batches < 60  # several writes shared a commit
    assert [cp["seq"] for cp in Attacker(audit_db).checkpoints()] == [8, 16, 24, 32, 40, 48,
                                                                      56, 61]
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=8)
    assert report.ok and report.records == 61 and report.signed_through == 61


async def test_verify_while_writing_sees_a_consistent_snapshot(audit_db: Database) -> None:
    signer = new_signer(4)
    writer = AuditWriter(audit_db, signer=signer, max_batch=4)
    try:
        writes = asyncio.gather(*(writer.write(entry(i)) for i in range(1, 201)))
        reports = [await asyncio.to_thread(verify_chain, audit_db, public_key=signer.public_key,
                                           checkpoint_every=4, batch_size=16)
                   for _ in range(3)]
        await writes
    finally:
        await asyncio.to_thread(writer.close)
    assert all(report.ok for report in reports), reports
    final = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4)
    assert final.ok and final.records == 200


async def test_closed_writer_refuses_and_bad_entries_fail_fast(audit_db: Database) -> None:
    writer = AuditWriter(audit_db)
    with pytest.raises(Invalid):
        await writer.write(AuditEntry(request_id="", tenant_id="t", key_id=None, namespace=None))
    await asyncio.to_thread(writer.close)
    with pytest.raises(WriterClosed):
        await writer.write(entry(1))


async def test_failed_commit_reaches_the_caller(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    writer = AuditWriter(db)
    try:
        with pytest.raises(OperationalError):
            await writer.write(entry(1))
        with pytest.raises(OperationalError):  # the thread survived the first failure
            await writer.write(entry(2))
    finally:
        await asyncio.to_thread(writer.close)
        db.dispose()


CHILD = """
import asyncio, sys
from tenants.audit_signing import AuditSigner
from tenants.audit_writer import AuditWriter
from tenants.database import Database
from tests.tenants.audit_support import entry

async def main():
    signer = AuditSigner.from_settings(None, sys.argv[2], every=8)
    writer = AuditWriter(Database.from_url(sys.argv[1]), signer=signer, max_batch=8)
    async def worker(w):
        for i in range(w * 100000, w * 100000 + 100000):
            view = await writer.write(entry(i))
            print(view.seq, view.request_id, flush=True)
    await asyncio.gather(*(worker(w) for w in range(1, 9)))

asyncio.run(main())
"""


def test_kill_loses_no_acknowledged_record(audit_db: Database, db_url: str,
                                           tmp_path: Path) -> None:
    key_file = tmp_path / "audit_signing_key.pem"
    child = subprocess.Popen([sys.executable, "-c", CHILD, db_url, str(key_file)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None
    acked: dict[int, str] = {}
    for line in child.stdout:
        seq, request_id = line.split()
        acked[int(seq)] = request_id
        if len(acked) >= 150:
            break
    child.send_signal(signal.SIGKILL)  # no close(), no flush: the process just dies
    child.wait()
    with audit_db.engine.connect() as conn:
        stored = dict(conn.execute(select(RECORDS.c.seq, RECORDS.c.request_id)).all())
    assert all(stored.get(seq) == request_id for seq, request_id in acked.items())
    public = load_or_create_private_key(key_file).public_key()
    report = verify_chain(audit_db, public_key=public, checkpoint_every=8)
    assert report.ok and report.records == len(stored) >= len(acked)
