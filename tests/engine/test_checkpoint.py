"""Checkpoint loading: Llama 3 rope scaling, sharded weights, config layouts, and named errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.checkpoint import CheckpointError
from engine.config import ModelConfig
from engine.model_runner import ModelRunner, SeqChunk, StepBatch
from engine.tiny_model import write_tiny_model
from tests.engine.hf_reference import load_reference, reference_logits, rel_err

SMALL = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512}


def _load(path: Path) -> ModelRunner:
    return ModelRunner.load(path, device="cpu", num_blocks=32, progress=False)


def _last_logits(runner: ModelRunner, ids: list[int]) -> torch.Tensor:
    table = runner.allocator.allocate(-(-len(ids) // runner.block_size))
    try:
        return runner.step(StepBatch([SeqChunk(ids, 0, table)]))[0]
    finally:
        runner.allocator.free(table)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("small"), seed=3, overrides=SMALL)


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def _edit_config(path: Path, **changes) -> None:
    file = path / "config.json"
    config = json.loads(file.read_text())
    config.update(changes)
    file.write_text(json.dumps(config))


def test_llama3_rope_scaling_matches_transformers(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    path = write_tiny_model(tmp_path / "llama3", seed=4,
                            overrides={**SMALL, "rope_scaling": scaling})
    runner = _load(path)
    assert runner.config.rope.rope_type == "llama3"
    ids = list(range(10, 210))
    want = reference_logits(load_reference(path), ids)[-1]
    assert rel_err(_last_logits(runner, ids), want) <= 1e-4
    plain = write_tiny_model(tmp_path / "plain", seed=4, overrides=SMALL)
    assert rel_err(_last_logits(_load(plain), ids), want) > 1e-3  # the scaling does matter


def test_sharded_checkpoint_loads_the_same_weights(small_dir, tmp_path):
    sharded = write_tiny_model(tmp_path / "sharded", seed=3, shards=3, overrides=SMALL)
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("*.safetensors"))) == 3
    ids = list(range(20, 60))
    assert torch.equal(_last_logits(_load(sharded), ids), _last_logits(_load(small_dir), ids))


def test_both_config_layouts_give_the_same_rope():
    base = {"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 64,
            "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 4}
    scaling = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}
    classic = ModelConfig.from_dict({**base, "rope_theta": 5e5, "rope_scaling": scaling})
    v5 = ModelConfig.from_dict({**base, "rope_parameters": {**scaling, "rope_theta": 5e5}})
    assert classic.rope == v5.rope
    assert classic.rope.theta == 5e5 and classic.num_kv_heads == 4 and classic.head_dim == 16


def test_mistral_and_qwen2_configs():
    base = {"vocab_size": 10, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 1,
            "max_position_embeddings": 32768}
    mistral = ModelConfig.from_dict({**base, "architectures": ["MistralForCausalLM"],
                                     "sliding_window": 4096})
    assert mistral.max_model_len == 4096 and not mistral.attention_bias
    qwen = ModelConfig.from_dict({**base, "model_type": "qwen2", "sliding_window": 4096,
                                  "use_sliding_window": False})
    assert qwen.architecture == "Qwen2ForCausalLM" and qwen.attention_bias
    assert qwen.max_model_len == 32768


def _expect(path: Path, *fragments: str) -> None:
    with pytest.raises(CheckpointError) as info:
        _load(path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_missing_directory_and_config(tmp_path):
    _expect(tmp_path / "nope", "config.json")
    (tmp_path / "empty").mkdir()
    _expect(tmp_path / "empty", "config.json", "missing")


def test_unknown_architecture(small_dir, tmp_path):
    path = _copy(small_dir, tmp_path)
    _edit_config(path, architectures=["GPT2LMHeadModel"], model_type="gpt2")
    _expect(path, "config.json", "unsupported architecture GPT2LMHeadModel")


def test_unsupported_rope_type(small_dir, tmp_path):
    path = _copy(small_dir, tmp_path)
    _edit_config(path, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    _expect(path, "config.json", "unsupported rope type 'yarn'")


def test_missing_weights(small_dir, tmp_path):
    path = _copy(small_dir, tmp_path)
    (path / "model.safetensors").unlink()
    _expect(path, "no *.safetensors")


def test_missing_shard(tmp_path):
    path = write_tiny_model(tmp_path / "sharded", seed=3, shards=2, overrides=SMALL)
    (path / "model-00002-of-00002.safetensors").unlink()
    _expect(path, "model-00002-of-00002.safetensors", "missing")


def test_shape_mismatch_names_tensor_and_file(small_dir, tmp_path):
    path = _copy(small_dir, tmp_path)
    _edit_config(path, intermediate_size=128)
    _expect(path, "model.safetensors", "mlp.", "_proj.weight' has shape", "96", "128",
            "config.json implies")


def test_corrupt_safetensors(small_dir, tmp_path):
    path = _copy(small_dir, tmp_path)
    file = path / "model.safetensors"
    file.write_bytes(file.read_bytes()[:1000])
    _expect(path, "model.safetensors")
    file.write_bytes(b"\x00garbage" * 10)
    _expect(path, "model.safetensors", "not a readable safetensors file")


def test_missing_and_unexpected_tensors(small_dir, tmp_path):
    path = _copy(small_dir, tmp_path)
    file = path / "model.safetensors"
    weights = load_file(str(file))
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, str(file))
    _expect(path, "missing", "model.layers.1.mlp.down_proj.weight")
    weights = load_file(str(small_dir / "model.safetensors"))
    weights["model.layers.0.mlp.extra.weight"] = torch.zeros(2)
    save_file(weights, str(file))
    _expect(path, "model.safetensors", "unexpected tensor 'model.layers.0.mlp.extra.weight'")


def test_bad_config_and_tokenizer_files(small_dir, tmp_path):
    path = _copy(small_dir, tmp_path)
    (path / "config.json").write_text("{not json")
    _expect(path, "config.json", "not valid JSON")
    shutil.copy(small_dir / "config.json", path / "config.json")
    _edit_config(path, num_attention_heads=None)
    _expect(path, "config.json")
    shutil.copy(small_dir / "config.json", path / "config.json")
    (path / "tokenizer.json").unlink()
    _expect(path, "tokenizer.json", "missing")
    (path / "tokenizer.json").write_text("{}")
    _expect(path, "tokenizer.json", "not a valid tokenizer.json")
