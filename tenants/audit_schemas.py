"""Frozen views of the signed audit trail: checkpoints and verification reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class CheckpointView:
    """A signed statement that record `seq` of the chain has hash `hash`."""

    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of a chain verification.

    `first_broken` is the first seq that can no longer be trusted: the tampered record itself
    when its hash or link is wrong, or the first record after the last valid checkpoint when
    only a signature reveals the change (a chain whose hashes were all recomputed).
    `signed_through` is the last seq covered by a valid signature (None: keys not checked).
    """

    ok: bool
    records: int
    first_broken: int | None
    reason: str | None
    checkpoints: int = 0
    signed_through: int | None = None
    last_seq: int = 0
    elapsed_s: float = 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0
