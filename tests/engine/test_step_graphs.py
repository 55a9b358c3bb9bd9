"""Step graphs (engine/step_graphs.py): which batches replay, and replay == the eager step.

On CPU the graphs run their padded forward eagerly (`use_graphs=False`): padding and routing
are checked against `ModelRunner.step`. With CUDA the runner captures real graphs at load and
the `gpu` tests compare replayed logits and greedy tokens with the eager path of the same
runner.
"""

from __future__ import annotations

import pytest
import torch

from engine.model_runner import ModelRunner, SeqChunk, StepBatch, prepare_step
from engine.step_graphs import StepGraphs, supports_graphs
from tests.engine.hf_reference import rel_err


@pytest.fixture(scope="module")
def runner(tiny_llama_dir) -> ModelRunner:
    return ModelRunner.load(tiny_llama_dir, device="cpu", num_blocks=64, progress=False)


@pytest.fixture(scope="module")
def graphs(runner) -> StepGraphs:
    return StepGraphs.for_runner(runner, max_decode_batch=4, prefill_buckets=(16, 32),
                                 use_graphs=False)


def _inputs(runner: ModelRunner, batch: StepBatch):
    return prepare_step(batch, block_size=runner.block_size, num_blocks=runner.num_blocks,
                        max_model_len=runner.max_model_len,
                        vocab_size=runner.config.vocab_size, device=runner.device)


def _prompt(n: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 200, (n,), generator=gen).tolist()


def test_cpu_runner_captures_nothing(runner):
    assert not supports_graphs(runner)
    assert runner.graphs is None and not runner.capture_graphs()


def test_padded_prefill_over_a_cached_prefix_equals_eager(runner, graphs):
    alloc = runner.allocator
    prefix, suffix = _prompt(40, 1), _prompt(11, 2)  # suffix pads to the 16-token bucket
    tables = [alloc.allocate(4) for _ in range(2)]
    try:
        for t in tables:
            runner.step(StepBatch([SeqChunk(prefix, 0, t)]))
        before = runner.kv_pool.kv.clone()
        chunk = StepBatch([SeqChunk(suffix, len(prefix), tables[0])])
        got = graphs.run(chunk, _inputs(runner, chunk))
        want = runner.step(StepBatch([SeqChunk(suffix, len(prefix), tables[1])]))
        assert got is not None and got.shape == want.shape == (1, runner.config.vocab_size)
        assert rel_err(got[0], want[0]) <= 1e-5
        # padding queries wrote nothing: only the chunk's own slots of table 0 changed
        bs = runner.block_size
        own = {tables[0][p // bs] * bs + p % bs for p in range(40, 51)}
        own |= {tables[1][p // bs] * bs + p % bs for p in range(40, 51)}
        flat = lambda kv: kv.flatten(2, 3).transpose(0, 2).flatten(1)  # noqa: E731
        changed = (flat(runner.kv_pool.kv) != flat(before)).any(dim=1).nonzero().flatten()
        assert set(changed.tolist()) <= own
    finally:
        for t in tables:
            alloc.free(t)


def test_padded_decode_equals_eager(runner, graphs):
    alloc = runner.allocator
    prompts = [_prompt(n, 10 + n) for n in (5, 17, 30)]
    tables = [[alloc.allocate(2) for _ in prompts] for _ in range(2)]
    try:
        for ts in tables:
            runner.step(StepBatch([SeqChunk(p[:-1], 0, t) for p, t in zip(prompts, ts,
                                                                           strict=True)]))
        decode = [StepBatch([SeqChunk(p[-1:], len(p) - 1, t) for p, t in zip(prompts, ts,
                                                                           strict=True)])
                  for ts in tables]
        got = graphs.run(decode[0], _inputs(runner, decode[0]))  # batch 3 pads to 4
        want = runner.step(decode[1])
        assert got is not None and got.shape == want.shape
        assert rel_err(got, want) <= 1e-5
    finally:
        for ts in tables:
            for t in ts:
                alloc.free(t)


def test_only_captured_shapes_replay(runner, graphs):
    t = runner.allocator.allocate(4)
    try:
        def route(*chunks: SeqChunk) -> bool:
            batch = StepBatch(list(chunks))
            return graphs.run(batch, _inputs(runner, batch)) is not None

        assert route(SeqChunk([5], 3, t))  # decode batch of 1
        assert route(SeqChunk(list(range(3, 35)), 0, t))  # 32 tokens: the top bucket
        assert not route(SeqChunk(list(range(3, 36)), 0, t))  # 33 tokens: eager
        assert not route(SeqChunk([5, 6], 0, t), SeqChunk([7, 8], 0, t))  # 2-sequence prefill
        assert not route(*[SeqChunk([5], 3, t)] * 5)  # decode batch above the largest size
        assert not route(SeqChunk([5], 20, t, kv_shift=4))  # evicted KV runs eagerly
    finally:
        runner.allocator.free(t)


# ----------------------------------------------------------------------------- CUDA


@pytest.fixture(scope="module")
def cuda_runner(tiny_llama_dir) -> ModelRunner:
    return ModelRunner.load(tiny_llama_dir, device="cuda", dtype="bfloat16", num_blocks=128,
                            progress=False, max_num_seqs=8)


def _greedy(runner: ModelRunner, prompts: list[list[int]], tables: list[list[int]],
            steps: int, forced: list[list[int]] | None = None
            ) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Prefill each prompt alone (a one-sequence chunk), then decode the batch greedily — or,
    with `forced`, feed those tokens (teacher forcing), so two runs compare logits of the same
    sequences even where bf16 rounding flips a near-tie argmax."""
    logits = [runner.step(StepBatch([SeqChunk(p, 0, t)]))[0] for p, t in zip(prompts, tables,
                                                                          strict=True)]
    seen = [torch.stack(logits)]
    tokens = [[int(x.argmax())] for x in logits]
    for i in range(steps):
        feed = [f[i] for f in forced] if forced else [toks[-1] for toks in tokens]
        batch = StepBatch([SeqChunk([tok], len(p) + i, t)
                           for p, t, tok in zip(prompts, tables, feed, strict=True)])
        out = runner.step(batch)
        seen.append(out)
        for toks, row in zip(tokens, out, strict=True):
            toks.append(int(row.argmax()))
    return seen, tokens


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-3), ("bfloat16", 2e-2)])
def test_graphed_prefill_and_decode_match_eager_on_cuda(tiny_llama_dir, dtype, tol):
    """Replayed steps equal the eager ones up to the rounding of the padded GEMM shapes (a
    250-token chunk runs as 256 rows): exact to fp32 noise in fp32 (greedy identical); in
    bf16 the padded prefill row measured 1.2e-2 from eager on the H100, inside the 2e-2 bf16
    bar that bench/gpu_check.py holds the engine to."""
    runner = ModelRunner.load(tiny_llama_dir, device="cuda", dtype=dtype, num_blocks=128,
                              progress=False, max_num_seqs=8)
    assert runner.graphs is not None, "a plain CUDA runner captures its step graphs"
    prompts = [_prompt(n, 100 + n) for n in (7, 40, 130, 250)]  # buckets 16, 64, 256, 256
    steps = 24
    captured, results = runner.graphs, []
    for graphs in (captured, None):
        runner.graphs = graphs
        tables = [runner.allocator.allocate(-(-(len(p) + steps + 1) // runner.block_size))
                  for p in prompts]
        forced = results[0][1] if results else None  # eager follows the graphed tokens
        try:
            results.append(_greedy(runner, prompts, tables, steps, forced))
        finally:
            runner.graphs = captured
            for t in tables:
                runner.allocator.free(t)
    (graph_logits, graph_tokens), (eager_logits, eager_tokens) = results
    for got, want in zip(graph_logits, eager_logits, strict=True):
        assert rel_err(got, want) <= tol
    if dtype == "float32":
        assert graph_tokens == eager_tokens


@pytest.mark.gpu
def test_cached_prefix_suffix_replays_the_prefill_graph(cuda_runner):
    runner = cuda_runner
    graphs = runner.graphs
    assert graphs is not None
    prefix, suffix = _prompt(64, 7), _prompt(40, 8)
    tables = [runner.allocator.allocate(7) for _ in range(2)]
    try:
        for t in tables:
            runner.step(StepBatch([SeqChunk(prefix, 0, t)]))
        got = runner.step(StepBatch([SeqChunk(suffix, 64, tables[0])]))
        runner.graphs = None
        try:
            want = runner.step(StepBatch([SeqChunk(suffix, 64, tables[1])]))
        finally:
            runner.graphs = graphs
        assert rel_err(got, want) <= 1e-2 and int(got.argmax()) == int(want.argmax())
        # the replayed logits are the caller's: the next replay must not overwrite them
        kept = got.clone()
        runner.step(StepBatch([SeqChunk(suffix[:5], 64, tables[0])]))
        assert torch.equal(got, kept)
    finally:
        for t in tables:
            runner.allocator.free(t)


@pytest.mark.gpu
def test_quantized_kv_runner_stays_eager(tiny_llama_dir):
    runner = ModelRunner.load(tiny_llama_dir, device="cuda", dtype="bfloat16", num_blocks=32,
                              progress=False, kv_dtype="fp8", max_num_seqs=4)
    assert runner.graphs is None and not supports_graphs(runner)
