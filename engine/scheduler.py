"""Continuous batching: what runs in the next engine step.

Each step: decodes of running sequences first (one token each, to keep inter-token latency),
then prefill chunks of partly computed prompts, then new admissions, all under a token budget
(chunked prefill). Admission is pessimistic by default: a sequence enters only when its prompt
plus `max_tokens` worth of blocks fit beside what running sequences may still need, so a step
never runs out of blocks. In optimistic mode the newest sequence is preempted (freed and
recomputed later) when blocks run out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.engine_config import EngineConfig
from engine.engine_stats import EngineMetrics
from engine.errors import EngineError, EngineOverloaded, IsolationViolation
from engine.fair_queue import FairQueue
from engine.kv_cache_manager import KVCacheManager
from engine.kv_eviction import peak_kv_tokens
from engine.sequence import SeqStatus, Sequence


@dataclass(slots=True)
class ScheduledChunk:
    """Run `length` tokens of `seq` starting at position `start` this step."""

    seq: Sequence
    start: int
    length: int

    @property
    def completes(self) -> bool:
        """The chunk reaches the sequence's last token, so its logits pick the next token."""
        return self.start + self.length == self.seq.num_tokens


class Scheduler:
    def __init__(self, config: EngineConfig, kv: KVCacheManager, metrics: EngineMetrics,
                 window: int | None = None) -> None:
        self.config = config
        self.window = window  # sliding-window attention: KV is capped near this many tokens
        self.kv = kv
        self.metrics = metrics
        self.waiting = FairQueue()
        self.running: list[Sequence] = []
        # Prefill tokens per step; the ITL guardrail may lower it below max_batch_tokens.
        self.prefill_budget = config.max_batch_tokens
        self.num_blocks = kv.allocator.num_blocks

    # --- accounting ---------------------------------------------------------------------------
    def lifetime_blocks(self, seq: Sequence) -> int:
        """Blocks a sequence may hold at once by its end: prompt + max_tokens, or less under a
        sliding window or an eviction policy (engine.kv_eviction.peak_kv_tokens)."""
        peak = peak_kv_tokens(seq.num_prompt_tokens, seq.max_total_tokens, self.kv.block_size,
                              seq.request.kv_policy, self.window)
        return self.kv.blocks_needed(peak)

    def outstanding_reservations(self) -> int:
        """Blocks running sequences may still allocate (pessimistic reservations not yet used)."""
        return sum(max(0, s.reserved_blocks - len(s.block_table)) for s in self.running)

    def held_blocks(self) -> int:
        return sum(len(s.block_table) for s in self.running)

    def queued_need(self) -> int:
        return sum(self.lifetime_blocks(s) for s in self.waiting)

    def tenant_blocks(self, tenant: str) -> int:
        return sum(
            max(s.reserved_blocks, len(s.block_table)) for s in self.running if s.tenant == tenant
        )

    def kv_share_cap(self, seq: Sequence) -> float | None:
        share = seq.request.max_kv_share
        return share if share is not None else self.config.max_tenant_kv_share

    # --- the step -----------------------------------------------------------------------------
    def schedule(self) -> tuple[list[ScheduledChunk], list[tuple[Sequence, EngineError]]]:
        chunks: list[ScheduledChunk] = []
        failures: list[tuple[Sequence, EngineError]] = []
        budget = self.config.max_batch_tokens
        for seq in list(self.running):
            decoding = seq.status is SeqStatus.RUNNING and seq.num_uncomputed == 1
            if decoding and self._grow(seq, seq.num_tokens, chunks):
                chunks.append(ScheduledChunk(seq, seq.num_computed, 1))
                budget -= 1
        budget = min(budget, self.prefill_budget)
        for seq in list(self.running):
            if budget <= 0:
                break
            if seq.status is SeqStatus.RUNNING and seq.num_uncomputed > 1:
                n = min(seq.num_uncomputed, budget)
                if self._grow(seq, seq.num_computed + n, chunks):
                    chunks.append(ScheduledChunk(seq, seq.num_computed, n))
                    budget -= n
        self._expire_waiting(failures)
        while budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self._admit_next(failures)
            if seq is None:
                break
            if seq.num_uncomputed == 0:
                # A warm-up whose prompt is cached whole: nothing to compute.
                chunks.append(ScheduledChunk(seq, seq.num_computed, 0))
                continue
            n = min(seq.num_uncomputed, budget)
            if self._grow(seq, seq.num_computed + n, chunks):
                chunks.append(ScheduledChunk(seq, seq.num_computed, n))
                budget -= n
        return chunks, failures

    # --- admission ----------------------------------------------------------------------------
    def _admit_next(self, failures: list[tuple[Sequence, EngineError]]) -> Sequence | None:
        pessimistic = self.config.admission == "pessimistic"
        for seq in self.waiting.heads():
            cap = self.kv_share_cap(seq)
            lifetime = self.lifetime_blocks(seq)
            held = self.tenant_blocks(seq.tenant)
            if cap is not None and held + lifetime > cap * self.num_blocks:
                continue  # this tenant is at its KV share; others may go
            try:
                self.kv.match_and_pin(seq)
            except IsolationViolation as exc:
                self.waiting.pop(seq)
                failures.append((seq, exc))
                with self.metrics.lock:
                    self.metrics.counters.isolation_violations += 1
                continue
            need = (lifetime if pessimistic else self.kv.blocks_needed(seq.num_tokens)) - len(
                seq.block_table
            )
            if need > self.kv.available_blocks() - self.outstanding_reservations():
                self._unadmit(seq)
                return None  # head of line waits for blocks; keeps arrival order fair
            self.waiting.pop(seq)
            seq.status = SeqStatus.RUNNING
            seq.reserved_blocks = lifetime if pessimistic else 0
            seq.admitted_at = time.monotonic()
            self.running.append(seq)
            with self.metrics.lock:
                c = self.metrics.counters
                c.requests_admitted += 1
                if seq.preemptions == 0:
                    c.prompt_tokens += seq.num_prompt_tokens
                    c.cached_tokens += seq.num_cached_tokens
                    c.prompt_tokens_by_tenant[seq.tenant] += seq.num_prompt_tokens
                    c.cached_tokens_by_tenant[seq.tenant] += seq.num_cached_tokens
            return seq
        return None

    def _unadmit(self, seq: Sequence) -> None:
        self.kv.release(seq)
        seq.num_computed = 0
        seq.num_cached_tokens = 0
        seq.reused = ()
        seq.kv_shift = 0
        if seq.eviction is not None:
            seq.eviction.reset()

    def _expire_waiting(self, failures: list[tuple[Sequence, EngineError]]) -> None:
        now = time.monotonic()
        for seq in list(self.waiting):
            limit = seq.request.deadline_s or self.config.queue_timeout_s
            if now - seq.arrival > limit:
                self.waiting.remove(seq)
                self.metrics.reject("queue_timeout")
                failures.append(
                    (seq, EngineOverloaded("request waited too long in the queue", limit / 2))
                )

    # --- growth and preemption ----------------------------------------------------------------
    def _grow(self, seq: Sequence, num_tokens: int, chunks: list[ScheduledChunk]) -> bool:
        """Give `seq` blocks for `num_tokens`, preempting the newest sequences if none are left.
        Returns False when `seq` itself had to be preempted."""
        while not self.kv.ensure_blocks(seq, num_tokens):
            victim = max(self.running, key=lambda s: s.admitted_at or 0.0)
            self.preempt(victim)
            chunks[:] = [c for c in chunks if c.seq is not victim]
            if victim is seq:
                return False
        return True

    def preempt(self, seq: Sequence) -> None:
        """Free a running sequence's blocks; it waits again and is recomputed from its tokens."""
        assert self.config.admission == "optimistic", "pessimistic admission never preempts"
        self.running.remove(seq)
        self._unadmit(seq)
        seq.status = SeqStatus.WAITING
        seq.reserved_blocks = 0
        seq.preemptions += 1
        self.waiting.push_front(seq)
        with self.metrics.lock:
            self.metrics.counters.preemptions += 1

    def finish(self, seq: Sequence) -> None:
        """Remove a sequence from the running set (blocks are released by the caller)."""
        if seq in self.running:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        seq.status = SeqStatus.FINISHED
