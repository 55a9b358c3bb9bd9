"""Path parameter types of the admin routes (explicit markers, as Litestar 3 requires)."""

from __future__ import annotations

from typing import TypeAlias

from litestar.params import FromPath

TenantId: TypeAlias = FromPath[str]
KeyId: TypeAlias = FromPath[str]
PromptName: TypeAlias = FromPath[str]
Version: TypeAlias = FromPath[int]
