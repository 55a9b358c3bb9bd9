"""A real gateway whose in-process `Runtime` and database the audit tests can reach.

Same server as tests/integration/conftest.py (tiny model, migrated SQLite, uvicorn thread),
but the caller keeps the thread, the settings and the app's Runtime: to corrupt the engine's
cache as an attacker inside the process would, to tamper with the database, and to wait for
the shutdown that signs the audit head.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from engine.async_engine import AsyncEngine
from gateway.app import create_app, engine_config
from gateway.runtime import STATE_KEY, Runtime
from gateway.settings import Settings
from tenants.migrate import upgrade
from tests.integration.conftest import ADMIN_TOKEN, Gateway, free_port


@dataclass(frozen=True, slots=True)
class AuditedGateway:
    gw: Gateway
    runtime: Runtime
    settings: Settings

    def post(self, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
        """A tenant call over HTTP (httpx, so the x-request-id header is at hand)."""
        return httpx.post(self.gw.base_url + path, json=body, timeout=60,
                          headers={"authorization": f"Bearer {key}"})

    def audit(self, request_id: str) -> dict[str, Any]:
        """The one audit record of `request_id`, read back through the admin API."""
        r = self.gw.admin.get("/admin/audit", params={"request_id": request_id})
        assert r.status_code == 200, r.text
        (record,) = r.json()["data"]
        return dict(record)


@contextmanager
def running_gateway(data_dir: Path, model_dir: Path, **overrides: Any) -> Iterator[AuditedGateway]:
    """Serve until the block exits, then shut down fully (engine drained, audit head signed)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    values: dict[str, Any] = {"port": free_port(), "data_dir": data_dir, "model_dir": model_dir,
                              "device": "cpu", "kv_gib": 0.02, "admin_token": ADMIN_TOKEN,
                              "max_num_seqs": 8, "default_max_tokens": 8, **overrides}
    settings = Settings(**values)
    upgrade(settings.resolved_db_url)
    engine = AsyncEngine.load(engine_config(settings, progress=False))
    app = create_app(settings, engine)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="audited-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    base = f"http://{settings.host}:{settings.port}"
    admin = httpx.Client(base_url=base, headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=60)
    try:
        yield AuditedGateway(Gateway(base, admin, engine.model_id), app.state[STATE_KEY],
                             settings)
    finally:
        admin.close()
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the gateway did not shut down"
