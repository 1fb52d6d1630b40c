"""The `report` block of print requests, kept in step with the outbox row that carries it.

The outbox calls `hook` on the writer thread, inside the transaction that moves an
`imprimo-report` row, and `apply` on the loop after that commit.
"""

from __future__ import annotations

import sqlite3

import orjson

from gateway.core.ports import Clock
from gateway.core.printing import ErrorCode, Report, ReportError, ReportStatus
from gateway.services.outbox.policy import HookEvent
from gateway.services.printing.queue import PrintQueue
from gateway.store import printing as repo


class ReportTracker:
    def __init__(self, queue: PrintQueue, clock: Clock) -> None:
        self._queue = queue
        self._clock = clock
        self._updates: list[tuple[str, Report]] = []  # filled on the writer thread

    def hook(
        self,
        conn: sqlite3.Connection,
        ref: str,
        event: str,
        code: str | None,
        message: str | None,
        attempts: int,
    ) -> None:
        now = self._clock.now()
        updates: list[tuple[str, Report]] = []
        for rid in orjson.loads(ref or "[]"):
            current = repo.load_request_by_id(conn, rid)
            if current is None:
                continue
            rep = current.report
            error = None if code is None else ReportError(_error_code(code), message, now)
            if event is HookEvent.SENDING:
                rep = Report(rep.enabled, attempts, ReportStatus.SENDING, now, rep.error)
            elif event is HookEvent.DELIVERED:
                rep = Report(rep.enabled, attempts, ReportStatus.ARCHIVED, now, None)
            elif event is HookEvent.RETRY:
                rep = Report(rep.enabled, attempts, ReportStatus.QUEUEING, now, error)
            else:  # dead
                rep = Report(rep.enabled, attempts, ReportStatus.ARCHIVED, now, error)
            repo.save_report(conn, rid, rep)
            updates.append((rid, rep))
        self._updates.extend(updates)  # only once every write above succeeded

    def apply(self) -> None:
        """On the loop after the outbox's commit: memory catches up with the report blocks."""
        updates, self._updates[:] = list(self._updates), []
        open_ = self._queue.open
        for rid, rep in updates:
            if (r := open_.get(rid)) is not None:
                open_[rid] = r.evolve(report=rep)


def _error_code(code: str) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN
