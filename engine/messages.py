"""The engine's boundary: what a caller submits and what comes back, as small frozen dataclasses.

The gateway builds an `EngineRequest` from a canonical prompt; the engine answers with a stream
of `TokenEvent`s, the last of which carries the `RequestResult` (usage, timing, `CacheReport`).
The engine treats namespaces as opaque bytes: it never knows tenants or prompt variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PromptSegment:
    """A run of prompt tokens and the namespace its KV may be cached under.

    `namespace=None` marks a segment that is never cached nor reused; matching and inserting
    stop at the first such segment.
    """

    namespace: bytes | None
    token_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens. `top_k=0` and `top_p=1.0` disable those filters."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")


@dataclass(frozen=True, slots=True)
class KVPolicy:
    """Per-request KV eviction inside the sequence (opt-in; None on a request = full KV).

    "h2o" keeps `sink_tokens` first tokens, the `recent_tokens` newest ones and the
    `heavy_tokens` middle tokens with the most accumulated attention; "adaptive" (FastGen-style)
    profiles each attention head once and gives it the cheapest view (sinks only, sinks + a
    local window, or everything kept) that holds `min_mass` of its attention, and spends the
    same total budget where the heads need it. KV compressed this way is never cached for reuse.
    """

    kind: str = "h2o"  # "h2o" | "adaptive"
    sink_tokens: int = 4
    recent_tokens: int = 64
    heavy_tokens: int = 64
    min_mass: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in ("h2o", "adaptive"):
            raise ValueError("KVPolicy.kind must be 'h2o' or 'adaptive'")
        if self.sink_tokens < 0 or self.recent_tokens < 1 or self.heavy_tokens < 0:
            raise ValueError("KVPolicy needs sink_tokens >= 0, recent_tokens >= 1, heavy >= 0")
        if not 0.0 < self.min_mass <= 1.0:
            raise ValueError("KVPolicy.min_mass must be in (0, 1]")

    @property
    def budget(self) -> int:
        """KV tokens kept right after an eviction."""
        return self.sink_tokens + self.recent_tokens + self.heavy_tokens


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One generation request.

    `tenant` is a fairness and KV-share key for the scheduler, nothing more; `max_kv_share`
    caps the share of the KV pool this tenant's running requests may reserve (None: the engine
    default); `deadline_s` bounds the seconds the request may wait in the queue.
    """

    request_id: str
    segments: tuple[PromptSegment, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    tenant: str = ""
    priority: int = 0
    deadline_s: float | None = None
    max_kv_share: float | None = None
    kv_policy: KVPolicy | None = None  # in-sequence KV eviction (opt-in)

    @property
    def num_prompt_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.segments)

    @property
    def token_ids(self) -> list[int]:
        return [t for s in self.segments for t in s.token_ids]


@dataclass(frozen=True, slots=True)
class ReusedBlock:
    """A cached KV block reused by a request, with the namespace that computed (owns) it."""

    block_id: int
    namespace: bytes


@dataclass(frozen=True, slots=True)
class CacheReport:
    """Which cached blocks a request reused; the audit trail records exactly this."""

    reused: tuple[ReusedBlock, ...] = ()
    cached_tokens: int = 0
    inserted_blocks: int = 0

    @property
    def namespaces(self) -> tuple[bytes, ...]:
        return tuple(dict.fromkeys(b.namespace for b in self.reused))


@dataclass(frozen=True, slots=True)
class RequestResult:
    """Usage and timing of a finished request."""

    request_id: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    finish_reason: str
    ttft_s: float
    total_s: float
    cache: CacheReport
    # Phases (seconds): waiting for admission, admission -> first token, first token -> end.
    queue_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One step of a request's stream: a new token and the text it completes.

    `text` is the newly decodable text (may be empty while a multi-byte character is pending).
    The final event has `finished=True`, a `finish_reason` ("stop", "length", "abort") and the
    `result`; it may carry no token (`token_id=None`), e.g. when a stop string ends the stream.
    """

    request_id: str
    token_id: int | None
    text: str
    finished: bool = False
    finish_reason: str | None = None
    result: RequestResult | None = None
