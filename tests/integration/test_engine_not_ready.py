"""A gateway whose engine has stopped answers 503 (with Retry-After), and /readyz says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from engine.async_engine import AsyncEngine
from gateway.app import engine_config
from gateway.settings import Settings
from tenants.migrate import upgrade
from tests.integration.conftest import ADMIN_TOKEN, free_port, start_server


def test_stopped_engine_is_503(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = Settings(port=free_port(), data_dir=tmp_path, model_dir=tiny_model_dir,
                        device="cpu", kv_gib=0.01, admin_token=ADMIN_TOKEN)
    upgrade(settings.resolved_db_url)
    engine = AsyncEngine.load(engine_config(settings, progress=False))
    server = start_server(settings, engine)
    base = f"http://{settings.host}:{settings.port}"
    try:
        assert httpx.get(base + "/readyz").status_code == 200
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        tid = httpx.post(base + "/admin/tenants", json={"name": "t"}, headers=admin).json()["id"]
        key = httpx.post(f"{base}/admin/tenants/{tid}/keys", headers=admin).json()["key"]
        loop = server.servers[0].get_loop()
        asyncio.run_coroutine_threadsafe(engine.stop(), loop).result(timeout=30)
        assert httpx.get(base + "/readyz").status_code == 503
        r = httpx.post(base + "/v1/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": engine.model_id, "prompt": "hi", "max_tokens": 1})
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_not_ready"
        assert int(r.headers["retry-after"]) >= 1
        audit = httpx.get(base + "/admin/audit", params={"tenant_id": tid}, headers=admin)
        assert [rec["outcome"] for rec in audit.json()["data"]] == ["error"]
    finally:
        server.should_exit = True
