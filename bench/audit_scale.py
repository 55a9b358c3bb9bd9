"""The audit trail and usage rollups at scale, on PostgreSQL.

1. bulk load: `--records` hash-chained audit records (valid chain, Ed25519 checkpoints every
   64, spread over `--days` days, `--tenants` tenants) with COPY, plus their usage rollups;
2. a filtered audit page (`AuditStore.query`, what GET /admin/audit runs: by tenant, tenant +
   `since`, or request id) and a usage query (`UsageStore.query`, what GET .../usage runs):
   p50/p99 latency, goal p99 <= 50 ms;
3. `verify_chain --since <1 day ago>` with the public key: records/s, goal >= 50k/s;
4. request throughput in process on the tiny model (CPU): engine + group-commit metered audit
   write into this 5M-record database vs the engine alone (the peer), goal within 10%.

    .venv/bin/python -m bench.audit_scale --records 5000000      # the full run
    .venv/bin/python -m bench.audit_scale                        # smoke (20k records)

PostgreSQL from --pg-url / PREFIXGATE_TEST_PG_URL (default postgres@127.0.0.1:5432/test); the
run uses a private schema, dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from tqdm import tqdm

from tenants.audit import GENESIS_HASH, AuditStore, fields_hash
from tenants.audit_signing import AuditSigner
from tenants.audit_verify import verify_chain
from tenants.database import Database
from tenants.migrate import upgrade
from tenants.models import AuditRecord, UsageRollup
from tenants.schemas import AuditEntry
from tenants.usage import UsageStore
from tenants.views import audit_view

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
EVERY = 64
GOAL_P99_MS = 50.0
GOAL_VERIFY_RPS = 50_000.0
GOAL_THROUGHPUT_LOSS = 0.10
COLUMNS = ("seq", "created_at", "request_id", "tenant_id", "key_id", "namespace", "variant_name",
           "variant_version", "prompt_tokens", "cached_tokens", "completion_tokens",
           "reused_blocks", "reused_namespaces", "outcome", "error_code", "trace_id",
           "prev_hash", "hash")


def _q(xs: list[float], p: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _schema_url(base: str, schema: str) -> str:
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _dsn(base: str) -> str:
    return make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)


def _null(v: object) -> str:
    return "\\N" if v is None else str(v)


def bulk_load(url: str, schema: str, n: int, days: int, tenants: int,
              signer: AuditSigner) -> tuple[float, datetime]:
    """COPY `n` chained records (+ checkpoints, rollups, head); returns (seconds, end time)."""
    started = time.perf_counter()
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    step_us = days * 86_400_000_000 // n
    names = [f"ten_{i:016x}" for i in range(tenants)]
    namespaces = [hashlib.sha256(t.encode()).hexdigest() for t in names]
    rollups: dict[tuple[str, date, str, str], list[int]] = {}
    db = Database.from_url(url)
    indexes = [ix for ix in AuditRecord.__table__.indexes]
    with db.engine.begin() as conn:  # bulk load: build secondary indexes afterwards
        for ix in indexes:
            ix.drop(conn)
    db.dispose()
    prev = GENESIS_HASH
    checkpoints: list[str] = []
    with psycopg.connect(_dsn(url), options=f"-csearch_path={schema}") as pg:
        with pg.cursor() as cur, cur.copy(
            f"COPY audit_records ({', '.join(COLUMNS)}) FROM STDIN"
        ) as copy:
            lines: list[str] = []
            for seq in tqdm(range(1, n + 1), desc="generate + COPY", unit="rec",
                            mininterval=2.0, unit_scale=True):
                t = seq % tenants
                created = start + timedelta(microseconds=seq * step_us)
                variant = "helper" if seq % 3 == 0 else None
                outcome = "rejected" if seq % 50 == 0 else "ok"
                reused = (namespaces[t],) if seq % 2 == 0 else ()
                tenant_id, key_id, namespace = names[t], f"key_{t:016x}", namespaces[t]
                prompt = 50 + seq % 900
                cached = (seq % 7) * 16 if reused else 0
                completion = 0 if outcome != "ok" else 1 + seq % 200
                error = "rate_limit_exceeded" if outcome != "ok" else None
                fields = {  # every AuditEntry field (built directly: asdict is slow)
                    "request_id": f"req-{seq:012d}", "tenant_id": tenant_id, "key_id": key_id,
                    "namespace": namespace, "variant_name": variant,
                    "variant_version": 1 if variant else None, "prompt_tokens": prompt,
                    "cached_tokens": cached, "completion_tokens": completion,
                    "reused_blocks": (seq % 7) if reused else 0, "reused_namespaces": reused,
                    "reused_block_ids": (), "outcome": outcome, "error_code": error,
                    "trace_id": None,
                }
                digest = fields_hash(prev, seq, created, fields)
                ns_json = f'["{reused[0]}"]' if reused else "[]"
                lines.append("\t".join((
                    str(seq), created.isoformat(), fields["request_id"], tenant_id, key_id,
                    namespace, _null(variant), _null(fields["variant_version"]), str(prompt),
                    str(cached), str(completion), str(fields["reused_blocks"]), ns_json,
                    outcome, _null(error), "\\N", prev, digest)))
                if seq % EVERY == 0 or seq == n:
                    cp = signer.sign(seq, digest, created)
                    checkpoints.append("\t".join((str(seq), digest, cp.signed_at.isoformat(),
                                                  cp.key_id, cp.signature)))
                roll = rollups.setdefault(
                    (tenant_id, created.date(), key_id, "helper@1" if variant else ""), [0] * 6)
                roll[0] += 1
                roll[1] += outcome == "rejected"
                roll[2] += prompt
                roll[3] += cached
                roll[4] += 16 * (seq % 3)
                roll[5] += completion
                prev = digest
                if len(lines) >= 20_000:
                    copy.write("\n".join(lines) + "\n")
                    lines.clear()
            if lines:
                copy.write("\n".join(lines) + "\n")
        with pg.cursor() as cur, cur.copy(
            "COPY audit_checkpoints (seq, hash, signed_at, key_id, signature) FROM STDIN"
        ) as copy:
            copy.write("\n".join(checkpoints) + "\n")
        with pg.cursor() as cur, cur.copy(
            "COPY usage_rollups (tenant_id, day, key_id, variant, requests, rejections, "
            "prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens) FROM STDIN"
        ) as copy:
            for (tid, day, key, variant), c in rollups.items():
                copy.write("\t".join((tid, day.isoformat(), key, variant, *map(str, c))) + "\n")
        pg.execute("UPDATE audit_chain_head SET seq = %s, hash = %s WHERE id = 1", (n, prev))
        pg.commit()
    db = Database.from_url(url)
    with db.engine.begin() as conn:
        for ix in tqdm(indexes, desc="build indexes"):
            ix.create(conn)
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE audit_records"))
        conn.execute(text(f"VACUUM ANALYZE {UsageRollup.__tablename__}"))
    db.dispose()
    return time.perf_counter() - started, end


def query_latency(url: str, tenants: int, end: datetime, n: int) -> tuple[list[float],
                                                                          list[float]]:
    db = Database.from_url(url)
    audit, usage = AuditStore(db), UsageStore(db)
    rng = random.Random(7)
    names = [f"ten_{i:016x}" for i in range(tenants)]
    audit_ms: list[float] = []
    usage_ms: list[float] = []
    by_kind: list[list[float]] = [[], [], []]
    for i in tqdm(range(n), desc="queries"):
        tid = rng.choice(names)
        kind = i % 3
        t0 = time.perf_counter()
        if kind == 0:
            rows = audit.query(tenant_id=tid, limit=100)
        elif kind == 1:
            since = end - timedelta(hours=rng.randint(1, 48))
            rows = audit.query(tenant_id=tid, since=since, limit=100)
        else:
            rows = audit.query(request_id=f"req-{rng.randint(1, 10**6):012d}", limit=100)
        audit_ms.append((time.perf_counter() - t0) * 1000)
        by_kind[kind].append(audit_ms[-1])
        assert rows or kind != 0
        t0 = time.perf_counter()
        usage.query(tid, (end - timedelta(days=30)).date(), end.date(),
                    ("day", "key", "variant")[i % 3])  # type: ignore[arg-type]
        usage_ms.append((time.perf_counter() - t0) * 1000)
    bounded = _seq_bounded_since(db, names, end, rng, n // 3)
    db.dispose()
    for label, xs in zip(("tenant", "tenant+since", "request id"), by_kind, strict=True):
        print(f"  audit page by {label:12s} p50 {statistics.median(xs):6.2f} ms  "
              f"p99 {_q(xs, 99):6.2f} ms")
    print(f"  (proposed) tenant+since bounded by seq: p50 {statistics.median(bounded):6.2f} ms"
          f"  p99 {_q(bounded, 99):6.2f} ms")
    return audit_ms, usage_ms


def _seq_bounded_since(db: Database, names: list[str], end: datetime, rng: random.Random,
                       n: int) -> list[float]:
    """The tenant+since page with `since` turned into a seq lower bound first (through the
    created_at index), so the planner can walk ix(tenant_id, seq) from there: the rewrite
    proposed for AuditStore.query. Same rows when replica clocks agree within SKEW."""
    skew = timedelta(minutes=5)
    out: list[float] = []
    with db.session() as session:
        for _ in range(n):
            tid, since = rng.choice(names), end - timedelta(hours=rng.randint(1, 48))
            first = (select(AuditRecord.seq).where(AuditRecord.created_at >= since - skew)
                     .order_by(AuditRecord.created_at).limit(1).scalar_subquery())
            query = (select(AuditRecord).where(AuditRecord.tenant_id == tid,
                                               AuditRecord.created_at >= since,
                                               AuditRecord.seq >= first)
                     .order_by(AuditRecord.seq).limit(100))
            t0 = time.perf_counter()
            rows = [audit_view(r) for r in session.scalars(query)]
            out.append((time.perf_counter() - t0) * 1000)
            assert rows
    return out


def verify_last_day(url: str, end: datetime, signer: AuditSigner) -> tuple[int, float, bool]:
    db = Database.from_url(url)
    report = verify_chain(db, since=end - timedelta(days=1), public_key=signer.public_key,
                          checkpoint_every=EVERY)
    db.dispose()
    return report.records, report.elapsed_s, report.ok


async def throughput(url: str, requests: int, concurrency: int, signer: AuditSigner) -> dict[
        str, float]:
    """Requests/s: engine alone vs engine + metered audit write (alternating, best of 2)."""
    from engine.async_engine import AsyncEngine
    from engine.engine_config import EngineConfig
    from engine.messages import EngineRequest, PromptSegment, SamplingParams
    from engine.tiny_model import write_tiny_model
    from tenants.usage_writer import MeteredAuditWriter

    model_dir = Path(tempfile.mkdtemp()) / "tiny"
    write_tiny_model(model_dir)
    engine = AsyncEngine.load(EngineConfig(model_dir=str(model_dir), device="cpu",
                                           kv_cache_gib=0.05, progress=False))
    await engine.start()
    db = Database.from_url(url)
    writer = MeteredAuditWriter(db, signer=signer)
    ns = hashlib.sha256(b"bench").digest()

    async def run(audit: bool, label: str) -> float:
        todo = list(range(requests))
        bar = tqdm(total=requests, desc=label)

        async def worker() -> None:
            while todo:
                i = todo.pop()
                rid = f"tp-{label}-{i}-{secrets.token_hex(4)}"
                stream = await engine.submit(EngineRequest(
                    rid, (PromptSegment(ns, tuple(range(1, 40))),),
                    SamplingParams(max_tokens=2, temperature=0.0), tenant="ten_bench"))
                result = None
                async for ev in stream:
                    if ev.finished:
                        result = ev.result
                assert result is not None
                if audit:
                    await writer.write(AuditEntry(
                        request_id=rid, tenant_id="ten_bench", key_id="key_bench",
                        namespace=ns.hex(), prompt_tokens=result.prompt_tokens,
                        cached_tokens=result.cached_tokens,
                        completion_tokens=result.completion_tokens))
                bar.update()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        bar.close()
        return requests / (time.perf_counter() - t0)

    await run(False, "warm-up")
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(2):
        rates["off"].append(await run(False, "audit off"))
        rates["on"].append(await run(True, "audit on"))
    writer.close()
    await engine.stop()
    db.dispose()
    return {"off": max(rates["off"]), "on": max(rates["on"]), "batches": writer.batches}


def _store_key(url: str, signer: AuditSigner, args: argparse.Namespace) -> None:
    """With --keep: the key and the load's parameters, so --reuse can verify and report."""
    if not args.keep:
        return
    raw = signer.private_key.private_bytes_raw().hex()
    db = Database.from_url(url)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_meta (key_hex text, records bigint, days int, "
                          "tenants int)"))
        conn.execute(text("INSERT INTO bench_meta VALUES (:k, :r, :d, :t)"),
                     {"k": raw, "r": args.records, "d": args.days, "t": args.tenants})
    db.dispose()


def _reused(url: str, args: argparse.Namespace) -> tuple[AuditSigner, datetime, float]:
    db = Database.from_url(url)
    with db.engine.connect() as conn:
        raw, args.records, args.days, args.tenants = conn.execute(
            text("SELECT key_hex, records, days, tenants FROM bench_meta")).one()
        end = conn.execute(text("SELECT max(created_at) FROM audit_records")).scalar()
    db.dispose()
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw))
    return AuditSigner(key, every=EVERY), end, 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64,
                    help="requests in flight (the engine's max_num_seqs: capacity)")
    ap.add_argument("--pg-url", default=os.environ.get("PREFIXGATE_TEST_PG_URL", DEFAULT_PG))
    ap.add_argument("--keep", action="store_true",
                    help="keep the schema (and the signing key in it) for --reuse")
    ap.add_argument("--reuse", metavar="SCHEMA",
                    help="measure a schema kept by an earlier --keep run (no bulk load)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    schema = args.reuse or "auditscale_" + secrets.token_hex(4)
    url = _schema_url(args.pg_url, schema)
    if args.reuse:
        signer, end, load_s = _reused(url, args)
    else:
        with psycopg.connect(_dsn(args.pg_url), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        signer = AuditSigner(Ed25519PrivateKey.generate(), every=EVERY)
    try:
        if not args.reuse:
            upgrade(url)
            load_s, end = bulk_load(url, schema, args.records, args.days, args.tenants, signer)
            _store_key(url, signer, args)
        audit_ms, usage_ms = query_latency(url, args.tenants, end, args.queries)
        verified, verify_s, ok = verify_last_day(url, end, signer)
        tp = asyncio.run(throughput(url, args.requests, args.concurrency, signer))
    finally:
        if not args.keep and not args.reuse:
            with psycopg.connect(_dsn(args.pg_url), autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    rate = verified / verify_s if verify_s else 0.0
    loss = 1 - tp["on"] / tp["off"]
    print(f"\nrecords {args.records:,} over {args.days} days, {args.tenants} tenants "
          f"(PostgreSQL, schema {schema})")
    if load_s:
        print(f"bulk load (generate + hash + sign + COPY + indexes): {load_s:.1f} s "
              f"({args.records / load_s:,.0f} records/s)")
    for name, xs in (("audit page", audit_ms), ("usage query", usage_ms)):
        p99 = _q(xs, 99)
        print(f"{name:12s} p50 {statistics.median(xs):6.2f} ms  p99 {p99:6.2f} ms  "
              f"(goal p99 <= {GOAL_P99_MS:.0f} ms: {'met' if p99 <= GOAL_P99_MS else 'MISSED'})")
    print(f"verify last day: {verified:,} records in {verify_s:.2f} s = {rate:,.0f} records/s, "
          f"ok={ok} (goal >= {GOAL_VERIFY_RPS:,.0f}/s: "
          f"{'met' if rate >= GOAL_VERIFY_RPS else 'MISSED'})")
    print(f"throughput: engine alone (peer) {tp['off']:.1f} req/s, engine + audit write "
          f"{tp['on']:.1f} req/s ({int(tp['batches'])} group commits): "
          f"{loss * 100:+.1f}% loss (goal within {GOAL_THROUGHPUT_LOSS * 100:.0f}%: "
          f"{'met' if loss <= GOAL_THROUGHPUT_LOSS else 'MISSED'})")


if __name__ == "__main__":
    main()
