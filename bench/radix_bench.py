"""Radix tree vs a vLLM-style per-block hash chain on a multi-tenant prefix-cache workload.

64 namespaces, each with a few 1-2k-token system prompts; requests pick a prompt by a zipf
law and append a 32-512-token suffix (new, or a recent one of the same prompt: a returning
conversation). Each request is served by both caches in the same loop, in alternating order:
match -> pin -> allocate the missing blocks (evicting under the block budget) -> insert ->
unpin. Match and insert are timed per request; the goal is radix match >= 3x faster than
the hash chain for prompts >= 1k tokens.

CLI: `python -m bench.radix_bench --requests 100000` (the small default is a smoke run).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from bench.hash_chain_cache import HashChainCache
from radix import RadixTree


@dataclass(slots=True)
class Timings:
    match_ns: list[int] = field(default_factory=list)
    insert_ns: list[int] = field(default_factory=list)
    total_ns: list[int] = field(default_factory=list)
    hit_tokens: int = 0
    lookup_tokens: int = 0


class Workload:
    """Prompts per namespace, zipf popularity, and a request stream (deterministic by seed)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.rng = np.random.default_rng(args.seed)
        self.vocab = args.vocab
        self.namespaces = [f"tenant-{i:02d}".encode() for i in range(args.namespaces)]
        self.prompts: list[tuple[bytes, list[int]]] = []
        for ns in self.namespaces:
            for _ in range(args.prompts_per_namespace):
                n = int(self.rng.integers(args.prompt_min, args.prompt_max + 1))
                self.prompts.append((ns, self.rng.integers(0, self.vocab, n).tolist()))
        ranks = np.arange(1, len(self.prompts) + 1, dtype=np.float64)
        weights = ranks**-args.zipf
        self.popularity = weights / weights.sum()
        self.rng.shuffle(self.popularity)
        self.suffix_min, self.suffix_max = args.suffix_min, args.suffix_max
        self.repeat = args.repeat
        self.recent: dict[int, list[list[int]]] = {}

    def request(self) -> tuple[bytes, tuple[int, ...]]:
        p = int(self.rng.choice(len(self.prompts), p=self.popularity))
        ns, prompt = self.prompts[p]
        recent = self.recent.setdefault(p, [])
        if recent and self.rng.random() < self.repeat:
            suffix = recent[int(self.rng.integers(len(recent)))]
        else:
            n = int(self.rng.integers(self.suffix_min, self.suffix_max + 1))
            suffix = self.rng.integers(0, self.vocab, n).tolist()
            recent.append(suffix)
            if len(recent) > 8:
                recent.pop(0)
        # The engine hands the tree tuples (a canonical prompt is immutable): so do we, to both.
        return ns, tuple(prompt + suffix)


class Pool:
    """The engine's free block ids (one pool per cache under test)."""

    def __init__(self, size: int) -> None:
        self.free = list(range(size))

    def take(self, n: int, evict: Callable[[int], list[int]]) -> list[int]:
        if len(self.free) < n:
            self.free.extend(evict(n - len(self.free)))
        assert len(self.free) >= n, "budget too small for one request"
        out = self.free[-n:] if n else []
        del self.free[len(self.free) - n :]
        return out


def serve_radix(
    tree: RadixTree, pool: Pool, ns: bytes, tokens: tuple[int, ...], t: Timings
) -> None:
    clock = time.perf_counter_ns
    t0 = clock()
    m = tree.match_one(ns, tokens)
    t1 = clock()
    tree.pin(m.node)
    need = len(tokens) // tree.block_size - len(m.block_ids)
    fresh = pool.take(need, tree.evict)
    t2 = clock()
    r = tree.insert_one(ns, tokens, [*m.block_ids, *fresh])
    t3 = clock()
    pool.free.extend(r.redundant)
    tree.unpin(m.node)
    t4 = clock()
    t.match_ns.append(t1 - t0)
    t.insert_ns.append(t3 - t2)
    t.total_ns.append(t4 - t0)
    t.hit_tokens += m.num_tokens
    t.lookup_tokens += len(tokens)


def serve_chain(
    cache: HashChainCache, pool: Pool, ns: bytes, tokens: tuple[int, ...], t: Timings
) -> None:
    clock = time.perf_counter_ns
    t0 = clock()
    ids, hashes = cache.match(ns, tokens)
    t1 = clock()
    pinned = hashes[: len(ids)]
    cache.pin(pinned)
    need = len(hashes) - len(ids)
    fresh = pool.take(need, cache.evict)
    t2 = clock()
    redundant = cache.insert(tokens, hashes, [*ids, *fresh])
    t3 = clock()
    pool.free.extend(redundant)
    cache.unpin(pinned)
    t4 = clock()
    t.match_ns.append(t1 - t0)
    t.insert_ns.append(t3 - t2)
    t.total_ns.append(t4 - t0)
    t.hit_tokens += len(ids) * cache.block_size
    t.lookup_tokens += len(tokens)


def summary(name: str, values: list[int]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64) / 1000.0
    return float(np.median(arr)), float(np.percentile(arr, 99))


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--namespaces", type=int, default=64)
    ap.add_argument("--prompts-per-namespace", type=int, default=3)
    ap.add_argument("--prompt-min", type=int, default=1024)
    ap.add_argument("--prompt-max", type=int, default=2048)
    ap.add_argument("--suffix-min", type=int, default=32)
    ap.add_argument("--suffix-max", type=int, default=512)
    ap.add_argument("--repeat", type=float, default=0.25, help="share of returning suffixes")
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--budget-blocks", type=int, default=24576, help="KV pool size in blocks")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--hash",
        choices=("builtin", "sha256"),
        default="builtin",
        help="baseline block hash: builtin (fastest peer) or sha256 (vLLM's current default)",
    )
    args = ap.parse_args(argv)

    work = Workload(args)
    tree = RadixTree(block_size=args.block_size, capacity_blocks=args.budget_blocks)
    chain = HashChainCache(block_size=args.block_size, hash_fn=args.hash)
    tree_pool, chain_pool = Pool(args.budget_blocks), Pool(args.budget_blocks)
    radix_t, chain_t = Timings(), Timings()
    for i in tqdm(range(args.requests), desc="requests", unit="req"):
        ns, tokens = work.request()
        if i % 2:
            serve_radix(tree, tree_pool, ns, tokens, radix_t)
            serve_chain(chain, chain_pool, ns, tokens, chain_t)
        else:
            serve_chain(chain, chain_pool, ns, tokens, chain_t)
            serve_radix(tree, tree_pool, ns, tokens, radix_t)
    tree.check_integrity()
    evicted = {"radix tree": tree.stats().evicted_blocks, "hash chain (vLLM)": chain.evicted}

    print(
        f"\n{args.requests} requests, {args.namespaces} namespaces x "
        f"{args.prompts_per_namespace} prompts ({args.prompt_min}-{args.prompt_max} tokens), "
        f"suffix {args.suffix_min}-{args.suffix_max}, zipf {args.zipf}, "
        f"budget {args.budget_blocks} blocks of {args.block_size}, baseline hash {args.hash}"
    )
    print(f"{'cache':<22}{'op':<8}{'median us':>12}{'p99 us':>12}")
    figures: dict[str, float] = {}
    for name, t in (("radix tree", radix_t), ("hash chain (vLLM)", chain_t)):
        for op, values in (("match", t.match_ns), ("insert", t.insert_ns), ("request", t.total_ns)):
            med, p99 = summary(name, values)
            figures[f"{name}/{op}/median"], figures[f"{name}/{op}/p99"] = med, p99
            print(f"{name:<22}{op:<8}{med:>12.2f}{p99:>12.2f}")
        print(
            f"{name:<22}hit rate {t.hit_tokens / t.lookup_tokens:.3f}, "
            f"blocks evicted {evicted[name]}"
        )
    for op in ("match", "insert"):
        for q in ("median", "p99"):
            ratio = figures[f"hash chain (vLLM)/{op}/{q}"] / figures[f"radix tree/{op}/{q}"]
            figures[f"speedup/{op}/{q}"] = ratio
    print(
        f"radix speedup over hash chain: match {figures['speedup/match/median']:.1f}x (median), "
        f"{figures['speedup/match/p99']:.1f}x (p99); insert "
        f"{figures['speedup/insert/median']:.1f}x (median), "
        f"{figures['speedup/insert/p99']:.1f}x (p99)"
    )
    goal = figures["speedup/match/median"] >= 3.0
    print(f"goal (match >= 3x for prompts >= 1k tokens): {'PASS' if goal else 'FAIL'}")
    return figures


if __name__ == "__main__":
    main()
