"""Typed registry errors; the gateway maps them to HTTP statuses in one place."""

from __future__ import annotations

from typing import Literal

AuthReason = Literal["invalid_key", "revoked", "suspended"]


class RegistryError(Exception):
    """Base of every error the registry raises on purpose."""


class NotFound(RegistryError):
    """The named object does not exist (or belongs to another tenant): HTTP 404."""


class Conflict(RegistryError):
    """The change clashes with current state (duplicate name, retired version): HTTP 409."""


class Invalid(RegistryError):
    """The input breaks a rule (bad name, policy, quota or template): HTTP 422."""


class AuthError(RegistryError):
    """An API key was refused: 401 for `invalid_key`/`revoked`, 403 for `suspended`."""

    def __init__(self, reason: AuthReason) -> None:
        super().__init__(reason)
        self.reason: AuthReason = reason
