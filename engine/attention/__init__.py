"""Paged attention backends: Triton kernels on CUDA, the torch reference elsewhere.

Both modules implement the same contract over a per-layer KV cache
`[num_blocks, block_size, num_kv_heads, head_dim]`, where position p of a sequence with block
table `bt` lives at flat slot `bt[p // block_size] * block_size + p % block_size`:

- `store_kv(k, v, k_cache, v_cache, slot_mapping)`: k, v [T, Hkv, D]; int64 slots [T]
  (negative slots are skipped: padding rows of captured decode batches).
- `paged_attention(q, k_cache, v_cache, block_tables, seq_lens, query_start_loc, scale,
  max_query_len, max_seq_len)`: packed varlen q [T, Hq, D] of B sequences; block_tables int32
  [B, max_blocks]; seq_lens int32 [B] counts this step's tokens; query_start_loc int32 [B + 1].
  Query j of sequence b sits at position seq_lens[b] - q_len_b + j and attends causally to
  positions 0..that one. Returns [T, Hq, D] in q's dtype; softmax in fp32.
- `paged_decode(q, k_cache, v_cache, block_tables, seq_lens, scale, max_seq_len)`: q [B, Hq, D],
  one query per sequence at position seq_lens[b] - 1.
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch

log = logging.getLogger(__name__)


def backend_for(device: torch.device) -> ModuleType:
    """The attention module for a device: Triton on CUDA (when importable), torch otherwise."""
    if device.type == "cuda":
        try:
            from engine.attention import triton_paged
        except ImportError:
            log.warning("triton is not importable: CUDA runs the (slow) torch attention path")
        else:
            return triton_paged
    from engine.attention import torch_paged

    return torch_paged
