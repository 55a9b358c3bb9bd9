"""Engine metrics as plain counters and latency windows; the gateway exports them.

Kept free of any metrics library so the engine stays embeddable; `EngineStats` is a snapshot.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field


class LatencyWindow:
    """The last `size` observations (seconds), for p50/p95 readouts, plus lifetime count/sum."""

    def __init__(self, size: int = 2048) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self._values.append(value)
        self.count += 1
        self.total += value

    def quantile(self, q: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def recent(self) -> list[float]:
        return list(self._values)


@dataclass(slots=True)
class EngineCounters:
    """Monotonic totals since start, updated by the step loop."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    computed_prompt_tokens: int = 0
    generation_tokens: int = 0
    requests_admitted: int = 0
    requests_finished: int = 0
    preemptions: int = 0
    isolation_violations: int = 0
    steps: int = 0
    step_seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    prompt_tokens_by_tenant: Counter[str] = field(default_factory=Counter)
    cached_tokens_by_tenant: Counter[str] = field(default_factory=Counter)
    generation_tokens_by_tenant: Counter[str] = field(default_factory=Counter)


class EngineMetrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters = EngineCounters()
        self.ttft = LatencyWindow()
        self.itl = LatencyWindow()
        self.step_time = LatencyWindow()
        self.batch_size = LatencyWindow()

    def reject(self, reason: str) -> None:
        with self.lock:
            self.counters.rejected[reason] += 1


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A point-in-time view of the engine for /metrics and the admin API."""

    num_blocks: int
    block_size: int
    free_blocks: int
    cached_blocks: int
    in_use_blocks: int
    kv_occupancy: float
    fragmentation: float
    running: int
    waiting: int
    reserved_blocks: int
    evicted_blocks: int
    prefix_hit_rate: float
    counters: EngineCounters
    ttft_p50: float | None
    ttft_p95: float | None
    itl_p50: float | None
    itl_p95: float | None
    step_p50: float | None
    prefill_budget: int
    prefill_backoffs: int
    prefill_recoveries: int
