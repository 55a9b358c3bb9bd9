"""Audit signing settings: the names the `prefixgate audit` CLI reads, defaults, validation."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.settings import Settings
from tenants.audit_signing import AuditSigner
from tenants.server_key import KEY_FILE_NAME


def test_audit_settings_from_env(tmp_path: Path) -> None:
    s = Settings.from_env({"PREFIXGATE_DATA_DIR": str(tmp_path)})
    assert s.audit_checkpoint_every == 64 and s.audit_signing_key is None
    assert s.resolved_audit_key_file == tmp_path / KEY_FILE_NAME
    s = Settings.from_env({"PREFIXGATE_AUDIT_CHECKPOINT_EVERY": "8",
                           "PREFIXGATE_AUDIT_SIGNING_KEY_FILE": str(tmp_path / "k.pem")})
    assert s.audit_checkpoint_every == 8 and s.resolved_audit_key_file == tmp_path / "k.pem"
    with pytest.raises(ValueError, match="audit_checkpoint_every"):
        Settings(audit_checkpoint_every=0)


def test_key_text_wins_over_the_file_and_stays_out_of_repr(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    text = base64.b64encode(raw).decode()
    s = Settings.from_env({"PREFIXGATE_AUDIT_SIGNING_KEY": text,
                           "PREFIXGATE_DATA_DIR": str(tmp_path)})
    assert text not in repr(s)
    signer = AuditSigner.from_settings(s.audit_signing_key, s.resolved_audit_key_file,
                                       s.audit_checkpoint_every)
    assert signer.public_key.public_bytes_raw() == key.public_key().public_bytes_raw()
    assert not s.resolved_audit_key_file.exists()  # no file written when the key is given
