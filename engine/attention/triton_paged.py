"""Triton paged attention: split-KV GQA decode, varlen prefill over a paged prefix, KV store.

Implements the attention contract of engine/attention (same signatures as torch_paged.py).
The KV cache per layer is `[num_blocks, block_size, num_kv_heads, head_dim]`; a token at
position p of a sequence lives at `block_table[p // block_size] * block_size + p % block_size`.

Decode reads each KV tile once per KV head for all G query heads of its group (GQA), splits
long contexts into partitions that run in parallel and merges them with a log-sum-exp reduce.
Prefill tiles queries x KV positions with an online softmax, causal inside the chunk.
Every launch is free of host syncs (split counts come from host ints), so decode can be
captured in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import triton
import triton.language as tl

_LOG2E = 1.4426950408889634


@dataclass(slots=True)
class DecodeTuning:
    """Launch parameters of the decode kernels (bench/gpu_check.py sweeps them on the device)."""

    block_n: int = 64  # KV positions per inner tile (H100 sweep: 64/4 warps/3 stages ~ best)
    num_warps: int = 4
    num_stages: int = 3
    min_partition: int = 256  # never split a sequence into partitions shorter than this
    waves: int = 2  # aim for this many programs per SM before splitting stops


@dataclass(slots=True)
class PrefillTuning:
    """Launch parameters of the prefill kernel."""

    block_m: int = 64
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 2


DECODE_TUNING = DecodeTuning()
PREFILL_TUNING = PrefillTuning()


@triton.jit
def _store_kv_kernel(
    k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh, stride_cslot, stride_chead,
    D: tl.constexpr, BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0)
    h = tl.program_id(1)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot >= 0:
        offs_d = tl.arange(0, BLOCK_D)
        d_mask = offs_d < D
        k = tl.load(k_ptr + t * stride_kt + h * stride_kh + offs_d, mask=d_mask)
        v = tl.load(v_ptr + t * stride_vt + h * stride_vh + offs_d, mask=d_mask)
        dst = slot * stride_cslot + h * stride_chead + offs_d
        tl.store(k_cache_ptr + dst, k, mask=d_mask)
        tl.store(v_cache_ptr + dst, v, mask=d_mask)


@triton.jit
def _decode_split_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, bt_ptr, seq_lens_ptr,
    out_ptr, part_out_ptr, part_lse_ptr,
    scale_log2e, partition_tokens,
    stride_qb, stride_qh, stride_ob, stride_oh,
    stride_cblk, stride_cslot, stride_chead, stride_btb,
    stride_pb, stride_ph, stride_ps, stride_lb, stride_lh,
    G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, SINGLE_SPLIT: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + b)
    start = split * partition_tokens
    if start < seq_len:
        end = tl.minimum(start + partition_tokens, seq_len)
        offs_g = tl.arange(0, BLOCK_G)
        offs_d = tl.arange(0, BLOCK_D)
        offs_n = tl.arange(0, BLOCK_N)
        g_mask = offs_g < G
        d_mask = offs_d < D
        heads = kvh * G + offs_g
        q = tl.load(
            q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
            mask=g_mask[:, None] & d_mask[None, :], other=0.0,
        )
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
        for n0 in range(start, end, BLOCK_N):
            pos = n0 + offs_n
            n_mask = pos < end
            blk = tl.load(bt_ptr + b * stride_btb + pos // BLOCK_SIZE, mask=n_mask, other=0)
            row = (blk.to(tl.int64) * stride_cblk + (pos % BLOCK_SIZE) * stride_cslot
                   + kvh * stride_chead)
            kv_mask = n_mask[:, None] & d_mask[None, :]
            k = tl.load(k_cache_ptr + row[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale_log2e
            s = tl.where(n_mask[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_cache_ptr + row[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        acc = acc / l_i[:, None]
        out_mask = g_mask[:, None] & d_mask[None, :]
        if SINGLE_SPLIT:
            tl.store(
                out_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                acc.to(out_ptr.dtype.element_ty), mask=out_mask,
            )
        else:
            tl.store(
                part_out_ptr + b * stride_pb + heads[:, None] * stride_ph + split * stride_ps
                + offs_d[None, :],
                acc, mask=out_mask,
            )
            tl.store(part_lse_ptr + b * stride_lb + heads * stride_lh + split,
                     m_i + tl.log2(l_i), mask=g_mask)


@triton.jit
def _decode_reduce_kernel(
    out_ptr, part_out_ptr, part_lse_ptr, seq_lens_ptr, partition_tokens,
    stride_ob, stride_oh, stride_pb, stride_ph, stride_ps, stride_lb, stride_lh,
    D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    seq_len = tl.load(seq_lens_ptr + b)
    num_valid = (seq_len + partition_tokens - 1) // partition_tokens
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < num_valid
    d_mask = offs_d < D
    lse = tl.load(part_lse_ptr + b * stride_lb + h * stride_lh + offs_s, mask=s_mask,
                  other=float("-inf"))
    weight = tl.exp2(lse - tl.max(lse, 0))
    weight = tl.where(s_mask, weight, 0.0)
    parts = tl.load(
        part_out_ptr + b * stride_pb + h * stride_ph + offs_s[:, None] * stride_ps
        + offs_d[None, :],
        mask=s_mask[:, None] & d_mask[None, :], other=0.0,
    )
    out = tl.sum(parts * weight[:, None], 0) / tl.sum(weight, 0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_d,
             out.to(out_ptr.dtype.element_ty), mask=d_mask)


@triton.jit
def _prefill_kv_tile(
    acc, m_i, l_i, q, q_pos, n0, kv_end, k_cache_ptr, v_cache_ptr, bt_row_ptr, kv_head_off,
    scale_log2e, stride_cblk, stride_cslot,
    D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
):
    """One KV tile of the online softmax; CAUSAL=False for tiles wholly before the queries."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < D
    pos = n0 + offs_n
    n_mask = pos < kv_end
    blk = tl.load(bt_row_ptr + pos // BLOCK_SIZE, mask=n_mask, other=0)
    row = blk.to(tl.int64) * stride_cblk + (pos % BLOCK_SIZE) * stride_cslot + kv_head_off
    kv_mask = n_mask[:, None] & d_mask[None, :]
    k = tl.load(k_cache_ptr + row[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
    s = tl.dot(q, tl.trans(k)) * scale_log2e
    if CAUSAL:
        visible = (pos[None, :] <= q_pos[:, None]) & n_mask[None, :]
        s = tl.where(visible, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(v_cache_ptr + row[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, m_new, l_i


@triton.jit
def _prefill_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, out_ptr, bt_ptr, seq_lens_ptr, qsl_ptr,
    scale_log2e,
    stride_qt, stride_qh, stride_ot, stride_oh,
    stride_cblk, stride_cslot, stride_chead, stride_btb,
    G: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    m_tile = tl.program_id(1)
    h = tl.program_id(2)
    q_start = tl.load(qsl_ptr + b)
    q_len = tl.load(qsl_ptr + b + 1) - q_start
    if m_tile * BLOCK_M < q_len:
        seq_len = tl.load(seq_lens_ptr + b)
        ctx = seq_len - q_len
        kv_head_off = (h // G) * stride_chead
        bt_row_ptr = bt_ptr + b * stride_btb
        rows = m_tile * BLOCK_M + tl.arange(0, BLOCK_M)
        row_mask = rows < q_len
        q_pos = ctx + rows
        offs_d = tl.arange(0, BLOCK_D)
        d_mask = offs_d < D
        q_rows = (q_start + rows).to(tl.int64)
        q = tl.load(
            q_ptr + q_rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
            mask=row_mask[:, None] & d_mask[None, :], other=0.0,
        )
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        # KV tiles that every query of this tile sees whole: no causal mask.
        full_end = (ctx + m_tile * BLOCK_M) // BLOCK_N * BLOCK_N
        kv_end = tl.minimum(ctx + (m_tile + 1) * BLOCK_M, seq_len)
        for n0 in range(0, full_end, BLOCK_N):
            acc, m_i, l_i = _prefill_kv_tile(
                acc, m_i, l_i, q, q_pos, n0, kv_end, k_cache_ptr, v_cache_ptr, bt_row_ptr,
                kv_head_off, scale_log2e, stride_cblk, stride_cslot,
                D, BLOCK_D, BLOCK_SIZE, BLOCK_N, False,
            )
        for n0 in range(full_end, kv_end, BLOCK_N):
            acc, m_i, l_i = _prefill_kv_tile(
                acc, m_i, l_i, q, q_pos, n0, kv_end, k_cache_ptr, v_cache_ptr, bt_row_ptr,
                kv_head_off, scale_log2e, stride_cblk, stride_cslot,
                D, BLOCK_D, BLOCK_SIZE, BLOCK_N, True,
            )
        acc = acc / l_i[:, None]
        tl.store(
            out_ptr + q_rows[:, None] * stride_ot + h * stride_oh + offs_d[None, :],
            acc.to(out_ptr.dtype.element_ty), mask=row_mask[:, None] & d_mask[None, :],
        )


@lru_cache(maxsize=8)
def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


def _pow2(n: int, floor: int = 16) -> int:
    return max(floor, triton.next_power_of_2(n))


def _check_cache(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    assert k_cache.shape == v_cache.shape and k_cache.stride() == v_cache.stride()
    assert k_cache.stride(-1) == 1 and q.stride(-1) == 1
    assert q.shape[-1] == k_cache.shape[-1]
    assert q.shape[-2] % k_cache.shape[2] == 0, "query heads must be a multiple of KV heads"


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    """Write k[t], v[t] ([T, Hkv, D]) to flat slot slot_mapping[t]; a negative slot is skipped
    (padding rows of a CUDA-graph batch)."""
    num_tokens, num_kv_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    assert k.stride(-1) == 1 and v.stride(-1) == 1 and k_cache.stride(-1) == 1
    _store_kv_kernel[(num_tokens, num_kv_heads)](
        k, v, k_cache, v_cache, slot_mapping,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1), k_cache.stride(1), k_cache.stride(2),
        D=head_dim, BLOCK_D=_pow2(head_dim, 1),
    )


def decode_num_splits(batch: int, num_kv_heads: int, max_seq_len: int, device: torch.device,
                      tuning: DecodeTuning = DECODE_TUNING) -> tuple[int, int]:
    """(splits, partition_tokens): enough programs to fill the GPU, partitions >= min_partition."""
    max_useful = triton.cdiv(max(max_seq_len, 1), tuning.min_partition)
    wanted = triton.cdiv(tuning.waves * _num_sms(device), batch * num_kv_heads)
    splits = max(1, min(max_useful, wanted))
    partition = triton.cdiv(triton.cdiv(max(max_seq_len, 1), splits), tuning.block_n)
    partition *= tuning.block_n
    return triton.cdiv(max(max_seq_len, 1), partition), partition


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                 max_seq_len: int, tuning: DecodeTuning | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """One query per sequence ([B, Hq, D]) at position seq_lens[b]-1 (seq_lens >= 1).
    `out` (optional, like q) receives the result: checks pass a NaN-poisoned buffer."""
    tuning = tuning or DECODE_TUNING
    _check_cache(q, k_cache, v_cache)
    batch, num_q_heads, head_dim = q.shape
    num_kv_heads, block_size = k_cache.shape[2], k_cache.shape[1]
    group = num_q_heads // num_kv_heads
    out = torch.empty_like(q) if out is None else out
    if batch == 0:
        return out
    splits, partition = decode_num_splits(batch, num_kv_heads, max_seq_len, q.device, tuning)
    single = splits == 1
    if single:
        part_out = out  # unused by the kernel in single-split mode
        part_lse = seq_lens
        part_strides = (0, 0, 0, 0, 0)
    else:
        part_out = torch.empty(batch, num_q_heads, splits, head_dim, dtype=torch.float32,
                               device=q.device)
        part_lse = torch.empty(batch, num_q_heads, splits, dtype=torch.float32, device=q.device)
        part_strides = (part_out.stride(0), part_out.stride(1), part_out.stride(2),
                        part_lse.stride(0), part_lse.stride(1))
    block_d = _pow2(head_dim)
    _decode_split_kernel[(batch, num_kv_heads, splits)](
        q, k_cache, v_cache, block_tables, seq_lens, out, part_out, part_lse,
        scale * _LOG2E, partition,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        *part_strides,
        G=group, BLOCK_G=_pow2(group), D=head_dim, BLOCK_D=block_d, BLOCK_SIZE=block_size,
        BLOCK_N=tuning.block_n, SINGLE_SPLIT=single,
        num_warps=tuning.num_warps, num_stages=tuning.num_stages,
    )
    if not single:
        _decode_reduce_kernel[(batch, num_q_heads)](
            out, part_out, part_lse, seq_lens, partition,
            out.stride(0), out.stride(1), *part_strides,
            D=head_dim, BLOCK_D=block_d, BLOCK_S=_pow2(splits, 2), num_warps=4,
        )
    return out


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    block_tables: torch.Tensor, seq_lens: torch.Tensor,
                    query_start_loc: torch.Tensor, scale: float, max_query_len: int,
                    max_seq_len: int, tuning: PrefillTuning | None = None,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """Packed varlen queries ([T, Hq, D]) over a paged prefix, causal inside each chunk."""
    tuning = tuning or PREFILL_TUNING
    _check_cache(q, k_cache, v_cache)
    num_tokens, num_q_heads, head_dim = q.shape
    num_kv_heads, block_size = k_cache.shape[2], k_cache.shape[1]
    out = torch.empty_like(q) if out is None else out
    batch = query_start_loc.shape[0] - 1
    if num_tokens == 0 or batch == 0:
        return out
    block_m = min(tuning.block_m, _pow2(max_query_len))
    grid = (batch, triton.cdiv(max_query_len, block_m), num_q_heads)
    _prefill_kernel[grid](
        q, k_cache, v_cache, out, block_tables, seq_lens, query_start_loc,
        scale * _LOG2E,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        G=num_q_heads // num_kv_heads, D=head_dim, BLOCK_D=_pow2(head_dim),
        BLOCK_SIZE=block_size, BLOCK_M=block_m, BLOCK_N=tuning.block_n,
        num_warps=tuning.num_warps, num_stages=tuning.num_stages,
    )
    return out


def attention_flops(query_lens: list[int], seq_lens: list[int], num_q_heads: int,
                    head_dim: int) -> float:
    """Useful FLOPs of causal paged attention (QK^T and PV), for benchmarks."""
    total = 0.0
    for q_len, s_len in zip(query_lens, seq_lens, strict=True):
        ctx = s_len - q_len
        total += q_len * ctx + q_len * (q_len + 1) / 2
    return 4.0 * total * num_q_heads * head_dim


def kv_bytes_read(seq_lens: list[int], num_kv_heads: int, head_dim: int, elem_bytes: int) -> int:
    """K and V bytes a decode step must read at least once (GQA: once per KV head)."""
    return 2 * sum(seq_lens) * num_kv_heads * head_dim * elem_bytes


__all__ = [
    "DECODE_TUNING",
    "PREFILL_TUNING",
    "DecodeTuning",
    "PrefillTuning",
    "attention_flops",
    "decode_num_splits",
    "kv_bytes_read",
    "paged_attention",
    "paged_decode",
    "store_kv",
]
