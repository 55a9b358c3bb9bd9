"""`prefixgate model init-tiny`: deterministic for a seed, loadable, offline."""

from __future__ import annotations

import json

from click.testing import CliRunner

from engine.config import ModelConfig
from gateway.cli.main import main

FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "generation_config.json")


def _init(path, *args: str) -> None:
    result = CliRunner().invoke(main, ["model", "init-tiny", str(path), *args])
    assert result.exit_code == 0, result.output
    assert str(path) in result.output


def test_init_tiny_is_deterministic_for_a_seed(tmp_path):
    _init(tmp_path / "a", "--seed", "7")
    _init(tmp_path / "b", "--seed", "7")
    _init(tmp_path / "c", "--seed", "8")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    weights = "model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() != (tmp_path / "c" / weights).read_bytes()


def test_default_tiny_shape(tiny_llama_dir):
    cfg = ModelConfig.from_dir(tiny_llama_dir)
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (4, 256, 8, 2)
    assert cfg.intermediate_size == 688 and cfg.max_position_embeddings == 4096
    assert cfg.architecture == "LlamaForCausalLM" and not cfg.tie_word_embeddings


def test_qwen2_arch(tmp_path):
    _init(tmp_path / "q", "--arch", "qwen2")
    raw = json.loads((tmp_path / "q" / "config.json").read_text())
    cfg = ModelConfig.from_dict(raw)
    assert cfg.architecture == "Qwen2ForCausalLM" and cfg.attention_bias
    assert cfg.tie_word_embeddings
