"""`EngineCore.step()` = schedule -> run the model -> postprocess. A reader starts here.

Synchronous and single-threaded: `AsyncEngine` drives it from a worker thread. Calls from other
threads (add, abort, drop, views) take `lock`, which a step holds while it schedules and while it
postprocesses, never during the forward pass.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from engine.detokenizer import IncrementalDetokenizer
from engine.engine_config import EngineConfig
from engine.engine_stats import EngineMetrics, EngineStats
from engine.errors import EngineError, EngineOverloaded, InvalidRequest, RequestAborted
from engine.kv_cache_manager import KVCacheManager
from engine.kv_eviction import EvictionState, evict, peak_kv_tokens, run_step, trim_window
from engine.messages import CacheReport, EngineRequest, RequestResult, TokenEvent
from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from engine.prefill_backoff import PrefillBackoff
from engine.sampler import Sampler
from engine.scheduler import ScheduledChunk, Scheduler
from engine.sequence import SeqStatus, Sequence
from engine.stop_checker import StopChecker
from radix import RadixTree

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StepOutput:
    """What one step produced for one request: a token event, or the error that ended it."""

    request_id: str
    event: TokenEvent | None = None
    error: EngineError | None = None


class EngineCore:
    def __init__(self, runner: ModelRunner, config: EngineConfig) -> None:
        self.runner = runner
        self.config = config
        self.lock = threading.RLock()
        self.metrics = EngineMetrics()
        self.tree = RadixTree(
            block_size=runner.block_size,
            capacity_blocks=runner.num_blocks,
            retain_cap=config.retain_cap,
        )
        self.kv = KVCacheManager(runner.allocator, self.tree, runner.block_size)
        self.scheduler = Scheduler(config, self.kv, self.metrics, window=runner.window)
        self.sampler = Sampler(runner.device)
        self.eos_token_ids = frozenset(runner.tokenizer.eos_token_ids)
        self.vocab_size = runner.config.vocab_size
        self.max_model_len = runner.max_model_len
        self._seqs: dict[str, Sequence] = {}
        self._aborts: set[str] = set()
        self.backoff = (
            PrefillBackoff(config.max_batch_tokens, runner.block_size, config.itl_target_s)
            if config.itl_target_s is not None
            else None
        )

    # --- requests in ----------------------------------------------------------------------------
    def add_request(self, request: EngineRequest) -> Sequence:
        """Validate and queue a request, or refuse it at once (InvalidRequest, EngineOverloaded)."""
        self._validate(request)
        seq = Sequence(request=request, stop=self._stop_checker(request))
        if request.kv_policy is not None:
            seq.eviction = EvictionState(request.kv_policy)
        if request.sampling.temperature > 0:
            seq.generator = self.sampler.make_generator(request.sampling.seed)
        with self.lock:
            if request.request_id in self._seqs:
                raise InvalidRequest(f"duplicate request id {request.request_id!r}")
            self._shed_check(seq)
            self.scheduler.waiting.push(seq)
            self._seqs[request.request_id] = seq
        return seq

    def abort(self, request_id: str) -> None:
        """Cancel a request; its blocks are freed at the start of the next step."""
        with self.lock:
            if request_id in self._seqs:
                self._aborts.add(request_id)

    def has_work(self) -> bool:
        return bool(self.scheduler.running or len(self.scheduler.waiting) or self._aborts)

    # --- the step ------------------------------------------------------------------------------
    def step(self) -> list[StepOutput]:
        started = time.perf_counter()
        with self.lock:
            outputs = self._apply_aborts()
            chunks, failures = self.scheduler.schedule()
            for seq, exc in failures:
                outputs.append(self._fail(seq, exc))
        runnable = [c for c in chunks if c.length > 0]
        logits = None
        if runnable:
            batch = StepBatch(
                [
                    SeqChunk(c.seq.token_ids[c.start : c.start + c.length], c.start,
                             c.seq.block_table, c.seq.kv_shift)
                    for c in runnable
                ]
            )
            try:
                logits = run_step(self.runner, batch, [c.seq for c in runnable])
            except Exception:  # an engine-step failure ends this batch's requests, not the engine
                log.exception("engine step failed; aborting %d requests", len(runnable))
                with self.lock:
                    for c in runnable:
                        outputs.append(self._fail(c.seq, RequestAborted("engine step failed")))
                return outputs
        with self.lock:
            outputs.extend(self._postprocess(chunks, runnable, logits))
            self._record_step(started, len(runnable))
        return outputs

    def _postprocess(
        self, chunks: list[ScheduledChunk], runnable: list[ScheduledChunk], logits
    ) -> list[StepOutput]:
        outputs: list[StepOutput] = []
        rows = {id(c): i for i, c in enumerate(runnable)}
        to_sample: list[tuple[ScheduledChunk, int]] = []
        for c in chunks:
            seq = c.seq
            if seq.status is not SeqStatus.RUNNING:
                continue
            seq.num_computed += c.length
            with self.metrics.lock:
                if c.length > 1 or seq.num_generated == 0:
                    self.metrics.counters.computed_prompt_tokens += c.length
            if not seq.prompt_inserted and seq.num_computed >= seq.num_prompt_tokens:
                self.kv.insert(seq, seq.num_prompt_tokens)
                seq.prompt_inserted = True
            if self.runner.window is not None:
                trim_window(seq, self.runner.window, self.kv)
            elif c.length == 1 and seq.eviction is not None:
                evict(seq, self.runner, self.kv)
            if not c.completes:
                continue
            if seq.request.sampling.max_tokens == 0:
                outputs.append(self._finish(seq, "length", None, ""))
            else:
                to_sample.append((c, rows[id(c)]))
        if to_sample:
            idx = [r for _, r in to_sample]
            seqs = [c.seq for c, _ in to_sample]
            tokens = self.sampler.sample(
                logits[idx],
                [s.request.sampling for s in seqs],
                [s.generator for s in seqs],
            )
            for seq, token in zip(seqs, tokens, strict=True):
                outputs.append(self._append_token(seq, token))
        return outputs

    def _append_token(self, seq: Sequence, token: int) -> StepOutput:
        now = time.monotonic()
        seq.token_ids.append(token)
        with self.metrics.lock:
            self.metrics.counters.generation_tokens += 1
            self.metrics.counters.generation_tokens_by_tenant[seq.tenant] += 1
            if seq.first_token_at is None:
                seq.first_token_at = now
                self.metrics.ttft.observe(now - seq.arrival)
            elif seq.last_token_at is not None:
                self.metrics.itl.observe(now - seq.last_token_at)
                if self.backoff is not None:
                    self.scheduler.prefill_budget = self.backoff.observe(now - seq.last_token_at)
        seq.last_token_at = now
        text, reason = seq.stop.push(token, seq.num_tokens)
        if reason is not None:
            return self._finish(seq, reason, token, text)
        return StepOutput(seq.request_id, TokenEvent(seq.request_id, token, text))

    # --- endings -------------------------------------------------------------------------------
    def _finish(self, seq: Sequence, reason: str, token: int | None, text: str) -> StepOutput:
        # Index prompt + output (computed tokens only) so the next turn of a chat reuses it.
        self.kv.insert(seq, seq.num_computed)
        self.kv.release(seq)
        self.scheduler.finish(seq)
        self._seqs.pop(seq.request_id, None)
        seq.finish_reason = reason
        now = time.monotonic()
        admitted = seq.admitted_at or seq.arrival
        first = seq.first_token_at or now
        result = RequestResult(
            request_id=seq.request_id,
            prompt_tokens=seq.num_prompt_tokens,
            cached_tokens=seq.num_cached_tokens,
            completion_tokens=seq.num_generated,
            finish_reason=reason,
            ttft_s=(seq.first_token_at or now) - seq.arrival,
            total_s=now - seq.arrival,
            cache=CacheReport(seq.reused, seq.num_cached_tokens, seq.inserted_blocks),
            queue_s=admitted - seq.arrival,
            prefill_s=first - admitted,
            decode_s=now - first,
        )
        with self.metrics.lock:
            self.metrics.counters.requests_finished += 1
        event = TokenEvent(seq.request_id, token, text, True, reason, result)
        return StepOutput(seq.request_id, event)

    def _fail(self, seq: Sequence, exc: EngineError) -> StepOutput:
        self.kv.release(seq)
        if seq.status is not SeqStatus.FINISHED:
            self.scheduler.finish(seq)
        self._seqs.pop(seq.request_id, None)
        return StepOutput(seq.request_id, error=exc)

    def _apply_aborts(self) -> list[StepOutput]:
        outputs = []
        for rid in self._aborts:
            seq = self._seqs.get(rid)
            if seq is not None:
                seq.aborted = True
                outputs.append(self._fail(seq, RequestAborted("request cancelled")))
        self._aborts.clear()
        return outputs

    # --- admission checks ----------------------------------------------------------------------
    def _validate(self, request: EngineRequest) -> None:
        n = request.num_prompt_tokens
        if n == 0:
            raise InvalidRequest("the prompt is empty")
        total = n + request.sampling.max_tokens
        if total > self.max_model_len:
            raise InvalidRequest(
                f"prompt ({n} tokens) plus max_tokens ({request.sampling.max_tokens}) exceeds "
                f"the model's context of {self.max_model_len} tokens"
            )
        if request.kv_policy is not None and (
            self.runner.window is not None or not self.runner.scores_supported
        ):
            raise InvalidRequest(
                "KV eviction needs full attention on the torch attention backend"
            )
        peak = peak_kv_tokens(n, total, self.runner.block_size, request.kv_policy,
                              self.runner.window)
        if self.kv.blocks_needed(peak) > self.runner.num_blocks:
            raise InvalidRequest(f"request needs more KV memory than the pool ({total} tokens)")
        if any(not 0 <= t < self.vocab_size for s in request.segments for t in s.token_ids):
            raise InvalidRequest("token id outside the vocabulary")

    def _shed_check(self, seq: Sequence) -> None:
        sched = self.scheduler
        if len(sched.waiting) >= self.config.max_queue:
            self.metrics.reject("queue_full")
            raise EngineOverloaded("the request queue is full", self._retry_after())
        need = sched.lifetime_blocks(seq)
        cap = sched.kv_share_cap(seq)
        if cap is not None and need > cap * sched.num_blocks:
            self.metrics.reject("tenant_kv_share")
            raise EngineOverloaded("request exceeds the tenant's share of the KV cache")
        high_water = self.config.kv_high_water
        if high_water is None or not (sched.running or len(sched.waiting)):
            return
        projected = (
            sched.held_blocks() + sched.outstanding_reservations() + sched.queued_need() + need
        )
        if projected > high_water * sched.num_blocks:
            self.metrics.reject("kv_high_water")
            raise EngineOverloaded("KV cache near capacity", self._retry_after())

    def _retry_after(self) -> float:
        p50 = self.metrics.ttft.quantile(0.5) or 0.5
        return max(1.0, round(2 * p50 + len(self.scheduler.waiting) * 0.05, 1))

    def _stop_checker(self, request: EngineRequest) -> StopChecker:
        return StopChecker(
            sampling=request.sampling,
            eos_token_ids=self.eos_token_ids,
            detokenizer=IncrementalDetokenizer(self.runner.tokenizer),
            max_model_len=self.max_model_len,
        )

    # --- views ---------------------------------------------------------------------------------
    def _record_step(self, started: float, batch_size: int) -> None:
        if batch_size == 0:
            return
        elapsed = time.perf_counter() - started
        with self.metrics.lock:
            self.metrics.counters.steps += 1
            self.metrics.counters.step_seconds += elapsed
            self.metrics.step_time.observe(elapsed)
            self.metrics.batch_size.observe(batch_size)

    def check_accounting(self) -> None:
        with self.lock:
            self.kv.check_accounting(self.scheduler.running)
            self.tree.check_integrity()

    def stats(self) -> EngineStats:
        with self.lock:
            sched = self.scheduler
            total = self.runner.num_blocks
            bs = self.runner.block_size
            in_use: set[int] = set()
            waste = 0  # allocated slots holding no token: each sequence's unfilled tail
            for s in sched.running:
                in_use.update(s.block_table)
                waste += max(0, len(s.block_table) * bs - (s.num_computed - s.kv_shift))
            slots = len(in_use) * bs
            cached = len(self.kv.tree_blocks - in_use)
            free = self.runner.allocator.num_free
            m = self.metrics
            c = m.counters
            return EngineStats(
                num_blocks=total,
                block_size=bs,
                free_blocks=free,
                cached_blocks=cached,
                in_use_blocks=len(in_use),
                kv_occupancy=len(in_use) / total if total else 0.0,
                fragmentation=waste / slots if slots else 0.0,
                running=len(sched.running),
                waiting=len(sched.waiting),
                reserved_blocks=sched.outstanding_reservations(),
                evicted_blocks=self.kv.evicted_blocks,
                prefix_hit_rate=c.cached_tokens / c.prompt_tokens if c.prompt_tokens else 0.0,
                counters=c,
                ttft_p50=m.ttft.quantile(0.5),
                ttft_p95=m.ttft.quantile(0.95),
                itl_p50=m.itl.quantile(0.5),
                itl_p95=m.itl.quantile(0.95),
                step_p50=m.step_time.quantile(0.5),
                prefill_budget=sched.prefill_budget,
                prefill_backoffs=self.backoff.backoffs if self.backoff else 0,
                prefill_recoveries=self.backoff.recoveries if self.backoff else 0,
            )
