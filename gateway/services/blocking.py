"""Calling the registry's synchronous services from the event loop, in a worker thread."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in anyio's worker thread pool (SQLAlchemy calls block)."""
    call: Callable[[], T] = functools.partial(fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(call)


