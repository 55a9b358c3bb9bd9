"""AuditStore: hash-chained appends, linear under concurrency, and queries."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from tenants import AuditStore
from tenants.audit import GENESIS_HASH, entry_of, record_hash
from tenants.database import Database
from tenants.errors import Invalid
from tenants.schemas import AuditEntry, AuditRecordView

NS = "ab" * 32


def _entry(request_id: str, tenant_id: str = "ten_a", **fields: object) -> AuditEntry:
    return AuditEntry(request_id=request_id, tenant_id=tenant_id, key_id="key_1",
                      namespace=NS, **fields)  # type: ignore[arg-type]


def _assert_chain(records: list[AuditRecordView]) -> None:
    prev = GENESIS_HASH
    for expected_seq, record in enumerate(records, start=1):
        assert record.seq == expected_seq and record.prev_hash == prev
        assert record.hash == record_hash(prev, record.seq, record.created_at, entry_of(record))
        prev = record.hash


def test_append_links_records(db: Database) -> None:
    store = AuditStore(db)
    first = store.append(_entry("r1", variant_name="sys", variant_version=2, prompt_tokens=40,
                                cached_tokens=32, completion_tokens=5, reused_blocks=2,
                                reused_namespaces=(NS,)))
    second = store.append(_entry("r2", outcome="rejected", error_code="invalid_api_key"))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    records = store.query(limit=10)
    assert records == [first, second]
    assert records[0].reused_namespaces == (NS,) and records[0].cached_tokens == 32
    _assert_chain(records)


def test_a_changed_field_breaks_the_hash(db: Database) -> None:
    record = AuditStore(db).append(_entry("r1", cached_tokens=16))
    forged = replace(entry_of(record), cached_tokens=0)
    assert record_hash(record.prev_hash, record.seq, record.created_at, forged) != record.hash
    assert record_hash(GENESIS_HASH[:-1] + "1", record.seq, record.created_at,
                       entry_of(record)) != record.hash


def test_query_filters(db: Database) -> None:
    store = AuditStore(db)
    a1 = store.append(_entry("r1", tenant_id="ten_a"))
    store.append(_entry("r2", tenant_id="ten_b"))
    a3 = store.append(_entry("r3", tenant_id="ten_a"))
    assert store.query(tenant_id="ten_a") == [a1, a3]
    assert [r.seq for r in store.query(request_id="r2")] == [2]
    assert store.query(since=a3.created_at) == [a3]
    assert [r.seq for r in store.query(since=a1.created_at - timedelta(seconds=1), limit=2)] == [
        1, 2]
    with pytest.raises(Invalid):
        store.query(limit=0)


def test_concurrent_appends_stay_linear(db: Database) -> None:
    threads, per_thread = 6, 5
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        store = AuditStore(db)  # one store per thread: the database must serialize
        start.wait()
        try:
            for i in range(per_thread):
                store.append(_entry(f"t{n}-{i}"))
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors
    records = AuditStore(db).query(limit=1000)
    assert len(records) == threads * per_thread
    _assert_chain(records)


@pytest.mark.parametrize("bad", [
    {"namespace": "not hex"},
    {"prompt_tokens": -1},
    {"reused_namespaces": ["ab"]},
    {"outcome": "Not Ok"},
    {"request_id": ""},
])
def test_bad_entries_are_invalid(db: Database, bad: dict[str, object]) -> None:
    fields = {"request_id": "r1", "tenant_id": "ten_a", "key_id": None, "namespace": NS, **bad}
    with pytest.raises(Invalid):
        AuditStore(db).append(AuditEntry(**fields))  # type: ignore[arg-type]
