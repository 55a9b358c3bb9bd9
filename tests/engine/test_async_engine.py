"""AsyncEngine over the real tiny model: streaming, concurrency, cancel, overload, warm, drop."""

from __future__ import annotations

import asyncio

import pytest

from engine.async_engine import AsyncEngine
from engine.engine_config import EngineConfig
from engine.errors import EngineNotReady, EngineOverloaded, InvalidRequest
from tests.engine.scheduler_helpers import request, tokens

A = b"ns-A"


@pytest.fixture
async def engine(tiny_llama_dir):
    eng = AsyncEngine.load(
        EngineConfig(model_dir=str(tiny_llama_dir), device="cpu", num_blocks=64, max_queue=8,
                     progress=False)
    )
    await eng.start()
    yield eng
    await eng.stop()
    eng.core.check_accounting()


async def _collect(stream):
    ids, last = [], None
    async for ev in stream:
        if ev.token_id is not None:
            ids.append(ev.token_id)
        last = ev
    return ids, last


async def test_stream_yields_tokens_then_a_result(engine):
    stream = await engine.submit(request("s1", [(A, tokens(1, 40))], max_tokens=6))
    ids, last = await _collect(stream)
    assert len(ids) == 6
    assert last.finished and last.finish_reason == "length"
    assert last.result.prompt_tokens == 40 and last.result.completion_tokens == 6
    assert last.result.ttft_s > 0


async def test_concurrent_streams_and_prefix_hits(engine):
    await engine.warm("w", [request("x", [(A, tokens(2, 64))]).segments[0]])
    streams = [
        await engine.submit(request(f"c{i}", [(A, tokens(2, 64)), (None, tokens(10 + i, 5))]))
        for i in range(6)
    ]
    outs = await asyncio.gather(*(_collect(s) for s in streams))
    assert all(last.result.cached_tokens == 64 for _, last in outs)
    view = {v.namespace: v for v in engine.cache_view()}
    assert view[A].blocks == 4 and view[A].hit_tokens >= 6 * 64


async def test_cancel_mid_stream_frees_blocks(engine):
    stream = await engine.submit(request("long", [(None, tokens(3, 50))], max_tokens=200))
    async for _ in stream:
        break
    await stream.aclose()
    for _ in range(100):
        if engine.stats().in_use_blocks == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.stats().in_use_blocks == 0


async def test_rejections_are_typed(engine):
    with pytest.raises(InvalidRequest):
        await engine.submit(request("big", [(None, tokens(4, 10))], max_tokens=100_000))
    streams, refused = [], 0
    for i in range(30):
        try:
            streams.append(await engine.submit(
                request(f"o{i}", [(None, tokens(5 + i, 40))], max_tokens=40)))
        except EngineOverloaded as exc:
            refused += 1
            assert exc.retry_after_s >= 1
    assert refused > 0
    await asyncio.gather(*(_collect(s) for s in streams))


async def test_drop_namespace_forgets_its_blocks(engine):
    await engine.warm("w", [request("x", [(A, tokens(6, 48))]).segments[0]])
    assert engine.drop_namespaces([A]) == 3
    stream = await engine.submit(request("after", [(A, tokens(6, 48)), (None, [7])]))
    _, last = await _collect(stream)
    assert last.result.cached_tokens == 0


async def test_submit_before_start_is_refused(tiny_llama_dir):
    eng = AsyncEngine.load(EngineConfig(model_dir=str(tiny_llama_dir), device="cpu",
                                        num_blocks=16, progress=False))
    with pytest.raises(EngineNotReady):
        await eng.submit(request("n", [(None, [1, 2, 3])]))
