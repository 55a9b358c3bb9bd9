"""The one error mapping: statuses, OpenAI shape, Retry-After, nothing internal leaked."""

from __future__ import annotations

import msgspec
import pytest
from litestar.exceptions import NotFoundException, ValidationException

from engine import errors as engine_errors
from gateway.canonical import PromptError
from gateway.errors import error_response, outcome_of, to_api_error
from tenants import errors as registry_errors


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (registry_errors.AuthError("invalid_key"), 401, "invalid_api_key"),
        (registry_errors.AuthError("revoked"), 401, "revoked_api_key"),
        (registry_errors.AuthError("suspended"), 403, "tenant_suspended"),
        (registry_errors.NotFound("prompt 'x' not found"), 404, "not_found"),
        (registry_errors.Conflict("version 1 is retired"), 409, "conflict"),
        (registry_errors.Invalid("bad name"), 422, "invalid_value"),
        (engine_errors.EngineOverloaded("queue full", 2.5), 429, "overloaded"),
        (engine_errors.EngineNotReady("stopped"), 503, "engine_not_ready"),
        (engine_errors.InvalidRequest("prompt too long"), 400, "invalid_request"),
        (PromptError("missing prompt variable(s): name", "prompt_variables"), 400,
         "invalid_prompt"),
        (NotFoundException(), 404, "not_found"),
    ],
)
def test_status_and_code(exc: Exception, status: int, code: str) -> None:
    err = to_api_error(exc)
    assert (err.status, err.code) == (status, code)


def test_body_shape_and_retry_after() -> None:
    response = error_response(to_api_error(engine_errors.EngineOverloaded("kv", 2.2)))
    body = msgspec.json.decode(response.content)
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "3"


def test_unexpected_errors_leak_nothing() -> None:
    secret = "ten_other tenant's prompt: launch codes"
    for exc in (RuntimeError(secret), engine_errors.IsolationViolation("r", 3, b"a", b"b")):
        err = to_api_error(exc)
        assert err.status == 500 and secret not in err.message and "block" not in err.message
    assert outcome_of(engine_errors.IsolationViolation("r", 3, b"a", b"b")).outcome == (
        "isolation_violation")


def test_validation_message_names_the_field() -> None:
    exc = ValidationException(extra=[{"message": "Expected `int`, got `str`", "key": "n"}])
    err = to_api_error(exc)
    assert (err.status, err.param) == (400, "n") and "Expected" in err.message
