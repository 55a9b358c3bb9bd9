"""API key verification cost per request: warm cache vs cold (SQLite file) lookup.

Issues keys in a migrated SQLite registry, then times `Authenticator.authenticate`:
- warm: every key already cached (the path every request takes within `cache_ttl_s`);
- cold: the cache is dropped before each call, so each call is one indexed primary-key
  read (key joined with tenant) from the SQLite file.
Printed beside them, in the same run: the 50 µs budget for the warm path, the floor of the
warm path (sha256 + hmac.compare_digest alone), and a password-style KDF (scrypt) that a
per-request verify would cost if keys were low-entropy passwords (they are 256-bit tokens).

    .venv/bin/python bench/key_verify_bench.py [--keys 1000] [--warm 200000] [--cold 3000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from tenants import Authenticator, KeyService, TenantService
from tenants.database import Database
from tenants.ids import split_token
from tenants.migrate import upgrade

WARM_BUDGET_US = 50.0


def _summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "mean": statistics.fmean(ordered) / 1000,
        "p50": ordered[len(ordered) // 2] / 1000,
        "p99": ordered[int(len(ordered) * 0.99)] / 1000,
    }


def _line(label: str, stats: dict[str, float]) -> str:
    return (f"{label:<44} mean {stats['mean']:9.2f} µs   p50 {stats['p50']:9.2f} µs   "
            f"p99 {stats['p99']:9.2f} µs")


def _issue_keys(db: Database, count: int, tenants: int) -> list[str]:
    tenant_ids = [TenantService(db).create(f"tenant-{i}").id for i in range(tenants)]
    keys = KeyService(db)
    return [keys.issue(tenant_ids[i % tenants]).key
            for i in tqdm(range(count), desc="issue keys", unit="key")]


def _time_warm(auth: Authenticator, tokens: list[str], calls: int) -> list[int]:
    for token in tokens:
        auth.authenticate(token)
    order = [random.choice(tokens) for _ in range(calls)]
    samples = []
    clock = time.perf_counter_ns
    for token in tqdm(order, desc="warm", unit="call", mininterval=0.5):
        start = clock()
        auth.authenticate(token)
        samples.append(clock() - start)
    return samples


def _time_cold(auth: Authenticator, tokens: list[str], calls: int) -> list[int]:
    order = [random.choice(tokens) for _ in range(calls)]
    samples = []
    clock = time.perf_counter_ns
    for token in tqdm(order, desc="cold", unit="call", mininterval=0.5):
        parts = split_token(token)
        assert parts is not None
        auth.invalidate_key(parts[0])
        start = clock()
        auth.authenticate(token)
        samples.append(clock() - start)
    return samples


def _time_floor(tokens: list[str], calls: int) -> list[int]:
    """sha256 + compare_digest of the secret: what the warm path cannot go below."""
    pairs = []
    for token in tokens:
        parts = split_token(token)
        assert parts is not None
        pairs.append((parts[1], hashlib.sha256(parts[1].encode()).hexdigest()))
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        secret, stored = random.choice(pairs)
        start = clock()
        hmac.compare_digest(hashlib.sha256(secret.encode("ascii")).hexdigest(), stored)
        samples.append(clock() - start)
    return samples


def _time_scrypt(token: str, calls: int) -> list[int]:
    samples = []
    for _ in tqdm(range(calls), desc="scrypt peer", unit="call"):
        start = time.perf_counter_ns()
        hashlib.scrypt(token.encode(), salt=b"0" * 16, n=2**14, r=8, p=1)
        samples.append(time.perf_counter_ns() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--warm", type=int, default=200_000, help="warm calls timed")
    parser.add_argument("--cold", type=int, default=3_000, help="cold calls timed")
    parser.add_argument("--scrypt", type=int, default=10, help="scrypt peer calls timed")
    args = parser.parse_args()
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        db = Database.from_url(url)
        tokens = _issue_keys(db, args.keys, args.tenants)
        warm = _summary(_time_warm(Authenticator(db, cache_ttl_s=3600.0), tokens, args.warm))
        cold = _summary(_time_cold(Authenticator(db, cache_ttl_s=3600.0), tokens, args.cold))
        floor = _summary(_time_floor(tokens, args.warm // 4))
        scrypt = _summary(_time_scrypt(tokens[0], args.scrypt))
        db.dispose()
    print(f"\nkey verification, {args.keys} keys over {args.tenants} tenants, SQLite file")
    print(_line(f"warm (cache hit), {args.warm} calls", warm))
    print(_line(f"cold (SQLite PK lookup), {args.cold} calls", cold))
    print(_line("floor: sha256 + compare_digest only", floor))
    print(_line("peer: scrypt n=2^14 per request", scrypt))
    print(f"budget: warm mean < {WARM_BUDGET_US:.0f} µs -> "
          f"{'PASS' if warm['mean'] < WARM_BUDGET_US else 'FAIL'}; "
          f"cold/warm = {cold['mean'] / warm['mean']:.0f}x")
    return 0 if warm["mean"] < WARM_BUDGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
