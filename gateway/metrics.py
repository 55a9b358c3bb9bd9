"""`GatewayMetrics`: the Prometheus registry behind GET /metrics.

Two sources: the gateway records every finished API request (`record`, called once per request
with its outcome, usage and the engine's `RequestResult`s), and `EngineCollector` reads the
engine's own state on each scrape. Names follow Prometheus conventions (`prefixgate_` prefix,
base units, `_total` counters, `_seconds`, `_ratio`). Labels carry tenant ids, routes,
outcomes and reasons only — never a namespace, a prompt or a tenant's name — and /metrics is
served to the admin token only (DESIGN.md rule 6: a tenant never sees another's usage).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.engine_stats import EngineStats
from engine.messages import RequestResult
from gateway.engine_collector import EngineCollector

# The classic text format (what `generate_latest` writes), read by every Prometheus version;
# the HTTP layer adds `charset=utf-8`.
MEDIA_TYPE = "text/plain; version=0.0.4"
# Audit outcomes (gateway/services/inference.py, gateway/errors.outcome_of).
OUTCOMES = ("ok", "rejected", "error", "aborted", "isolation_violation")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True, slots=True)
class CompletedRequest:
    """One finished API request as the metrics see it.

    Token counts are the request's usage as billed (prompt tokens once per prompt when n > 1);
    `results` are the engine results of the choices that finished (none for a request refused
    before or by the engine); `duration_s` is the gateway's wall time, when known.
    """

    tenant: str
    route: str
    outcome: str
    error_code: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    results: tuple[RequestResult, ...] = ()
    duration_s: float | None = None
    public_cached_tokens: int = 0  # of cached_tokens, those of a platform public prefix


@dataclass(slots=True)
class _Usage:
    """Monotonic per-request tallies; the hit-ratio gauges are computed from them on scrape."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    prompt_tokens: Counter[str] = field(default_factory=Counter)
    cached_tokens: Counter[str] = field(default_factory=Counter)
    public_cached_tokens: Counter[str] = field(default_factory=Counter)
    completion_tokens: Counter[str] = field(default_factory=Counter)
    isolation_violations: int = 0


class _UsageCollector(Collector):
    def __init__(self, usage: _Usage, lock: threading.Lock) -> None:
        self._usage = usage
        self._lock = lock

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            u = self._usage
            requests = dict(u.requests)
            rejections = dict(u.rejections)
            tokens = {k: dict(c) for k, c in (("prompt", u.prompt_tokens),
                                              ("cached", u.cached_tokens),
                                              ("public_cached", u.public_cached_tokens),
                                              ("completion", u.completion_tokens))}
            violations = u.isolation_violations
        family = CounterMetricFamily(
            "prefixgate_requests", "API requests by tenant, route and outcome.",
            labels=["tenant", "route", "outcome"],
        )
        for (tenant, route, outcome), n in sorted(requests.items()):
            family.add_metric([tenant, route, outcome], n)
        yield family
        family = CounterMetricFamily(
            "prefixgate_rejections",
            "API requests refused with a 4xx, by error code (e.g. overloaded, "
            "rate_limit_exceeded, context_length_exceeded).",
            labels=["reason"],
        )
        for reason, n in sorted(rejections.items()):
            family.add_metric([reason], n)
        yield family
        yield CounterMetricFamily(
            "prefixgate_isolation_violations",
            "Requests failed because a reused block belonged to a foreign namespace (must stay 0).",
            value=violations,
        )
        for kind, what in (
            ("prompt", "Prompt tokens of served requests"),
            ("cached", "Prompt tokens served from the prefix cache (own and public)"),
            ("public_cached", "Of the cached prompt tokens, those of a platform public prefix"),
            ("completion", "Generated tokens"),
        ):
            family = CounterMetricFamily(
                f"prefixgate_{kind}_tokens", f"{what}, per tenant.", labels=["tenant"]
            )
            for tenant, n in sorted(tokens[kind].items()):
                family.add_metric([tenant], n)
            yield family
        yield from self._hit_ratios(tokens["prompt"], tokens["cached"])
        yield self._public_hit_ratios(tokens["prompt"], tokens["public_cached"])

    @staticmethod
    def _hit_ratios(prompt: dict[str, int], cached: dict[str, int]) -> Iterator[Metric]:
        total_prompt = sum(prompt.values())
        yield GaugeMetricFamily(
            "prefixgate_prefix_hit_ratio",
            "Cached / prompt tokens of served API requests since start.",
            value=sum(cached.values()) / total_prompt if total_prompt else 0.0,
        )
        family = GaugeMetricFamily(
            "prefixgate_tenant_prefix_hit_ratio",
            "Cached / prompt tokens of a tenant's served requests since start.",
            labels=["tenant"],
        )
        for tenant, n in sorted(prompt.items()):
            family.add_metric([tenant], cached.get(tenant, 0) / n if n else 0.0)
        yield family


    @staticmethod
    def _public_hit_ratios(prompt: dict[str, int], public: dict[str, int]) -> Metric:
        family = GaugeMetricFamily(
            "prefixgate_tenant_public_prefix_hit_ratio",
            "Public-prefix cached / prompt tokens of a tenant's served requests since start.",
            labels=["tenant"],
        )
        for tenant, n in sorted(prompt.items()):
            family.add_metric([tenant], public.get(tenant, 0) / n if n else 0.0)
        return family


class GatewayMetrics:
    """The registry /metrics exposes; `record` is called once per finished API request."""

    def __init__(self, engine_stats: Callable[[], EngineStats]) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._usage = _Usage()
        self.registry.register(_UsageCollector(self._usage, self._lock))
        self.registry.register(EngineCollector(engine_stats))
        ProcessCollector(registry=self.registry)
        self.ttft = Histogram(
            "prefixgate_time_to_first_token_seconds",
            "Time from submission to the engine until the first token, per tenant (queue, "
            "cache lookup and prefill).",
            ["tenant"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.itl = Histogram(
            "prefixgate_request_inter_token_latency_seconds",
            "Mean inter-token latency of each request: decode time / (completion tokens - 1).",
            buckets=ITL_BUCKETS, registry=self.registry,
        )
        self.queue = Histogram(
            "prefixgate_queue_wait_seconds",
            "Time requests waited for admission into the engine's running batch.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.duration = Histogram(
            "prefixgate_request_duration_seconds",
            "Gateway wall time of API requests, arrival to the audit record, by route.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def record(self, done: CompletedRequest) -> None:
        served = bool(done.results)
        with self._lock:
            u = self._usage
            u.requests[(done.tenant, done.route, done.outcome)] += 1
            if done.outcome == "rejected":
                u.rejections[done.error_code or "unknown"] += 1
            if done.outcome == "isolation_violation":
                u.isolation_violations += 1
            if served:  # a refused request used no tokens, whatever its prompt size
                u.prompt_tokens[done.tenant] += done.prompt_tokens
                u.cached_tokens[done.tenant] += done.cached_tokens
                u.public_cached_tokens[done.tenant] += done.public_cached_tokens
                u.completion_tokens[done.tenant] += done.completion_tokens
        for r in done.results:
            if r.completion_tokens > 0:
                self.ttft.labels(done.tenant).observe(r.ttft_s)
            if r.completion_tokens > 1:
                self.itl.observe(r.decode_s / (r.completion_tokens - 1))
            self.queue.observe(r.queue_s)
        if done.duration_s is not None:
            self.duration.labels(done.route).observe(done.duration_s)

    def exposition(self) -> bytes:
        """The Prometheus text format (`MEDIA_TYPE`); reads `engine.stats()` once."""
        return generate_latest(self.registry)
