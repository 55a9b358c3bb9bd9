"""Helpers of the audit-trail tests: entries, chains, and an attacker with SQL access."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, insert, select, text, update

from tenants.audit import AuditStore, fields_hash
from tenants.audit_signing import AuditSigner
from tenants.database import Database
from tenants.models import AuditChainHead, AuditRecord
from tenants.models.audit_record import AuditCheckpoint
from tenants.schemas import AuditEntry

NS = "ab" * 32
RECORDS = AuditRecord.__table__
CHECKPOINTS = AuditCheckpoint.__table__
HEAD = AuditChainHead.__table__


@pytest.fixture
def audit_db(db: Database) -> Iterator[Database]:
    """`db`, with the checkpoints table emptied too (the shared cleanup predates it)."""
    yield db
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))


def entry(n: int, rng: random.Random | None = None) -> AuditEntry:
    rng = rng or random.Random(n)
    cached = rng.randrange(0, 64)
    return AuditEntry(request_id=f"req-{n}", tenant_id=rng.choice(["ten_a", "ten_b"]),
                      key_id="key_1", namespace=NS, variant_name=rng.choice([None, "sys"]),
                      prompt_tokens=cached + rng.randrange(1, 64), cached_tokens=cached,
                      completion_tokens=rng.randrange(0, 32), reused_blocks=cached // 16,
                      reused_namespaces=(NS,) if cached >= 16 else ())


def build_chain(db: Database, n: int, signer: AuditSigner | None) -> AuditStore:
    store = AuditStore(db, signer)
    for i in range(1, n + 1):
        store.append(entry(i))
    return store


def new_signer(every: int) -> AuditSigner:
    return AuditSigner(Ed25519PrivateKey.generate(), every)


class Attacker:
    """Writes the database directly, as someone with DB credentials but no signing key."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def rows(self) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(RECORDS).order_by(RECORDS.c.seq))
                    .mappings()]

    def checkpoints(self) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(CHECKPOINTS).order_by(CHECKPOINTS.c.seq))
                    .mappings()]

    def head(self) -> tuple[int, str]:
        with self.db.engine.connect() as conn:
            seq, digest = conn.execute(select(HEAD.c.seq, HEAD.c.hash)).one()
            return seq, digest

    def restore(self, rows: list[dict[str, Any]], cps: list[dict[str, Any]],
                head: tuple[int, str]) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(RECORDS))
            conn.execute(delete(CHECKPOINTS))
            conn.execute(insert(RECORDS), rows)
            if cps:
                conn.execute(insert(CHECKPOINTS), cps)
            conn.execute(update(HEAD).values(seq=head[0], hash=head[1]))

    def set_field(self, at: int, **values: Any) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(update(RECORDS).where(RECORDS.c.seq == at).values(**values))

    def delete(self, seq: int) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(RECORDS).where(RECORDS.c.seq == seq))

    def swap(self, a: int, b: int) -> None:
        """Swap two records' positions (every field but seq changes places)."""
        with self.db.engine.begin() as conn:
            for old, new in ((a, -1), (b, a), (-1, b)):
                conn.execute(update(RECORDS).where(RECORDS.c.seq == old).values(seq=new))

    def insert_valid_looking(self, at: int) -> None:
        """Shift records `at`.. up by one and put a record with a correctly computed hash,
        linked to record `at - 1`, in the gap; the head row follows."""
        rows = {r["seq"]: r for r in self.rows()}
        prev_hash = rows[at - 1]["hash"] if at > 1 else "0" * 64
        forged = {**rows[at], "seq": at, "request_id": "forged", "prev_hash": prev_hash}
        forged["hash"] = fields_hash(prev_hash, at, forged["created_at"], forged)
        with self.db.engine.begin() as conn:
            conn.execute(update(RECORDS).where(RECORDS.c.seq >= at).values(seq=-RECORDS.c.seq))
            conn.execute(update(RECORDS).where(RECORDS.c.seq < 0).values(seq=1 - RECORDS.c.seq))
            conn.execute(insert(RECORDS), [forged])
            conn.execute(update(HEAD).values(seq=HEAD.c.seq + 1))

    def rehash_from(self, seq: int) -> None:
        """Recompute every hash and link from `seq` on, and the head (a full chain rewrite)."""
        rows = self.rows()
        prev = rows[seq - 2]["hash"] if seq > 1 else "0" * 64
        with self.db.engine.begin() as conn:
            for row in rows[seq - 1:]:
                digest = fields_hash(prev, row["seq"], row["created_at"], row)
                conn.execute(update(RECORDS).where(RECORDS.c.seq == row["seq"])
                             .values(prev_hash=prev, hash=digest))
                prev = digest
            conn.execute(update(HEAD).values(hash=prev))

    def drop_checkpoints_from(self, seq: int) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.seq >= seq))

    def truncate_to(self, seq: int) -> None:
        """Cut the chain back to `seq`: later records, their checkpoints, and the head row."""
        rows = {r["seq"]: r for r in self.rows()}
        with self.db.engine.begin() as conn:
            conn.execute(delete(RECORDS).where(RECORDS.c.seq > seq))
            conn.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.seq > seq))
            conn.execute(update(HEAD).values(seq=seq, hash=rows[seq]["hash"]))
