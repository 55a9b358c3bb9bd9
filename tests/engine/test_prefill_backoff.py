"""The ITL guardrail halves the prefill budget on a latency rise and restores it on recovery."""

from __future__ import annotations

from engine.prefill_backoff import PrefillBackoff
from tests.engine.scheduler_helpers import make_core, request, run_to_completion, tokens


def test_rise_halves_and_recovery_restores_step_by_step():
    g = PrefillBackoff(max_budget=512, min_budget=16, itl_target_s=0.05, window=10)
    for _ in range(10):
        g.observe(0.01)
    assert g.budget == 512 and g.backoffs == 0
    for _ in range(10):
        g.observe(0.2)
    assert g.budget == 256 and g.backoffs == 1
    for _ in range(30):
        g.observe(0.2)
    assert g.budget == 32 and g.backoffs == 4
    for _ in range(10):
        g.observe(0.045)  # under target but above the recovery ratio: hold
    assert g.budget == 32
    budgets = []
    for _ in range(5):
        for _ in range(10):
            g.observe(0.01)
        budgets.append(g.budget)
    assert budgets == [64, 128, 256, 512, 512] and g.recoveries == 4


def test_budget_never_below_one_block():
    g = PrefillBackoff(max_budget=64, min_budget=16, itl_target_s=0.01, window=4)
    for _ in range(100):
        g.observe(1.0)
    assert g.budget == 16


def test_engine_applies_the_guardrail_to_its_scheduler(tiny_llama_dir):
    # A target no CPU step can meet: every window backs off, down to one block.
    core = make_core(tiny_llama_dir, max_batch_tokens=256, itl_target_s=1e-6)
    core.backoff.window = 4
    for i in range(3):
        core.add_request(request(f"g{i}", [(None, tokens(i, 20))], max_tokens=12))
    run_to_completion(core)
    st = core.stats()
    assert st.prefill_backoffs >= 1 and st.prefill_budget < 256
    assert core.scheduler.prefill_budget == core.backoff.budget
