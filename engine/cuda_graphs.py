"""CUDA-graph capture of decode steps: one graph per batch size over static input buffers.

A decode step of a small batch is bound by kernel-launch overhead, not by the GPU (a 7B model
launches hundreds of kernels per token). Capturing the whole step once per batch size and
replaying it removes that overhead. A batch is padded up to the next captured size; padding
rows get slot -1 (store_kv skips them), seq_len 1 and a valid block id, so they read a little
garbage and write nothing; their logits are dropped.

The captured callable must launch only device work: no host syncs, no allocation that depends
on tensor values, and `max_seq_len` fixed at capture (the decode kernel's split count).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Protocol

import torch

from engine.context import AttentionContext, reset_context, set_context
from engine.model import CausalLM

CAPTURE_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PAD_SLOT = -1


class DecodeStepFn(Protocol):
    """A decode forward over precomputed metadata (the model runner's hook).

    input_ids, positions, slot_mapping: int64 [B]; block_tables: int32 [B, max_blocks];
    seq_lens: int32 [B] (KV length including this token). Returns [B, vocab] logits.
    """

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor,
                 slot_mapping: torch.Tensor, block_tables: torch.Tensor,
                 seq_lens: torch.Tensor, max_seq_len: int) -> torch.Tensor: ...


def model_decode_step(model: CausalLM) -> DecodeStepFn:
    """The decode forward of engine/model.py over precomputed metadata: sets the attention
    context from the given device tensors (decode fast path: one query per sequence) and
    returns fp32 logits. Launches device work only, so it can be captured."""

    def step(input_ids: torch.Tensor, positions: torch.Tensor, slot_mapping: torch.Tensor,
             block_tables: torch.Tensor, seq_lens: torch.Tensor,
             max_seq_len: int) -> torch.Tensor:
        batch = input_ids.shape[0]
        query_start_loc = torch.arange(batch + 1, dtype=torch.int32, device=input_ids.device)
        set_context(AttentionContext(slot_mapping=slot_mapping, block_tables=block_tables,
                                     seq_lens=seq_lens, query_start_loc=query_start_loc,
                                     max_query_len=1, max_seq_len=max_seq_len))
        try:
            return model.compute_logits(model(input_ids, positions))
        finally:
            reset_context()

    return step


@dataclass(slots=True)
class _StaticBuffers:
    """Inputs of the largest captured batch; smaller graphs read leading slices."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    block_tables: torch.Tensor
    seq_lens: torch.Tensor

    @classmethod
    def allocate(cls, batch: int, max_blocks: int, device: torch.device) -> _StaticBuffers:
        return cls(
            input_ids=torch.zeros(batch, dtype=torch.int64, device=device),
            positions=torch.zeros(batch, dtype=torch.int64, device=device),
            slot_mapping=torch.full((batch,), PAD_SLOT, dtype=torch.int64, device=device),
            block_tables=torch.zeros(batch, max_blocks, dtype=torch.int32, device=device),
            seq_lens=torch.ones(batch, dtype=torch.int32, device=device),
        )

    def views(self, batch: int) -> tuple[torch.Tensor, ...]:
        return (self.input_ids[:batch], self.positions[:batch], self.slot_mapping[:batch],
                self.block_tables[:batch], self.seq_lens[:batch])


class DecodeGraphs:
    """Captured decode steps for a set of batch sizes; `run` pads a batch and replays.

    With `use_graphs=False` (CPU, debugging) `run` calls the step eagerly on the same padded
    static buffers, so padding behaves identically with and without graphs.
    """

    def __init__(self, step_fn: DecodeStepFn, *, max_blocks_per_seq: int, max_seq_len: int,
                 device: torch.device, batch_sizes: tuple[int, ...] = CAPTURE_BATCH_SIZES,
                 use_graphs: bool = True) -> None:
        assert batch_sizes and list(batch_sizes) == sorted(set(batch_sizes))
        self.step_fn = step_fn
        self.batch_sizes = batch_sizes
        self.max_seq_len = max_seq_len
        self.device = device
        self.use_graphs = use_graphs and device.type == "cuda"
        self.buffers = _StaticBuffers.allocate(batch_sizes[-1], max_blocks_per_seq, device)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._outputs: dict[int, torch.Tensor] = {}

    @property
    def max_batch(self) -> int:
        return self.batch_sizes[-1]

    def padded_size(self, batch: int) -> int | None:
        """The smallest captured size >= batch, or None if the batch is too large."""
        i = bisect_left(self.batch_sizes, batch)
        return self.batch_sizes[i] if i < len(self.batch_sizes) else None

    @torch.inference_mode()
    def capture(self, progress: bool = True, pool: tuple[int, int] | None = None) -> None:
        """Warm up (Triton compiles here, outside capture) and capture, largest size first so
        the smaller graphs reuse its memory pool (`pool`: one shared with other graphs that
        never run concurrently with these)."""
        if not self.use_graphs:
            return
        from tqdm import tqdm

        pool = pool if pool is not None else torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        sizes = sorted(self.batch_sizes, reverse=True)
        for size in tqdm(sizes, desc="capture decode graphs", disable=not progress):
            views = self.buffers.views(size)
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self.step_fn(*views, self.max_seq_len)
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                self._outputs[size] = self.step_fn(*views, self.max_seq_len)
            self._graphs[size] = graph
        torch.cuda.current_stream(self.device).wait_stream(stream)
        torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, slot_mapping: torch.Tensor,
            block_tables: torch.Tensor, seq_lens: torch.Tensor) -> torch.Tensor:
        """Logits [B, vocab] of a decode batch. With graphs the result is a view of a static
        output that the next `run` overwrites: consume (or clone) it first."""
        batch = input_ids.shape[0]
        size = self.padded_size(batch)
        if size is None:
            raise ValueError(f"decode batch {batch} exceeds the largest captured size "
                             f"{self.max_batch}")
        if block_tables.shape[1] > self.buffers.block_tables.shape[1]:
            raise ValueError("block table wider than max_blocks_per_seq")
        buf = self.buffers
        buf.input_ids[:batch].copy_(input_ids, non_blocking=True)
        buf.positions[:batch].copy_(positions, non_blocking=True)
        buf.slot_mapping[:batch].copy_(slot_mapping, non_blocking=True)
        buf.block_tables[:batch, :block_tables.shape[1]].copy_(block_tables, non_blocking=True)
        buf.seq_lens[:batch].copy_(seq_lens, non_blocking=True)
        if size > batch:
            buf.input_ids[batch:size].zero_()
            buf.positions[batch:size].zero_()
            buf.slot_mapping[batch:size].fill_(PAD_SLOT)
            buf.block_tables[batch:size].zero_()
            buf.seq_lens[batch:size].fill_(1)
        if self.use_graphs:
            if size not in self._graphs:
                raise RuntimeError("DecodeGraphs.capture() was not called")
            self._graphs[size].replay()
            return self._outputs[size][:batch]
        return self.step_fn(*buf.views(size), self.max_seq_len)[:batch]
