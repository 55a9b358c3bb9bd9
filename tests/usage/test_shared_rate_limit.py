"""Two gateway processes share one tenant's rate limit through Redis; the database store keeps
one bucket for several independent connections (as replicas would hold)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gateway.errors import ApiError
from gateway.services.rate_limit import RateLimiter
from gateway.services.rate_stores import SqlRateStore
from tenants.database import Database
from tenants.migrate import upgrade
from tests.integration.conftest import ADMIN_TOKEN, free_port
from tests.tenants.db_urls import BACKENDS, empty_database

REDIS_URL = os.environ.get("PREFIXGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIXGATE = str(Path(sys.executable).with_name("prefixgate"))


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@contextmanager
def replicas(env: dict[str, str], n: int) -> Iterator[list[str]]:
    """`n` `prefixgate serve` processes started side by side; their base URLs once healthy."""
    ports = [free_port() for _ in range(n)]
    procs = [subprocess.Popen([PREFIXGATE, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 120
        for proc, base in zip(procs, bases, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "exited")
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "replica did not start"
                time.sleep(0.2)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_two_replicas_share_one_limit(tmp_path: Path, tiny_model_dir: Path) -> None:
    if not _redis_up():
        pytest.skip(f"no Redis at {REDIS_URL}")
    store = "redis"
    db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade(db_url)
    signing_key = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFIXGATE_DB": db_url,
           "PREFIXGATE_DATA_DIR": str(tmp_path), "PREFIXGATE_MODEL": str(tiny_model_dir),
           "PREFIXGATE_DEVICE": "cpu", "PREFIXGATE_KV_GIB": "0.02",
           "PREFIXGATE_ADMIN_TOKEN": ADMIN_TOKEN, "PREFIXGATE_RATE_LIMIT_STORE": store,
           "PREFIXGATE_REDIS_URL": REDIS_URL, "PREFIXGATE_AUDIT_SIGNING_KEY": signing_key}
    with replicas(env, 2) as (a, b):
        admin = httpx.Client(base_url=a, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        tenant = admin.post("/admin/tenants", json={"name": f"shared-{store}",
                                                    "quotas": {"requests_per_min": 5}})
        assert tenant.status_code == 201, tenant.text
        tid = tenant.json()["id"]
        key = admin.post(f"/admin/tenants/{tid}/keys", json={}).json()["key"]
        auth = {"authorization": f"Bearer {key}"}
        model = httpx.get(a + "/v1/models", headers=auth).json()["data"][0]["id"]
        statuses: dict[str, list[int]] = {a: [], b: []}
        started = time.monotonic()
        for i in range(10):
            base = a if i % 2 == 0 else b
            r = httpx.post(base + "/v1/completions", timeout=60,
                           headers={"authorization": f"Bearer {key}"},
                           json={"model": model, "prompt": "hi", "max_tokens": 1})
            assert r.status_code in (200, 429), r.text
            statuses[base].append(r.status_code)
        admitted = sum(s.count(200) for s in statuses.values())
        # One bucket for both replicas (each alone would admit 5 of its 5); a slow box may see
        # the bucket refill at 5/min while the ten requests run.
        refilled = int((time.monotonic() - started) * 5 / 60)
        assert 5 <= admitted <= 5 + refilled < 10
        assert all(s.count(200) for s in statuses.values())  # both served some
        admin.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_database_store_is_one_bucket_for_every_connection(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        upgrade(url)
        dbs = [Database.from_url(url) for _ in range(2)]  # two replicas' engines
        try:
            limiters = [RateLimiter(store=SqlRateStore(db)) for db in dbs]
            admitted = refused = 0
            gate = threading.Barrier(20)

            def one(i: int) -> None:
                nonlocal admitted, refused
                gate.wait()
                try:
                    limiters[i % 2].acquire("ten_shared", 7, 700, 100)
                    admitted += 1
                except ApiError as exc:
                    assert exc.status == 429
                    refused += 1

            threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert (admitted, refused) == (7, 13)
            limiters[0].refund("ten_shared", 700, 100)  # a refund serves the other replica
            with pytest.raises(ApiError):  # requests/min is still spent
                limiters[1].acquire("ten_shared", 7, 700, 100)
            limiters[1].acquire("ten_shared", None, 700, 100)
            limiters[1].forget("ten_shared")
            limiters[0].acquire("ten_shared", 7, 700, 700)
        finally:
            for db in dbs:
                db.dispose()
