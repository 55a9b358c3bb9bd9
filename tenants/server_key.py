"""The server's Ed25519 audit signing key: created once (file mode 0600), loaded, or parsed.

A key is given either as a file path (generated on first start) or as text in settings: PEM
(PKCS#8 private / SubjectPublicKeyInfo public) or base64 of the raw 32-byte key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tenants.errors import Invalid

KEY_FILE_NAME = "audit_signing_key.pem"
_RAW_LEN = 32


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The key in `path`; on first start a new one, written with mode 0600 (never overwritten)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_private_key(path)  # another process created it first: use theirs
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        return key
    return load_private_key(path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a key file, refusing one that group or others may read."""
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077:
        raise Invalid(f"audit signing key {path} has mode {mode:o}; it must be 0600")
    return private_key_from_text(Path(path).read_text(encoding="ascii"))


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    """Parse a PEM PKCS#8 Ed25519 private key or base64 of its raw 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise Invalid("audit signing key: unreadable PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise Invalid("audit signing key: not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw(text, "audit signing key"))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Parse a PEM Ed25519 public key or base64 of its raw 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise Invalid("audit public key: unreadable PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise Invalid("audit public key: not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw(text, "audit public key"))


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def public_key_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def key_id(key: Ed25519PublicKey) -> str:
    """Short public key id stored with each checkpoint: 16 hex digits of sha256(raw key)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _raw(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid(f"{what}: neither PEM nor base64") from exc
    if len(raw) != _RAW_LEN:
        raise Invalid(f"{what}: raw Ed25519 keys are {_RAW_LEN} bytes, got {len(raw)}")
    return raw
