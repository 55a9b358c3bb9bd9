"""Train prefixgate's embedded demo model: a small Llama on the Python standard library's source.

One process, one command: collect the stdlib .py files (test dirs and site-packages excluded,
sorted; 2% of files held out for the reported perplexity and 2% for choosing the epoch count),
train an 8k byte-level BPE on the training files, then train the model once per candidate epoch
count (each a full warm-up + cosine schedule from the same seeded init) and keep the one with
the lowest validation loss. The checkpoint (bf16 safetensors, config.json, tokenizer files) is
saved before the held-out evaluation, so a failure there still leaves a loadable model; the
model card README.md is rewritten as the perplexity and the sample completion come in.

Run: `python bench/train_demo_model.py --size demo --device cuda --out DIR` (H100: minutes);
`--size small` is the reduced CPU variant the tests run. `--minutes` caps the training wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import sysconfig
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tokenizers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from tqdm import tqdm  # noqa: E402

from engine.config import ModelConfig  # noqa: E402
from engine.tiny_tokenizer import BOS, CHAT_TEMPLATE, END, EOS, SPECIAL_TOKENS  # noqa: E402
from engine.training import TrainingLlama  # noqa: E402

EXCLUDED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages",
                           "__pycache__"})
HELD_OUT_FRACTION = 0.02  # of the files, for each of the test and validation splits
MIN_STDLIB_FILES = 200  # fewer means a stripped stdlib (.pyc only): refuse rather than mistrain
PROMPT = "def fibonacci(n):"
MODEL_NAME = "prefixgate-demo"
MAX_POSITIONS = 2048


@dataclass(frozen=True, slots=True)
class Size:
    """Model shape and training recipe of one `--size`."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    seq_len: int
    batch_size: int
    lr: float
    dropout: float
    epochs: tuple[int, ...]  # candidate epoch counts, each a full schedule; validation picks one
    warmup_steps: int


SIZES: dict[str, Size] = {
    # ~6.8M parameters (tied embeddings): 13.6 MB in bf16, under the 16 MiB a device run returns.
    "demo": Size(vocab_size=8192, hidden_size=256, intermediate_size=768, num_layers=6,
                 num_heads=4, num_kv_heads=2, seq_len=512, batch_size=64, lr=2e-3, dropout=0.1,
                 epochs=(6, 12, 24, 48), warmup_steps=100),
    # The reduced CPU variant (tests, dev box): use it with --max-files.
    "small": Size(vocab_size=1024, hidden_size=64, intermediate_size=192, num_layers=2,
                  num_heads=2, num_kv_heads=1, seq_len=64, batch_size=8, lr=3e-3, dropout=0.1,
                  epochs=(1, 2), warmup_steps=10),
}


@dataclass(frozen=True, slots=True)
class Corpus:
    """Relative paths under `root`, split by a hash of the path (stable across stdlib versions)."""

    root: Path
    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]

    def text(self, rel: str) -> str:
        return (self.root / rel).read_bytes().decode("utf-8", errors="replace")

    def nbytes(self, files: tuple[str, ...]) -> int:
        return sum((self.root / rel).stat().st_size for rel in files)

    def digest(self) -> str:
        """SHA-256 over every split's paths and bytes: equal digests mean equal corpora."""
        h = hashlib.sha256()
        for split in (self.train, self.valid, self.test):
            for rel in split:
                data = (self.root / rel).read_bytes()
                h.update(f"{rel}\0{len(data)}\0".encode())
                h.update(data)
            h.update(b"\1")
        return h.hexdigest()


@dataclass(slots=True)
class RunResult:
    epochs: int
    steps: int
    seconds: float
    tokens_per_s: float
    train_loss: float
    valid_nll: float
    stopped_early: bool
    state: dict[str, torch.Tensor]


@dataclass(slots=True)
class Report:
    """Everything the model card states; filled in as the run goes."""

    size: str
    seed: int
    device: str
    command: str
    python: str = platform.python_version()
    corpus_digest: str = ""
    corpus_files: tuple[int, int, int] = (0, 0, 0)
    corpus_bytes: tuple[int, int, int] = (0, 0, 0)
    corpus_tokens: tuple[int, int, int] = (0, 0, 0)
    params: int = 0
    runs: tuple[RunResult, ...] = ()
    chosen: RunResult | None = None
    unigram_ppl: float | None = None
    test_ppl: float | None = None
    sample: str | None = None
    train_seconds: float = 0.0


# --- corpus and tokenizer -------------------------------------------------------------------
def stdlib_files(root: Path) -> list[str]:
    """Sorted relative paths of the non-empty stdlib .py files outside test dirs and
    site-packages."""
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if (not EXCLUDED_DIRS.intersection(rel.parts[:-1]) and path.is_file()
                and path.read_bytes().strip()):
            out.append(rel.as_posix())
    return sorted(out)


def split_corpus(root: Path, max_files: int | None = None) -> Corpus:
    """Order files by SHA-256 of their path; the first 2% are the test split, the next 2% the
    validation split. `max_files` keeps the first N of that order (reduced runs)."""
    files = sorted(stdlib_files(root), key=lambda rel: hashlib.sha256(rel.encode()).hexdigest())
    if max_files is None and len(files) < MIN_STDLIB_FILES:
        raise SystemExit(f"{root}: only {len(files)} .py files; is the stdlib source installed?")
    files = files[:max_files] if max_files else files
    held = max(1, round(HELD_OUT_FRACTION * len(files)))
    if len(files) < 2 * held + 1:
        raise SystemExit(f"{root}: {len(files)} files are too few to split")
    return Corpus(root=root, test=tuple(sorted(files[:held])),
                  valid=tuple(sorted(files[held:2 * held])),
                  train=tuple(sorted(files[2 * held:])))


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with engine/tiny_tokenizer.py's special tokens (deterministic)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.encode_special_tokens = True  # as the engine encodes text: "<|end|>" in a file is text
    return tok


def encode_stream(tok: Tokenizer, texts: list[str]) -> torch.Tensor:
    """int64 [N]: every file as BOS + its tokens + EOS, concatenated in order."""
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    ids: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids.append(bos)
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int64)


# --- training -------------------------------------------------------------------------------
def hf_config(size: Size, tok: Tokenizer) -> dict:
    """config.json of a transformers LlamaForCausalLM with tied embeddings."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "hidden_size": size.hidden_size,
        "intermediate_size": size.intermediate_size,
        "num_hidden_layers": size.num_layers,
        "num_attention_heads": size.num_heads,
        "num_key_value_heads": size.num_kv_heads,
        "head_dim": size.hidden_size // size.num_heads,
        "max_position_embeddings": MAX_POSITIONS,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "bos_token_id": tok.token_to_id(BOS),
        "eos_token_id": [tok.token_to_id(EOS), tok.token_to_id(END)],
        "_name_or_path": MODEL_NAME,
    }


def lr_at(step: int, total: int, size: Size) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    warm = min(size.warmup_steps, max(1, total // 10))
    if step < warm:
        return size.lr * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    return size.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))


def epoch_starts(n_tokens: int, seq_len: int, gen: torch.Generator) -> torch.Tensor:
    """Shuffled starts of non-overlapping (seq_len + 1)-token windows, at a random offset."""
    offset = int(torch.randint(seq_len, (1,), generator=gen))
    count = (n_tokens - 1 - offset) // seq_len
    assert count > 0, "corpus shorter than one training window"
    return offset + torch.randperm(count, generator=gen) * seq_len


def batches_per_epoch(n_tokens: int, size: Size) -> int:
    return max(1, ((n_tokens - 1) // size.seq_len - 1) // size.batch_size)


def build_model(cfg: ModelConfig, size: Size, seed: int, device: torch.device) -> TrainingLlama:
    model = TrainingLlama(cfg, dropout=size.dropout)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.to(device)


def make_optimizer(model: TrainingLlama, size: Size) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices (tied embedding once)
    keep = [p for p in model.parameters() if p.dim() < 2]  # norm gains
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": keep, "weight_decay": 0.0}],
                             lr=size.lr, betas=(0.9, 0.95), eps=1e-8)


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_run(cfg: ModelConfig, size: Size, data: torch.Tensor, valid: torch.Tensor,
              epochs: int, seed: int, device: torch.device, deadline: float,
              compile_model: bool) -> RunResult:
    """One full schedule of `epochs` epochs from the seeded init; stops early at `deadline`."""
    torch.manual_seed(seed)
    model = build_model(cfg, size, seed, device)
    step_fn = torch.compile(model) if compile_model else model
    opt = make_optimizer(model, size)
    per_epoch = batches_per_epoch(len(data), size)
    total = per_epoch * epochs
    gen = torch.Generator().manual_seed(seed + 1)
    window = torch.arange(size.seq_len + 1, device=device)
    data = data.to(device)
    started = time.monotonic()
    loss_sum, loss_n, last_loss, stopped = torch.zeros((), device=device), 0, float("nan"), False
    bar = tqdm(total=total, desc=f"train {epochs} epochs", unit="step", mininterval=5.0)
    step = 0
    for _ in range(epochs):
        starts = epoch_starts(len(data), size.seq_len, gen).to(device)
        for b in range(per_epoch):
            if time.monotonic() > deadline:
                stopped = True
                break
            rows = data[starts[b * size.batch_size:(b + 1) * size.batch_size, None] + window]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, size)
            with autocast(device):
                logits = step_fn(rows[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum += loss.detach()
            loss_n += 1
            step += 1
            if step == 1:  # the first step carries CUDA/cuBLAS warm-up and any torch.compile
                took = time.monotonic() - started
                tqdm.write(f"first step: loss {float(loss.detach()):.3f}, {took:.1f} s"
                           f"{' (includes torch.compile)' if compile_model else ''}")
            if step % 25 == 0 or step == total:
                last_loss = float(loss_sum) / loss_n
                loss_sum.zero_()
                loss_n = 0
                elapsed = time.monotonic() - started
                bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr_at(step, total, size):.1e}",
                                tok_s=f"{step * size.batch_size * size.seq_len / elapsed:,.0f}")
            bar.update(1)
        if stopped:
            break
    bar.close()
    if loss_n:
        last_loss = float(loss_sum) / loss_n
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.monotonic() - started
    valid_nll = mean_nll(model, valid, size, device)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return RunResult(epochs=epochs, steps=step, seconds=seconds,
                     tokens_per_s=step * size.batch_size * size.seq_len / max(seconds, 1e-9),
                     train_loss=last_loss, valid_nll=valid_nll, stopped_early=stopped,
                     state=state)


@torch.no_grad()
def mean_nll(model: TrainingLlama, stream: torch.Tensor, size: Size,
             device: torch.device) -> float:
    """Mean next-token negative log-likelihood (nats) over every token of `stream` but the
    first, scored in consecutive windows of `seq_len` tokens (each window starts afresh)."""
    was_training = model.training
    model.eval()
    stream = stream.to(device)
    n = len(stream)
    assert n >= 2, "held-out stream too short"
    starts = list(range(0, n - 1, size.seq_len))
    total = torch.zeros((), dtype=torch.float64, device=device)
    full = [s for s in starts if s + size.seq_len + 1 <= n]
    window = torch.arange(size.seq_len + 1, device=device)
    for i in range(0, len(full), size.batch_size):
        idx = torch.tensor(full[i:i + size.batch_size], device=device)[:, None] + window
        total += _nll_sum(model, stream[idx], device)
    tail = [s for s in starts if s + size.seq_len + 1 > n]
    for s in tail:
        total += _nll_sum(model, stream[None, s:], device)
    model.train(was_training)
    return float(total) / (n - 1)


def _nll_sum(model: TrainingLlama, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    with autocast(device):
        logits = model(rows[:, :-1])
    return F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten(),
                           reduction="sum").double()


def unigram_ppl(train: torch.Tensor, test: torch.Tensor, vocab: int) -> float:
    """Perplexity of add-one unigram frequencies of the training tokens on the test tokens."""
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    logp = (counts / counts.sum()).log()
    return math.exp(-float(logp[test[1:]].mean()))


# --- output ---------------------------------------------------------------------------------
def write_tokenizer_files(out: Path, tok: Tokenizer) -> None:
    """tokenizer.json, tokenizer_config.json (chat template) and generation_config.json, in the
    layout of engine/tiny_tokenizer.py."""
    (out / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": MAX_POSITIONS,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    generation = {"bos_token_id": tok.token_to_id(BOS),
                  "eos_token_id": [tok.token_to_id(EOS), tok.token_to_id(END)]}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2),
                                                encoding="utf-8")


def save_checkpoint(out: Path, config: dict, state: dict[str, torch.Tensor],
                    tok: Tokenizer) -> int:
    """Write the checkpoint; returns the weight file's size in bytes."""
    out.mkdir(parents=True, exist_ok=True)
    weights = {name: t.to(torch.bfloat16).contiguous() for name, t in state.items()
               if not (config["tie_word_embeddings"] and name == "lm_head.weight")}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    write_tokenizer_files(out, tok)
    return (out / "model.safetensors").stat().st_size


def greedy_completion(model_dir: Path, prompt: str, max_new_tokens: int = 48) -> str:
    """The engine's own greedy decode: ModelRunner (CPU) prefill, then one token a step."""
    from engine.model_runner import ModelRunner, SeqChunk, StepBatch

    runner = ModelRunner.load(model_dir, device="cpu", num_blocks=16, block_size=16,
                              max_batch_tokens=256, progress=False)
    tok = runner.tokenizer
    ids = [tok.bos_token_id, *tok.encode(prompt)] if tok.add_bos else tok.encode(prompt)
    table = list(range(runner.num_blocks))
    logits = runner.step(StepBatch([SeqChunk(ids, 0, table)]))
    out: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(logits[0].argmax())
        if nxt in tok.eos_token_ids:
            break
        out.append(nxt)
        logits = runner.step(StepBatch([SeqChunk([nxt], len(ids) + len(out) - 1, table)]))
    return prompt + tok.decode(out)


def model_card(r: Report, size: Size, vocab: int, weight_bytes: int) -> str:
    runs = "\n".join(
        f"| {x.epochs} | {x.steps} | {x.train_loss:.3f} | {math.exp(x.valid_nll):.2f} | "
        f"{x.seconds:.0f} | {x.tokens_per_s:,.0f} | {'yes' if x.stopped_early else 'no'} |"
        for x in r.runs
    )
    chosen = r.chosen
    test = f"{r.test_ppl:.2f}" if r.test_ppl is not None else "not measured (evaluation failed)"
    unigram = f"{r.unigram_ppl:.1f}" if r.unigram_ppl is not None else "not measured"
    sample = r.sample if r.sample is not None else "(not produced: the engine decode failed)"
    files, nbytes, ntoks = r.corpus_files, r.corpus_bytes, r.corpus_tokens
    return f"""---
license: apache-2.0
language: [en, code]
library_name: transformers
pipeline_tag: text-generation
tags: [llama, prefixgate, demo]
---
# {MODEL_NAME}

A small Llama-architecture model trained from scratch by prefixgate's own
`bench/train_demo_model.py` on the Python standard library's source code. It is the
embedded default model of prefixgate: it writes Python-flavoured text, not helpful answers.

## Model
- Llama (`LlamaForCausalLM`): {size.num_layers} layers, hidden size {size.hidden_size}.
- MLP {size.intermediate_size}; {size.num_heads} query / {size.num_kv_heads} KV heads (GQA), \
head dim {size.hidden_size // size.num_heads}; RoPE theta 10000; tied embeddings.
- {r.params:,} parameters; weights in bfloat16 ({weight_bytes / 1e6:.1f} MB).
- Tokenizer: byte-level BPE, {vocab} tokens, trained on the training files below; special
  tokens {", ".join(SPECIAL_TOKENS)}; a chat template wraps turns in role markers.
- Trained on {size.seq_len}-token windows; config allows {MAX_POSITIONS} positions, but quality
  past {size.seq_len} tokens is untested.

## Training data
The `.py` files of the Python {r.python} standard library (`sysconfig.get_paths()["stdlib"]`),
excluding empty files and directories named {", ".join(sorted(EXCLUDED_DIRS))}. Files are
split by SHA-256 of their relative path: 2% test, 2% validation, the rest training. Corpus
digest (SHA-256 over paths and bytes, all splits): `{r.corpus_digest}`.

| split | files | bytes | tokens |
| --- | ---: | ---: | ---: |
| train | {files[0]} | {nbytes[0]:,} | {ntoks[0]:,} |
| validation | {files[1]} | {nbytes[1]:,} | {ntoks[1]:,} |
| test (held out) | {files[2]} | {nbytes[2]:,} | {ntoks[2]:,} |

Licence of the training text: Python Software Foundation License (PSF-2.0).

## Training
`{r.command}` on {r.device}, seed {r.seed}, Python {r.python}, torch {torch.__version__},
tokenizers {tokenizers.__version__}. AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), peak
learning rate {size.lr}, {size.warmup_steps} warm-up steps then cosine decay to a tenth,
batch {size.batch_size} x {size.seq_len} tokens, dropout {size.dropout}, bf16 autocast on CUDA,
gradient clipping 1.0. One full schedule per candidate epoch count, each from the same seeded
initialization; the lowest validation perplexity picks the shipped weights
(chosen: {chosen.epochs if chosen else "-"} epochs). Training wall time {r.train_seconds:.0f} s.

| epochs | steps | final train loss | validation ppl | seconds | tokens/s | cut by time limit |
| ---: | ---: | ---: | ---: | ---: | ---: | --- |
{runs}

## Evaluation (held-out test files)
| model | perplexity |
| --- | ---: |
| this model | {test} |
| unigram frequencies of the training tokens (add-one) | {unigram} |
| uniform over the vocabulary | {vocab} |

Perplexity is per token, over consecutive {size.seq_len}-token windows of the test files.

## Sample (greedy, prefixgate engine)
```python
{sample}
```
"""


def _selection_key(run: RunResult) -> float:
    """Lowest validation loss wins; a diverged (NaN) run never does."""
    return run.valid_nll if math.isfinite(run.valid_nll) else math.inf


def summary(r: Report, vocab: int, seconds: float) -> str:
    """The closing lines of the log: every run, the choice, the held-out figures."""
    lines = ["", "== summary =="]
    lines += [f"{x.epochs:>3} epochs: {x.steps} steps, validation ppl {math.exp(x.valid_nll):.2f},"
              f" {x.tokens_per_s:,.0f} tokens/s, {x.seconds:.0f} s"
              f"{' (cut by --minutes)' if x.stopped_early else ''}" for x in r.runs]
    test = f"{r.test_ppl:.2f}" if r.test_ppl is not None else "FAILED"
    unigram = f"{r.unigram_ppl:.1f}" if r.unigram_ppl is not None else "-"
    lines += [f"chosen: {r.chosen.epochs if r.chosen else '-'} epochs; {r.params:,} params",
              f"held-out test perplexity {test} | unigram {unigram} | uniform {vocab}",
              f"sample: {'ok' if r.sample is not None else 'FAILED'}; total {seconds:.0f} s"]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="demo")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory (created)")
    p.add_argument("--minutes", type=float, default=6.0,
                   help="wall-time cap on training (all candidate runs together)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=str, default=None,
                   help="comma-separated candidate epoch counts (default: the size's)")
    p.add_argument("--max-files", type=int, default=None,
                   help="use only the first N files of the hashed order (reduced runs)")
    p.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    p.add_argument("--compile", action="store_true", help="torch.compile the training model")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    size = SIZES[args.size]
    if args.epochs:
        size = replace(size, epochs=tuple(int(e) for e in args.epochs.split(",")))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report = Report(size=args.size, seed=args.seed, device=device_name,
                    command="python bench/train_demo_model.py " + " ".join(argv or sys.argv[1:]))
    torch.manual_seed(args.seed)

    corpus = split_corpus(args.stdlib, args.max_files)
    train_texts = [corpus.text(rel) for rel in corpus.train]
    print(f"corpus: Python {report.python} stdlib at {corpus.root}: {len(corpus.train)} train, "
          f"{len(corpus.valid)} validation, {len(corpus.test)} test files", flush=True)
    tok = train_tokenizer(train_texts, size.vocab_size)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    train = encode_stream(tok, train_texts)
    valid = encode_stream(tok, [corpus.text(rel) for rel in corpus.valid])
    test = encode_stream(tok, [corpus.text(rel) for rel in corpus.test])
    report.corpus_files = (len(corpus.train), len(corpus.valid), len(corpus.test))
    report.corpus_digest = corpus.digest()
    report.corpus_bytes = tuple(corpus.nbytes(s) for s in (corpus.train, corpus.valid,
                                                             corpus.test))
    report.corpus_tokens = (len(train), len(valid), len(test))
    print(f"tokenizer: {vocab} tokens; train {len(train):,} / validation {len(valid):,} / test "
          f"{len(test):,} tokens ({time.monotonic() - t0:.0f} s)", flush=True)

    config = hf_config(size, tok)
    cfg = ModelConfig.from_dict(config)
    report.params = sum(p.numel() for p in TrainingLlama(cfg).parameters())
    deadline = time.monotonic() + 60 * args.minutes
    runs: list[RunResult] = []
    for epochs in sorted(size.epochs):
        remaining = deadline - time.monotonic()
        if runs and remaining <= 0:
            print(f"--minutes {args.minutes} used up: no further runs", flush=True)
            break
        if runs:  # skip a run that the measured throughput says cannot finish in time
            need = epochs * batches_per_epoch(len(train), size) * size.batch_size * size.seq_len
            need_s = need / max(runs[-1].tokens_per_s, 1e-9)
            if need_s > remaining:
                print(f"skipping the {epochs}-epoch run: needs ~{need_s:.0f} s, "
                      f"{remaining:.0f} s left", flush=True)
                continue
        run = train_run(cfg, size, train, valid, epochs, args.seed, device, deadline,
                        args.compile)
        print(f"{epochs} epochs: {run.steps} steps, train loss {run.train_loss:.3f}, validation "
              f"ppl {math.exp(run.valid_nll):.2f}, {run.tokens_per_s:,.0f} tokens/s, "
              f"{run.seconds:.0f} s{' (cut by --minutes)' if run.stopped_early else ''}",
              flush=True)
        runs.append(run)
        best = min(runs, key=_selection_key)
        for other in runs:  # keep only the best run's weights in memory
            if other is not best:
                other.state = {}
    report.runs = tuple(runs)
    report.chosen = min(runs, key=_selection_key)
    report.train_seconds = sum(x.seconds for x in runs)

    weight_bytes = save_checkpoint(args.out, config, report.chosen.state, tok)
    card = args.out / "README.md"
    card.write_text(model_card(report, size, vocab, weight_bytes), encoding="utf-8")
    print(f"saved {args.out} ({weight_bytes / 2**20:.1f} MiB weights, {report.params:,} params; "
          f"chose {report.chosen.epochs} epochs)", flush=True)

    failed = False
    try:
        model = TrainingLlama(cfg).to(device)
        model.load_state_dict(report.chosen.state)
        report.test_ppl = math.exp(mean_nll(model, test, size, device))
        report.unigram_ppl = unigram_ppl(train, test, vocab)
        print(f"held-out test perplexity {report.test_ppl:.2f} vs unigram "
              f"{report.unigram_ppl:.1f} vs uniform {vocab}", flush=True)
    except Exception:
        failed = True
        traceback.print_exc()
    card.write_text(model_card(report, size, vocab, weight_bytes), encoding="utf-8")
    try:
        report.sample = greedy_completion(args.out, PROMPT)
        print(f"greedy completion (engine):\n{report.sample}", flush=True)
    except Exception:
        failed = True
        traceback.print_exc()
    card.write_text(model_card(report, size, vocab, weight_bytes), encoding="utf-8")
    print(summary(report, vocab, time.monotonic() - t0), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
