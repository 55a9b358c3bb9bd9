"""Random ids and the API key token format `pgk_<key id>_<secret>`."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_TOKEN_PREFIX = "pgk_"
_ID_HEX_CHARS = 16
_TOKEN = re.compile(r"pgk_(key_[0-9a-f]{16})_([A-Za-z0-9_-]{43,128})")


def new_tenant_id() -> str:
    return "ten_" + secrets.token_hex(_ID_HEX_CHARS // 2)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(_ID_HEX_CHARS // 2)


def new_secret() -> str:
    """32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def key_token(key_id: str, secret: str) -> str:
    return f"{KEY_TOKEN_PREFIX}{key_id}_{secret}"


def display_prefix(key_id: str) -> str:
    """What lists show for a key: the non-secret head of its token."""
    return f"{KEY_TOKEN_PREFIX}{key_id}"


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def secret_hash(secret: str) -> str:
    """sha256 hex of the secret: the only thing about it that is stored."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()
