"""Helpers for the metrics, tracing and `prefixgate top` tests: a tiny model written once per
session, running engine requests to their result, and reading /metrics with the parser that
ships with prometheus_client."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from litestar import Request
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from engine.async_engine import AsyncEngine
from engine.messages import EngineRequest, RequestResult
from engine.tiny_model import write_tiny_model
from gateway.middleware import REQUEST_ID_KEY, START_KEY

ROUTE = "/v1/chat/completions"
_model_dirs: dict[Path, Path] = {}


def tiny_model(factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama checkpoint, written once per test session (under the session's basetemp)."""
    base = factory.getbasetemp()
    if base not in _model_dirs:
        _model_dirs[base] = write_tiny_model(factory.mktemp("obs-tiny-llama"), seed=0)
    return _model_dirs[base]


async def run(engine: AsyncEngine, request: EngineRequest) -> RequestResult:
    """Submit and drain one request; its final result."""
    stream = await engine.submit(request)
    async for event in stream:
        if event.finished:
            assert event.result is not None
            return event.result
    raise AssertionError("the stream ended without a result")


class Scrape:
    """One /metrics body, parsed by prometheus_client's own text parser."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(self, name: str) -> list[Sample]:
        return [s for f in self.families.values() for s in f.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float:
        """The one sample of `name` whose labels include `labels`."""
        found = [s.value for s in self.samples(name)
                 if all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return found[0]


def http_request(request_id: str) -> Request:
    """The scope the gateway's middleware leaves for a handler: request id and arrival time."""
    state = {REQUEST_ID_KEY: request_id, START_KEY: time.perf_counter()}
    return Request({"type": "http", "path": ROUTE, "method": "POST", "state": state,
                    "headers": [], "query_string": b""})
