"""Fused RMSNorm / RoPE / SiLU-mul kernels vs the torch code of engine/model.py and rope.py."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set",
                    allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from engine.attention import triton_fused
from engine.config import RopeConfig
from engine.model import RMSNorm
from engine.rope import apply_rope, inv_frequencies, rope_cos_sin

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPE = torch.float16 if DEVICE.type == "cpu" else torch.bfloat16


def test_rms_norm_matches_model_norm() -> None:
    norm = RMSNorm(96, 1e-5, DEVICE, DTYPE)
    with torch.no_grad():
        norm.weight.copy_(1.0 + 0.1 * torch.randn(96))
    x = torch.randn(5, 96, device=DEVICE).to(DTYPE) * 3
    torch.testing.assert_close(triton_fused.rms_norm(x, norm.weight, norm.eps), norm(x),
                               rtol=1e-2, atol=1e-2)


def test_apply_rope_matches_torch_on_a_strided_view() -> None:
    heads, dim = 3, 32
    qkv = torch.randn(4, (heads + 2) * dim, device=DEVICE).to(DTYPE)
    q = qkv[:, : heads * dim].view(4, heads, dim)  # a view with the row stride of qkv
    cos, sin = rope_cos_sin(torch.tensor([0, 5, 6, 300], device=DEVICE),
                            inv_frequencies(RopeConfig(), dim).to(DEVICE))
    torch.testing.assert_close(triton_fused.apply_rope(q, cos, sin), apply_rope(q, cos, sin),
                               rtol=1e-2, atol=1e-2)


def test_silu_mul_matches_torch() -> None:
    gate_up = torch.randn(3, 2 * 40, device=DEVICE).to(DTYPE) * 2
    gate, up = gate_up.split(40, dim=-1)
    torch.testing.assert_close(triton_fused.silu_mul(gate_up), F.silu(gate) * up, rtol=1e-2,
                               atol=1e-2)
