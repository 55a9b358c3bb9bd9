"""bench/radix_bench.py runs end to end on a tiny workload and reports both caches."""

from __future__ import annotations

import pytest

from bench.radix_bench import main


def test_radix_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    figures = main(["--requests", "300", "--namespaces", "4", "--budget-blocks", "600"])
    out = capsys.readouterr().out
    assert "radix tree" in out and "hash chain (vLLM)" in out
    for cache in ("radix tree", "hash chain (vLLM)"):
        for op in ("match", "insert", "request"):
            assert 0 < figures[f"{cache}/{op}/median"] <= figures[f"{cache}/{op}/p99"]
    assert figures["speedup/match/median"] > 0
