"""SSE framing and the merge of n engine streams (closing it closes every stream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from engine.messages import TokenEvent
from gateway.stream import DONE, merge_streams, sse


class ListStream:
    """A stand-in for one engine request's event stream."""

    def __init__(self, rid: str, texts: list[str], fail: bool = False, delay: float = 0) -> None:
        self.rid, self.texts, self.fail, self.delay = rid, texts, fail, delay
        self.closed = False

    async def _events(self) -> AsyncIterator[TokenEvent]:
        for i, text in enumerate(self.texts):
            await asyncio.sleep(self.delay)
            yield TokenEvent(self.rid, i, text, finished=i == len(self.texts) - 1)
        if self.fail:
            raise RuntimeError("engine step failed")

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self._events()

    async def aclose(self) -> None:
        self.closed = True


def test_sse_frames() -> None:
    frame = sse({"a": 1})
    assert frame == b'data: {"a":1}\n\n' and msgspec.json.decode(frame[6:]) == {"a": 1}
    assert DONE == b"data: [DONE]\n\n"


async def test_merge_keeps_each_choice_in_order_and_closes_all() -> None:
    streams = [ListStream("a", ["1", "2", "3"], delay=0.001), ListStream("b", ["x", "y"])]
    got = [(i, ev.text) async for i, ev in merge_streams(streams)]
    assert [t for i, t in got if i == 0] == ["1", "2", "3"]
    assert [t for i, t in got if i == 1] == ["x", "y"]
    assert all(s.closed for s in streams)


async def test_merge_propagates_errors_and_closes_on_early_exit() -> None:
    streams = [ListStream("a", ["1"], fail=True), ListStream("b", ["x"] * 50, delay=0.01)]
    with pytest.raises(RuntimeError):
        async for _ in merge_streams(streams):
            pass
    assert all(s.closed for s in streams)
    single = ListStream("c", ["1", "2", "3"])
    merged = merge_streams([single])
    assert (await anext(merged))[1].text == "1"
    await merged.aclose()
    assert single.closed
