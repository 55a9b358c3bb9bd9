"""Serving settings of the engine: model location, memory, batching and admission limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KV_DTYPES = ("auto", "fp8", "int8")  # engine.kv_quant maps them to storage dtypes


@dataclass(slots=True)
class EngineConfig:
    """Everything `AsyncEngine.load` needs; validated on construction."""

    model_dir: str
    device: str = "auto"
    dtype: str | None = None
    # KV memory: an explicit block count wins, then GiB (CPU), then the fraction of free GPU memory.
    num_blocks: int | None = None
    kv_cache_gib: float | None = None
    kv_fraction: float = 0.9
    block_size: int = 16
    # KV element type: "auto" (the model dtype), "fp8" (e4m3) or "int8", per-layer per-head scales.
    kv_dtype: str = "auto"
    # Continuous batching: at most this many running sequences, and this many tokens per step
    # (decodes first, then prefill chunks fill the rest: chunked prefill).
    max_num_seqs: int = 64
    max_batch_tokens: int = 512
    # Admission: waiting requests beyond max_queue are refused; a request that waited longer
    # than queue_timeout_s is refused. "pessimistic" reserves prompt + max_tokens blocks up front;
    # "optimistic" reserves as it goes and preempts the newest sequence when blocks run out.
    max_queue: int = 256
    queue_timeout_s: float = 30.0
    admission: Literal["pessimistic", "optimistic"] = "pessimistic"
    # Shed load (429) when held blocks + running reservations + the queue's needs would pass this
    # multiple of the pool (above 1.0 lets the queue hold more than one pool's worth); None: off.
    kv_high_water: float | None = 0.95
    # Default cap on one tenant's share of the pool (running reservations), None = no cap.
    max_tenant_kv_share: float | None = None
    # Prefix-cache retention: registered prompts may be kept from eviction up to this share.
    retain_cap: float = 0.25
    # ITL guardrail: halve the prefill budget while ITL p95 exceeds this target; None: off.
    itl_target_s: float | None = 0.2
    # Replay CUDA graphs of decode batches and small one-sequence prefill chunks (CUDA only;
    # fp8/int8 KV and sliding windows run eagerly).
    cuda_graphs: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.block_size not in (16, 32):
            raise ValueError("block_size must be 16 or 32")
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if self.max_batch_tokens < self.block_size:
            raise ValueError("max_batch_tokens must be >= block_size")
        if self.max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        if self.admission not in ("pessimistic", "optimistic"):
            raise ValueError("admission must be 'pessimistic' or 'optimistic'")
        if self.kv_high_water is not None and self.kv_high_water <= 0.0:
            raise ValueError("kv_high_water must be > 0 (or None to disable shedding)")
        if self.max_tenant_kv_share is not None and not 0.0 < self.max_tenant_kv_share <= 1.0:
            raise ValueError("max_tenant_kv_share must be in (0, 1]")
        if self.itl_target_s is not None and self.itl_target_s <= 0:
            raise ValueError("itl_target_s must be > 0 (or None to disable the guardrail)")
        if self.kv_dtype not in KV_DTYPES:
            raise ValueError(f"kv_dtype must be one of {', '.join(KV_DTYPES)}")
        if not 0.0 < self.kv_fraction <= 1.0:
            raise ValueError("kv_fraction must be in (0, 1]")
