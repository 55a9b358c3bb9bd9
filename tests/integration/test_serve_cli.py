"""`prefixgate serve` from nothing: loads the shipped demo model, migrates, prints, keeps its
token."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.conftest import free_port


def _serve(cwd: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFIXGATE_PORT": str(port),
           "PREFIXGATE_KV_GIB": "0.01"}
    env.pop("PREFIXGATE_ADMIN_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli.main import main; main()", "serve",
         "--device", "cpu"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    return proc.communicate(timeout=60)[0]


def test_serve_with_embedded_defaults_and_restart(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port)
    _wait_ready(proc, port)
    out = _stop(proc)
    assert "prefixgate-demo" in out and f"http://127.0.0.1:{port}" in out
    token_file = tmp_path / "data" / "admin_token"
    token = token_file.read_text().strip()
    assert token in out and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert (tmp_path / "data" / "prefixgate.db").exists()

    proc = _serve(tmp_path, port)  # a restart keeps the token and does not print it again
    _wait_ready(proc, port)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/admin/tenants",
                      headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == {"data": []}
    finally:
        out = _stop(proc)
    assert token not in out and "prefixgate-demo" in out
