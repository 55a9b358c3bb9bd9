"""GatewayMetrics over a real AsyncEngine on the tiny model: a known workload, then one scrape
read back with prometheus_client's parser — counts, tokens, hit ratios and the engine's state."""

from __future__ import annotations

import re

import pytest

from engine.async_engine import AsyncEngine
from engine.messages import RequestResult
from gateway.metrics import CompletedRequest, GatewayMetrics
from tests.engine.scheduler_helpers import request, tokens
from tests.gateway.observability_support import ROUTE, Scrape, run

NS_A, NS_B = b"ns-tenant-a", b"ns-tenant-b"
SHARED = tokens(1, 64)  # four full blocks: what the second request of tenant A reuses


def served(tenant: str, result: RequestResult) -> CompletedRequest:
    return CompletedRequest(
        tenant=tenant, route=ROUTE, outcome="ok", prompt_tokens=result.prompt_tokens,
        cached_tokens=result.cached_tokens, completion_tokens=result.completion_tokens,
        results=(result,), duration_s=result.total_s,
    )


async def workload(engine: AsyncEngine, metrics: GatewayMetrics) -> dict[str, list[RequestResult]]:
    """Tenant A twice over one prefix (the second reuses it), tenant B once over the same tokens
    in its own namespace (a miss), and one refused request of B."""
    plan = [
        ("ten_a", NS_A, tokens(2, 5)),
        ("ten_a", NS_A, tokens(3, 7)),
        ("ten_b", NS_B, tokens(4, 6)),
    ]
    results: dict[str, list[RequestResult]] = {"ten_a": [], "ten_b": []}
    for i, (tenant, ns, tail) in enumerate(plan):
        result = await run(engine, request(f"r{i}", [(ns, SHARED), (ns, tail)], max_tokens=6,
                                           tenant=tenant))
        results[tenant].append(result)
        metrics.record(served(tenant, result))
    metrics.record(CompletedRequest("ten_b", ROUTE, "rejected", "overloaded", prompt_tokens=70))
    return results


async def test_scrape_counts_a_known_workload(engine):
    metrics = GatewayMetrics(engine.stats)
    results = await workload(engine, metrics)
    assert [r.cached_tokens for r in results["ten_a"]] == [0, 64]
    assert results["ten_b"][0].cached_tokens == 0
    scrape = Scrape(metrics.exposition().decode())

    assert scrape.value("prefixgate_requests_total", tenant="ten_a", outcome="ok") == 2
    assert scrape.value("prefixgate_requests_total", tenant="ten_b", outcome="ok") == 1
    assert scrape.value("prefixgate_requests_total", tenant="ten_b", outcome="rejected") == 1
    assert scrape.value("prefixgate_rejections_total", reason="overloaded") == 1
    assert scrape.value("prefixgate_isolation_violations_total") == 0
    prompt, cached = {}, {}
    for tenant, rs in results.items():
        prompt[tenant] = sum(r.prompt_tokens for r in rs)  # the refused request used none
        cached[tenant] = sum(r.cached_tokens for r in rs)
        assert scrape.value("prefixgate_prompt_tokens_total", tenant=tenant) == prompt[tenant]
        assert scrape.value("prefixgate_cached_tokens_total", tenant=tenant) == cached[tenant]
        assert scrape.value("prefixgate_completion_tokens_total", tenant=tenant) == 6 * len(rs)
        assert scrape.value("prefixgate_tenant_prefix_hit_ratio", tenant=tenant) == pytest.approx(
            cached[tenant] / prompt[tenant]
        )
        ttft = [r.ttft_s for r in rs]
        hist = "prefixgate_time_to_first_token_seconds"
        assert scrape.value(f"{hist}_count", tenant=tenant) == len(rs)
        assert scrape.value(f"{hist}_sum", tenant=tenant) == pytest.approx(sum(ttft))
    assert cached["ten_a"] == 64 and prompt["ten_a"] == 64 * 2 + 5 + 7
    assert scrape.value("prefixgate_prefix_hit_ratio") == pytest.approx(
        sum(cached.values()) / sum(prompt.values())
    )
    assert scrape.value("prefixgate_request_inter_token_latency_seconds_count") == 3
    assert scrape.value("prefixgate_queue_wait_seconds_count") == 3
    assert scrape.value("prefixgate_request_duration_seconds_count", route=ROUTE) == 3


async def test_engine_state_is_read_on_scrape(engine):
    metrics = GatewayMetrics(engine.stats)
    results = await workload(engine, metrics)
    served_results = [r for rs in results.values() for r in rs]
    scrape = Scrape(metrics.exposition().decode())
    stats = engine.stats()

    capacity = scrape.value("prefixgate_kv_cache_capacity_blocks")
    assert capacity == 64
    by_state = {s.labels["state"]: s.value for s in scrape.samples("prefixgate_kv_cache_blocks")}
    assert by_state == {"free": stats.free_blocks, "cached": stats.cached_blocks, "in_use": 0}
    assert by_state["cached"] > 0 and sum(by_state.values()) == capacity
    assert scrape.value("prefixgate_kv_cache_occupancy_ratio") == 0
    assert scrape.value("prefixgate_engine_queue_depth") == 0
    assert scrape.value("prefixgate_engine_batch_size") == 0
    assert scrape.value("prefixgate_engine_prompt_tokens_total") == sum(
        r.prompt_tokens for r in served_results
    )
    assert scrape.value("prefixgate_engine_cached_tokens_total") == 64
    assert scrape.value("prefixgate_engine_generation_tokens_total") == 6 * 3
    assert scrape.value("prefixgate_engine_requests_finished_total") == 3
    assert scrape.value("prefixgate_engine_prefix_hit_ratio") == pytest.approx(
        stats.prefix_hit_rate
    )
    assert scrape.value("prefixgate_engine_preemptions_total") == 0
    assert scrape.value("prefixgate_engine_isolation_violations_total") == 0
    for reason in ("queue_full", "kv_high_water", "tenant_kv_share", "queue_timeout"):
        assert scrape.value("prefixgate_engine_rejections_total", reason=reason) == 0
    assert scrape.value("prefixgate_engine_prefill_budget_tokens") == stats.prefill_budget
    steps = scrape.value("prefixgate_engine_step_duration_seconds_count")
    assert steps == stats.counters.steps > 0
    assert scrape.value("prefixgate_engine_step_duration_seconds", quantile="0.5") > 0


_TIME_WORDS = re.compile(r"latency|duration|time_to|wait")
_UNIT_SUFFIXES = ("_seconds", "_tokens", "_blocks", "_ratio", "_size", "_depth", "_bytes",
                  "_fds")


async def test_names_types_and_help_follow_prometheus_conventions(engine):
    metrics = GatewayMetrics(engine.stats)
    await workload(engine, metrics)
    scrape = Scrape(metrics.exposition().decode())
    ours = {n: f for n, f in scrape.families.items() if n.startswith("prefixgate_")}
    assert len(ours) >= 30
    assert set(scrape.families) - set(ours) <= {
        n for n in scrape.families if n.startswith("process_")
    }
    for name, family in ours.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert family.documentation.strip(), f"{name} has no help text"
        assert family.type in {"counter", "gauge", "histogram", "summary"}, name
        if name.endswith("_created"):  # prometheus_client's creation-time series of histograms
            assert family.type == "gauge" and name.removesuffix("_created") in ours
            continue
        if family.type == "counter":
            assert all(s.name == f"{name}_total" for s in family.samples), name
        else:
            assert not name.endswith("_total"), name
        if _TIME_WORDS.search(name):
            assert name.endswith("_seconds"), f"{name}: time in base units (seconds)"
        if family.type == "gauge":
            assert name.endswith(_UNIT_SUFFIXES), f"{name}: gauge without a unit suffix"
        for s in family.samples:
            assert "namespace" not in s.labels, f"{name} is labelled by namespace"
