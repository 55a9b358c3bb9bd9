"""`KVPool`: one tensor holding the K and V cache of every layer.

Layout `[num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim]` (index 0 = K, 1 = V),
so `kv[l, 0]` and `kv[l, 1]` are the contiguous per-layer caches the attention backends see.
The element dtype is the model dtype, or a 1-byte quantized one (fp8 e4m3 / int8, see
engine.kv_quant), in which case the pool also holds the per-layer, per-KV-head scales.
"""

from __future__ import annotations

import torch

from engine.kv_quant import KVScales, is_quantized


class KVPool:
    def __init__(self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int,
                 head_dim: int, dtype: torch.dtype, device: torch.device,
                 scales: KVScales | None = None) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.kv = torch.zeros(num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim,
                              dtype=dtype, device=device)
        self.scales: KVScales | None = None
        if is_quantized(dtype):
            self.scales = scales or KVScales.empty(num_layers, num_kv_heads, device)
            assert tuple(self.scales.k.shape) == (num_layers, num_kv_heads)

    @property
    def dtype(self) -> torch.dtype:
        return self.kv.dtype

    @property
    def quantized(self) -> bool:
        return self.scales is not None

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_cache, v_cache) of one layer, each [num_blocks, block_size, Hkv, D]."""
        return self.kv[index, 0], self.kv[index, 1]

    def copy_block(self, src: int, dst: int) -> None:
        """Copy one block's K and V in every layer (copy-on-write of a shared block)."""
        self.kv[:, :, dst].copy_(self.kv[:, :, src])

    def move_slots(self, table: list[int], src: list[int], dst: list[int]) -> None:
        """Within one sequence (block table `table`), copy the K/V of logical slots `src` to
        logical slots `dst` in every layer (KV compaction after an eviction). All reads
        happen before any write, so overlapping moves are safe."""
        if not src:
            return
        bs = self.block_size
        blocks = torch.tensor(table, dtype=torch.int64, device=self.kv.device)
        s = torch.tensor(src, dtype=torch.int64, device=self.kv.device)
        d = torch.tensor(dst, dtype=torch.int64, device=self.kv.device)
        kv = self.kv.view(torch.uint8) if self.kv.element_size() == 1 else self.kv
        flat = kv.flatten(2, 3)  # [L, 2, num_blocks * bs, Hkv, D]
        s_flat = blocks[s // bs] * bs + s % bs
        d_flat = blocks[d // bs] * bs + d % bs
        flat[:, :, d_flat] = flat[:, :, s_flat].clone()
