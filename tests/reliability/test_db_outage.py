"""The registry database goes away and comes back: 503 with a clear message, then recovery.

The outage is a SQLite file whose directory vanishes and whose pooled connections are
dropped (what a restarted database server does to a pool): every new connection fails with
"unable to open database file", as a refused PostgreSQL connection fails for `psycopg`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.soak_gateway import InProcessGateway
from tests.reliability.conftest import MSG


@pytest.fixture
def db_gw(tmp_path: Path, tiny_model_dir: Path) -> Iterator[InProcessGateway]:
    url = f"sqlite:///{tmp_path / 'db' / 'prefixgate.db'}"
    with InProcessGateway(tmp_path, tiny_model_dir, db_url=url,
                          auth_cache_ttl_s=60.0) as gateway:
        yield gateway


def _assert_503(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["type"] == "service_unavailable_error"
    assert error["message"] == "The database is unavailable; retry later."
    assert int(r.headers["retry-after"]) >= 1
    assert "sqlite" not in r.text.lower() and "Traceback" not in r.text


def test_database_outage_is_503_and_recovers(db_gw: InProcessGateway, tmp_path: Path) -> None:
    tid, warm_key = db_gw.tenant("outage")
    chat = {"model": db_gw.model, "messages": MSG, "max_tokens": 2}
    url = db_gw.base_url + "/v1/chat/completions"
    warm = {"authorization": f"Bearer {warm_key}"}
    with db_gw.admin() as admin:
        cold_key = admin.post(f"/admin/tenants/{tid}/keys", json={}).json()["key"]
        assert httpx.post(url, json=chat, headers=warm, timeout=30).status_code == 200

        (tmp_path / "db").rename(tmp_path / "db.away")
        db_gw.runtime.db.engine.dispose()
        started = time.monotonic()
        _assert_503(admin.get("/admin/tenants"))
        _assert_503(admin.post("/admin/tenants", json={"name": "during-outage"}))
        # A key never seen before cannot be looked up; a cached one gets as far as the audit
        # write, which must commit before the answer: 503 too, and in-band for a stream.
        _assert_503(httpx.get(db_gw.base_url + "/v1/models",
                              headers={"authorization": f"Bearer {cold_key}"}))
        _assert_503(httpx.post(url, json=chat, headers=warm, timeout=30))
        with httpx.stream("POST", url, json={**chat, "stream": True}, headers=warm,
                          timeout=30) as r:
            assert r.status_code == 200
            frames = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert frames[-1] != "data: [DONE]"
        assert json.loads(frames[-1].removeprefix("data: "))["error"]["code"] == (
            "database_unavailable")
        assert time.monotonic() - started < 5, "an outage must be answered at once, not hang"
        assert httpx.get(db_gw.base_url + "/healthz").status_code == 200
        assert db_gw.alive()

        (tmp_path / "db.away").rename(tmp_path / "db")
        assert admin.get("/admin/tenants").status_code == 200
        r = httpx.post(url, json=chat, headers={"authorization": f"Bearer {cold_key}"},
                       timeout=30)
        assert r.status_code == 200, r.text
        request_id = r.headers["x-request-id"]
        records = admin.get("/admin/audit", params={"request_id": request_id}).json()["data"]
        assert [rec["outcome"] for rec in records] == ["ok"]
    db_gw.wait_idle()
    db_gw.engine.core.check_accounting()
