"""Decode and attention throughput of the paged engine, each next to its hardware ceiling.

- decode attention kernel alone (batch 64, 2k context): KV bytes read per second vs the measured
  device copy bandwidth, with the torch reference path timed as the peer;
- prefill attention kernel: useful FLOP/s vs the measured bf16 matmul rate;
- engine decode through `ModelRunner.step`, eager and replaying the runner's CUDA graphs
  (engine/step_graphs.py): batch-1 ms/token vs the weight-bandwidth floor (weight bytes / copy
  bandwidth) and tokens/s at larger batches.

CLI: `python -m bench.engine_bench --model DIR` (CUDA). bench/gpu_check.py calls the functions.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.ceilings import Ceilings, measure, time_ms


def bench_ms(fn: Callable[[], object], *, rep_ms: int = 60) -> float:
    """Median ms: triton's do_bench on CUDA (flushes L2 between runs), perf_counter on CPU."""
    if torch.cuda.is_available():
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=15, rep=rep_ms, return_mode="median"))
    return time_ms(fn, warmup=1, repeats=3)


@dataclass(slots=True)
class KernelResult:
    name: str
    ms: float
    achieved: float  # GB/s (decode) or TFLOP/s (prefill)
    ceiling: float  # the matching hardware ceiling of the same run
    peer_ms: float | None = None  # torch reference path, same inputs
    shape: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.achieved / self.ceiling


def _torch_reference() -> Any | None:
    try:
        from engine.attention import torch_paged
    except ImportError:
        return None
    return torch_paged


def bench_decode_kernel(ceilings: Ceilings, *, batch: int = 64, context: int = 2048,
                        num_q_heads: int = 32, num_kv_heads: int = 32, head_dim: int = 128,
                        block_size: int = 16, dtype: torch.dtype = torch.bfloat16,
                        device: str = "cuda", tuning: Any = None,
                        with_peer: bool = True) -> KernelResult:
    """One decode attention call over `batch` sequences of `context` tokens (one layer)."""
    from engine.attention import triton_paged
    from engine.attention.triton_check import make_case

    case = make_case([1] * batch, [context] * batch, num_q_heads, num_kv_heads, head_dim,
                     block_size, dtype, device, poison=False)
    args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.seq_lens, case.scale,
            case.max_seq_len)
    ms = bench_ms(lambda: triton_paged.paged_decode(*args, tuning=tuning))
    kv_bytes = triton_paged.kv_bytes_read(case.kv_lens, num_kv_heads, head_dim,
                                          case.q.element_size())
    peer_ms = None
    ref = _torch_reference() if with_peer else None
    if ref is not None:
        peer_ms = bench_ms(lambda: ref.paged_decode(*args))
    return KernelResult(
        name=f"decode attn B{batch} ctx{context} G{num_q_heads // num_kv_heads}",
        ms=ms, achieved=kv_bytes / (ms * 1e-3) / 1e9, ceiling=ceilings.copy_gbps,
        peer_ms=peer_ms,
        shape={"batch": batch, "context": context, "num_q_heads": num_q_heads,
               "num_kv_heads": num_kv_heads, "head_dim": head_dim, "block_size": block_size,
               "dtype": str(dtype)},
    )


def bench_prefill_kernel(ceilings: Ceilings, *, batch: int = 4, query_len: int = 2048,
                         prefix: int = 0, num_q_heads: int = 32, num_kv_heads: int = 32,
                         head_dim: int = 128, block_size: int = 16,
                         dtype: torch.dtype = torch.bfloat16, device: str = "cuda",
                         tuning: Any = None, with_peer: bool = True) -> KernelResult:
    """Causal prefill of `batch` chunks of `query_len` tokens over a `prefix`-token cached
    prefix (one layer)."""
    from engine.attention import triton_paged
    from engine.attention.triton_check import make_case

    kv_len = prefix + query_len
    case = make_case([query_len] * batch, [kv_len] * batch, num_q_heads, num_kv_heads,
                     head_dim, block_size, dtype, device, poison=False)
    args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.seq_lens,
            case.query_start_loc, case.scale, case.max_query_len, case.max_seq_len)
    ms = bench_ms(lambda: triton_paged.paged_attention(*args, tuning=tuning))
    flops = triton_paged.attention_flops(case.query_lens, case.kv_lens, num_q_heads, head_dim)
    peer_ms = None
    ref = _torch_reference() if with_peer else None
    if ref is not None:
        peer_ms = bench_ms(lambda: ref.paged_attention(*args))
    return KernelResult(
        name=f"prefill attn B{batch} q{query_len} prefix{prefix}",
        ms=ms, achieved=flops / (ms * 1e-3) / 1e12, ceiling=ceilings.matmul_tflops,
        peer_ms=peer_ms,
        shape={"batch": batch, "query_len": query_len, "prefix": prefix,
               "num_q_heads": num_q_heads, "num_kv_heads": num_kv_heads, "head_dim": head_dim},
    )


@dataclass(slots=True)
class TuningResult:
    config: dict[str, int]
    ms: float


DECODE_CONFIGS: tuple[dict[str, int], ...] = (
    {"block_n": 64, "num_warps": 4, "num_stages": 3},
    {"block_n": 128, "num_warps": 8, "num_stages": 3},
    {"block_n": 64, "num_warps": 8, "num_stages": 2},
    {"block_n": 32, "num_warps": 4, "num_stages": 2},
)
PREFILL_CONFIGS: tuple[dict[str, int], ...] = (
    {"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 2},
    {"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 3},
    {"block_m": 128, "block_n": 64, "num_warps": 8, "num_stages": 3},
    {"block_m": 128, "block_n": 32, "num_warps": 4, "num_stages": 3},
    {"block_m": 64, "block_n": 32, "num_warps": 4, "num_stages": 3},
)


def sweep(kind: str, configs: Sequence[dict[str, int]], ceilings: Ceilings,
          **shape: Any) -> list[TuningResult]:
    """Time each launch config of the decode or prefill kernel on one shape; fastest first.
    A config that fails (e.g. too much shared memory) is reported and skipped."""
    from engine.attention.triton_paged import DecodeTuning, PrefillTuning

    results: list[TuningResult] = []
    for config in configs:
        try:
            if kind == "decode":
                res = bench_decode_kernel(ceilings, tuning=DecodeTuning(**config),
                                          with_peer=False, **shape)
            else:
                res = bench_prefill_kernel(ceilings, tuning=PrefillTuning(**config),
                                           with_peer=False, **shape)
        except Exception as exc:
            print(f"  {kind} config {config} failed: {exc!r}")
            continue
        results.append(TuningResult(config=dict(config), ms=res.ms))
    return sorted(results, key=lambda r: r.ms)


@dataclass(slots=True)
class DecodeResult:
    batch: int
    context: int
    mode: str  # "eager" (graphs off), "CUDA graphs", or "padded eager" (graph buffers, CPU)
    ms_per_step: float

    @property
    def tokens_per_s(self) -> float:
        return self.batch / (self.ms_per_step * 1e-3)


def weight_bytes(runner: Any) -> int:
    """Bytes of the loaded weights (the memory plan's figure, else the parameters')."""
    plan = getattr(runner, "plan", None)
    if plan is not None and getattr(plan, "weights_bytes", None):
        return int(plan.weights_bytes)
    return sum(p.numel() * p.element_size() for p in runner.model.parameters())


@contextmanager
def graphs_off(runner: Any) -> Iterator[None]:
    """`runner.step` runs eagerly for the duration of the block (the peer of the graphs)."""
    saved, runner.graphs = runner.graphs, None
    try:
        yield
    finally:
        runner.graphs = saved


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_engine_decode(runner: Any, *, batch_sizes: Sequence[int] = (1, 16, 64, 256),
                        context: int = 512, steps: int = 16, warmup: int = 2,
                        progress: bool = True) -> list[DecodeResult]:
    """Decode `steps` tokens for `batch` sequences already holding `context` tokens, through
    `ModelRunner.step` (the production path: host metadata, graph replay where captured),
    eagerly and with the runner's graphs. KV content is whatever the pool holds: timing does
    not depend on it. The context shrinks when the pool cannot hold the batch."""
    from tqdm import tqdm

    from engine.model_runner import SeqChunk, StepBatch

    bs = runner.block_size
    graphs = runner.graphs
    mode = "" if graphs is None else (
        "CUDA graphs" if graphs.decode.use_graphs else "padded eager")
    results: list[DecodeResult] = []
    for batch in tqdm(batch_sizes, desc="engine decode", disable=not progress):
        per_seq_blocks = runner.allocator.num_free // batch
        ctx = min(context, per_seq_blocks * bs - steps - warmup)
        if ctx < bs:
            print(f"  batch {batch}: pool too small ({runner.allocator.num_free} free blocks)")
            continue
        n_blocks = -(-(ctx + steps + warmup) // bs)
        tables = [runner.allocator.allocate(n_blocks) for _ in range(batch)]

        def one_step(pos: int, tables: list[list[int]] = tables) -> None:
            runner.step(StepBatch(seqs=[SeqChunk(token_ids=[1 + i % 100], start_pos=pos,
                                                 block_table=t)
                                        for i, t in enumerate(tables)]))

        def time_steps(ctx: int = ctx) -> float:
            for i in range(warmup):
                one_step(ctx + i)
            _sync(runner.device)
            t0 = time.perf_counter()
            for i in range(steps):
                one_step(ctx + warmup + i)
            _sync(runner.device)
            return (time.perf_counter() - t0) * 1e3 / steps

        try:
            with graphs_off(runner):
                results.append(DecodeResult(batch, ctx, "eager", time_steps()))
            if graphs is not None and batch <= graphs.decode.max_batch:
                results.append(DecodeResult(batch, ctx, mode, time_steps()))
        finally:
            for t in tables:
                runner.allocator.free(t)
    return results


def floor_ms(runner: Any, ceilings: Ceilings) -> float:
    """Batch-1 decode floor: every weight byte read once at the measured copy bandwidth."""
    return weight_bytes(runner) / (ceilings.copy_gbps * 1e9) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="checkpoint dir for the engine decode benchmark")
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--batch-sizes", default="1,16,64,256")
    args = parser.parse_args()
    ceilings = measure()
    print(asdict(ceilings))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for res in (bench_decode_kernel(ceilings, device=device),
                bench_decode_kernel(ceilings, num_kv_heads=8, device=device),
                bench_prefill_kernel(ceilings, device=device)):
        print(f"{res.name}: {res.ms:.3f} ms, {res.achieved:.1f} of {res.ceiling:.1f} "
              f"({res.ratio:.0%}); torch reference {res.peer_ms} ms")
    if args.model:
        from engine.model_runner import ModelRunner

        sizes = [int(b) for b in args.batch_sizes.split(",")]
        runner = ModelRunner.load(args.model, device=device, max_num_seqs=max(sizes))
        print(f"floor (weights / copy bandwidth): {floor_ms(runner, ceilings):.2f} ms/token")
        for res in bench_engine_decode(runner, batch_sizes=sizes, context=args.context):
            print(f"batch {res.batch} ctx {res.context} {res.mode}: {res.ms_per_step:.2f} ms/step"
                  f", {res.tokens_per_s:.0f} tok/s")


if __name__ == "__main__":
    main()
