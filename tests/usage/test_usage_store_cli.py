"""Rollup arithmetic and grouping, the recomputation from audit records, and the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

from click.testing import CliRunner

from gateway.cli.main import main
from tenants.audit import AuditStore
from tenants.database import Database
from tenants.migrate import upgrade
from tenants.schemas import AuditEntry
from tenants.usage import COUNTERS, UsageDelta, UsageStore, delta_of, recompute_from_audit

D1, D2 = date(2026, 11, 24), date(2026, 11, 25)


def _db(tmp_path: Path) -> tuple[str, Database]:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    return url, Database.from_url(url)


def _seed(store: UsageStore) -> None:
    store.add([
        UsageDelta("ten_a", D1, "key_1", "", 1, 0, 10, 0, 16, 5),
        UsageDelta("ten_a", D1, "key_1", "", 1, 1, 7, 0, 0, 0),
        UsageDelta("ten_a", D2, "key_2", "helper@1", 1, 0, 30, 16, 0, 2),
        UsageDelta("ten_b", D2, "key_9", "", 1, 0, 99, 0, 0, 9),
    ])
    store.add([UsageDelta("ten_a", D2, "key_2", "helper@1", 2, 0, 60, 32, 16, 4)])


def test_rollups_add_up_and_group(tmp_path: Path) -> None:
    _, db = _db(tmp_path)
    store = UsageStore(db)
    _seed(store)
    by_day = store.query("ten_a", D1, D2, "day")
    assert [(r.period, r.requests, r.rejections, r.prompt_tokens, r.cached_tokens,
             r.cache_write_tokens, r.completion_tokens) for r in by_day] == [
        ("2026-11-24", 2, 1, 17, 0, 16, 5), ("2026-11-25", 3, 0, 90, 48, 16, 6)]
    assert [r.period for r in store.query("ten_a", D1, D2, "key")] == ["key_1", "key_2"]
    assert [r.period for r in store.query("ten_a", D1, D2, "variant")] == ["(none)",
                                                                           "helper@1"]
    assert [r.period for r in store.query("ten_a", D2, D2, "day")] == ["2026-11-25"]
    db.dispose()


def test_recomputation_from_audit_records_matches_deltas(tmp_path: Path) -> None:
    _, db = _db(tmp_path)
    audit, usage = AuditStore(db), UsageStore(db)
    for i, outcome in enumerate(["ok", "ok", "rejected", "ok"]):
        view = audit.append(AuditEntry(
            request_id=f"r{i}", tenant_id="ten_a", key_id=f"key_{i % 2}", namespace=None,
            variant_name="v" if i % 2 else None, variant_version=1 if i % 2 else None,
            prompt_tokens=10 * i, cached_tokens=i, completion_tokens=3, outcome=outcome))
        usage.add([delta_of(view, cache_write_tokens=16)])
    day = view.created_at.date()
    for group_by in ("day", "key", "variant"):
        rolled = usage.query("ten_a", day, day, group_by)
        audited = recompute_from_audit(db, "ten_a", day, day, group_by)
        assert [r.period for r in rolled] == [r.period for r in audited]
        for a, b in zip(rolled, audited, strict=True):
            for name in COUNTERS:
                if name != "cache_write_tokens":
                    assert getattr(a, name) == getattr(b, name)
    (total,) = usage.query("ten_a", day, day, "day")
    assert (total.requests, total.rejections, total.cache_write_tokens) == (4, 1, 64)
    db.dispose()


def test_cli_json_and_csv(tmp_path: Path) -> None:
    url, db = _db(tmp_path)
    _seed(UsageStore(db))
    db.dispose()
    runner = CliRunner()
    args = ["usage", "--tenant", "ten_a", "--from", "2026-11-24", "--to", "2026-11-25",
            "--db", url]
    out = runner.invoke(main, [*args, "--group-by", "key"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)["data"]
    assert [(r["period"], r["requests"], r["prompt_tokens"]) for r in data] == [
        ("key_1", 2, 17), ("key_2", 3, 90)]
    out = runner.invoke(main, [*args, "--format", "csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert [r["period"] for r in rows] == ["2026-11-24", "2026-11-25"]
    assert rows[1]["cache_write_tokens"] == "16" and rows[0]["rejections"] == "1"
    bad = runner.invoke(main, [*args[:4], "2026-11-26", "--to", "2026-11-25", "--db", url,
                               "--format", "csv"])
    assert bad.exit_code != 0 and "must not be after" in bad.output
