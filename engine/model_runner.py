"""`ModelRunner`: loads a checkpoint, owns the KV pool, and runs one packed step of the model.

A step mixes prefill chunks (a run of new tokens on top of whatever the sequence already has in
the pool: a reused prefix, earlier chunks) and decodes (one new token). It writes the new
tokens' K/V into the pool at the slots their block tables give and returns the logits of the
last token of every chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from engine.attention import backend_for, torch_paged
from engine.block_allocator import BlockAllocator
from engine.checkpoint import CheckpointError, load_weights
from engine.config import ModelConfig
from engine.context import AttentionContext, reset_context, set_context
from engine.kv_pool import KVPool
from engine.kv_quant import KVScales, is_quantized, kv_dtype_name, resolve_kv_dtype
from engine.memory_plan import MemoryPlan, measure_peak, plan_memory
from engine.model import CausalLM
from engine.step_graphs import StepGraphs, supports_graphs
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


@dataclass(slots=True)
class SeqChunk:
    """New tokens of one sequence for this step: a prefill chunk, or one token for a decode.

    The chunk covers positions [start_pos, start_pos + len(token_ids)); positions below
    start_pos are already in the pool. `block_table` covers at least the chunk's end.
    `kv_shift` tokens were dropped from the sequence's KV (sliding window, eviction): position
    p lives at KV slot p - kv_shift of the table, and the KV length is end - kv_shift."""

    token_ids: Sequence[int]
    start_pos: int
    block_table: Sequence[int]
    kv_shift: int = 0


@dataclass(slots=True)
class StepBatch:
    seqs: list[SeqChunk]


@dataclass(slots=True)
class _StepInputs:
    input_ids: torch.Tensor  # int64 [T]
    positions: torch.Tensor  # int64 [T]
    context: AttentionContext
    last_rows: torch.Tensor  # int64 [B]: row of each chunk's last token


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """Default bf16 on CUDA, fp32 on CPU; CPU runs fp32 or bf16 only."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    resolved = DTYPES[dtype]
    if device.type == "cpu" and resolved == torch.float16:
        raise ValueError("float16 is not supported on CPU; use float32 or bfloat16")
    return resolved


class ModelRunner:
    def __init__(self, *, model_dir: Path, config: ModelConfig, tokenizer: Tokenizer,
                 model: CausalLM, device: torch.device, dtype: torch.dtype, plan: MemoryPlan,
                 max_batch_tokens: int, kv_dtype: torch.dtype | None = None,
                 kv_scales: KVScales | None = None, sliding_window: bool = True) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.dtype = dtype
        self.plan = plan
        self.block_size = plan.block_size
        self.num_blocks = plan.num_blocks
        self.max_batch_tokens = max_batch_tokens
        # Sliding-window models attend over their window and serve their full context (blocks
        # that fall out of the window are freed); without it, the context is capped at the window.
        self.window = config.sliding_window if sliding_window else None
        self.max_model_len = (config.max_position_embeddings if self.window
                              else config.max_model_len)
        self.model_id = model_dir.name or config.name_or_path or "model"
        self.kv_pool = KVPool(config.num_layers, plan.num_blocks, plan.block_size,
                              config.num_kv_heads, config.head_dim, kv_dtype or dtype, device,
                              scales=kv_scales)
        self.model.bind_kv(self.kv_pool)
        self.model.set_window(self.window)
        self.allocator = BlockAllocator(plan.num_blocks, plan.block_size)
        self.graphs: StepGraphs | None = None  # CUDA graphs `step` replays (capture_graphs)

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str = "auto", dtype: str | None = None,
             kv_cache_gib: float | None = None, kv_fraction: float = 0.9,
             num_blocks: int | None = None, block_size: int = 16,
             max_batch_tokens: int = 2048, progress: bool = True, kv_dtype: str = "auto",
             kv_scales: KVScales | None = None, sliding_window: bool = True,
             cuda_graphs: bool = True, max_num_seqs: int = 256) -> ModelRunner:
        """Load config, tokenizer and weights from a Hugging Face directory; size the KV pool.
        With `cuda_graphs` (CUDA only) capture the step graphs too (`capture_graphs`).

        `kv_dtype` "fp8"/"int8" stores KV in one byte per element with per-layer, per-KV-head
        scales (`kv_scales`, or calibrated from the first prefill); the pool then holds twice
        the tokens of bf16 in the same memory. `sliding_window=False` ignores a model's window
        and caps its context at the window instead (full attention)."""
        root = Path(model_dir).resolve()
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        kv_dt = resolve_kv_dtype(kv_dtype, dt)
        config = ModelConfig.from_dir(root)
        tokenizer = Tokenizer.from_dir(root)
        if tokenizer.vocab_size > config.vocab_size:
            raise CheckpointError(
                f"{root / 'tokenizer.json'}: {tokenizer.vocab_size} tokens, but config.json "
                f"has vocab_size {config.vocab_size}"
            )
        model = CausalLM(config, _backend(dev, is_quantized(kv_dt),
                                          sliding_window and bool(config.sliding_window)),
                         dev, dt)
        with torch.no_grad():
            load_weights(root, model.checkpoint_slots(), skip=model.skipped_checkpoint_names(),
                         progress=progress)
        model.eval()
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        plan = plan_memory(
            config, kv_dt, dev, block_size=block_size, weights_bytes=weights, kv_dtype=kv_dtype,
            num_blocks=num_blocks, kv_cache_gib=kv_cache_gib, kv_fraction=kv_fraction,
            measure_workspace=lambda: _measure_workspace(model, config, block_size,
                                                         max_batch_tokens, dev, kv_dt),
        )
        log.info("%s: %s", root.name, plan.summary())
        runner = cls(model_dir=root, config=config, tokenizer=tokenizer, model=model,
                     device=dev, dtype=dt, plan=plan, max_batch_tokens=max_batch_tokens,
                     kv_dtype=kv_dt, kv_scales=kv_scales, sliding_window=sliding_window)
        if cuda_graphs:
            runner.capture_graphs(max_num_seqs, progress=progress)
        return runner

    @property
    def scores_supported(self) -> bool:
        """The attention backend can report scores (KV eviction policies need them)."""
        return self.model.layers[0].self_attn.backend is torch_paged

    @property
    def kv_dtype(self) -> str:
        """"fp8", "int8", or the model dtype's name ("bfloat16", "float32")."""
        return kv_dtype_name(self.kv_pool.dtype)

    # --- the step ---------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, batch: StepBatch) -> torch.Tensor:
        """fp32 logits [len(batch.seqs), vocab] of the last token of every chunk."""
        inputs = prepare_step(batch, block_size=self.block_size, num_blocks=self.num_blocks,
                              max_model_len=self.max_model_len,
                              vocab_size=self.config.vocab_size, device=self.device)
        if self.graphs is not None:
            logits = self.graphs.run(batch, inputs)
            if logits is not None:
                return logits
        return _forward(self.model, inputs)

    def capture_graphs(self, max_decode_batch: int = 256, progress: bool = True) -> bool:
        """Capture CUDA graphs of decode batches (up to min(256, max_decode_batch) sequences)
        and of small one-sequence prefill chunks (engine.step_graphs); `step` replays them.
        False, and nothing captured, when the step is not capturable (CPU, fp8/int8 KV,
        sliding window)."""
        if not supports_graphs(self):
            return False
        graphs = StepGraphs.for_runner(self, max_decode_batch=max_decode_batch)
        graphs.capture(progress=progress)
        self.graphs = graphs
        return True

    @torch.inference_mode()
    def step_with_scores(self, batch: StepBatch, head_mask: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """`step`, plus the attention each KV slot received in this step: fp32
        [B, num_layers, Hkv, max KV length], summed over each group's query heads and the
        chunk's queries (H2O scores, FastGen profiles). `head_mask` (bool [L, B, Hkv, S])
        hides slots from individual KV heads. Torch backend only."""
        inputs = prepare_step(batch, block_size=self.block_size, num_blocks=self.num_blocks,
                              max_model_len=self.max_model_len,
                              vocab_size=self.config.vocab_size, device=self.device)
        ctx = inputs.context
        n_seqs, width = ctx.seq_lens.shape[0], ctx.max_seq_len
        cfg = self.config
        ctx.scores = [torch.zeros(n_seqs, cfg.num_kv_heads, width, device=self.device)
                      for _ in range(cfg.num_layers)]
        if head_mask is not None:
            assert head_mask.shape[:3] == (cfg.num_layers, n_seqs, cfg.num_kv_heads)
            ctx.head_mask = head_mask[..., :width]
        logits = _forward(self.model, inputs)
        return logits, torch.stack(ctx.scores, dim=1)

    def compact_kv(self, block_table: list[int], keep: Sequence[int]) -> None:
        """Pack the KV slots `keep` (ascending) of one sequence into its slots 0..len-1."""
        moves = [(s, d) for d, s in enumerate(keep) if s != d]
        self.kv_pool.move_slots(block_table, [s for s, _ in moves], [d for _, d in moves])

    @torch.inference_mode()
    def decode_step(self, input_ids: torch.Tensor, positions: torch.Tensor,
                    slot_mapping: torch.Tensor, block_tables: torch.Tensor,
                    seq_lens: torch.Tensor, max_seq_len: int) -> torch.Tensor:
        """A decode over device tensors with no host sync (engine.cuda_graphs captures it).

        input_ids, positions, slot_mapping: int64 [B]; block_tables: int32 [B, max_blocks];
        seq_lens: int32 [B]. Returns fp32 logits [B, vocab]."""
        batch = input_ids.shape[0]
        qsl = torch.arange(batch + 1, dtype=torch.int32, device=input_ids.device)
        set_context(AttentionContext(slot_mapping, block_tables, seq_lens, qsl, 1, max_seq_len))
        try:
            return self.model.compute_logits(self.model(input_ids, positions))
        finally:
            reset_context()

    def copy_block(self, src: int, dst: int) -> None:
        """Copy one block's K/V (all layers): copy-on-write of a shared partial block."""
        self.kv_pool.copy_block(src, dst)


def _backend(device: torch.device, quantized: bool, windowed: bool) -> ModuleType:
    """The attention module: the Triton kernels of engine.attention.triton_quant serve fp8/int8
    KV and sliding windows on CUDA; everything else goes by `backend_for`."""
    if device.type == "cuda" and (quantized or windowed):
        try:
            from engine.attention import triton_quant
        except ImportError:
            log.warning("triton is not importable: quantized/windowed KV runs the torch path")
        else:
            return triton_quant
    return backend_for(device)


def _forward(model: CausalLM, inputs: _StepInputs) -> torch.Tensor:
    set_context(inputs.context)
    try:
        hidden = model(inputs.input_ids, inputs.positions)
        return model.compute_logits(hidden[inputs.last_rows])
    finally:
        reset_context()


def prepare_step(batch: StepBatch, *, block_size: int, num_blocks: int, max_model_len: int,
                 vocab_size: int, device: torch.device) -> _StepInputs:
    """Host-side metadata of a step (validated), moved to the device once per tensor."""
    if not batch.seqs:
        raise ValueError("empty step batch")
    bs = block_size
    ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    seq_lens: list[int] = []
    qsl = [0]
    tables: list[Sequence[int]] = []
    for chunk in batch.seqs:
        n, start, shift = len(chunk.token_ids), chunk.start_pos, chunk.kv_shift
        end = start + n
        n_blocks = -(-(end - shift) // bs)
        table = chunk.block_table
        if n == 0 or start < 0 or not 0 <= shift <= start:
            raise ValueError(f"invalid chunk: {n} tokens at start_pos {start}")
        if end > max_model_len:
            raise ValueError(f"sequence of {end} tokens exceeds max_model_len {max_model_len}")
        if len(table) < n_blocks:
            raise ValueError(f"block table of {len(table)} blocks cannot hold {end} tokens")
        ids.extend(chunk.token_ids)
        positions.extend(range(start, end))
        slots.extend(table[i // bs] * bs + i % bs for i in range(start - shift, end - shift))
        seq_lens.append(end - shift)
        qsl.append(qsl[-1] + n)
        tables.append(table[:n_blocks])
    if min(ids) < 0 or max(ids) >= vocab_size:
        raise ValueError(f"token id out of range [0, {vocab_size})")
    if min(min(t) for t in tables) < 0 or max(max(t) for t in tables) >= num_blocks:
        raise ValueError(f"block id out of range [0, {num_blocks})")
    width = max(len(t) for t in tables)
    padded = [[*t, *([t[0]] * (width - len(t)))] for t in tables]
    ctx = AttentionContext(
        slot_mapping=_to_device(slots, torch.int64, device),
        block_tables=_to_device(padded, torch.int32, device),
        seq_lens=_to_device(seq_lens, torch.int32, device),
        query_start_loc=_to_device(qsl, torch.int32, device),
        max_query_len=max(len(c.token_ids) for c in batch.seqs),
        max_seq_len=max(seq_lens),
    )
    return _StepInputs(
        input_ids=_to_device(ids, torch.int64, device),
        positions=_to_device(positions, torch.int64, device),
        context=ctx,
        last_rows=_to_device([q - 1 for q in qsl[1:]], torch.int64, device),
    )


def _to_device(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A host list as a device tensor. On CUDA the copy comes from pinned memory and does not
    block the host, so the step's kernels are queued without waiting for it."""
    if device.type != "cuda":
        return torch.tensor(values, dtype=dtype, device=device)
    return torch.tensor(values, dtype=dtype, pin_memory=True).to(device, non_blocking=True)


def _measure_workspace(model: CausalLM, config: ModelConfig, block_size: int,
                       max_batch_tokens: int, device: torch.device, dtype: torch.dtype) -> int:
    """Peak activation bytes of the largest steps: one prefill of `max_batch_tokens` tokens and
    as many one-token sequences (the most logits rows). Runs on a scratch KV pool of the KV
    element `dtype`, which the caller replaces with the real one."""
    tokens = min(max_batch_tokens, config.max_model_len)
    n_blocks = -(-tokens // block_size)
    scratch = KVPool(config.num_layers, n_blocks, block_size, config.num_kv_heads,
                     config.head_dim, dtype, device)
    model.bind_kv(scratch)
    prefill = StepBatch([SeqChunk([0] * tokens, 0, list(range(n_blocks)))])
    decodes = StepBatch([SeqChunk([0], 0, [i % n_blocks]) for i in range(tokens)])

    def run(batch: StepBatch) -> None:
        with torch.inference_mode():
            _forward(model, prepare_step(batch, block_size=block_size, num_blocks=n_blocks,
                                         max_model_len=config.max_model_len,
                                         vocab_size=config.vocab_size, device=device))

    peak = max(measure_peak(device, lambda: run(prefill)),
               measure_peak(device, lambda: run(decodes)))
    model.unbind_kv()
    del scratch
    torch.cuda.empty_cache()  # the free memory read next must not count the scratch pool
    return peak
