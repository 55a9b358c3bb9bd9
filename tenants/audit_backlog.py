"""One-time signing of a chain written before signing was enabled (an operator's decision).

`verify_chain` with a key demands a checkpoint at every multiple of the interval, so records
appended while no signer was configured must be signed once before it can pass. This trusts
whatever the database holds at that moment (it refuses a chain whose hashes do not add up),
so it is a deliberate command, never run on start-up: re-signing on every start would launder
a rewrite whose checkpoints an attacker deleted.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import insert, select

from tenants.audit_signing import AuditSigner
from tenants.audit_verify import verify_chain
from tenants.database import Database
from tenants.errors import Invalid
from tenants.models import AuditRecord
from tenants.models.audit_record import AuditCheckpoint
from tenants.models.base import utcnow

_CHUNK = 1000


def sign_backlog(db: Database, signer: AuditSigner) -> int:
    """Write the missing checkpoints at multiples of `signer.every`; returns how many."""
    report = verify_chain(db, checkpoint_every=signer.every)
    if not report.ok:
        raise Invalid(f"refusing to sign a broken chain (record {report.first_broken}: "
                      f"{report.reason})")
    signed = 0
    with db.session() as session:
        have = set(session.scalars(select(AuditCheckpoint.seq)
                                   .where(AuditCheckpoint.seq <= report.last_seq)))
        wanted = [seq for seq in range(signer.every, report.last_seq + 1, signer.every)
                  if seq not in have]
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            rows = session.execute(select(AuditRecord.seq, AuditRecord.hash)
                                   .where(AuditRecord.seq.in_(chunk))).all()
            checkpoints = [asdict(signer.sign(seq, digest, utcnow())) for seq, digest in rows]
            if checkpoints:
                session.execute(insert(AuditCheckpoint.__table__), checkpoints)
            signed += len(checkpoints)
    return signed
