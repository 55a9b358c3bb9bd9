"""Signed checkpoints: the key file, the interval, and attacks only a signature reveals."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenants.audit_backlog import sign_backlog
from tenants.audit_signing import AuditSigner
from tenants.audit_verify import verify_chain
from tenants.database import Database
from tenants.errors import Invalid
from tenants.server_key import (
    key_id,
    load_or_create_private_key,
    private_key_from_text,
    public_key_b64,
    public_key_from_text,
    public_key_pem,
)
from tests.tenants.audit_support import (
    CHECKPOINTS,
    Attacker,
    audit_db,
    build_chain,
    entry,
    new_signer,
)

__all__ = ["audit_db"]


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "audit_signing_key.pem"
    key = load_or_create_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_private_key(path)
    assert key_id(again.public_key()) == key_id(key.public_key())
    os.chmod(path, 0o644)
    with pytest.raises(Invalid, match="0600"):
        load_or_create_private_key(path)


def test_keys_parse_from_pem_and_base64() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw_b64 = __import__("base64").b64encode(key.private_bytes_raw()).decode()
    assert key_id(private_key_from_text(raw_b64).public_key()) == key_id(public)
    assert key_id(public_key_from_text(public_key_pem(public))) == key_id(public)
    assert key_id(public_key_from_text(public_key_b64(public))) == key_id(public)
    with pytest.raises(Invalid):
        public_key_from_text("not a key")
    with pytest.raises(Invalid):
        AuditSigner(key, every=0)


def test_checkpoints_every_n_and_on_flush(audit_db: Database) -> None:
    signer = new_signer(4)
    store = build_chain(audit_db, 10, signer)
    assert [cp["seq"] for cp in Attacker(audit_db).checkpoints()] == [4, 8]
    flushed = store.flush()
    assert flushed is not None and flushed.seq == 10
    assert store.flush() == flushed  # already signed: no second checkpoint
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4)
    assert report.ok and report.records == 10 and report.checkpoints == 3
    assert report.signed_through == 10 and report.records_per_s > 0


def test_sign_after_every_append(audit_db: Database) -> None:
    signer = new_signer(1)
    build_chain(audit_db, 5, signer)
    assert [cp["seq"] for cp in Attacker(audit_db).checkpoints()] == [1, 2, 3, 4, 5]
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=1)
    assert report.ok and report.signed_through == 5


def test_other_key_is_detected(audit_db: Database) -> None:
    build_chain(audit_db, 8, new_signer(4))
    trusted = Ed25519PrivateKey.generate().public_key()
    report = verify_chain(audit_db, public_key=trusted, checkpoint_every=4)
    assert not report.ok and report.first_broken == 1 and "not the trusted" in (report.reason or "")


def test_resigned_checkpoint_with_trusted_key_id_is_detected(audit_db: Database) -> None:
    signer = new_signer(4)
    build_chain(audit_db, 8, signer)
    forger = AuditSigner(Ed25519PrivateKey.generate(), 4)
    cp = Attacker(audit_db).checkpoints()[1]
    forged = forger.sign(cp["seq"], cp["hash"], cp["signed_at"])
    with audit_db.engine.begin() as conn:
        conn.execute(CHECKPOINTS.update().where(CHECKPOINTS.c.seq == 8)
                     .values(signature=forged.signature))
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4)
    assert not report.ok and report.first_broken == 5 and "invalid signature" in report.reason


@pytest.mark.parametrize("changed", [3, 9, 14])
def test_rehashed_chain_is_detected_by_the_signature(audit_db: Database, changed: int) -> None:
    signer = new_signer(4)
    build_chain(audit_db, 14, signer)
    attacker = Attacker(audit_db)
    attacker.set_field(changed, cached_tokens=999)
    attacker.rehash_from(changed)
    unsigned = verify_chain(audit_db, checkpoint_every=4)
    assert unsigned.ok  # the hash chain alone is consistent again: only the key can tell
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4)
    if changed > 12:  # in the unsigned tail (after the checkpoint at 12): not detectable
        assert report.ok and report.signed_through == 12
        return
    last_good = (changed - 1) // 4 * 4
    assert not report.ok and report.first_broken == last_good + 1
    assert "rewritten" in report.reason
    attacker.drop_checkpoints_from(changed)  # hiding the rewrite by deleting checkpoints
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4)
    assert not report.ok and report.first_broken == last_good + 1
    assert "missing" in report.reason


def test_tail_limits_are_as_documented(audit_db: Database) -> None:
    """Per-append signing protects the tail against change and append, not truncation."""
    signer = new_signer(1)
    store = build_chain(audit_db, 6, signer)
    attacker = Attacker(audit_db)
    with audit_db.engine.begin() as conn:  # a valid-looking record after the last one
        conn.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.seq == 6))
    store_unsigned = type(store)(audit_db)
    store_unsigned.append(entry(7))
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=1)
    assert not report.ok and report.first_broken == 6 and "missing" in report.reason
    attacker.truncate_to(5)  # cut back to a signed checkpoint, checkpoints included
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=1)
    assert report.ok and report.last_seq == 5  # only an external anchor (last_seq) tells


def test_since_starts_at_the_last_checkpoint_before(audit_db: Database) -> None:
    signer = new_signer(4)
    build_chain(audit_db, 12, signer)
    cps = Attacker(audit_db).checkpoints()
    since = cps[1]["signed_at"] + timedelta(microseconds=1)  # after the checkpoint at seq 8
    report = verify_chain(audit_db, since=since, public_key=signer.public_key, checkpoint_every=4)
    assert report.ok and report.records == 4 and report.checkpoints == 2  # start + seq 12
    Attacker(audit_db).set_field(2, cached_tokens=999)  # before the window: not looked at
    assert verify_chain(audit_db, since=since, public_key=signer.public_key,
                        checkpoint_every=4).ok
    Attacker(audit_db).set_field(10, cached_tokens=999)
    report = verify_chain(audit_db, since=since, public_key=signer.public_key, checkpoint_every=4)
    assert not report.ok and report.first_broken == 10
    with pytest.raises(Invalid):
        verify_chain(audit_db, since=since.replace(tzinfo=None))


def test_head_row_must_match(audit_db: Database) -> None:
    signer = new_signer(4)
    build_chain(audit_db, 6, signer)
    Attacker(audit_db).delete(6)  # the last record, head row left alone
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4)
    assert not report.ok and report.first_broken == 6 and "head" in report.reason


def test_signer_from_settings(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    text = __import__("base64").b64encode(key.private_bytes_raw()).decode()
    from_text = AuditSigner.from_settings(text, tmp_path / "unused.pem", every=8)
    assert from_text.key_id == key_id(key.public_key()) and from_text.every == 8
    assert not (tmp_path / "unused.pem").exists()
    from_file = AuditSigner.from_settings(None, tmp_path / "k.pem")
    assert (tmp_path / "k.pem").exists() and from_file.every == 64


def test_backlog_is_signed_once_and_never_a_broken_chain(audit_db: Database) -> None:
    build_chain(audit_db, 10, None)  # written before signing was enabled
    signer = new_signer(4)
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4)
    assert not report.ok and "seq 4 is missing" in report.reason
    assert sign_backlog(audit_db, signer) == 2
    assert sign_backlog(audit_db, signer) == 0
    assert verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=4).ok
    Attacker(audit_db).set_field(9, outcome="error")
    with pytest.raises(Invalid, match="record 9"):
        sign_backlog(audit_db, signer)
