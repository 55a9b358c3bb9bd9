"""Running a `Job` on the engine and answering it: JSON or SSE, then one audit record.

Every request the gateway authenticated ends in exactly one audit record, committed by the
runtime's group-commit AuditWriter before the response completes (for a stream: before
`data: [DONE]`): outcome, cached tokens, and every reused block's id with its owner namespace. Each
reused block's owner is checked against the request's own namespaces (DESIGN.md rule 2); a
mismatch fails the request and is audited as an isolation violation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from litestar import MediaType, Request, Response
from litestar.response import Stream

from engine.errors import IsolationViolation
from engine.messages import TokenEvent
from gateway.audit_rejections import AUDIT_OWNED_KEY
from gateway.errors import error_json, outcome_of, to_api_error
from gateway.middleware import ENGINE_S_KEY, REQUEST_ID_KEY
from gateway.services.jobs import Job
from gateway.services.render import Renderer, usage_of
from gateway.stream import DONE, EventStream, merge_streams, sse_raw
from tenants.schemas import AuditEntry, Principal

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("prefixgate.gateway")
Events = AsyncGenerator[tuple[int, TokenEvent], None]


class InferenceService:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def handle(
        self,
        principal: Principal,
        request: Request[Any, Any, Any],
        build: Callable[[str], Awaitable[Job]],
        renderer: Renderer,
    ) -> Response[bytes] | Stream:
        """Build the job (request id from the middleware) and answer it; audit any failure."""
        request_id: str = request.scope["state"][REQUEST_ID_KEY]
        request.scope["state"][AUDIT_OWNED_KEY] = True  # every path below writes the record
        self.rt.observability.begin(request)
        job: Job | None = None
        try:
            job = await build(request_id)
            self.rt.observability.canonicalized(request_id)
            await self.rt.meter.admit(job)  # budgets, cache retention (gateway/services/metering)
            return await self._respond(job, renderer, request)
        except Exception as exc:
            await self._audit_error(principal, request_id, exc, job)
            raise

    async def _respond(
        self, job: Job, renderer: Renderer, request: Request[Any, Any, Any]
    ) -> Response[bytes] | Stream:
        """JSON once all choices finished; SSE once the first event arrived (so a request that
        times out in the queue is still a plain 429)."""
        events = merge_streams(await self._submit(job))
        try:
            first = await anext(events, None)
            if not job.stream:
                event = first
                while event is not None:
                    self.take(job, *event)
                    event = await anext(events, None)
        except BaseException:
            await events.aclose()
            raise
        if job.stream:
            return Stream(
                self._sse(job, renderer, events, first),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        body = renderer.full(job, job.outputs, usage_of(job, job.outputs))
        job.engine_s = max((o.result.total_s for o in job.outputs if o.result), default=0.0)
        request.scope["state"][ENGINE_S_KEY] = job.engine_s
        await self._append(self.audit_entry(job, "ok", None), job)
        return Response(content=body, media_type=MediaType.JSON)

    async def _submit(self, job: Job) -> list[EventStream]:
        streams: list[EventStream] = []
        self.rt.observability.submitted(job.request_id)
        try:
            for engine_request in job.engine_requests():
                streams.append(await self.rt.engine.submit(engine_request))
        except BaseException:
            for stream in streams:
                await stream.aclose()
            raise
        return streams

    def take(self, job: Job, index: int, ev: TokenEvent) -> None:
        """Fold one engine event into the job's outputs; check the owners of reused blocks."""
        out = job.outputs[index]
        if ev.text:
            out.pieces.append(ev.text)
        if not ev.finished:
            return
        out.finish_reason = ev.finish_reason or "stop"
        out.result = ev.result
        if ev.result is None:
            return
        if index % job.n == 0:  # billed once per prompt, like cached_tokens (usage_of)
            out.public_cached_tokens = job.public_cached_tokens(ev.result.cache)
        foreign = job.foreign_namespaces(ev.result.cache)
        if foreign:
            block = next(b for b in ev.result.cache.reused if b.namespace in foreign)
            raise IsolationViolation(
                ev.request_id, block.block_id, job.audit_namespace or b"", block.namespace
            )

    async def _sse(
        self,
        job: Job,
        renderer: Renderer,
        events: Events,
        first: tuple[int, TokenEvent] | None,
    ) -> AsyncGenerator[bytes, None]:
        audited = False
        try:
            for index in range(job.num_choices):
                opening = renderer.opening(job, index)
                if opening is not None:
                    yield sse_raw(opening)
            event = first
            while event is not None:
                index, ev = event
                self.take(job, index, ev)
                if ev.text:
                    yield sse_raw(renderer.delta(job, index, ev.text))
                if ev.finished:
                    reason = job.outputs[index].finish_reason or "stop"
                    yield sse_raw(renderer.finish(job, index, reason))
                event = await anext(events, None)
            if job.include_usage:
                yield sse_raw(renderer.usage(job, usage_of(job, job.outputs)))
            audited = True
            await self._append(self.audit_entry(job, "ok", None), job)
            yield DONE
        except Exception as exc:
            audited = True
            await events.aclose()
            try:
                await self._audit_error(job.principal, job.request_id, exc, job)
            except Exception:  # e.g. the database is down: the client still gets its error
                log.warning("could not audit failed request %s", job.request_id)
            yield sse_raw(error_json(to_api_error(exc)))
        finally:
            if not audited:  # the client went away mid-stream: abort and record it
                with anyio.CancelScope(shield=True):
                    await events.aclose()
                    await self._append(self.audit_entry(job, "aborted", "client_closed"), job)

    # --- audit ---------------------------------------------------------------------------------
    async def _audit_error(
        self, principal: Principal, request_id: str, exc: BaseException, job: Job | None
    ) -> None:
        outcome = outcome_of(exc)
        if job is not None:
            entry = self.audit_entry(job, outcome.outcome, outcome.code)
        else:
            entry = AuditEntry(
                request_id=request_id, tenant_id=principal.tenant_id, key_id=principal.key_id,
                namespace=None, variant_name=None, variant_version=None, prompt_tokens=0,
                cached_tokens=0, completion_tokens=0, reused_blocks=0, reused_namespaces=(),
                outcome=outcome.outcome, error_code=outcome.code, trace_id=None,
            )
        with anyio.CancelScope(shield=True):
            await self._append(entry, job)

    @staticmethod
    def audit_entry(job: Job, outcome: str, code: str | None) -> AuditEntry:
        """The audit record of a job: usage, variant, and the owner of every reused block."""
        usage = usage_of(job, job.outputs)
        reused = [b for o in job.outputs if o.result is not None for b in o.result.cache.reused]
        view = job.variant.view if job.variant else None
        return AuditEntry(
            request_id=job.request_id,
            tenant_id=job.principal.tenant_id,
            key_id=job.principal.key_id,
            namespace=job.audit_namespace.hex() if job.audit_namespace else None,
            variant_name=view.name if view else None,
            variant_version=view.version if view else None,
            prompt_tokens=usage.prompt_tokens or sum(p.num_tokens for p in job.prompts),
            cached_tokens=usage.prompt_tokens_details.cached_tokens,
            completion_tokens=usage.completion_tokens,
            reused_blocks=len(reused),
            reused_namespaces=tuple(dict.fromkeys(b.namespace.hex() for b in reused)),
            reused_block_ids=tuple((b.block_id, b.namespace.hex()) for b in reused),
            outcome=outcome,
            error_code=code,
            trace_id=None,
        )

    async def _append(self, entry: AuditEntry, job: Job | None) -> None:
        """Durable before it returns: the writer resolves the future after its commit."""
        # Metrics and the trace first: the record carries the trace id.
        # Public cached tokens count once per prompt, as the response's usage counts them.
        public = (usage_of(job, job.outputs).prompt_tokens_details.public_cached_tokens
                  if job else 0)
        entry = self.rt.observability.complete(entry, job.outputs if job else (), public)
        await self.rt.meter.finish(entry.request_id)  # settle budgets, note cache writes
        await self.rt.audit_writer.write(entry)
