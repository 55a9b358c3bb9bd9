"""Picks the next token of each sequence from its last-position logits.

Greedy rows (temperature 0) are one batched argmax; sampled rows apply temperature, top-k and
top-p and draw with the request's own generator, so a seeded request is reproducible whatever
else shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import torch

from engine.messages import SamplingParams


class Sampler:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def make_generator(self, seed: int | None) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        return gen

    def sample(
        self,
        logits: torch.Tensor,
        params: Seq[SamplingParams],
        generators: Seq[torch.Generator | None],
    ) -> list[int]:
        """logits: [B, V] fp32 -> one token id per row."""
        greedy = logits.argmax(dim=-1)
        out = greedy.tolist()
        for i, sp in enumerate(params):
            if sp.temperature == 0.0:
                continue
            probs = _filtered_probs(logits[i], sp)
            out[i] = int(torch.multinomial(probs, 1, generator=generators[i]).item())
        return out


def _filtered_probs(row: torch.Tensor, sp: SamplingParams) -> torch.Tensor:
    row = row.float() / sp.temperature
    if 0 < sp.top_k < row.numel():
        kth = torch.topk(row, sp.top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    probs = torch.softmax(row, dim=-1)
    if sp.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        # Keep the smallest set whose mass reaches top_p (the token crossing it included).
        drop = sorted_p.cumsum(0) - sorted_p >= sp.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        probs = probs / probs.sum()
    return probs
