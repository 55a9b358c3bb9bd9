"""Serving workloads as token ids, shared by bench/serve_bench.py and its smoke test.

W1: many requests over a few long system prompts (zipf popularity) + random suffixes.
W2: multi-turn chats: each turn extends the previous conversation (prompt + reply + new message).
W3: the same shapes as W1 with nothing shared.
W4: a platform-wide public prefix before each tenant's private variant (public sharing vs
per-tenant isolation).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """One request: a shared prefix (namespaced, cacheable) and a private suffix."""

    rid: str
    namespace: bytes | None
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    max_tokens: int
    # W4: the first `public_len` prefix tokens form a segment of their own, keyed by
    # `public_namespace` (None: by `namespace`, i.e. per-tenant isolation).
    public_len: int = 0
    public_namespace: bytes | None = None

    @property
    def prompt(self) -> list[int]:
        return [*self.prefix, *self.suffix]


def _tokens(rng: random.Random, n: int, vocab: int) -> tuple[int, ...]:
    return tuple(rng.randrange(10, vocab) for _ in range(n))


def _zipf_index(rng: random.Random, n: int, s: float = 1.1) -> int:
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    return rng.choices(range(n), weights=weights)[0]


def shared_prefix_workload(
    *,
    num_requests: int = 256,
    num_prompts: int = 16,
    prefix_len: int = 1024,
    suffix_range: tuple[int, int] = (64, 256),
    max_tokens: int = 128,
    vocab: int = 32000,
    share: bool = True,
    seed: int = 0,
) -> list[BenchRequest]:
    """W1 (share=True) and W3 (share=False: every request gets its own prefix)."""
    rng = random.Random(seed)
    prompts = [_tokens(rng, prefix_len, vocab) for _ in range(num_prompts)]
    out = []
    for i in range(num_requests):
        if share:
            p = _zipf_index(rng, num_prompts)
            prefix, ns = prompts[p], f"sys-{p}".encode()
        else:
            prefix, ns = _tokens(rng, prefix_len, vocab), None
        suffix = _tokens(rng, rng.randint(*suffix_range), vocab)
        out.append(BenchRequest(f"r{i}", ns, prefix, suffix, max_tokens))
    return out


def chat_turn(
    rng: random.Random, conv: int, turn: int, history: tuple[int, ...], message_len: int,
    max_tokens: int, vocab: int,
) -> BenchRequest:
    """Turn `turn` of conversation `conv`: its history (prefix) plus a new user message."""
    return BenchRequest(
        f"c{conv}t{turn}", f"chat-{conv}".encode(), history,
        _tokens(rng, message_len, vocab), max_tokens,
    )


def public_prefix_workload(
    *,
    tenants: int = 64,
    per_tenant: int = 4,
    public_len: int = 1024,
    private_len: int = 512,
    turn_len: int = 32,
    max_tokens: int = 64,
    vocab: int = 32000,
    share_public: bool = True,
    seed: int = 4,
) -> list[BenchRequest]:
    """W4: every tenant's variant starts with one platform-wide public prefix, then a private
    part, then a short user turn. With `share_public` the public segment has the public
    namespace (reused across tenants); without, it is keyed by the tenant (isolation)."""
    rng = random.Random(seed)
    public = _tokens(rng, public_len, vocab)
    privates = [_tokens(rng, private_len, vocab) for _ in range(tenants)]
    out = []
    for i in range(tenants * per_tenant):
        t = i % tenants
        out.append(BenchRequest(
            f"w4-{i}", f"tenant-{t}".encode(), (*public, *privates[t]),
            _tokens(rng, turn_len, vocab), max_tokens,
            public_len=public_len, public_namespace=b"public" if share_public else None,
        ))
    return out
