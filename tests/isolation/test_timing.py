"""Timing leaks nothing (DESIGN.md rule 6): probing another tenant's cached prompt is a cold
prefill, statistically indistinguishable from a prompt nobody ever sent.

Three probe kinds run interleaved in shuffled rounds (drift on a shared box hits all alike):
the owner re-sending its cached prompt (must be measurably faster: one-sided KS), another
tenant sending that exact prompt, and that tenant sending a never-seen prompt of the same token
length (two-sample KS, p > 0.01). The prober names a fresh `user` per probe so its own cache
never serves it either. Prompts are long enough (~75 tokens of prefill) that a hit is clearly
faster than a cold prefill on CPU.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from scipy.stats import ks_2samp

from tests.integration.audited_gateway import AuditedGateway
from tests.isolation.support import random_words, register, ttft_probe, variant

PROBES = 100
WORDS = 16
ALPHA = 0.01
QUESTION = [{"role": "user", "content": "Hi?"}]
Probe = Callable[[int], tuple[float, int]]


@pytest.fixture
def clients(iso: AuditedGateway) -> Iterator[Callable[[str], httpx.Client]]:
    opened: list[httpx.Client] = []

    def client(key: str) -> httpx.Client:
        opened.append(httpx.Client(base_url=iso.gw.base_url, timeout=60,
                                   headers={"authorization": f"Bearer {key}"}))
        return opened[-1]

    yield client
    for c in opened:
        c.close()


def _same_length_text(iso: AuditedGateway, rng: random.Random, like: str) -> str:
    """Random words with exactly as many tokens as `like` (so prefill work is equal)."""
    encode = iso.runtime.engine.tokenizer.encode
    want = len(encode(like))
    for _ in range(500):
        text = random_words(rng, WORDS)
        if len(encode(text)) == want:
            return text
    raise AssertionError("no random text of the same token length")


def _body(iso: AuditedGateway, system: str | None = None, **extra: Any) -> dict[str, Any]:
    messages = ([{"role": "system", "content": system}] if system else []) + QUESTION
    return {"model": iso.gw.model, "messages": messages, "max_tokens": 1, **extra}


def _run(probes: dict[str, Probe], rng: random.Random) -> dict[str, list[tuple[float, int]]]:
    """PROBES rounds, each running every probe kind once in a shuffled order."""
    results: dict[str, list[tuple[float, int]]] = {kind: [] for kind in probes}
    kinds = list(probes)
    for i in range(PROBES):
        rng.shuffle(kinds)
        for kind in kinds:
            results[kind].append(probes[kind](i))
    return results


def _times(samples: list[tuple[float, int]]) -> list[float]:
    return [t for t, _ in samples]


def _check(results: dict[str, list[tuple[float, int]]], leak: str, baseline: str) -> None:
    cross = ks_2samp(_times(results[leak]), _times(results[baseline]))
    assert cross.pvalue > ALPHA, f"{leak} vs {baseline} TTFT differ: {cross}"
    own = ks_2samp(_times(results["own"]), _times(results[baseline]), alternative="greater")
    assert own.pvalue < ALPHA, f"the owner's cache hit is not measurably faster: {own}"


def test_probing_another_tenants_cached_prompt_looks_cold(
    iso: AuditedGateway, clients: Callable[[str], httpx.Client]
) -> None:
    rng = random.Random(6)
    _, key_a = iso.gw.tenant("t-owner")
    _, key_b = iso.gw.tenant("t-prober")
    owner, prober = clients(key_a), clients(key_b)
    secret = random_words(rng, WORDS)
    ttft_probe(owner, _body(iso, secret))
    results = _run({
        "own": lambda i: ttft_probe(owner, _body(iso, secret)),
        "cross": lambda i: ttft_probe(prober, _body(iso, secret, user=f"cross-{i}")),
        "never seen": lambda i: ttft_probe(
            prober, _body(iso, _same_length_text(iso, rng, secret), user=f"cold-{i}")),
    }, rng)
    assert all(cached > 0 for _, cached in results["own"])
    assert all(cached == 0 for _, cached in results["cross"] + results["never seen"])
    _check(results, "cross", "never seen")


def test_private_variant_on_a_public_prefix_looks_cold_beyond_the_public_part(
    iso: AuditedGateway, clients: Callable[[str], httpx.Client]
) -> None:
    rng = random.Random(7)
    r = iso.gw.admin.post("/admin/public-prefixes",
                          json={"name": "t-rules", "content": "Platform rules apply. " * 4})
    assert r.status_code == 201, r.text
    public = (r.json()["name"], r.json()["version"])
    a, key_a = iso.gw.tenant("t-public-owner")
    b, key_b = iso.gw.tenant("t-public-prober", cache_policy="user")
    secret = random_words(rng, WORDS)
    register(iso, a, "private", secret, public)
    register(iso, b, "copy", secret, public)  # A's private text, byte for byte
    register(iso, b, "other", _same_length_text(iso, rng, secret), public)
    owner, prober = clients(key_a), clients(key_b)
    ttft_probe(owner, _body(iso, **variant("private")))
    results = _run({
        "own": lambda i: ttft_probe(owner, _body(iso, **variant("private"))),
        "copy": lambda i: ttft_probe(prober, _body(iso, user=f"copy-{i}", **variant("copy"))),
        "other": lambda i: ttft_probe(prober, _body(iso, user=f"other-{i}",
                                                    **variant("other"))),
    }, rng)
    public_part = {cached for _, cached in results["copy"] + results["other"]}
    assert len(public_part) == 1 and public_part.pop() > 0  # exactly the public blocks
    assert min(c for _, c in results["own"]) > max(c for _, c in results["copy"])
    _check(results, "copy", "other")
