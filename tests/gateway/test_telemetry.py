"""Request traces through the OTel SDK's InMemorySpanExporter: one span per request with its six
phases as children (timed from the engine's RequestResult), the trace id handed back for the
audit record, and nothing of the prompt in any attribute."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from engine.async_engine import AsyncEngine
from engine.messages import EngineRequest, PromptSegment, SamplingParams
from gateway.observability import Observability
from gateway.services.jobs import ChoiceOutput
from gateway.telemetry import NAMESPACE_HASH_CHARS, RequestTracer, otlp_traces_url
from tenants.schemas import AuditEntry
from tests.gateway.observability_support import ROUTE, Scrape, http_request, run

NAMESPACE = bytes.fromhex("5e" * 32)  # a namespace is a SHA-256 digest
SECRET = "Quarterly numbers for the Zanzibar merger are confidential"
PHASES = ["auth", "canonicalize", "queue", "cache_lookup", "prefill", "decode"]


def entry_for(request_id: str, results: list, outcome: str = "ok",
              code: str | None = None) -> AuditEntry:
    return AuditEntry(
        request_id=request_id, tenant_id="ten_trace", key_id="key_1", namespace=NAMESPACE.hex(),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        cached_tokens=sum(r.cached_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        reused_blocks=sum(len(r.cache.reused) for r in results), outcome=outcome,
        error_code=code,
    )


async def traced_request(obs: Observability, engine: AsyncEngine, rid: str, prompt: list[int]):
    """What the gateway does along one request, with the engine really running it."""
    obs.begin(http_request(rid))
    await asyncio.sleep(0.002)  # building the job
    obs.canonicalized(rid)
    obs.submitted(rid)
    sampling = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
    result = await run(engine, EngineRequest(
        f"{rid}.0", (PromptSegment(NAMESPACE, tuple(prompt)),), sampling, tenant="ten_trace"))
    return result, obs.complete(entry_for(rid, [result]), [ChoiceOutput(0, result=result)])


def spans_of(exporter: InMemorySpanExporter, trace_id: str) -> tuple[ReadableSpan, list]:
    spans = [s for s in exporter.get_finished_spans()
             if f"{s.context.trace_id:032x}" == trace_id]
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1
    children = sorted((s for s in spans if s.parent is not None),
                      key=lambda s: (s.start_time, s.end_time))
    return roots[0], children


async def test_request_span_has_six_phases_in_order(engine):
    exporter = InMemorySpanExporter()
    obs = Observability.create(engine.stats, None, exporter)
    prompt = engine.tokenizer.encode(SECRET) * 8
    await traced_request(obs, engine, "req_warm", prompt)
    result, entry = await traced_request(obs, engine, "req_hit", prompt)
    assert result.cached_tokens > 0

    assert entry.trace_id is not None and len(entry.trace_id) == 32
    root, children = spans_of(exporter, entry.trace_id)
    assert [c.name for c in children] == PHASES
    assert root.name == f"POST {ROUTE}"
    assert all(c.parent.span_id == root.context.span_id for c in children)
    assert all(root.start_time <= c.start_time <= c.end_time <= root.end_time for c in children)
    by_name = {c.name: c for c in children}
    assert by_name["auth"].end_time == by_name["canonicalize"].start_time
    assert by_name["queue"].end_time == by_name["cache_lookup"].start_time
    assert by_name["cache_lookup"].end_time == by_name["prefill"].start_time
    assert by_name["prefill"].end_time == by_name["decode"].start_time
    for phase, seconds in (("queue", result.queue_s), ("prefill", result.prefill_s),
                           ("decode", result.decode_s)):
        span = by_name[phase]
        assert span.end_time - span.start_time == pytest.approx(seconds * 1e9, abs=2)

    attrs = root.attributes
    assert attrs["prefixgate.tenant_id"] == "ten_trace"
    assert attrs["prefixgate.namespace_hash"] == NAMESPACE.hex()[:NAMESPACE_HASH_CHARS]
    assert attrs["prefixgate.prompt_tokens"] == len(prompt)
    assert attrs["prefixgate.cached_tokens"] == result.cached_tokens
    assert attrs["prefixgate.completion_tokens"] == 5
    assert attrs["prefixgate.request_id"] == "req_hit"
    lookup = by_name["cache_lookup"].attributes
    assert lookup["prefixgate.cached_tokens"] == result.cached_tokens
    assert lookup["prefixgate.reused_blocks"] == result.cached_tokens // engine.block_size
    assert root.status.status_code is StatusCode.UNSET


async def test_no_prompt_text_in_any_attribute(engine):
    exporter = InMemorySpanExporter()
    obs = Observability.create(engine.stats, None, exporter)
    prompt = engine.tokenizer.encode(SECRET)
    await traced_request(obs, engine, "req_secret", prompt)
    spans = exporter.get_finished_spans()
    assert len(spans) == 7
    words = [w for w in SECRET.split() if len(w) > 4]
    for span in spans:
        texts = [span.name] + [str(v) for v in span.attributes.values()]
        for value in span.attributes.values():
            assert isinstance(value, str | int | float | bool), "only scalar attributes"
        for text in texts:
            assert not any(w.lower() in text.lower() for w in words), text
            assert NAMESPACE.hex() not in text, "the full namespace hash is never exported"
        assert not span.events


async def test_refused_request_has_the_spans_it_reached_and_metrics(engine):
    exporter = InMemorySpanExporter()
    obs = Observability.create(engine.stats, None, exporter)
    obs.begin(http_request("req_refused"))
    obs.canonicalized("req_refused")
    refused = entry_for("req_refused", [], outcome="rejected", code="overloaded")
    entry = obs.complete(refused, [])
    root, children = spans_of(exporter, entry.trace_id)
    assert [c.name for c in children] == ["auth", "canonicalize"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["prefixgate.error_code"] == "overloaded"
    scrape = Scrape(obs.metrics.exposition().decode())
    assert scrape.value("prefixgate_requests_total", tenant="ten_trace", outcome="rejected") == 1
    assert scrape.value("prefixgate_rejections_total", reason="overloaded") == 1


async def test_tracing_off_records_metrics_and_no_trace_id(engine):
    obs = Observability.create(engine.stats, None)
    assert not obs.tracer.enabled
    _, entry = await traced_request(obs, engine, "req_untraced", [11, 12, 13, 14])
    assert entry.trace_id is None
    scrape = Scrape(obs.metrics.exposition().decode())
    assert scrape.value("prefixgate_requests_total", tenant="ten_trace", route=ROUTE) == 1
    assert scrape.value("prefixgate_completion_tokens_total", tenant="ten_trace") == 5


def test_otlp_endpoint_is_the_collector_address():
    assert otlp_traces_url("http://otel-collector:4318") == "http://otel-collector:4318/v1/traces"
    assert otlp_traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert otlp_traces_url("https://c/custom/traces") == "https://c/custom/traces"
    with pytest.raises(ValueError):
        otlp_traces_url("otel-collector:4318")
    tracer = RequestTracer.create("http://127.0.0.1:4318")
    assert tracer.enabled
    tracer.shutdown()


def test_a_failure_while_recording_never_stops_the_audit_record(caplog):
    obs = Observability.create(lambda: None, None, InMemorySpanExporter())  # type: ignore[arg-type]
    entry = entry_for("req_broken", [])
    broken = ChoiceOutput(0, result="not a RequestResult")  # type: ignore[arg-type]
    with caplog.at_level("ERROR", logger="prefixgate.gateway"):
        assert obs.complete(entry, [broken]) is entry
    assert "req_broken" in caplog.text
