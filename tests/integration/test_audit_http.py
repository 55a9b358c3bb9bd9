"""The gateway's audit trail over HTTP: one signed record per request, whatever its outcome.

Successes name every reused block with its owner namespace; rejections and errors carry the
code the client saw; an engine isolation violation (provoked by corrupting the running engine's
radix tree) is refused and audited as such; GET /admin/audit/verify finds a record tampered
with in the database; the signing key is created 0600 and the head is signed at shutdown.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from gateway.runtime import Runtime
from tenants.audit_verify import verify_chain
from tenants.database import Database
from tenants.server_key import KEY_FILE_NAME, load_private_key
from tests.integration.audited_gateway import AuditedGateway, running_gateway

PROMPT = "The quick brown fox jumps over the lazy dog, again and again and again. " * 3
CHECKPOINT_EVERY = 4


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
            ) -> Iterator[AuditedGateway]:
    data = tmp_path_factory.mktemp("audited-gateway")
    with running_gateway(data, tiny_model_dir, audit_checkpoint_every=CHECKPOINT_EVERY) as ag:
        yield ag


def _complete(ag: AuditedGateway, key: str, prompt: str = PROMPT, **extra: Any
              ) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(status, response body, audit record) of one raw completion."""
    r = ag.post(key, "/v1/completions", {"model": ag.gw.model, "prompt": prompt,
                                         "max_tokens": 1, **extra})
    return r.status_code, r.json(), ag.audit(r.headers["x-request-id"])


def test_reused_blocks_are_recorded_with_their_owner(audited: AuditedGateway) -> None:
    tid, key = audited.gw.tenant("audit-reuse")
    _, _, first = _complete(audited, key)
    assert first["outcome"] == "ok" and first["reused_block_ids"] == []
    own = first["namespace"]
    _, body, second = _complete(audited, key)
    cached = body["usage"]["prompt_tokens_details"]["cached_tokens"]
    block = audited.runtime.engine.block_size
    assert cached > 0 and second["cached_tokens"] == cached and second["tenant_id"] == tid
    assert len(second["reused_block_ids"]) == second["reused_blocks"] == cached // block
    assert {ns for _, ns in second["reused_block_ids"]} == {own}
    assert second["reused_namespaces"] == [own]
    _, _, third = _complete(audited, key)
    assert third["reused_block_ids"] == second["reused_block_ids"]  # the very same blocks


def test_streamed_reuse_is_recorded(audited: AuditedGateway) -> None:
    _, key = audited.gw.tenant("audit-stream")
    _complete(audited, key)
    r = audited.post(key, "/v1/completions", {"model": audited.gw.model, "prompt": PROMPT,
                                              "max_tokens": 2, "stream": True})
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    record = audited.audit(r.headers["x-request-id"])
    assert record["outcome"] == "ok" and record["cached_tokens"] > 0
    assert len(record["reused_block_ids"]) == record["reused_blocks"] > 0


def test_concurrent_requests_share_audit_commits(audited: AuditedGateway) -> None:
    """Records of requests finishing together are chained in shared transactions."""
    _, key = audited.gw.tenant("audit-group-commit")
    writer = audited.runtime.audit_writer
    batches, n = writer.batches, 16
    with ThreadPoolExecutor(n) as pool:
        replies = list(pool.map(lambda i: _complete(audited, key, f"{PROMPT} #{i}"), range(n)))
    assert all(status == 200 for status, _, _ in replies)
    assert len({record["seq"] for _, _, record in replies}) == n
    assert writer.batches - batches < n


@pytest.mark.parametrize("body, status", [
    ({"model": "no-such-model"}, 404),
    ({"prompt_variant": {"name": "missing"}}, 404),
    ({"max_tokens": 100_000}, 400),
])
def test_rejections_after_auth_are_recorded(audited: AuditedGateway, body: dict[str, Any],
                                            status: int) -> None:
    tid, key = audited.gw.tenant(f"audit-reject-{status}-{len(str(body))}")
    request = {"model": audited.gw.model, "messages": [{"role": "user", "content": "hi"}],
               **body}
    r = audited.post(key, "/v1/chat/completions", request)
    assert r.status_code == status, r.text
    record = audited.audit(r.headers["x-request-id"])
    assert (record["tenant_id"], record["outcome"]) == (tid, "rejected")
    assert record["error_code"] == r.json()["error"]["code"]


def test_rate_limited_request_is_recorded(audited: AuditedGateway) -> None:
    tid, key = audited.gw.tenant("audit-429", quotas={"requests_per_min": 1})
    statuses = []
    for _ in range(2):
        status, body, record = _complete(audited, key)
        statuses.append(status)
    assert statuses == [200, 429]
    assert (record["tenant_id"], record["outcome"]) == (tid, "rejected")
    assert record["error_code"] == body["error"]["code"]


def _relabel(runtime: Runtime, victim: bytes, probe: bytes) -> Any:
    """Corrupt the engine's radix tree: lookups under `probe` return `victim`'s blocks."""
    tree = runtime.engine.core.tree
    original = tree.match

    def corrupted(segments: Any) -> Any:
        return original([(victim if ns == probe else ns, toks) for ns, toks in segments])

    with runtime.engine.core.lock:
        tree.match = corrupted
    return original


def test_isolation_violation_is_refused_and_audited(audited: AuditedGateway) -> None:
    rt = audited.runtime
    _, key_a = audited.gw.tenant("audit-victim")
    _, key_b = audited.gw.tenant("audit-prober")
    _complete(audited, key_a)
    _, _, a = _complete(audited, key_a)
    assert a["cached_tokens"] > 0
    _, _, b = _complete(audited, key_b, "Something else entirely, to learn my namespace.")
    before = rt.engine.stats().counters.isolation_violations
    original = _relabel(rt, bytes.fromhex(a["namespace"]), bytes.fromhex(b["namespace"]))
    try:
        status, body, record = _complete(audited, key_b)
    finally:
        with rt.engine.core.lock:
            rt.engine.core.tree.match = original
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert PROMPT not in str(body) and a["namespace"] not in str(body)
    assert (record["outcome"], record["error_code"]) == ("isolation_violation",
                                                         "isolation_violation")
    assert record["cached_tokens"] == 0 and record["reused_block_ids"] == []
    assert rt.engine.stats().counters.isolation_violations == before + 1
    status, body, _ = _complete(audited, key_b)  # the tree is sound again: a cold miss
    assert status == 200 and body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_verify_names_the_first_tampered_record(audited: AuditedGateway) -> None:
    _, key = audited.gw.tenant("audit-tamper")
    for _ in range(3):
        _complete(audited, key)
    clean = audited.gw.admin.get("/admin/audit/verify").json()
    assert clean["ok"] is True and clean["first_broken"] is None and clean["records"] >= 3
    engine = create_engine(audited.settings.resolved_db_url)
    target = clean["records"] - 1
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_records SET cached_tokens = cached_tokens + 16 "
                              "WHERE seq = :seq"), {"seq": target})
        broken = audited.gw.admin.get("/admin/audit/verify").json()
        assert broken == {"ok": False, "records": target - 1, "first_broken": target}
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_records SET cached_tokens = cached_tokens - 16 "
                              "WHERE seq = :seq"), {"seq": target})
        engine.dispose()
    assert audited.gw.admin.get("/admin/audit/verify").json()["ok"] is True


def test_verify_needs_the_admin_token(audited: AuditedGateway) -> None:
    _, key = audited.gw.tenant("audit-nosy")
    r = audited.gw.admin.get("/admin/audit/verify", headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 403


def test_key_is_created_0600_and_shutdown_signs_the_head(tmp_path: Path,
                                                         tiny_model_dir: Path) -> None:
    with running_gateway(tmp_path, tiny_model_dir, audit_checkpoint_every=2) as ag:
        _, key = ag.gw.tenant("audit-shutdown")
        for _ in range(5):
            assert _complete(ag, key)[0] == 200
        db_url = ag.settings.resolved_db_url
    key_file = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = load_private_key(key_file).public_key()
    db = Database.from_url(db_url)
    try:
        with db.engine.connect() as conn:
            signed = [seq for (seq,) in conn.execute(text("SELECT seq FROM audit_checkpoints "
                                                          "ORDER BY seq"))]
        assert signed == [2, 4, 5]  # every 2nd record as written, and the head at shutdown
        report = verify_chain(db, public_key=public, checkpoint_every=2)
        assert report.ok and report.records == 5 and report.signed_through == 5
    finally:
        db.dispose()


def test_a_refusal_before_the_handler_is_audited_once(audited: AuditedGateway) -> None:
    tid, key = audited.gw.tenant("audit-malformed")
    r = httpx.post(audited.gw.base_url + "/v1/chat/completions", content=b'{"model": ',
                   headers={"authorization": f"Bearer {key}",
                            "content-type": "application/json"}, timeout=30)
    assert r.status_code == 400
    record = audited.audit(r.headers["x-request-id"])  # exactly one record
    assert record["tenant_id"] == tid and record["outcome"] == "rejected"
    assert record["error_code"] == "http_400" and record["prompt_tokens"] == 0
    unknown = httpx.post(audited.gw.base_url + "/v1/chat/completions", content=b"{",
                         headers={"authorization": "Bearer pgk_key_0000_nope"}, timeout=30)
    assert unknown.status_code in (400, 401)
    r = audited.gw.admin.get("/admin/audit", params={"request_id":
                                                      unknown.headers["x-request-id"]})
    assert r.json()["data"] == []  # no valid key: no tenant to attribute it to
    status, _, ok = _complete(audited, key)  # a handled request still has one record
    assert status == 200 and ok["outcome"] == "ok"
