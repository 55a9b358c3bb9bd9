"""Schemathesis over the served OpenAPI schema: every tenant and admin operation, no 5xx.

Positive (schema-valid) and negative (schema-violating) cases are generated per operation
from /schema/openapi.json and sent with the right credential for the operation's scope. The
examples are bounded (`EXAMPLES` per operation and mode) and so are completion lengths:
`max_tokens` is clamped, so a valid request runs a few decode steps, not thousands.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from bench.soak_gateway import ADMIN_TOKEN, InProcessGateway

EXAMPLES = 6
MAX_TOKENS = 4
CALL_TIMEOUT_S = 30.0


def _operations(gw: InProcessGateway) -> list[Any]:
    raw = httpx.get(gw.base_url + "/schema/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if op.path.startswith(("/v1", "/admin"))]


def _clamp(body: Any) -> None:
    """Keep generated completions short (a fuzzing budget, not a validity rule)."""
    if isinstance(body, dict):
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_TOKENS:
                body[name] = MAX_TOKENS


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_5xx(gw: InProcessGateway, mode: GenerationMode) -> None:
    key = gw.tenant_key(f"fuzz-{mode.value}")
    ops = _operations(gw)
    assert len(ops) >= 18, [op.label for op in ops]
    seen: dict[str, set[int]] = {}
    failures: list[str] = []

    def fuzz(op: Any) -> None:
        token = ADMIN_TOKEN if op.path.startswith("/admin") else key

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            _clamp(case.body)
            response = case.call(base_url=gw.base_url, timeout=CALL_TIMEOUT_S,
                                 headers={"authorization": f"Bearer {token}"})
            seen.setdefault(op.label, set()).add(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{op.label}: {response.status_code} {response.text[:200]}"
                                f" <- {case.body!r:.300}")

        try:
            run()
        except Unsatisfiable:  # nothing in the operation's body or query can be violated
            assert mode is GenerationMode.NEGATIVE, op.label
            seen.setdefault(op.label, set())

    for op in ops:
        if mode is GenerationMode.NEGATIVE and not (len(op.body) or len(op.query)):
            continue  # only string path parameters: nothing schemathesis can violate
        fuzz(op)
    assert failures == [], "\n".join(failures[:20])
    if mode is GenerationMode.POSITIVE:  # every operation was really exercised
        assert len(seen) == len(ops) and all(seen.values()), seen
    gw.wait_idle()
    gw.engine.core.check_accounting()
