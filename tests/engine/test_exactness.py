"""Logits of the paged engine equal transformers' on the same weights (fp32, CPU).

Covered for a tiny Llama and a tiny Qwen2 (both GQA): plain prefill, prefill on top of a cached
prefix at every block-aligned split point, chunked prefill, a mixed prefill + decode batch, and
64 greedy decode steps of 8 sequences of different lengths.
"""

from __future__ import annotations

import random

import pytest

from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from tests.engine.hf_reference import load_reference, reference_logits, rel_err

TOL = 1e-4
BS = 16


@pytest.fixture(scope="module", params=["tiny_llama_dir", "tiny_qwen2_dir"])
def pair(request):
    model_dir = request.getfixturevalue(request.param)
    runner = ModelRunner.load(model_dir, device="cpu", num_blocks=256, progress=False)
    return runner, load_reference(model_dir)


def _tokens(seed: int, n: int, vocab: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(6, vocab) for _ in range(n)]


def _blocks(runner: ModelRunner, n_tokens: int) -> list[int]:
    return runner.allocator.allocate(-(-n_tokens // BS))


@pytest.mark.parametrize("length", [1, 15, 16, 17, 75])
def test_plain_prefill(pair, length):
    runner, ref = pair
    ids = _tokens(length, length, runner.config.vocab_size)
    table = _blocks(runner, length)
    got = runner.step(StepBatch([SeqChunk(ids, 0, table)]))
    runner.allocator.free(table)
    assert rel_err(got[0], reference_logits(ref, ids)[-1]) <= TOL


def test_prefill_on_a_cached_prefix_at_every_block_boundary(pair):
    runner, ref = pair
    alloc = runner.allocator
    ids = _tokens(7, 7 * BS + 5, runner.config.vocab_size)
    want = reference_logits(ref, ids)[-1]
    cached = _blocks(runner, len(ids))
    runner.step(StepBatch([SeqChunk(ids, 0, cached)]))
    for k in range(1, len(ids) // BS + 1):
        split = k * BS
        table = alloc.fork(cached[:k]) + _blocks(runner, len(ids) - split)
        got = runner.step(StepBatch([SeqChunk(ids[split:], split, table)]))
        alloc.free(table)
        assert rel_err(got[0], want) <= TOL, f"split at {split}"
    alloc.free(cached)
    assert alloc.num_free == alloc.num_blocks


def test_chunked_prefill(pair):
    runner, ref = pair
    ids = _tokens(11, 100, runner.config.vocab_size)
    want = reference_logits(ref, ids)
    table = _blocks(runner, len(ids))
    start = 0
    for size in (7, 16, 20, 1, 33, 23):
        got = runner.step(StepBatch([SeqChunk(ids[start : start + size], start, table)]))
        start += size
        assert rel_err(got[0], want[start - 1]) <= TOL, f"chunk ending at {start}"
    runner.allocator.free(table)


def test_mixed_batch_of_prefill_chunks_and_decodes(pair):
    runner, ref = pair
    vocab = runner.config.vocab_size
    seqs = [_tokens(20 + i, n, vocab) for i, n in enumerate((40, 9, 70))]
    wants = [reference_logits(ref, s) for s in seqs]
    tables = [_blocks(runner, len(s)) for s in seqs]
    # seq 0 and 1 hold all but their last token; seq 2 holds its first 30
    held = [len(seqs[0]) - 1, len(seqs[1]) - 1, 30]
    runner.step(StepBatch([SeqChunk(s[:h], 0, t) for s, h, t in zip(seqs, held, tables,
                                                                       strict=True)]))
    got = runner.step(StepBatch([SeqChunk(s[h:], h, t) for s, h, t in zip(seqs, held, tables,
                                                                            strict=True)]))
    for i, want in enumerate(wants):
        assert rel_err(got[i], want[-1]) <= TOL, f"sequence {i}"
    for t in tables:
        runner.allocator.free(t)


def test_64_decode_steps_of_8_sequences(pair):
    """Greedy decode of a batch; every step's logits and token are checked against one
    transformers forward over the prompt plus the generated tokens (greedy tokens identical:
    at each step the engine picks transformers' argmax for the same prefix)."""
    runner, ref = pair
    steps = 64
    lengths = (1, 5, 16, 17, 31, 40, 64, 90)
    prompts = [_tokens(100 + n, n, runner.config.vocab_size) for n in lengths]
    tables = [_blocks(runner, len(p) + steps) for p in prompts]
    logits = runner.step(StepBatch([SeqChunk(p, 0, t) for p, t in zip(prompts, tables,
                                                                        strict=True)]))
    rows = [logits]
    generated: list[list[int]] = [[] for _ in prompts]
    for step in range(steps):
        next_ids = [int(x) for x in logits.argmax(-1)]
        for i, tok in enumerate(next_ids):
            generated[i].append(tok)
        if step == steps - 1:
            break
        logits = runner.step(StepBatch([
            SeqChunk([tok], len(p) + step, t)
            for tok, p, t in zip(next_ids, prompts, tables, strict=True)
        ]))
        rows.append(logits)
    for t in tables:
        runner.allocator.free(t)
    for i, prompt in enumerate(prompts):
        want = reference_logits(ref, prompt + generated[i][:-1])[len(prompt) - 1 :]
        got = [r[i] for r in rows]
        for step in range(steps):
            assert rel_err(got[step], want[step]) <= TOL, f"sequence {i}, step {step}"
        assert want.argmax(-1).tolist() == generated[i], f"sequence {i}"
