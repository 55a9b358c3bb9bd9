"""Latency of one durable metered audit write, one record at a time (the sequential gateway case).

Times, against a fresh migrated SQLite file (or `--db`): the writer's transaction run in this
thread (append_entries + add_usage + commit), `await MeteredAuditWriter.write` (thread hop
included), and, as the peer, `AuditStore.append` (one transaction, no rollups).
`--profile` prints the in-thread transaction's top functions (cProfile, by own time).

`python -m bench.audit_write_latency [--writes N] [--db URL] [--profile]`
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tqdm import tqdm

from bench.audit_verify_bench import _entry
from tenants.audit import AuditStore, append_entries
from tenants.audit_signing import AuditSigner
from tenants.database import Database
from tenants.migrate import upgrade
from tenants.usage import add_usage, delta_of
from tenants.usage_writer import MeteredAuditWriter

WARMUP = 50


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def _loop(name: str, n: int, first: int, call: Callable[[int], None],
          profile: cProfile.Profile | None = None) -> list[float]:
    samples: list[float] = []
    for i in tqdm(range(first, first + n), desc=name, leave=False):
        t0 = time.perf_counter()
        if profile is not None:
            profile.enable()
        call(i)
        if profile is not None:
            profile.disable()
        samples.append(time.perf_counter() - t0)
    return samples


async def _writer_loop(writer: MeteredAuditWriter, n: int, first: int) -> list[float]:
    samples: list[float] = []
    for i in tqdm(range(first, first + n), desc="MeteredAuditWriter.write", leave=False):
        t0 = time.perf_counter()
        writer.note_cache_writes(f"req-{i}", 16)
        await writer.write(_entry(i))
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument("--db", default=None, help="migrated or empty database URL")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    n = args.writes
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'audit_write.db'}"
        upgrade(url)
        db = Database.from_url(url)
        signer = AuditSigner(Ed25519PrivateKey.generate(), every=64)

        def transaction(i: int) -> None:
            with db.session() as session:
                views = append_entries(session, [_entry(i)], signer)
                add_usage(session, [delta_of(v, 16) for v in views])

        store = AuditStore(db, signer)
        _loop("warm-up", WARMUP, 0, transaction)
        profile = cProfile.Profile() if args.profile else None
        in_thread = _loop("transaction in-thread", n, WARMUP, transaction, profile)
        peer = _loop("AuditStore.append", n, WARMUP + n, lambda i: store.append(_entry(i)))
        writer = MeteredAuditWriter(db, signer=signer)
        written = asyncio.run(_writer_loop(writer, n, WARMUP + 2 * n))
        writer.close()
        db.dispose()
    print(f"backend {db.dialect}, {n} sequential writes each, p50")
    print(f"metered transaction in-thread:      {_p50_ms(in_thread):.3f} ms")
    print(f"await MeteredAuditWriter.write:     {_p50_ms(written):.3f} ms")
    print(f"peer: AuditStore.append (no usage): {_p50_ms(peer):.3f} ms")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
