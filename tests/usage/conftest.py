"""A real gateway (tiny model, SQLite) for the usage tests, built as the integration tests do,
plus the URL of its database (the tests read rollups and audit records directly)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.async_engine import AsyncEngine
from gateway.app import engine_config
from gateway.settings import Settings
from tenants.migrate import upgrade
from tests.integration.conftest import (
    ADMIN_TOKEN,
    Gateway,
    free_port,
    start_server,
    tiny_model_dir,
)

__all__ = ["ADMIN_TOKEN", "Gateway", "UsageGateway", "tiny_model_dir", "usage_gateway"]


@dataclass(frozen=True, slots=True)
class UsageGateway:
    gw: Gateway
    db_url: str


@pytest.fixture(scope="session")
def usage_gateway(tmp_path_factory: pytest.TempPathFactory,
                  tiny_model_dir: Path) -> Iterator[UsageGateway]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = Settings(
        port=free_port(), data_dir=tmp_path_factory.mktemp("usage-gw"),
        model_dir=tiny_model_dir, device="cpu", kv_gib=0.02, admin_token=ADMIN_TOKEN,
        max_num_seqs=8, default_max_tokens=8, auth_cache_ttl_s=0.0,
    )
    upgrade(settings.resolved_db_url)
    engine = AsyncEngine.load(engine_config(settings, progress=False))
    server = start_server(settings, engine)
    base = f"http://{settings.host}:{settings.port}"
    admin = httpx.Client(base_url=base, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        yield UsageGateway(Gateway(base, admin, engine.model_id), settings.resolved_db_url)
    finally:
        admin.close()
        server.should_exit = True
