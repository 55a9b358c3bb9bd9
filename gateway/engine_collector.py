"""`EngineCollector`: the engine's state as Prometheus metrics, read from `engine.stats()`.

The engine keeps plain counters and latency windows (engine/engine_stats.py) so it stays free
of any metrics library; this collector turns one `EngineStats` snapshot into metric families
each time /metrics is scraped. Nothing here is labelled by tenant or namespace: the engine's
view is global (per-tenant usage is counted by the gateway, gateway/metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from engine.engine_stats import EngineStats

# Reasons the engine refuses a request at submit or in the queue (engine/engine_core.py,
# engine/scheduler.py); always exported, so a rate() over them never starts from "no data".
ENGINE_REJECTION_REASONS = ("queue_full", "kv_high_water", "tenant_kv_share", "queue_timeout")


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class EngineCollector(Collector):
    """Reads one `EngineStats` per scrape; `stats` is usually `AsyncEngine.stats`."""

    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield from self._kv_cache(s)
        yield from self._scheduler(s)
        yield from self._tokens(s)
        yield from self._latency(s)

    @staticmethod
    def _kv_cache(s: EngineStats) -> Iterator[Metric]:
        yield _gauge("prefixgate_kv_cache_capacity_blocks", "KV blocks in the pool.", s.num_blocks)
        yield _gauge("prefixgate_kv_cache_block_size_tokens", "Tokens per KV block.", s.block_size)
        blocks = GaugeMetricFamily(
            "prefixgate_kv_cache_blocks",
            "KV blocks by state: free (allocator), cached (prefix cache, not in use), in_use "
            "(held by running requests).",
            labels=["state"],
        )
        blocks.add_metric(["free"], s.free_blocks)
        blocks.add_metric(["cached"], s.cached_blocks)
        blocks.add_metric(["in_use"], s.in_use_blocks)
        yield blocks
        yield _gauge(
            "prefixgate_kv_cache_reserved_blocks",
            "Blocks running requests may still allocate (pessimistic admission reservations).",
            s.reserved_blocks,
        )
        yield _gauge(
            "prefixgate_kv_cache_occupancy_ratio",
            "Share of the pool held by running requests (in_use / capacity).",
            s.kv_occupancy,
        )
        yield _gauge(
            "prefixgate_kv_cache_fragmentation_ratio",
            "Share of allocated slots of running requests holding no token (unfilled tails).",
            s.fragmentation,
        )
        yield _counter(
            "prefixgate_kv_cache_evicted_blocks",
            "Prefix-cache blocks evicted to make room since start.",
            s.evicted_blocks,
        )

    @staticmethod
    def _scheduler(s: EngineStats) -> Iterator[Metric]:
        c = s.counters
        yield _gauge(
            "prefixgate_engine_batch_size",
            "Sequences in the engine's running batch at scrape time.",
            s.running,
        )
        yield _gauge(
            "prefixgate_engine_queue_depth", "Requests waiting for admission.", s.waiting
        )
        yield _counter(
            "prefixgate_engine_preemptions",
            "Running sequences preempted (freed and recomputed later) since start.",
            c.preemptions,
        )
        rejected = CounterMetricFamily(
            "prefixgate_engine_rejections",
            "Requests the engine refused, by reason (EngineOverloaded: queue full, KV high-water "
            "mark, tenant KV share, queue timeout).",
            labels=["reason"],
        )
        counts = dict(c.rejected.items())  # one C-level copy: the step thread may add a reason
        extra = sorted(set(counts) - set(ENGINE_REJECTION_REASONS))
        for reason in (*ENGINE_REJECTION_REASONS, *extra):
            rejected.add_metric([reason], counts.get(reason, 0))
        yield rejected
        yield _counter(
            "prefixgate_engine_isolation_violations",
            "Reused blocks refused because another namespace owns them (must stay 0).",
            c.isolation_violations,
        )
        yield _counter(
            "prefixgate_engine_requests_admitted", "Admissions into the running batch.",
            c.requests_admitted,
        )
        yield _counter(
            "prefixgate_engine_requests_finished", "Requests the engine finished.",
            c.requests_finished,
        )
        yield _gauge(
            "prefixgate_engine_prefill_budget_tokens",
            "Prefill tokens allowed per step now (lowered by the ITL guardrail).",
            s.prefill_budget,
        )
        yield _counter(
            "prefixgate_engine_prefill_backoffs",
            "Times the ITL guardrail halved the prefill budget.",
            s.prefill_backoffs,
        )
        yield _counter(
            "prefixgate_engine_prefill_recoveries",
            "Times the ITL guardrail grew the prefill budget back.",
            s.prefill_recoveries,
        )

    @staticmethod
    def _tokens(s: EngineStats) -> Iterator[Metric]:
        c = s.counters
        yield _counter(
            "prefixgate_engine_prompt_tokens",
            "Prompt tokens of admitted requests (warm-ups included).",
            c.prompt_tokens,
        )
        yield _counter(
            "prefixgate_engine_cached_tokens",
            "Prompt tokens served from the prefix cache (warm-ups included).",
            c.cached_tokens,
        )
        yield _counter(
            "prefixgate_engine_computed_prompt_tokens",
            "Prompt tokens the model computed (prefill, recomputation after preemption included).",
            c.computed_prompt_tokens,
        )
        yield _counter(
            "prefixgate_engine_generation_tokens", "Tokens generated.", c.generation_tokens
        )
        yield _gauge(
            "prefixgate_engine_prefix_hit_ratio",
            "Engine-wide cached / prompt tokens since start (warm-ups included).",
            s.prefix_hit_rate,
        )

    @staticmethod
    def _latency(s: EngineStats) -> Iterator[Metric]:
        c = s.counters
        step = SummaryMetricFamily(
            "prefixgate_engine_step_duration_seconds",
            "Wall time of engine steps that ran the model (median over recent steps).",
            count_value=c.steps,
            sum_value=c.step_seconds,
        )
        if s.step_p50 is not None:
            step.add_sample(
                "prefixgate_engine_step_duration_seconds", {"quantile": "0.5"}, s.step_p50
            )
        yield step
        for name, what, p50, p95 in (
            ("time_to_first_token", "Time to first token", s.ttft_p50, s.ttft_p95),
            ("inter_token_latency", "Inter-token latency", s.itl_p50, s.itl_p95),
        ):
            family = GaugeMetricFamily(
                f"prefixgate_engine_recent_{name}_seconds",
                f"{what} quantiles over the engine's recent window (per token, engine-side).",
                labels=["quantile"],
            )
            for q, value in (("0.5", p50), ("0.95", p95)):
                if value is not None:
                    family.add_metric([q], value)
            yield family
