"""KV eviction: H2O bookkeeping (sinks + recent + heavy, exactly), the FastGen-style head
profile, compaction exactness, block-wise release in the engine, and no cache insertion of
evicted KV (DESIGN isolation rule 3)."""

from __future__ import annotations

import pytest
import torch

from engine.kv_eviction import (
    FULL,
    HEAVY,
    LOCAL,
    SPECIAL,
    EvictionState,
    profile_heads,
    select_h2o,
)
from engine.messages import EngineRequest, KVPolicy, PromptSegment, SamplingParams
from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from tests.engine.scheduler_helpers import make_core, request, run_to_completion, tokens

BS = 16


def test_h2o_keeps_sinks_recent_and_the_heaviest_middle_tokens():
    scores = torch.zeros(20)
    scores[[5, 9, 12]] = torch.tensor([3.0, 7.0, 5.0])
    scores[[0, 18]] = 100.0  # sink / recent scores do not take heavy places
    keep = select_h2o(scores, 20, sinks=2, recent=4, heavy=2)
    assert keep == [0, 1, 9, 12, 16, 17, 18, 19]
    # ties go to the older token; a short sequence keeps everything
    assert select_h2o(torch.ones(10), 10, 1, 2, 3) == [0, 1, 2, 3, 8, 9]
    assert select_h2o(torch.zeros(6), 6, 2, 2, 2) == list(range(6))
    assert select_h2o(torch.zeros(3), 3, 4, 8, 2) == [0, 1, 2]


def test_profile_gives_each_head_the_cheapest_policy_holding_its_mass():
    kv_len = 40
    policy = KVPolicy(kind="adaptive", sink_tokens=2, recent_tokens=8, heavy_tokens=4,
                      min_mass=0.9)
    probs = torch.zeros(1, 4, kv_len)
    probs[0, 0, :2] = 0.5  # attention sink only
    probs[0, 1, -8:] = 1 / 8  # local
    probs[0, 2, 20] = 0.95  # one heavy hitter in the middle
    probs[0, 2, -1] = 0.05
    probs[0, 3] = 1 / kv_len  # spread everywhere
    scores = probs * 10
    codes = profile_heads(probs, scores, policy)
    assert codes.tolist() == [[SPECIAL, LOCAL, HEAVY, FULL]]
    st = EvictionState(policy, scores=scores, last_probs=probs)
    keep = st.select(kv_len)
    assert st.policy_counts == {"special": 1, "local": 1, "heavy": 1, "full": 1}
    # the heavy budget follows the heavy/full heads' scores: slot 20 is kept
    assert 20 in keep and len(keep) == policy.budget
    mask = st.head_mask(kv_len)
    assert mask[0, 0].sum() == 3 and mask[0, 1].sum() == 10 and bool(mask[0, 2].all())


def test_compaction_is_exact_against_masking_the_evicted_slots(tiny_llama_dir):
    runner = ModelRunner.load(tiny_llama_dir, device="cpu", num_blocks=32, progress=False)
    cfg = runner.config
    prompt = tokens(3, 60)
    table = runner.allocator.allocate(4)
    _, scores = runner.step_with_scores(StepBatch([SeqChunk(prompt, 0, table)]))
    keep = select_h2o(scores[0].sum(dim=(0, 1)), 60, sinks=3, recent=10, heavy=12)
    # Reference: decode over the full table with the evicted slots hidden from every head.
    mask = torch.zeros(cfg.num_layers, 1, cfg.num_kv_heads, 61, dtype=torch.bool)
    mask[..., keep] = True
    mask[..., 60] = True
    want, _ = runner.step_with_scores(StepBatch([SeqChunk([7], 60, table)]), mask)
    # Compact, then decode the same token at the same position with the shifted slots.
    runner.compact_kv(table, keep)
    shift = 60 - len(keep)
    got = runner.step(StepBatch([SeqChunk([7], 60, table, kv_shift=shift)]))
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def _policy_request(rid, prompt, policy, max_tokens=40, ns=b"ns"):
    return EngineRequest(rid, (PromptSegment(ns, tuple(prompt)),),
                         SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True),
                         tenant="t", kv_policy=policy)


@pytest.mark.parametrize("kind", ["h2o", "adaptive"])
def test_engine_evicts_block_wise_and_never_caches_evicted_kv(tiny_llama_dir, kind):
    core = make_core(tiny_llama_dir, num_blocks=64, itl_target_s=None)
    policy = KVPolicy(kind=kind, sink_tokens=4, recent_tokens=16, heavy_tokens=12)
    prompt = tokens(8, 70)
    core.add_request(_policy_request("e", prompt, policy, max_tokens=60))
    seq = core._seqs["e"]
    ids: list[int] = []
    most = 0
    while core.has_work():
        for o in core.step():
            assert o.error is None
            if o.event.token_id is not None:
                ids.append(o.event.token_id)
            if o.event.finished:
                result = o.event.result
        core.check_accounting()
        if seq.num_generated > 1:
            most = max(most, len(seq.block_table))
    # released block-wise: never more than the budget plus one block of new tokens
    assert most <= -(-(policy.budget + BS) // BS)
    assert len(ids) == 60
    st = seq.eviction
    assert st is not None and st.evictions >= 3 and seq.kv_shift == st.evicted_tokens
    assert seq.num_computed - seq.kv_shift <= policy.budget + BS
    # only the prompt's full blocks (inserted before the first eviction) are cached
    assert result.cache.inserted_blocks == len(prompt) // BS
    assert core.tree.stats().cached_blocks == len(prompt) // BS
    if kind == "adaptive":
        assert sum(st.policy_counts.values()) == 4 * 2


def test_budget_above_the_length_changes_nothing(tiny_llama_dir):
    core = make_core(tiny_llama_dir, num_blocks=64, itl_target_s=None)
    prompt = tokens(9, 30)
    core.add_request(request("plain", [(None, prompt)], max_tokens=20))
    core.add_request(_policy_request("h2o", prompt, KVPolicy(recent_tokens=100), max_tokens=20,
                                     ns=None))
    res = run_to_completion(core)
    assert res["plain"][0] == res["h2o"][0]
    assert core.scheduler.running == []


def test_eviction_never_writes_into_shared_prefix_blocks(tiny_llama_dir):
    core = make_core(tiny_llama_dir, num_blocks=64, itl_target_s=None)
    prompt = tokens(10, 64)
    core.add_request(request("a", [(b"ns", prompt)], max_tokens=24))
    first = run_to_completion(core)["a"][0]
    policy = KVPolicy(sink_tokens=4, recent_tokens=8, heavy_tokens=8)
    core.add_request(_policy_request("b", prompt, policy, max_tokens=40))
    b_ids, b_res = run_to_completion(core)["b"]
    assert b_res.cached_tokens > 0 and len(b_ids) == 40  # reused the prefix, then evicted
    core.add_request(request("c", [(b"ns", prompt)], max_tokens=24))
    again, c_res = run_to_completion(core)["c"]
    assert c_res.cached_tokens > 0 and again == first


def test_eviction_requests_are_refused_where_scores_are_unavailable(tiny_llama_dir):
    from engine.errors import InvalidRequest

    core = make_core(tiny_llama_dir, num_blocks=64, itl_target_s=None)
    core.runner.window = 32  # a sliding-window model: eviction is not combined with it
    with pytest.raises(InvalidRequest):
        core.add_request(_policy_request("x", tokens(1, 20), KVPolicy()))
