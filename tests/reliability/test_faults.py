"""Faults inside one gateway: a client that leaves mid-stream, an engine step that raises."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bench.soak_gateway import InProcessGateway
from tests.reliability.conftest import MSG


def _headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _chat(gw: InProcessGateway, key: str, **extra: object) -> httpx.Response:
    body = {"model": gw.model, "messages": MSG, "max_tokens": 16, "temperature": 0, **extra}
    return httpx.post(gw.base_url + "/v1/chat/completions", json=body, headers=_headers(key),
                      timeout=60)


def _wait_freed(gw: InProcessGateway, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while gw.engine.stats().in_use_blocks or gw.engine.core.has_work():
        assert time.monotonic() < deadline, gw.engine.stats()
        time.sleep(0.005)


def test_client_disconnect_mid_stream_frees_blocks_within_a_step(
    gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid, key = gw.tenant("disconnect")
    core = gw.engine.core
    aborted_at_step: list[int] = []
    real_abort: Callable[[str], None] = core.abort

    def abort(request_id: str) -> None:
        aborted_at_step.append(core.metrics.counters.steps)
        real_abort(request_id)

    monkeypatch.setattr(core, "abort", abort)
    body = {"model": gw.model, "messages": MSG, "max_tokens": 2000, "temperature": 0,
            "stream": True}
    with httpx.Client(base_url=gw.base_url, timeout=30) as client, client.stream(
        "POST", "/v1/chat/completions", json=body, headers=_headers(key)
    ) as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)  # role, then tokens: the request is decoding now
        assert gw.engine.stats().in_use_blocks > 0
    # The client closed the connection: the gateway aborts the request, and the next step
    # (at most one in flight when the abort landed) releases its blocks.
    _wait_freed(gw)
    assert aborted_at_step, "the engine request was never aborted"
    assert core.metrics.counters.steps - aborted_at_step[0] <= 1
    core.check_accounting()
    with gw.admin() as admin:
        records = admin.get("/admin/audit", params={"request_id": request_id}).json()["data"]
    assert [(r["outcome"], r["error_code"]) for r in records] == [("aborted", "client_closed")]
    assert records[0]["tenant_id"] == tid and records[0]["completion_tokens"] < 2000


def test_engine_step_raising_fails_only_its_batch(
    gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = gw.tenant("step-fault")
    runner = gw.engine.runner
    real_step = runner.step
    armed = threading.Event()

    def step(batch: Any) -> Any:
        if armed.is_set():
            armed.clear()
            raise RuntimeError("injected fault: CUDA error: an illegal memory access")
        return real_step(batch)

    monkeypatch.setattr(runner, "step", step)

    # A stream that is decoding when the fault hits gets an in-band OpenAI error, no [DONE].
    body = {"model": gw.model, "messages": MSG, "max_tokens": 2000, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", gw.base_url + "/v1/chat/completions", json=body,
                      headers=_headers(key), timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        next(lines)
        armed.set()
        frames = [line for line in lines if line.startswith("data: ")]
    assert frames[-1] != "data: [DONE]"
    error = json.loads(frames[-1].removeprefix("data: "))["error"]
    assert error["code"] == "request_aborted" and error["type"] == "api_error"
    assert all("illegal memory" not in f and "Traceback" not in f for f in frames)

    # Several requests at once; the step that raises takes down only the requests it held.
    armed.set()
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: _chat(gw, key), range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 500} and 500 in statuses, statuses
    for r in responses:
        if r.status_code == 500:
            assert r.json()["error"]["code"] == "request_aborted"
            assert "illegal memory" not in r.text and "Traceback" not in r.text
    # The engine keeps serving, and nothing leaked.
    assert all(_chat(gw, key).status_code == 200 for _ in range(3))
    assert gw.engine.ready
    _wait_freed(gw)
    gw.engine.core.check_accounting()
