"""Torch reference of the paged attention contract (CPU path, and the oracle for Triton).

Softmax runs in fp32. Only KV slots below each sequence's length are read into the result:
masked positions get zero weight and their values are zeroed, so stale or NaN slots in the
pool cannot leak in.

Optional extensions (all off by default; the default path is unchanged):
- `k_scale`, `v_scale` (fp32 [Hkv]): the caches hold fp8/int8 values, quantized on store and
  dequantized on read (engine.kv_quant).
- `window`: sliding-window attention; the query at KV slot i sees slots i - window < j <= i.
- `head_mask` (bool [B, Hkv, S]): per-KV-head visibility of each slot (adaptive eviction).
- `scores_out` (fp32 [B, Hkv, >= S]): attention probabilities are added into it, summed over
  the query heads of each KV group and over the chunk's queries (H2O accumulation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.kv_quant import dequantize, quantize


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor, k_scale: torch.Tensor | None = None,
             v_scale: torch.Tensor | None = None) -> None:
    """k, v: [T, Hkv, D] -> flat slots `slot_mapping` (int64 [T]; negative slots are skipped).
    With scales, k and v are quantized to the cache dtype first."""
    flat_k = k_cache.view(-1, *k_cache.shape[2:])
    flat_v = v_cache.view(-1, *v_cache.shape[2:])
    keep = slot_mapping >= 0
    if not bool(keep.all()):
        k, v, slot_mapping = k[keep], v[keep], slot_mapping[keep]
    if k_scale is not None and v_scale is not None:
        k = quantize(k, k_scale, flat_k.dtype)
        v = quantize(v, v_scale, flat_v.dtype)
    if flat_k.dtype == torch.float8_e4m3fn:  # CPU torch copies fp8 as raw bytes
        flat_k, flat_v, k, v = (x.view(torch.uint8) for x in (flat_k, flat_v, k, v))
    flat_k.index_copy_(0, slot_mapping, k.to(flat_k.dtype))
    flat_v.index_copy_(0, slot_mapping, v.to(flat_v.dtype))


def _read(x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    return x.float() if scale is None else dequantize(x, scale)


def _gather(cache: torch.Tensor, block_tables: torch.Tensor, max_seq_len: int) -> torch.Tensor:
    """[num_blocks, bs, Hkv, D] by [B, nb] -> [B, S, Hkv, D], S = max_seq_len clipped to what
    the block tables can address."""
    bs = cache.shape[1]
    nb = min(-(-max_seq_len // bs), block_tables.shape[1])
    blocks = _take(cache, block_tables[:, :nb].long())  # [B, nb, bs, Hkv, D]
    return blocks.flatten(1, 2)[:, :max_seq_len]


def _take(cache: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """cache[index] (fp8 caches are indexed as raw bytes: CPU torch cannot gather fp8)."""
    if cache.dtype == torch.float8_e4m3fn:
        return cache.view(torch.uint8)[index].view(cache.dtype)
    return cache[index]


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                 max_seq_len: int, *, k_scale: torch.Tensor | None = None,
                 v_scale: torch.Tensor | None = None, window: int | None = None,
                 head_mask: torch.Tensor | None = None,
                 scores_out: torch.Tensor | None = None) -> torch.Tensor:
    """q: [B, Hq, D], one query per sequence at position seq_lens[b] - 1 -> [B, Hq, D]."""
    b, hq, d = q.shape
    hkv = k_cache.shape[2]
    k = _read(_gather(k_cache, block_tables, max_seq_len), k_scale)  # [B, S, Hkv, D]
    v = _read(_gather(v_cache, block_tables, max_seq_len), v_scale)
    slots = torch.arange(k.shape[1], device=q.device)[None, :]
    valid = slots < seq_lens[:, None]  # [B, S]
    if window is not None:
        valid = valid & (slots > seq_lens[:, None] - 1 - window)
    v = torch.where(valid[:, :, None, None], v, 0.0)
    qg = q.float().view(b, hkv, hq // hkv, d)
    scores = torch.einsum("bhgd,bshd->bhgs", qg, k) * scale
    visible = valid[:, None, None, :]
    if head_mask is not None:
        visible = visible & head_mask[:, :, None, : k.shape[1]]
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = scores.softmax(dim=-1)
    if scores_out is not None:
        scores_out[:, :, : k.shape[1]] += probs.sum(dim=2)
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


def _prefill_explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                      window: int | None, head_mask: torch.Tensor | None,
                      scores_out: torch.Tensor | None) -> torch.Tensor:
    """`_prefill_one` with the optional window, per-head mask and score accumulation, written
    out (softmax probabilities are materialized). head_mask: [Hkv, S]; scores_out: [Hkv, >=S]."""
    q_len, hq, d = q.shape
    s_len, hkv = k.shape[0], k.shape[1]
    q_pos = torch.arange(s_len - q_len, s_len, device=q.device)[:, None]  # [L, 1]
    kv_pos = torch.arange(s_len, device=q.device)[None, :]  # [1, S]
    mask = kv_pos <= q_pos
    if window is not None:
        mask = mask & (kv_pos > q_pos - window)
    qg = q.float().view(q_len, hkv, hq // hkv, d)
    scores = torch.einsum("lhgd,shd->hgls", qg, k.float()) * scale  # [Hkv, G, L, S]
    visible = mask[None, None]  # [1, 1, L, S]
    if head_mask is not None:  # a token always sees itself, whatever its head keeps
        kept = head_mask[:, None, None, :s_len] | (kv_pos == q_pos)[None, None]
        visible = visible & kept
    probs = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
    if scores_out is not None:
        scores_out[:, :s_len] += probs.sum(dim=(1, 2))
    out = torch.einsum("hgls,shd->lhgd", probs, v.float())
    return out.reshape(q_len, hq, d).to(q.dtype)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    block_tables: torch.Tensor, seq_lens: torch.Tensor,
                    query_start_loc: torch.Tensor, scale: float, max_query_len: int,
                    max_seq_len: int, *, k_scale: torch.Tensor | None = None,
                    v_scale: torch.Tensor | None = None, window: int | None = None,
                    head_mask: torch.Tensor | None = None,
                    scores_out: torch.Tensor | None = None) -> torch.Tensor:
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
        hm = head_mask[sel] if head_mask is not None else None
        acc = scores_out[sel].clone() if scores_out is not None else None
        out[rows] = paged_decode(q[rows], k_cache, v_cache, block_tables[sel], seq_lens[sel],
                                 scale, max(lens[b] for b in decodes), k_scale=k_scale,
                                 v_scale=v_scale, window=window, head_mask=hm,
                                 scores_out=acc)
        if scores_out is not None and acc is not None:
            scores_out[sel] = acc
    bs = k_cache.shape[1]
    explicit = window is not None or head_mask is not None or scores_out is not None
    for b in range(len(lens)):
        lo, hi = starts[b], starts[b + 1]
        if hi - lo <= 1:
            continue
        s_len = lens[b]
        blocks = block_tables[b, : -(-s_len // bs)].long()
        k = _take(k_cache, blocks).flatten(0, 1)[:s_len]
        v = _take(v_cache, blocks).flatten(0, 1)[:s_len]
        if k_scale is not None and v_scale is not None:
            k, v = dequantize(k, k_scale), dequantize(v, v_scale)
        if explicit:
            out[lo:hi] = _prefill_explicit(
                q[lo:hi], k, v, scale, window,
                head_mask[b] if head_mask is not None else None,
                scores_out[b] if scores_out is not None else None)
        else:
            out[lo:hi] = _prefill_one(q[lo:hi], k, v, scale)
    return out
