"""Quantized KV cache: FP8 (e4m3) or INT8 elements with one fp32 scale per layer and KV head.

A stored element is `round(x / scale)` (int8) or `fp8(x / scale)` clamped to the format's range;
reading it back is `stored * scale`. Scales live in `KVScales` (`[num_layers, num_kv_heads]` for
K and for V). They are either given up front or calibrated on the fly from the first K/V a layer
stores (its first prefill): the per-head absolute maximum times a headroom factor, over the
format's largest value. Later values beyond the calibrated range are clamped, so the headroom
keeps a margin for tokens that come after the first prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from engine.engine_config import KV_DTYPES

QUANT_DTYPES: dict[str, torch.dtype] = {"fp8": torch.float8_e4m3fn, "int8": torch.int8}
DEFAULT_HEADROOM = 1.25  # calibrated range = first-prefill amax x this
_MIN_AMAX = 1e-6  # a head whose first K/V are all zero still gets a usable scale


def resolve_kv_dtype(kv_dtype: str, model_dtype: torch.dtype) -> torch.dtype:
    """"auto" = the model dtype; "fp8"/"int8" = the 1-byte storage dtypes."""
    if kv_dtype == "auto":
        return model_dtype
    if kv_dtype not in QUANT_DTYPES:
        raise ValueError(f"unknown kv_dtype {kv_dtype!r}; choose from {', '.join(KV_DTYPES)}")
    return QUANT_DTYPES[kv_dtype]


def kv_dtype_name(dtype: torch.dtype) -> str:
    """The name a namespace and the API report: "fp8", "int8", or the model dtype's name."""
    for name, dt in QUANT_DTYPES.items():
        if dt == dtype:
            return name
    return str(dtype).removeprefix("torch.")


def is_quantized(dtype: torch.dtype) -> bool:
    return dtype in QUANT_DTYPES.values()


def qmax(dtype: torch.dtype) -> float:
    """Largest representable magnitude of a quantized storage dtype."""
    if dtype == torch.int8:
        return 127.0
    assert dtype == torch.float8_e4m3fn, dtype
    return float(torch.finfo(dtype).max)


def quantize(x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x [..., Hkv, D] in any float dtype, scale fp32 [Hkv] -> `dtype` of x's shape."""
    q = x.float() / scale[:, None]
    limit = qmax(dtype)
    q = q.clamp(-limit, limit)
    if dtype == torch.int8:
        q = q.round()
    return q.to(dtype)


def dequantize(xq: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Stored values [..., Hkv, D] times their head's scale (fp32 [Hkv]) -> fp32."""
    return xq.float() * scale[:, None]


def calibrate_scale(x: torch.Tensor, dtype: torch.dtype,
                    headroom: float = DEFAULT_HEADROOM) -> torch.Tensor:
    """Per-KV-head scale of x [T, Hkv, D]: amax over tokens and dims x headroom / qmax."""
    amax = x.detach().float().abs().amax(dim=(0, 2)).clamp_min(_MIN_AMAX)
    return amax * headroom / qmax(dtype)


@dataclass(slots=True)
class KVScales:
    """K and V scales of every layer and KV head, and which layers have been calibrated."""

    k: torch.Tensor  # fp32 [num_layers, num_kv_heads]
    v: torch.Tensor  # fp32 [num_layers, num_kv_heads]
    calibrated: list[bool] = field(default_factory=list)
    headroom: float = DEFAULT_HEADROOM

    @classmethod
    def empty(cls, num_layers: int, num_kv_heads: int, device: torch.device,
              headroom: float = DEFAULT_HEADROOM) -> KVScales:
        ones = torch.ones(num_layers, num_kv_heads, dtype=torch.float32, device=device)
        return cls(ones, ones.clone(), [False] * num_layers, headroom)

    @classmethod
    def given(cls, k: torch.Tensor, v: torch.Tensor) -> KVScales:
        """Fixed scales (e.g. from an offline calibration): no on-the-fly calibration."""
        assert k.shape == v.shape and k.dim() == 2
        return cls(k.float().clone(), v.float().clone(), [True] * k.shape[0])

    def observe(self, layer: int, k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> None:
        """Calibrate `layer` from its first stored K/V ([T, Hkv, D]); later calls do nothing."""
        if self.calibrated[layer]:
            return
        self.k[layer] = calibrate_scale(k, dtype, self.headroom)
        self.v[layer] = calibrate_scale(v, dtype, self.headroom)
        self.calibrated[layer] = True

    def reset(self) -> None:
        """Forget the calibration (the next store of each layer calibrates again)."""
        self.k.fill_(1.0)
        self.v.fill_(1.0)
        self.calibrated[:] = [False] * len(self.calibrated)
