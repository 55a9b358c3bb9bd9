"""OpenTelemetry tracing of API requests: one span per request, its phases as child spans.

The span tree is written once the request has ended, with explicit start and end times, from
marks the gateway took along the way and the engine's phase timings (`RequestResult.queue_s`,
`prefill_s`, `decode_s`):

    POST /v1/chat/completions          arrival -> audit record
      auth                             arrival -> handler (API key checked, body decoded)
      canonicalize                     handler -> canonical segments and namespaces built
      queue          (per choice)      handed to the engine -> admitted
      cache_lookup   (per choice)      the radix match, run at admission (not timed apart)
      prefill        (per choice)      admitted -> first token
      decode         (per choice)      first token -> last token

Attributes name the tenant id, a hex prefix of the request's namespace hash and token counts;
never prompt text, token ids or any other tenant's data. Spans go to an OTLP/HTTP collector
when `PREFIXGATE_OTLP_ENDPOINT` is set (a batch processor, off the request path), or to an
exporter handed in (tests use the SDK's InMemorySpanExporter); with neither, tracing is off and
no trace id is recorded. The provider is the gateway's own, not the process-global one.

Metrics: Prometheus scrapes /metrics (gateway/metrics.py); with an OTLP endpoint the same
metrics are also pushed through the OTel SDK (gateway/otel_metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, format_trace_id

from engine.messages import RequestResult

SERVICE_NAME = "prefixgate"
NAMESPACE_HASH_CHARS = 16  # 64 bits of the SHA-256 namespace: enough to correlate, not more
_NS_PER_S = 1_000_000_000


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector address.

    `http://collector:4318` becomes `http://collector:4318/v1/traces`; an address that already
    names a path is used as given.
    """
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"OTLP endpoint must be an http(s) URL, got {endpoint!r}")
    if parts.path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


@dataclass(frozen=True, slots=True)
class RequestTimeline:
    """One finished API request: its identity, usage and wall-clock marks (ns since the epoch).

    A mark is None when the request never got there (e.g. refused while authenticating its
    prompt variant); `results` pairs each finished choice's index with its engine result.
    """

    request_id: str
    tenant: str
    route: str
    method: str
    outcome: str
    error_code: str | None
    namespace_hex: str | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    started_ns: int
    ended_ns: int
    handler_ns: int | None = None
    built_ns: int | None = None
    submitted_ns: int | None = None
    results: tuple[tuple[int, RequestResult], ...] = ()


class RequestTracer:
    """Writes one span tree per request; `record` returns its trace id (hex) or None when off."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("prefixgate.gateway") if provider else None

    @classmethod
    def create(
        cls,
        otlp_endpoint: str | None,
        exporter: SpanExporter | None = None,
        service_name: str = SERVICE_NAME,
    ) -> RequestTracer:
        """OTLP/HTTP export when `otlp_endpoint` is set; `exporter` is added synchronously."""
        if not otlp_endpoint and exporter is None:
            return cls(None)
        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
        )
        if otlp_endpoint:
            # Imported here: the exporter (and protobuf) load only when tracing is configured.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp = OTLPSpanExporter(endpoint=otlp_traces_url(otlp_endpoint))
            provider.add_span_processor(BatchSpanProcessor(otlp))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def record(self, t: RequestTimeline) -> str | None:
        if self._tracer is None:
            return None
        root = self._tracer.start_span(
            f"{t.method} {t.route}", kind=SpanKind.SERVER, start_time=t.started_ns,
            attributes=_root_attributes(t),
        )
        ctx = trace.set_span_in_context(root)
        if t.handler_ns is not None:
            self._child("auth", ctx, t.started_ns, t.handler_ns)
            if t.built_ns is not None:
                self._child("canonicalize", ctx, t.handler_ns, t.built_ns)
        if t.submitted_ns is not None:
            for choice, result in t.results:
                self._phases(ctx, t.submitted_ns, choice, result)
        if t.outcome != "ok":
            root.set_status(Status(StatusCode.ERROR, t.error_code or t.outcome))
        root.end(end_time=t.ended_ns)
        return format_trace_id(root.get_span_context().trace_id)

    def _phases(self, ctx: Context, arrival: int, choice: int, r: RequestResult) -> None:
        admitted = arrival + round(r.queue_s * _NS_PER_S)
        first = admitted + round(r.prefill_s * _NS_PER_S)
        last = first + round(r.decode_s * _NS_PER_S)
        attrs = {"prefixgate.choice": choice}
        self._child("queue", ctx, arrival, admitted, attrs)
        self._child("cache_lookup", ctx, admitted, admitted, {
            **attrs,
            "prefixgate.cached_tokens": r.cached_tokens,
            "prefixgate.reused_blocks": len(r.cache.reused),
        })
        self._child("prefill", ctx, admitted, first, {
            **attrs,
            "prefixgate.prompt_tokens": r.prompt_tokens,
            "prefixgate.computed_tokens": r.prompt_tokens - r.cached_tokens,
        })
        if r.completion_tokens:
            self._child("decode", ctx, first, last, {
                **attrs, "prefixgate.completion_tokens": r.completion_tokens,
            })

    def _child(
        self,
        name: str,
        ctx: Context,
        start: int,
        end: int,
        attributes: dict[str, str | int] | None = None,
    ) -> None:
        assert self._tracer is not None
        span = self._tracer.start_span(name, ctx, start_time=start, attributes=attributes)
        span.end(end_time=max(start, end))

    def shutdown(self) -> None:
        """Flush and stop the exporters (the app's shutdown)."""
        if self._provider is not None:
            self._provider.shutdown()


def _root_attributes(t: RequestTimeline) -> dict[str, str | int]:
    attrs: dict[str, str | int] = {
        "http.request.method": t.method,
        "http.route": t.route,
        "prefixgate.request_id": t.request_id,
        "prefixgate.tenant_id": t.tenant,
        "prefixgate.outcome": t.outcome,
        "prefixgate.prompt_tokens": t.prompt_tokens,
        "prefixgate.cached_tokens": t.cached_tokens,
        "prefixgate.completion_tokens": t.completion_tokens,
    }
    if t.namespace_hex:
        attrs["prefixgate.namespace_hash"] = t.namespace_hex[:NAMESPACE_HASH_CHARS]
    if t.error_code:
        attrs["prefixgate.error_code"] = t.error_code
    return attrs
