"""A random Llama-shaped Hugging Face checkpoint for GPU benchmarks (no downloads here).

The init keeps logits a few units wide (not flat), so greedy decoding is not a sea of ties.
`python -m bench.random_checkpoint DIR [--preset llama2-7b|tiny]` writes config.json,
model.safetensors and the tiny tokenizer (the engine loads tokenizer files with every model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

PRESETS = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=2, vocab_size=32000,
                 max_position_embeddings=4096),
}


def random_llama_state(dims: dict, dtype: torch.dtype, device: str, seed: int = 1234
                       ) -> dict[str, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(seed)
    h, inter, v = dims["hidden_size"], dims["intermediate_size"], dims["vocab_size"]
    hd = h // dims["num_attention_heads"]
    kv = dims["num_key_value_heads"] * hd

    def normal(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, device=device) * std).to(dtype)

    def norm() -> torch.Tensor:
        return (1.0 + 0.1 * torch.randn(h, generator=g, device=device)).to(dtype)

    state = {"model.embed_tokens.weight": normal(v, h, std=1.0)}
    for i in range(dims["num_hidden_layers"]):
        p = f"model.layers.{i}."
        state |= {
            p + "self_attn.q_proj.weight": normal(h, h, std=0.02),
            p + "self_attn.k_proj.weight": normal(kv, h, std=0.02),
            p + "self_attn.v_proj.weight": normal(kv, h, std=0.02),
            p + "self_attn.o_proj.weight": normal(h, h, std=0.02),
            p + "mlp.gate_proj.weight": normal(inter, h, std=0.02),
            p + "mlp.up_proj.weight": normal(inter, h, std=0.02),
            p + "mlp.down_proj.weight": normal(h, inter, std=0.02),
            p + "input_layernorm.weight": norm(),
            p + "post_attention_layernorm.weight": norm(),
        }
    state["model.norm.weight"] = norm()
    state["lm_head.weight"] = normal(v, h, std=3.0 / h**0.5)
    return state


def write_random_llama(out_dir: str | Path, preset: str = "llama2-7b",
                       dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the checkpoint (skipped if `out_dir` already holds one); returns the directory."""
    from engine.tiny_tokenizer import write_tokenizer

    out = Path(out_dir)
    if (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    dims = PRESETS[preset]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    state = {k: t.cpu() for k, t in random_llama_state(dims, dtype, device).items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                  bos_token_id=1, eos_token_id=2, torch_dtype=str(dtype).removeprefix("torch."),
                  **dims)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    write_tokenizer(out)
    n = sum(t.numel() for t in state.values())
    print(f"random {preset} checkpoint: {n / 1e9:.2f} B params -> {out} "
          f"({time.perf_counter() - t0:.0f} s)")
    return out


def write_random_llama_7b(out_dir: str | Path = "/tmp/prefixgate-llama2-7b-random") -> str:
    return str(write_random_llama(out_dir, "llama2-7b"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="llama2-7b")
    args = ap.parse_args()
    write_random_llama(args.out_dir, args.preset)


if __name__ == "__main__":
    main()
