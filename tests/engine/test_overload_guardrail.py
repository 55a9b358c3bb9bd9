"""The OOM guardrail under a burst of 3x capacity on a running AsyncEngine.

The KV high-water check (EngineCore._shed_check) refuses work at submit, with EngineOverloaded,
once what is held, reserved and queued would pass the mark: the pool is never exhausted, no
sequence is preempted, every request either completes in full or is refused at once (none
times out in the queue), and /metrics counts the refusals by reason — engine-side
(`kv_high_water`) and as the gateway records them (`overloaded`, the 429 code).
"""

from __future__ import annotations

import asyncio

import pytest

from engine.async_engine import AsyncEngine
from engine.engine_config import EngineConfig
from engine.errors import EngineOverloaded
from engine.messages import RequestResult
from gateway.errors import outcome_of
from gateway.metrics import CompletedRequest, GatewayMetrics
from tests.engine.scheduler_helpers import request, tokens
from tests.gateway.observability_support import Scrape

NUM_BLOCKS = 32
PROMPT, MAX_TOKENS = 40, 24  # 64 tokens: 4 blocks over a request's lifetime
CAPACITY = NUM_BLOCKS // 4  # requests the pool holds at once
BURST = 3 * CAPACITY
HIGH_WATER = 0.95
ROUTE = "/v1/completions"


async def _drain(stream) -> RequestResult:
    async for event in stream:
        if event.finished:
            return event.result
    raise AssertionError("stream ended without a result")


async def _watch(engine: AsyncEngine, seen: list[tuple[int, int, int]], stop: asyncio.Event):
    """Sample (in_use, free, waiting) blocks/requests until told to stop."""
    while not stop.is_set():
        s = engine.stats()
        seen.append((s.in_use_blocks, s.free_blocks, s.waiting))
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("admission", ["pessimistic", "optimistic"])
async def test_burst_of_three_times_capacity_is_shed_before_the_pool_runs_out(
    tiny_llama_dir, admission
):
    engine = AsyncEngine.load(EngineConfig(
        model_dir=str(tiny_llama_dir), device="cpu", num_blocks=NUM_BLOCKS, max_queue=BURST,
        kv_high_water=HIGH_WATER, admission=admission, progress=False,
    ))
    metrics = GatewayMetrics(engine.stats)
    await engine.start()
    seen: list[tuple[int, int, int]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(engine, seen, stop))
    try:
        streams, refused = [], []
        for i in range(BURST):
            tenant = f"ten_{i % 3}"
            try:
                stream = await engine.submit(
                    request(f"b{i}", [(None, tokens(100 + i, PROMPT))], max_tokens=MAX_TOKENS,
                            tenant=tenant))
                streams.append((tenant, stream))
            except EngineOverloaded as exc:
                refused.append(exc)
                outcome = outcome_of(exc)
                metrics.record(CompletedRequest(tenant, ROUTE, outcome.outcome, outcome.code,
                                                prompt_tokens=PROMPT))
        outcomes = await asyncio.gather(*(_drain(s) for _, s in streams), return_exceptions=True)
    finally:
        stop.set()
        await watcher
        await engine.stop()
    engine.core.check_accounting()

    completed = [r for r in outcomes if isinstance(r, RequestResult)]
    assert len(completed) == len(streams), [r for r in outcomes if not isinstance(r, RequestResult)]
    assert all(r.completion_tokens == MAX_TOKENS for r in completed)
    assert len(completed) + len(refused) == BURST
    assert 0 < len(completed) <= CAPACITY and len(refused) >= BURST - CAPACITY
    assert all(exc.retry_after_s >= 1 for exc in refused)

    stats = engine.stats()
    assert stats.counters.preemptions == 0  # no preemption storm
    assert dict(stats.counters.rejected) == {"kv_high_water": len(refused)}  # none timed out
    assert max(in_use for in_use, _, _ in seen) <= HIGH_WATER * NUM_BLOCKS
    assert min(free for _, free, _ in seen) > 0  # the pool was never exhausted
    assert stats.in_use_blocks == 0 and stats.waiting == 0

    for (tenant, _), result in zip(streams, completed, strict=True):
        metrics.record(CompletedRequest(
            tenant, ROUTE, "ok", prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, results=(result,)))
    scrape = Scrape(metrics.exposition().decode())
    assert scrape.value("prefixgate_engine_rejections_total", reason="kv_high_water") == len(
        refused)
    assert scrape.value("prefixgate_engine_rejections_total", reason="queue_timeout") == 0
    assert scrape.value("prefixgate_rejections_total", reason="overloaded") == len(refused)
    assert scrape.value("prefixgate_engine_preemptions_total") == 0
    ok = sum(s.value for s in scrape.samples("prefixgate_requests_total")
             if s.labels["outcome"] == "ok")
    assert ok == len(completed)


async def test_without_the_high_water_mark_the_same_burst_preempts(tiny_llama_dir):
    """The contrast: optimistic admission with shedding off takes the whole burst and has to
    preempt running sequences once they grow — the storm the guardrail prevents."""
    engine = AsyncEngine.load(EngineConfig(
        model_dir=str(tiny_llama_dir), device="cpu", num_blocks=NUM_BLOCKS, max_queue=BURST,
        kv_high_water=None, admission="optimistic", progress=False,
    ))
    await engine.start()
    try:
        streams = [
            await engine.submit(request(f"p{i}", [(None, tokens(100 + i, PROMPT))],
                                        max_tokens=MAX_TOKENS))
            for i in range(BURST)
        ]
        results = await asyncio.gather(*(_drain(s) for s in streams))
    finally:
        await engine.stop()
    assert all(r.completion_tokens == MAX_TOKENS for r in results)
    assert engine.stats().counters.preemptions > 0
