"""What metrics and tracing cost the gateway per request, and what a /metrics scrape costs.

Per request, on the event loop, the gateway calls `Observability.begin/canonicalized/
submitted/complete` (gateway/observability.py). Measured here in process, on the same request
shape (one choice, 500 prompt tokens, 256 cached, 64 generated, 20 tenants):

1. the baseline: the same calls with tracing off (metrics only — the default, no
   PREFIXGATE_OTLP_ENDPOINT);
2. metrics + a 7-span trace through a BatchSpanProcessor (what the OTLP exporter runs behind;
   the exporter here keeps spans in memory, so no network is timed);
3. metrics + the same metrics through the OTel SDK (gateway/otel_metrics.py; an
   InMemoryMetricReader stands in for the periodic OTLP reader, whose export runs off the
   request path, so what is timed is the instruments' recording);
4. one scrape of /metrics (`GatewayMetrics.exposition`, engine stats + 20 tenants) and one
   OTel collection (what each periodic OTLP export starts with).

    .venv/bin/python -m bench.observability_overhead [--requests 5000] [--tenants 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from litestar import Request
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tqdm import tqdm

from engine.engine_stats import EngineCounters, EngineStats
from engine.messages import CacheReport, RequestResult
from gateway.metrics import GatewayMetrics
from gateway.middleware import REQUEST_ID_KEY, START_KEY
from gateway.observability import Observability
from gateway.otel_metrics import OtelMetrics
from gateway.services.jobs import ChoiceOutput
from gateway.telemetry import RequestTracer
from tenants.schemas import AuditEntry

RESULT = RequestResult("r", 500, 256, 64, "length", ttft_s=0.1, total_s=1.0,
                       cache=CacheReport(cached_tokens=256), queue_s=0.01, prefill_s=0.09,
                       decode_s=0.9)


def engine_stats() -> EngineStats:
    return EngineStats(
        num_blocks=1024, block_size=16, free_blocks=500, cached_blocks=300, in_use_blocks=224,
        kv_occupancy=224 / 1024, fragmentation=0.1, running=20, waiting=3, reserved_blocks=10,
        evicted_blocks=5, prefix_hit_rate=0.3, counters=EngineCounters(), ttft_p50=0.1,
        ttft_p95=0.2, itl_p50=0.01, itl_p95=0.02, step_p50=0.02, prefill_budget=512,
        prefill_backoffs=0, prefill_recoveries=0,
    )


def per_request_us(obs: Observability, n: int, tenants: int, label: str) -> list[float]:
    """Microseconds of the four calls the gateway makes along one request."""
    out = []
    for i in tqdm(range(n), desc=label, leave=False):
        rid = f"req_{i}"
        scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST",
                 "state": {REQUEST_ID_KEY: rid, START_KEY: time.perf_counter()},
                 "headers": [], "query_string": b""}
        request = Request(scope)
        entry = AuditEntry(rid, f"ten_{i % tenants}", "key", "ab" * 32, prompt_tokens=500,
                           cached_tokens=256, completion_tokens=64)
        outputs = [ChoiceOutput(0, result=RESULT)]
        t = time.perf_counter()
        obs.begin(request)
        obs.canonicalized(rid)
        obs.submitted(rid)
        obs.complete(entry, outputs)
        out.append((time.perf_counter() - t) * 1e6)
    return out


def summary(xs: list[float]) -> str:
    qs = statistics.quantiles(xs, n=100)
    return f"p50 {qs[49]:8.1f}   p99 {qs[98]:8.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--tenants", type=int, default=20)
    args = ap.parse_args()

    metrics_only = Observability(GatewayMetrics(engine_stats), RequestTracer(None))
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    traced = Observability(GatewayMetrics(engine_stats), RequestTracer(provider))
    reader = InMemoryMetricReader()
    otel = OtelMetrics.create(engine_stats, None, reader)
    otel_metrics = Observability(GatewayMetrics(engine_stats), RequestTracer(None), otel)

    base = per_request_us(metrics_only, args.requests, args.tenants, "metrics only")
    full = per_request_us(traced, args.requests, args.tenants, "metrics + trace")
    provider.shutdown()  # its export thread done before the next run is timed
    assert len(exporter.get_finished_spans()) == 7 * args.requests
    both = per_request_us(otel_metrics, args.requests, args.tenants, "metrics + OTel metrics")

    scrape_ms = []
    for _ in tqdm(range(200), desc="scrape", leave=False):
        t = time.perf_counter()
        body = traced.metrics.exposition()
        scrape_ms.append((time.perf_counter() - t) * 1e3)
    collect_ms = []
    for _ in tqdm(range(200), desc="OTel collection", leave=False):
        t = time.perf_counter()
        data = reader.get_metrics_data()
        collect_ms.append((time.perf_counter() - t) * 1e3)
    assert data is not None
    otel_requests = sum(p.value for rm in data.resource_metrics for sm in rm.scope_metrics
                        for m in sm.metrics if m.name == "prefixgate.requests"
                        for p in m.data.data_points)
    assert otel_requests == args.requests

    print(f"per request, µs ({args.requests} requests, {args.tenants} tenants)")
    print(f"  baseline: metrics only (tracing off)      {summary(base)}")
    print(f"  metrics + 7-span trace (batch processor)  {summary(full)}")
    print(f"  metrics + OTel SDK metrics                {summary(both)}")
    added = statistics.median(full) - statistics.median(base)
    print(f"  tracing adds (p50)                        {added:8.1f}")
    added = statistics.median(both) - statistics.median(base)
    print(f"  OTel metrics add (p50)                    {added:8.1f}")
    print(f"/metrics scrape: p50 {statistics.median(scrape_ms):.2f} ms, {len(body)} bytes")
    print(f"OTel collection: p50 {statistics.median(collect_ms):.2f} ms")


if __name__ == "__main__":
    main()
