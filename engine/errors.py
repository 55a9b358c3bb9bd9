"""Typed errors the engine raises at its boundary; the gateway maps them to HTTP in one place."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine reports to a caller."""


class EngineNotReady(EngineError):
    """The engine is not started (or is shutting down)."""


class InvalidRequest(EngineError):
    """The request cannot be served as given (e.g. prompt plus max_tokens beyond the context)."""


class EngineOverloaded(EngineError):
    """Admission refused: queue bound, deadline, KV high-water mark or a tenant's KV share.

    `retry_after_s` is the engine's estimate of when capacity frees up.
    """

    def __init__(self, reason: str, retry_after_s: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class IsolationViolation(EngineError):
    """A block about to be reused is owned by another namespace. Must never happen; audited."""

    def __init__(self, request_id: str, block_id: int, expected: bytes, found: bytes) -> None:
        super().__init__(f"block {block_id} owned by another namespace (request {request_id})")
        self.request_id = request_id
        self.block_id = block_id
        self.expected = expected
        self.found = found


class RequestAborted(EngineError):
    """The request was cancelled or failed inside an engine step."""
