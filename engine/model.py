"""The Llama-family decoder (Llama 1/2/3, Mistral, Qwen2) over a paged KV cache.

Projections are fused at load time (q|k|v and gate|up) so a layer runs four matmuls. Attention
metadata comes from engine.context, set by the model runner before each forward pass.
Tensor shapes: T = tokens of the packed step, H = hidden size, D = head dim.
"""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ModelConfig
from engine.context import get_context
from engine.kv_pool import KVPool
from engine.kv_quant import KVScales
from engine.rope import apply_rope, inv_frequencies, rope_cos_sin


def _param(*shape: int, device: torch.device, dtype: torch.dtype) -> nn.Parameter:
    """Uninitialized weight: every value is overwritten by the checkpoint loader."""
    return nn.Parameter(torch.empty(*shape, device=device, dtype=dtype), requires_grad=False)


def _fused_kernels(device: torch.device) -> ModuleType | None:
    """engine.attention.triton_fused on CUDA: RMSNorm, RoPE and SiLU-mul in one launch each,
    rounded like the torch code below; None (the torch code) elsewhere or without triton."""
    if device.type != "cuda":
        return None
    try:
        from engine.attention import triton_fused
    except ImportError:
        return None
    return triton_fused


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.eps = eps
        self.weight = _param(size, device=device, dtype=dtype)
        self.fused = _fused_kernels(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused.rms_norm(x, self.weight, self.eps)
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, backend: ModuleType,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.layer = layer
        self.backend = backend
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.head_dim
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim
        self.scale = cfg.head_dim**-0.5
        fused = _fused_kernels(device)
        self.rope = fused.apply_rope if fused is not None else apply_rope
        self.qkv_proj = _param(self.q_size + 2 * self.kv_size, cfg.hidden_size, device=device,
                               dtype=dtype)
        self.qkv_bias = (
            _param(self.q_size + 2 * self.kv_size, device=device, dtype=dtype)
            if cfg.attention_bias else None
        )
        self.o_proj = _param(cfg.hidden_size, self.q_size, device=device, dtype=dtype)
        self.o_bias = (
            _param(cfg.hidden_size, device=device, dtype=dtype) if cfg.o_proj_bias else None
        )
        # Per-layer views of the KV pool, bound by ModelRunner (each [num_blocks, bs, Hkv, D]).
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None
        self.kv_scales: KVScales | None = None  # set when the pool is fp8/int8
        # Sliding-window attention (Mistral-style), in KV slots; None = full attention.
        self.window: int | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: [T, H]
        assert self.k_cache is not None and self.v_cache is not None, "KV cache not bound"
        ctx = get_context()
        qkv = F.linear(x, self.qkv_proj, self.qkv_bias)
        q, k, v = qkv.split((self.q_size, self.kv_size, self.kv_size), dim=-1)
        q = self.rope(q.view(-1, self.num_heads, self.head_dim), cos, sin)  # [T, Hq, D]
        k = self.rope(k.view(-1, self.num_kv_heads, self.head_dim), cos, sin)  # [T, Hkv, D]
        v = v.reshape(-1, self.num_kv_heads, self.head_dim)
        be = self.backend
        quant: dict[str, torch.Tensor] = {}
        if self.kv_scales is not None:
            if not ctx.is_decode:  # calibrate on a real prefill, never on (graph warm-up) decodes
                self.kv_scales.observe(self.layer, k, v, self.k_cache.dtype)
            quant = {"k_scale": self.kv_scales.k[self.layer],
                     "v_scale": self.kv_scales.v[self.layer]}
        be.store_kv(k, v, self.k_cache, self.v_cache, ctx.slot_mapping, **quant)
        extra: dict[str, object] = dict(quant)
        if self.window is not None:
            extra["window"] = self.window
        if ctx.head_mask is not None:
            extra["head_mask"] = ctx.head_mask[self.layer]
        if ctx.scores is not None:
            extra["scores_out"] = ctx.scores[self.layer]
        if ctx.is_decode:
            out = be.paged_decode(q, self.k_cache, self.v_cache, ctx.block_tables, ctx.seq_lens,
                                  self.scale, ctx.max_seq_len, **extra)
        else:
            out = be.paged_attention(q, self.k_cache, self.v_cache, ctx.block_tables,
                                     ctx.seq_lens, ctx.query_start_loc, self.scale,
                                     ctx.max_query_len, ctx.max_seq_len, **extra)
        return F.linear(out.reshape(-1, self.q_size), self.o_proj, self.o_bias)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.inter = cfg.intermediate_size
        self.gate_up_proj = _param(2 * self.inter, cfg.hidden_size, device=device, dtype=dtype)
        self.down_proj = _param(cfg.hidden_size, self.inter, device=device, dtype=dtype)
        self.fused = _fused_kernels(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return F.linear(self.fused.silu_mul(F.linear(x, self.gate_up_proj)), self.down_proj)
        gate, up = F.linear(x, self.gate_up_proj).split(self.inter, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, backend: ModuleType,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, device, dtype)
        self.self_attn = Attention(cfg, layer, backend, device, dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, device, dtype)
        self.mlp = MLP(cfg, device, dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class CausalLM(nn.Module):
    """Token ids and positions of a packed step in, final hidden states out; logits on demand."""

    def __init__(self, cfg: ModelConfig, backend: ModuleType, device: torch.device,
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = _param(cfg.vocab_size, cfg.hidden_size, device=device, dtype=dtype)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, i, backend, device, dtype) for i in range(cfg.num_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, device, dtype)
        self.lm_head = (
            self.embed_tokens if cfg.tie_word_embeddings
            else _param(cfg.vocab_size, cfg.hidden_size, device=device, dtype=dtype)
        )
        self.register_buffer("inv_freq", inv_frequencies(cfg.rope, cfg.head_dim).to(device),
                             persistent=False)

    def bind_kv(self, pool: KVPool) -> None:
        """Each layer keeps views of its K and V caches in the pool (and the pool's scales)."""
        for i, layer in enumerate(self.layers):
            layer.self_attn.k_cache, layer.self_attn.v_cache = pool.layer(i)
            layer.self_attn.kv_scales = pool.scales

    def unbind_kv(self) -> None:
        for layer in self.layers:
            layer.self_attn.k_cache = layer.self_attn.v_cache = None
            layer.self_attn.kv_scales = None

    def set_window(self, window: int | None) -> None:
        """Sliding-window attention over the last `window` KV slots (None: full attention)."""
        for layer in self.layers:
            layer.self_attn.window = window

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # input_ids, positions: int64 [T] -> hidden [T, H]
        cos, sin = rope_cos_sin(positions, self.inv_freq)
        x = F.embedding(input_ids, self.embed_tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: [B, H] -> fp32 [B, vocab]
        return F.linear(hidden, self.lm_head).float()

    def checkpoint_slots(self) -> dict[str, torch.Tensor]:
        """Hugging Face tensor name -> the (slice of a fused) parameter it is loaded into."""
        cfg = self.config
        slots: dict[str, torch.Tensor] = {
            "model.embed_tokens.weight": self.embed_tokens,
            "model.norm.weight": self.norm.weight,
        }
        if not cfg.tie_word_embeddings:
            slots["lm_head.weight"] = self.lm_head
        for i, layer in enumerate(self.layers):
            pre = f"model.layers.{i}."
            attn, mlp = layer.self_attn, layer.mlp
            q, kv = attn.q_size, attn.kv_size
            parts = {"q_proj": (0, q), "k_proj": (q, q + kv), "v_proj": (q + kv, q + 2 * kv)}
            for name, (lo, hi) in parts.items():
                slots[f"{pre}self_attn.{name}.weight"] = attn.qkv_proj[lo:hi]
                if attn.qkv_bias is not None:
                    slots[f"{pre}self_attn.{name}.bias"] = attn.qkv_bias[lo:hi]
            slots[f"{pre}self_attn.o_proj.weight"] = attn.o_proj
            if attn.o_bias is not None:
                slots[f"{pre}self_attn.o_proj.bias"] = attn.o_bias
            slots[f"{pre}mlp.gate_proj.weight"] = mlp.gate_up_proj[: mlp.inter]
            slots[f"{pre}mlp.up_proj.weight"] = mlp.gate_up_proj[mlp.inter :]
            slots[f"{pre}mlp.down_proj.weight"] = mlp.down_proj
            slots[f"{pre}input_layernorm.weight"] = layer.input_layernorm.weight
            slots[f"{pre}post_attention_layernorm.weight"] = layer.post_attention_layernorm.weight
        return slots

    def skipped_checkpoint_names(self) -> frozenset[str]:
        """Tensors a checkpoint may carry that this model shares instead of loading."""
        return frozenset({"lm_head.weight"}) if self.config.tie_word_embeddings else frozenset()
