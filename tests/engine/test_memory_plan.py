"""MemoryPlan: bytes per token, CPU sizing by GiB, explicit block counts."""

from __future__ import annotations

import pytest
import torch

from engine.config import ModelConfig
from engine.memory_plan import GIB, InsufficientMemory, bytes_per_token, plan_memory

LLAMA2_7B = ModelConfig.from_dict({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
    "max_position_embeddings": 4096,
})
CPU = torch.device("cpu")


def test_bytes_per_token():
    assert bytes_per_token(LLAMA2_7B, torch.bfloat16) == 512 * 1024  # 0.5 MiB, as in DESIGN.md
    assert bytes_per_token(LLAMA2_7B, torch.float32) == 1024 * 1024


def test_cpu_pool_from_gib_and_default():
    plan = plan_memory(LLAMA2_7B, torch.bfloat16, CPU, block_size=16, weights_bytes=7,
                       kv_cache_gib=1.0)
    assert plan.num_blocks == GIB // (16 * 512 * 1024) == 128
    assert plan.kv_bytes <= GIB and plan.source == "kv_cache_gib" and plan.weights_bytes == 7
    default = plan_memory(LLAMA2_7B, torch.bfloat16, CPU, block_size=16, weights_bytes=0)
    assert default.num_blocks == 32  # 0.25 GiB


def test_explicit_block_count_wins():
    plan = plan_memory(LLAMA2_7B, torch.bfloat16, CPU, block_size=32, weights_bytes=0,
                       num_blocks=10, kv_cache_gib=4.0)
    assert (plan.num_blocks, plan.source, plan.num_tokens) == (10, "num_blocks", 320)
    assert plan.block_bytes == 32 * 512 * 1024


def test_no_room_is_an_error():
    with pytest.raises(InsufficientMemory):
        plan_memory(LLAMA2_7B, torch.bfloat16, CPU, block_size=16, weights_bytes=0,
                    kv_cache_gib=0.001)
