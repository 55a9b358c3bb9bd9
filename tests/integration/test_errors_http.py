"""Errors over HTTP: OpenAI-shaped bodies, the right statuses, nothing internal leaked."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.integration.conftest import ADMIN_TOKEN, Gateway

MSG = [{"role": "user", "content": "hi"}]


def _error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert "Traceback" not in r.text and "File \"" not in r.text
    assert r.headers["x-request-id"].startswith("req_")
    return body["error"]


def _post(gw: Gateway, key: str, body: object, path: str = "/v1/chat/completions",
          **kw: object) -> httpx.Response:
    return httpx.post(gw.base_url + path, json=body,
                      headers={"authorization": f"Bearer {key}"}, **kw)


def test_bad_missing_revoked_keys_are_401(gateway: Gateway) -> None:
    tid, key = gateway.tenant("auth-t")
    body = {"model": gateway.model, "messages": MSG, "max_tokens": 1}
    with pytest.raises(openai.AuthenticationError):
        gateway.client("pgk_key_0000000000000000_" + "x" * 43).chat.completions.create(**body)
    assert _error(httpx.post(gateway.base_url + "/v1/models"), 405)
    _error(httpx.get(gateway.base_url + "/v1/models"), 401)
    key_id = gateway.admin.get(f"/admin/tenants/{tid}/keys").json()["data"][0]["id"]
    assert gateway.admin.delete(f"/admin/tenants/{tid}/keys/{key_id}").status_code == 200
    err = _error(_post(gateway, key, body), 401)
    assert err["code"] == "revoked_api_key"


def test_suspended_tenant_and_wrong_scopes_are_403(gateway: Gateway) -> None:
    tid, key = gateway.tenant("suspend-t")
    client = gateway.client(key)
    client.models.list()
    r = gateway.admin.patch(f"/admin/tenants/{tid}", json={"status": "suspended"})
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    with pytest.raises(openai.PermissionDeniedError):
        client.models.list()
    gateway.admin.patch(f"/admin/tenants/{tid}", json={"status": "active"})
    client.models.list()
    # The scopes are separate: a tenant key on the admin API, the admin token on the tenant API.
    _error(httpx.get(gateway.base_url + "/admin/tenants",
                     headers={"authorization": f"Bearer {key}"}), 403)
    _error(_post(gateway, ADMIN_TOKEN, {"model": gateway.model, "messages": MSG}), 403)
    _error(httpx.get(gateway.base_url + "/admin/tenants",
                     headers={"authorization": "Bearer nope"}), 401)


@pytest.mark.parametrize(
    ("patch", "status", "param"),
    [
        ({"messages": []}, 400, "messages"),
        ({"max_tokens": 0}, 400, None),
        ({"max_tokens": 10**6}, 400, "max_tokens"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, None),
        ({"temperature": 7}, 400, None),
        ({"n": 99}, 400, "n"),
        ({"surprise": True}, 400, None),
        ({"model": "gpt-4"}, 404, "model"),
        ({"prompt_variant": {"name": "nope"}}, 404, None),
        ({"prompt_variables": {"a": "b"}}, 400, "prompt_variables"),
        ({"tools": [{"type": "function"}]}, 400, None),
    ],
)
def test_bad_input(gateway: Gateway, patch: dict[str, object], status: int,
                   param: str | None) -> None:
    _, key = gateway.tenant(f"bad-{abs(hash(str(patch))) % 10**8}")
    body = {"model": gateway.model, "messages": MSG, "max_tokens": 2, **patch}
    err = _error(_post(gateway, key, body), status)
    if param is not None:
        assert err["param"] == param


def test_prompt_too_long_and_invalid_utf8(gateway: Gateway) -> None:
    _, key = gateway.tenant("long-t")
    long_prompt = "word " * 20000
    err = _error(_post(gateway, key, {"model": gateway.model, "prompt": long_prompt},
                       "/v1/completions"), 400)
    assert err["code"] == "context_length_exceeded"
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    r = httpx.post(gateway.base_url + "/v1/chat/completions", content=raw,
                   headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    _error(r, 400)


def test_missing_variable_and_unknown_route(gateway: Gateway) -> None:
    tid, key = gateway.tenant("vars-t")
    gateway.admin.post(f"/admin/tenants/{tid}/prompts",
                       json={"name": "hello", "content": "Greet {{name}} warmly."})
    err = _error(_post(gateway, key, {"model": gateway.model, "messages": MSG,
                                      "prompt_variant": {"name": "hello"}}), 400)
    assert err["param"] == "prompt_variables"
    _error(httpx.get(gateway.base_url + "/v1/nothing-here"), 404)


def test_rate_limit_is_429_with_retry_after(gateway: Gateway) -> None:
    _, key = gateway.tenant("rate-t", quotas={"requests_per_min": 1})
    body = {"model": gateway.model, "messages": MSG, "max_tokens": 1}
    assert _post(gateway, key, body).status_code == 200
    r = _post(gateway, key, body)
    err = _error(r, 429)
    assert err["type"] == "rate_limit_error" and int(r.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError):
        gateway.client(key).chat.completions.create(**body)


def test_errors_never_name_another_tenant(gateway: Gateway) -> None:
    tid_a, _ = gateway.tenant("secretive-a")
    gateway.admin.post(f"/admin/tenants/{tid_a}/prompts",
                       json={"name": "hidden-plan", "content": "Top secret plan of A."})
    _, key_b = gateway.tenant("curious-b")
    r = _post(gateway, key_b, {"model": gateway.model, "messages": MSG,
                               "prompt_variant": {"name": "hidden-plan"}})
    _error(r, 404)
    assert tid_a not in r.text and "Top secret" not in r.text and "secretive" not in r.text
