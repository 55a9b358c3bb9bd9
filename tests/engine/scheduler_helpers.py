"""Helpers for the scheduler and async-engine tests: build a core, drive it, make prompts."""

from __future__ import annotations

import random
from collections.abc import Sequence

from engine.engine_config import EngineConfig
from engine.engine_core import EngineCore, StepOutput
from engine.messages import EngineRequest, PromptSegment, SamplingParams
from engine.model_runner import ModelRunner


def make_core(model_dir, *, num_blocks: int = 256, **overrides) -> EngineCore:
    """A fresh EngineCore over a fresh KV pool. Queued requests never time out unless a test
    asks (a loaded CI box must not turn a slow test into a queue-timeout failure)."""
    overrides.setdefault("queue_timeout_s", 3600.0)
    config = EngineConfig(model_dir=str(model_dir), device="cpu", num_blocks=num_blocks,
                          progress=False, **overrides)
    runner = ModelRunner.load(
        config.model_dir,
        device="cpu",
        num_blocks=num_blocks,
        block_size=config.block_size,
        max_batch_tokens=config.max_batch_tokens,
        progress=False,
    )
    return EngineCore(runner, config)


def request(
    rid: str,
    segments: Sequence[tuple[bytes | None, Sequence[int]]],
    *,
    max_tokens: int = 8,
    tenant: str = "t",
    **sampling,
) -> EngineRequest:
    sampling.setdefault("temperature", 0.0)
    return EngineRequest(
        request_id=rid,
        segments=tuple(PromptSegment(ns, tuple(toks)) for ns, toks in segments),
        sampling=SamplingParams(max_tokens=max_tokens, ignore_eos=True, **sampling),
        tenant=tenant,
    )


def tokens(seed: int, n: int, vocab: int = 1000) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(10, vocab) for _ in range(n)]


def run_to_completion(core: EngineCore, check: bool = True, max_steps: int = 10_000):
    """Step until idle; returns {request_id: (generated ids, result | error)}; checks the block
    accounting invariant after every step."""
    out: dict[str, list] = {}
    results: dict[str, object] = {}
    for _ in range(max_steps):
        if not core.has_work():
            break
        for o in core.step():
            collect(o, out, results)
        if check:
            core.check_accounting()
    else:
        raise AssertionError("engine did not go idle")
    return {rid: (out.get(rid, []), results[rid]) for rid in results}


def collect(o: StepOutput, out: dict[str, list], results: dict[str, object]) -> None:
    if o.error is not None:
        results[o.request_id] = o.error
        return
    ev = o.event
    assert ev is not None
    if ev.token_id is not None:
        out.setdefault(o.request_id, []).append(ev.token_id)
    if ev.finished:
        results[o.request_id] = ev.result
