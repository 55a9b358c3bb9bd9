"""Triton paged-attention kernels vs a dense torch reference, in Triton's CPU interpreter.

TRITON_INTERPRET must be set before the kernels are decorated, hence before the import below.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch

_ON_CPU = not torch.cuda.is_available()
if _ON_CPU:
    # triton.language's own jit helpers are decorated at import: the flag must precede it.
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set",
                    allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

triton_paged = importlib.import_module("engine.attention.triton_paged")
from engine.attention.triton_check import (  # noqa: E402
    make_case,
    reference_attention,
    relative_error,
)

DEVICE = "cpu" if _ON_CPU else "cuda"
DTYPES = [torch.float16] if _ON_CPU else [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("num_q_heads", "num_kv_heads", "block_size"),
                         [(2, 2, 16), (4, 1, 32), (8, 2, 16), (8, 2, 32)])
def test_decode_matches_reference(dtype: torch.dtype, num_q_heads: int, num_kv_heads: int,
                                  block_size: int) -> None:
    kv_lens = [1, 17, 300, 33]
    case = make_case([1] * len(kv_lens), kv_lens, num_q_heads, num_kv_heads, 32, block_size,
                     dtype, DEVICE, seed=block_size + num_q_heads)
    want = reference_attention(case)
    # min_partition small so the 300-token sequence is split and merged by the reduce kernel.
    tuning = triton_paged.DecodeTuning(block_n=16, min_partition=64, waves=64)
    splits, _ = triton_paged.decode_num_splits(len(kv_lens), num_kv_heads, case.max_seq_len,
                                               torch.device(DEVICE), tuning)
    assert splits > 1
    poisoned = torch.full_like(case.q, float("nan"))
    got = triton_paged.paged_decode(case.q, case.k_cache, case.v_cache, case.block_tables,
                                    case.seq_lens, case.scale, case.max_seq_len, tuning,
                                    out=poisoned)
    assert got.dtype == dtype
    assert relative_error(got, want) <= 1e-2


def test_decode_single_split_matches_reference() -> None:
    case = make_case([1, 1], [5, 40], 4, 2, 32, 16, torch.float16, DEVICE, seed=7)
    tuning = triton_paged.DecodeTuning(block_n=16, min_partition=256, waves=1)
    got = triton_paged.paged_decode(case.q, case.k_cache, case.v_cache, case.block_tables,
                                    case.seq_lens, case.scale, case.max_seq_len, tuning)
    assert relative_error(got, reference_attention(case)) <= 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("num_q_heads", "num_kv_heads", "block_size"),
                         [(2, 2, 32), (4, 1, 16)])
def test_prefill_over_cached_prefix_matches_reference(dtype: torch.dtype, num_q_heads: int,
                                                      num_kv_heads: int, block_size: int) -> None:
    # Plain prefill (q == kv), prefill over a cached prefix, a chunk, and a decode row, mixed.
    query_lens = [20, 7, 1, 35]
    kv_lens = [20, 50, 9, 70]
    case = make_case(query_lens, kv_lens, num_q_heads, num_kv_heads, 32, block_size, dtype,
                     DEVICE, seed=3 + block_size)
    tuning = triton_paged.PrefillTuning(block_m=16, block_n=16)
    got = triton_paged.paged_attention(case.q, case.k_cache, case.v_cache, case.block_tables,
                                       case.seq_lens, case.query_start_loc, case.scale,
                                       case.max_query_len, case.max_seq_len, tuning,
                                       out=torch.full_like(case.q, float("nan")))
    assert got.dtype == dtype
    assert relative_error(got, reference_attention(case)) <= 1e-2


def test_prefill_head_dim_not_power_of_two() -> None:
    case = make_case([9, 3], [9, 40], 4, 2, 24, 16, torch.float16, DEVICE, seed=11)
    got = triton_paged.paged_attention(case.q, case.k_cache, case.v_cache, case.block_tables,
                                       case.seq_lens, case.query_start_loc, case.scale,
                                       case.max_query_len, case.max_seq_len,
                                       triton_paged.PrefillTuning(block_m=16, block_n=16))
    assert relative_error(got, reference_attention(case)) <= 1e-2


def test_store_kv_writes_slots_and_skips_negative() -> None:
    num_blocks, block_size, heads, dim = 4, 16, 2, 32
    k_cache = torch.zeros(num_blocks, block_size, heads, dim, dtype=torch.float16, device=DEVICE)
    v_cache = torch.zeros_like(k_cache)
    k = torch.randn(3, heads, dim, device=DEVICE).half()
    v = torch.randn(3, heads, dim, device=DEVICE).half()
    slots = torch.tensor([5, -1, 50], dtype=torch.int64, device=DEVICE)
    triton_paged.store_kv(k, v, k_cache, v_cache, slots)
    flat_k = k_cache.view(-1, heads, dim)
    flat_v = v_cache.view(-1, heads, dim)
    assert torch.equal(flat_k[5], k[0]) and torch.equal(flat_v[50], v[2])
    written = torch.zeros(num_blocks * block_size, dtype=torch.bool)
    written[[5, 50]] = True
    assert not flat_k[~written.to(DEVICE)].any() and not flat_v[~written.to(DEVICE)].any()


@pytest.mark.parametrize(("block_m", "block_n"), [(32, 16), (16, 32)])
def test_prefill_tile_shapes_match_reference(block_m: int, block_n: int) -> None:
    # Tiles wider or narrower than the KV tile move the unmasked/causal split point.
    case = make_case([45, 70, 1], [45, 133, 20], 4, 2, 32, 16, torch.float16, DEVICE, seed=5)
    tuning = triton_paged.PrefillTuning(block_m=block_m, block_n=block_n)
    got = triton_paged.paged_attention(case.q, case.k_cache, case.v_cache, case.block_tables,
                                       case.seq_lens, case.query_start_loc, case.scale,
                                       case.max_query_len, case.max_seq_len, tuning)
    assert relative_error(got, reference_attention(case)) <= 1e-2
