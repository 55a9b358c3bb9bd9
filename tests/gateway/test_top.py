"""`prefixgate top`: parsing a real /metrics body, rates between two polls, the rich view, and
the command against a loopback HTTP server that serves GatewayMetrics behind a bearer token."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from rich.console import Console

from engine.engine_stats import EngineCounters, EngineStats
from engine.messages import CacheReport, RequestResult
from gateway.cli.main import main
from gateway.cli.top_view import Snapshot, histogram_quantile, render
from gateway.metrics import MEDIA_TYPE, CompletedRequest, GatewayMetrics
from tests.gateway.observability_support import ROUTE

TOKEN = "pga_top-test-token"


def engine_stats() -> EngineStats:
    """A busy engine: 40 of 128 blocks in use, 3 waiting, two kinds of refusals."""
    counters = EngineCounters(prompt_tokens=900, cached_tokens=300, generation_tokens=250,
                              preemptions=0, steps=40, step_seconds=0.8,
                              rejected=Counter(kv_high_water=4, queue_full=1))
    return EngineStats(
        num_blocks=128, block_size=16, free_blocks=70, cached_blocks=18, in_use_blocks=40,
        kv_occupancy=40 / 128, fragmentation=0.125, running=5, waiting=3, reserved_blocks=12,
        evicted_blocks=7, prefix_hit_rate=300 / 900, counters=counters, ttft_p50=0.04,
        ttft_p95=0.09, itl_p50=0.011, itl_p95=0.02, step_p50=0.018, prefill_budget=256,
        prefill_backoffs=2, prefill_recoveries=1,
    )


def record(metrics: GatewayMetrics, tenant: str, n: int, cached: int = 0) -> None:
    """n served requests of 100 prompt tokens (`cached` of them from the cache), 10 generated,
    first token after 30 ms."""
    for i in range(n):
        result = RequestResult(f"{tenant}-{i}", 100, cached, 10, "length", ttft_s=0.03,
                               total_s=0.2, cache=CacheReport(cached_tokens=cached),
                               queue_s=0.01, prefill_s=0.02, decode_s=0.17)
        metrics.record(CompletedRequest(tenant, ROUTE, "ok", None, 100, cached, 10, (result,)))


@pytest.fixture
def metrics() -> GatewayMetrics:
    m = GatewayMetrics(engine_stats)
    record(m, "ten_alpha", 2, cached=50)
    record(m, "ten_beta", 1)
    m.record(CompletedRequest("ten_beta", ROUTE, "rejected", "rate_limit_exceeded"))
    return m


def test_histogram_quantile_interpolates_within_the_bucket():
    buckets = [(0.1, 2.0), (0.5, 6.0), (1.0, 8.0), (float("inf"), 8.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (4 - 2) / 4)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(1.0, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(0.1, 1.0), (float("inf"), 5.0)]) == 0.1


def test_snapshot_reads_tenants_engine_and_rejections(metrics):
    snap = Snapshot.parse(metrics.exposition().decode(), at=10.0)
    assert snap.requests == 4 and snap.requests_by_outcome == {"ok": 3, "rejected": 1}
    alpha, beta = snap.tenants
    assert (alpha.tenant, alpha.requests, alpha.prompt_tokens, alpha.cached_tokens) == (
        "ten_alpha", 2, 200, 100)
    assert alpha.hit_ratio == 0.5 and beta.rejected == 1 and beta.hit_ratio == 0
    assert alpha.ttft_p50_s == pytest.approx(0.025 + 0.025 * 0.5)  # inside the 25-50 ms bucket
    assert snap.rejections == {"rate_limit_exceeded": 1}
    assert snap.engine_rejections["kv_high_water"] == 4
    assert snap.engine_rejections["queue_full"] == 1
    assert snap.kv_blocks == {"free": 70, "cached": 18, "in_use": 40}
    assert snap.get("prefixgate_prefix_hit_ratio") == pytest.approx(100 / 300)
    assert snap.get("prefixgate_engine_queue_depth") == 3
    assert snap.get("prefixgate_engine_recent_time_to_first_token_seconds:0.95") == 0.09


def test_view_shows_rates_between_two_polls(metrics):
    before = Snapshot.parse(metrics.exposition().decode(), at=10.0)
    record(metrics, "ten_alpha", 4)
    now = Snapshot.parse(metrics.exposition().decode(), at=12.0)
    console = Console(record=True, width=160)
    console.print(render(now, before, "http://gw:8000"))
    text = console.export_text()
    assert "prefixgate top — http://gw:8000" in text
    assert "8 (2.0/s)" in text  # all requests: 4 -> 8 in two seconds
    rows = {cells[0]: cells[1:] for line in text.splitlines()
            if (cells := line.strip("│ ").split()) and cells[0].startswith("ten_")}
    # tenant: requests, rate, rejected, prompt, cached, hit, completion, TTFT p50
    assert rows["ten_alpha"][:7] == ["6", "2.0/s", "0", "600", "100", "16.7%", "60"]
    assert rows["ten_beta"][:3] == ["2", "0.0/s", "1"]
    assert "kv_high_water" in text and "rate_limit_exceeded" in text
    assert "isolation violations: 0" in text


@pytest.fixture
def server(metrics) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
            elif self.headers.get("authorization") != f"Bearer {TOKEN}":
                self.send_error(401)
            else:
                body = metrics.exposition()
                self.send_response(200)
                self.send_header("content-type", MEDIA_TYPE)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_top_once_prints_a_frame(server):
    result = CliRunner().invoke(main, ["top", "--url", server, "--admin-token", TOKEN, "--once"])
    assert result.exit_code == 0, result.output
    assert "ten_alpha" in result.output and "ten_beta" in result.output
    assert "KV cache and scheduler" in result.output


def test_top_reports_a_refused_token_and_no_token(server, tmp_path, monkeypatch):
    result = CliRunner().invoke(main, ["top", "--url", server, "--admin-token", "wrong", "--once"])
    assert result.exit_code == 1
    assert "refused the admin token (HTTP 401)" in result.output
    monkeypatch.delenv("PREFIXGATE_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("PREFIXGATE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["top", "--url", server, "--once"])
    assert result.exit_code == 2 and "no admin token" in result.output
    (tmp_path / "admin_token").write_text(TOKEN + "\n")
    result = CliRunner().invoke(main, ["top", "--url", server, "--once"])
    assert result.exit_code == 0, result.output
