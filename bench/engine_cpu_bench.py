"""The embedded engine on CPU against transformers on the same tiny checkpoint.

Figures, each printed beside its peer from the same run: prefill tokens/s of one prompt,
decode tokens/s of a batch of equal-length sequences (transformers runs the same batch with
its own KV cache, no padding needed), prefill on a cached prefix vs cold, and the largest
relative logit error against transformers seen along the way.

CLI: `OMP_NUM_THREADS=1 .venv/bin/python -m bench.engine_cpu_bench [--model DIR]`
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm


def _timed(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    from transformers import AutoModelForCausalLM

    from engine.model_runner import ModelRunner, SeqChunk, StepBatch
    from engine.tiny_model import write_tiny_model

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", help="checkpoint dir (default: a fresh init-tiny)")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    model_dir = Path(args.model) if args.model else write_tiny_model(tempfile.mkdtemp())
    t0 = time.perf_counter()
    runner = ModelRunner.load(model_dir, device="cpu", num_blocks=1024, progress=True)
    load_s = time.perf_counter() - t0
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rng = random.Random(0)
    vocab = runner.config.vocab_size
    prompt = [rng.randrange(6, vocab) for _ in range(args.prompt)]
    bs = runner.block_size
    alloc = runner.allocator
    worst = 0.0

    def err(got: torch.Tensor, want: torch.Tensor) -> float:
        return float(((got - want).abs().amax(-1) / want.abs().amax(-1)).max())

    bar = tqdm(total=4, desc="engine vs transformers")
    table = alloc.allocate(-(-len(prompt) // bs))
    eng_prefill = _timed(lambda: runner.step(StepBatch([SeqChunk(prompt, 0, table)])), 3)
    with torch.no_grad():
        ref = hf(torch.tensor([prompt])).logits[0]
        hf_prefill = _timed(lambda: hf(torch.tensor([prompt])), 3)
    worst = max(worst, err(runner.step(StepBatch([SeqChunk(prompt, 0, table)]))[0], ref[-1]))
    bar.update()
    # cached prefix: all full blocks but the last reused, the tail recomputed
    split = (len(prompt) // bs - 1) * bs
    eng_cached = _timed(
        lambda: runner.step(StepBatch([SeqChunk(prompt[split:], split, table)])), 3)
    worst = max(worst, err(runner.step(StepBatch([SeqChunk(prompt[split:], split, table)]))[0],
                           ref[-1]))
    alloc.free(table)
    bar.update()
    # batched decode
    n, steps = args.batch, args.steps
    plen = 64
    prompts = [[rng.randrange(6, vocab) for _ in range(plen)] for _ in range(n)]
    tables = [alloc.allocate(-(-(plen + steps) // bs)) for _ in range(n)]
    logits = runner.step(StepBatch([SeqChunk(p, 0, t) for p, t in zip(prompts, tables,
                                                                        strict=True)]))
    toks = logits.argmax(-1).tolist()
    t0 = time.perf_counter()
    for i in range(steps):
        logits = runner.step(StepBatch([SeqChunk([tok], plen + i, t)
                                        for tok, t in zip(toks, tables, strict=True)]))
        toks = logits.argmax(-1).tolist()
    eng_decode = (time.perf_counter() - t0) / steps
    for t in tables:
        alloc.free(t)
    bar.update()
    with torch.no_grad():
        out = hf(torch.tensor(prompts), use_cache=True)
        toks_hf = out.logits[:, -1].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(steps):
            out = hf(toks_hf[:, None], cache=out.cache, use_cache=True)
            toks_hf = out.logits[:, -1].argmax(-1)
        hf_decode = (time.perf_counter() - t0) / steps
    bar.update()
    bar.close()
    same = toks == toks_hf.tolist()
    print(f"model {runner.model_id}: {runner.config.num_layers} layers, hidden "
          f"{runner.config.hidden_size}, load {load_s:.2f} s; torch threads "
          f"{torch.get_num_threads()}")
    print(f"prefill {args.prompt} tokens: engine {args.prompt / eng_prefill:,.0f} tok/s "
          f"({eng_prefill * 1e3:.1f} ms) | transformers {args.prompt / hf_prefill:,.0f} tok/s "
          f"({hf_prefill * 1e3:.1f} ms)")
    print(f"cached prefix ({split} of {args.prompt} tokens reused): engine "
          f"{eng_cached * 1e3:.1f} ms vs cold {eng_prefill * 1e3:.1f} ms "
          f"({eng_prefill / eng_cached:.1f}x)")
    print(f"decode batch {n} x {steps} steps (prompt {plen}): engine {n / eng_decode:,.0f} tok/s "
          f"({eng_decode * 1e3:.1f} ms/step) | transformers {n / hf_decode:,.0f} tok/s "
          f"({hf_decode * 1e3:.1f} ms/step); last greedy tokens identical: {same}")
    print(f"max relative logit error vs transformers (fp32): {worst:.2e}")


if __name__ == "__main__":
    main()
