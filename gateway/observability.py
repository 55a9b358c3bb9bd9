"""`Observability`: what the gateway calls along an API request to get its metrics and trace.

Four calls, all on the event loop: `begin` when the handler starts, `canonicalized` once the
job is built, `submitted` just before the engine takes it, and `complete` with the request's
audit entry, which records the metrics, writes the trace and returns the entry with its
`trace_id`. Every authenticated request ends in exactly one audit record, so `complete` runs
once per `begin`; the marks in between are kept by request id (bounded, in case a handler is
cancelled before auditing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from litestar.connection import ASGIConnection
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace.export import SpanExporter

from engine.engine_stats import EngineStats
from gateway.metrics import CompletedRequest, GatewayMetrics
from gateway.middleware import REQUEST_ID_KEY, START_KEY
from gateway.otel_metrics import OtelMetrics
from gateway.services.jobs import ChoiceOutput
from gateway.telemetry import RequestTimeline, RequestTracer
from tenants.schemas import AuditEntry

log = logging.getLogger("prefixgate.gateway")
MAX_OPEN_REQUESTS = 65_536


@dataclass(slots=True)
class _Marks:
    route: str
    method: str
    started_ns: int
    handler_ns: int
    built_ns: int | None = None
    submitted_ns: int | None = None


class Observability:
    def __init__(
        self, metrics: GatewayMetrics, tracer: RequestTracer, otel: OtelMetrics | None = None
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.otel = otel  # the same metrics over OTLP, when a collector is configured
        self._open: dict[str, _Marks] = {}

    @classmethod
    def create(
        cls,
        engine_stats: Callable[[], EngineStats],
        otlp_endpoint: str | None,
        exporter: SpanExporter | None = None,
        metric_reader: MetricReader | None = None,
    ) -> Observability:
        """Prometheus always; OTLP traces and metrics when `otlp_endpoint` is set; `exporter` and
        `metric_reader` are the tests' in-memory span exporter and metric reader."""
        return cls(
            GatewayMetrics(engine_stats),
            RequestTracer.create(otlp_endpoint, exporter),
            OtelMetrics.create(engine_stats, otlp_endpoint, metric_reader),
        )

    def begin(self, request: ASGIConnection[Any, Any, Any, Any]) -> None:
        """The handler started: the request's arrival (stamped by the middleware) is auth's
        start, now is its end."""
        state = request.scope["state"]
        now_ns, now_perf = time.time_ns(), time.perf_counter()
        started = state.get(START_KEY, now_perf)
        if len(self._open) >= MAX_OPEN_REQUESTS:
            self._open.pop(next(iter(self._open)))
        self._open[state[REQUEST_ID_KEY]] = _Marks(
            route=request.scope["path"],
            method=request.scope.get("method", "POST"),
            started_ns=now_ns - round((now_perf - started) * 1e9),
            handler_ns=now_ns,
        )

    def canonicalized(self, request_id: str) -> None:
        marks = self._open.get(request_id)
        if marks is not None:
            marks.built_ns = time.time_ns()

    def submitted(self, request_id: str) -> None:
        marks = self._open.get(request_id)
        if marks is not None:
            marks.submitted_ns = time.time_ns()

    def complete(self, entry: AuditEntry, outputs: Sequence[ChoiceOutput],
                 public_cached_tokens: int = 0) -> AuditEntry:
        """Record the request's metrics and trace; returns `entry` with its trace id.

        Never raises: the audit record is written whatever happens here.
        """
        try:
            return self._complete(entry, outputs, public_cached_tokens)
        except Exception:
            log.exception("recording metrics/trace failed for %s", entry.request_id)
            return entry

    def _complete(self, entry: AuditEntry, outputs: Sequence[ChoiceOutput],
                  public_cached_tokens: int) -> AuditEntry:
        now = time.time_ns()
        marks = self._open.pop(entry.request_id, None)
        results = tuple((o.index, o.result) for o in outputs if o.result is not None)
        started = marks.started_ns if marks else now
        route = marks.route if marks else "unknown"
        done = CompletedRequest(
            tenant=entry.tenant_id,
            route=route,
            outcome=entry.outcome,
            error_code=entry.error_code,
            prompt_tokens=entry.prompt_tokens,
            cached_tokens=entry.cached_tokens,
            completion_tokens=entry.completion_tokens,
            results=tuple(r for _, r in results),
            duration_s=(now - started) / 1e9 if marks else None,
            public_cached_tokens=public_cached_tokens,
        )
        self.metrics.record(done)
        if self.otel is not None:
            self.otel.record(done)
        trace_id = self.tracer.record(
            RequestTimeline(
                request_id=entry.request_id,
                tenant=entry.tenant_id,
                route=route,
                method=marks.method if marks else "POST",
                outcome=entry.outcome,
                error_code=entry.error_code,
                namespace_hex=entry.namespace,
                prompt_tokens=entry.prompt_tokens,
                cached_tokens=entry.cached_tokens,
                completion_tokens=entry.completion_tokens,
                started_ns=started,
                ended_ns=now,
                handler_ns=marks.handler_ns if marks else None,
                built_ns=marks.built_ns if marks else None,
                submitted_ns=marks.submitted_ns if marks else None,
                results=results,
            )
        )
        return replace(entry, trace_id=trace_id) if trace_id else entry

    def shutdown(self) -> None:
        """Flush the batched spans and the last metric export (the app's shutdown)."""
        self.tracer.shutdown()
        if self.otel is not None:
            self.otel.shutdown()
