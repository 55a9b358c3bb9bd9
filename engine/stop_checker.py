"""Turns sampled tokens into streamable text and decides when a request stops.

Stop strings may straddle tokens, so the last `len(longest stop) - 1` characters are held back
until they can no longer start a stop string; the stop string itself is never emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.detokenizer import IncrementalDetokenizer
from engine.messages import SamplingParams


@dataclass(slots=True)
class StopChecker:
    sampling: SamplingParams
    eos_token_ids: frozenset[int]
    detokenizer: IncrementalDetokenizer
    max_model_len: int
    num_generated: int = 0
    _held: str = field(default="")

    def push(self, token_id: int, num_tokens: int) -> tuple[str, str | None]:
        """Account one sampled token; returns (text to emit now, finish reason or None)."""
        self.num_generated += 1
        sp = self.sampling
        if token_id in sp.stop_token_ids or (
            token_id in self.eos_token_ids and not sp.ignore_eos
        ):
            return self.flush(), "stop"
        text = self._held + self.detokenizer.push(token_id)
        if sp.stop_strings:
            cut = _first_stop(text, sp.stop_strings)
            if cut is not None:
                self._held = ""
                return text[:cut], "stop"
        if self.num_generated >= sp.max_tokens or num_tokens >= self.max_model_len:
            self._held = ""
            return text, "length"
        keep = max((len(s) for s in sp.stop_strings), default=1) - 1
        if keep <= 0:
            self._held = ""
            return text, None
        self._held = text[-keep:]
        return text[:-keep], None

    def flush(self) -> str:
        """Release held-back text (the stream ends without a stop string)."""
        text, self._held = self._held, ""
        return text


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
