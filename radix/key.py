"""Turns segments into a flat token tuple and its namespace runs (the seam rule lives here)."""

from __future__ import annotations

from collections.abc import Sequence

from radix.types import Segment


class Key:
    """A key's tokens plus runs `(namespace, start, end)` that tile `[0, full)` in tokens.

    `full` is the block-aligned length; run bounds are block-aligned. `tail_namespace` owns
    the trailing partial block (for lookup statistics only; it is never cached). A plain
    slotted class: built on every lookup, so it skips the frozen dataclass' slower __init__.
    """

    __slots__ = ("full", "runs", "tail_namespace", "tokens")

    def __init__(
        self,
        tokens: tuple[int, ...],
        full: int,
        runs: tuple[tuple[bytes, int, int], ...],
        tail_namespace: bytes | None,
    ) -> None:
        self.tokens = tokens
        self.full = full
        self.runs = runs
        self.tail_namespace = tail_namespace


def build_key(segments: Sequence[Segment], block_size: int) -> Key:
    """Block i belongs to the segment holding its last token, so a seam rounds down to a block
    boundary and the block that spans it goes to the later segment."""
    if len(segments) == 1:
        ns, toks = segments[0]
        _check_namespace(ns)
        tokens = toks if type(toks) is tuple else tuple(toks)
        full = len(tokens) - len(tokens) % block_size
        runs = ((ns, 0, full),) if full else ()
        return Key(tokens, full, runs, ns if tokens else None)
    parts: list[int] = []
    runs_list: list[tuple[bytes, int, int]] = []
    tail_ns: bytes | None = None
    start = 0
    for ns, toks in segments:
        _check_namespace(ns)
        if not toks:
            continue
        parts.extend(toks)
        tail_ns = ns
        lo = start - start % block_size
        start += len(toks)
        hi = start - start % block_size
        if lo == hi:
            continue
        if runs_list and runs_list[-1][0] == ns:
            runs_list[-1] = (ns, runs_list[-1][1], hi)
        else:
            runs_list.append((ns, lo, hi))
    tokens = tuple(parts)
    full = len(tokens) - len(tokens) % block_size
    return Key(tokens, full, tuple(runs_list), tail_ns)


def _check_namespace(ns: object) -> None:
    if not isinstance(ns, bytes):
        raise TypeError(f"namespace must be bytes, got {type(ns).__name__}")
