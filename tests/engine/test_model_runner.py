"""ModelRunner: copy-on-write of a shared partial block, the decode hook, bf16 on CPU, and
invalid batches refused before they reach the model."""

from __future__ import annotations

import pytest
import torch

from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from tests.engine.hf_reference import rel_err


@pytest.fixture(scope="module")
def runner(tiny_llama_dir) -> ModelRunner:
    return ModelRunner.load(tiny_llama_dir, device="cpu", num_blocks=64, progress=False)


def _fresh_last_logits(runner: ModelRunner, ids: list[int]) -> torch.Tensor:
    table = runner.allocator.allocate(-(-len(ids) // runner.block_size))
    try:
        return runner.step(StepBatch([SeqChunk(ids, 0, table)]))[0]
    finally:
        runner.allocator.free(table)


def test_load_fills_the_interface(runner, tiny_llama_dir):
    assert runner.device == torch.device("cpu") and runner.dtype == torch.float32
    assert runner.num_blocks == runner.plan.num_blocks == runner.allocator.num_blocks == 64
    assert runner.kv_pool.kv.shape == (4, 2, 64, 16, 2, 32)
    assert runner.max_model_len == 4096 and runner.model_id == tiny_llama_dir.name
    assert runner.plan.bytes_per_token == 2 * 4 * 2 * 32 * 4
    assert runner.plan.weights_bytes == sum(p.numel() * 4 for p in runner.model.parameters())


def test_fork_then_copy_on_write_keeps_both_sequences_right(runner):
    alloc = runner.allocator
    prompt = list(range(10, 30))  # 20 tokens: block 1 is a partial block
    parent = alloc.allocate(2)
    runner.step(StepBatch([SeqChunk(prompt, 0, parent)]))
    child = alloc.fork(parent)
    moved = alloc.copy_on_write(child, len(prompt))
    assert moved is not None
    runner.copy_block(*moved)
    got = runner.step(StepBatch([SeqChunk([101, 102], 20, parent),
                                 SeqChunk([201, 202, 203], 20, child)]))
    assert rel_err(got[0], _fresh_last_logits(runner, [*prompt, 101, 102])) <= 1e-5
    assert rel_err(got[1], _fresh_last_logits(runner, [*prompt, 201, 202, 203])) <= 1e-5
    alloc.free(parent)
    alloc.free(child)
    assert alloc.num_free == alloc.num_blocks


def test_decode_step_hook_equals_step(runner):
    alloc = runner.allocator
    prompts = [list(range(5, 5 + n)) for n in (3, 18, 33)]
    tables = [alloc.allocate(3) for _ in prompts]
    runner.step(StepBatch([SeqChunk(p[:-1], 0, t) for p, t in zip(prompts, tables, strict=True)]))
    want = runner.step(StepBatch([SeqChunk(p[-1:], len(p) - 1, t)
                                  for p, t in zip(prompts, tables, strict=True)]))
    bs = runner.block_size
    pos = torch.tensor([len(p) - 1 for p in prompts])
    bt = torch.tensor(tables, dtype=torch.int32)
    slots = bt[torch.arange(3), pos // bs].long() * bs + pos % bs
    got = runner.decode_step(torch.tensor([p[-1] for p in prompts]), pos, slots, bt,
                             (pos + 1).to(torch.int32), 64)
    assert rel_err(got, want) <= 1e-6
    for t in tables:
        alloc.free(t)


def test_bf16_on_cpu_is_close_to_fp32(tiny_llama_dir, runner):
    bf16 = ModelRunner.load(tiny_llama_dir, device="cpu", dtype="bf16", num_blocks=8,
                            progress=False)
    assert bf16.kv_pool.dtype == torch.bfloat16
    ids = list(range(40, 90))
    got = _fresh_last_logits(bf16, ids)
    assert got.dtype == torch.float32
    assert rel_err(got, _fresh_last_logits(runner, ids)) <= 0.1


def test_fp16_on_cpu_is_refused(tiny_llama_dir):
    with pytest.raises(ValueError, match="float16"):
        ModelRunner.load(tiny_llama_dir, device="cpu", dtype="fp16", progress=False)


@pytest.mark.parametrize("chunk, message", [
    (SeqChunk([1] * 20, 0, [0]), "cannot hold"),
    (SeqChunk([10**6], 0, [0]), "token id out of range"),
    (SeqChunk([1], 0, [64]), "block id out of range"),
    (SeqChunk([], 0, [0]), "invalid chunk"),
    (SeqChunk([1], 4096, [0] * 257), "exceeds max_model_len"),
])
def test_invalid_batches_are_refused(runner, chunk, message):
    with pytest.raises(ValueError, match=message):
        runner.step(StepBatch([chunk]))


def test_empty_batch_is_refused(runner):
    with pytest.raises(ValueError, match="empty"):
        runner.step(StepBatch([]))
