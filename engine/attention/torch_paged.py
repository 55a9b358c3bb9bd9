"""Torch reference of the paged attention contract (CPU path, and the oracle for Triton).

Softmax runs in fp32. Only KV slots below each sequence's length are read into the result:
masked positions get zero weight and their values are zeroed, so stale or NaN slots in the
pool cannot leak in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    """k, v: [T, Hkv, D] -> flat slots `slot_mapping` (int64 [T]; negative slots are skipped)."""
    flat_k = k_cache.view(-1, *k_cache.shape[2:])
    flat_v = v_cache.view(-1, *v_cache.shape[2:])
    keep = slot_mapping >= 0
    if not bool(keep.all()):
        k, v, slot_mapping = k[keep], v[keep], slot_mapping[keep]
    flat_k.index_copy_(0, slot_mapping, k.to(flat_k.dtype))
    flat_v.index_copy_(0, slot_mapping, v.to(flat_v.dtype))


def _gather(cache: torch.Tensor, block_tables: torch.Tensor, max_seq_len: int) -> torch.Tensor:
    """[num_blocks, bs, Hkv, D] by [B, nb] -> [B, S, Hkv, D], S = max_seq_len clipped to what
    the block tables can address."""
    bs = cache.shape[1]
    nb = min(-(-max_seq_len // bs), block_tables.shape[1])
    blocks = cache[block_tables[:, :nb].long()]  # [B, nb, bs, Hkv, D]
    return blocks.flatten(1, 2)[:, :max_seq_len]


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                 max_seq_len: int) -> torch.Tensor:
    """q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1 -> [B, Hq, D]."""
    b, hq, d = q.shape
    hkv = k_cache.shape[2]
    k = _gather(k_cache, block_tables, max_seq_len).float()  # [B, S, Hkv, D]
    v = _gather(v_cache, block_tables, max_seq_len).float()
    valid = torch.arange(k.shape[1], device=q.device)[None, :] < seq_lens[:, None]  # [B, S]
    v = torch.where(valid[:, :, None, None], v, 0.0)
    qg = q.float().view(b, hkv, hq // hkv, d)
    scores = torch.einsum("bhgd,bshd->bhgs", qg, k) * scale
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    probs = scores.softmax(dim=-1)
    out = torch.einsum("bhgs,bshd->bhgd", probs, v)
    return out.reshape(b, hq, d).to(q.dtype)


def _prefill_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q: [L, Hq, D] ending at the last of k's S positions; k, v: [S, Hkv, D] -> [L, Hq, D]."""
    q_len, s_len = q.shape[0], k.shape[0]
    qt = q.float().transpose(0, 1)[None]  # [1, Hq, L, D]
    kt = k.float().transpose(0, 1)[None]  # [1, Hkv, S, D]
    vt = v.float().transpose(0, 1)[None]
    q_pos = torch.arange(s_len - q_len, s_len, device=q.device)
    mask = torch.arange(s_len, device=q.device)[None, :] <= q_pos[:, None]  # [L, S]
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale,
                                         enable_gqa=kt.shape[1] != qt.shape[1])
    return out[0].transpose(0, 1).to(q.dtype)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    block_tables: torch.Tensor, seq_lens: torch.Tensor,
                    query_start_loc: torch.Tensor, scale: float, max_query_len: int,
                    max_seq_len: int) -> torch.Tensor:
    """Packed varlen queries q: [T, Hq, D] of B sequences -> [T, Hq, D] (see __init__ contract).

    One-token queries (decodes) run batched through `paged_decode`; each longer chunk gathers
    its own blocks and attends causally to its cached prefix and itself.
    """
    out = torch.empty_like(q)
    starts = query_start_loc.tolist()
    lens = seq_lens.tolist()
    decodes = [b for b in range(len(lens)) if starts[b + 1] - starts[b] == 1]
    if decodes:
        rows = torch.tensor([starts[b] for b in decodes], device=q.device)
        sel = torch.tensor(decodes, device=q.device)
        out[rows] = paged_decode(q[rows], k_cache, v_cache, block_tables[sel], seq_lens[sel],
                                 scale, max(lens[b] for b in decodes))
    bs = k_cache.shape[1]
    for b in range(len(lens)):
        lo, hi = starts[b], starts[b + 1]
        if hi - lo <= 1:
            continue
        s_len = lens[b]
        blocks = block_tables[b, : -(-s_len // bs)].long()
        k = k_cache[blocks].flatten(0, 1)[:s_len]
        v = v_cache[blocks].flatten(0, 1)[:s_len]
        out[lo:hi] = _prefill_one(q[lo:hi], k, v, scale)
    return out
