"""Random paged-attention cases and a dense reference, shared by the CPU interpreter tests and
bench/gpu_check.py: the kernels are checked on the same kind of inputs in both places."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class PagedCase:
    """One batch of varlen queries over a randomly scattered paged KV cache."""

    q: torch.Tensor  # [T, Hq, D]
    k_cache: torch.Tensor  # [num_blocks, block_size, Hkv, D]
    v_cache: torch.Tensor
    block_tables: torch.Tensor  # int32 [B, max_blocks]
    seq_lens: torch.Tensor  # int32 [B]
    query_start_loc: torch.Tensor  # int32 [B+1]
    query_lens: list[int]
    kv_lens: list[int]
    scale: float

    @property
    def max_query_len(self) -> int:
        return max(self.query_lens)

    @property
    def max_seq_len(self) -> int:
        return max(self.kv_lens)


def make_case(query_lens: list[int], kv_lens: list[int], num_q_heads: int, num_kv_heads: int,
              head_dim: int, block_size: int, dtype: torch.dtype, device: torch.device | str,
              seed: int = 0, spare_blocks: int = 3, poison: bool = True) -> PagedCase:
    """Blocks of each sequence are a random permutation of the pool (no two sequences share one);
    padding entries of the block tables point at a valid spare block. With `poison`, every slot
    that no sequence owns (tails of last blocks, spare blocks) holds NaN, so a kernel that reads
    past a sequence's length produces NaN instead of a plausible answer."""
    assert all(0 < q <= s for q, s in zip(query_lens, kv_lens, strict=True))
    gen = torch.Generator(device=device).manual_seed(seed)
    blocks_per_seq = [-(-s // block_size) for s in kv_lens]
    num_blocks = sum(blocks_per_seq) + spare_blocks
    max_blocks = max(blocks_per_seq) + 1
    perm = torch.randperm(num_blocks, generator=gen, device=device).cpu()
    tables = torch.full((len(kv_lens), max_blocks), int(perm[-1]), dtype=torch.int32)
    used = 0
    for b, n in enumerate(blocks_per_seq):
        tables[b, :n] = perm[used:used + n].to(torch.int32)
        used += n
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    k_cache = torch.randn(shape, generator=gen, device=device).to(dtype)
    v_cache = torch.randn(shape, generator=gen, device=device).to(dtype)
    if poison:
        owned = torch.zeros(num_blocks, block_size, dtype=torch.bool)
        for b, s_len in enumerate(kv_lens):
            pos = torch.arange(s_len)
            owned[tables[b, pos // block_size].long(), pos % block_size] = True
        unowned = (~owned).to(device)
        k_cache[unowned] = float("nan")
        v_cache[unowned] = float("nan")
    q = torch.randn(sum(query_lens), num_q_heads, head_dim, generator=gen,
                    device=device).to(dtype)
    qsl = torch.zeros(len(query_lens) + 1, dtype=torch.int32)
    qsl[1:] = torch.cumsum(torch.tensor(query_lens), 0)
    return PagedCase(
        q=q, k_cache=k_cache, v_cache=v_cache,
        block_tables=tables.to(device), seq_lens=torch.tensor(kv_lens, dtype=torch.int32,
                                                             device=device),
        query_start_loc=qsl.to(device), query_lens=list(query_lens), kv_lens=list(kv_lens),
        scale=head_dim ** -0.5,
    )


def reference_attention(case: PagedCase) -> torch.Tensor:
    """Dense fp32 attention per sequence: gather its slots, causal mask at absolute positions."""
    num_kv_heads, block_size = case.k_cache.shape[2], case.k_cache.shape[1]
    group = case.q.shape[1] // num_kv_heads
    out = torch.empty(case.q.shape, dtype=torch.float32, device=case.q.device)
    starts = case.query_start_loc.tolist()
    tables = case.block_tables.tolist()
    for b, (q_len, s_len) in enumerate(zip(case.query_lens, case.kv_lens, strict=True)):
        pos = torch.arange(s_len, device=case.q.device)
        blk = torch.tensor(tables[b], device=case.q.device)[pos // block_size]
        k = case.k_cache[blk, pos % block_size].float().repeat_interleave(group, dim=1)
        v = case.v_cache[blk, pos % block_size].float().repeat_interleave(group, dim=1)
        q = case.q[starts[b]:starts[b] + q_len].float()
        scores = torch.einsum("qhd,khd->hqk", q, k) * case.scale
        q_pos = torch.arange(s_len - q_len, s_len, device=case.q.device)
        scores.masked_fill_(pos[None, None, :] > q_pos[None, :, None], float("-inf"))
        out[starts[b]:starts[b] + q_len] = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)
    return out


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (NaN in `got` counts as infinite error)."""
    diff = (got.float() - want.float()).abs()
    if not torch.isfinite(diff).all():
        return float("inf")
    return float(diff.max() / want.float().abs().max().clamp_min(1e-6))
