"""Sliding-window attention: the torch path against a dense reference with an explicit mask,
and the engine serving past the window while it frees the blocks that fall out of it."""

from __future__ import annotations

import pytest
import torch

from engine.attention import torch_paged
from engine.attention.triton_check import make_case, relative_error
from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from engine.tiny_model import write_tiny_model
from tests.engine.scheduler_helpers import make_core, request, run_to_completion, tokens

WINDOW = 24
BS = 16


def _dense_windowed(case, window: int) -> torch.Tensor:
    """softmax(q k^T) over an explicit [L, S] mask: causal and within `window` positions."""
    bs = case.k_cache.shape[1]
    outs = []
    starts = case.query_start_loc.tolist()
    for b, (q_len, s_len) in enumerate(zip(case.query_lens, case.kv_lens, strict=True)):
        blocks = case.block_tables[b, : -(-s_len // bs)].long()
        k = case.k_cache[blocks].flatten(0, 1)[:s_len].float()
        v = case.v_cache[blocks].flatten(0, 1)[:s_len].float()
        q = case.q[starts[b] : starts[b + 1]].float()
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        mask = torch.zeros(q_len, s_len, dtype=torch.bool)
        for i in range(q_len):
            p = s_len - q_len + i
            mask[i, max(0, p - window + 1) : p + 1] = True
        scores = torch.einsum("lhd,shd->hls", q, k) * case.scale
        probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        outs.append(torch.einsum("hls,shd->lhd", probs, v))
    return torch.cat(outs)


@pytest.mark.parametrize("query_lens, kv_lens", [([1, 1, 1], [5, 30, 70]),
                                                 ([40, 9, 1], [40, 50, 26])])
def test_windowed_torch_attention_matches_an_explicit_mask(query_lens, kv_lens):
    case = make_case(query_lens, kv_lens, 8, 2, 32, BS, torch.float32, "cpu", seed=11)
    got = torch_paged.paged_attention(case.q, case.k_cache, case.v_cache, case.block_tables,
                                      case.seq_lens, case.query_start_loc, case.scale,
                                      case.max_query_len, case.max_seq_len, window=WINDOW)
    assert not got.isnan().any()
    assert relative_error(got, _dense_windowed(case, WINDOW)) <= 1e-5


@pytest.fixture(scope="module")
def windowed_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny-window"), seed=3,
                            overrides={"sliding_window": WINDOW})


def test_runner_serves_past_the_window(windowed_dir):
    runner = ModelRunner.load(windowed_dir, device="cpu", num_blocks=32, progress=False)
    assert runner.window == WINDOW and runner.max_model_len == 4096
    capped = ModelRunner.load(windowed_dir, device="cpu", num_blocks=32, progress=False,
                              sliding_window=False)
    assert capped.window is None and capped.max_model_len == WINDOW


def test_engine_frees_blocks_out_of_the_window_and_matches_full_tables(windowed_dir):
    prompt = tokens(5, 40)
    n_new = 48
    # Reference: the whole sequence in one block table (nothing freed), windowed attention.
    ref = ModelRunner.load(windowed_dir, device="cpu", num_blocks=32, progress=False)
    table = ref.allocator.allocate(-(-(len(prompt) + n_new) // BS))
    logits = ref.step(StepBatch([SeqChunk(prompt, 0, table)]))[0]
    want = []
    for i in range(n_new):
        want.append(int(logits.argmax()))
        logits = ref.step(StepBatch([SeqChunk([want[-1]], len(prompt) + i, table)]))[0]

    core = make_core(windowed_dir, num_blocks=32, itl_target_s=None)
    core.add_request(request("w", [(b"ns", prompt)], max_tokens=n_new))
    seq = core._seqs["w"]
    most = 0
    out: list[int] = []
    while core.has_work():
        for o in core.step():
            if o.event is not None and o.event.token_id is not None:
                out.append(o.event.token_id)
        core.check_accounting()
        if seq.status.value == "running" and seq.num_generated > 1:
            most = max(most, len(seq.block_table))
    assert out == want
    assert seq.kv_shift > 0
    assert most <= -(-(WINDOW + BS) // BS)  # never more than the window's blocks (+1 partial)
    # the prompt was cached whole before any block was freed; nothing past it
    assert core.tree.stats().cached_blocks == len(prompt) // BS


def test_windowed_admission_reserves_only_the_window(windowed_dir):
    core = make_core(windowed_dir, num_blocks=8, itl_target_s=None)
    # 4 blocks of prompt + 200 new tokens would need 16 blocks with full KV
    core.add_request(request("long", [(None, tokens(6, 30))], max_tokens=200))
    done = run_to_completion(core)
    ids, result = done["long"]
    assert len(ids) == 200 and result.completion_tokens == 200
