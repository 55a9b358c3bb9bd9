"""Group commit for audit appends: one background thread, one transaction per batch.

Callers await `write(entry)`; the writer drains everything queued so far into one
transaction (up to `max_batch`), commits, and only then resolves each caller's future, so
an acknowledged record is durable (as durable as the database's commit) and a crash loses
only unacknowledged ones. Chain order is commit order; it stays linear beside other
appenders (`AuditStore`, other processes) because each batch locks the chain head.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from dataclasses import dataclass

from tenants.audit import append_entries, check_entry, sign_head
from tenants.audit_signing import AuditSigner
from tenants.database import Database
from tenants.schemas import AuditEntry, AuditRecordView


class WriterClosed(RuntimeError):
    """`write` after `close()`."""


@dataclass(slots=True)
class _Pending:
    entry: AuditEntry
    future: asyncio.Future[AuditRecordView]
    loop: asyncio.AbstractEventLoop


_STOP = None


class AuditWriter:
    def __init__(self, db: Database, *, signer: AuditSigner | None = None,
                 max_batch: int = 256) -> None:
        assert max_batch >= 1
        self.db = db
        self.signer = signer
        self.max_batch = max_batch
        self.batches = 0
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    async def write(self, entry: AuditEntry) -> AuditRecordView:
        """Append `entry`; returns once its transaction has committed."""
        if self._closed:
            raise WriterClosed("the audit writer is closed")
        check_entry(entry)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AuditRecordView] = loop.create_future()
        self._queue.put(_Pending(entry, future, loop))
        return await future

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, sign the head (with a signer), stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        while True:  # writes that raced with close() are refused, never left hanging
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                _resolve(late, None, WriterClosed("the audit writer is closed"))
        if self.signer is not None:
            with self.db.session() as session:
                sign_head(session, self.signer)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending] = []
            item = self._queue.get()
            while item is not _STOP:
                batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                stopping = True
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self.db.session() as session:
                views = append_entries(session, [p.entry for p in batch], self.signer)
        except Exception as exc:  # handed to every waiting caller, the thread lives on
            for pending in batch:
                _resolve(pending, None, exc)
            return
        self.batches += 1
        for pending, view in zip(batch, views, strict=True):
            _resolve(pending, view, None)


def _resolve(pending: _Pending, view: AuditRecordView | None, exc: Exception | None) -> None:
    with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody waits
        pending.loop.call_soon_threadsafe(_settle, pending.future, view, exc)


def _settle(future: asyncio.Future[AuditRecordView], view: AuditRecordView | None,
            exc: Exception | None) -> None:
    if future.done():  # the caller was cancelled; the record is stored all the same
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert view is not None
        future.set_result(view)
