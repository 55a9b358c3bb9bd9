"""A real gateway on loopback for the integration tests: tiny model, SQLite, uvicorn thread.

Nothing is faked: the tiny checkpoint is written by the engine's init-tiny writer, the
database is migrated with Alembic, the engine runs its step loop, and the tests talk HTTP
with the official `openai` client and httpx.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from engine.async_engine import AsyncEngine
from engine.tiny_model import write_tiny_model
from gateway.app import create_app, engine_config
from gateway.settings import Settings
from tenants.migrate import upgrade

ADMIN_TOKEN = "pga_integration-test-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Gateway:
    base_url: str
    admin: httpx.Client
    model: str

    def tenant(self, name: str, **body: object) -> tuple[str, str]:
        """Create a tenant and one key; (tenant id, key secret)."""
        r = self.admin.post("/admin/tenants", json={"name": name, **body})
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        k = self.admin.post(f"/admin/tenants/{tid}/keys", json={"name": "test"})
        assert k.status_code == 201, k.text
        return tid, k.json()["key"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=key, max_retries=0)


def start_server(settings: Settings, engine: AsyncEngine | None = None) -> uvicorn.Server:
    app = create_app(settings, engine)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="gateway-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    return server


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    write_tiny_model(path)
    return path


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Gateway]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = tmp_path_factory.mktemp("gateway-data")
    settings = Settings(
        port=free_port(), data_dir=data, model_dir=tiny_model_dir, device="cpu", kv_gib=0.02,
        admin_token=ADMIN_TOKEN, max_num_seqs=8, default_max_tokens=8,
    )
    upgrade(settings.resolved_db_url)
    engine = AsyncEngine.load(engine_config(settings, progress=False))
    server = start_server(settings, engine)
    base = f"http://{settings.host}:{settings.port}"
    admin = httpx.Client(base_url=base, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        yield Gateway(base, admin, engine.model_id)
    finally:
        admin.close()
        server.should_exit = True
