"""The group-commit audit writer that also adds each batch's usage to the rollups.

The rollup increments go into the very transaction that chains the batch's audit records, so a
rollup never counts a record that is not stored, nor misses one that is: the rollups equal a
recomputation from the audit trail by construction, crash or not. What the audit record does
not hold (tokens newly written to the prefix cache) is handed over beforehand with
`note_cache_writes(request_id, tokens)`.
"""

from __future__ import annotations

import threading

from tenants.audit import append_entries
from tenants.audit_signing import AuditSigner
from tenants.audit_writer import AuditWriter, _Pending, _resolve
from tenants.database import Database
from tenants.usage import add_usage, delta_of


class MeteredAuditWriter(AuditWriter):
    def __init__(self, db: Database, *, signer: AuditSigner | None = None,
                 max_batch: int = 256) -> None:
        self._cache_writes: dict[str, int] = {}
        self._notes_lock = threading.Lock()
        super().__init__(db, signer=signer, max_batch=max_batch)

    def note_cache_writes(self, request_id: str, tokens: int) -> None:
        """Tokens the request wrote to the prefix cache, counted with its audit record."""
        if tokens:
            with self._notes_lock:
                self._cache_writes[request_id] = tokens

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self.db.session() as session:
                views = append_entries(session, [p.entry for p in batch], self.signer)
                with self._notes_lock:
                    writes = [self._cache_writes.pop(v.request_id, 0) for v in views]
                add_usage(session, [delta_of(v, w) for v, w in zip(views, writes, strict=True)])
        except Exception as exc:  # handed to every waiting caller, the thread lives on
            for pending in batch:
                _resolve(pending, None, exc)
            return
        self.batches += 1
        for pending, view in zip(batch, views, strict=True):
            _resolve(pending, view, None)
