"""`prefixgate serve` as an operator runs it: kill -9 loses nothing acknowledged, SIGTERM drains.

One scenario, because each start of the process costs seconds (torch import, model load):
load, kill -9, restart on the same data directory and check everything acknowledged is
there; then streams in flight, SIGTERM, exit 0 with every stream finished and audited; then
`prefixgate audit verify` over the whole chain. Everything the process printed (uvicorn's
access log included, at log level info) is grepped for the admin token and the keys.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.soak_gateway import ADMIN_TOKEN
from tenants.audit import AuditStore
from tenants.database import Database
from tests.reliability.conftest import MSG, ServeProcess, serve


def _tenant(sp: ServeProcess, name: str) -> tuple[str, str]:
    with sp.admin() as admin:
        tid = admin.post("/admin/tenants", json={"name": name}).json()["id"]
        key = admin.post(f"/admin/tenants/{tid}/keys", json={"name": "k"}).json()["key"]
    return tid, key


def _model(sp: ServeProcess, key: str) -> str:
    r = httpx.get(sp.base_url + "/v1/models", headers={"authorization": f"Bearer {key}"})
    return str(r.json()["data"][0]["id"])


def _assert_no_secrets(log: str, *secrets: str) -> None:
    assert "GET /readyz" in log or "POST /v1" in log  # the access log was captured
    for secret in secrets:
        assert secret not in log
        assert secret[-24:] not in log  # nor the tail of the secret on its own


def test_kill_9_restart_then_sigterm_drain(tmp_path: Path, tiny_model_dir: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    tid, keys, acknowledged = _crash_under_load(data, tiny_model_dir, log)
    sp = serve(data, tiny_model_dir, log)  # restart on the same data directory
    try:
        _check_survivors(sp, tid, keys, acknowledged)
        drained = _drain_on_sigterm(sp, keys[0])
    finally:
        if sp.proc.poll() is None:
            sp.proc.kill()
    _check_audited(data, tid, drained)
    cli = subprocess.run(
        [sys.executable, "-c", "from gateway.cli.main import main; main()", "audit", "verify",
         "--db", f"sqlite:///{data / 'prefixgate.db'}",
         "--key-file", str(data / "audit_signing_key.pem")],
        capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    report = json.loads(cli.stdout)
    assert report["ok"] is True and report["records"] >= len(acknowledged) + len(drained)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    _assert_no_secrets(text, ADMIN_TOKEN, *keys)


def _crash_under_load(data: Path, model_dir: Path,
                      log: Path) -> tuple[str, list[str], list[str]]:
    """Tenant, two keys, a prompt variant; 4 clients of load; kill -9 after 20 answers."""
    sp = serve(data, model_dir, log)
    try:
        tid, key = _tenant(sp, "durable")
        with sp.admin() as admin:
            prompt = admin.post(f"/admin/tenants/{tid}/prompts",
                                json={"name": "support", "content": "You help with {{topic}}."})
            assert prompt.status_code == 201, prompt.text
            second = admin.post(f"/admin/tenants/{tid}/keys", json={"name": "k2"}).json()["key"]
        model = _model(sp, key)
        acknowledged: list[str] = []
        stop = threading.Event()

        def load() -> None:
            body = {"model": model, "messages": MSG, "max_tokens": 4,
                    "prompt_variant": {"name": "support"},
                    "prompt_variables": {"topic": "billing"}}
            with httpx.Client(base_url=sp.base_url, timeout=30,
                              headers={"authorization": f"Bearer {key}"}) as client:
                while not stop.is_set():
                    try:
                        r = client.post("/v1/chat/completions", json=body)
                    except httpx.TransportError:
                        return  # the server died under us
                    if r.status_code == 200:
                        acknowledged.append(r.headers["x-request-id"])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        sp.proc.send_signal(signal.SIGKILL)
        assert sp.proc.wait(timeout=30) == -signal.SIGKILL
        stop.set()
        for w in workers:
            w.join(timeout=30)
    finally:
        if sp.proc.poll() is None:
            sp.proc.kill()
    assert len(acknowledged) >= 20
    return tid, [key, second], acknowledged


def _check_survivors(sp: ServeProcess, tid: str, keys: list[str],
                     acknowledged: list[str]) -> None:
    """Tenants, keys, variants and every acknowledged audit record outlived the kill."""
    with sp.admin() as admin:
        assert [t["id"] for t in admin.get("/admin/tenants").json()["data"]] == [tid]
        assert len(admin.get(f"/admin/tenants/{tid}/keys").json()["data"]) == 2
        prompts = admin.get(f"/admin/tenants/{tid}/prompts").json()["data"]
        assert [(p["name"], p["version"]) for p in prompts] == [("support", 1)]
        records = admin.get("/admin/audit", params={"tenant_id": tid, "limit": 1000})
        stored = {r["request_id"] for r in records.json()["data"]}
        assert set(acknowledged) <= stored
        verify = admin.get("/admin/audit/verify")
        assert verify.status_code == 200 and verify.json()["ok"] is True, verify.text
    for key in keys:  # both keys still work after the restart
        r = httpx.get(sp.base_url + "/v1/models", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200


def _drain_on_sigterm(sp: ServeProcess, key: str) -> list[str]:
    """Three streams in flight, then SIGTERM: each runs to [DONE], the process exits 0."""
    bad = httpx.get(sp.base_url + "/v1/models",
                    headers={"authorization": "Bearer pgk_nokey_" + "s" * 40})
    assert bad.status_code == 401
    model = _model(sp, key)
    started = threading.Barrier(4, timeout=60)
    results: dict[str, bytes] = {}

    def stream() -> None:
        body = {"model": model, "messages": MSG, "max_tokens": 96, "temperature": 0,
                "stream": True}
        try:
            with httpx.stream("POST", sp.base_url + "/v1/chat/completions", json=body,
                              headers={"authorization": f"Bearer {key}"}, timeout=60) as r:
                assert r.status_code == 200
                chunks = r.iter_bytes()
                first = next(chunks)
                started.wait()
                results[r.headers["x-request-id"]] = first + b"".join(chunks)
        finally:
            started.abort()  # no-op once passed; frees the others if this one failed

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait()
    sp.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert sp.proc.wait(timeout=60) == 0, sp.log()
    assert "Shutting down" in sp.log()
    # Every in-flight stream ran to its end: the drain waited for it.
    assert len(results) == 3
    assert all(body.endswith(b"data: [DONE]\n\n") for body in results.values())
    return list(results)


def _check_audited(data: Path, tid: str, request_ids: list[str]) -> None:
    """Each drained stream's audit record was committed before the process exited."""
    db = Database.from_url(f"sqlite:///{data / 'prefixgate.db'}")
    try:
        stored = {r.request_id: r.outcome for r in AuditStore(db).query(tenant_id=tid,
                                                                        limit=1000)}
    finally:
        db.dispose()
    assert {rid: stored.get(rid) for rid in request_ids} == dict.fromkeys(request_ids, "ok")
