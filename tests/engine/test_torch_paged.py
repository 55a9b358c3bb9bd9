"""The torch paged-attention path against a dense reference, on NaN-poisoned pools: a read past
a sequence's length (or of a padding block) would turn the output into NaN."""

from __future__ import annotations

import pytest
import torch

from engine.attention import backend_for, torch_paged
from engine.attention.triton_check import make_case, reference_attention, relative_error

CASES = [
    # (query_lens, kv_lens, Hq, Hkv, block_size)
    ([1, 1, 1, 1], [1, 17, 40, 16], 8, 2, 16),  # decodes of different lengths, GQA
    ([5, 16, 37], [5, 40, 100], 4, 4, 16),  # prefill: fresh, on a cached prefix, chunk
    ([1, 12, 1, 33], [9, 12, 64, 65], 8, 1, 32),  # mixed decode + prefill, MQA
]


@pytest.mark.parametrize("query_lens, kv_lens, hq, hkv, bs", CASES)
def test_paged_attention_matches_dense(query_lens, kv_lens, hq, hkv, bs):
    case = make_case(query_lens, kv_lens, hq, hkv, 32, bs, torch.float32, "cpu", seed=3)
    got = torch_paged.paged_attention(case.q, case.k_cache, case.v_cache, case.block_tables,
                                      case.seq_lens, case.query_start_loc, case.scale,
                                      case.max_query_len, case.max_seq_len)
    assert not got.isnan().any()
    assert relative_error(got, reference_attention(case)) <= 1e-5


def test_paged_decode_matches_dense():
    case = make_case([1] * 5, [1, 3, 16, 17, 50], 8, 2, 32, 16, torch.float32, "cpu", seed=4)
    got = torch_paged.paged_decode(case.q, case.k_cache, case.v_cache, case.block_tables,
                                   case.seq_lens, case.scale, case.max_seq_len)
    assert not got.isnan().any()
    assert relative_error(got, reference_attention(case)) <= 1e-5


def test_bf16_output_dtype_and_accuracy():
    case = make_case([1, 20], [30, 20], 4, 2, 32, 16, torch.bfloat16, "cpu", seed=5)
    got = torch_paged.paged_attention(case.q, case.k_cache, case.v_cache, case.block_tables,
                                      case.seq_lens, case.query_start_loc, case.scale,
                                      case.max_query_len, case.max_seq_len)
    assert got.dtype == torch.bfloat16
    assert relative_error(got.float(), reference_attention(case).float()) <= 2e-2


def test_store_kv_writes_slots_and_skips_negative_ones():
    k_cache = torch.zeros(3, 4, 2, 8)
    v_cache = torch.zeros(3, 4, 2, 8)
    k = torch.randn(3, 2, 8)
    v = torch.randn(3, 2, 8)
    torch_paged.store_kv(k, v, k_cache, v_cache, torch.tensor([9, -1, 0]))
    assert torch.equal(k_cache[2, 1], k[0]) and torch.equal(v_cache[0, 0], v[2])
    assert k_cache.count_nonzero() == 2 * 2 * 8


def test_cpu_uses_the_torch_backend():
    assert backend_for(torch.device("cpu")) is torch_paged
