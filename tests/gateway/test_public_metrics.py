"""Public-prefix cached tokens in /metrics: a per-tenant counter and hit ratio, read back with
prometheus_client's parser after a real engine served two tenants over one public prefix."""

from __future__ import annotations

import pytest

from engine.messages import RequestResult
from gateway.metrics import CompletedRequest, GatewayMetrics
from tests.engine.scheduler_helpers import request, tokens
from tests.gateway.observability_support import ROUTE, Scrape, run

NS_PUBLIC, NS_A, NS_B = b"ns-public", b"ns-tenant-a", b"ns-tenant-b"
PUBLIC = tokens(1, 32)  # two full blocks under the public namespace
OWN = tokens(2, 32)  # two full blocks under each tenant's own namespace


def public_tokens(result: RequestResult, block_size: int) -> int:
    return sum(block_size for b in result.cache.reused if b.namespace == NS_PUBLIC)


async def test_public_cached_tokens_counter_and_ratio(engine):
    metrics = GatewayMetrics(engine.stats)
    block = engine.block_size
    plan = [("ten_a", NS_A, 5), ("ten_a", NS_A, 7), ("ten_b", NS_B, 6)]
    results: dict[str, list[RequestResult]] = {"ten_a": [], "ten_b": []}
    for i, (tenant, ns, tail) in enumerate(plan):
        segments = [(NS_PUBLIC, PUBLIC), (ns, OWN), (ns, tokens(3 + i, tail))]
        result = await run(engine, request(f"r{i}", segments, max_tokens=2, tenant=tenant))
        results[tenant].append(result)
        metrics.record(CompletedRequest(
            tenant=tenant, route=ROUTE, outcome="ok", prompt_tokens=result.prompt_tokens,
            cached_tokens=result.cached_tokens, completion_tokens=result.completion_tokens,
            public_cached_tokens=public_tokens(result, block), results=(result,),
        ))
    a_again, b_first = results["ten_a"][1], results["ten_b"][0]
    assert public_tokens(a_again, block) == public_tokens(b_first, block) == len(PUBLIC)
    assert a_again.cached_tokens == len(PUBLIC) + len(OWN)
    assert b_first.cached_tokens == len(PUBLIC)  # nothing of A's own blocks

    scrape = Scrape(metrics.exposition().decode())
    for tenant, rs in results.items():
        prompt = sum(r.prompt_tokens for r in rs)
        public = sum(public_tokens(r, block) for r in rs)
        assert scrape.value("prefixgate_public_cached_tokens_total", tenant=tenant) == public
        assert scrape.value(
            "prefixgate_tenant_public_prefix_hit_ratio", tenant=tenant
        ) == pytest.approx(public / prompt)
        assert scrape.value("prefixgate_cached_tokens_total", tenant=tenant) == sum(
            r.cached_tokens for r in rs
        )
