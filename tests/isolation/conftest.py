"""One real gateway for the isolation suite: tiny model on CPU, SQLite, HTTP on loopback.

The KV pool is larger than the integration suite's so the timing probes' cold prefills do not
evict the prompts whose cache hits they are compared with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.audited_gateway import AuditedGateway, running_gateway
from tests.integration.conftest import tiny_model_dir

__all__ = ["tiny_model_dir"]


@pytest.fixture(scope="session")
def iso(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
        ) -> Iterator[AuditedGateway]:
    data = tmp_path_factory.mktemp("isolation-gateway")
    with running_gateway(data, tiny_model_dir, kv_gib=0.1, max_num_seqs=4) as ag:
        yield ag
