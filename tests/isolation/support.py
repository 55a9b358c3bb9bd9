"""Calls and checks shared by the isolation tests: one request, its audit record, its owners."""

from __future__ import annotations

import json
import random
import string
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.integration.audited_gateway import AuditedGateway

SYSTEM = ("You are the support assistant of ACME Rockets. Answer briefly, cite the manual, "
          "never reveal internal pricing, and escalate safety issues to a human. ")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    cached: int
    request_id: str
    body: dict[str, Any]


def chat(ag: AuditedGateway, key: str, messages: list[dict[str, str]], **extra: Any) -> Reply:
    body = {"model": ag.gw.model, "messages": messages, "max_tokens": 1, **extra}
    return _reply(ag.post(key, "/v1/chat/completions", body))


def complete(ag: AuditedGateway, key: str, prompt: str, **extra: Any) -> Reply:
    body = {"model": ag.gw.model, "prompt": prompt, "max_tokens": 1, **extra}
    return _reply(ag.post(key, "/v1/completions", body))


def system_chat(system: str, question: str = "What is the warranty?") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def variant(name: str, version: int | None = None,
            variables: dict[str, str] | None = None) -> dict[str, Any]:
    """Request fields selecting a registered prompt variant (and its variable values)."""
    extra: dict[str, Any] = {"prompt_variant": {"name": name, "version": version}}
    if variables:
        extra["prompt_variables"] = variables
    return extra


def register(ag: AuditedGateway, tenant_id: str, name: str, content: str,
             public: tuple[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "content": content}
    if public is not None:
        body["public_prefix"] = {"name": public[0], "version": public[1]}
    r = ag.gw.admin.post(f"/admin/tenants/{tenant_id}/prompts", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def reused(ag: AuditedGateway, reply: Reply, tenant_id: str, *,
           scopes: frozenset[str] = frozenset({"shared", "user", "personalization"}),
           public_ok: bool = False) -> list[tuple[int, str]]:
    """The reply's audited reuses, checked against what the reply said and who owns them.

    The record must hold exactly `cached_tokens / block_size` block ids, each owned by a
    namespace of `tenant_id` with one of `scopes` (or, with `public_ok`, a platform public
    prefix): never another tenant's.
    """
    assert reply.status == 200, reply.body
    record = ag.audit(reply.request_id)
    assert record["tenant_id"] == tenant_id and record["outcome"] == "ok"
    assert record["cached_tokens"] == reply.cached
    blocks = [(int(b), str(ns)) for b, ns in record["reused_block_ids"]]
    assert len(blocks) * ag.runtime.engine.block_size == reply.cached == record["cached_tokens"]
    assert record["reused_blocks"] == len(blocks)
    assert set(record["reused_namespaces"]) == {ns for _, ns in blocks}
    for _, ns in blocks:
        label = ag.runtime.namespaces.label(bytes.fromhex(ns))
        assert label is not None, f"reused namespace {ns} was never derived by the gateway"
        if label.tenant_id is None:
            assert public_ok and label.scope == "public", label
        else:
            assert label.tenant_id == tenant_id and label.scope in scopes, label
    return blocks


def cold(ag: AuditedGateway, reply: Reply, tenant_id: str) -> None:
    """Nothing was reused, and the audit trail says so."""
    assert reply.cached == 0, reply.body
    assert reused(ag, reply, tenant_id) == []


def random_words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8)))
                    for _ in range(n))


def ttft_probe(client: httpx.Client, body: dict[str, Any]) -> tuple[float, int]:
    """(seconds to the response head, cached tokens) of one streamed request.

    The gateway sends a stream's head only once the engine produced the first token, so the
    time to the head is the time to first token as the client sees it.
    """
    started = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json={
        **body, "stream": True, "stream_options": {"include_usage": True},
    }) as r:
        elapsed = time.perf_counter() - started
        assert r.status_code == 200, r.read()
        cached = None
        for line in r.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[len("data: "):]).get("usage")
                if usage:
                    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert cached is not None, "no usage chunk"
    return elapsed, int(cached)


def _reply(r: httpx.Response) -> Reply:
    body = r.json()
    cached = 0
    if r.status_code == 200:
        cached = body["usage"]["prompt_tokens_details"]["cached_tokens"]
    return Reply(r.status_code, cached, r.headers["x-request-id"], body)
