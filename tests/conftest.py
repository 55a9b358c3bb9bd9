"""Shared pytest set-up: the `gpu` marker skips without CUDA; torch threads capped for 2-core CI."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run bench/gpu_check.py on the device)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
