"""The auth matrix over every route, revocation latency, brute-force limiting, edge headers."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from litestar.routes import HTTPRoute
from sqlalchemy import update

from bench.soak_gateway import ADMIN_TOKEN, InProcessGateway
from gateway.auth import AUTH_LIMITER_KEY, AuthFailureLimiter
from tenants.models import ApiKey
from tenants.models.base import utcnow
from tests.reliability.conftest import MSG

WRONG_KEY = "pgk_key_0123456789abcdef_" + "w" * 43


def _routes(gw: InProcessGateway) -> list[tuple[str, str]]:
    """(method, path template) of every routed operation except OPTIONS/HEAD."""
    out = []
    for route in gw.server.config.app.routes:  # type: ignore[union-attr]
        if isinstance(route, HTTPRoute):
            out += [(m, route.path) for m in route.methods if m not in ("OPTIONS", "HEAD")]
    return sorted(out)


def _fill(path: str, tenant_id: str) -> str:
    path = path.replace("{tenant_id:str}", tenant_id)
    path = re.sub(r"\{version:int\}", "1", path)
    return re.sub(r"\{[a-z_]+:str\}", "p", path)


def _call(gw: InProcessGateway, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    body = {"model": gw.model, "messages": MSG, "prompt": "hi", "max_tokens": 1, "name": "n",
            "content": "c"} if method in ("POST", "PATCH") else None
    return httpx.request(method, gw.base_url + path, json=body, headers=headers, timeout=30)


@pytest.fixture
def limiter(gw: InProcessGateway) -> Iterator[AuthFailureLimiter]:
    """A fresh brute-force limiter (5 failures per 2 s) for one test, then the original."""
    state = gw.server.config.app.state  # type: ignore[union-attr]
    original = state[AUTH_LIMITER_KEY]
    fresh = AuthFailureLimiter(max_failures=5, window_s=2.0)
    state[AUTH_LIMITER_KEY] = fresh
    try:
        yield fresh
    finally:
        state[AUTH_LIMITER_KEY] = original


def test_every_route_refuses_the_wrong_credentials(gw: InProcessGateway,
                                                   limiter: AuthFailureLimiter) -> None:
    tid, key = gw.tenant("matrix")
    routes = _routes(gw)
    admin = [(m, p) for m, p in routes if p.startswith("/admin")]
    tenant = [(m, p) for m, p in routes if p.startswith("/v1")]
    assert len(admin) >= 15 and len(tenant) == 3, routes
    unauthenticated = {p for _, p in routes if not p.startswith(("/admin", "/v1"))}
    assert all(p in ("/healthz", "/readyz", "/metrics") or p.startswith("/schema")
               for p in unauthenticated), unauthenticated
    for method, template in admin:
        path = _fill(template, tid)
        for token, status in ((key, 403), (None, 401), (WRONG_KEY, 401)):
            limiter._failures.clear()
            r = _call(gw, method, path, token)
            assert r.status_code == status, (method, path, token is None, r.text)
            assert r.json()["error"]["code"] in (
                "insufficient_scope", "missing_api_key", "invalid_admin_token")
    for method, template in tenant:
        for token, status in ((ADMIN_TOKEN, 403), (None, 401), (WRONG_KEY, 401)):
            limiter._failures.clear()
            r = _call(gw, method, template, token)
            assert r.status_code == status, (method, template, r.text)
    # Authentication comes before the body is looked at: no validation detail leaks to
    # a caller without a key.
    r = httpx.post(gw.base_url + "/v1/chat/completions", json={"bogus": 1})
    assert r.status_code == 401, r.text


def test_a_tenant_cannot_use_another_tenants_variant(gw: InProcessGateway) -> None:
    tid_a, key_a = gw.tenant("owner-a")
    _, key_b = gw.tenant("other-b")
    with gw.admin() as admin:
        assert admin.post(f"/admin/tenants/{tid_a}/prompts",
                          json={"name": "a-only", "content": "Private to A."}).status_code == 201
    body = {"model": gw.model, "messages": MSG, "max_tokens": 1,
            "prompt_variant": {"name": "a-only"}}
    url = gw.base_url + "/v1/chat/completions"
    assert httpx.post(url, json=body, headers={"authorization": f"Bearer {key_a}"},
                      timeout=30).status_code == 200
    r = httpx.post(url, json=body, headers={"authorization": f"Bearer {key_b}"}, timeout=30)
    assert r.status_code == 404 and tid_a not in r.text and "Private" not in r.text


def test_revoked_keys_fail_within_a_second(gw: InProcessGateway) -> None:
    tid, key = gw.tenant("revoke")
    url = gw.base_url + "/v1/models"
    headers = {"authorization": f"Bearer {key}"}
    with gw.admin() as admin:
        second = admin.post(f"/admin/tenants/{tid}/keys", json={}).json()
        assert httpx.get(url, headers=headers).status_code == 200
        first_id = next(k["id"] for k in admin.get(f"/admin/tenants/{tid}/keys").json()["data"]
                        if k["id"] != second["id"])
        assert admin.delete(f"/admin/tenants/{tid}/keys/{first_id}").status_code == 200
    r = httpx.get(url, headers=headers)  # through this gateway: refused at once
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"

    # Revoked by another process (a direct write to the registry): refused within the TTL.
    headers = {"authorization": f"Bearer {second['key']}"}
    assert httpx.get(url, headers=headers).status_code == 200
    with gw.runtime.db.session() as session:
        session.execute(update(ApiKey).where(ApiKey.id == second["id"])
                        .values(revoked_at=utcnow()))
    revoked_at = time.monotonic()
    while httpx.get(url, headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at < 1.2, "a revoked key still works after 1 s"
        time.sleep(0.02)
    assert time.monotonic() - revoked_at <= 1.2


def test_brute_force_is_limited_per_source_without_an_oracle(
    gw: InProcessGateway, limiter: AuthFailureLimiter
) -> None:
    _, key = gw.tenant("brute")
    url = gw.base_url + "/v1/models"
    for i in range(limiter.max_failures):
        r = httpx.get(url, headers={"authorization": f"Bearer pgk_key_{i:016x}_" + "g" * 43})
        assert r.status_code == 401
    blocked = [httpx.get(url, headers={"authorization": f"Bearer {token}"})
               for token in (WRONG_KEY, key)]
    blocked.append(httpx.get(gw.base_url + "/admin/tenants",
                             headers={"authorization": f"Bearer {ADMIN_TOKEN}"}))
    for r in blocked:  # a right and a wrong credential get the same answer while blocked
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "too_many_auth_failures"
        assert 1 <= int(r.headers["retry-after"]) <= 2
    assert len({r.content for r in blocked}) == 1

    # Another source address is not affected.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as other:
        assert other.get(url, headers={"authorization": f"Bearer {key}"}).status_code == 200
    time.sleep(limiter.window_s)
    assert httpx.get(url, headers={"authorization": f"Bearer {key}"}).status_code == 200


def test_secrets_never_reach_the_logs(gw: InProcessGateway, caplog: pytest.LogCaptureFixture,
                                      limiter: AuthFailureLimiter) -> None:
    caplog.set_level(logging.DEBUG)
    _, key = gw.tenant("quiet")
    headers = {"authorization": f"Bearer {key}"}
    httpx.post(gw.base_url + "/v1/chat/completions", headers=headers, timeout=30,
               json={"model": gw.model, "messages": MSG, "max_tokens": 1})
    httpx.post(gw.base_url + "/v1/chat/completions", headers=headers, content=b"[" * 50_000)
    httpx.get(gw.base_url + "/admin/tenants", headers=headers)
    httpx.get(gw.base_url + "/v1/models", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    httpx.get(gw.base_url + "/v1/models", headers={"authorization": f"Bearer {key}x"})
    text = caplog.text
    for secret in (key, key[-24:], ADMIN_TOKEN, ADMIN_TOKEN[-16:]):
        assert secret not in text


def test_edge_headers_cors_and_compression(gw: InProcessGateway) -> None:
    _, key = gw.tenant("edge")
    origin = {"origin": "https://evil.example"}
    responses = [
        httpx.get(gw.base_url + "/v1/models", headers={"authorization": f"Bearer {key}",
                                                       **origin, "accept-encoding": "gzip"}),
        httpx.get(gw.base_url + "/v1/models", headers=origin),
        httpx.get(gw.base_url + "/nowhere"),
        httpx.options(gw.base_url + "/v1/chat/completions",
                      headers={**origin, "access-control-request-method": "POST",
                               "access-control-request-headers": "authorization"}),
    ]
    assert [r.status_code for r in responses[:3]] == [200, 401, 404]
    for r in responses:
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert r.headers["cache-control"] == "no-store"
        assert not any(h.startswith("access-control-") for h in r.headers)
    assert "content-encoding" not in responses[0].headers
    schema = httpx.get(gw.base_url + "/schema/openapi.json")
    assert schema.status_code == 200 and "content-security-policy" not in schema.headers
