"""3x the engine's capacity for ~10 s: only completions and 429 + Retry-After, no leak.

The soak (`make soak`, bench/soak.py) runs the same driver for 60 s and tracks RSS.
"""

from __future__ import annotations

import asyncio

from bench.soak import calibrate, drive_elsewhere
from bench.soak_gateway import InProcessGateway

LOAD_SECONDS = 10.0
MAX_TOKENS = 32  # a few dozen decode steps per request: capacity in the ~10 req/s range


def test_three_times_capacity_sheds_cleanly(gw: InProcessGateway) -> None:
    key = gw.tenant_key("overload")
    width = gw.settings.max_num_seqs
    peer = asyncio.run(calibrate(gw.base_url, key, gw.model, width, 2.0, MAX_TOKENS))
    assert peer.completed > 0 and not peer.failures, peer.failures[:5]

    # The driver runs in its own process so that it does not share the server's GIL.
    report = drive_elsewhere(gw.base_url, key, gw.model, 3 * peer.throughput, LOAD_SECONDS,
                             MAX_TOKENS, progress=False)
    assert report.tried >= 3 * peer.throughput * LOAD_SECONDS * 0.9
    assert report.failures == [], report.failures[:10]
    assert report.completed + report.shed == report.tried
    assert report.completed > 0 and report.shed > 0, report.statuses  # it was overloaded
    assert all(status < 500 for status in report.statuses)

    assert gw.alive()
    gw.wait_idle()
    gw.engine.core.check_accounting()
    stats = gw.engine.stats()
    assert stats.in_use_blocks == 0 and stats.reserved_blocks == 0
