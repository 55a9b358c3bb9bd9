"""`prefixgate model init-tiny`: a tiny random Llama (or Qwen2) checkpoint, written offline.

The embedded default model and the test fixture: a Hugging Face-format directory (config.json,
model.safetensors, tokenizer files) that transformers loads too, deterministic for a seed.
Weights are random, so its text is gibberish; its shapes exercise GQA, rotary embeddings and
(for Qwen2) q/k/v biases and tied embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.checkpoint import INDEX_FILE
from engine.tiny_tokenizer import TinyVocab, write_tokenizer

TINY_SIZES: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
_ARCH = {
    "llama": {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "rope_theta": 500000.0, "tie_word_embeddings": False, "attention_bias": False},
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
              "rope_theta": 1000000.0, "tie_word_embeddings": True, "use_sliding_window": False},
}


def tiny_config(arch: str, vocab: TinyVocab, overrides: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    if arch not in _ARCH:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {', '.join(_ARCH)}")
    config = {
        **_ARCH[arch],
        **TINY_SIZES,
        "vocab_size": vocab.size,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "torch_dtype": "float32",
        "bos_token_id": vocab.bos_token_id,
        "eos_token_id": list(vocab.eos_token_ids),
        "_name_or_path": f"prefixgate-tiny-{arch}",
    }
    config.update(overrides or {})
    return config


def random_weights(config: Mapping[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Hugging Face-named fp32 tensors for `config`, drawn from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    vocab = config["vocab_size"]
    bias = config["model_type"] == "qwen2"

    def normal(*shape: int, std: float = 0.02) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    def norm_weight() -> torch.Tensor:
        return 1.0 + normal(hidden, std=0.1)

    out = {"model.embed_tokens.weight": normal(vocab, hidden, std=0.5)}
    for i in range(config["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        for name, rows in (("q_proj", heads * head_dim), ("k_proj", kv_heads * head_dim),
                           ("v_proj", kv_heads * head_dim)):
            out[f"{pre}self_attn.{name}.weight"] = normal(rows, hidden, std=0.08)
            if bias:
                out[f"{pre}self_attn.{name}.bias"] = normal(rows, std=0.1)
        out[f"{pre}self_attn.o_proj.weight"] = normal(hidden, heads * head_dim, std=0.05)
        out[f"{pre}mlp.gate_proj.weight"] = normal(inter, hidden, std=0.05)
        out[f"{pre}mlp.up_proj.weight"] = normal(inter, hidden, std=0.05)
        out[f"{pre}mlp.down_proj.weight"] = normal(hidden, inter, std=0.05)
        out[f"{pre}input_layernorm.weight"] = norm_weight()
        out[f"{pre}post_attention_layernorm.weight"] = norm_weight()
    out["model.norm.weight"] = norm_weight()
    if not config.get("tie_word_embeddings", False):
        out["lm_head.weight"] = normal(vocab, hidden, std=0.05)
    return out


def write_tiny_model(path: str | Path, *, arch: str = "llama", seed: int = 0, shards: int = 1,
                     overrides: Mapping[str, Any] | None = None) -> Path:
    """Write a tiny checkpoint to `path` (created if needed); returns the directory.

    `shards` > 1 splits the weights over several files with a model.safetensors.index.json;
    `overrides` replaces config.json entries (sizes, rope scaling, ...)."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    max_len = int((overrides or {}).get("max_position_embeddings",
                                        TINY_SIZES["max_position_embeddings"]))
    vocab = write_tokenizer(root, model_max_length=max_len)
    config = tiny_config(arch, vocab, overrides)
    (root / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _save(root, random_weights(config, seed), shards)
    return root


def _save(root: Path, weights: dict[str, torch.Tensor], shards: int) -> None:
    if shards <= 1:
        save_file(weights, str(root / "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(weights)
    weight_map: dict[str, str] = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: weights[n] for n in names[s::shards]}
        save_file(part, str(root / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    total = sum(t.numel() * t.element_size() for t in weights.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (root / INDEX_FILE).write_text(json.dumps(index, indent=2), encoding="utf-8")
