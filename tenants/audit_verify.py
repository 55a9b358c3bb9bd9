"""`verify_chain`: prove the stored audit trail is the one the server wrote, or say where not.

What is checked: every record's hash is recomputed from its fields and `prev_hash`; every link
(`prev_hash` = hash of the record before) and the gap-free seq order; every checkpoint's
Ed25519 signature against the trusted public key and that it matches the chain at its seq;
that the record at every multiple of the checkpoint interval has its checkpoint; that the
chain reaches the head row.

Against an attacker who can write the database but does not hold the signing key:
- Detected: changing any field of a record, deleting a record in the middle, reordering
  records, inserting a record anywhere but the unsigned tail, recomputing every hash after a
  change (the next checkpoint no longer matches), forging or re-signing a checkpoint with
  another key, deleting checkpoints to hide a rewrite (the mandatory checkpoint is missing).
- Not detected: records after the last signed checkpoint (at most `checkpoint_every - 1` of
  them, none with `every=1` except the record being written) can be changed, appended or
  truncated by rewriting the tail and the head row consistently. Truncating the tail *together
  with* the checkpoints that cover it (cutting the chain back to an earlier checkpoint) is not
  detectable from the database alone, even when signing after every append: the verifier
  only knows what it is shown. Compare `last_seq` with an earlier report or export (an
  external anchor) to catch that. An attacker holding the key can forge anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from tenants.audit import GENESIS_HASH
from tenants.audit_chain import ChainChecker
from tenants.audit_schemas import CheckpointView, VerifyReport
from tenants.audit_signing import DEFAULT_CHECKPOINT_EVERY, checkpoint_problem
from tenants.database import Database
from tenants.errors import Invalid
from tenants.models import AuditChainHead, AuditRecord
from tenants.models.audit_record import AuditCheckpoint

DEFAULT_BATCH = 2000
_RECORDS = AuditRecord.__table__
_CHECKPOINTS = AuditCheckpoint.__table__
_HEAD = AuditChainHead.__table__


def verify_chain(
    db: Database,
    *,
    since: datetime | None = None,
    public_key: Ed25519PublicKey | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    batch_size: int = DEFAULT_BATCH,
) -> VerifyReport:
    """Verify the chain (from the last checkpoint signed at or before `since`, if given).

    Without `public_key` only the hash chain is checked: anyone can recompute hashes, so that
    proves consistency, not authenticity. `checkpoint_every` must be the signer's interval
    (or a multiple of it). Records are streamed by seq in `batch_size` pages.
    """
    if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
        raise Invalid("since must be a timezone-aware datetime")
    started = time.perf_counter()
    with db.engine.connect() as conn:
        head_seq, head_hash = conn.execute(select(_HEAD.c.seq, _HEAD.c.hash)
                                           .where(_HEAD.c.id == 1)).one()
        start = start_checkpoint(conn, since) if since is not None else None
        checker = ChainChecker(public_key, checkpoint_every,
                               start.seq if start else 0, start.hash if start else GENESIS_HASH)
        if start is not None and public_key is not None:
            problem = checkpoint_problem(start, public_key)
            if problem is not None:
                checker.first_broken, checker.reason = start.seq, f"starting {problem}"
                return checker.report(time.perf_counter() - started)
            checker.checkpoints = 1
        _feed(conn, checker, start.seq if start else None, head_seq, batch_size)
        checker.finish((head_seq, head_hash))
    return checker.report(time.perf_counter() - started)


def stream_records(conn: Connection, after: int | None, upto: int,
                   batch_size: int) -> Iterator[Sequence[Any]]:
    """Record rows with `after < seq <= upto` in seq order, one keyset page at a time."""
    while True:
        query = select(_RECORDS).where(_RECORDS.c.seq <= upto).order_by(_RECORDS.c.seq)
        if after is not None:
            query = query.where(_RECORDS.c.seq > after)
        rows = conn.execute(query.limit(batch_size)).mappings().all()
        if not rows:
            return
        yield rows
        after = rows[-1]["seq"]


def checkpoints_between(conn: Connection, after: int | None, upto: int) -> list[CheckpointView]:
    """Checkpoints with `after < seq <= upto`, in seq order."""
    query = select(_CHECKPOINTS).where(_CHECKPOINTS.c.seq <= upto).order_by(_CHECKPOINTS.c.seq)
    if after is not None:
        query = query.where(_CHECKPOINTS.c.seq > after)
    return [CheckpointView(**row) for row in conn.execute(query).mappings()]


def start_checkpoint(conn: Connection, since: datetime) -> CheckpointView | None:
    """The last checkpoint signed at or before `since` (None: start at the first record)."""
    row = conn.execute(select(_CHECKPOINTS).where(_CHECKPOINTS.c.signed_at <= since)
                       .order_by(_CHECKPOINTS.c.seq.desc()).limit(1)).mappings().first()
    return CheckpointView(**row) if row is not None else None


def _feed(conn: Connection, checker: ChainChecker, after: int | None, head_seq: int,
          batch_size: int) -> None:
    """Records and their checkpoints, merged in seq order, into `checker` until it breaks."""
    for rows in stream_records(conn, after, head_seq, batch_size):
        pending = iter(checkpoints_between(conn, after, rows[-1]["seq"]))
        cp = next(pending, None)
        for row in rows:
            while cp is not None and cp.seq < row["seq"]:
                if not checker.add_checkpoint(cp):
                    return
                cp = next(pending, None)
            if not checker.add_record(row):
                return
        while cp is not None:
            if not checker.add_checkpoint(cp):
                return
            cp = next(pending, None)
        after = rows[-1]["seq"]
    for cp in checkpoints_between(conn, after, head_seq):  # checkpoints past the last record
        if not checker.add_checkpoint(cp):
            return
