"""/metrics and request traces over HTTP, on a real gateway that exports to an OTLP receiver.

The receiver is a loopback HTTP server that decodes what the gateway's OTLP/HTTP exporter sends
with the OpenTelemetry protobuf schema, as a collector would. Checked: /metrics is for the admin
token only; requests show up per tenant with their tokens and hit ratio; each request's audit
record carries the trace id of a span tree with the six phases, and no span carries prompt text.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.gateway.observability_support import Scrape
from tests.integration.audited_gateway import AuditedGateway, running_gateway

PROMPT = "Observability check: the walrus counts seventeen lanterns by the harbour. " * 3
ROUTE = "/v1/completions"
PHASES = ["auth", "canonicalize", "queue", "cache_lookup", "prefill", "decode"]


class OtlpReceiver:
    """Collects the spans POSTed to /v1/traces (OTLP/HTTP, protobuf)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    for resource_spans in request.resource_spans:
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans.extend(scope_spans.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def trace(self, trace_id: str, timeout_s: float = 10.0) -> list[Span]:
        """The spans of one trace, once its root has arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                spans = [s for s in self.spans if s.trace_id.hex() == trace_id]
            if any(not s.parent_span_id for s in spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"trace {trace_id} never reached the receiver")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    thread = threading.Thread(target=r.httpd.serve_forever, daemon=True)
    thread.start()
    yield r
    r.httpd.shutdown()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
             receiver: OtlpReceiver) -> Iterator[AuditedGateway]:
    previous = os.environ.get("OTEL_BSP_SCHEDULE_DELAY")
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "50"  # export batches every 50 ms, not every 5 s
    try:
        data = tmp_path_factory.mktemp("observed-gateway")
        with running_gateway(data, tiny_model_dir, otlp_endpoint=receiver.url) as ag:
            yield ag
    finally:
        if previous is None:
            os.environ.pop("OTEL_BSP_SCHEDULE_DELAY", None)
        else:
            os.environ["OTEL_BSP_SCHEDULE_DELAY"] = previous


def test_metrics_are_for_the_admin_token_only(observed: AuditedGateway) -> None:
    _, key = observed.gw.tenant("obs-scope")
    url = observed.gw.base_url + "/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Bearer {key}"}).status_code == 403
    r = observed.gw.admin.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "prefixgate_kv_cache_capacity_blocks" in Scrape(r.text).families


def test_requests_are_counted_and_traced(observed: AuditedGateway, receiver: OtlpReceiver
                                         ) -> None:
    tid, key = observed.gw.tenant("obs-traffic")
    bodies, records = [], []
    for _ in range(2):
        r = observed.post(key, ROUTE, {"model": observed.gw.model, "prompt": PROMPT,
                                       "max_tokens": 3})
        assert r.status_code == 200, r.text
        bodies.append(r.json())
        records.append(observed.audit(r.headers["x-request-id"]))
    prompt = sum(b["usage"]["prompt_tokens"] for b in bodies)
    cached = sum(b["usage"]["prompt_tokens_details"]["cached_tokens"] for b in bodies)
    assert cached > 0

    scrape = Scrape(observed.gw.admin.get("/metrics").text)
    assert scrape.value("prefixgate_requests_total", tenant=tid, route=ROUTE, outcome="ok") == 2
    assert scrape.value("prefixgate_prompt_tokens_total", tenant=tid) == prompt
    assert scrape.value("prefixgate_cached_tokens_total", tenant=tid) == cached
    assert scrape.value("prefixgate_tenant_prefix_hit_ratio", tenant=tid) == pytest.approx(
        cached / prompt)
    assert scrape.value("prefixgate_time_to_first_token_seconds_count", tenant=tid) == 2

    for body, record in zip(bodies, records, strict=True):
        assert record["trace_id"] and len(record["trace_id"]) == 32
        spans = receiver.trace(record["trace_id"])
        (root,) = [s for s in spans if not s.parent_span_id]
        children = sorted((s for s in spans if s.parent_span_id),
                          key=lambda s: (s.start_time_unix_nano, s.end_time_unix_nano))
        assert [c.name for c in children] == PHASES
        attrs = {a.key: a.value for a in root.attributes}
        assert attrs["prefixgate.tenant_id"].string_value == tid
        assert attrs["prefixgate.namespace_hash"].string_value == record["namespace"][:16]
        cached_here = body["usage"]["prompt_tokens_details"]["cached_tokens"]
        assert attrs["prefixgate.cached_tokens"].int_value == cached_here
        for span in spans:
            for a in span.attributes:
                assert "walrus" not in str(a.value) and "lanterns" not in str(a.value)
