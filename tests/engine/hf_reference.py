"""transformers as the reference for the engine's exactness tests (test-only dependency)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def load_reference(model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.eval()


@torch.no_grad()
def reference_logits(model, token_ids: Sequence[int]) -> torch.Tensor:
    """fp32 logits [len(token_ids), vocab] of a whole sequence in one forward pass."""
    return model(torch.tensor([list(token_ids)])).logits[0].float()


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max absolute difference over the largest reference magnitude, worst row."""
    got, want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
    per_row = (got - want).abs().amax(-1) / want.abs().amax(-1)
    return float(per_row.max())
