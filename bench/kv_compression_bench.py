"""KV compression: memory, quality and decode speed of fp8/int8 KV and H2O/adaptive eviction.

Memory (shapes only, no weights needed): bytes per token and the most concurrent sequences a
fixed pool holds, model-dtype KV vs fp8 vs int8 (and with an eviction budget), for the model
and for Llama-2-7B shapes.

Quality (CPU by default): the same weights decode a prompt's continuation with model-dtype KV
(the baseline) and with each compressed variant, teacher-forced on the baseline's greedy tokens
(or on held-out text with `--text`): mean relative logit error against the baseline, greedy
agreement (argmax equal to the baseline's), and perplexity of the forced tokens. H2O and the
adaptive policy run at `--budget` (default 20%) of the final KV length.

Speed (`--gpu`, CUDA): decode tokens/s of a large batch at a fixed context, model-dtype KV vs
fp8 KV, in the same run (device tensors, no host sync per step).

CLI:
  OMP_NUM_THREADS=1 .venv/bin/python -m bench.kv_compression_bench [--model DIR] [--steps 1000]
      [--prompt 256] [--budget 0.2] [--text FILE] [--dtype bf16]
  .venv/bin/python -m bench.kv_compression_bench --gpu [--model DIR | --preset llama2-7b]
      [--batch 64] [--context 1024] [--decode-steps 64]
"""

from __future__ import annotations

import argparse
import gc
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from engine.config import ModelConfig
from engine.kv_eviction import EvictionState, peak_kv_tokens
from engine.kv_quant import resolve_kv_dtype
from engine.memory_plan import GIB, bytes_per_token
from engine.messages import KVPolicy
from engine.model_runner import ModelRunner, SeqChunk, StepBatch

LLAMA2_7B = ModelConfig(architecture="LlamaForCausalLM", vocab_size=32000, hidden_size=4096,
                        intermediate_size=11008, num_layers=32, num_heads=32, num_kv_heads=32,
                        head_dim=128, max_position_embeddings=4096)


# --- memory --------------------------------------------------------------------------------------
def memory_table(name: str, config: ModelConfig, model_dtype: torch.dtype, pool_gib: float,
                 seq_len: int, block_size: int, policy: KVPolicy) -> None:
    print(f"\n[memory] {name}: pool {pool_gib:g} GiB, sequences of {seq_len} tokens "
          f"(H2O rows: prompt {seq_len // 4}), block {block_size}")
    print(f"  {'KV':<28}{'bytes/token':>12}{'tokens in pool':>16}{'max seqs':>10}{'vs base':>9}")
    base = None
    for kv in ("auto", "fp8", "int8"):
        per_token = bytes_per_token(config, resolve_kv_dtype(kv, model_dtype))
        blocks = int(pool_gib * GIB) // (per_token * block_size)
        rows = [(f"{kv if kv != 'auto' else str(model_dtype).removeprefix('torch.')}", seq_len)]
        peak = peak_kv_tokens(seq_len // 4, seq_len, block_size, policy, None)
        rows.append((f"  + H2O budget {policy.budget} tok", peak))
        for label, tokens in rows:
            seqs = blocks // -(-tokens // block_size)
            base = base or seqs
            print(f"  {label:<28}{per_token:>12,}{blocks * block_size:>16,}{seqs:>10,}"
                  f"{seqs / base:>8.2f}x")


# --- quality -------------------------------------------------------------------------------------
@dataclass(slots=True)
class Quality:
    name: str
    rel_err: float
    agreement: float
    ppl: float
    kv_tokens: int  # KV length at the end (what the variant keeps)
    note: str = ""


def _forced_logits(runner: ModelRunner, stream: list[int], prompt: int,
                   policy: KVPolicy | None, desc: str) -> tuple[torch.Tensor, int, str]:
    """Logits predicting stream[prompt:], feeding stream[prompt:-1] one token at a time after a
    prefill of stream[:prompt]; with `policy`, evicting as the engine does (H2O / adaptive)."""
    bs = runner.block_size
    table = runner.allocator.allocate(-(-len(stream) // bs))
    state = EvictionState(policy) if policy is not None else None
    cfg = runner.config
    group = cfg.num_heads // cfg.num_kv_heads
    shift = 0
    out = []
    try:
        for t in tqdm(range(prompt, len(stream)), desc=desc, leave=False):
            start = 0 if t == prompt else t - 1
            chunk = SeqChunk(stream[start:t], start, table, shift)
            batch = StepBatch([chunk])
            if state is None:
                logits = runner.step(batch)
            else:
                kv_len = t - shift
                mask = state.head_mask(kv_len)
                full = None if mask is None else mask[:, None].to(runner.device)
                logits, scores = runner.step_with_scores(batch, full)
                state.accumulate(scores[0, ..., :kv_len], group, is_decode=t > prompt)
                if t > prompt and state.due(kv_len, bs):
                    keep = state.select(kv_len)
                    runner.compact_kv(table, keep)
                    state.compacted(keep)
                    shift += kv_len - len(keep)
            out.append(logits[0].float().cpu())
    finally:
        runner.allocator.free(table)
    note = ""
    if state is not None:
        note = f"{state.evictions} evictions"
        if state.policy_counts:
            note += "; heads " + ", ".join(f"{k} {v}" for k, v in state.policy_counts.items())
    return torch.stack(out), len(stream) - 1 - shift, note


def _quality(name: str, logits: torch.Tensor, ref: torch.Tensor, targets: torch.Tensor,
             kv_tokens: int, note: str = "") -> Quality:
    rel = ((logits - ref).norm(dim=-1) / ref.norm(dim=-1)).mean().item()
    agree = (logits.argmax(-1) == ref.argmax(-1)).float().mean().item()
    nll = torch.nn.functional.cross_entropy(logits, targets).item()
    return Quality(name, rel, agree, math.exp(nll), kv_tokens, note)


def quality(model_dir: Path, args: argparse.Namespace) -> None:
    load = dict(device="cpu", dtype=args.dtype, kv_cache_gib=args.cpu_pool_gib, progress=False)
    base = ModelRunner.load(model_dir, **load)
    vocab = base.config.vocab_size
    if args.text:
        ids = base.tokenizer.encode(Path(args.text).read_text(encoding="utf-8"))
        need = args.prompt + args.steps
        if len(ids) < need:
            raise SystemExit(f"{args.text}: {len(ids)} tokens, need {need}")
        stream = ids[:need]
        source = f"held-out text {args.text}"
    else:
        gen = torch.Generator().manual_seed(0)
        stream = torch.randint(10, vocab, (args.prompt,), generator=gen).tolist()
        source = "greedy continuation of the model-dtype-KV baseline"
    # The baseline: greedy from the prompt (or forced on the text).
    total = args.prompt + args.steps
    if not args.text:
        table = base.allocator.allocate(-(-total // base.block_size))
        logits = base.step(StepBatch([SeqChunk(stream, 0, table)]))
        for i in tqdm(range(args.steps - 1), desc="baseline greedy", leave=False):
            stream.append(int(logits[0].argmax()))
            logits = base.step(StepBatch([SeqChunk([stream[-1]], args.prompt + i, table)]))
        stream.append(int(logits[0].argmax()))
        base.allocator.free(table)
    ref, _, _ = _forced_logits(base, stream, args.prompt, None, "baseline forced")
    targets = torch.tensor(stream[args.prompt:])
    budget = max(16, int(args.budget * total))
    sinks = 4
    recent = (budget - sinks) // 2
    h2o = KVPolicy("h2o", sinks, recent, budget - sinks - recent)
    adaptive = KVPolicy("adaptive", sinks, recent, budget - sinks - recent,
                        min_mass=args.min_mass)
    results = [_quality(f"{base.kv_dtype} KV (baseline)", ref, ref, targets, total - 1)]
    for kv in ("fp8", "int8"):
        runner = ModelRunner.load(model_dir, kv_dtype=kv, **load)
        logits, kept, _ = _forced_logits(runner, stream, args.prompt, None, f"{kv} KV")
        results.append(_quality(f"{kv} KV", logits, ref, targets, kept))
    for label, policy in ((f"H2O @ {args.budget:.0%}", h2o),
                          (f"adaptive @ {args.budget:.0%}", adaptive)):
        logits, kept, note = _forced_logits(base, stream, args.prompt, policy, label)
        results.append(_quality(label, logits, ref, targets, kept, note))
    print(f"\n[quality] {model_dir.name}: prompt {args.prompt}, {args.steps} decode steps, "
          f"forced on the {source}; budget {budget} tokens = sinks {sinks} + recent {recent} + "
          f"heavy {budget - sinks - recent}; adaptive min mass {args.min_mass}")
    print(f"  {'variant':<26}{'rel logit err':>14}{'greedy agree':>14}{'ppl':>10}{'KV kept':>9}")
    for r in results:
        print(f"  {r.name:<26}{r.rel_err:>14.4f}{r.agreement:>13.2%}{r.ppl:>10.3f}"
              f"{r.kv_tokens:>9}  {r.note}")


# --- speed (CUDA) --------------------------------------------------------------------------------
def decode_speed(model_dir: Path, kv: str, batch: int, context: int, steps: int) -> float:
    """Decode tokens/s of `batch` sequences at `context` tokens each, after a chunked prefill."""
    bs = 16
    per_seq = -(-(context + steps) // bs)
    runner = ModelRunner.load(model_dir, device="cuda", kv_dtype=kv, num_blocks=batch * per_seq,
                              max_batch_tokens=8192, progress=False)
    dev = runner.device
    gen = torch.Generator().manual_seed(0)
    tables = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(batch)]
    prompts = torch.randint(10, runner.config.vocab_size, (batch, context), generator=gen)
    per_step = max(1, 8192 // context)
    for lo in tqdm(range(0, batch, per_step), desc=f"prefill ({kv})", leave=False):
        chunks = [SeqChunk(prompts[i].tolist(), 0, tables[i])
                  for i in range(lo, min(batch, lo + per_step))]
        runner.step(StepBatch(chunks))
    ids = torch.randint(10, runner.config.vocab_size, (batch,), device=dev)
    pos = torch.full((batch,), context, dtype=torch.int64, device=dev)
    bt = torch.tensor(tables, dtype=torch.int32, device=dev)
    rows = torch.arange(batch, device=dev)

    def step() -> None:
        nonlocal ids
        slots = bt[rows, pos // bs].long() * bs + pos % bs
        logits = runner.decode_step(ids, pos, slots, bt, (pos + 1).to(torch.int32),
                                    context + steps)
        ids = logits.argmax(-1)
        pos.add_(1)

    step()  # compile/warm
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in tqdm(range(steps - 1), desc=f"decode ({kv})", leave=False):
        step()
    torch.cuda.synchronize()
    return batch * (steps - 1) / (time.perf_counter() - t0)


def speed(model_dir: Path, args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    figures = {}
    for kv in tqdm(("auto", "fp8"), desc="kv dtypes"):
        figures[kv] = decode_speed(model_dir, kv, args.batch, args.context, args.decode_steps)
        gc.collect()  # the previous dtype's runner (weights and pool) must be gone
        torch.cuda.empty_cache()
    print(f"\n[speed] {model_dir.name} on {torch.cuda.get_device_name()}: batch {args.batch}, "
          f"context {args.context}, {args.decode_steps} decode steps")
    print(f"  model-dtype KV (triton_paged) {figures['auto']:>10,.0f} tok/s")
    print(f"  fp8 KV (triton_quant)         {figures['fp8']:>10,.0f} tok/s "
          f"({figures['fp8'] / figures['auto']:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint dir (default: a fresh tiny random model)")
    ap.add_argument("--dtype", default=None, help="model dtype (CPU default fp32)")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--budget", type=float, default=0.2, help="eviction KV budget (fraction)")
    ap.add_argument("--text", help="held-out text: report perplexity on it")
    ap.add_argument("--min-mass", type=float, default=0.9,
                    help="adaptive: attention mass a head's policy must keep")
    ap.add_argument("--pool-gib", type=float, default=40.0, help="memory table pool (7B)")
    ap.add_argument("--cpu-pool-gib", type=float, default=0.25)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--gpu", action="store_true", help="decode speed on CUDA")
    ap.add_argument("--preset", default="llama2-7b", help="--gpu without --model: random preset")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--decode-steps", type=int, default=64)
    args = ap.parse_args()
    if args.gpu:
        from bench.random_checkpoint import write_random_llama

        model_dir = Path(args.model) if args.model else write_random_llama(
            Path(tempfile.gettempdir()) / f"prefixgate-{args.preset}-random", args.preset)
        speed(model_dir, args)
        return
    from engine.tiny_model import write_tiny_model

    model_dir = Path(args.model) if args.model else write_tiny_model(tempfile.mkdtemp())
    config = ModelConfig.from_dir(model_dir)
    budget = max(16, int(args.budget * args.seq_len))
    policy = KVPolicy("h2o", 4, (budget - 4) // 2, budget - 4 - (budget - 4) // 2)
    memory_table("Llama-2-7B shapes", LLAMA2_7B, torch.bfloat16, args.pool_gib, args.seq_len,
                 16, policy)
    memory_table(model_dir.name, config, torch.bfloat16, args.cpu_pool_gib, args.seq_len, 16,
                 policy)
    quality(model_dir, args)


if __name__ == "__main__":
    main()
