"""What `prefixgate top` shows: a `Snapshot` parsed from one /metrics body, drawn with rich.

Rates (requests/s, tokens/s) are the difference between two snapshots over the time between
them; everything else is read from one scrape.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

TTFT = "prefixgate_time_to_first_token_seconds_bucket"


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' estimate from cumulative (upper bound, count) buckets: linear within the
    bucket that holds the q-th observation. None without observations."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


@dataclass(frozen=True, slots=True)
class TenantUsage:
    tenant: str
    requests: float
    rejected: float
    prompt_tokens: float
    cached_tokens: float
    completion_tokens: float
    ttft_p50_s: float | None

    @property
    def hit_ratio(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scrape of /metrics, reduced to what the view shows. `at`: monotonic seconds."""

    at: float
    values: dict[str, float]
    requests_by_outcome: dict[str, float]
    rejections: dict[str, float]
    engine_rejections: dict[str, float]
    kv_blocks: dict[str, float]
    tenants: tuple[TenantUsage, ...]

    def get(self, name: str) -> float | None:
        return self.values.get(name)

    def tenant(self, tenant: str) -> TenantUsage | None:
        return next((t for t in self.tenants if t.tenant == tenant), None)

    @property
    def requests(self) -> float:
        return sum(self.requests_by_outcome.values())

    @classmethod
    def parse(cls, text: str, at: float) -> Snapshot:
        values: dict[str, float] = {}
        outcomes: dict[str, float] = defaultdict(float)
        rejections: dict[str, float] = {}
        engine_rejections: dict[str, float] = {}
        kv_blocks: dict[str, float] = {}
        per_tenant: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        ttft: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = s.labels
                if s.name == "prefixgate_requests_total":
                    outcomes[labels["outcome"]] += s.value
                    per_tenant[labels["tenant"]]["requests"] += s.value
                    if labels["outcome"] == "rejected":
                        per_tenant[labels["tenant"]]["rejected"] += s.value
                elif s.name == "prefixgate_rejections_total":
                    rejections[labels["reason"]] = s.value
                elif s.name == "prefixgate_engine_rejections_total":
                    engine_rejections[labels["reason"]] = s.value
                elif s.name == "prefixgate_kv_cache_blocks":
                    kv_blocks[labels["state"]] = s.value
                elif s.name in ("prefixgate_prompt_tokens_total", "prefixgate_cached_tokens_total",
                                "prefixgate_completion_tokens_total"):
                    kind = s.name.removeprefix("prefixgate_").removesuffix("_total")
                    per_tenant[labels["tenant"]][kind] = s.value
                elif s.name == TTFT:
                    ttft[labels["tenant"]].append((float(labels["le"]), s.value))
                elif "quantile" in labels:
                    values[f"{s.name}:{labels['quantile']}"] = s.value
                elif not labels:
                    values[s.name] = s.value
        tenants = tuple(
            TenantUsage(
                tenant, t["requests"], t["rejected"], t["prompt_tokens"], t["cached_tokens"],
                t["completion_tokens"], histogram_quantile(0.5, ttft.get(tenant, [])),
            )
            for tenant, t in sorted(per_tenant.items())
        )
        return cls(at, values, dict(outcomes), rejections, engine_rejections, kv_blocks, tenants)


def _rate(now: Snapshot, before: Snapshot | None, read: Callable[[Snapshot], float | None]) -> str:
    """Per-second change of `read` between two snapshots ("—" on the first frame)."""
    if before is None or now.at <= before.at:
        return "—"
    new, old = read(now), read(before)
    if new is None or old is None:
        return "—"
    return f"{max(0.0, new - old) / (now.at - before.at):.1f}/s"


def _tenant_requests(tenant: str, snapshot: Snapshot) -> float | None:
    usage = snapshot.tenant(tenant)
    return usage.requests if usage else None


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.1f} ms"


def _pct(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f}%"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def render(now: Snapshot, before: Snapshot | None, url: str) -> RenderableType:
    """The whole screen: traffic, KV cache and scheduler, rejections, tenants."""
    return Group(_traffic(now, before, url), _kv(now), _rejections(now), _tenants(now, before))


def _traffic(now: Snapshot, before: Snapshot | None, url: str) -> Panel:
    gen = "prefixgate_engine_generation_tokens_total"
    grid = Table.grid(padding=(0, 3))
    for _ in range(4):
        grid.add_column()
    grid.add_row(
        "requests", f"{now.requests:,.0f} ({_rate(now, before, lambda s: s.requests)})",
        "generated tokens", f"{_count(now.get(gen))} ({_rate(now, before, lambda s: s.get(gen))})",
    )
    grid.add_row(
        "prefix hit ratio", _pct(now.get("prefixgate_prefix_hit_ratio")),
        "engine hit ratio", _pct(now.get("prefixgate_engine_prefix_hit_ratio")),
    )
    for what, name in (("TTFT", "time_to_first_token"), ("ITL", "inter_token_latency")):
        base = f"prefixgate_engine_recent_{name}_seconds"
        grid.add_row(f"{what} p50", _ms(now.get(f"{base}:0.5")),
                     f"{what} p95", _ms(now.get(f"{base}:0.95")))
    return Panel(grid, title=f"prefixgate top — {url}", title_align="left")


def _kv(now: Snapshot) -> Panel:
    capacity = now.get("prefixgate_kv_cache_capacity_blocks") or 0.0
    occupancy = now.get("prefixgate_kv_cache_occupancy_ratio") or 0.0
    grid = Table.grid(padding=(0, 3))
    for _ in range(4):
        grid.add_column()
    grid.add_row("KV in use", ProgressBar(total=1.0, completed=occupancy, width=30),
                 _pct(occupancy), f"of {capacity:,.0f} blocks")
    grid.add_row("blocks free / cached / in use",
                 " / ".join(_count(now.kv_blocks.get(k)) for k in ("free", "cached", "in_use")),
                 "fragmentation", _pct(now.get("prefixgate_kv_cache_fragmentation_ratio")))
    grid.add_row("batch / queue",
                 f"{_count(now.get('prefixgate_engine_batch_size'))} / "
                 f"{_count(now.get('prefixgate_engine_queue_depth'))}",
                 "step p50", _ms(now.get("prefixgate_engine_step_duration_seconds:0.5")))
    grid.add_row("preemptions", _count(now.get("prefixgate_engine_preemptions_total")),
                 "evicted blocks", _count(now.get("prefixgate_kv_cache_evicted_blocks_total")))
    grid.add_row("prefill budget",
                 f"{_count(now.get('prefixgate_engine_prefill_budget_tokens'))} tokens",
                 "back-offs", _count(now.get("prefixgate_engine_prefill_backoffs_total")))
    return Panel(grid, title="KV cache and scheduler", title_align="left")


def _rejections(now: Snapshot) -> Panel:
    table = Table(box=None, padding=(0, 2))
    table.add_column("refused by")
    table.add_column("reason")
    table.add_column("requests", justify="right")
    for source, counts in (("gateway", now.rejections), ("engine", now.engine_rejections)):
        for reason, n in sorted(counts.items()):
            table.add_row(source, reason, _count(n))
    violations = now.get("prefixgate_isolation_violations_total") or 0.0
    violations += now.get("prefixgate_engine_isolation_violations_total") or 0.0
    title = f"Rejections — isolation violations: {violations:,.0f}"
    return Panel(table, title=title, title_align="left",
                 border_style="red" if violations else "none")


def _tenants(now: Snapshot, before: Snapshot | None) -> Panel:
    table = Table(box=None, padding=(0, 1))
    longest = max((len(t.tenant) for t in now.tenants), default=6)
    table.add_column("tenant", no_wrap=True, min_width=longest)
    for name in ("requests", "rate", "rejected", "prompt", "cached", "hit", "completion",
                 "TTFT p50"):
        table.add_column(name, justify="right", no_wrap=True)
    for t in now.tenants:
        table.add_row(
            t.tenant, _count(t.requests), _rate(now, before, partial(_tenant_requests, t.tenant)),
            _count(t.rejected), _count(t.prompt_tokens), _count(t.cached_tokens),
            _pct(t.hit_ratio), _count(t.completion_tokens), _ms(t.ttft_p50_s),
        )
    return Panel(table, title=f"Tenants ({len(now.tenants)})", title_align="left")
