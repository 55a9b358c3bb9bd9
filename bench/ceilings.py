"""Hardware ceilings measured in the same run as a benchmark: device copy bandwidth and dense
bf16 matmul rate. Every figure of bench/engine_bench.py is reported as a fraction of these.

CLI: `python -m bench.ceilings` (CUDA; on CPU it measures the host with small sizes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass(slots=True)
class Ceilings:
    device: str
    copy_gbps: float  # device-to-device copy, read + write bytes per second / 1e9
    copy_bytes: int  # size of the copied buffer
    matmul_tflops: float  # n x n x n matmul in `matmul_dtype`
    matmul_n: int
    matmul_dtype: str


def time_ms(fn: Callable[[], object], *, warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time of fn in ms; CUDA events on GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def copy_bandwidth_gbps(device: torch.device, nbytes: int, repeats: int = 10) -> float:
    """Large device-to-device copy, counting bytes read plus bytes written."""
    src = torch.empty(nbytes // 2, device=device, dtype=torch.bfloat16).uniform_(-1.0, 1.0)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), repeats=repeats)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9


def matmul_tflops(device: torch.device, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    """Dense n^3 matmul rate (2 n^3 FLOPs per product)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    ms = time_ms(lambda: torch.matmul(a, b, out=out), repeats=repeats)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def measure(device: torch.device | None = None, *, copy_bytes: int | None = None,
            matmul_n: int | None = None, repeats: int = 10) -> Ceilings:
    """Defaults: 2 GiB copy and 8192^3 bf16 on CUDA; 64 MiB and 512^3 fp32 on CPU."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.init()
    copy_bytes = copy_bytes or (2 << 30 if cuda else 64 << 20)
    matmul_n = matmul_n or (8192 if cuda else 512)
    dtype = torch.bfloat16 if cuda else torch.float32
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    result = Ceilings(
        device=name,
        copy_gbps=copy_bandwidth_gbps(device, copy_bytes, repeats),
        copy_bytes=copy_bytes,
        matmul_tflops=matmul_tflops(device, matmul_n, dtype, repeats),
        matmul_n=matmul_n,
        matmul_dtype=str(dtype).removeprefix("torch."),
    )
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copy-mib", type=int, default=None)
    parser.add_argument("--matmul-n", type=int, default=None)
    args = parser.parse_args()
    copy_bytes = args.copy_mib << 20 if args.copy_mib else None
    print(json.dumps(asdict(measure(copy_bytes=copy_bytes, matmul_n=args.matmul_n)), indent=2))


if __name__ == "__main__":
    main()
