"""Waiting requests, one FIFO per tenant, served round-robin across tenants.

One tenant flooding the queue only lengthens its own line: admission takes the head of each
tenant's line in turn, so queue position says nothing about other tenants' traffic.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator

from engine.sequence import Sequence


class FairQueue:
    def __init__(self) -> None:
        self._lines: OrderedDict[str, deque[Sequence]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, seq: Sequence) -> None:
        self._lines.setdefault(seq.tenant, deque()).append(seq)
        self._size += 1

    def push_front(self, seq: Sequence) -> None:
        """Re-queue a preempted sequence ahead of its tenant's line."""
        self._lines.setdefault(seq.tenant, deque()).appendleft(seq)
        self._size += 1

    def heads(self) -> Iterator[Sequence]:
        """Each tenant's first waiting sequence, in round-robin order."""
        for line in list(self._lines.values()):
            if line:
                yield line[0]

    def pop(self, seq: Sequence) -> None:
        """Remove a tenant's head and move that tenant to the back of the rotation."""
        line = self._lines[seq.tenant]
        assert line[0] is seq
        line.popleft()
        self._size -= 1
        if line:
            self._lines.move_to_end(seq.tenant)
        else:
            del self._lines[seq.tenant]

    def remove(self, seq: Sequence) -> bool:
        line = self._lines.get(seq.tenant)
        if line is None or seq not in line:
            return False
        line.remove(seq)
        self._size -= 1
        if not line:
            del self._lines[seq.tenant]
        return True

    def __iter__(self) -> Iterator[Sequence]:
        for line in self._lines.values():
            yield from line
