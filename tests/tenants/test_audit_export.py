"""JSON-lines export and the offline verifier that trusts only the public key."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from tenants.audit_export import export_jsonl, verify_export
from tenants.database import Database
from tests.tenants.audit_support import Attacker, audit_db, build_chain, new_signer

__all__ = ["audit_db"]


def _export(db: Database, **kwargs: object) -> list[str]:
    out = io.StringIO()
    export_jsonl(db, out, batch_size=7, **kwargs)  # type: ignore[arg-type]
    return out.getvalue().splitlines()


def test_round_trip_verifies_offline(audit_db: Database) -> None:
    signer = new_signer(4)
    store = build_chain(audit_db, 18, signer)
    store.flush()
    lines = _export(audit_db)
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds[0] == "header" and kinds.count("record") == 18 and kinds.count("checkpoint") == 5
    assert kinds[kinds.index("checkpoint") - 1] == "record"  # right after the record it covers
    report = verify_export(lines, signer.public_key, checkpoint_every=4)
    assert report.ok and report.records == 18 and report.signed_through == 18
    other = new_signer(4)
    assert not verify_export(lines, other.public_key, checkpoint_every=4).ok


def test_edited_export_is_caught(audit_db: Database) -> None:
    signer = new_signer(4)
    build_chain(audit_db, 10, signer)
    lines = _export(audit_db)
    for index, line in enumerate(lines):
        item = json.loads(line)
        if item["type"] == "record" and item["seq"] == 6:
            item["completion_tokens"] += 1
            lines[index] = json.dumps(item)
    report = verify_export(lines, signer.public_key, checkpoint_every=4)
    assert not report.ok and report.first_broken == 6
    dropped = [line for line in _export(audit_db) if '"seq":3,' not in line]
    report = verify_export(dropped, signer.public_key, checkpoint_every=4)
    assert not report.ok and report.first_broken == 3
    assert not verify_export(["garbage"], signer.public_key).ok
    broken_line = [*_export(audit_db)[:3], "{not json"]
    report = verify_export(broken_line, signer.public_key, checkpoint_every=4)
    assert not report.ok and "line 4" in report.reason


def test_since_export_starts_at_a_checkpoint(audit_db: Database) -> None:
    signer = new_signer(4)
    build_chain(audit_db, 11, signer)
    since = Attacker(audit_db).checkpoints()[0]["signed_at"] + timedelta(microseconds=1)
    lines = _export(audit_db, since=since)
    first = json.loads(lines[1])
    assert first["type"] == "checkpoint" and first["seq"] == 4
    report = verify_export(lines, signer.public_key, checkpoint_every=4)
    assert report.ok and report.records == 7 and report.last_seq == 11
    forged = json.loads(lines[1]) | {"hash": "0" * 64}
    report = verify_export([lines[0], json.dumps(forged), *lines[2:]], signer.public_key, 4)
    assert not report.ok and "starting checkpoint" in report.reason


def test_tenant_export_is_for_review_only(audit_db: Database) -> None:
    signer = new_signer(4)
    build_chain(audit_db, 12, signer)
    lines = _export(audit_db, tenant_id="ten_a")
    records = [json.loads(line) for line in lines if '"type":"record"' in line]
    assert records and {r["tenant_id"] for r in records} == {"ten_a"}
    report = verify_export(lines, signer.public_key, checkpoint_every=4)
    assert not report.ok and "tenant-filtered" in report.reason
