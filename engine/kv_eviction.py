"""KV eviction inside a sequence: H2O (sinks + recent + heavy hitters), a FastGen-style adaptive
per-head policy, and sliding-window trimming — all released to the pool block-wise.

A sequence's KV slots are packed: after an eviction the kept slots are moved to the front of
its block table (`ModelRunner.compact_kv`), the blocks past them are freed, and
`Sequence.kv_shift` counts the dropped tokens, so position p of a later token lives at slot
p - kv_shift. Kept keys already carry their rotary phase, so moving them is exact. The pool
blocks a sequence shares with the prefix cache are copied before a compaction writes into them
(copy-on-write), and a sequence with `kv_shift > 0` is never inserted into the radix tree again
(DESIGN isolation rule 3).

Scores come from the torch attention backend (`ModelRunner.step_with_scores`): each step adds
the attention probability every KV slot received, per layer and KV head.
"""

from __future__ import annotations

from collections.abc import Sequence as Seqs
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from engine.block_allocator import NoFreeBlocks
from engine.messages import KVPolicy

if TYPE_CHECKING:
    from engine.kv_cache_manager import KVCacheManager
    from engine.model_runner import ModelRunner, StepBatch
    from engine.sequence import Sequence

# FastGen head policies, cheapest first (codes in `EvictionState.head_policy`).
SPECIAL, LOCAL, HEAVY, FULL = 0, 1, 2, 3
HEAD_POLICIES = ("special", "local", "heavy", "full")


def select_h2o(scores: torch.Tensor, kv_len: int, sinks: int, recent: int,
               heavy: int) -> list[int]:
    """KV slots to keep (ascending): the first `sinks`, the last `recent`, and the `heavy`
    middle slots with the highest score (ties: the older slot). scores: [>= kv_len]."""
    n_sink = min(sinks, kv_len)
    recent_start = max(n_sink, kv_len - recent)
    middle = torch.arange(n_sink, recent_start)
    if len(middle) > heavy:
        mid_scores = scores[n_sink:recent_start].float().cpu()
        order = torch.sort(-mid_scores, stable=True).indices[:heavy]
        middle = middle[order].sort().values
    return [*range(n_sink), *middle.tolist(), *range(recent_start, kv_len)]


def policy_masks(kv_len: int, sinks: int, recent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Visibility of each slot [kv_len] under the "special" and "local" head policies (the
    newest slot, the query itself, is always visible)."""
    slots = torch.arange(kv_len)
    special = (slots < sinks) | (slots == kv_len - 1)
    local = special | (slots >= kv_len - recent)
    return special, local


def profile_heads(probs: torch.Tensor, scores: torch.Tensor, policy: KVPolicy) -> torch.Tensor:
    """FastGen profile: for each (layer, KV head) the cheapest policy whose kept slots hold at
    least `policy.min_mass` of the head's attention `probs` [L, Hkv, S] (each row sums to 1).
    "heavy" keeps sinks + recent + the head's own top `heavy_tokens` by accumulated `scores`.
    Returns int64 codes [L, Hkv] (SPECIAL, LOCAL, HEAVY or FULL)."""
    n_layers, n_heads, kv_len = probs.shape
    special, local = policy_masks(kv_len, policy.sink_tokens, policy.recent_tokens)
    middle = ~local
    ranked = scores[..., :kv_len].masked_fill(~middle, float("-inf"))
    k = min(policy.heavy_tokens, int(middle.sum()))
    heavy = local.expand(n_layers, n_heads, kv_len).clone()
    if k > 0:
        heavy.scatter_(-1, ranked.topk(k, dim=-1).indices, True)
    masses = torch.stack([(probs * special).sum(-1), (probs * local).sum(-1),
                          (probs * heavy).sum(-1)], dim=-1)  # [L, Hkv, 3]
    ok = masses >= policy.min_mass - 1e-6
    codes = torch.full((n_layers, n_heads), FULL, dtype=torch.int64)
    for code in (HEAVY, LOCAL, SPECIAL):  # the cheapest passing policy wins
        codes = torch.where(ok[..., code], torch.full_like(codes, code), codes)
    return codes


@dataclass(slots=True)
class EvictionState:
    """A sequence's eviction bookkeeping: accumulated scores per KV slot, head policies."""

    policy: KVPolicy
    scores: torch.Tensor | None = None  # fp32 [L, Hkv, kv_len]: attention received so far
    last_probs: torch.Tensor | None = None  # fp32 [L, Hkv, kv_len]: the last decode query's
    head_policy: torch.Tensor | None = None  # int64 [L, Hkv] (adaptive, once profiled)
    evictions: int = 0
    evicted_tokens: int = 0
    policy_counts: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget everything (a preempted sequence is recomputed from its tokens)."""
        self.scores = self.last_probs = self.head_policy = None
        self.evictions = self.evicted_tokens = 0
        self.policy_counts = {}

    def accumulate(self, step_scores: torch.Tensor, group: int, is_decode: bool) -> None:
        """Add one step's scores [L, Hkv, kv_len] (summed over `group` query heads)."""
        step_scores = step_scores.float().cpu()
        if self.scores is None:
            self.scores = step_scores.clone()
        else:
            grown = step_scores.clone()
            grown[..., : self.scores.shape[-1]] += self.scores
            self.scores = grown
        if is_decode:
            self.last_probs = step_scores / group

    def due(self, kv_len: int, block_size: int) -> bool:
        """Evict once a block's worth of tokens has piled up past the budget (amortizes the
        compaction and frees at least one block each time)."""
        return kv_len >= self.policy.budget + block_size and self.scores is not None

    def select(self, kv_len: int) -> list[int]:
        """Slots to keep now (ascending); profiles the heads first if the policy is adaptive."""
        assert self.scores is not None
        p = self.policy
        if p.kind == "h2o":
            return select_h2o(self.scores.sum(dim=(0, 1)), kv_len, p.sink_tokens,
                              p.recent_tokens, p.heavy_tokens)
        if self.head_policy is None:
            assert self.last_probs is not None, "adaptive eviction profiles a decode query"
            self.head_policy = profile_heads(self.last_probs[..., :kv_len],
                                             self.scores[..., :kv_len], p)
            self.policy_counts = {
                name: int((self.head_policy == code).sum())
                for code, name in enumerate(HEAD_POLICIES)
            }
        needs_heavy = self.head_policy >= HEAVY
        if not bool(needs_heavy.any()):
            # Every head is local or special: the heavy budget widens the recent window.
            return select_h2o(self.scores[0, 0], kv_len, p.sink_tokens,
                              p.recent_tokens + p.heavy_tokens, 0)
        weighted = (self.scores[..., :kv_len] * needs_heavy[..., None]).sum(dim=(0, 1))
        return select_h2o(weighted, kv_len, p.sink_tokens, p.recent_tokens, p.heavy_tokens)

    def compacted(self, keep: Seqs[int]) -> None:
        """Re-index the per-slot state after the kept slots were packed to the front."""
        idx = torch.tensor(list(keep), dtype=torch.int64)
        assert self.scores is not None
        self.scores = self.scores[..., idx]
        self.last_probs = None if self.last_probs is None else self.last_probs[..., idx]
        self.evictions += 1

    def head_mask(self, kv_len: int) -> torch.Tensor | None:
        """bool [L, Hkv, kv_len]: which slots each head sees (adaptive, once profiled)."""
        if self.head_policy is None:
            return None
        p = self.policy
        special, local = policy_masks(kv_len, p.sink_tokens, p.recent_tokens)
        views = torch.stack([special, local, torch.ones(kv_len, dtype=torch.bool)])
        return views[self.head_policy.clamp(max=HEAVY)]


def peak_kv_tokens(num_prompt: int, max_total: int, block_size: int,
                   policy: KVPolicy | None, window: int | None) -> int:
    """The most KV tokens a sequence holds at once: the whole prompt (prefill keeps it), then a
    window or an eviction budget plus the tokens that pile up before the next release."""
    if window is not None:
        cap = window + 2 * block_size
    elif policy is not None:
        cap = policy.budget + 2 * block_size
    else:
        return max_total
    return min(max_total, max(num_prompt + 1, cap))


def run_step(runner: ModelRunner, batch: StepBatch, seqs: Seqs[Sequence]) -> torch.Tensor:
    """`runner.step`, or — when a sequence of the batch evicts — the scored step whose
    attention probabilities feed each evicting sequence's state. Returns the logits."""
    states = [s.eviction for s in seqs]
    if all(st is None for st in states):
        return runner.step(batch)
    cfg = runner.config
    kv_lens = [c.start_pos + len(c.token_ids) - c.kv_shift for c in batch.seqs]
    width = max(kv_lens)
    mask = torch.ones(cfg.num_layers, len(seqs), cfg.num_kv_heads, width, dtype=torch.bool)
    for b, st in enumerate(states):
        hm = st.head_mask(kv_lens[b]) if st is not None else None
        if hm is not None:
            mask[:, b, :, : kv_lens[b]] = hm
    logits, scores = runner.step_with_scores(batch, mask.to(runner.device))
    group = cfg.num_heads // cfg.num_kv_heads
    for b, st in enumerate(states):
        if st is not None:
            decode = len(batch.seqs[b].token_ids) == 1
            st.accumulate(scores[b, ..., : kv_lens[b]], group, decode)
    return logits


def evict(seq: Sequence, runner: ModelRunner, kv: KVCacheManager) -> int:
    """Run the sequence's policy if due: pack the kept slots, free the blocks past them.
    Returns the number of blocks released (0 when not due or no block could be copied)."""
    st = seq.eviction
    bs = kv.block_size
    kv_len = seq.num_computed - seq.kv_shift
    if st is None or not seq.prompt_inserted or not st.due(kv_len, bs):
        return 0
    keep = st.select(kv_len)
    if seq.cache_node is not None:
        # From here on the sequence reads its own table only: its reused/inserted prefix may
        # be evicted from the tree (the sequence keeps its references).
        kv.tree.unpin(seq.cache_node)
        seq.cache_node = None
    moved = [d for d, s in enumerate(keep) if s != d]
    if moved and not _make_private(seq, range(moved[0] // bs, -(-len(keep) // bs)), runner, kv):
        return 0
    runner.compact_kv(seq.block_table, keep)
    st.compacted(keep)
    n_blocks = -(-len(keep) // bs)
    released = seq.block_table[n_blocks:]
    kv.allocator.free(released)
    del seq.block_table[n_blocks:]
    seq.kv_shift += kv_len - len(keep)
    st.evicted_tokens += kv_len - len(keep)
    return len(released)


def _make_private(seq: Sequence, indices: range, runner: ModelRunner,
                  kv: KVCacheManager) -> bool:
    """Copy-on-write every shared block of `seq.block_table[indices]` (the compaction writes
    there); False when the pool has no block for a copy even after cache eviction."""
    shared = [i for i in indices if kv.allocator.refcount(seq.block_table[i]) > 1]
    short = len(shared) - kv.allocator.num_free
    if short > 0:
        kv.evict(short)
        if kv.allocator.num_free < len(shared):
            return False
    for i in shared:
        try:
            pair = kv.allocator.copy_on_write(seq.block_table, i * kv.block_size)
        except NoFreeBlocks:
            return False
        if pair is not None:
            runner.copy_block(*pair)
    return True


def trim_window(seq: Sequence, window: int, kv: KVCacheManager) -> int:
    """Free the leading blocks whose slots every later query's window has passed (sliding
    window attention). Returns the number of blocks released."""
    bs = kv.block_size
    if not seq.prompt_inserted:
        return 0
    kv_len = seq.num_computed - seq.kv_shift
    # The next query sits at slot kv_len and sees slots > kv_len - window.
    n = max(0, (kv_len - window + 1) // bs)
    n = min(n, len(seq.block_table) - 1)
    if n <= 0:
        return 0
    kv.allocator.free(seq.block_table[:n])
    del seq.block_table[:n]
    seq.kv_shift += n * bs
    return n
