"""A whole gateway in this process (uvicorn in a thread), with its engine within reach.

Used by the soak (bench/soak.py) and the reliability suite: both need real HTTP and, at the
end, the engine itself (`engine.core.check_accounting()`). Tiny local model, SQLite under
the given directory, a deliberately small engine so that a few dozen clients overload it.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from engine.async_engine import AsyncEngine
from engine.tiny_model import write_tiny_model
from gateway.app import create_app, engine_config
from gateway.runtime import STATE_KEY, Runtime
from gateway.settings import Settings
from tenants.migrate import upgrade

ADMIN_TOKEN = "pga_reliability-admin-token-4f9c2a7e1b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InProcessGateway:
    """`create_app` served on a free loopback port; a context manager that stops it."""

    def __init__(self, data_dir: Path, model_dir: Path | None = None, **overrides: Any) -> None:
        if model_dir is None:
            model_dir = data_dir / "model"
            if not (model_dir / "config.json").exists():
                write_tiny_model(model_dir)
        fields: dict[str, Any] = {
            "port": free_port(), "data_dir": data_dir, "model_dir": model_dir,
            "device": "cpu", "kv_gib": 0.02, "admin_token": ADMIN_TOKEN, "max_num_seqs": 4,
            "max_queue": 8, "queue_timeout_s": 10.0, "default_max_tokens": 8, **overrides,
        }
        self.settings = Settings(**fields)
        upgrade(self.settings.resolved_db_url)
        engine = AsyncEngine.load(engine_config(self.settings, progress=False))
        self.model = engine.model_id
        self.base_url = f"http://{self.settings.host}:{self.settings.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(self.settings, engine), host=self.settings.host,
            port=self.settings.port, log_level="warning",
        ))
        self._thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)

    def __enter__(self) -> InProcessGateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def runtime(self) -> Runtime:
        runtime = self.server.config.app.state[STATE_KEY]  # type: ignore[union-attr]
        assert isinstance(runtime, Runtime)
        return runtime

    @property
    def engine(self) -> AsyncEngine:
        return self.runtime.engine

    def alive(self) -> bool:
        """The server thread and the engine's step loop are both still running."""
        return self._thread.is_alive() and self.engine.ready

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30,
                            headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    def tenant(self, name: str, **body: object) -> tuple[str, str]:
        """Create a tenant and one key: (tenant id, key secret)."""
        with self.admin() as admin:
            r = admin.post("/admin/tenants", json={"name": name, **body})
            assert r.status_code == 201, r.text
            tid = r.json()["id"]
            k = admin.post(f"/admin/tenants/{tid}/keys", json={"name": "rel"})
            assert k.status_code == 201, k.text
            return tid, k.json()["key"]

    def tenant_key(self, name: str) -> str:
        return self.tenant(name)[1]

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until the engine holds no running or waiting request."""
        deadline = time.monotonic() + timeout_s
        while self.engine.core.has_work() or self.engine.stats().running:
            if time.monotonic() > deadline:
                raise TimeoutError("the engine did not go idle")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=60)
