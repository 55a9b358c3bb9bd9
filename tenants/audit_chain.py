"""The chain checker shared by the database verifier and the offline (export file) verifier.

Records and checkpoints are fed in seq order, each checkpoint right after the record it
covers; the checker stops at the first problem and remembers where and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tenants.audit import GENESIS_HASH, fields_hash
from tenants.audit_schemas import CheckpointView, VerifyReport
from tenants.audit_signing import DEFAULT_CHECKPOINT_EVERY, checkpoint_problem


class ChainChecker:
    """Recomputes hashes, follows links, checks signatures and the mandatory checkpoints.

    With a public key, the record at every multiple of `checkpoint_every` must carry a valid
    checkpoint (the signer writes it in the same transaction), so deleting checkpoints to hide
    a rewritten chain is itself detected. Without a key only the hash chain is checked.
    """

    def __init__(self, public_key: Ed25519PublicKey | None,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 start_seq: int = 0, start_hash: str = GENESIS_HASH) -> None:
        assert checkpoint_every >= 1
        self.public_key = public_key
        self.every = checkpoint_every
        self.next_seq = start_seq + 1
        self.prev_hash = start_hash
        self.signed_through = start_seq
        self.records = 0
        self.checkpoints = 0
        self.first_broken: int | None = None
        self.reason: str | None = None
        self._awaiting: int | None = None  # seq whose mandatory checkpoint has not come yet

    @property
    def broken(self) -> bool:
        return self.first_broken is not None

    def add_record(self, row: Mapping[str, Any]) -> bool:
        """Check the next record; False once the chain is broken."""
        if self.broken or not self._settle_awaiting():
            return False
        seq = row["seq"]
        if seq != self.next_seq:
            if seq > self.next_seq:
                return self._fail(self.next_seq, f"record {self.next_seq} is missing (the next "
                                                 f"stored record is {seq})")
            return self._fail(self.next_seq, f"unexpected record with seq {seq} where "
                                             f"{self.next_seq} belongs")
        if row["prev_hash"] != self.prev_hash:
            return self._fail(seq, f"record {seq} does not link to record {seq - 1} "
                                   f"(prev_hash differs)")
        if fields_hash(self.prev_hash, seq, row["created_at"], row) != row["hash"]:
            return self._fail(seq, f"record {seq} was changed: its fields do not match its hash")
        self.prev_hash = row["hash"]
        self.next_seq += 1
        self.records += 1
        if self.public_key is not None and seq % self.every == 0:
            self._awaiting = seq
        return True

    def add_checkpoint(self, cp: CheckpointView) -> bool:
        """Check a checkpoint fed right after the record at `cp.seq`; False once broken."""
        if self.broken:
            return False
        last = self.next_seq - 1
        if cp.seq > last:
            return self._fail(self.next_seq, f"record {self.next_seq} is missing (a checkpoint "
                                             f"covers seq {cp.seq})")
        if cp.seq < last:
            return self._fail(cp.seq, f"checkpoint at seq {cp.seq} is out of place (after "
                                      f"record {last})")
        if self.public_key is None:
            return True
        problem = checkpoint_problem(cp, self.public_key)
        if problem is not None:
            return self._fail(self.signed_through + 1, problem)
        if cp.hash != self.prev_hash:
            return self._fail(self.signed_through + 1,
                              f"records {self.signed_through + 1}..{cp.seq} do not match the "
                              f"signed checkpoint at seq {cp.seq} (the chain was rewritten)")
        self.signed_through = cp.seq
        self.checkpoints += 1
        if self._awaiting == cp.seq:
            self._awaiting = None
        return True

    def finish(self, head: tuple[int, str] | None = None) -> bool:
        """End of stream; `head` is the chain head row (seq, hash) the stream should reach."""
        if self.broken or not self._settle_awaiting():
            return False
        if head is not None:
            head_seq, head_hash = head
            if self.next_seq - 1 < head_seq:
                return self._fail(self.next_seq, f"record {self.next_seq} is missing (the chain "
                                                 f"head is at seq {head_seq})")
            if self.prev_hash != head_hash:
                return self._fail(head_seq, f"record {head_seq} does not match the chain head")
        return True

    def report(self, elapsed_s: float = 0.0) -> VerifyReport:
        return VerifyReport(
            ok=not self.broken,
            records=self.records,
            first_broken=self.first_broken,
            reason=self.reason,
            checkpoints=self.checkpoints,
            signed_through=self.signed_through if self.public_key is not None else None,
            last_seq=self.next_seq - 1,
            elapsed_s=elapsed_s,
        )

    def _settle_awaiting(self) -> bool:
        if self._awaiting is None:
            return True
        return self._fail(self.signed_through + 1,
                          f"the signed checkpoint at seq {self._awaiting} is missing")

    def _fail(self, seq: int, reason: str) -> bool:
        self.first_broken, self.reason = seq, reason
        return False
