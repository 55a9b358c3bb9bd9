"""Hand-written hostile input: each a clear, OpenAI-shaped 4xx; never a 5xx, never a hang."""

from __future__ import annotations

import json

import httpx
import pytest

from bench.soak_gateway import ADMIN_TOKEN, InProcessGateway
from tests.reliability.conftest import MSG


@pytest.fixture(scope="module")
def key(gw: InProcessGateway) -> str:
    return gw.tenant_key("bad-input")


def _error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text[:300]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert r.headers["x-request-id"].startswith("req_")
    return body["error"]


def _post(gw: InProcessGateway, token: str, content: bytes,
          path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(gw.base_url + path, content=content, timeout=30,
                      headers={"authorization": f"Bearer {token}",
                               "content-type": "application/json"})


def _chat(gw: InProcessGateway, key: str, **patch: object) -> httpx.Response:
    body = {"model": gw.model, "messages": MSG, "max_tokens": 2, **patch}
    return _post(gw, key, json.dumps(body).encode())


def test_ten_megabyte_body_is_413(gw: InProcessGateway, key: str) -> None:
    big = b'{"model": "' + b"a" * 10_000_000 + b'", "messages": []}'
    err = _error(_post(gw, key, big), 413)
    assert err["code"] == "request_too_large"
    chunks = (b"x" * 65536 for _ in range(160))  # no Content-Length: counted while streaming
    r = httpx.post(gw.base_url + "/v1/chat/completions", content=chunks, timeout=30,
                   headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    _error(r, 413)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
        (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, "invalid_json"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
        (b'{"model": "m\x00", "messages": []}', None),
        (b"", None),
        (b"null", None),
        (b'{"model": "m", "messages": [], "max_tokens": ' + b"9" * 5000 + b"}", None),
        (b'{"model": "m", "messages": [], "top_p": NaN}', None),
    ],
    ids=["nested-arrays", "nested-objects", "invalid-utf8", "nul-byte", "empty", "null",
         "5000-digit-number", "nan"],
)
def test_malformed_bodies_are_400(gw: InProcessGateway, key: str, raw: bytes,
                                  code: str | None) -> None:
    err = _error(_post(gw, key, raw), 400)
    if code is not None:
        assert err["code"] == code


@pytest.mark.parametrize(
    ("patch", "status", "param"),
    [
        ({"max_tokens": -1}, 400, "max_tokens"),
        ({"max_tokens": 10**30}, 400, "max_tokens"),
        ({"temperature": -1}, 400, "temperature"),
        ({"temperature": 1e308}, 400, "temperature"),
        ({"top_p": -5}, 400, "top_p"),
        ({"n": -1}, 400, "n"),
        ({"n": 1000}, 400, "n"),
        ({"seed": 2**70}, 400, "seed"),
        ({"seed": -(2**70)}, 400, "seed"),
        ({"stop": ["x"] * 1000}, 400, "stop"),
        ({"model": "gpt-4-unknown"}, 404, "model"),
        ({"messages": [{"role": "user", "content": "word " * 20_000}]}, 400, None),
        ({"messages": [{"role": "user", "content": "hi"}] * 5000}, 400, None),
    ],
    ids=["neg-max-tokens", "huge-max-tokens", "neg-temperature", "huge-temperature",
         "neg-top-p", "neg-n", "n-1000", "huge-seed", "neg-huge-seed", "stop-1000",
         "unknown-model", "prompt-over-context", "5000-messages"],
)
def test_bad_values_are_clear_4xx(gw: InProcessGateway, key: str, patch: dict[str, object],
                                  status: int, param: str | None) -> None:
    err = _error(_chat(gw, key, **patch), status)
    assert err["message"]
    if param is not None:
        assert err["param"] == param


def test_nul_in_text_is_served_or_refused_never_5xx(gw: InProcessGateway, key: str) -> None:
    """An escaped NUL is valid JSON text: it is tokenized like any character."""
    r = _chat(gw, key, messages=[{"role": "user", "content": "a\u0000b"}])
    assert r.status_code in (200, 400), r.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/admin/tenants", {"name": "x" * 10_000}),
        ("POST", "/admin/tenants", {"name": "ok-1", "quotas": {"requests_per_min": -1}}),
        ("POST", "/admin/tenants", {"name": "ok-2", "quotas": {"requests_per_min": 10**30}}),
        ("POST", "/admin/tenants", {"name": "ok-3", "quotas": {"tokens_per_min": 2**40}}),
        ("POST", "/admin/tenants", {"name": "\u0000"}),
        ("POST", "/admin/tenants", {"name": "ok-4", "cache_policy": "everyone"}),
        ("GET", "/admin/audit?limit=-1", None),
        ("GET", "/admin/audit?limit=99999999999999999999999", None),
        ("GET", "/admin/audit?since=yesterday", None),
        ("GET", "/admin/tenants/" + "x" * 5000, None),
        ("GET", "/admin/tenants/%00", None),
        ("DELETE", "/admin/tenants/t/prompts/p/versions/99999999999999999999", None),
        ("DELETE", "/admin/tenants/t/prompts/p/versions/-3", None),
    ],
)
def test_bad_admin_input_is_4xx(gw: InProcessGateway, method: str, path: str,
                                body: object) -> None:
    r = httpx.request(method, gw.base_url + path, json=body, timeout=30,
                      headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert 400 <= r.status_code < 500, r.text[:300]
    _error(r, r.status_code)
