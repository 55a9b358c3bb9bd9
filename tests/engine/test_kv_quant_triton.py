"""engine/attention/triton_quant.py (quantizing store, dequantizing + windowed attention)
against the torch path, in Triton's CPU interpreter (on CUDA: on the device).

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
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set",
                    allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

triton_quant = importlib.import_module("engine.attention.triton_quant")
from engine.attention import torch_paged  # noqa: E402
from engine.attention.triton_check import make_case, relative_error  # noqa: E402
from engine.kv_quant import calibrate_scale  # noqa: E402

DEVICE = "cpu" if _ON_CPU else "cuda"
FP8 = torch.float8_e4m3fn


def _quantized_case(query_lens, kv_lens, dtype, seed):
    case = make_case(query_lens, kv_lens, 8, 2, 32, 16, torch.float32, DEVICE, seed=seed,
                     poison=False)
    flat_k, flat_v = case.k_cache.flatten(0, 1), case.v_cache.flatten(0, 1)
    k_scale, v_scale = calibrate_scale(flat_k, dtype), calibrate_scale(flat_v, dtype)
    kq = torch.zeros(case.k_cache.shape, dtype=dtype, device=DEVICE)
    vq = torch.zeros_like(kq)
    slots = torch.arange(flat_k.shape[0], device=DEVICE)
    torch_paged.store_kv(flat_k, flat_v, kq, vq, slots, k_scale, v_scale)
    return case, kq, vq, k_scale, v_scale


@pytest.mark.parametrize("dtype", [torch.int8, FP8])
def test_store_quantizes_like_the_torch_path(dtype):
    k = torch.randn(7, 2, 24, device=DEVICE) * 3
    v = torch.randn(7, 2, 24, device=DEVICE)
    ks, vs = calibrate_scale(k, dtype), calibrate_scale(v, dtype)
    slots = torch.tensor([3, -1, 0, 9, 4, 5, 8], device=DEVICE)
    got_k = torch.zeros(3, 4, 2, 24, dtype=dtype, device=DEVICE)
    got_v, want_k, want_v = (torch.zeros_like(got_k) for _ in range(3))
    triton_quant.store_kv(k, v, got_k, got_v, slots, ks, vs)
    torch_paged.store_kv(k, v, want_k, want_v, slots, ks, vs)
    if dtype == FP8:
        # e4m3 subnormals (|x| < 2^-6 of the scale) are left to the target's cast, which the
        # interpreter rounds differently; all normal values must be the same bytes.
        for got, want in ((got_k, want_k), (got_v, want_v)):
            normal = want.float().abs() >= 2.0**-6
            assert torch.equal(got.view(torch.uint8)[normal], want.view(torch.uint8)[normal])
            assert float((got.float() - want.float()).abs().max()) <= 2.0**-8
        return
    assert torch.equal(got_k.view(torch.uint8), want_k.view(torch.uint8))
    assert torch.equal(got_v.view(torch.uint8), want_v.view(torch.uint8))


@pytest.mark.parametrize(("dtype", "window"), [(torch.int8, None), (FP8, 20), (torch.int8, 8)])
def test_decode_and_prefill_match_the_torch_path(dtype, window):
    case, kq, vq, ks, vs = _quantized_case([1, 6, 1, 10], [40, 30, 7, 10], dtype, seed=2)
    args = (case.q, kq, vq, case.block_tables, case.seq_lens, case.query_start_loc, case.scale,
            case.max_query_len, case.max_seq_len)
    kw = {"k_scale": ks, "v_scale": vs, "window": window}
    got = triton_quant.paged_attention(*args, **kw)
    want = torch_paged.paged_attention(*args, **kw)
    assert relative_error(got, want) <= 1e-5
    rows = case.query_start_loc[1:] - 1  # each sequence's last query as a decode
    dec = (case.q[rows.long()], kq, vq, case.block_tables, case.seq_lens, case.scale,
           case.max_seq_len)
    assert relative_error(triton_quant.paged_decode(*dec, **kw),
                          torch_paged.paged_decode(*dec, **kw)) <= 1e-5


def test_unquantized_windowed_attention_matches_the_torch_path():
    case = make_case([1, 12], [70, 40], 4, 4, 16, 16, torch.float32, DEVICE, seed=9)
    args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.seq_lens,
            case.query_start_loc, case.scale, case.max_query_len, case.max_seq_len)
    got = triton_quant.paged_attention(*args, window=16)
    assert not got.isnan().any()  # NaN-poisoned slots out of reach are never read
    assert relative_error(got, torch_paged.paged_attention(*args, window=16)) <= 1e-5
