"""Ed25519 checkpoints over the audit hash chain: what is signed, by whom, and how often.

One signature covers a whole chain segment: it binds the hash of record `seq`, and through
the chain every record before it. Signing every N records keeps appends fast; `every=1`
signs after each append (small deployments that want no unsigned tail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tenants.audit_schemas import CheckpointView
from tenants.errors import Invalid
from tenants.server_key import key_id, load_or_create_private_key, private_key_from_text

DEFAULT_CHECKPOINT_EVERY = 64
_DOMAIN = b"prefixgate-audit-checkpoint/v1\n"


def checkpoint_message(seq: int, hash_: str, signed_at: datetime, signer_id: str) -> bytes:
    """The exact bytes a checkpoint signature covers (one field per line, domain-tagged)."""
    assert signed_at.tzinfo is not None
    stamp = signed_at.isoformat(timespec="microseconds")
    return _DOMAIN + f"{seq}\n{hash_}\n{stamp}\n{signer_id}".encode("ascii")


def checkpoint_problem(cp: CheckpointView, public_key: Ed25519PublicKey) -> str | None:
    """None when `cp` is signed by `public_key`; else why not."""
    expected_id = key_id(public_key)
    if cp.key_id != expected_id:
        return f"checkpoint at seq {cp.seq} names key {cp.key_id}, not the trusted {expected_id}"
    try:
        signature = bytes.fromhex(cp.signature)
        public_key.verify(signature, checkpoint_message(cp.seq, cp.hash, cp.signed_at, cp.key_id))
    except (ValueError, InvalidSignature):
        return f"checkpoint at seq {cp.seq} has an invalid signature"
    return None


@dataclass(frozen=True, slots=True)
class AuditSigner:
    """The server key plus the checkpoint interval (`every` records; 1 = after every append)."""

    private_key: Ed25519PrivateKey
    every: int = DEFAULT_CHECKPOINT_EVERY
    public_key: Ed25519PublicKey = field(init=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise Invalid("checkpoint interval must be a positive integer")
        public = self.private_key.public_key()
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "key_id", key_id(public))

    @classmethod
    def from_settings(cls, key_text: str | None, key_file: Path,
                      every: int = DEFAULT_CHECKPOINT_EVERY) -> AuditSigner:
        """Key from settings text (PEM or base64 raw) if given, else the key file (created)."""
        key = private_key_from_text(key_text) if key_text else load_or_create_private_key(key_file)
        return cls(key, every)

    def due(self, seq: int) -> bool:
        """Whether appending record `seq` must also write a checkpoint."""
        return seq % self.every == 0

    def sign(self, seq: int, hash_: str, signed_at: datetime) -> CheckpointView:
        message = checkpoint_message(seq, hash_, signed_at, self.key_id)
        return CheckpointView(seq=seq, hash=hash_, signed_at=signed_at, key_id=self.key_id,
                              signature=self.private_key.sign(message).hex())
