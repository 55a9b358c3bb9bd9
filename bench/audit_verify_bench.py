"""Audit trail speed: verify_chain records/s against a bare keyset scan of the same rows, and
append throughput of AuditStore.append (one transaction each) against AuditWriter group commit.

`python -m bench.audit_verify_bench [--records N] [--db URL]` (default: a temporary SQLite file).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from tqdm import tqdm

from tenants.audit import AuditStore, append_entries
from tenants.audit_signing import AuditSigner
from tenants.audit_verify import DEFAULT_BATCH, stream_records, verify_chain
from tenants.audit_writer import AuditWriter
from tenants.database import Database
from tenants.migrate import upgrade
from tenants.schemas import AuditEntry

NS = "ab" * 32


def _entry(n: int) -> AuditEntry:
    return AuditEntry(request_id=f"req-{n}", tenant_id=f"ten_{n % 7}", key_id="key_1",
                      namespace=NS, variant_name="sys", variant_version=1, prompt_tokens=512,
                      cached_tokens=448, completion_tokens=64, reused_blocks=28,
                      reused_namespaces=(NS,))


def _reset(db: Database) -> None:
    with db.engine.begin() as conn:
        for statement in ("DELETE FROM audit_records", "DELETE FROM audit_checkpoints",
                          "UPDATE audit_chain_head SET seq = 0, hash = '" + "0" * 64 + "'"):
            conn.execute(text(statement))


def _fill(db: Database, records: int, signer: AuditSigner) -> None:
    with tqdm(total=records, desc="build chain", unit="rec") as bar:
        for start in range(0, records, 1000):
            count = min(1000, records - start)
            with db.session() as session:
                append_entries(session, [_entry(start + i) for i in range(count)], signer)
            bar.update(count)


def _scan(db: Database, records: int) -> float:
    started = time.perf_counter()
    seen = 0
    with db.engine.connect() as conn, tqdm(total=records, desc="bare scan", unit="rec") as bar:
        for rows in stream_records(conn, None, records, DEFAULT_BATCH):
            seen += len(rows)
            bar.update(len(rows))
    assert seen == records
    return seen / (time.perf_counter() - started)


def _append_rates(db: Database, signer: AuditSigner, count: int) -> tuple[float, float, float]:
    _reset(db)
    store = AuditStore(db, signer)
    started = time.perf_counter()
    for i in tqdm(range(count), desc="AuditStore.append", unit="rec"):
        store.append(_entry(i))
    single = count / (time.perf_counter() - started)
    _reset(db)
    per_append = AuditStore(db, AuditSigner(signer.private_key, every=1))
    started = time.perf_counter()
    for i in tqdm(range(count), desc="append, signed each", unit="rec"):
        per_append.append(_entry(i))
    signed_each = count / (time.perf_counter() - started)
    _reset(db)

    async def burst() -> float:
        writer = AuditWriter(db, signer=signer)
        started = time.perf_counter()
        await asyncio.gather(*(writer.write(_entry(i)) for i in range(count)))
        elapsed = time.perf_counter() - started
        await asyncio.to_thread(writer.close)
        return count / elapsed

    grouped = asyncio.run(burst())
    return single, signed_each, grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--db", default=None, help="migrated or empty database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        db = Database.from_url(url)
        signer = AuditSigner(Ed25519PrivateKey.generate(), every=64)
        _reset(db)
        _fill(db, args.records, signer)
        scan_rate = _scan(db, args.records)
        report = verify_chain(db, public_key=signer.public_key)
        assert report.ok and report.records == args.records, report
        hash_only = verify_chain(db)
        single, signed_each, grouped = _append_rates(db, signer, args.appends)
        _reset(db)
        db.dispose()
    print(f"backend {db.dialect}, {args.records} records, checkpoint every 64")
    print(f"verify_chain (hashes + signatures): {report.records_per_s:,.0f} records/s "
          f"({report.elapsed_s:.2f} s, {report.checkpoints} checkpoints)")
    print(f"verify_chain (hashes only):         {hash_only.records_per_s:,.0f} records/s")
    print(f"baseline: bare keyset scan:         {scan_rate:,.0f} records/s")
    print(f"append ({args.appends}): AuditStore.append {single:,.0f}/s, signed after each "
          f"{signed_each:,.0f}/s, AuditWriter group commit {grouped:,.0f}/s")


if __name__ == "__main__":
    main()
