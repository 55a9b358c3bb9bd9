"""Guard for columns that never change after insert (versioned content)."""

from __future__ import annotations

from sqlalchemy import inspect

from tenants.errors import Conflict


def refuse_change(obj: object, key: str, value: object) -> object:
    """A `@validates` body: allow the first assignment, refuse any later change (-> Conflict)."""
    state = inspect(obj)
    if (state.persistent or state.detached) and getattr(obj, key) != value:
        raise Conflict(f"{key} of a stored version is immutable; register a new version")
    return value
