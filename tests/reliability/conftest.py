"""Gateways for the reliability suite: in-process (engine reachable) and `prefixgate serve`.

The in-process gateway runs with a deliberately small engine (4 running sequences, a queue of
8) so that a few dozen concurrent clients are several times its capacity. The subprocess
helper runs the real console entry point, the way an operator does, with its output captured
to a file for the secrets-in-logs check.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.soak_gateway import ADMIN_TOKEN, InProcessGateway, free_port
from engine.tiny_model import write_tiny_model

MSG = [{"role": "user", "content": "Tell me about the weather today."}]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    write_tiny_model(path)
    return path


@pytest.fixture(scope="session")
def gw(tmp_path_factory: pytest.TempPathFactory,
       tiny_model_dir: Path) -> Iterator[InProcessGateway]:
    """The shared in-process gateway: 4 running sequences, a queue of 8."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with InProcessGateway(tmp_path_factory.mktemp("rel-data"), tiny_model_dir) as gateway:
        yield gateway


# --- `prefixgate serve` as a subprocess --------------------------------------------------------
@dataclass(slots=True)
class ServeProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30,
                            headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)


def serve(data_dir: Path, model_dir: Path, log_path: Path, *extra: str) -> ServeProcess:
    """Start `prefixgate serve` on a free port and wait until /readyz answers 200."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFIXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
           "PREFIXGATE_KV_GIB": "0.02", "PREFIXGATE_LOG_LEVEL": "info"}
    cmd = [sys.executable, "-c", "from gateway.cli.main import main; main()", "serve",
           "--device", "cpu", "--port", str(port), "--data-dir", str(data_dir),
           "--model", str(model_dir), "--max-num-seqs", "4", *extra]
    log = log_path.open("ab")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return ServeProcess(proc, base, log_path)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("serve did not become ready")
        time.sleep(0.1)
