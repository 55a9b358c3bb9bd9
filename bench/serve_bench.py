"""Serving benchmark: prefixgate's engine vs transformers' `generate_batch`, same model, same run.

W1: 256 requests over 16 system prompts of 1024 tokens (zipf), 64–256-token suffixes, 128 output
tokens. W2: multi-turn chats, each turn reusing its conversation's blocks. W3: W1's shapes with no
sharing. Prints output tok/s, TTFT p50/p95, ITL p50/p95, prefix hit rate, peak KV occupancy and
fragmentation for prefixgate, output tok/s for transformers, and cached-vs-cold TTFT.

GPU: `python -m bench.serve_bench --model DIR` (or `--random-7b`); CPU smoke: `--smoke`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from bench.workloads import (
    BenchRequest,
    chat_turn,
    public_prefix_workload,
    shared_prefix_workload,
)
from engine.block_allocator import BlockAllocator
from engine.engine_config import EngineConfig
from engine.engine_core import EngineCore
from engine.messages import EngineRequest, PromptSegment, SamplingParams
from engine.model_runner import ModelRunner


@dataclass(slots=True)
class RunStats:
    name: str
    requests: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    peak_kv_occupancy: float = 0.0
    peak_fragmentation: float = 0.0
    mean_fragmentation: float = 0.0

    @property
    def tok_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        def q(xs: list[float], p: float) -> float | None:
            return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) >= 2 else None

        return {
            "name": self.name,
            "requests": self.requests,
            "output_tokens": self.output_tokens,
            "seconds": round(self.seconds, 3),
            "output_tok_s": round(self.tok_s, 1),
            "ttft_p50_ms": _ms(q(self.ttft, 50)),
            "ttft_p95_ms": _ms(q(self.ttft, 95)),
            "itl_p50_ms": _ms(q(self.itl, 50)),
            "itl_p95_ms": _ms(q(self.itl, 95)),
            "prefix_hit_rate": round(self.cached_tokens / self.prompt_tokens, 4)
            if self.prompt_tokens
            else None,
            "peak_kv_occupancy": round(self.peak_kv_occupancy, 4),
            "peak_fragmentation": round(self.peak_fragmentation, 4),
            "mean_fragmentation": round(self.mean_fragmentation, 4),
        }


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1e3, 2)


def _engine_request(r: BenchRequest) -> EngineRequest:
    if r.public_len:
        public_ns = r.public_namespace or r.namespace
        segs = [PromptSegment(public_ns, r.prefix[: r.public_len]),
                PromptSegment(r.namespace, r.prefix[r.public_len :]),
                PromptSegment(r.namespace, r.suffix)]
    else:
        segs = [PromptSegment(r.namespace, r.prefix), PromptSegment(r.namespace, r.suffix)]
    return EngineRequest(
        r.rid, tuple(segs), SamplingParams(max_tokens=r.max_tokens, temperature=0.0,
                                           ignore_eos=True),
    )


def run_prefixgate(core: EngineCore, reqs: list[BenchRequest], name: str,
                   stats: RunStats | None = None) -> tuple[RunStats, dict[str, list[int]]]:
    """Submit every request at t=0 and step the engine until all finish."""
    stats = stats or RunStats(name)
    arrival: dict[str, float] = {}
    last: dict[str, float] = {}
    outputs: dict[str, list[int]] = {}
    frag: list[float] = []
    t0 = time.perf_counter()
    for r in reqs:
        core.add_request(_engine_request(r))
        arrival[r.rid] = time.perf_counter()
    bar = tqdm(total=len(reqs), desc=f"prefixgate {name}", leave=False)
    while core.has_work():
        outs = core.step()
        now = time.perf_counter()
        st = core.stats()
        stats.peak_kv_occupancy = max(stats.peak_kv_occupancy, st.kv_occupancy)
        stats.peak_fragmentation = max(stats.peak_fragmentation, st.fragmentation)
        frag.append(st.fragmentation)
        for o in outs:
            if o.error is not None:
                raise RuntimeError(f"{o.request_id}: {o.error!r}")
            ev = o.event
            if ev.token_id is not None:
                outputs.setdefault(ev.request_id, []).append(ev.token_id)
                if ev.request_id in last:
                    stats.itl.append(now - last[ev.request_id])
                else:
                    stats.ttft.append(now - arrival[ev.request_id])
                last[ev.request_id] = now
                stats.output_tokens += 1
            if ev.finished:
                stats.requests += 1
                stats.prompt_tokens += ev.result.prompt_tokens
                stats.cached_tokens += ev.result.cached_tokens
                bar.update(1)
    bar.close()
    stats.seconds += time.perf_counter() - t0
    stats.mean_fragmentation = statistics.fmean(frag) if frag else 0.0
    return stats, outputs


def run_chat(core: EngineCore, convs: int, turns: int, vocab: int, seed: int = 1) -> RunStats:
    """W2: every conversation's turn k runs together; turn k+1 extends turn k's tokens."""
    rng = random.Random(seed)
    stats = RunStats("W2")
    history = {c: tuple(rng.randrange(10, vocab) for _ in range(256)) for c in range(convs)}
    for t in range(turns):
        reqs = [chat_turn(rng, c, t, history[c], 64, 64, vocab) for c in range(convs)]
        _, outs = run_prefixgate(core, reqs, f"W2 turn {t}", stats)
        for r in reqs:
            history[int(r.rid[1:].split("t")[0])] = (*r.prompt, *outs[r.rid])
    return stats


def run_w4(core: EngineCore, vocab: int, share: bool, label: str, sizes: dict) -> dict:
    """W4: prefill tokens actually computed and throughput, public sharing on or off."""
    reqs = public_prefix_workload(vocab=vocab, share_public=share, **sizes)
    stats, _ = run_prefixgate(core, reqs, label)
    row = stats.summary()
    row["prefill_tokens_computed"] = stats.prompt_tokens - stats.cached_tokens
    row["prompt_tokens"] = stats.prompt_tokens
    return row


def cached_vs_cold_ttft(core: EngineCore, vocab: int, prefix_len: int = 1024) -> dict:
    """TTFT of one request on an idle engine: its 1024-token prefix cold, then cached."""
    rng = random.Random(7)
    prefix = tuple(rng.randrange(10, vocab) for _ in range(prefix_len))
    out = {}
    for label in ("cold", "cached", "cached_again"):
        suffix = tuple(rng.randrange(10, vocab) for _ in range(64))
        r = BenchRequest(f"ttft-{label}", b"ttft-probe", prefix, suffix, 1)
        st, _ = run_prefixgate(core, [r], label)
        out[label] = st.ttft[0]
    out["ratio"] = min(out["cached"], out["cached_again"]) / out["cold"]
    return {k: round(v * 1e3, 3) if k != "ratio" else round(v, 4) for k, v in out.items()}


def run_transformers(model_dir: str, reqs: list[BenchRequest], name: str) -> RunStats:
    """The peer: transformers' continuous batching (paged attention) on the same checkpoint."""
    from transformers import AutoModelForCausalLM
    from transformers.generation import GenerationConfig

    stats = RunStats(f"transformers {name}")
    model = None
    for impl in ("paged|sdpa", "sdpa_paged"):
        try:
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, attn_implementation=impl, dtype=torch.bfloat16, device_map="cuda")
            break
        except (ValueError, ImportError) as exc:
            print(f"transformers attn_implementation={impl!r} refused: {exc}")
    if model is None:
        raise RuntimeError("no paged attention implementation in this transformers")
    # EOS is a token id no random prompt emits on purpose; generation may still stop on it, so
    # throughput counts the tokens actually generated.
    gen = GenerationConfig(max_new_tokens=reqs[0].max_tokens, do_sample=False)
    inputs = [r.prompt for r in reqs]
    model.generate_batch(inputs=inputs[:4], generation_config=gen, progress_bar=False)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    results = model.generate_batch(inputs=inputs, generation_config=gen, progress_bar=True)
    torch.cuda.synchronize()
    stats.seconds = time.perf_counter() - t0
    stats.requests = len(results)
    stats.output_tokens = sum(len(o.generated_tokens) for o in results.values())
    del model, results
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    return stats


_RUNNERS: dict[str, ModelRunner] = {}


def make_core(model_dir: str, device: str, num_blocks: int | None, max_num_seqs: int,
              max_batch_tokens: int) -> EngineCore:
    """A fresh engine (empty prefix cache, every block free) over weights loaded once."""
    config = EngineConfig(model_dir=model_dir, device=device, num_blocks=num_blocks,
                          max_num_seqs=max_num_seqs, max_batch_tokens=max_batch_tokens,
                          max_queue=100_000, kv_high_water=None, queue_timeout_s=3600,
                          itl_target_s=None)
    runner = _RUNNERS.get(model_dir)
    if runner is None:
        runner = ModelRunner.load(model_dir, device=device, num_blocks=num_blocks,
                                  max_batch_tokens=max_batch_tokens,
                                  cuda_graphs=config.cuda_graphs, max_num_seqs=max_num_seqs)
        _RUNNERS[model_dir] = runner
    runner.allocator = BlockAllocator(runner.num_blocks, runner.block_size)
    return EngineCore(runner, config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="HF checkpoint directory")
    ap.add_argument("--random-7b", action="store_true",
                    help="write a random Llama-2-7B-shaped bf16 checkpoint and use it")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (a test runs this)")
    ap.add_argument("--workloads", default="W1,W2,W3,W4")
    ap.add_argument("--peer", default="W1,W3", help="workloads to run transformers on")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--max-batch-tokens", type=int, default=4096)
    ap.add_argument("--num-blocks", type=int, default=None)
    ap.add_argument("--json", help="write all figures here")
    args = ap.parse_args()

    if args.smoke:
        from engine.tiny_model import write_tiny_model

        model_dir = str(Path(os.environ.get("TMPDIR", "/tmp")) / "prefixgate-serve-smoke")
        write_tiny_model(model_dir)
        device, sizes = "cpu", dict(num_requests=12, num_prompts=3, prefix_len=64,
                                     suffix_range=(4, 16), max_tokens=8)
        convs, turns, num_blocks, peer = 3, 2, args.num_blocks or 256, ""
    else:
        if args.random_7b:
            from bench.random_checkpoint import write_random_llama_7b

            model_dir = write_random_llama_7b()
        else:
            model_dir = args.model
        device, sizes, convs, turns = "cuda", {}, 32, 4
        num_blocks, peer = args.num_blocks, args.peer
    vocab = json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
    report: dict = {"model": model_dir, "device": device}
    wl = set(args.workloads.split(","))
    w1 = shared_prefix_workload(vocab=vocab, **sizes)
    w3 = shared_prefix_workload(vocab=vocab, share=False, seed=3, **sizes)
    workloads = {"W1": w1, "W3": w3}
    rows = []

    def attempt(label: str, fn) -> None:
        try:
            row = fn()
        except Exception as exc:  # one failing workload must not cost the others' figures
            print(f"{label} FAILED: {exc!r}")
            report[f"{label}_error"] = repr(exc)
            return
        rows.append(row)
        print("ROW", json.dumps(row))

    # The peer runs first, before our engine claims most of the GPU memory for its KV pool.
    for name in [p for p in peer.split(",") if p in workloads]:
        attempt(f"transformers {name}",
                lambda n=name: run_transformers(model_dir, workloads[n], n).summary())
    make = lambda: make_core(  # noqa: E731
        model_dir, device, num_blocks, args.max_num_seqs, args.max_batch_tokens)
    for name in ("W1", "W3"):
        if name in wl:
            attempt(name, lambda n=name: run_prefixgate(make(), workloads[n], n)[0].summary())
    if "W2" in wl:
        attempt("W2", lambda: run_chat(make(), convs, turns, vocab).summary())
    if "W4" in wl:
        w4 = dict(tenants=4, per_tenant=2, public_len=64, private_len=32, turn_len=8,
                  max_tokens=8) if args.smoke else {}
        for share in (True, False):
            label = "W4 public shared" if share else "W4 per-tenant"
            attempt(label, lambda s=share, lb=label: run_w4(make(), vocab, s, lb, w4))
    try:
        report["ttft_cached_vs_cold_ms"] = cached_vs_cold_ttft(
            make(), vocab, prefix_len=1024 if not args.smoke else 64)
    except Exception as exc:
        report["ttft_error"] = repr(exc)
    report["num_blocks"] = next(iter(_RUNNERS.values())).num_blocks if _RUNNERS else None
    report["rows"] = rows
    for a, b in (("W1", "transformers W1"), ("W3", "transformers W3")):
        ra = next((r for r in rows if r["name"] == a), None)
        rb = next((r for r in rows if r["name"] == b), None)
        if ra and rb and rb["output_tok_s"]:
            speedup = ra["output_tok_s"] / rb["output_tok_s"]
            report[f"{a}_speedup_vs_transformers"] = round(speedup, 2)
    _print_table(rows)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def _print_table(rows: list[dict]) -> None:
    cols = ["name", "requests", "output_tok_s", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms",
            "itl_p95_ms", "prefix_hit_rate", "peak_kv_occupancy", "peak_fragmentation",
            "prefill_tokens_computed"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))


if __name__ == "__main__":
    main()
