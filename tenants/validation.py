"""Input rules shared by the services: names, policies, prompt templates, content hashes."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import get_args

from tenants.errors import Invalid
from tenants.schemas import DB_INT_MAX, CachePolicy, TenantStatus

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_CONTENT_CHARS = 1_000_000


def check_name(value: object, what: str = "name") -> str:
    """A registry name: 1-64 characters of [A-Za-z0-9_.-]."""
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise Invalid(f"{what} must be 1-64 characters of [A-Za-z0-9_.-]")
    return value


def check_cache_policy(value: object) -> CachePolicy:
    if value not in get_args(CachePolicy):
        raise Invalid("cache_policy must be one of 'tenant', 'user', 'off'")
    return value  # type: ignore[return-value]


def check_status(value: object) -> TenantStatus:
    if value not in get_args(TenantStatus):
        raise Invalid("status must be 'active' or 'suspended'")
    return value  # type: ignore[return-value]


def check_version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= DB_INT_MAX:
        raise Invalid(f"version must be an integer in 1..{DB_INT_MAX}")
    return value


def normalize_content(content: object) -> str:
    """NFC-normalized, non-empty prompt text of bounded size."""
    if not isinstance(content, str) or not content.strip():
        raise Invalid("content must be a non-empty string")
    if len(content) > MAX_CONTENT_CHARS:
        raise Invalid(f"content must be at most {MAX_CONTENT_CHARS} characters")
    return unicodedata.normalize("NFC", content)


def content_hash(nfc_content: str) -> str:
    """sha256 hex of the NFC text, the identity of a prompt version."""
    return hashlib.sha256(nfc_content.encode("utf-8")).hexdigest()


def template_variables(content: str) -> tuple[str, ...]:
    """Names of `{{var}}` placeholders in order of first use; malformed braces -> Invalid."""
    names: list[str] = []
    for match in _PLACEHOLDER.finditer(content):
        name = match.group(1).strip()
        if _VARIABLE.fullmatch(name) is None:
            raise Invalid(f"template placeholder {match.group(0)[:80]!r} is not a variable name")
        if name not in names:
            names.append(name)
    rest = _PLACEHOLDER.sub("", content)
    if "{{" in rest or "}}" in rest:
        raise Invalid("template has an unbalanced '{{' or '}}'")
    return tuple(names)
