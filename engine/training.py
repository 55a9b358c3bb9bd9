"""`TrainingLlama`: a plain causal Llama with autograd, for training the demo checkpoint.

engine/model.py is inference-only (paged KV, fused frozen projections), so training uses this
compact twin instead. Its state_dict keys are exactly the Hugging Face Llama names, so what it
saves loads in the engine and in transformers alike. Rotary embeddings come from engine.rope.
Shapes: B = batch, S = sequence, H = hidden size, D = head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ModelConfig
from engine.rope import apply_rope, inv_frequencies, rope_cos_sin


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = (cfg.num_heads, cfg.num_kv_heads,
                                                            cfg.head_dim)
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: [B, S, H]
        b, s, _ = x.shape
        q = apply_rope(self.q_proj(x).view(b, s, self.num_heads, self.head_dim), cos, sin)
        k = apply_rope(self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim)
        group = self.num_heads // self.num_kv_heads
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2), is_causal=True)  # [B, Hq, S, D]
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, dropout: float) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(dropout)  # residual-branch dropout; identity in eval mode

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), cos, sin))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class LlamaBody(nn.Module):
    """The `model.` prefix of the Hugging Face names: embeddings, layers, final norm."""

    def __init__(self, cfg: ModelConfig, dropout: float) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, dropout) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TrainingLlama(nn.Module):
    """Token ids [B, S] in, fp32-able logits [B, S, vocab] out; untied or tied lm_head."""

    def __init__(self, cfg: ModelConfig, *, dropout: float = 0.0) -> None:
        super().__init__()
        assert cfg.architecture == "LlamaForCausalLM", cfg.architecture
        assert cfg.rope.rope_type == "default", cfg.rope
        assert not (cfg.attention_bias or cfg.o_proj_bias), "bias-free Llama only"
        self.config = cfg
        self.model = LlamaBody(cfg, dropout)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", inv_frequencies(cfg.rope, cfg.head_dim),
                             persistent=False)

    def init_weights(self, generator: torch.Generator, std: float = 0.02) -> None:
        """Normal(0, std) matrices, residual outputs scaled by depth (GPT-2 style); unit norms."""
        out_std = std / (2 * self.config.num_layers) ** 0.5
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith(("o_proj.weight", "down_proj.weight")):
                    p.copy_(torch.randn(p.shape, generator=generator) * out_std)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * std)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # input_ids: int64 [B, S] -> logits [B, S, vocab]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        cos, sin = rope_cos_sin(positions, self.inv_freq)
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))
