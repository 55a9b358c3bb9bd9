"""Server-sent events: OpenAI's `data: {json}` frames, `data: [DONE]`, and merging n streams.

`merge_streams` interleaves the token events of the n engine requests of one API request
(`n > 1`) as they arrive, tagged with their choice index; closing the merged iterator (client
gone) closes every engine stream, which aborts the requests and frees their blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import msgspec

from engine.messages import TokenEvent

DONE = b"data: [DONE]\n\n"
_encoder = msgspec.json.Encoder()


class EventStream(Protocol):
    def __aiter__(self) -> AsyncIterator[TokenEvent]: ...

    async def aclose(self) -> None: ...


def sse(payload: Any) -> bytes:
    """One SSE frame holding `payload` as JSON."""
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def sse_raw(json_bytes: bytes) -> bytes:
    return b"data: " + json_bytes + b"\n\n"


async def merge_streams(
    streams: Sequence[EventStream],
) -> AsyncIterator[tuple[int, TokenEvent]]:
    """(choice index, event) pairs from all streams, in arrival order; errors propagate."""
    tasks: list[asyncio.Task[None]] = []
    try:
        if len(streams) == 1:
            async for event in streams[0]:
                yield 0, event
            return
        queue: asyncio.Queue[tuple[int, TokenEvent | BaseException | None]] = asyncio.Queue()

        async def pump(index: int, stream: EventStream) -> None:
            try:
                async for event in stream:
                    queue.put_nowait((index, event))
            except Exception as exc:
                queue.put_nowait((index, exc))
            queue.put_nowait((index, None))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await stream.aclose()
