"""Gateway overhead and throughput: `prefixgate serve` on loopback vs the engine alone.

What the gateway adds to a request — auth, canonical tokenization, namespace derivation,
variant lookup, the audit write, JSON serialization, HTTP — separated from model time:
every response carries `server-timing: total;dur=…, engine;dur=…` and the overhead of a
request is total − engine (the engine's own `total_s`). Phases:

1. sequential: one request at a time -> overhead p50/p99, engine time p50, client latency;
2. load: an httpx.AsyncClient loop with `--concurrency` requests in flight -> requests/s and
   overhead under load;
3. in process, on a real Runtime (registry + engine, no HTTP): each step of the gateway's
   path timed alone (auth, decode, canonicalization + namespaces, engine, JSON, audit
   write through the group-commit AuditWriter, compared with the per-record
   AuditStore.append it replaced, one at a time and `--concurrency` records at once), and the
   peer: the same prompts submitted
   straight to the AsyncEngine (no HTTP, auth or audit) -> requests/s of the engine alone,
   the ceiling the gateway is compared to.

The server runs in a subprocess (`prefixgate serve` on the tiny model, CPU, SQLite), so the
load generator and the server do not share a GIL; on a 2-core box they still share the cores.

    .venv/bin/python -m bench.gateway_bench [--requests 300] [--concurrency 16] [--max-tokens 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from tqdm import tqdm

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from tenants.schemas import AuditEntry

ADMIN = "pga_bench-admin-token"
SYSTEM = "You are the support assistant of ACME. Answer in one short sentence. " * 4
GOAL_OVERHEAD_P50_MS = 2.0
GOAL_RPS = 500.0


@dataclass(slots=True)
class Sample:
    total_ms: float
    engine_ms: float
    client_ms: float

    @property
    def overhead_ms(self) -> float:
        return self.total_ms - self.engine_ms


def _timing(header: str) -> tuple[float, float]:
    parts = dict(p.strip().split(";dur=") for p in header.split(","))
    return float(parts["total"]), float(parts.get("engine", 0.0))


def _q(xs: list[float], p: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path, model: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFIXGATE_LOG_LEVEL": "error"}
    cmd = [sys.executable, "-c", "from gateway.cli.main import main; main()", "serve",
           "--port", str(port), "--data-dir", str(data), "--model", str(model),
           "--device", "cpu", "--kv-gib", "0.1", "--admin-token", ADMIN]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("prefixgate serve exited")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("prefixgate serve did not become ready")


def set_up_tenant(base: str) -> str:
    admin = httpx.Client(base_url=base, headers={"authorization": f"Bearer {ADMIN}"})
    tid = admin.post("/admin/tenants", json={"name": "bench"}).json()["id"]
    key = admin.post(f"/admin/tenants/{tid}/keys", json={}).json()["key"]
    admin.post(f"/admin/tenants/{tid}/prompts", json={"name": "support", "content": SYSTEM})
    return str(key)


def body(model: str, i: int, max_tokens: int) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"Question number {i}?"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "prompt_variant": {"name": "support"},
    }


def sequential(base: str, key: str, model: str, n: int, max_tokens: int) -> list[Sample]:
    out = []
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}) as client:
        for i in tqdm(range(n), desc="sequential", leave=False):
            t0 = time.perf_counter()
            r = client.post("/v1/chat/completions", json=body(model, i, max_tokens))
            client_ms = (time.perf_counter() - t0) * 1e3
            assert r.status_code == 200, r.text
            out.append(Sample(*_timing(r.headers["server-timing"]), client_ms))
    return out


async def load(
    base: str, key: str, model: str, n: int, concurrency: int, max_tokens: int
) -> tuple[float, list[Sample]]:
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    bar = tqdm(total=n, desc=f"load c={concurrency}", leave=False)
    async with httpx.AsyncClient(
        base_url=base, headers={"authorization": f"Bearer {key}"}, limits=limits, timeout=60
    ) as client:
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                r = await client.post("/v1/chat/completions", json=body(model, i, max_tokens))
                client_ms = (time.perf_counter() - t0) * 1e3
                assert r.status_code == 200, r.text
                samples.append(Sample(*_timing(r.headers["server-timing"]), client_ms))
                bar.update()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    bar.close()
    return n / elapsed, samples


async def in_process(
    model_dir: Path, data_dir: Path, n: int, concurrency: int, max_tokens: int
) -> tuple[float, dict[str, list[float]]]:
    """Peer and breakdown, in this process on a real Runtime (registry + engine), no HTTP.

    Peer: the same prompts straight into the AsyncEngine -> requests/s of the engine alone.
    Breakdown: each step of the gateway's request path timed alone, sequentially.
    """
    import anyio.to_thread
    import msgspec

    from engine.async_engine import AsyncEngine
    from engine.messages import EngineRequest, PromptSegment, SamplingParams
    from gateway.app import engine_config
    from gateway.runtime import Runtime
    from gateway.schemas.openai_chat import ChatCompletionRequest
    from gateway.services.render import ChatRenderer, usage_of
    from gateway.settings import Settings
    from tenants.migrate import upgrade

    settings = Settings(data_dir=data_dir, model_dir=model_dir, device="cpu", kv_gib=0.1,
                        admin_token=ADMIN)
    upgrade(settings.resolved_db_url)
    engine = AsyncEngine.load(engine_config(settings, progress=False))
    rt = Runtime.build(settings, engine)
    tenant = rt.tenants.create("bench-in-process")
    secret = rt.keys.issue(tenant.id).key
    rt.prompts.register(tenant.id, "support", SYSTEM)
    await engine.start()
    model = engine.model_id

    steps: dict[str, list[float]] = {k: [] for k in (
        "auth", "decode", "canonicalize+namespaces", "engine (submit->result)",
        "engine own total_s", "render JSON", "audit write (group commit)",
        "peer: AuditStore.append", f"{concurrency} at once: append each",
        f"{concurrency} at once: group commit")}
    for i in tqdm(range(n // 2), desc="breakdown", leave=False):
        raw = msgspec.json.encode(body(model, i, max_tokens))
        t0 = time.perf_counter()
        principal = rt.authenticator.authenticate(secret)
        t1 = time.perf_counter()
        req = msgspec.json.decode(raw, type=ChatCompletionRequest)
        t2 = time.perf_counter()
        job = await rt.jobs.chat(principal, req, f"bd-{i}")
        t3 = time.perf_counter()
        async for ev in await engine.submit(job.engine_requests()[0]):
            rt.inference.take(job, 0, ev)
        t4 = time.perf_counter()
        ChatRenderer().full(job, job.outputs, usage_of(job, job.outputs))
        t5 = time.perf_counter()
        entry = rt.inference.audit_entry(job, "ok", None)
        write, append = await _audit_pair(rt, entry, writer_first=i % 2 == 0)
        result = job.outputs[0].result
        assert result is not None
        for name, secs in zip(list(steps)[:8], (t1 - t0, t2 - t1, t3 - t2, t4 - t3,
                                                result.total_s, t5 - t4, write, append),
                              strict=True):
            steps[name].append(secs * 1e3)
    for i in tqdm(range(50), desc=f"audit: {concurrency} at once", leave=False):
        burst = [replace(entry, request_id=f"burst-{i}-{k}") for k in range(concurrency)]
        t0 = time.perf_counter()
        await asyncio.gather(*(anyio.to_thread.run_sync(rt.audit.append, e) for e in burst))
        t1 = time.perf_counter()
        await asyncio.gather(*(rt.audit_writer.write(e) for e in burst))
        t2 = time.perf_counter()
        steps[f"{concurrency} at once: append each"].append((t1 - t0) * 1e3)
        steps[f"{concurrency} at once: group commit"].append((t2 - t1) * 1e3)

    canon = rt.canonicalizer
    variant = await rt.variants.resolve(tenant.id, "support", None)
    counter = iter(range(n))
    bar = tqdm(total=n, desc=f"engine alone c={concurrency}", leave=False)

    async def worker() -> None:
        from gateway.canonical import Message

        for i in counter:
            chat = canon.chat([Message("user", f"Question number {i}?")], variant.text,
                              variant.tokens)
            request = EngineRequest(
                f"peer-{i}",
                (PromptSegment(b"peer", chat.static), PromptSegment(b"peer", chat.private)),
                SamplingParams(max_tokens=max_tokens, temperature=0.0),
            )
            async for _ in await engine.submit(request):
                pass
            bar.update()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    bar.close()
    await engine.stop()
    await anyio.to_thread.run_sync(rt.flush_audit)
    rt.db.dispose()
    return n / elapsed, steps


async def _audit_pair(rt: Runtime, entry: AuditEntry, writer_first: bool) -> tuple[float, float]:
    """Seconds of one group-commit write and one AuditStore.append (the path it replaced), in
    alternating order so neither always runs right after the engine step."""
    import anyio.to_thread

    async def write() -> float:
        t0 = time.perf_counter()
        await rt.audit_writer.write(entry)
        return time.perf_counter() - t0

    async def append() -> float:
        t0 = time.perf_counter()
        copy = replace(entry, request_id="p" + entry.request_id)
        await anyio.to_thread.run_sync(rt.audit.append, copy)
        return time.perf_counter() - t0

    if writer_first:
        first = await write()
        return first, await append()
    second = await append()
    return await write(), second


def report(name: str, samples: list[Sample]) -> None:
    over = [s.overhead_ms for s in samples]
    eng = [s.engine_ms for s in samples]
    cli = [s.client_ms for s in samples]
    print(
        f"{name:<11} overhead p50 {_q(over, 50):6.3f} ms  p99 {_q(over, 99):6.3f} ms | "
        f"engine p50 {_q(eng, 50):6.3f} ms | client latency p50 {_q(cli, 50):6.3f} ms "
        f"p99 {_q(cli, 99):6.3f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=1)
    ap.add_argument("--model", type=Path, help="checkpoint dir (default: a fresh tiny model)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        model_dir = args.model or Path(tmp) / "model"
        if args.model is None:
            from engine.tiny_model import write_tiny_model

            write_tiny_model(model_dir)
        port = _free_port()
        proc = start_server(Path(tmp) / "data", model_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            key = set_up_tenant(base)
            model = httpx.get(base + "/v1/models",
                              headers={"authorization": f"Bearer {key}"}).json()["data"][0]["id"]
            sequential(base, key, model, 20, args.max_tokens)  # warm-up
            seq = sequential(base, key, model, args.requests, args.max_tokens)
            rps, loaded = asyncio.run(
                load(base, key, model, args.requests * 2, args.concurrency, args.max_tokens)
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        peer_rps, steps = asyncio.run(in_process(
            model_dir, Path(tmp) / "in-process", args.requests * 2, args.concurrency,
            args.max_tokens,
        ))

    print(f"gateway bench: tiny model on CPU, non-streaming chat with a registered variant, "
          f"max_tokens={args.max_tokens}, {os.cpu_count()} cores")
    report("sequential", seq)
    report(f"load c={args.concurrency}", loaded)
    print("gateway path, step by step (in process, sequential, no HTTP): p50 / p99 ms")
    for name, values in steps.items():
        print(f"  {name:<26} {_q(values, 50):7.3f} / {_q(values, 99):7.3f}")
    print(f"requests/s  gateway {rps:8.1f} | peer: engine alone (no HTTP/auth/audit) "
          f"{peer_rps:8.1f} | goal {GOAL_RPS:.0f}")
    p50 = statistics.median(s.overhead_ms for s in seq)
    print(f"overhead p50 (sequential) {p50:.3f} ms vs goal {GOAL_OVERHEAD_P50_MS} ms: "
          f"{'PASS' if p50 <= GOAL_OVERHEAD_P50_MS else 'MISS'}; requests/s "
          f"{'PASS' if rps >= GOAL_RPS else 'MISS'}")


if __name__ == "__main__":
    main()
