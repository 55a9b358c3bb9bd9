"""`AsyncEngine`: the engine as asyncio sees it — submit, stream tokens, cancel, warm, drop.

A worker thread runs `EngineCore.step()` while there is work (torch releases the GIL in its
kernels, so the event loop stays responsive); each step's outputs are handed to the waiting
streams with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.engine_config import EngineConfig
from engine.engine_core import EngineCore, StepOutput
from engine.engine_stats import EngineStats
from engine.errors import EngineError, EngineNotReady, RequestAborted
from engine.messages import EngineRequest, PromptSegment, RequestResult, SamplingParams, TokenEvent
from engine.model_runner import ModelRunner
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NamespaceCacheStats:
    """Cached blocks and prefix hits of one namespace (the admin cache view)."""

    namespace: bytes
    blocks: int
    hit_tokens: int
    lookup_tokens: int

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.lookup_tokens if self.lookup_tokens else 0.0


class RequestStream:
    """Async iterator over one request's `TokenEvent`s; closing it aborts the request."""

    def __init__(self, engine: AsyncEngine, request_id: str) -> None:
        self._engine = engine
        self.request_id = request_id
        self._queue: asyncio.Queue[StepOutput] = asyncio.Queue()
        self._done = False

    def _put(self, output: StepOutput) -> None:
        self._queue.put_nowait(output)

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self

    async def __anext__(self) -> TokenEvent:
        if self._done:
            raise StopAsyncIteration
        try:
            out = await self._queue.get()
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if out.error is not None:
            self._finish()
            raise out.error
        assert out.event is not None
        if out.event.finished:
            self._finish()
        return out.event

    async def aclose(self) -> None:
        """Abort the request if it is still running (client gone); frees its blocks."""
        if not self._done:
            self._finish()
            self._engine._abort(self.request_id)

    def _finish(self) -> None:
        self._done = True
        self._engine._streams.pop(self.request_id, None)


class AsyncEngine:
    def __init__(self, runner: ModelRunner, config: EngineConfig) -> None:
        self.core = EngineCore(runner, config)
        self.runner = runner
        self.config = config
        self._streams: dict[str, RequestStream] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False
        self.weights_version = _weights_version(runner)

    @classmethod
    def load(cls, config: EngineConfig) -> AsyncEngine:
        runner = ModelRunner.load(
            config.model_dir,
            device=config.device,
            dtype=config.dtype,
            kv_cache_gib=config.kv_cache_gib,
            kv_fraction=config.kv_fraction,
            num_blocks=config.num_blocks,
            block_size=config.block_size,
            max_batch_tokens=config.max_batch_tokens,
            progress=config.progress,
            kv_dtype=config.kv_dtype,
            cuda_graphs=config.cuda_graphs,
            max_num_seqs=config.max_num_seqs,
        )
        return cls(runner, config)

    # --- properties the gateway reads ----------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        return self.runner.tokenizer

    @property
    def model_id(self) -> str:
        return self.runner.model_id

    @property
    def max_model_len(self) -> int:
        return self.runner.max_model_len

    @property
    def block_size(self) -> int:
        return self.runner.block_size

    @property
    def kv_dtype(self) -> str:
        """The KV element type, part of every namespace: "fp8", "int8", or the model dtype."""
        return self.runner.kv_dtype

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="prefixgate-engine", daemon=True)
        self._thread.start()

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking requests, let running ones finish (up to the timeout), stop the loop."""
        if self._thread is None:
            return
        self._stopping = True
        deadline = asyncio.get_running_loop().time() + drain_timeout_s
        while self.core.has_work() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for rid in list(self._streams):
            self._abort(rid)
        self._wake.set()
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.join, 5.0)

    def _run(self) -> None:
        while True:
            if not self.core.has_work():
                if self._stopping:
                    return
                self._wake.wait(timeout=0.05)
                self._wake.clear()
                continue
            try:
                outputs = self.core.step()
            except Exception:  # keep serving: the core already failed the affected requests
                log.exception("engine loop error")
                continue
            if outputs and self._loop is not None:
                self._loop.call_soon_threadsafe(self._deliver, outputs)

    def _deliver(self, outputs: list[StepOutput]) -> None:
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is not None:
                stream._put(out)

    # --- requests ------------------------------------------------------------------------------
    async def submit(self, request: EngineRequest) -> RequestStream:
        """Queue a request and return its token stream, or raise at once (invalid, overloaded)."""
        if not self.ready:
            raise EngineNotReady("the engine is not running")
        stream = RequestStream(self, request.request_id)
        self._streams[request.request_id] = stream
        try:
            self.core.add_request(request)
        except EngineError:
            self._streams.pop(request.request_id, None)
            raise
        self._wake.set()
        return stream

    async def warm(self, request_id: str, segments: Sequence[PromptSegment]) -> RequestResult:
        """Prefill `segments` into the prefix cache now; generates no token."""
        request = EngineRequest(request_id, tuple(segments), SamplingParams(max_tokens=0))
        stream = await self.submit(request)
        async for event in stream:
            if event.finished and event.result is not None:
                return event.result
        raise RequestAborted("warm-up ended without a result")

    def _abort(self, request_id: str) -> None:
        self.core.abort(request_id)
        self._wake.set()

    # --- cache and stats -----------------------------------------------------------------------
    def drop_namespaces(self, namespaces: Iterable[bytes]) -> int:
        with self.core.lock:
            return self.core.kv.drop_namespaces(namespaces)

    def set_retention(self, namespace: bytes, ttl_s: float | None, store: bool = True) -> None:
        """Per-namespace cache retention (TTL of unused prefixes) and no-store (radix/)."""
        with self.core.lock:
            self.core.tree.set_retention(namespace, ttl_s, store)

    def cache_view(self) -> list[NamespaceCacheStats]:
        with self.core.lock:
            self.core.kv.expire()
            tree = self.core.tree
            out = []
            for ns in tree.namespaces():
                st = tree.namespace_stats(ns)
                out.append(NamespaceCacheStats(ns, st.blocks, st.hit_tokens, st.lookup_tokens))
            return out

    def stats(self) -> EngineStats:
        return self.core.stats()


def _weights_version(runner: ModelRunner) -> str:
    """Short fingerprint of the checkpoint (config + weight file sizes and names)."""
    h = hashlib.sha256()
    model_dir = Path(getattr(runner, "model_dir", runner.model_id))
    for path in sorted(model_dir.glob("*")) if model_dir.is_dir() else []:
        if path.suffix in (".json", ".safetensors"):
            h.update(path.name.encode())
            h.update(str(path.stat().st_size).encode())
            if path.name == "config.json":
                h.update(path.read_bytes())
    h.update(runner.model_id.encode())
    return h.hexdigest()[:16]
