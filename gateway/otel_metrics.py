"""`OtelMetrics`: the gateway's metrics through the OpenTelemetry SDK, for an OTLP collector.

Prometheus scrapes /metrics (gateway/metrics.py); when `PREFIXGATE_OTLP_ENDPOINT` is set the
same per-request recording is also pushed over OTLP/HTTP by a PeriodicExportingMetricReader
(off the request path; `OTEL_METRIC_EXPORT_INTERVAL` sets its period, 60 s by default). Tests
hand in a reader instead (the SDK's InMemoryMetricReader). Each instrument means what its
Prometheus twin means; cumulative temporality, so a counter's value is the `_total` sample:

    prefixgate.requests               {request}  prefixgate_requests_total
    prefixgate.rejections             {request}  prefixgate_rejections_total
    prefixgate.isolation_violations   {request}  prefixgate_isolation_violations_total
    prefixgate.tokens.prompt|cached|completion  {token}  prefixgate_<kind>_tokens_total
    prefixgate.time_to_first_token    s          prefixgate_time_to_first_token_seconds
    prefixgate.request.inter_token_latency  s    prefixgate_request_inter_token_latency_seconds
    prefixgate.queue.wait             s          prefixgate_queue_wait_seconds
    prefixgate.request.duration       s          prefixgate_request_duration_seconds
    prefixgate.kv_cache.*, prefixgate.engine.*   observable gauges over engine.stats()

Attributes carry the tenant id, route, outcome and reason only (DESIGN.md rule 6), as the
Prometheus labels do. The provider is the gateway's own, not the process-global one.

Cost on the request path: the counters are plain in-process tallies that observable counters
report at collection (as gateway/metrics.py's collector does for Prometheus); an SDK `add` with
attributes costs ~15 µs on the dev box, a tally a fraction of one. Only the four histogram
records go through the SDK per request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from engine.engine_stats import EngineStats
from gateway.metrics import ITL_BUCKETS, LATENCY_BUCKETS, CompletedRequest
from gateway.telemetry import SERVICE_NAME, otlp_traces_url

TENANT = "prefixgate.tenant_id"  # the same attribute key the request spans carry
ROUTE = "http.route"
OUTCOME = "prefixgate.outcome"
REASON = "prefixgate.rejection.reason"
BLOCK_STATE = "prefixgate.kv_cache.block.state"
# One engine.stats() serves every gauge of a collection (they stay consistent: free + cached +
# in_use = capacity); a collection takes far less than this, a period far more.
STATS_MAX_AGE_S = 1.0


def otlp_metrics_url(endpoint: str) -> str:
    """The OTLP/HTTP metrics URL for the collector address the traces go to.

    `http://collector:4318` becomes `http://collector:4318/v1/metrics`; a traces URL
    (`.../v1/traces`) gets its metrics sibling; any other path is a prefix (a proxy) the
    signal path goes under.
    """
    otlp_traces_url(endpoint)  # the same validation: an http(s) URL with a host
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if path.endswith("/v1/traces"):
        path = path.removesuffix("/v1/traces")
    return urlunsplit(parts._replace(path=f"{path}/v1/metrics"))


class _StatsSnapshot:
    """`engine.stats()` read at most once per `STATS_MAX_AGE_S` (the gauges' callbacks run one
    after another within a collection, on the reader's thread)."""

    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self._stats = stats
        self._lock = threading.Lock()
        self._value: EngineStats | None = None
        self._read_at = 0.0

    def get(self) -> EngineStats:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._read_at > STATS_MAX_AGE_S:
                self._value, self._read_at = self._stats(), now
            return self._value


@dataclass(slots=True)
class _Tallies:
    """Monotonic per-request counts, keyed by attribute values; read at each collection."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    prompt_tokens: Counter[str] = field(default_factory=Counter)
    cached_tokens: Counter[str] = field(default_factory=Counter)
    completion_tokens: Counter[str] = field(default_factory=Counter)
    isolation_violations: int = 0


class OtelMetrics:
    """Records each finished API request for the OTel SDK; `record` mirrors
    `GatewayMetrics.record` (a refused request counts, but uses no tokens)."""

    def __init__(self, provider: MeterProvider, engine_stats: Callable[[], EngineStats]) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._tallies = _Tallies()
        meter = provider.get_meter("prefixgate.gateway")
        self._register_counters(meter)
        self.ttft = meter.create_histogram(
            "prefixgate.time_to_first_token", "s",
            "Time from submission to the engine until the first token.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS)
        self.itl = meter.create_histogram(
            "prefixgate.request.inter_token_latency", "s",
            "Mean inter-token latency of each request.",
            explicit_bucket_boundaries_advisory=ITL_BUCKETS)
        self.queue = meter.create_histogram(
            "prefixgate.queue.wait", "s",
            "Time requests waited for admission into the running batch.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS)
        self.duration = meter.create_histogram(
            "prefixgate.request.duration", "s",
            "Gateway wall time of API requests, arrival to the audit record.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS)
        self._register_engine_gauges(meter, _StatsSnapshot(engine_stats))

    @classmethod
    def create(
        cls,
        engine_stats: Callable[[], EngineStats],
        otlp_endpoint: str | None,
        reader: MetricReader | None = None,
        service_name: str = SERVICE_NAME,
    ) -> OtelMetrics | None:
        """OTLP/HTTP export when `otlp_endpoint` is set, plus `reader` if given; None with
        neither (Prometheus alone)."""
        readers: list[MetricReader] = []
        if otlp_endpoint:
            # Imported here: the exporter (and protobuf) load only when OTLP is configured.
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            otlp = OTLPMetricExporter(endpoint=otlp_metrics_url(otlp_endpoint))
            readers.append(PeriodicExportingMetricReader(otlp))
        if reader is not None:
            readers.append(reader)
        if not readers:
            return None
        provider = MeterProvider(
            metric_readers=readers,
            resource=Resource.create({"service.name": service_name}),
            shutdown_on_exit=False,
            # No trace exemplars: request spans are written after the request has ended, so no
            # span is current when the histograms record, and the reservoirs would only cost.
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        return cls(provider, engine_stats)

    def record(self, done: CompletedRequest) -> None:
        with self._lock:
            t = self._tallies
            t.requests[(done.tenant, done.route, done.outcome)] += 1
            if done.outcome == "rejected":
                t.rejections[done.error_code or "unknown"] += 1
            if done.outcome == "isolation_violation":
                t.isolation_violations += 1
            if done.results:  # a refused request used no tokens, whatever its prompt size
                t.prompt_tokens[done.tenant] += done.prompt_tokens
                t.cached_tokens[done.tenant] += done.cached_tokens
                t.completion_tokens[done.tenant] += done.completion_tokens
        for r in done.results:
            if r.completion_tokens > 0:
                self.ttft.record(r.ttft_s, {TENANT: done.tenant})
            if r.completion_tokens > 1:
                self.itl.record(r.decode_s / (r.completion_tokens - 1))
            self.queue.record(r.queue_s)
        if done.duration_s is not None:
            self.duration.record(done.duration_s, {ROUTE: done.route})

    def _register_counters(self, meter: Meter) -> None:
        def requests(_: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                counts = list(self._tallies.requests.items())
            return [Observation(n, {TENANT: tenant, ROUTE: route, OUTCOME: outcome})
                    for (tenant, route, outcome), n in counts]

        def rejections(_: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                counts = list(self._tallies.rejections.items())
            return [Observation(n, {REASON: reason}) for reason, n in counts]

        def violations(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(self._tallies.isolation_violations)]

        def per_tenant(kind: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(_: CallbackOptions) -> Iterable[Observation]:
                with self._lock:
                    counts = list(getattr(self._tallies, f"{kind}_tokens").items())
                return [Observation(n, {TENANT: tenant}) for tenant, n in counts]

            return callback

        meter.create_observable_counter(
            "prefixgate.requests", [requests], "{request}",
            "API requests by tenant, route and outcome.")
        meter.create_observable_counter(
            "prefixgate.rejections", [rejections], "{request}",
            "API requests refused with a 4xx, by reason.")
        meter.create_observable_counter(
            "prefixgate.isolation_violations", [violations], "{request}",
            "Requests failed because a reused block belonged to a foreign namespace (must stay 0).")
        for kind, doc in (
            ("prompt", "Prompt tokens of served requests."),
            ("cached", "Prompt tokens served from the tenant's own prefix cache."),
            ("completion", "Generated tokens."),
        ):
            meter.create_observable_counter(
                f"prefixgate.tokens.{kind}", [per_tenant(kind)], "{token}", doc)

    @staticmethod
    def _register_engine_gauges(meter: Meter, snap: _StatsSnapshot) -> None:
        def gauge(name: str, unit: str, doc: str, read: Callable[[EngineStats], float]) -> None:
            def callback(_: CallbackOptions) -> Iterable[Observation]:
                return [Observation(read(snap.get()))]

            meter.create_observable_gauge(name, [callback], unit, doc)

        def blocks(_: CallbackOptions) -> Iterable[Observation]:
            s = snap.get()
            return [Observation(s.free_blocks, {BLOCK_STATE: "free"}),
                    Observation(s.cached_blocks, {BLOCK_STATE: "cached"}),
                    Observation(s.in_use_blocks, {BLOCK_STATE: "in_use"})]

        gauge("prefixgate.kv_cache.capacity", "{block}", "KV blocks in the pool.",
              lambda s: s.num_blocks)
        meter.create_observable_gauge(
            "prefixgate.kv_cache.blocks", [blocks], "{block}",
            "KV blocks by state: free, cached (prefix cache, not in use), in_use.")
        gauge("prefixgate.kv_cache.occupancy", "1",
              "Share of the pool held by running requests.", lambda s: s.kv_occupancy)
        gauge("prefixgate.kv_cache.fragmentation", "1",
              "Share of allocated slots of running requests holding no token.",
              lambda s: s.fragmentation)
        gauge("prefixgate.engine.queue_depth", "{request}", "Requests waiting for admission.",
              lambda s: s.waiting)
        gauge("prefixgate.engine.batch_size", "{request}",
              "Sequences in the engine's running batch.", lambda s: s.running)
        gauge("prefixgate.engine.prefix_hit_ratio", "1",
              "Engine-wide cached / prompt tokens since start.", lambda s: s.prefix_hit_rate)

    def force_flush(self) -> bool:
        return self._provider.force_flush()

    def shutdown(self) -> None:
        """Export what is left and stop the readers (the app's shutdown)."""
        self._provider.shutdown()
