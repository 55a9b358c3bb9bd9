"""The gateway's metrics through the OTel SDK: a known workload on a real AsyncEngine (tiny
model), recorded by `Observability.complete` as the gateway does, read back from the SDK's
InMemoryMetricReader and compared with the Prometheus scrape of the same requests; shutdown
flushes the last export, and OTLP/HTTP delivers it to a collector."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)

from engine.async_engine import AsyncEngine
from engine.engine_stats import EngineStats
from engine.messages import RequestResult
from gateway.metrics import LATENCY_BUCKETS
from gateway.observability import Observability
from gateway.otel_metrics import OUTCOME, REASON, TENANT, otlp_metrics_url
from gateway.services.jobs import ChoiceOutput
from tenants.schemas import AuditEntry
from tests.engine.scheduler_helpers import request, tokens
from tests.gateway.observability_support import ROUTE, Scrape, http_request, run

NS_A, NS_B = b"ns-tenant-a", b"ns-tenant-b"
SHARED = tokens(1, 64)  # four full blocks: what tenant A's second request reuses


def audit(rid: str, tenant: str, results: Sequence[RequestResult], outcome: str = "ok",
          code: str | None = None, prompt_tokens: int = 0) -> AuditEntry:
    return AuditEntry(
        request_id=rid, tenant_id=tenant, key_id="key_1", namespace="ab" * 32,
        prompt_tokens=sum(r.prompt_tokens for r in results) or prompt_tokens,
        cached_tokens=sum(r.cached_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        outcome=outcome, error_code=code,
    )


async def workload(obs: Observability, engine: AsyncEngine) -> list[RequestResult]:
    """Tenant A twice over one prefix (the second reuses it), tenant B once in its own namespace
    and once refused as overloaded — each through the gateway's four per-request calls."""
    plan = [("ten_a", NS_A, tokens(2, 5)), ("ten_a", NS_A, tokens(3, 7)),
            ("ten_b", NS_B, tokens(4, 6))]
    results = []
    for i, (tenant, ns, tail) in enumerate(plan):
        rid = f"req_{i}"
        obs.begin(http_request(rid))
        await asyncio.sleep(0.001)
        obs.canonicalized(rid)
        obs.submitted(rid)
        result = await run(engine, request(f"{rid}.0", [(ns, SHARED), (ns, tail)], max_tokens=6,
                                           tenant=tenant))
        results.append(result)
        obs.complete(audit(rid, tenant, [result]), [ChoiceOutput(0, result=result)])
    obs.begin(http_request("req_refused"))
    obs.complete(audit("req_refused", "ten_b", [], "rejected", "overloaded", prompt_tokens=70), [])
    return results


class Points:
    """One OTel collection, by instrument name."""

    def __init__(self, data: MetricsData | None) -> None:
        assert data is not None
        self.metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
                        for m in sm.metrics}

    def points(self, name: str) -> Sequence[NumberDataPoint | HistogramDataPoint]:
        return self.metrics[name].data.data_points

    def point(self, name: str, **attrs: str) -> NumberDataPoint | HistogramDataPoint:
        found = [p for p in self.points(name)
                 if all((p.attributes or {}).get(k) == v for k, v in attrs.items())]
        assert len(found) == 1, f"{name}{attrs}: {len(found)} points"
        return found[0]

    def value(self, name: str, **attrs: str) -> float:
        p = self.point(name, **attrs)
        assert isinstance(p, NumberDataPoint)
        return p.value


def counting(stats):
    calls = []

    def read() -> EngineStats:
        calls.append(1)
        return stats()

    return read, calls


async def test_otel_metrics_carry_the_counts_of_the_prometheus_scrape(engine):
    reader = InMemoryMetricReader()
    stats, calls = counting(engine.stats)
    obs = Observability.create(stats, None, metric_reader=reader)
    assert obs.otel is not None and not obs.tracer.enabled
    results = await workload(obs, engine)
    assert [r.cached_tokens for r in results] == [0, 64, 0]
    scrape = Scrape(obs.metrics.exposition().decode())
    calls.clear()
    otel = Points(reader.get_metrics_data())
    assert len(calls) == 1, "one engine.stats() serves every gauge of a collection"

    for tenant, outcome in (("ten_a", "ok"), ("ten_b", "ok"), ("ten_b", "rejected")):
        prom = scrape.value("prefixgate_requests_total", tenant=tenant, outcome=outcome)
        assert prom >= 1
        assert otel.value("prefixgate.requests", **{TENANT: tenant, OUTCOME: outcome,
                                                    "http.route": ROUTE}) == prom
    assert len(otel.points("prefixgate.requests")) == 3
    assert otel.value("prefixgate.rejections", **{REASON: "overloaded"}) == scrape.value(
        "prefixgate_rejections_total", reason="overloaded") == 1
    assert otel.value("prefixgate.isolation_violations") == scrape.value(
        "prefixgate_isolation_violations_total") == 0
    for kind in ("prompt", "cached", "completion"):
        for tenant in ("ten_a", "ten_b"):
            prom = scrape.value(f"prefixgate_{kind}_tokens_total", tenant=tenant)
            assert otel.value(f"prefixgate.tokens.{kind}", **{TENANT: tenant}) == prom
    assert otel.value("prefixgate.tokens.cached", **{TENANT: "ten_a"}) == 64
    assert otel.value("prefixgate.tokens.prompt", **{TENANT: "ten_b"}) == 70  # refused: none

    histograms = [
        ("prefixgate.time_to_first_token", "prefixgate_time_to_first_token_seconds",
         {TENANT: "ten_a"}, {"tenant": "ten_a"}),
        ("prefixgate.time_to_first_token", "prefixgate_time_to_first_token_seconds",
         {TENANT: "ten_b"}, {"tenant": "ten_b"}),
        ("prefixgate.request.inter_token_latency",
         "prefixgate_request_inter_token_latency_seconds", {}, {}),
        ("prefixgate.queue.wait", "prefixgate_queue_wait_seconds", {}, {}),
        ("prefixgate.request.duration", "prefixgate_request_duration_seconds",
         {"http.route": ROUTE}, {"route": ROUTE}),
    ]
    for name, prom, attrs, labels in histograms:
        p = otel.point(name, **attrs)
        assert isinstance(p, HistogramDataPoint)
        assert otel.metrics[name].unit == "s"
        assert p.count == scrape.value(f"{prom}_count", **labels) > 0
        assert p.sum == pytest.approx(scrape.value(f"{prom}_sum", **labels))
        cumulative = 0
        for bound, n in zip(p.explicit_bounds, p.bucket_counts, strict=False):
            cumulative += n
            assert cumulative == scrape.value(f"{prom}_bucket", le=str(bound), **labels)
    assert tuple(otel.point("prefixgate.request.duration").explicit_bounds) == LATENCY_BUCKETS
    assert otel.point("prefixgate.request.duration").count == 4  # the refused one too

    by_state = {p.attributes["prefixgate.kv_cache.block.state"]: p.value
                for p in otel.points("prefixgate.kv_cache.blocks")}
    assert by_state == {s.labels["state"]: s.value
                        for s in scrape.samples("prefixgate_kv_cache_blocks")}
    assert by_state["cached"] > 0
    for name, prom in (
        ("prefixgate.kv_cache.capacity", "prefixgate_kv_cache_capacity_blocks"),
        ("prefixgate.kv_cache.occupancy", "prefixgate_kv_cache_occupancy_ratio"),
        ("prefixgate.kv_cache.fragmentation", "prefixgate_kv_cache_fragmentation_ratio"),
        ("prefixgate.engine.queue_depth", "prefixgate_engine_queue_depth"),
        ("prefixgate.engine.batch_size", "prefixgate_engine_batch_size"),
        ("prefixgate.engine.prefix_hit_ratio", "prefixgate_engine_prefix_hit_ratio"),
    ):
        assert otel.value(name) == pytest.approx(scrape.value(prom)), name
    assert otel.value("prefixgate.kv_cache.capacity") == 64
    assert otel.value("prefixgate.engine.prefix_hit_ratio") > 0
    units = {m.name: m.unit for m in otel.metrics.values()}
    assert units["prefixgate.requests"] == "{request}"
    assert units["prefixgate.tokens.prompt"] == "{token}"
    assert units["prefixgate.kv_cache.occupancy"] == "1"
    for m in otel.metrics.values():
        assert m.description.strip(), m.name
        for p in m.data.data_points:
            assert not any("namespace" in k for k in (p.attributes or {})), m.name
    obs.shutdown()


class _Collected(MetricExporter):
    """Keeps what a PeriodicExportingMetricReader exports (the metric twin of the SDK's
    InMemorySpanExporter, which the metrics SDK does not ship)."""

    def __init__(self) -> None:
        super().__init__()
        self.exports: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: object) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


async def test_shutdown_flushes_the_last_export(engine):
    exporter = _Collected()
    periodic = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    obs = Observability.create(engine.stats, None, metric_reader=periodic)
    await workload(obs, engine)
    assert exporter.exports == []  # the hour-long period has not come round
    obs.shutdown()
    assert len(exporter.exports) == 1
    otel = Points(exporter.exports[0])
    assert otel.value("prefixgate.requests",
                      **{TENANT: "ten_a", OUTCOME: "ok", "http.route": ROUTE}) == 2
    assert otel.value("prefixgate.tokens.completion", **{TENANT: "ten_b"}) == 6


class _Collector(BaseHTTPRequestHandler):
    bodies: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    """A local OTLP/HTTP endpoint that keeps the bodies it is sent, by path."""
    bodies: dict[str, list[bytes]] = {}
    handler = type("Handler", (_Collector,), {"bodies": bodies})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", bodies
    httpd.shutdown()
    thread.join()


async def test_otlp_http_delivers_the_metrics_to_the_collector(engine, collector):
    endpoint, bodies = collector
    obs = Observability.create(engine.stats, endpoint)
    assert obs.otel is not None and obs.tracer.enabled
    await workload(obs, engine)
    await asyncio.to_thread(obs.shutdown)  # the exporters post from this thread
    assert len(bodies["/v1/metrics"]) == 1
    sent = ExportMetricsServiceRequest.FromString(bodies["/v1/metrics"][0])
    metrics = {m.name: m for rm in sent.resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    points = {
        tuple(sorted((a.key, a.value.string_value) for a in p.attributes)): p.as_int
        for p in metrics["prefixgate.requests"].sum.data_points
    }
    assert points[(("http.route", ROUTE), (OUTCOME, "ok"), (TENANT, "ten_a"))] == 2
    assert metrics["prefixgate.requests"].sum.is_monotonic
    assert metrics["prefixgate.kv_cache.capacity"].gauge.data_points[0].as_int == 64
    service = {a.key: a.value.string_value for a in sent.resource_metrics[0].resource.attributes}
    assert service["service.name"] == "prefixgate"
    assert "/v1/traces" in bodies  # the spans go to the same collector


def test_otlp_metrics_url_sits_beside_the_traces_url():
    assert otlp_metrics_url("http://c:4318") == "http://c:4318/v1/metrics"
    assert otlp_metrics_url("http://c:4318/") == "http://c:4318/v1/metrics"
    assert otlp_metrics_url("https://c/v1/traces") == "https://c/v1/metrics"
    assert otlp_metrics_url("https://c/otlp") == "https://c/otlp/v1/metrics"
    with pytest.raises(ValueError):
        otlp_metrics_url("collector:4318")


def test_without_an_endpoint_or_reader_only_prometheus_records():
    obs = Observability.create(lambda: None, None)  # type: ignore[arg-type,return-value]
    assert obs.otel is None and not obs.tracer.enabled
