"""Tiny checkpoints written once per test session (offline, deterministic).

`tiny_llama_dir` is the default tiny Llama (GQA, untied lm_head) that the engine, scheduler and
async-engine tests load; `tiny_qwen2_dir` is Qwen2-shaped (q/k/v biases, tied embeddings).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.tiny_model import write_tiny_model


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), arch="qwen2", seed=1)
