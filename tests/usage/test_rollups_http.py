"""Usage over HTTP: response extension fields, the usage endpoint, and rollups that equal a
recomputation from the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import openai
import pytest

from tenants.database import Database
from tenants.usage import AUDITED, recompute_from_audit
from tests.usage.conftest import Gateway, UsageGateway

PROMPT = "You are a careful assistant. " * 6


def test_usage_fields_endpoint_and_audit_recomputation(usage_gateway: UsageGateway) -> None:
    gateway = usage_gateway.gw
    tid, key = gateway.tenant("usage-roll")
    r = gateway.admin.post(f"/admin/tenants/{tid}/prompts",
                           json={"name": "helper", "content": PROMPT})
    assert r.status_code == 201, r.text
    client = gateway.client(key)
    writes = reads = 0
    for i in range(3):
        chat = client.chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": f"hello {i}"}],
            max_tokens=4, extra_body={"prompt_variant": {"name": "helper"}},
        )
        usage = chat.usage
        assert usage is not None
        extra = usage.model_extra or {}
        assert extra["cache_read_input_tokens"] == usage.prompt_tokens_details.cached_tokens
        writes += extra["cache_creation_input_tokens"]
        reads += extra["cache_read_input_tokens"]
    done = client.completions.create(model=gateway.model, prompt="plain text " * 5, max_tokens=3)
    assert done.usage is not None
    writes += (done.usage.model_extra or {})["cache_creation_input_tokens"]
    with pytest.raises(openai.NotFoundError):  # rejected after auth: audited, counted
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    assert writes > 0 and reads > 0  # the variant's prefix was written once, then read

    today = datetime.now(UTC).date().isoformat()
    by_day = _usage(gateway, tid, "day")
    assert [row["period"] for row in by_day] == [today]
    assert set(by_day[0]) == {"period", "requests", "prompt_tokens", "cached_tokens",
                              "cache_write_tokens", "completion_tokens"}
    assert by_day[0]["requests"] == 5
    assert by_day[0]["cache_write_tokens"] == writes
    assert by_day[0]["cached_tokens"] == reads

    db = Database.from_url(usage_gateway.db_url)
    try:
        day = datetime.now(UTC).date()
        for group_by in ("day", "key", "variant"):
            rolled = {row["period"]: row for row in _usage(gateway, tid, group_by)}
            audited = {r.period: r for r in recompute_from_audit(db, tid, day, day, group_by)}
            assert rolled.keys() == audited.keys()
            for period, row in rolled.items():
                for name in AUDITED:
                    if name in row:
                        assert row[name] == getattr(audited[period], name), (group_by, name)
        variants = {row["period"] for row in _usage(gateway, tid, "variant")}
        assert variants == {"helper@1", "(none)"}
    finally:
        db.dispose()


def test_usage_endpoint_validates_and_is_admin_only(usage_gateway: UsageGateway) -> None:
    gateway = usage_gateway.gw
    tid, _ = gateway.tenant("usage-guard")
    r = httpx.get(f"{gateway.base_url}/admin/tenants/{tid}/usage")
    assert r.status_code == 401
    r = gateway.admin.get(f"/admin/tenants/{tid}/usage", params={"group_by": "week"})
    assert r.status_code == 400
    r = gateway.admin.get(f"/admin/tenants/{tid}/usage",
                          params={"from": "2026-01-02", "to": "2026-01-01"})
    assert r.status_code == 422
    assert _usage(gateway, tid, "day") == []


def _usage(gateway: Gateway, tid: str, group_by: str) -> list[dict[str, object]]:
    r = gateway.admin.get(f"/admin/tenants/{tid}/usage", params={"group_by": group_by})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])
