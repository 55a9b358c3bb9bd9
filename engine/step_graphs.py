"""CUDA graphs of the production step: decode batches and single-sequence prefill chunks.

`ModelRunner.step` hands every batch to `StepGraphs.run` first; it replays a captured graph
when the batch has a captured shape and returns None otherwise (the runner then runs eagerly):

- a decode-only batch (one new token per sequence) of at most `max_decode_batch` sequences goes
  to `engine.cuda_graphs.DecodeGraphs`;
- one sequence's prefill chunk of 2..max(PREFILL_BUCKETS) tokens (typically a short suffix over
  a cached prefix: the cached-prefix TTFT path) is padded up to the next token bucket. Padding
  queries get slot -1 (nothing stored), the chunk's real length goes in through a device
  `query_start_loc` (the prefill kernel skips tiles past it, its grid is fixed by the bucket),
  and the logits row of the last real token is gathered through a static index.

Graphs hold the KV pool's tensors and the model's weights by address, so they are captured
after the pool is bound. Only the plain path is captured: KV in the model dtype, Triton paged
attention, no sliding window; `supports_graphs` says whether a runner qualifies. Chunks with a
`kv_shift` (evicted KV) always run eagerly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from engine.context import AttentionContext, reset_context, set_context
from engine.cuda_graphs import CAPTURE_BATCH_SIZES, PAD_SLOT, DecodeGraphs
from engine.model import CausalLM

if TYPE_CHECKING:
    from engine.model_runner import ModelRunner, StepBatch, _StepInputs

PREFILL_BUCKETS: tuple[int, ...] = (16, 32, 64, 128, 256)


def supports_graphs(runner: ModelRunner) -> bool:
    """The runner's step is capturable: CUDA, Triton paged attention, KV in the model dtype,
    no sliding window (quantized and windowed KV run eagerly until their kernels are
    captured too)."""
    from engine.attention import triton_paged

    attn = runner.model.layers[0].self_attn
    return (runner.device.type == "cuda" and attn.backend is triton_paged
            and runner.kv_pool.dtype == runner.dtype and attn.kv_scales is None
            and runner.window is None)


class PrefillGraphs:
    """One captured single-sequence prefill per token bucket, over static input buffers.

    With `use_graphs=False` (CPU tests) `run` calls the same padded forward eagerly."""

    def __init__(self, model: CausalLM, *, max_blocks_per_seq: int, max_seq_len: int,
                 device: torch.device, buckets: tuple[int, ...] = PREFILL_BUCKETS,
                 use_graphs: bool = True) -> None:
        assert buckets and list(buckets) == sorted(set(buckets)) and buckets[0] >= 2
        self.model = model
        self.buckets = buckets
        self.max_seq_len = max_seq_len
        self.device = device
        self.use_graphs = use_graphs and device.type == "cuda"
        top = buckets[-1]

        def zeros(*shape: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        self.input_ids, self.positions = zeros(top), zeros(top)
        self.slot_mapping = torch.full((top,), PAD_SLOT, dtype=torch.int64, device=device)
        self.block_tables = zeros(1, max_blocks_per_seq, dtype=torch.int32)
        self.seq_lens = torch.full((1,), top, dtype=torch.int32, device=device)
        self.query_start_loc = torch.tensor([0, top], dtype=torch.int32, device=device)
        self.last_row = torch.full((1,), top - 1, dtype=torch.int64, device=device)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._outputs: dict[int, torch.Tensor] = {}

    @property
    def max_tokens(self) -> int:
        return self.buckets[-1]

    def bucket(self, num_tokens: int) -> int | None:
        i = bisect_left(self.buckets, num_tokens)
        return self.buckets[i] if i < len(self.buckets) else None

    def _forward(self, size: int) -> torch.Tensor:
        """The padded chunk's forward: fp32 logits [1, vocab] of its last real token."""
        set_context(AttentionContext(
            slot_mapping=self.slot_mapping[:size], block_tables=self.block_tables,
            seq_lens=self.seq_lens, query_start_loc=self.query_start_loc,
            max_query_len=size, max_seq_len=self.max_seq_len))
        try:
            hidden = self.model(self.input_ids[:size], self.positions[:size])
            return self.model.compute_logits(hidden.index_select(0, self.last_row))
        finally:
            reset_context()

    @torch.inference_mode()
    def capture(self, pool: tuple[int, int] | None = None, progress: bool = True) -> None:
        """Warm up (Triton compiles here) and capture, largest bucket first. The buffers hold
        padding (slot -1) during capture, so nothing is written to the KV pool."""
        if not self.use_graphs:
            return
        from tqdm import tqdm

        pool = pool if pool is not None else torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        for size in tqdm(sorted(self.buckets, reverse=True), desc="capture prefill graphs",
                         disable=not progress):
            self.query_start_loc[1] = size
            self.seq_lens.fill_(size)
            self.last_row.fill_(size - 1)
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._forward(size)
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                self._outputs[size] = self._forward(size)
            self._graphs[size] = graph
        torch.cuda.current_stream(self.device).wait_stream(stream)
        torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def run(self, inputs: _StepInputs) -> torch.Tensor:
        """fp32 logits [1, vocab] (a fresh tensor) of a one-sequence prefill chunk prepared by
        `engine.model_runner.prepare_step`."""
        n = inputs.input_ids.shape[0]
        size = self.bucket(n)
        assert size is not None and n >= 2, "chunk does not fit a prefill bucket"
        ctx = inputs.context
        width = ctx.block_tables.shape[1]
        self.input_ids[:n].copy_(inputs.input_ids, non_blocking=True)
        self.positions[:n].copy_(inputs.positions, non_blocking=True)
        self.slot_mapping[:n].copy_(ctx.slot_mapping, non_blocking=True)
        self.block_tables[:, :width].copy_(ctx.block_tables, non_blocking=True)
        self.seq_lens.copy_(ctx.seq_lens, non_blocking=True)
        self.query_start_loc.copy_(ctx.query_start_loc, non_blocking=True)
        self.last_row.copy_(inputs.last_rows, non_blocking=True)
        if size > n:
            self.input_ids[n:size].zero_()
            self.positions[n:size].zero_()
            self.slot_mapping[n:size].fill_(PAD_SLOT)
        if not self.use_graphs:
            return self._forward(size)
        if size not in self._graphs:
            raise RuntimeError("PrefillGraphs.capture() was not called")
        self._graphs[size].replay()
        return self._outputs[size].clone()


class StepGraphs:
    """Decode graphs by batch size and prefill graphs by token bucket for one runner."""

    def __init__(self, decode: DecodeGraphs, prefill: PrefillGraphs) -> None:
        self.decode = decode
        self.prefill = prefill

    @classmethod
    def for_runner(cls, runner: ModelRunner, *, max_decode_batch: int = 256,
                   prefill_buckets: tuple[int, ...] = PREFILL_BUCKETS,
                   use_graphs: bool = True) -> StepGraphs:
        """Graphs over the runner's model and bound KV pool (not yet captured). Decode sizes
        are the powers of two up to min(256, max_decode_batch), plus that bound itself."""
        top = min(CAPTURE_BATCH_SIZES[-1], max_decode_batch)
        sizes = tuple(sorted({s for s in CAPTURE_BATCH_SIZES if s < top} | {top}))
        max_blocks = -(-runner.max_model_len // runner.block_size)
        step: Callable[..., torch.Tensor] = runner.decode_step
        decode = DecodeGraphs(step, max_blocks_per_seq=max_blocks,
                              max_seq_len=runner.max_model_len, device=runner.device,
                              batch_sizes=sizes, use_graphs=use_graphs)
        prefill = PrefillGraphs(runner.model, max_blocks_per_seq=max_blocks,
                                max_seq_len=runner.max_model_len, device=runner.device,
                                buckets=prefill_buckets, use_graphs=use_graphs)
        return cls(decode, prefill)

    def capture(self, progress: bool = True) -> None:
        """Capture every graph into one memory pool (they never run concurrently)."""
        if not self.decode.use_graphs:
            return
        pool = torch.cuda.graph_pool_handle()
        self.decode.capture(progress=progress, pool=pool)
        self.prefill.capture(pool=pool, progress=progress)

    def run(self, batch: StepBatch, inputs: _StepInputs) -> torch.Tensor | None:
        """The step's logits from a graph replay (a fresh tensor), or None: run it eagerly."""
        if any(c.kv_shift for c in batch.seqs):
            return None
        n_seqs = len(batch.seqs)
        if inputs.input_ids.shape[0] == n_seqs:  # every chunk is one token: a decode batch
            if n_seqs > self.decode.max_batch:
                return None
            ctx = inputs.context
            return self.decode.run(inputs.input_ids, inputs.positions, ctx.slot_mapping,
                                   ctx.block_tables, ctx.seq_lens).clone()
        if n_seqs == 1 and inputs.input_ids.shape[0] <= self.prefill.max_tokens:
            return self.prefill.run(inputs)
        return None
