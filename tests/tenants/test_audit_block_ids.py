"""Reused block ids in the audit chain (migration 0003): bound by the hash, old records intact.

Records written before 0003 have no block ids (NULL) and were hashed without the field; the
chain must keep verifying across the upgrade, with old and new records side by side.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, create_engine, update

from tenants.audit import GENESIS_HASH, AuditStore
from tenants.audit_export import export_jsonl, verify_export
from tenants.audit_verify import verify_chain
from tenants.database import Database
from tenants.errors import Invalid
from tenants.migrate import upgrade
from tenants.models.base import utcnow
from tenants.schemas import AuditEntry
from tests.tenants.audit_support import NS, Attacker, audit_db, new_signer
from tests.tenants.db_urls import BACKENDS, empty_database

__all__ = ["audit_db"]
OTHER = "cd" * 32
_V1_FIELDS = ("request_id", "tenant_id", "key_id", "namespace", "variant_name",
              "variant_version", "prompt_tokens", "cached_tokens", "completion_tokens",
              "reused_blocks", "reused_namespaces", "outcome", "error_code", "trace_id")


def _v1_hash(prev_hash: str, seq: int, created_at: datetime, row: dict[str, Any]) -> str:
    """The record encoding of revisions 0001-0002, written out independently of tenants/."""
    body = {name: row[name] for name in _V1_FIELDS}
    body["seq"] = seq
    body["created_at"] = created_at.isoformat(timespec="microseconds")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(prev_hash.encode("ascii") + text.encode("ascii")).hexdigest()


def _write_v1_records(url: str, n: int) -> None:
    """Append `n` records as the 0002 code did (no block ids column), and move the head."""
    engine = create_engine(url)
    meta = MetaData()
    records = Table("audit_records", meta, autoload_with=engine)
    head = Table("audit_chain_head", meta, autoload_with=engine)
    assert "reused_block_ids" not in records.c
    prev = GENESIS_HASH
    with engine.begin() as conn:
        for seq in range(1, n + 1):
            row = {"request_id": f"old-{seq}", "tenant_id": "ten_a", "key_id": "key_1",
                   "namespace": NS, "variant_name": "sys", "variant_version": 1,
                   "prompt_tokens": 40, "cached_tokens": 32, "completion_tokens": 3,
                   "reused_blocks": 2, "reused_namespaces": [NS], "outcome": "ok",
                   "error_code": None, "trace_id": None}
            created = utcnow()
            digest = _v1_hash(prev, seq, created, row)
            conn.execute(records.insert().values(seq=seq, created_at=created, prev_hash=prev,
                                                 hash=digest, **row))
            prev = digest
        conn.execute(update(head).where(head.c.id == 1).values(seq=n, hash=prev))
    engine.dispose()


def _new_entry(n: int) -> AuditEntry:
    return AuditEntry(request_id=f"new-{n}", tenant_id="ten_b", key_id="key_2", namespace=NS,
                      prompt_tokens=50, cached_tokens=48, completion_tokens=1, reused_blocks=3,
                      reused_namespaces=(OTHER, NS),
                      reused_block_ids=((7, OTHER), (12 + n, NS), (3, NS)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_old_and_new_records_verify_in_one_chain(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        upgrade(url, "0002")
        _write_v1_records(url, 3)
        upgrade(url)
        db = Database.from_url(url)
        try:
            store = AuditStore(db)
            new = [store.append(_new_entry(i)) for i in range(3)]
            assert [v.seq for v in new] == [4, 5, 6]
            assert verify_chain(db).ok
            old, *_ = store.query(request_id="old-1")
            assert old.reused_block_ids == () and old.reused_blocks == 2
            stored = store.query(request_id="new-1")[0]
            assert stored.reused_block_ids == ((7, OTHER), (13, NS), (3, NS))

            attacker = Attacker(db)
            attacker.set_field(5, reused_block_ids=[[7, OTHER], [99, NS], [3, NS]])
            report = verify_chain(db)
            assert not report.ok and report.first_broken == 5
            attacker.set_field(5, reused_block_ids=[[7, OTHER], [13, NS], [3, NS]])
            assert verify_chain(db).ok
            attacker.set_field(2, reused_block_ids=[[1, NS], [2, NS]])  # claim ids afterwards
            report = verify_chain(db)
            assert not report.ok and report.first_broken == 2
        finally:
            db.dispose()


def test_exported_block_ids_verify_offline(audit_db: Database) -> None:
    signer = new_signer(2)
    store = AuditStore(audit_db, signer)
    for i in range(4):
        store.append(_new_entry(i))
    out = io.StringIO()
    export_jsonl(audit_db, out)
    lines = out.getvalue().splitlines()
    assert verify_export(lines, signer.public_key, 2).ok
    forged = [line.replace('[14,"' + NS, '[15,"' + NS) for line in lines]
    assert forged != lines
    report = verify_export(forged, signer.public_key, 2)
    assert not report.ok and report.first_broken == 3


def test_block_ids_are_signed_with_the_chain(audit_db: Database) -> None:
    signer = new_signer(2)
    store = AuditStore(audit_db, signer)
    for i in range(4):
        store.append(_new_entry(i))
    attacker = Attacker(audit_db)
    attacker.set_field(3, reused_block_ids=[[7, NS], [15, NS], [3, NS]])
    attacker.rehash_from(3)  # recomputed hashes: only the signature at seq 4 catches it
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=2)
    assert not report.ok and report.first_broken == 3


@pytest.mark.parametrize("block_ids", [
    ((1, NS),),                            # one id for three reused blocks
    ((1, NS), (2, NS), (3, "XYZ")),        # owner not lowercase hex
    ((1, NS), (2, NS), (-3, NS)),          # negative block id
    ((1, NS), (2, NS), (3, NS)),           # OTHER is named as an owner but owns no block
    ([1, NS], (2, OTHER), (3, NS)),        # a list, not a pair
])
def test_inconsistent_block_ids_are_refused(audit_db: Database, block_ids: Any) -> None:
    entry = AuditEntry(request_id="r", tenant_id="t", key_id=None, namespace=NS,
                       reused_blocks=3, reused_namespaces=(NS, OTHER), reused_block_ids=block_ids)
    with pytest.raises(Invalid, match="reused_block_ids"):
        AuditStore(audit_db).append(entry)
