"""bench/train_demo_model.py at reduced size: a real training run on a slice of the stdlib.

The checkpoint it writes must load in the engine and in transformers with matching logits, the
training twin (engine/training.py) must compute exactly what transformers' Llama computes, and a
seeded run must reproduce byte-identical weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from bench.train_demo_model import SIZES, main, split_corpus, stdlib_files
from engine.config import ModelConfig
from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from engine.tokenizer import Tokenizer
from engine.training import TrainingLlama
from tests.engine.hf_reference import load_reference, reference_logits, rel_err

ARGS = ("--size", "small", "--device", "cpu", "--max-files", "12", "--epochs", "1,2",
        "--seed", "3")
TOL = 1e-4
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "generation_config.json", "README.md")


def _train(out: Path) -> Path:
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("demo"))


def _prompt_ids(model_dir: Path, text: str) -> list[int]:
    tok = Tokenizer.from_dir(model_dir)
    assert tok.bos_token_id is not None
    return [tok.bos_token_id, *tok.encode(text)]


def test_checkpoint_is_a_small_bf16_llama(demo_dir):
    for name in FILES:
        assert (demo_dir / name).is_file(), name
    cfg = ModelConfig.from_dir(demo_dir)
    small = SIZES["small"]
    assert cfg.architecture == "LlamaForCausalLM" and cfg.tie_word_embeddings
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (
        small.num_layers, small.hidden_size, small.num_heads, small.num_kv_heads)
    with safe_open(str(demo_dir / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        assert {f.get_tensor(n).dtype for n in names} == {torch.bfloat16}
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names


def test_held_out_perplexity_beats_uniform_and_unigram(demo_dir):
    card = (demo_dir / "README.md").read_text()
    vocab = ModelConfig.from_dir(demo_dir).vocab_size
    model = float(re.search(r"\| this model \| ([\d.]+) \|", card).group(1))
    unigram = float(re.search(r"\(add-one\) \| ([\d.]+) \|", card).group(1))
    assert re.search(rf"\| uniform over the vocabulary \| {vocab} \|", card)
    assert model < unigram < vocab
    assert "PSF" in card and "Python 3." in card and "def fibonacci(n):" in card


def test_engine_and_transformers_agree(demo_dir):
    runner = ModelRunner.load(demo_dir, device="cpu", dtype="float32", num_blocks=32,
                              progress=False)
    ref = load_reference(demo_dir)
    prompts = ["def fibonacci(n):", "import os\n\nclass Path:\n    def __init__(self):"]
    seqs = [_prompt_ids(demo_dir, p) for p in prompts]
    tables = [list(range(0, 8)), list(range(8, 16))]
    got = runner.step(StepBatch([SeqChunk(ids, 0, t) for ids, t in zip(seqs, tables,
                                                                          strict=True)]))
    for i, ids in enumerate(seqs):
        assert rel_err(got[i], reference_logits(ref, ids)[-1]) <= TOL, prompts[i]


def test_training_model_computes_what_transformers_does(demo_dir):
    from safetensors.torch import load_file

    cfg = ModelConfig.from_dir(demo_dir)
    model = TrainingLlama(cfg).eval()
    missing, unexpected = model.load_state_dict(load_file(demo_dir / "model.safetensors"),
                                                strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # tied to the embedding
    ids = _prompt_ids(demo_dir, "for i in range(10):\n    print(i)\n")
    with torch.no_grad():
        got = model(torch.tensor([ids]))[0]
    assert rel_err(got, reference_logits(load_reference(demo_dir), ids)) <= TOL


def test_chat_template_and_stop_tokens(demo_dir):
    tok = Tokenizer.from_dir(demo_dir)
    text = tok.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text == "<|begin_of_text|><|user|>\nhi<|end|>\n<|assistant|>\n"
    ids = tok.encode(text, allow_special=True)
    assert ids[:2] == [tok.bos_token_id, tok.token_to_id("<|user|>")]
    assert tok.token_to_id("<|user|>") not in tok.encode("<|user|>")  # user text stays text
    assert {tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|end|>")} == set(
        tok.eos_token_ids)
    gen = json.loads((demo_dir / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == set(tok.eos_token_ids)


def test_seeded_run_is_reproducible(demo_dir, tmp_path):
    again = _train(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (demo_dir / name).read_bytes(), name


def test_corpus_split_by_path_hash(tmp_path):
    root = tmp_path / "lib"
    for rel in ("a.py", "pkg/b.py", "pkg/c.py", "test/t.py", "pkg/tests/u.py",
                "site-packages/x.py", "idlelib/idle_test/v.py", "empty.py", *[
                    f"m{i}.py" for i in range(60)]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("" if rel == "empty.py" else f"# {rel}\nx = 1\n")
    files = stdlib_files(root)
    assert files == sorted(files) and len(files) == 63
    assert not any(f.startswith(("test/", "site-packages/", "idlelib/")) or "tests/" in f
                   or f == "empty.py" for f in files)
    corpus = split_corpus(root, max_files=len(files))
    assert len(corpus.test) == len(corpus.valid) == 1
    assert set(corpus.train) | set(corpus.valid) | set(corpus.test) == set(files)
    (root / "extra.py").write_text("y = 2\n")  # membership is by hash, not by position
    grown = split_corpus(root, max_files=len(files) + 1)
    assert grown.test in (corpus.test, ("extra.py",))


@pytest.mark.gpu
def test_cuda_training_smoke(tmp_path):
    args = ["--size", "small", "--device", "cuda", "--max-files", "12", "--epochs", "1"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    assert ModelConfig.from_dir(tmp_path).vocab_size == SIZES["small"].vocab_size
