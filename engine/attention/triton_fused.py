"""Fused Triton kernels for the small element-wise ops around attention: RMSNorm, RoPE, SiLU-mul.

A batch-1 decode of a 7B model is a few matmuls per layer plus ~35 tiny element-wise kernels
(RMSNorm and RoPE in fp32 are 8 kernels each in torch). Inside a CUDA graph each still costs
~2 us, which is the gap between the graphed step and the weight-bandwidth floor. These kernels
do each op in one launch with the same rounding as the torch code they replace:
`rms_norm` = engine.model.RMSNorm.forward, `apply_rope` = engine.rope.apply_rope,
`silu_mul` = F.silu(gate) * up over a fused gate|up projection.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, stride_x, stride_out, eps,
                     N: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, 0) / N + eps)
    normed = (x * rstd).to(out_ptr.dtype.element_ty)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0)
    out = (w.to(tl.float32) * normed.to(tl.float32)).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + row * stride_out + offs, out, mask=mask)


@triton.jit
def _rope_kernel(x_ptr, cos_ptr, sin_ptr, out_ptr, stride_xt, stride_xh, stride_ct,
                 stride_ot, stride_oh, HALF: tl.constexpr, BLOCK: tl.constexpr):
    t = tl.program_id(0)
    h = tl.program_id(1)
    offs = tl.arange(0, BLOCK)
    mask = offs < HALF
    base = x_ptr + t * stride_xt + h * stride_xh
    x1 = tl.load(base + offs, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(base + HALF + offs, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(cos_ptr + t * stride_ct + offs, mask=mask, other=0.0)
    s = tl.load(sin_ptr + t * stride_ct + offs, mask=mask, other=0.0)
    out = out_ptr + t * stride_ot + h * stride_oh
    tl.store(out + offs, (x1 * c - x2 * s).to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out + HALF + offs, (x2 * c + x1 * s).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _silu_mul_kernel(x_ptr, out_ptr, stride_x, stride_out, N: tl.constexpr,
                     BLOCK: tl.constexpr):
    row = tl.program_id(0)
    col = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = col < N
    gate = tl.load(x_ptr + row * stride_x + col, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + N + col, mask=mask, other=0.0).to(tl.float32)
    act = (gate / (1.0 + tl.exp(-gate))).to(out_ptr.dtype.element_ty).to(tl.float32)
    tl.store(out_ptr + row * stride_out + col, (act * up).to(out_ptr.dtype.element_ty),
             mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x: [T, N] -> weight * (x / rms(x)) in x's dtype (normalized in fp32, rounded, scaled)."""
    assert x.dim() == 2 and x.stride(-1) == 1 and weight.shape == (x.shape[1],)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.shape[0] == 0:
        return out
    n = x.shape[1]
    block = triton.next_power_of_2(n)
    _rms_norm_kernel[(x.shape[0],)](x, weight, out, x.stride(0), out.stride(0), eps, N=n,
                                    BLOCK=block, num_warps=min(16, max(1, block // 256)))
    return out


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [T, H, D] (any row strides); cos, sin: fp32 [T, D/2] -> rotated [T, H, D] in x's
    dtype (the "rotate half" layout, in fp32)."""
    num_tokens, heads, dim = x.shape
    assert x.stride(-1) == 1 and cos.stride(-1) == 1 and cos.stride() == sin.stride()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if num_tokens == 0:
        return out
    half = dim // 2
    _rope_kernel[(num_tokens, heads)](x, cos, sin, out, x.stride(0), x.stride(1), cos.stride(0),
                                      out.stride(0), out.stride(1), HALF=half,
                                      BLOCK=triton.next_power_of_2(half), num_warps=1)
    return out


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up: [T, 2I] (gate then up) -> silu(gate) * up, [T, I], rounded like torch."""
    assert gate_up.dim() == 2 and gate_up.stride(-1) == 1 and gate_up.shape[1] % 2 == 0
    n = gate_up.shape[1] // 2
    out = torch.empty(gate_up.shape[0], n, dtype=gate_up.dtype, device=gate_up.device)
    if gate_up.shape[0] == 0:
        return out
    block = min(1024, triton.next_power_of_2(n))
    _silu_mul_kernel[(gate_up.shape[0], triton.cdiv(n, block))](
        gate_up, out, gate_up.stride(0), out.stride(0), N=n, BLOCK=block, num_warps=4)
    return out
