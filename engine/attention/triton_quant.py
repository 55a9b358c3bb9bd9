"""Triton paged attention over a quantized (fp8 e4m3 / int8) or sliding-window KV cache.

Same contract as engine/attention (torch_paged.py is its oracle), with the optional keyword
arguments `k_scale`, `v_scale` (fp32 [Hkv]: the cache holds x / scale) and `window` (a query at
KV slot i sees slots i - window < j <= i). The plain bf16/full-attention path stays in
triton_paged.py; ModelRunner picks this module on CUDA when the pool is quantized or the model
has a sliding window.

- `store_kv` quantizes in the kernel: x / scale, clamped to the format's range (rounded for
  int8), stored as one byte.
- One attention kernel serves decode and prefill: a program per (query token, KV head) walks
  the sequence's blocks in tiles of BLOCK_N slots, dequantizes each K/V tile in registers
  (element x scale, fp32), and runs an online softmax for the G query heads of the group.
  Decode is the case of one query per sequence; prefill queries each stop at their own slot.
  Tiles wholly before a query's window are skipped, so windowed decode reads at most
  `window` slots. Launches take host ints only (no host sync), so decode can be graph-captured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

_LOG2E = tl.constexpr(1.4426950408889634)


@dataclass(slots=True)
class AttendTuning:
    """Launch parameters of the attention kernel."""

    # H100 sweep (MHA, head_dim 128, batch 64 x 1024 slots, fp8): 16 slots/1 warp/3 stages
    # best of {16, 32, 64, 128} x {1, 2, 4, 8} warps x {2, 3, 4} stages tried.
    block_n: int = 16  # KV slots per inner tile
    num_warps: int = 1
    num_stages: int = 3


TUNING = AttendTuning()


@triton.jit
def _round_e4m3(x):
    """Round fp32 to 3 mantissa bits, to nearest even, carrying into the exponent: the cast to
    e4m3 that follows is then exact for normal values on every target (Triton's interpreter
    drops the carry when it rounds itself)."""
    bits = x.to(tl.int32, bitcast=True)
    bits = bits + 0x7FFFF + ((bits >> 20) & 1)
    return (bits & -0x100000).to(tl.float32, bitcast=True)


@triton.jit
def _store_quant_kernel(
    k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, k_scale_ptr, v_scale_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh, stride_cslot, stride_chead,
    QMAX: tl.constexpr, IS_INT8: tl.constexpr, QUANT: tl.constexpr,
    D: tl.constexpr, BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0)
    h = tl.program_id(1)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot >= 0:
        d = tl.arange(0, BLOCK_D)
        dm = d < D
        k = tl.load(k_ptr + t * stride_kt + h * stride_kh + d, mask=dm, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + t * stride_vt + h * stride_vh + d, mask=dm, other=0.0).to(tl.float32)
        if QUANT:
            k = tl.clamp(k / tl.load(k_scale_ptr + h), -QMAX, QMAX)
            v = tl.clamp(v / tl.load(v_scale_ptr + h), -QMAX, QMAX)
            if IS_INT8:  # round half away from zero, as torch.round does for non-ties
                k = tl.where(k >= 0, tl.floor(k + 0.5), tl.ceil(k - 0.5))
                v = tl.where(v >= 0, tl.floor(v + 0.5), tl.ceil(v - 0.5))
        dst = slot * stride_cslot + h * stride_chead + d
        ty = k_cache_ptr.dtype.element_ty
        if QUANT and not IS_INT8:
            k = _round_e4m3(k)
            v = _round_e4m3(v)
        tl.store(k_cache_ptr + dst, k.to(ty), mask=dm)
        tl.store(v_cache_ptr + dst, v.to(ty), mask=dm)


@triton.jit
def _attend_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, out_ptr, block_tables_ptr, row_seq_ptr, row_len_ptr,
    k_scale_ptr, v_scale_ptr, sm_scale, window,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_bt,
    stride_cblock, stride_cslot, stride_chead,
    G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, QUANT: tl.constexpr,
    WINDOWED: tl.constexpr,
):
    t = tl.program_id(0)  # query row
    h = tl.program_id(1)  # KV head
    seq = tl.load(row_seq_ptr + t)
    kv_len = tl.load(row_len_ptr + t)  # this query sees slots [lo, kv_len)
    lo = 0
    if WINDOWED:
        lo = tl.maximum(kv_len - window, 0)
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    gm = g < G
    dm = d < D
    q_off = t * stride_qt + (h * G + g)[:, None] * stride_qh + d[None, :]
    q = tl.load(q_ptr + q_off, mask=gm[:, None] & dm[None, :], other=0.0).to(tl.float32)
    q = q * (sm_scale * _LOG2E)
    k_scale = 1.0
    v_scale = 1.0
    if QUANT:
        k_scale = tl.load(k_scale_ptr + h)
        v_scale = tl.load(v_scale_ptr + h)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    start = (lo // BLOCK_N) * BLOCK_N
    for n0 in range(start, kv_len, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        nm = (n < kv_len) & (n >= lo)
        block = tl.load(block_tables_ptr + seq * stride_bt + n // BLOCK_SIZE, mask=nm, other=0)
        kv_off = (block.to(tl.int64) * stride_cblock + (n % BLOCK_SIZE) * stride_cslot
                  + h * stride_chead)
        ptrs = kv_off[:, None] + d[None, :]
        lm = nm[:, None] & dm[None, :]
        k = tl.load(k_cache_ptr + ptrs, mask=lm, other=0.0).to(tl.float32) * k_scale
        v = tl.load(v_cache_ptr + ptrs, mask=lm, other=0.0).to(tl.float32) * v_scale
        s = tl.sum(q[:, None, :] * k[None, :, :], axis=2)  # [BLOCK_G, BLOCK_N]
        s = tl.where(nm[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
        m_i = m_new
    out = acc / l_i[:, None]
    o_off = t * stride_ot + (h * G + g)[:, None] * stride_oh + d[None, :]
    tl.store(out_ptr + o_off, out.to(out_ptr.dtype.element_ty), mask=gm[:, None] & dm[None, :])


def _pow2(n: int) -> int:
    return max(1, triton.next_power_of_2(n))


def _qmax(dtype: torch.dtype) -> tuple[float, bool]:
    if dtype == torch.int8:
        return 127.0, True
    if dtype == torch.float8_e4m3fn:
        return 448.0, False
    return 0.0, False


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor, k_scale: torch.Tensor | None = None,
             v_scale: torch.Tensor | None = None) -> None:
    """Write k[t], v[t] ([T, Hkv, D]) to flat slot slot_mapping[t] (negative: skipped),
    quantized by the per-head scales when given."""
    num_tokens, num_kv_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    quant = k_scale is not None and v_scale is not None
    assert quant == (k_cache.element_size() == 1), "1-byte caches need scales (and only they)"
    limit, is_int8 = _qmax(k_cache.dtype)
    _store_quant_kernel[(num_tokens, num_kv_heads)](
        k, v, k_cache, v_cache, slot_mapping,
        k_scale if quant else k, v_scale if quant else v,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1), k_cache.stride(1), k_cache.stride(2),
        QMAX=limit, IS_INT8=is_int8, QUANT=quant, D=head_dim, BLOCK_D=_pow2(head_dim),
    )


def _attend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
            block_tables: torch.Tensor, row_seq: torch.Tensor, row_len: torch.Tensor,
            scale: float, k_scale: torch.Tensor | None, v_scale: torch.Tensor | None,
            window: int | None) -> torch.Tensor:
    num_rows, num_q_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    group = num_q_heads // num_kv_heads
    out = torch.empty_like(q)
    if num_rows == 0:
        return out
    quant = k_scale is not None and v_scale is not None
    _attend_kernel[(num_rows, num_kv_heads)](
        q, k_cache, v_cache, out, block_tables, row_seq, row_len,
        k_scale if quant else q, v_scale if quant else q, scale, window or 0,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), block_tables.stride(0),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        G=group, BLOCK_G=_pow2(group), D=head_dim, BLOCK_D=_pow2(head_dim),
        BLOCK_SIZE=k_cache.shape[1], BLOCK_N=TUNING.block_n, QUANT=quant,
        WINDOWED=window is not None, num_warps=TUNING.num_warps, num_stages=TUNING.num_stages,
    )
    return out


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                 max_seq_len: int, *, k_scale: torch.Tensor | None = None,
                 v_scale: torch.Tensor | None = None, window: int | None = None
                 ) -> torch.Tensor:
    """q: [B, Hq, D], one query per sequence at slot seq_lens[b] - 1 -> [B, Hq, D]."""
    rows = torch.arange(q.shape[0], dtype=torch.int32, device=q.device)
    return _attend(q, k_cache, v_cache, block_tables, rows, seq_lens.to(torch.int32), scale,
                   k_scale, v_scale, window)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    block_tables: torch.Tensor, seq_lens: torch.Tensor,
                    query_start_loc: torch.Tensor, scale: float, max_query_len: int,
                    max_seq_len: int, *, k_scale: torch.Tensor | None = None,
                    v_scale: torch.Tensor | None = None, window: int | None = None
                    ) -> torch.Tensor:
    """Packed varlen queries [T, Hq, D]: row j of sequence b sits at slot
    seq_lens[b] - q_len_b + j and sees the slots up to it (within the window)."""
    num_rows = q.shape[0]
    q_lens = query_start_loc[1:] - query_start_loc[:-1]
    row_seq = torch.repeat_interleave(
        torch.arange(seq_lens.shape[0], dtype=torch.int32, device=q.device), q_lens,
        output_size=num_rows)
    rows = torch.arange(num_rows, dtype=torch.int32, device=q.device)
    seq_starts = query_start_loc[:-1].to(torch.int32)
    # slot of row t = seq_len - q_len + (t - start) -> it sees slot + 1 positions
    row_len = (seq_lens - q_lens).to(torch.int32)[row_seq] + rows - seq_starts[row_seq] + 1
    return _attend(q, k_cache, v_cache, block_tables, row_seq, row_len.to(torch.int32), scale,
                   k_scale, v_scale, window)
