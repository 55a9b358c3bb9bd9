"""`KVPool`: one tensor holding the K and V cache of every layer.

Layout `[num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim]` (index 0 = K, 1 = V),
so `kv[l, 0]` and `kv[l, 1]` are the contiguous per-layer caches the attention backends see.
"""

from __future__ import annotations

import torch


class KVPool:
    def __init__(self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int,
                 head_dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.kv = torch.zeros(num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim,
                              dtype=dtype, device=device)

    @property
    def dtype(self) -> torch.dtype:
        return self.kv.dtype

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_cache, v_cache) of one layer, each [num_blocks, block_size, Hkv, D]."""
        return self.kv[index, 0], self.kv[index, 1]

    def copy_block(self, src: int, dst: int) -> None:
        """Copy one block's K and V in every layer (copy-on-write of a shared block)."""
        self.kv[:, :, dst].copy_(self.kv[:, :, src])
