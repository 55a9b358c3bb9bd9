"""FP8 / INT8 KV cache: quantize/dequantize round trips, scale calibration, the torch attention
path over a quantized pool, the memory plan (2x tokens per pool), and the engine option."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine.attention import torch_paged
from engine.attention.triton_check import make_case, reference_attention, relative_error
from engine.engine_config import EngineConfig
from engine.kv_quant import (
    KVScales,
    calibrate_scale,
    dequantize,
    kv_dtype_name,
    qmax,
    quantize,
    resolve_kv_dtype,
)
from engine.memory_plan import bytes_per_token
from engine.model_runner import ModelRunner, SeqChunk, StepBatch

FP8 = torch.float8_e4m3fn


@pytest.mark.parametrize("dtype", [torch.int8, FP8])
def test_round_trip_error_is_bounded_per_head(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 32, generator=gen) * torch.tensor([0.1, 1.0, 10.0, 100.0])[:, None]
    scale = calibrate_scale(x, dtype, headroom=1.0)
    back = dequantize(quantize(x, scale, dtype), scale)
    err = (back - x).abs()
    if dtype == torch.int8:  # uniform grid: half a step per element
        assert bool((err <= scale[:, None] / 2 + 1e-6).all())
    else:  # e4m3: 3 mantissa bits -> relative error <= 2^-4 above the subnormal range
        normal = x.abs() / scale[:, None] >= 2.0**-6
        assert bool((err[normal] <= x.abs()[normal] * 2.0**-4 + 1e-6).all())
    # per-head scales: the small head is as precise, relatively, as the large one
    rel = (err.amax(dim=(0, 2)) / x.abs().amax(dim=(0, 2)))
    assert float(rel.max()) < 0.07


def test_calibration_uses_amax_per_head_and_clamps_outliers():
    x = torch.zeros(3, 2, 4)
    x[1, 0, 2] = -5.0
    scale = calibrate_scale(x, torch.int8, headroom=1.25)
    assert scale[0].item() == pytest.approx(5.0 * 1.25 / 127)
    assert scale[1].item() > 0  # an all-zero head still gets a usable scale
    big = torch.full((1, 2, 4), 1e4)
    q = quantize(big, scale, torch.int8)
    assert int(q.max()) == 127 and int(q.min()) == 127
    assert qmax(FP8) == 448.0


def test_scales_calibrate_once_per_layer_and_can_be_given():
    scales = KVScales.empty(2, 2, torch.device("cpu"), headroom=1.0)
    k = torch.randn(5, 2, 8)
    v = torch.randn(5, 2, 8) * 3
    scales.observe(1, k, v, torch.int8)
    assert scales.calibrated == [False, True]
    assert torch.allclose(scales.v[1], v.abs().amax(dim=(0, 2)) / 127)
    scales.observe(1, k * 100, v * 100, torch.int8)  # the first prefill decides
    assert torch.allclose(scales.k[1], k.abs().amax(dim=(0, 2)) / 127)
    fixed = KVScales.given(torch.full((2, 2), 0.5), torch.full((2, 2), 0.25))
    assert fixed.calibrated == [True, True]
    fixed.observe(0, k, v, torch.int8)
    assert float(fixed.k[0, 0]) == 0.5
    with pytest.raises(ValueError):
        resolve_kv_dtype("int4", torch.float32)
    assert resolve_kv_dtype("auto", torch.bfloat16) == torch.bfloat16
    assert kv_dtype_name(FP8) == "fp8" and kv_dtype_name(torch.bfloat16) == "bfloat16"


@pytest.mark.parametrize("dtype", [torch.int8, FP8])
def test_torch_paged_over_a_quantized_pool_equals_attention_on_dequantized_kv(dtype):
    case = make_case([1, 9, 1], [20, 40, 33], 8, 2, 32, 16, torch.float32, "cpu", seed=7,
                     poison=False)
    k_scale = calibrate_scale(case.k_cache.flatten(0, 1), dtype)
    v_scale = calibrate_scale(case.v_cache.flatten(0, 1), dtype)
    nb, bs, hkv, d = case.k_cache.shape
    kq = torch.zeros(nb, bs, hkv, d, dtype=dtype)
    vq = torch.zeros_like(kq)
    slots = torch.arange(nb * bs)
    torch_paged.store_kv(case.k_cache.flatten(0, 1), case.v_cache.flatten(0, 1), kq, vq, slots,
                         k_scale, v_scale)
    got = torch_paged.paged_attention(case.q, kq, vq, case.block_tables, case.seq_lens,
                                      case.query_start_loc, case.scale, case.max_query_len,
                                      case.max_seq_len, k_scale=k_scale, v_scale=v_scale)
    deq = replace(case, k_cache=dequantize(kq, k_scale), v_cache=dequantize(vq, v_scale))
    assert relative_error(got, reference_attention(deq)) <= 1e-5
    # and the quantization itself costs little against the unquantized attention
    assert relative_error(got, reference_attention(case)) <= 0.08


def test_memory_plan_counts_one_byte_per_element(tiny_llama_dir):
    runners = {
        kv: ModelRunner.load(tiny_llama_dir, device="cpu", dtype="bf16", kv_cache_gib=0.01,
                             kv_dtype=kv, progress=False)
        for kv in ("auto", "fp8", "int8")
    }
    cfg = runners["auto"].config
    assert runners["auto"].plan.bytes_per_token == bytes_per_token(cfg, torch.bfloat16)
    for kv in ("fp8", "int8"):
        r = runners[kv]
        assert r.plan.bytes_per_token * 2 == runners["auto"].plan.bytes_per_token
        assert r.num_blocks == 2 * runners["auto"].num_blocks
        assert r.kv_pool.nbytes == runners["auto"].kv_pool.nbytes
        assert r.kv_dtype == kv and r.plan.kv_dtype == kv
    assert runners["auto"].kv_dtype == "bfloat16"


@pytest.mark.parametrize("kv", ["fp8", "int8"])
def test_quantized_runner_tracks_the_full_precision_one(tiny_llama_dir, kv):
    full = ModelRunner.load(tiny_llama_dir, device="cpu", num_blocks=64, progress=False)
    quant = ModelRunner.load(tiny_llama_dir, device="cpu", num_blocks=64, kv_dtype=kv,
                             progress=False)
    assert quant.kv_pool.scales is not None and not any(quant.kv_pool.scales.calibrated)
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(10, full.config.vocab_size, (40,), generator=gen).tolist()
    # Greedy on full-precision KV; the quantized runner is teacher-forced on the same tokens.
    ids: list[int] = []
    outs = []
    for runner in (full, quant):
        table = runner.allocator.allocate(8)
        logits = [runner.step(StepBatch([SeqChunk(prompt, 0, table)]))[0]]
        for i in range(30):
            if runner is full:
                ids.append(int(logits[-1].argmax()))
            logits.append(runner.step(StepBatch([SeqChunk([ids[i]], 40 + i, table)]))[0])
        outs.append(torch.stack(logits))
    assert all(quant.kv_pool.scales.calibrated)
    ref, got = outs
    rel = float((got - ref).norm() / ref.norm())
    assert rel < (0.05 if kv == "int8" else 0.1), rel  # random tiny weights: sensitive
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    assert agree >= 0.8, agree


def test_engine_config_and_async_engine_report_the_kv_dtype(tiny_llama_dir):
    from engine.async_engine import AsyncEngine

    with pytest.raises(ValueError):
        EngineConfig(model_dir=str(tiny_llama_dir), kv_dtype="fp4")
    config = EngineConfig(model_dir=str(tiny_llama_dir), device="cpu", num_blocks=32,
                          kv_dtype="int8", progress=False, itl_target_s=None)
    engine = AsyncEngine.load(config)
    assert engine.kv_dtype == "int8" and engine.runner.kv_pool.dtype == torch.int8


def test_decodes_never_calibrate(tiny_llama_dir):
    """CUDA-graph warm-ups run dummy decodes: only a real prefill may set the scales."""
    runner = ModelRunner.load(tiny_llama_dir, device="cpu", num_blocks=8, kv_dtype="int8",
                              progress=False)
    runner.step(StepBatch([SeqChunk([5], 0, [0])]))
    assert not any(runner.kv_pool.scales.calibrated)
    runner.step(StepBatch([SeqChunk([5, 6, 7], 0, [1])]))
    assert all(runner.kv_pool.scales.calibrated)
