"""The one place that maps errors to OpenAI-shaped HTTP responses.

Every exception that reaches Litestar — the gateway's own `ApiError`, the registry's
(`tenants.errors`), the engine's (`engine.errors`), canonicalization errors, Litestar's own
validation and routing errors, and anything unexpected — becomes
`{"error": {"message", "type", "code", "param"}}` with the right status (and `Retry-After` on
429/503). Messages are written here or come from typed errors whose text names only the
caller's own objects; unexpected errors are logged and answered with a generic 500, never a
stack trace. A database that cannot be reached (connection refused, file gone, pool exhausted)
is a 503 with Retry-After: the request may succeed once it is back, and the log names only the
driver's error class, never the statement or its parameters.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy import exc as db_errors

from engine import errors as engine_errors
from gateway.canonical import PromptError, UnsupportedChatTemplate
from tenants import errors as registry_errors

log = logging.getLogger("prefixgate.gateway")

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
# Errors that mean "the database is not reachable now", as opposed to a bug in a statement.
_DB_UNAVAILABLE = (
    db_errors.OperationalError,
    db_errors.InterfaceError,
    db_errors.DisconnectionError,
    db_errors.TimeoutError,
)
DB_RETRY_AFTER_S = 5.0


class ApiError(Exception):
    """An error the gateway answers as is: status, OpenAI code/param, optional Retry-After."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    code: str | None
    param: str | None


class ErrorBody(msgspec.Struct):
    """The OpenAI error envelope (documented in the OpenAPI schema)."""

    error: ErrorDetail


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an error is recorded in the audit trail."""

    outcome: str
    code: str


def to_api_error(exc: BaseException) -> ApiError:
    """Translate any exception into the ApiError the client sees."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, registry_errors.RegistryError):
        return _registry(exc)
    if isinstance(exc, engine_errors.EngineError):
        return _engine(exc)
    if isinstance(exc, PromptError):
        return ApiError(400, str(exc), "invalid_prompt", exc.param)
    if isinstance(exc, ValidationException):
        return _validation(exc)
    if isinstance(exc, _DB_UNAVAILABLE):
        orig = getattr(exc, "orig", None)
        log.warning("database unavailable: %s", type(orig or exc).__name__)
        return ApiError(
            503, "The database is unavailable; retry later.", "database_unavailable", None,
            DB_RETRY_AFTER_S,
        )
    if isinstance(exc, UnicodeDecodeError):  # Litestar decodes the body lazily, in the handler
        return ApiError(400, "The request body is not valid UTF-8.", "invalid_encoding")
    if isinstance(exc, RecursionError):  # the JSON decoder on a body nested too deeply
        return ApiError(400, "The request body is nested too deeply.", "invalid_json")
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return ApiError(exc.status_code, exc.detail, _http_code(exc.status_code))
    if isinstance(exc, UnsupportedChatTemplate):
        log.error("chat template unsupported: %s", exc)
    else:
        log.exception("unhandled error", exc_info=exc)
    return ApiError(500, "The server had an error while processing your request.", "internal_error")


def _registry(exc: registry_errors.RegistryError) -> ApiError:
    if isinstance(exc, registry_errors.AuthError):
        if exc.reason == "suspended":
            return ApiError(403, "This tenant is suspended.", "tenant_suspended")
        if exc.reason == "revoked":
            return ApiError(401, "This API key has been revoked.", "revoked_api_key")
        return ApiError(401, "Incorrect API key provided.", "invalid_api_key")
    if isinstance(exc, registry_errors.NotFound):
        return ApiError(404, str(exc) or "Not found.", "not_found")
    if isinstance(exc, registry_errors.Conflict):
        return ApiError(409, str(exc) or "Conflict.", "conflict")
    if isinstance(exc, registry_errors.Invalid):
        return ApiError(422, str(exc) or "Invalid value.", "invalid_value")
    log.exception("registry error", exc_info=exc)
    return ApiError(500, "The registry had an error.", "internal_error")


def _engine(exc: engine_errors.EngineError) -> ApiError:
    if isinstance(exc, engine_errors.EngineOverloaded):
        return ApiError(
            429, "The server is overloaded; retry later.", "overloaded", None, exc.retry_after_s
        )
    if isinstance(exc, engine_errors.EngineNotReady):
        return ApiError(503, "The engine is not ready.", "engine_not_ready", None, 1.0)
    if isinstance(exc, engine_errors.InvalidRequest):
        return ApiError(400, str(exc), "invalid_request")
    if isinstance(exc, engine_errors.IsolationViolation):
        log.error("isolation violation refused: %s", exc)
        return ApiError(500, "The request failed a cache integrity check.", "internal_error")
    if isinstance(exc, engine_errors.RequestAborted):
        return ApiError(500, "The request was aborted by the engine.", "request_aborted")
    log.exception("engine error", exc_info=exc)
    return ApiError(500, "The engine had an error.", "internal_error")


def _validation(exc: ValidationException) -> ApiError:
    message, param = "Invalid request body.", None
    if isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            message = str(first.get("message") or message)
            key = first.get("key")
            param = str(key) if key else None
    return ApiError(400, message, "invalid_request", param)


def _http_code(status: int) -> str:
    return {
        401: "invalid_api_key",
        403: "insufficient_scope",
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
    }.get(status, "invalid_request")


def outcome_of(exc: BaseException) -> Outcome:
    """Audit outcome and error code of a failed request."""
    if isinstance(exc, engine_errors.IsolationViolation):
        return Outcome("isolation_violation", "isolation_violation")
    err = to_api_error(exc)
    kind = "rejected" if err.status < 500 else "error"
    return Outcome(kind, err.code or str(err.status))


def error_response(err: ApiError) -> Response[bytes]:
    headers: dict[str, str] = {}
    if err.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after_s)))
    return Response(
        content=error_json(err),
        status_code=err.status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def error_json(err: ApiError) -> bytes:
    detail = ErrorDetail(
        err.message, _TYPE_BY_STATUS.get(err.status, "api_error"), err.code, err.param
    )
    return msgspec.json.encode(ErrorBody(detail))


def handle_exception(_request: Request, exc: Exception) -> Response[bytes]:
    """Litestar's exception handler for everything (registered for `Exception`)."""
    return error_response(to_api_error(exc))
