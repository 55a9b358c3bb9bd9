"""`MemoryPlan`: how many KV blocks fit, and why.

On CUDA the pool takes `kv_fraction` of the memory still free after the weights are loaded and
a measured activation workspace is set aside (a max-size dummy step, read from
`torch.cuda.max_memory_allocated`). On CPU it takes a configured number of GiB. An explicit
block count overrides both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.config import ModelConfig
from engine.errors import EngineError

GIB = 1 << 30
DEFAULT_CPU_KV_GIB = 0.25


class InsufficientMemory(EngineError):
    """The device has no room for even one KV block per sequence slot."""


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    device: str
    bytes_per_token: int  # 2 (K and V) x layers x kv_heads x head_dim x bytes per element
    block_size: int
    num_blocks: int
    weights_bytes: int
    workspace_bytes: int  # peak activation memory of a max-size step (CUDA; 0 on CPU)
    free_bytes: int | None  # device memory free after weights (CUDA; None on CPU)
    source: str  # "num_blocks", "kv_cache_gib" or "kv_fraction"
    kv_dtype: str = "auto"  # KV element type: "auto" (= model dtype), "fp8" or "int8"

    @property
    def block_bytes(self) -> int:
        return self.bytes_per_token * self.block_size

    @property
    def kv_bytes(self) -> int:
        return self.block_bytes * self.num_blocks

    @property
    def num_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def summary(self) -> str:
        return (
            f"KV pool: {self.num_blocks} blocks x {self.block_size} tokens "
            f"({self.kv_bytes / GIB:.2f} GiB, {self.bytes_per_token} bytes/token "
            f"as {self.kv_dtype}, "
            f"sized by {self.source}); weights {self.weights_bytes / GIB:.2f} GiB, "
            f"workspace {self.workspace_bytes / GIB:.2f} GiB"
        )


def bytes_per_token(config: ModelConfig, dtype: torch.dtype) -> int:
    """KV bytes of one token; `dtype` is the KV element type (1 byte for fp8/int8: the
    per-layer, per-head scales are a fixed few bytes, not per token)."""
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * elem


def plan_memory(config: ModelConfig, dtype: torch.dtype, device: torch.device, *,
                block_size: int, weights_bytes: int, num_blocks: int | None = None,
                kv_cache_gib: float | None = None, kv_fraction: float = 0.9,
                measure_workspace: Callable[[], int] | None = None,
                kv_dtype: str = "auto") -> MemoryPlan:
    """Size the KV pool. `measure_workspace` runs a max-size dummy step and returns its peak
    activation bytes; it is only called when the fraction of free CUDA memory decides.
    `dtype` is the KV element dtype (the model dtype, or fp8/int8 named by `kv_dtype`)."""
    per_token = bytes_per_token(config, dtype)
    block = per_token * block_size
    workspace, free, source = 0, None, "num_blocks"
    if num_blocks is None:
        if kv_cache_gib is not None or device.type != "cuda":
            gib = DEFAULT_CPU_KV_GIB if kv_cache_gib is None else kv_cache_gib
            num_blocks, source = int(gib * GIB) // block, "kv_cache_gib"
        else:
            assert 0.0 < kv_fraction <= 1.0
            workspace = measure_workspace() if measure_workspace is not None else 0
            free = torch.cuda.mem_get_info(device)[0]
            num_blocks = int(kv_fraction * max(0, free - workspace)) // block
            source = "kv_fraction"
    if num_blocks < 1:
        raise InsufficientMemory(
            f"no room for the KV cache on {device}: {block} bytes per block, "
            f"{free if free is not None else kv_cache_gib} free/configured"
        )
    return MemoryPlan(device=str(device), bytes_per_token=per_token, block_size=block_size,
                      num_blocks=num_blocks, weights_bytes=weights_bytes,
                      workspace_bytes=workspace, free_bytes=free, source=source,
                      kv_dtype=kv_dtype)


def measure_peak(device: torch.device, run: Callable[[], None]) -> int:
    """Bytes a call allocates at its peak beyond what was allocated before it (CUDA)."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    torch.cuda.empty_cache()
    return max(0, peak)
