"""Guardrail: when inter-token latency rises, prefill less per step so decodes keep flowing.

Every `window` decode tokens the p95 of the ITLs seen in that window is compared with the
target: above it the prefill token budget halves (never below one block); at or below
`recover_ratio` x target it grows back one step (doubling) toward the configured maximum.
Each change is logged and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PrefillBackoff:
    max_budget: int
    min_budget: int
    itl_target_s: float
    window: int = 64
    recover_ratio: float = 0.8
    budget: int = 0
    backoffs: int = 0
    recoveries: int = 0
    _samples: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.budget = self.max_budget

    def observe(self, itl_s: float) -> int:
        """Record one inter-token latency; returns the (possibly new) prefill budget."""
        self._samples.append(itl_s)
        if len(self._samples) < self.window:
            return self.budget
        ordered = sorted(self._samples)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        self._samples.clear()
        if p95 > self.itl_target_s and self.budget > self.min_budget:
            self.budget = max(self.min_budget, self.budget // 2)
            self.backoffs += 1
            log.warning("ITL p95 %.1f ms > target %.1f ms: prefill budget -> %d tokens",
                        p95 * 1e3, self.itl_target_s * 1e3, self.budget)
        elif p95 <= self.recover_ratio * self.itl_target_s and self.budget < self.max_budget:
            self.budget = min(self.max_budget, self.budget * 2)
            self.recoveries += 1
            log.info("ITL p95 %.1f ms recovered: prefill budget -> %d tokens",
                     p95 * 1e3, self.budget)
        return self.budget
