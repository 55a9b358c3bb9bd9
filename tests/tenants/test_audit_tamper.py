"""Tampering with single records through SQL: verify_chain finds every case and its seq."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tenants.audit_verify import verify_chain
from tenants.database import Database
from tests.tenants.audit_support import NS, Attacker, audit_db, build_chain, new_signer

__all__ = ["audit_db"]
LENGTH, EVERY = 100, 16


def _flip(hex_text: str) -> str:
    return ("1" if hex_text[0] != "1" else "2") + hex_text[1:]


MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "request_id": lambda v: v + "x",
    "tenant_id": lambda v: "ten_z",
    "key_id": lambda v: "key_2",
    "namespace": lambda v: "cd" * 32,
    "variant_name": lambda v: "other" if v is None else None,
    "variant_version": lambda v: 1 if v is None else v + 1,
    "prompt_tokens": lambda v: v + 1,
    "cached_tokens": lambda v: v + 1,
    "completion_tokens": lambda v: v + 1,
    "reused_blocks": lambda v: v + 1,
    "reused_namespaces": lambda v: [] if v else [NS],
    "outcome": lambda v: "error",
    "error_code": lambda v: "internal",
    "trace_id": lambda v: "ff" * 16,
    "created_at": lambda v: v + timedelta(microseconds=1),
    "prev_hash": _flip,
    "hash": _flip,
    "seq": lambda v: 10**6,
}


def _trials(db: Database) -> int:
    return 60 if db.dialect == "sqlite" else 12


@pytest.fixture
def chain(audit_db: Database) -> tuple[Database, Attacker, Callable[[], None]]:
    signer = new_signer(EVERY)
    build_chain(audit_db, LENGTH, signer)
    attacker = Attacker(audit_db)
    rows, cps, head = attacker.rows(), attacker.checkpoints(), attacker.head()
    assert len(cps) == LENGTH // EVERY
    report = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=EVERY)
    assert report.ok and report.records == LENGTH and report.signed_through == 96

    def check(expected: int) -> None:
        found = verify_chain(audit_db, public_key=signer.public_key, checkpoint_every=EVERY)
        assert not found.ok and found.first_broken == expected, found
        attacker.restore(rows, cps, head)

    return audit_db, attacker, check  # type: ignore[return-value]


def test_modified_field_is_found(chain: Any) -> None:
    db, attacker, check = chain
    rng = random.Random(1)
    rows = attacker.rows()
    for _ in range(_trials(db)):
        seq, name = rng.randrange(1, LENGTH + 1), rng.choice(sorted(MUTATIONS))
        attacker.set_field(seq, **{name: MUTATIONS[name](rows[seq - 1][name])})
        check(seq)


def test_deleted_record_is_found(chain: Any) -> None:
    db, attacker, check = chain
    rng = random.Random(2)
    for _ in range(_trials(db)):
        seq = rng.randrange(1, LENGTH)  # deleting the very last record is a truncation
        attacker.delete(seq)
        check(seq)


def test_reordered_pair_is_found(chain: Any) -> None:
    db, attacker, check = chain
    rng = random.Random(3)
    for _ in range(_trials(db)):
        first = rng.randrange(1, LENGTH)
        second = first + 1 if rng.random() < 0.5 else rng.randrange(first + 1, LENGTH + 1)
        attacker.swap(first, second)
        check(first)


def test_inserted_record_is_found(chain: Any) -> None:
    db, attacker, check = chain
    rng = random.Random(4)
    for _ in range(_trials(db)):
        seq = rng.randrange(1, LENGTH + 1)
        attacker.insert_valid_looking(seq)
        if seq % EVERY == 0:  # the forged record sits where a checkpoint signed another hash:
            check(seq - EVERY + 1)  # the signature only says "something in this segment"
        else:
            check(seq + 1)  # the forged record is self-consistent; the one it displaced is not
