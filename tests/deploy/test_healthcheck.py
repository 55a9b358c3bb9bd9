"""deploy/healthcheck.py, the image's HEALTHCHECK and compose probe, run against a real HTTP
server on loopback: 200 is healthy, anything else (503, nothing listening) is not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.deploy_files import HEALTHCHECK_SCRIPT

STATUS_BY_PATH = {"/healthz": 200, "/readyz": 503}


class _Gateway(BaseHTTPRequestHandler):
    """Answers like a gateway that is alive but whose engine is not ready yet."""

    def do_GET(self) -> None:
        self.send_response(STATUS_BY_PATH.get(self.path, 404))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFIXGATE_PORT": str(port)}
    return subprocess.run([sys.executable, str(HEALTHCHECK_SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_ok_answer_is_healthy(port: int) -> None:
    assert _probe(port, "/healthz").returncode == 0


def test_default_path_is_liveness(port: int) -> None:
    assert _probe(port).returncode == 0


def test_not_ready_is_unhealthy(port: int) -> None:
    result = _probe(port, "/readyz")
    assert result.returncode == 1
    assert "/readyz" in result.stderr


def test_nothing_listening_is_unhealthy() -> None:
    assert _probe(_free_port(), "/healthz").returncode == 1


def test_bad_argument_is_a_usage_error(port: int) -> None:
    assert _probe(port, "healthz").returncode == 2
