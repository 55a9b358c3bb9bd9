"""Per-step attention metadata, set once before the forward pass and read by every layer.

Threading it through each layer's signature would repeat the same six arguments everywhere;
instead `ModelRunner` calls `set_context` before the forward and `reset_context` after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class AttentionContext:
    """Packed varlen batch: B sequences, T new tokens in all (see engine/attention)."""

    slot_mapping: torch.Tensor  # int64 [T]: flat KV slot of each new token (-1: skip)
    block_tables: torch.Tensor  # int32 [B, max_blocks]
    seq_lens: torch.Tensor  # int32 [B]: KV length including this step's tokens
    query_start_loc: torch.Tensor  # int32 [B + 1]: cumulative query lengths
    max_query_len: int
    max_seq_len: int
    # KV eviction hooks (torch backend, off by default): per-layer visibility of each KV slot
    # per KV head (bool [L, B, Hkv, S]), and per-layer fp32 [B, Hkv, S] buffers the attention
    # adds its probabilities into (H2O scores, FastGen profiling).
    head_mask: torch.Tensor | None = None
    scores: list[torch.Tensor] | None = None

    @property
    def is_decode(self) -> bool:
        """Every sequence runs exactly one new token: the paged_decode fast path applies."""
        return self.max_query_len == 1


_CONTEXT: AttentionContext | None = None


def set_context(ctx: AttentionContext) -> None:
    global _CONTEXT
    _CONTEXT = ctx


def get_context() -> AttentionContext:
    assert _CONTEXT is not None, "attention context not set: call set_context before forward"
    return _CONTEXT


def reset_context() -> None:
    global _CONTEXT
    _CONTEXT = None
