"""DecodeGraphs: padding to captured sizes and replay over live static buffers.

The step under test is an attention-only decode (embed -> store_kv -> paged_decode) built from
the Triton kernels; on CPU it runs eagerly in the interpreter, with CUDA it is captured.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set",
                    allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from engine.attention import triton_paged
from engine.cuda_graphs import PAD_SLOT, DecodeGraphs

HEADS, KV_HEADS, DIM, BLOCK, NUM_BLOCKS, VOCAB = 4, 2, 16, 16, 12, 50


class AttentionOnlyStep:
    """ids -> q/k/v by table lookup (position added), store, decode; 'logits' = flat output."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        gen = torch.Generator().manual_seed(0)
        self.table = torch.randn(VOCAB, (HEADS + 2 * KV_HEADS) * DIM, generator=gen).to(
            device=device, dtype=dtype)
        self.k_cache = torch.zeros(NUM_BLOCKS, BLOCK, KV_HEADS, DIM, device=device, dtype=dtype)
        self.v_cache = torch.zeros_like(self.k_cache)

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor,
                 slot_mapping: torch.Tensor, block_tables: torch.Tensor,
                 seq_lens: torch.Tensor, max_seq_len: int) -> torch.Tensor:
        x = self.table[input_ids] + positions[:, None].to(self.table.dtype) * 0.01
        q, k, v = x.split([HEADS * DIM, KV_HEADS * DIM, KV_HEADS * DIM], dim=1)
        q = q.reshape(-1, HEADS, DIM)
        triton_paged.store_kv(k.reshape(-1, KV_HEADS, DIM), v.reshape(-1, KV_HEADS, DIM),
                              self.k_cache, self.v_cache, slot_mapping)
        out = triton_paged.paged_decode(q, self.k_cache, self.v_cache, block_tables, seq_lens,
                                        DIM**-0.5, max_seq_len)
        return out.flatten(1).float()


def _batch(device: torch.device, lens: list[int]) -> tuple[torch.Tensor, ...]:
    """Three sequences with disjoint 2-block tables; this step's token at position len-1."""
    tables = torch.tensor([[0, 1], [2, 3], [4, 5]][: len(lens)], dtype=torch.int32)
    pos = torch.tensor([n - 1 for n in lens])
    slots = tables[torch.arange(len(lens)), pos // BLOCK].long() * BLOCK + pos % BLOCK
    ids = torch.tensor([7, 11, 13][: len(lens)])
    return tuple(t.to(device) for t in (ids, pos, slots, tables,
                                        torch.tensor(lens, dtype=torch.int32)))


def _check_padded_replay(device: torch.device, dtype: torch.dtype, use_graphs: bool) -> None:
    eager = AttentionOnlyStep(device, dtype)
    graphed = AttentionOnlyStep(device, dtype)
    graphs = DecodeGraphs(graphed, max_blocks_per_seq=4, max_seq_len=2 * BLOCK, device=device,
                          batch_sizes=(1, 4), use_graphs=use_graphs)
    graphs.capture(progress=False)
    for lens in ([5, 17, 1], [6, 18, 2], [7, 19, 3]):  # three steps: buffers are refilled
        batch = _batch(device, lens)
        want = eager(*batch, 2 * BLOCK)
        got = graphs.run(*batch)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
    # Padding rows (slot PAD_SLOT) never reach the cache: both caches hold the same slots.
    assert torch.equal(graphed.k_cache, eager.k_cache)
    assert torch.equal(graphed.v_cache, eager.v_cache)
    assert graphs.buffers.slot_mapping[3].item() == PAD_SLOT


def test_padded_batch_matches_unpadded_step() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _check_padded_replay(device, torch.float16, use_graphs=False)


def test_padded_size_and_oversize_batch() -> None:
    graphs = DecodeGraphs(AttentionOnlyStep(torch.device("cpu"), torch.float16),
                          max_blocks_per_seq=4, max_seq_len=32, device=torch.device("cpu"),
                          batch_sizes=(1, 2, 4, 8))
    assert [graphs.padded_size(n) for n in (1, 3, 5, 8, 9)] == [1, 4, 8, 8, None]
    with pytest.raises(ValueError, match="exceeds"):
        graphs.run(*(torch.zeros(9, dtype=torch.int64) for _ in range(3)),
                   torch.zeros(9, 4, dtype=torch.int32), torch.ones(9, dtype=torch.int32))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_captured_graph_replays_like_eager(dtype: torch.dtype) -> None:
    _check_padded_replay(torch.device("cuda"), dtype, use_graphs=True)
