"""`Sequence`: the one state object each engine stage advances, in a fixed order.

waiting -> (admitted: prefix matched, blocks pinned) -> running: prefill chunks -> decode steps
-> finished. A preempted sequence goes back to waiting with its generated tokens kept and is
recomputed later.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.messages import EngineRequest, ReusedBlock

if TYPE_CHECKING:
    from engine.kv_eviction import EvictionState
    from engine.stop_checker import StopChecker


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True)
class Sequence:
    """A request inside the engine: its tokens, KV blocks, cache reuse and timing."""

    request: EngineRequest
    stop: StopChecker
    arrival: float = field(default_factory=time.monotonic)
    status: SeqStatus = SeqStatus.WAITING
    token_ids: list[int] = field(default_factory=list)
    num_prompt_tokens: int = 0
    # Tokens whose K/V are in the pool (reused prefix + computed chunks).
    num_computed: int = 0
    block_table: list[int] = field(default_factory=list)
    # Prefix-cache state: the pinned radix node, reused blocks (with owners), and what we inserted.
    cache_node: object | None = None
    num_cached_tokens: int = 0
    reused: tuple[ReusedBlock, ...] = ()
    inserted_blocks: int = 0
    prompt_inserted: bool = False
    # Pessimistic admission: total blocks this sequence may ever hold.
    reserved_blocks: int = 0
    admitted_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finish_reason: str | None = None
    aborted: bool = False
    preemptions: int = 0
    # Per-request RNG (seeded when the request gives a seed) so sampling is reproducible.
    generator: object | None = None
    # Tokens dropped from the KV (sliding window, eviction): position p lives at slot
    # p - kv_shift of block_table. A sequence with kv_shift > 0 is never inserted for reuse.
    kv_shift: int = 0
    eviction: EvictionState | None = None  # set when the request carries a KVPolicy

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = self.request.token_ids
            self.num_prompt_tokens = len(self.token_ids)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def tenant(self) -> str:
        return self.request.tenant

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def max_total_tokens(self) -> int:
        return self.num_prompt_tokens + self.request.sampling.max_tokens

    @property
    def num_uncomputed(self) -> int:
        """Tokens still without K/V: the prompt (or a recompute after preemption), else 1."""
        return self.num_tokens - self.num_computed

    @property
    def generated_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]
