"""The engine on CUDA (Triton attention): logits against transformers, the measured memory plan,
and the decode hook under CUDA-graph capture. Skipped without a GPU."""

from __future__ import annotations

import random

import pytest
import torch

from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from tests.engine.hf_reference import load_reference, reference_logits, rel_err

pytestmark = pytest.mark.gpu
BS = 16


@pytest.fixture(scope="module")
def reference(tiny_llama_dir):
    return load_reference(tiny_llama_dir)


def _tokens(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(6, 3000) for _ in range(n)]


@pytest.mark.parametrize("dtype, tol", [("float32", 2e-3), ("bfloat16", 5e-2)])
def test_cuda_logits_match_transformers(tiny_llama_dir, reference, dtype, tol):
    runner = ModelRunner.load(tiny_llama_dir, device="cuda", dtype=dtype, num_blocks=256,
                              progress=False)
    alloc = runner.allocator
    seqs = [_tokens(i, n) for i, n in enumerate((1, 17, 75, 130))]
    wants = [reference_logits(reference, s) for s in seqs]
    tables = [alloc.allocate(-(-(len(s) + 8) // BS)) for s in seqs]
    # prefill all but the last 9 tokens (one chunk each), then a chunk of 8, then a decode
    held = [max(0, len(s) - 9) for s in seqs]
    first = [SeqChunk(s[:h], 0, t) for s, h, t in zip(seqs, held, tables, strict=True) if h]
    if first:
        runner.step(StepBatch(first))
    errs = []
    mid = [min(len(s) - 1, h + 8) for s, h in zip(seqs, held, strict=True)]
    got = runner.step(StepBatch([SeqChunk(s[h:m], h, t) for s, h, m, t in
                                 zip(seqs, held, mid, tables, strict=True) if m > h]))
    rows = [i for i, (h, m) in enumerate(zip(held, mid, strict=True)) if m > h]
    errs += [rel_err(got[j].cpu(), wants[i][mid[i] - 1]) for j, i in enumerate(rows)]
    got = runner.step(StepBatch([SeqChunk(s[m:m + 1], m, t) for s, m, t in
                                 zip(seqs, mid, tables, strict=True)]))
    errs += [rel_err(got[i].cpu(), wants[i][mid[i]]) for i in range(len(seqs))]
    print(f"{dtype}: worst rel err {max(errs):.2e}")
    assert max(errs) <= tol


def test_memory_plan_measures_a_workspace(tiny_llama_dir):
    runner = ModelRunner.load(tiny_llama_dir, device="cuda", kv_fraction=0.05, progress=False)
    plan = runner.plan
    print(plan.summary())
    assert plan.source == "kv_fraction" and plan.workspace_bytes > 0
    assert plan.free_bytes is not None
    assert plan.kv_bytes <= 0.05 * plan.free_bytes
    assert runner.kv_pool.nbytes == plan.kv_bytes


def test_decode_graphs_replay_equals_eager(tiny_llama_dir):
    from engine.cuda_graphs import DecodeGraphs

    runner = ModelRunner.load(tiny_llama_dir, device="cuda", num_blocks=64, progress=False)
    prompts = [_tokens(10 + i, n) for i, n in enumerate((3, 18, 33))]
    tables = [runner.allocator.allocate(4) for _ in prompts]
    runner.step(StepBatch([SeqChunk(p[:-1], 0, t) for p, t in zip(prompts, tables,
                                                                    strict=True)]))
    want = runner.step(StepBatch([SeqChunk(p[-1:], len(p) - 1, t)
                                  for p, t in zip(prompts, tables, strict=True)]))
    graphs = DecodeGraphs(runner.decode_step, max_blocks_per_seq=8, max_seq_len=128,
                          device=runner.device, batch_sizes=(1, 2, 4))
    graphs.capture(progress=False)
    pos = torch.tensor([len(p) - 1 for p in prompts])
    bt = torch.tensor(tables, dtype=torch.int32)
    slots = bt[torch.arange(3), pos // BS].long() * BS + pos % BS
    got = graphs.run(torch.tensor([p[-1] for p in prompts]).cuda(), pos.cuda(), slots.cuda(),
                     bt.cuda(), (pos + 1).to(torch.int32).cuda())
    assert rel_err(got.float().cpu(), want.cpu()) <= 2e-2
