"""Scheduler behaviour on the real tiny model: batching exactness, prefix reuse, isolation,
chunked prefill, admission, preemption, fairness, and the block accounting invariant."""

from __future__ import annotations

import random

import pytest

from engine.errors import EngineOverloaded, InvalidRequest, IsolationViolation
from engine.messages import RequestResult
from tests.engine.scheduler_helpers import make_core, request, run_to_completion, tokens

A, B = b"ns-A", b"ns-B"


def _alone(model_dir, req) -> list[int]:
    """What a request produces alone: a fresh engine, no cache reuse, no batching."""
    core = make_core(model_dir, num_blocks=128)
    solo = request(req.request_id, [(None, req.token_ids)], max_tokens=req.sampling.max_tokens)
    core.add_request(solo)
    return run_to_completion(core)[req.request_id][0]


def test_fifty_concurrent_requests_match_running_alone(tiny_llama_dir):
    rng = random.Random(0)
    prefixes = [tokens(100 + i, rng.randrange(20, 70)) for i in range(4)]
    reqs = []
    for i in range(50):
        if i % 5 == 4:
            segs = [(None, tokens(i, rng.randrange(5, 40)))]
        else:
            p = rng.randrange(len(prefixes))
            tail = tokens(1000 + i, rng.randrange(1, 30))
            segs = [(A if p % 2 else B, prefixes[p]), (None, tail)]
        reqs.append(request(f"r{i}", segs, max_tokens=rng.randrange(1, 10), tenant=f"t{i % 3}"))
    core = make_core(tiny_llama_dir, num_blocks=512, max_num_seqs=16, max_batch_tokens=64)
    for r in reqs:
        core.add_request(r)
    got = run_to_completion(core)
    assert len(got) == 50
    for r in reqs[:12]:  # running alone is slow-ish; a fixed sample covers every shape above
        assert got[r.request_id][0] == _alone(tiny_llama_dir, r), r.request_id
    for r in reqs:
        ids, result = got[r.request_id]
        assert isinstance(result, RequestResult)
        assert result.completion_tokens == len(ids) == r.sampling.max_tokens


def test_second_request_reuses_exactly_the_cached_full_blocks(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    prefix = tokens(1, 50)  # 3 full blocks + 2 tokens
    core.add_request(request("a", [(A, prefix), (None, tokens(2, 7))]))
    first = run_to_completion(core)["a"][1]
    assert first.cached_tokens == 0 and first.cache.inserted_blocks == 3
    core.add_request(request("b", [(A, prefix), (None, tokens(3, 9))]))
    second = run_to_completion(core)["b"][1]
    assert second.cached_tokens == 48
    assert [b.namespace for b in second.cache.reused] == [A, A, A]
    assert core.stats().counters.cached_tokens == 48


def test_reused_prefix_gives_the_same_tokens_as_a_cold_run(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    prefix, suffix = tokens(5, 64), tokens(6, 11)
    core.add_request(request("warm", [(A, prefix), (A, tokens(7, 3))]))
    run_to_completion(core)
    r = request("hit", [(A, prefix), (None, suffix)], max_tokens=12)
    core.add_request(r)
    ids, res = run_to_completion(core)["hit"]
    assert res.cached_tokens == 64
    assert ids == _alone(tiny_llama_dir, r)


def test_same_tokens_in_another_namespace_are_never_reused(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    prefix = tokens(9, 80)
    core.add_request(request("a", [(A, prefix), (None, [5])]))
    run_to_completion(core)
    core.add_request(request("b", [(B, prefix), (None, [5])]))
    res = run_to_completion(core)["b"][1]
    assert res.cached_tokens == 0 and res.cache.reused == ()
    owners = {ns for ns in core.tree.namespaces()}
    assert owners == {A, B}
    assert core.tree.namespace_stats(A).blocks == core.tree.namespace_stats(B).blocks == 5


def test_multi_turn_conversation_reuses_its_own_history(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    turn1 = tokens(11, 40)
    core.add_request(request("t1", [(A, turn1)], max_tokens=24))
    ids1, _ = run_to_completion(core)["t1"]
    turn2 = turn1 + ids1 + tokens(12, 10)
    core.add_request(request("t2", [(A, turn2)], max_tokens=4))
    res = run_to_completion(core)["t2"][1]
    # prompt + generated tokens with K/V (64 - 1 computed) -> 3 full blocks of history
    assert res.cached_tokens == 48


def test_chunked_prefill_equals_unchunked(tiny_llama_dir):
    r = request("long", [(None, tokens(21, 300))], max_tokens=6)
    chunked = make_core(tiny_llama_dir, max_batch_tokens=32)
    chunked.add_request(r)
    ids, _ = run_to_completion(chunked)["long"]
    assert chunked.stats().counters.steps >= 300 // 32
    assert ids == _alone(tiny_llama_dir, r)


def test_segment_without_namespace_stops_caching(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    shared, private = tokens(31, 32), tokens(32, 40)
    core.add_request(request("a", [(A, shared), (None, private), (A, tokens(33, 32))]))
    res = run_to_completion(core)["a"][1]
    assert res.cache.inserted_blocks == 2  # only the namespaced part before the None segment
    assert core.tree.namespace_stats(A).blocks == 2


def test_isolation_check_refuses_a_block_owned_by_another_namespace(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    prefix = tokens(41, 40)
    core.add_request(request("a", [(A, prefix), (None, [1])]))
    run_to_completion(core)
    # Corrupt the tree: relabel A's nodes as B's, as a buggy index would.
    _relabel_namespace(core.tree, A, B)
    core.add_request(request("b", [(B, prefix), (None, [1])]))
    res = run_to_completion(core, check=False)["b"][1]
    assert isinstance(res, IsolationViolation)
    assert res.expected == B and res.found == A
    assert core.stats().counters.isolation_violations == 1


def _relabel_namespace(tree, old: bytes, new: bytes) -> None:
    """Make match() report `old`'s blocks as owned by `old` when looked up under `new`."""
    original = tree.match

    def corrupted(segments):
        m = original([(old if ns == new else ns, toks) for ns, toks in segments])
        return m

    tree.match = corrupted


def test_pessimistic_admission_queues_instead_of_running_out(tiny_llama_dir):
    core = make_core(tiny_llama_dir, num_blocks=16, max_num_seqs=8, kv_high_water=None)
    for i in range(6):  # each needs ceil((40 + 24) / 16) = 4 blocks; only 4 fit at once
        core.add_request(request(f"q{i}", [(None, tokens(50 + i, 40))], max_tokens=24))
    peak = 0
    results = {}
    while core.has_work():
        for o in core.step():
            if o.event is not None and o.event.finished:
                results[o.request_id] = o.event.result
        core.check_accounting()
        st = core.stats()
        peak = max(peak, st.running)
        assert st.counters.preemptions == 0
    assert len(results) == 6 and peak == 4


def test_overload_beyond_the_pool_is_refused_not_crashed(tiny_llama_dir):
    core = make_core(tiny_llama_dir, num_blocks=16, max_queue=4)
    with pytest.raises(InvalidRequest):
        core.add_request(request("huge", [(None, tokens(60, 300))], max_tokens=8))
    accepted, refused = 0, 0
    for i in range(20):
        try:
            core.add_request(request(f"o{i}", [(None, tokens(61 + i, 30))], max_tokens=10))
            accepted += 1
        except EngineOverloaded as exc:
            assert exc.retry_after_s >= 1.0
            refused += 1
    assert refused > 0 and accepted > 0
    got = run_to_completion(core)
    assert len(got) == accepted
    assert all(isinstance(r, RequestResult) for _, r in got.values())


def test_optimistic_mode_preempts_and_loses_nothing(tiny_llama_dir):
    reqs = [request(f"p{i}", [(None, tokens(70 + i, 30))], max_tokens=40) for i in range(5)]
    core = make_core(tiny_llama_dir, num_blocks=14, admission="optimistic", max_num_seqs=5,
                     kv_high_water=None)
    for r in reqs:
        core.add_request(r)
    got = run_to_completion(core)
    assert core.stats().counters.preemptions > 0
    for r in reqs[:2]:
        assert got[r.request_id][0] == _alone(tiny_llama_dir, r)
    assert all(len(got[r.request_id][0]) == 40 for r in reqs)


def test_one_tenant_flooding_does_not_starve_another(tiny_llama_dir):
    core = make_core(tiny_llama_dir, max_num_seqs=2, max_batch_tokens=32)
    for i in range(20):
        core.add_request(request(f"flood{i}", [(None, tokens(80 + i, 20))], tenant="big"))
    core.add_request(request("small", [(None, tokens(200, 20))], tenant="small"))
    order = []
    while core.has_work():
        for o in core.step():
            if o.event is not None and o.event.finished:
                order.append(o.request_id)
    assert order.index("small") <= 3


def test_cancel_frees_blocks_at_the_next_step(tiny_llama_dir):
    core = make_core(tiny_llama_dir, num_blocks=64)
    core.add_request(request("c", [(None, tokens(90, 60))], max_tokens=50))
    for _ in range(3):
        core.step()
    assert core.stats().in_use_blocks > 0
    core.abort("c")
    outs = core.step()
    assert any(o.request_id == "c" and o.error is not None for o in outs)
    st = core.stats()
    assert st.in_use_blocks == 0 and st.free_blocks == 64
    core.check_accounting()


def test_warm_request_caches_without_generating(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    core.add_request(request("w", [(A, tokens(95, 40))], max_tokens=0))
    ids, res = run_to_completion(core)["w"]
    assert ids == [] and res.completion_tokens == 0 and res.cache.inserted_blocks == 2
    core.add_request(request("w2", [(A, tokens(95, 40))], max_tokens=0))
    res2 = run_to_completion(core)["w2"][1]
    assert res2.cached_tokens == 32 and res2.cache.inserted_blocks == 0


def test_eviction_makes_room_for_new_prefixes(tiny_llama_dir):
    core = make_core(tiny_llama_dir, num_blocks=12)
    for i in range(6):
        core.add_request(request(f"e{i}", [(A, tokens(300 + i, 48))], max_tokens=4))
        run_to_completion(core)
    assert core.kv.evicted_blocks > 0
    assert core.stats().free_blocks + core.stats().cached_blocks == 12


def test_seeded_sampling_is_reproducible_across_batches(tiny_llama_dir):
    def run(extra: int) -> list[int]:
        core = make_core(tiny_llama_dir)
        core.add_request(request("s", [(None, tokens(400, 20))], max_tokens=10,
                                 temperature=0.9, top_p=0.9, seed=1234))
        for i in range(extra):
            core.add_request(request(f"x{i}", [(None, tokens(401 + i, 15))], temperature=1.0))
        return run_to_completion(core)["s"][0]

    assert run(0) == run(3)


def test_stop_strings_end_the_stream_without_emitting_them(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    r = request("free", [(None, tokens(500, 20))], max_tokens=30)
    core.add_request(r)
    ids = run_to_completion(core)["free"][0]
    text = core.runner.tokenizer.decode(ids)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    if not stop.strip():
        pytest.skip("generated text has no usable stop string")
    core2 = make_core(tiny_llama_dir)
    core2.add_request(request("stopped", [(None, tokens(500, 20))], max_tokens=30,
                              stop_strings=(stop,)))
    texts = []
    while core2.has_work():
        for o in core2.step():
            if o.event is not None:
                texts.append(o.event.text)
                last = o.event
    assert last.finish_reason == "stop"
    assert stop not in "".join(texts)
    assert "".join(texts) == text[: text.find(stop)]


def test_dropping_a_namespace_mid_request_keeps_accounting_exact(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    prefix = tokens(600, 48)
    core.add_request(request("seed", [(A, prefix)], max_tokens=1))
    run_to_completion(core)
    core.add_request(request("mid", [(A, prefix), (A, tokens(601, 20))], max_tokens=20))
    core.step()  # the whole prompt is computed and inserted: 4 full blocks under A
    core.check_accounting()
    assert core.kv.drop_namespaces([A]) == 4
    core.check_accounting()
    got = run_to_completion(core)["mid"]
    assert got[1].cached_tokens == 48 and got[1].completion_tokens == 20
    assert core.tree.namespace_stats(A).blocks == 5  # re-inserted by the finished request


def test_result_reports_its_phases(tiny_llama_dir):
    core = make_core(tiny_llama_dir)
    core.add_request(request("ph", [(None, tokens(700, 30))], max_tokens=5))
    res = run_to_completion(core)["ph"][1]
    assert res.queue_s >= 0 and res.prefill_s > 0 and res.decode_s > 0
    assert abs(res.queue_s + res.prefill_s + res.decode_s - res.total_s) < 1e-6
    assert abs(res.queue_s + res.prefill_s - res.ttft_s) < 1e-6
