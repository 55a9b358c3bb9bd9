"""Soak: the gateway at 3x its measured capacity for a minute, with the tiny model on CPU.

The driver is open-loop (arrivals on a fixed schedule, whatever the server does), so overload
is real: the server must shed with 429 + Retry-After rather than queue without bound. First a
closed-loop calibration at the engine's batch width measures capacity (completions/s); then
arrivals come at `--factor` times that for `--seconds`. Every request must either complete
(200; streams end in `data: [DONE]` with no error frame) or be refused with 429 and a
Retry-After header; anything else (5xx, other 4xx, transport error, broken stream) is a
failure. At the end the engine's KV accounting invariant is checked and the process's RSS
curve is reported: the maximum after warm-up must stay within `--rss-slack-mib` of the
maximum in the first third (no growth). Peer: the same gateway at 1x capacity (calibration),
whose p50/p99 latency is printed beside the overloaded ones.

    .venv/bin/python -m bench.soak --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

PROMPTS = [
    "Tell me about the weather today.",
    "Write a haiku about caches.",
    "Summarize the plot of a short story about a lighthouse keeper.",
    "What is a prefix cache? Explain it in two sentences.",
]


@dataclass(slots=True)
class LoadReport:
    """Outcomes of one load run. `failures` lists what was neither a completion nor a 429."""

    tried: int = 0
    completed: int = 0
    shed: int = 0
    failures: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def _body(model: str, i: int, max_tokens: int) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": i % 2 == 1,
    }


async def one_request(
    client: httpx.AsyncClient, model: str, i: int, max_tokens: int, report: LoadReport
) -> None:
    """Send request `i`; record it as completed, shed (429 + Retry-After) or a failure."""
    report.tried += 1
    body = _body(model, i, max_tokens)
    started = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            raw = await r.aread()
    except httpx.HTTPError as exc:
        report.failures.append(f"request {i}: {type(exc).__name__}")
        return
    report.statuses[r.status_code] += 1
    if r.status_code == 429:
        if r.headers.get("retry-after", "").isdigit():
            report.shed += 1
        else:
            report.failures.append(f"request {i}: 429 without Retry-After")
        return
    if r.status_code != 200:
        report.failures.append(f"request {i}: {r.status_code} {raw[:200]!r}")
        return
    if body["stream"] and (not raw.endswith(b"data: [DONE]\n\n") or b'"error"' in raw):
        report.failures.append(f"request {i}: broken stream {raw[-200:]!r}")
        return
    report.completed += 1
    report.latencies_s.append(time.perf_counter() - started)


def _client(base_url: str, key: str) -> httpx.AsyncClient:
    # Idle connections expire before uvicorn's 5 s keep-alive does, so the client never
    # reuses one the server is closing at that moment (a client-side race, not a fault).
    return httpx.AsyncClient(
        base_url=base_url, timeout=60.0, headers={"authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100,
                            keepalive_expiry=2.0),
    )


async def calibrate(
    base_url: str, key: str, model: str, concurrency: int, seconds: float, max_tokens: int = 8
) -> LoadReport:
    """Closed loop: `concurrency` clients back to back for `seconds` -> capacity (req/s)."""
    report = LoadReport()
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            await one_request(client, model, next(counter), max_tokens, report)

    started = time.perf_counter()
    async with _client(base_url, key) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    report.seconds = time.perf_counter() - started
    return report


def drive_elsewhere(
    base_url: str, key: str, model: str, rate: float, seconds: float, max_tokens: int = 8,
    progress: bool = True,
) -> LoadReport:
    """`drive` in a separate process, so the driver does not share the server's GIL."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(
            _drive_sync, base_url, key, model, rate, seconds, max_tokens, progress
        ).result()


def _drive_sync(base_url: str, key: str, model: str, rate: float, seconds: float,
                max_tokens: int, progress: bool) -> LoadReport:
    return asyncio.run(drive(base_url, key, model, rate, seconds, max_tokens, progress))


async def drive(
    base_url: str, key: str, model: str, rate: float, seconds: float, max_tokens: int = 8,
    progress: bool = True,
) -> LoadReport:
    """Open loop: arrivals at `rate`/s for `seconds`, each awaited to its end."""
    report = LoadReport()
    total = max(1, int(rate * seconds))
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    async with _client(base_url, key) as client:
        for i in tqdm(range(total), desc=f"load {rate:.1f} req/s", disable=not progress,
                      file=sys.stderr):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_request(client, model, i, max_tokens, report)))
        await asyncio.gather(*tasks)
    report.seconds = time.perf_counter() - started
    return report


# --- RSS ---------------------------------------------------------------------------------------
def rss_mib() -> float:
    """Resident set size of this process now (Linux /proc), in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples RSS every `interval_s` in a thread while the load runs."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_mib())
            self._stop.wait(self.interval_s)

    def growth_after_warmup(self) -> float:
        """max(RSS in the last two thirds) - max(RSS in the first third), in MiB."""
        if len(self.samples) < 3:
            return 0.0
        third = len(self.samples) // 3
        return max(self.samples[third:]) - max(self.samples[:third])


# --- the soak run ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--factor", type=float, default=3.0, help="load / measured capacity")
    parser.add_argument("--calibrate-seconds", type=float, default=4.0)
    parser.add_argument("--max-num-seqs", type=int, default=4)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rss-slack-mib", type=float, default=32.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from bench.soak_gateway import InProcessGateway

    with tempfile.TemporaryDirectory(prefix="prefixgate-soak-") as tmp, InProcessGateway(
        Path(tmp), max_num_seqs=args.max_num_seqs, max_queue=args.max_queue
    ) as gw:
        key = gw.tenant_key("soak")
        base = calibrate_and_drive(gw.base_url, key, gw.model, args)
        gw.wait_idle()
        gw.engine.core.check_accounting()  # raises on a leaked or double-owned block
        print("KV accounting invariant: holds")
        alive = gw.alive()
        print(f"server thread and engine loop alive: {alive}")
    figures = {**base, "server_alive": float(alive)}
    ok = (figures["failures"] == 0 and alive
          and figures["rss_growth_mib"] <= args.rss_slack_mib)
    print("PASS" if ok else "FAIL")
    if not ok:
        raise SystemExit(1)
    return figures


def calibrate_and_drive(base_url: str, key: str, model: str,
                        args: argparse.Namespace) -> dict[str, float]:
    print(f"calibrating: {args.max_num_seqs} closed-loop clients for {args.calibrate_seconds}s")
    peer = asyncio.run(calibrate(base_url, key, model, args.max_num_seqs, args.calibrate_seconds,
                                 args.max_tokens))
    assert peer.completed and not peer.failures, peer.failures[:5]
    rate = args.factor * peer.throughput
    print(f"capacity {peer.throughput:.2f} req/s -> driving {rate:.2f} req/s "
          f"({args.factor:g}x) for {args.seconds:g}s")
    with RssSampler() as rss:
        report = drive_elsewhere(base_url, key, model, rate, args.seconds, args.max_tokens)
    figures = {
        "capacity_rps": peer.throughput,
        "offered_rps": rate,
        "tried": float(report.tried),
        "completed": float(report.completed),
        "shed_429": float(report.shed),
        "failures": float(len(report.failures)),
        "p50_s": report.quantile(0.5),
        "p99_s": report.quantile(0.99),
        "peer_p50_s": peer.quantile(0.5),
        "peer_p99_s": peer.quantile(0.99),
        "rss_start_mib": rss.samples[0] if rss.samples else 0.0,
        "rss_max_mib": max(rss.samples, default=0.0),
        "rss_growth_mib": rss.growth_after_warmup(),
    }
    print(f"{'':24}{'1x (calibration)':>18}{f'{args.factor:g}x (soak)':>16}")
    print(f"{'requests tried':24}{peer.tried:>18}{report.tried:>16}")
    print(f"{'completed':24}{peer.completed:>18}{report.completed:>16}")
    print(f"{'shed (429+Retry-After)':24}{peer.shed:>18}{report.shed:>16}")
    print(f"{'failures':24}{len(peer.failures):>18}{len(report.failures):>16}")
    print(f"{'p50 latency (s)':24}{peer.quantile(0.5):>18.3f}{report.quantile(0.5):>16.3f}")
    print(f"{'p99 latency (s)':24}{peer.quantile(0.99):>18.3f}{report.quantile(0.99):>16.3f}")
    print(f"status counts: {dict(report.statuses)}")
    print(f"RSS: start {figures['rss_start_mib']:.1f} MiB, max {figures['rss_max_mib']:.1f} MiB, "
          f"growth after warm-up {figures['rss_growth_mib']:.1f} MiB "
          f"(median {statistics.median(rss.samples or [0.0]):.1f} MiB)")
    for line in report.failures[:10]:
        print("failure:", line)
    return figures


if __name__ == "__main__":
    main()
