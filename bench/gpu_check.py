"""The one device script: every GPU check and benchmark of the engine, ending in a results table.

Sections (run in this order; each alone with `--only a,b`; a failing section is printed and the
run goes on):
  env       versions and device
  ceilings  device copy bandwidth (read + write bytes) and 8192^3 bf16 matmul rate
  kernels   Triton paged attention vs the torch reference on random, NaN-poisoned inputs
  tune      decode launch-config sweep (the fastest is used by the later sections)
  attn      decode / prefill attention kernels alone vs the ceilings, torch path as the peer
  pytest    `pytest -m gpu -q tests/`
  engine    7B-shaped random Llama: paged engine (bf16) vs transformers (fp32), same weights
  decode    engine decode through ModelRunner.step (the production path): batch-1 ms/token vs
            the weight-bandwidth floor, tokens/s by batch, graphs off (eager) and on
  ttft      cold vs cached-prefix TTFT of one request through EngineCore (1024-token prefix,
            64-token suffix), graphs off and on

Device: `PYTHONUNBUFFERED=1 python bench/gpu_check.py` (writes $OUT/gpu_check.json when $OUT is
set). Dev box: `python bench/gpu_check.py --dry-run` runs the same code on CPU with tiny sizes
(Triton in interpreter mode).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("env", "ceilings", "kernels", "tune", "attn", "pytest", "engine", "decode",
            "ttft")
KERNEL_TOL = 1e-2
LOGIT_TOL = 2e-2
GREEDY_MIN = 0.99


@dataclass(slots=True)
class Row:
    section: str
    metric: str
    value: str
    reference: str = ""
    verdict: str = ""


@dataclass(slots=True)
class ModelDims:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    max_pos: int


LLAMA2_7B = ModelDims(32, 4096, 32, 32, 11008, 32000, 4096)
TINY = ModelDims(2, 64, 4, 2, 128, 4096, 1024)  # vocab >= the tiny tokenizer's 3072


@dataclass
class Run:
    """State shared by the sections of one run."""

    dry_run: bool
    device: Any
    budget_s: float
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    ceilings: Any = None
    ckpt_dir: Path | None = None
    hf_model: Any = None
    runner: Any = None
    tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def dims(self) -> ModelDims:
        return TINY if self.dry_run else LLAMA2_7B

    def row(self, section: str, metric: str, value: str, reference: str = "",
            verdict: str = "") -> None:
        self.rows.append(Row(section, metric, value, reference, verdict))
        print(f"  [{section}] {metric}: {value}" + (f"  (ref {reference})" if reference else "")
              + (f"  {verdict}" if verdict else ""))

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _free_cuda() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- sections


def section_env(run: Run) -> None:
    import torch

    run.row("env", "torch", torch.__version__)
    try:
        import triton

        run.row("env", "triton", triton.__version__)
    except ImportError as exc:
        run.row("env", "triton", f"missing ({exc})", verdict="FAIL")
    try:
        import transformers

        run.row("env", "transformers", transformers.__version__)
    except ImportError:
        run.row("env", "transformers", "missing")
    if run.device.type == "cuda":
        props = torch.cuda.get_device_properties(run.device)
        run.row("env", "device", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, "
                f"{props.multi_processor_count} SMs, CUDA {torch.version.cuda}")
    else:
        run.row("env", "device", "cpu (dry run, Triton interpreter)")


def section_ceilings(run: Run) -> None:
    from bench.ceilings import measure

    if run.dry_run:
        run.ceilings = measure(run.device, copy_bytes=16 << 20, matmul_n=256, repeats=3)
    else:
        run.ceilings = measure(run.device)
    c = run.ceilings
    run.data["ceilings"] = asdict(c)
    run.row("ceilings", f"copy bandwidth ({c.copy_bytes >> 20} MiB, read+write)",
            f"{c.copy_gbps:.0f} GB/s")
    run.row("ceilings", f"matmul {c.matmul_n}^3 {c.matmul_dtype}", f"{c.matmul_tflops:.0f} TFLOP/s")


def _ceilings(run: Run) -> Any:
    if run.ceilings is None:
        section_ceilings(run)
    return run.ceilings


def _kernel_cases(dry_run: bool) -> list[dict[str, Any]]:
    import torch

    if dry_run:
        return [dict(kind=kind, dtype=torch.float16, block_size=bs, heads=(4, kv), head_dim=32,
                     query_lens=ql, kv_lens=kl)
                for kind, ql, kl in (("decode", [1, 1, 1], [1, 40, 300]),
                                     ("prefill", [1, 20, 7], [1, 20, 90]))
                for bs in (16, 32) for kv in (4, 1)]
    cases = []
    for dtype in (torch.bfloat16, torch.float16):
        for bs in (16, 32):
            for group in (1, 4, 8):
                heads = (32, 32 // group)
                cases.append(dict(kind="decode", dtype=dtype, block_size=bs, heads=heads,
                                  head_dim=128, query_lens=[1] * 6,
                                  kv_lens=[1, 17, 4500, 300, 1027, 64]))
                cases.append(dict(kind="prefill", dtype=dtype, block_size=bs, heads=heads,
                                  head_dim=128, query_lens=[1, 128, 37, 300, 2],
                                  kv_lens=[1, 128, 4200, 600, 4097]))
    return cases


def section_kernels(run: Run) -> None:
    import torch

    from engine.attention import triton_paged
    from engine.attention.triton_check import make_case, reference_attention, relative_error

    try:
        from engine.attention import torch_paged
    except ImportError:
        torch_paged = None
        run.row("kernels", "torch_paged reference", "not importable: dense reference only")
    worst = 0.0
    failures = 0
    results = []
    for i, c in enumerate(_kernel_cases(run.dry_run)):
        case = make_case(c["query_lens"], c["kv_lens"], c["heads"][0], c["heads"][1],
                         c["head_dim"], c["block_size"], c["dtype"], run.device, seed=100 + i)
        want = reference_attention(case)
        poisoned = torch.full_like(case.q, float("nan"))
        if c["kind"] == "decode":
            args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.seq_lens,
                    case.scale, case.max_seq_len)
            got = triton_paged.paged_decode(*args, out=poisoned)
            ref = torch_paged.paged_decode(*args) if torch_paged else None
            via_attention = triton_paged.paged_attention(
                case.q, case.k_cache, case.v_cache, case.block_tables, case.seq_lens,
                case.query_start_loc, case.scale, 1, case.max_seq_len)
            err_extra = relative_error(via_attention, want)
        else:
            args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.seq_lens,
                    case.query_start_loc, case.scale, case.max_query_len, case.max_seq_len)
            got = triton_paged.paged_attention(*args, out=poisoned)
            ref = torch_paged.paged_attention(*args) if torch_paged else None
            err_extra = 0.0
        err = max(relative_error(got, want), err_extra)
        # The torch reference on NaN-poisoned caches must agree with the dense one too; its
        # error is reported, the kernel verdict uses the dense reference.
        ref_err = relative_error(ref, want) if ref is not None else None
        name = (f"{c['kind']} {str(c['dtype']).removeprefix('torch.')} bs{c['block_size']} "
                f"G{c['heads'][0] // c['heads'][1]}")
        results.append({"case": name, "rel_err": err, "torch_paged_rel_err": ref_err})
        ok = err <= KERNEL_TOL
        failures += not ok
        worst = max(worst, err)
        print(f"    {name}: rel err {err:.2e}"
              + (f", torch_paged vs dense {ref_err:.2e}" if ref_err is not None else "")
              + ("" if ok else "  FAIL"))
    run.data["kernels"] = results
    scope = ("fp16, block 16/32, G 1/4, seq 1..300" if run.dry_run
             else "bf16/fp16, block 16/32, G 1/4/8, seq 1..4.5k")
    run.row("kernels", f"{len(results)} cases ({scope}), NaN-poisoned",
            f"max rel err {worst:.2e}, {failures} failed", f"<= {KERNEL_TOL:g}",
            _verdict(failures == 0))
    ref_errs = [r["torch_paged_rel_err"] for r in results if r["torch_paged_rel_err"] is not None]
    if ref_errs:
        run.row("kernels", "torch_paged vs dense reference", f"max rel err {max(ref_errs):.2e}",
                f"<= {KERNEL_TOL:g}", _verdict(max(ref_errs) <= KERNEL_TOL))


def _attn_shape(run: Run, **override: Any) -> dict[str, Any]:
    import torch

    if run.dry_run:
        shape = dict(batch=2, context=128, num_q_heads=4, num_kv_heads=4, head_dim=32,
                     dtype=torch.float16, device=run.device)
    else:
        shape = dict(batch=64, context=2048, num_q_heads=32, num_kv_heads=32, head_dim=128,
                     dtype=torch.bfloat16, device=run.device)
    shape.update(override)
    return shape


def _prefill_shape(run: Run) -> dict[str, Any]:
    shape = _attn_shape(run)
    del shape["batch"], shape["context"]
    if run.dry_run:
        return dict(batch=1, query_len=64, prefix=32, **shape)
    return dict(batch=4, query_len=2048, prefix=0, **shape)


def section_tune(run: Run) -> None:
    """Sweep launch configs; the fastest become the module defaults for the later sections."""
    from bench.engine_bench import DECODE_CONFIGS, PREFILL_CONFIGS, sweep
    from engine.attention import triton_paged

    targets = (("decode", DECODE_CONFIGS, _attn_shape(run), triton_paged.DECODE_TUNING),
               ("prefill", PREFILL_CONFIGS, _prefill_shape(run), triton_paged.PREFILL_TUNING))
    run.data["tune"] = {}
    for kind, configs, shape, tuning in targets:
        if run.dry_run:
            configs = [{**c, "block_n": 16} | ({"block_m": 16} if "block_m" in c else {})
                       for c in configs[:2]]
        default = {k: getattr(tuning, k) for k in configs[0]}
        results = sweep(kind, configs, _ceilings(run), **shape)
        run.data["tune"][kind] = [asdict(r) for r in results]
        if not results:
            run.row("tune", f"{kind} configs", "none ran", verdict="FAIL")
            continue
        for r in results:
            print(f"    {kind} {r.config}: {r.ms:.4f} ms")
        default_ms = next((r.ms for r in results if r.config == default), None)
        best = results[0]
        run.row("tune", f"best {kind} config", f"{best.config} {best.ms:.3f} ms",
                f"default {default} {default_ms:.3f} ms" if default_ms else "")
        for key, value in best.config.items():
            setattr(tuning, key, value)


def section_attn(run: Run) -> None:
    from bench.engine_bench import bench_decode_kernel, bench_prefill_kernel

    ceilings = _ceilings(run)
    gqa_kv_heads = 1 if run.dry_run else 8
    results = [bench_decode_kernel(ceilings, **_attn_shape(run)),
               bench_decode_kernel(ceilings, **_attn_shape(run, num_kv_heads=gqa_kv_heads))]
    results.append(bench_prefill_kernel(ceilings, **_prefill_shape(run)))
    if not run.dry_run:
        results.append(bench_prefill_kernel(ceilings, **{**_prefill_shape(run),
                                                         "query_len": 512, "prefix": 3584}))
    run.data["attn"] = []
    for r in results:
        unit = "GB/s" if r.name.startswith("decode") else "TFLOP/s"
        ceiling = "copy" if unit == "GB/s" else "matmul"
        peer = ""
        if r.peer_ms:
            speed = (f"{r.peer_ms / r.ms:.1f}x slower" if r.peer_ms >= r.ms
                     else f"{r.ms / r.peer_ms:.1f}x faster")
            peer = f"; torch path {r.peer_ms:.3f} ms ({speed})"
        run.row("attn", r.name, f"{r.ms:.3f} ms, {r.achieved:.4g} {unit}",
                f"{ceiling} {r.ceiling:.4g} {unit}: {r.ratio:.0%}{peer}")
        run.data["attn"].append({**asdict(r), "ratio": r.ratio})


def section_pytest(run: Run) -> None:
    try:
        import pytest  # noqa: F401
    except ImportError:
        run.row("pytest", "pytest -m gpu", "pytest not installed: skipped")
        return
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    # Modules that import packages absent on the device (litestar, sqlalchemy) fail to collect;
    # the GPU tests live in tests/engine, so a broken collection of the whole tree falls back.
    summary, rc, tail = "", 0, []
    for paths in (["tests/"], ["tests/engine"]):
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", *paths]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                              env=env)
        tail = (proc.stdout + proc.stderr).strip().splitlines()
        print("\n".join("    " + line for line in tail[-25:]))
        rc, summary = proc.returncode, f"{' '.join(paths)}: {tail[-1] if tail else '(none)'}"
        if "failed" not in summary and rc in (0, 5):
            break
        if rc == 1 and " passed" in summary and "failed" not in summary:
            break  # only collection errors besides passing tests
    run.data["pytest"] = {"returncode": rc, "tail": tail[-60:]}
    passed = "failed" not in summary and " passed" in summary
    run.row("pytest", "pytest -m gpu -q", summary,
            verdict="" if run.dry_run else _verdict(passed))  # CPU: every GPU test skips


# ----------------------------------------------------------------------------- engine


def _hf_config(dims: ModelDims) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=dims.vocab, hidden_size=dims.hidden, intermediate_size=dims.intermediate,
        num_hidden_layers=dims.layers, num_attention_heads=dims.heads,
        num_key_value_heads=dims.kv_heads, max_position_embeddings=dims.max_pos,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2,
    )


def _write_tokenizer(ckpt_dir: Path) -> None:
    """The engine loads tokenizer files with every checkpoint; take the tiny model's."""
    from engine.tiny_tokenizer import write_tokenizer

    write_tokenizer(ckpt_dir)


def ensure_checkpoint(run: Run) -> Path:
    """A random Llama checkpoint of run.dims on local disk (bf16 on CUDA, fp32 in the dry
    run), and the same weights in an fp32 transformers model on the device (run.hf_model).
    Weights are rounded to the checkpoint dtype first, so both models hold identical values."""
    if run.ckpt_dir is not None:
        return run.ckpt_dir
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    torch.set_float32_matmul_precision("highest")  # an fp32 reference, not TF32
    dims = run.dims
    ckpt_dtype = torch.float32 if run.dry_run else torch.bfloat16
    run.tmp = tempfile.TemporaryDirectory(prefix="prefixgate-gpu-check-")
    ckpt_dir = Path(run.tmp.name) / ("llama-tiny" if run.dry_run else "llama-7b-random")
    ckpt_dir.mkdir()
    config = _hf_config(dims)
    t0 = time.perf_counter()
    torch.manual_seed(1234)
    with torch.device(run.device):
        model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.normal_(0.0, 1.0)
            elif "lm_head" in name:
                p.normal_(0.0, 3.0 / dims.hidden**0.5)  # logits of a few units: not flat
            else:
                # NOTE: gain 0.64 per projection. Llama's 0.02 (gain 1.28 at 4096) makes a random
                # 32-layer model chaotic: transformers' own bf16 run is then ~5% off its fp32
                # run, and sharper attention amplifies bf16 noise further.
                p.normal_(0.0, 0.64 / p.shape[1] ** 0.5)
            p.copy_(p.to(ckpt_dtype).to(torch.float32))
    model.eval()
    state = {k: v.to(ckpt_dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(ckpt_dir / "model.safetensors"), metadata={"format": "pt"})
    del state
    config.dtype = str(ckpt_dtype).removeprefix("torch.")
    config.save_pretrained(ckpt_dir)
    _write_tokenizer(ckpt_dir)
    run.ckpt_dir, run.hf_model = ckpt_dir, model
    print(f"    random checkpoint ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B "
          f"params) written to {ckpt_dir} in {time.perf_counter() - t0:.0f} s")
    return ckpt_dir


def ensure_runner(run: Run) -> Any:
    if run.runner is not None:
        return run.runner
    from engine.model_runner import ModelRunner

    ckpt = ensure_checkpoint(run)
    run.hf_model = None
    _free_cuda()
    kwargs: dict[str, Any] = dict(device=run.device.type, block_size=16)
    if run.dry_run:
        kwargs.update(dtype="float32", num_blocks=256)
    else:
        kwargs.update(dtype="bfloat16", kv_fraction=0.85)
    t0 = time.perf_counter()
    run.runner = ModelRunner.load(ckpt, **kwargs)
    if run.dry_run:  # no graphs on CPU: route through their padded eager forward instead
        from engine.step_graphs import StepGraphs

        run.runner.graphs = StepGraphs.for_runner(run.runner, use_graphs=False)
    print(f"    ModelRunner loaded in {time.perf_counter() - t0:.0f} s: "
          f"{run.runner.num_blocks} KV blocks")
    return run.runner


@dataclass(slots=True)
class LogitCompare:
    """Engine logits vs reference logits, one row per compared position."""

    rel_l2: list[float] = field(default_factory=list)
    rel_max: list[float] = field(default_factory=list)
    strict: int = 0
    near_tie: int = 0
    total: int = 0

    def add(self, got: Any, want: Any) -> None:
        got, want = got.float().cpu(), want.float().cpu()
        assert got.shape == want.shape, (got.shape, want.shape)
        for g, w in zip(got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1]),
                        strict=True):
            diff = g - w
            self.rel_l2.append(float(diff.norm() / w.norm()))
            self.rel_max.append(float(diff.abs().max() / w.abs().max()))
            pick, best = int(g.argmax()), int(w.argmax())
            self.total += 1
            self.strict += pick == best
            # a near tie: the engine's pick is within 5% of a logit std of the reference max
            self.near_tie += pick != best and float(w[best] - w[pick]) <= 0.05 * float(w.std())

    def summary(self) -> str:
        if not self.total:
            return "nothing compared"
        return (f"rel err L2 max {max(self.rel_l2):.2e} (mean {sum(self.rel_l2) / self.total:.1e})"
                f", max-abs {max(self.rel_max):.2e}; greedy {self.strict}/{self.total}")

    def ok(self) -> bool:
        return bool(self.total) and max(self.rel_l2) <= LOGIT_TOL and self.greedy_ok()

    def greedy_ok(self) -> bool:
        return (self.strict >= GREEDY_MIN * self.total
                or self.strict + self.near_tie == self.total)


def _reference_logits(model: Any, seqs: list[list[int]], device: Any) -> list[Any]:
    import torch

    out = []
    with torch.no_grad():
        for seq in seqs:
            ids = torch.tensor([seq], device=device)
            out.append(model(ids).logits[0].float().cpu())
    return out


def section_engine(run: Run) -> None:
    import torch

    from engine.model_runner import SeqChunk, StepBatch

    dims = run.dims
    ensure_checkpoint(run)
    gen = torch.Generator().manual_seed(7)

    def tokens(n: int) -> list[int]:
        return torch.randint(3, dims.vocab, (n,), generator=gen).tolist()

    bs = 16
    seq_a = tokens(300)
    seq_b = seq_a[:256] + tokens(100)  # shares 16 full blocks with A
    seq_c = tokens(333)
    chunks_c = [(0, 128), (128, 256), (256, 333)]
    prompt_lens = [5, 17, 64, 100, 129, 250, 31, 400]
    steps = 64
    seqs_d = [tokens(n + steps) for n in prompt_lens]
    if run.hf_model is None:
        raise RuntimeError("reference model missing: run the engine section before decode")
    t0 = time.perf_counter()
    ref_a, ref_b, ref_c, *ref_d = _reference_logits(run.hf_model,
                                                    [seq_a, seq_b, seq_c, *seqs_d], run.device)
    print(f"    transformers fp32 reference logits in {time.perf_counter() - t0:.0f} s")
    # The peer: transformers itself in bf16 on the same (bf16-exact) weights, same positions.
    peer = LogitCompare()
    bf16_d = _reference_logits(run.hf_model.to(torch.bfloat16), seqs_d, run.device)
    for got, want, n in zip(bf16_d, ref_d, prompt_lens, strict=True):
        peer.add(got[n - 1:n + steps], want[n - 1:n + steps])
    run.hf_model = None
    runner = ensure_runner(run)
    alloc = runner.allocator

    def table(n_tokens: int) -> list[int]:
        return list(alloc.allocate(-(-n_tokens // bs)))

    compares: dict[str, LogitCompare] = {k: LogitCompare() for k in
                                         ("prefill", "cached prefix", "chunked prefill",
                                          "decode 8x64")}
    owned: list[list[int]] = []
    try:
        t_a = table(len(seq_a))
        owned.append(t_a)
        logits = runner.step(StepBatch(seqs=[SeqChunk(seq_a, 0, t_a)]))
        compares["prefill"].add(logits[0], ref_a[-1])
        t_b = t_a[:16] + table(len(seq_b) - 256)
        owned.append(t_b[16:])
        logits = runner.step(StepBatch(seqs=[SeqChunk(seq_b[256:], 256, t_b)]))
        compares["cached prefix"].add(logits[0], ref_b[-1])
        t_c = table(len(seq_c))
        owned.append(t_c)
        for lo, hi in chunks_c:
            logits = runner.step(StepBatch(seqs=[SeqChunk(seq_c[lo:hi], lo, t_c)]))
            compares["chunked prefill"].add(logits[0], ref_c[hi - 1])
        t_d = [table(len(s)) for s in seqs_d]
        owned.extend(t_d)
        logits = runner.step(StepBatch(seqs=[SeqChunk(s[:n], 0, t)
                                             for s, n, t in zip(seqs_d, prompt_lens, t_d,
                                                                strict=True)]))
        compares["prefill"].add(logits, torch.stack([r[n - 1] for r, n in
                                                     zip(ref_d, prompt_lens, strict=True)]))
        for i in range(steps):
            batch = StepBatch(seqs=[SeqChunk([s[n + i]], n + i, t) for s, n, t in
                                    zip(seqs_d, prompt_lens, t_d, strict=True)])
            logits = runner.step(batch)
            compares["decode 8x64"].add(logits, torch.stack(
                [r[n + i] for r, n in zip(ref_d, prompt_lens, strict=True)]))
        compares["decode 8x64 (graphs off)"] = _eager_decode_compare(
            runner, seqs_d, prompt_lens, t_d, ref_d, steps)
    finally:
        for t in owned:
            alloc.free(t)
    compares["peer: transformers bf16 vs fp32"] = peer
    run.data["engine"] = {}
    for name, cmp in compares.items():
        run.data["engine"][name] = {"rel_l2": cmp.rel_l2, "rel_max": cmp.rel_max,
                                    "strict": cmp.strict, "near_tie": cmp.near_tie,
                                    "total": cmp.total}
        near = f" (+{cmp.near_tie} near ties)" if cmp.near_tie else ""
        is_peer = name.startswith("peer")
        run.row("engine", name, cmp.summary() + near,
                "same positions as decode 8x64" if is_peer
                else f"L2 <= {LOGIT_TOL:g}, greedy >= {GREEDY_MIN:.0%}",
                "" if is_peer else _verdict(cmp.ok()))


def _eager_decode_compare(runner: Any, seqs: list[list[int]], prompt_lens: list[int],
                          tables: list[list[int]], refs: list[Any], steps: int) -> LogitCompare:
    """The decode steps again with the runner's graphs off (rewriting the same K/V into the
    same slots): the eager path must match the reference like the graphed one."""
    import torch

    from bench.engine_bench import graphs_off
    from engine.model_runner import SeqChunk, StepBatch

    cmp = LogitCompare()
    with graphs_off(runner):
        for i in range(steps):
            logits = runner.step(StepBatch(seqs=[SeqChunk([s[n + i]], n + i, t) for s, n, t in
                                                 zip(seqs, prompt_lens, tables, strict=True)]))
            cmp.add(logits, torch.stack([r[n + i] for r, n in zip(refs, prompt_lens,
                                                                   strict=True)]))
    return cmp


def section_decode(run: Run) -> None:
    from bench.engine_bench import bench_engine_decode, floor_ms, weight_bytes

    ceilings = _ceilings(run)
    runner = ensure_runner(run)
    sizes = (1, 2, 4) if run.dry_run else (1, 16, 64, 256)
    results = bench_engine_decode(runner, batch_sizes=sizes, context=64 if run.dry_run else 512,
                                  steps=4 if run.dry_run else 32)
    floor = floor_ms(runner, ceilings)
    run.data["decode"] = {"floor_ms": floor, "weight_bytes": weight_bytes(runner),
                          "results": [{**asdict(r), "tokens_per_s": r.tokens_per_s}
                                      for r in results]}
    for r in results:
        if r.batch == 1:
            ratio = r.ms_per_step / floor
            verdict = _verdict(ratio <= 1.5) if r.mode != "eager" else ""
            run.row("decode", f"batch 1 ctx {r.context} ModelRunner.step {r.mode}",
                    f"{r.ms_per_step:.2f} ms/token",
                    f"floor {floor:.2f} ms (weights/copy bw): {ratio:.2f}x (target <= 1.5x)",
                    verdict)
        else:
            run.row("decode", f"batch {r.batch} ctx {r.context} ModelRunner.step {r.mode}",
                    f"{r.tokens_per_s:.0f} tok/s ({r.ms_per_step:.1f} ms/step)")


def section_ttft(run: Run) -> None:
    """Cold vs cached-prefix TTFT of one request on an idle EngineCore (bench/serve_bench.py's
    probe: a 1024-token prefix, then a 64-token suffix over it), graphs on and off."""
    from bench import serve_bench
    from bench.engine_bench import graphs_off

    runner = ensure_runner(run)
    model_dir = str(run.ckpt_dir)
    serve_bench._RUNNERS[model_dir] = runner  # make_core reuses the loaded weights
    prefix_len = 64 if run.dry_run else 1024

    def probe() -> dict[str, float]:
        def core() -> Any:  # a fresh engine: empty prefix cache, every block free
            return serve_bench.make_core(model_dir, run.device.type, None, 256,
                                         runner.max_batch_tokens)

        serve_bench.cached_vs_cold_ttft(core(), run.dims.vocab, prefix_len)  # warm-up
        return serve_bench.cached_vs_cold_ttft(core(), run.dims.vocab, prefix_len)

    graphed = probe() if runner.graphs is not None else None
    with graphs_off(runner):
        eager = probe()
    run.data["ttft"] = {"graphs": graphed, "eager": eager, "prefix_len": prefix_len}
    for label, res in (("eager", eager), ("step graphs", graphed)):
        if res is None:
            continue
        cached = min(res["cached"], res["cached_again"])
        run.row("ttft", f"{prefix_len}-token prefix + 64-token suffix, {label}",
                f"cached {cached:.1f} ms vs cold {res['cold']:.1f} ms: ratio {res['ratio']:.2f}",
                "target ratio <= 0.20 (GPU issue <= 0.15)",
                "" if label == "eager" or run.dry_run else _verdict(res["ratio"] <= 0.20))


# ----------------------------------------------------------------------------- driver

SECTION_FNS: dict[str, Callable[[Run], None]] = {
    "env": section_env, "ceilings": section_ceilings, "kernels": section_kernels,
    "tune": section_tune, "attn": section_attn, "pytest": section_pytest,
    "engine": section_engine, "decode": section_decode, "ttft": section_ttft,
}


def print_table(run: Run) -> str:
    headers = ("section", "metric", "value", "reference / ceiling", "verdict")
    rows = [(r.section, r.metric, r.value, r.reference, r.verdict) for r in run.rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, Triton interpreter: checks the script itself")
    parser.add_argument("--budget-s", type=float, default=510.0,
                        help="skip sections that would start after this many seconds")
    parser.add_argument("--json", default=None, help="JSON path (default $OUT/gpu_check.json)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported anywhere
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run on CPU")
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    run = Run(dry_run=args.dry_run, device=device, budget_s=args.budget_s)
    status: dict[str, str] = {}
    for name in SECTIONS:
        if name not in only:
            continue
        if run.elapsed() > run.budget_s:
            status[name] = "skipped (time budget)"
            run.row(name, "section", "skipped: time budget spent", verdict="SKIP")
            continue
        print(f"\n=== {name} (t={run.elapsed():.0f} s) ===", flush=True)
        t0 = time.perf_counter()
        try:
            SECTION_FNS[name](run)
            status[name] = f"ok in {time.perf_counter() - t0:.0f} s"
        except Exception as exc:
            traceback.print_exc()
            status[name] = f"error: {exc!r}"[:300]
            run.row(name, "section error", f"{type(exc).__name__}: {exc}"[:160], verdict="ERROR")
        finally:
            if name == "engine":
                run.hf_model = None
            _free_cuda()
    table = print_table(run)
    print("\n=== summary (paste into bench/RESULTS.md) ===")
    print(f"command: PYTHONUNBUFFERED=1 python bench/gpu_check.py"
          f"{' --dry-run' if args.dry_run else ''} --only {','.join(only)}; "
          f"total {run.elapsed():.0f} s")
    for name, st in status.items():
        print(f"  {name}: {st}")
    print(table)
    out_path = args.json or (str(Path(os.environ["OUT"]) / "gpu_check.json")
                             if os.environ.get("OUT") else None)
    if out_path:
        payload = {"status": status, "rows": [asdict(r) for r in run.rows], "data": run.data,
                   "elapsed_s": run.elapsed()}
        Path(out_path).write_text(json.dumps(payload, indent=1, default=str))
        print(f"full results: {out_path}")
    if run.tmp is not None:
        run.runner = None
        run.tmp.cleanup()
    failed = any(r.verdict in ("FAIL", "ERROR") for r in run.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
