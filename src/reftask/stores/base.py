"""What both adapters share: the append algorithm, its guard, its control points.

An adapter supplies SQL and locking (the primitives below); this class owns the contract of
:class:`reftask.store.TaskStore`, so there is one guard and one set of control points, not two.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from racetape import point
from reftask.faults import Fault
from reftask.models import (
    TERMINAL_STATUS_VALUES,
    EventKind,
    EventRecord,
    NewEvent,
    TaskRecord,
    TaskStatus,
    UnknownTaskError,
)

logger = logging.getLogger("reftask.store")


# A task left unfinished (by a crash): not terminal, or terminal without its final. The same
# SQL on both adapters; each adds how it scopes the ids (list_unfinished's among).
UNFINISHED_ROW = """(t.status IN ('PENDING', 'RUNNING')
   OR NOT EXISTS (SELECT 1 FROM events e WHERE e.task_id = t.id AND e.kind = 'final'))"""

UNFINISHED = f"SELECT id FROM tasks t WHERE {UNFINISHED_ROW} ORDER BY created_at, id"
"""Every unfinished task of the database, oldest first: linear in the tasks ever stored."""


class StoreUnavailableError(RuntimeError):
    """The database cannot be reached or opened; the message says where and how to fix it."""


class AppendTransaction(Protocol):
    """One append in progress: under the append lock unless the store runs ``unlocked-append``."""

    async def read_status_and_max_seq(self) -> tuple[str | None, int]:
        """The row's status (None if there is no row) and the tape's max seq, in one query."""
        ...

    async def insert(self, seq: int, kind: str, body: dict[str, Any], ts: float) -> None: ...


class SqlTaskStore(ABC):
    name: str

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        faults = frozenset(faults)
        self._guard = Fault.NO_TERMINAL_GUARD not in faults
        self._locked_append = Fault.UNLOCKED_APPEND not in faults

    # -- adapter primitives ------------------------------------------------------------------

    @abstractmethod
    def _lock_name(self, task_id: str) -> str:
        """The database lock an append or a status update of this task takes."""

    @abstractmethod
    def _create_lock(self, task_id: str) -> str | None:
        """The database lock inserting this task's row takes, if it can conflict with others."""

    @abstractmethod
    async def _insert_task(self, task_id: str, now: float) -> None: ...

    @abstractmethod
    async def _update_status(self, task_id: str, status: TaskStatus, now: float) -> bool:
        """Overwrite the status; False if there is no such row."""

    @abstractmethod
    def _append_transaction(
        self, task_id: str, *, locked: bool
    ) -> AbstractAsyncContextManager[AppendTransaction]:
        """Open an append: with ``locked``, take the append lock first and commit on exit."""

    @abstractmethod
    async def get_task(self, task_id: str) -> TaskRecord: ...

    @abstractmethod
    async def list_events(self, task_id: str) -> list[EventRecord]: ...

    @abstractmethod
    async def list_unfinished(self, among: Collection[str] | None = None) -> list[str]:
        """The tasks a crash may have left unfinished, oldest first (the contract is
        :meth:`reftask.store.TaskStore.list_unfinished`'s).

        Cost: with ``among``, one primary-key probe per given id, and one probe of the
        ``events_final`` index per given task whose row is terminal, whatever else the database
        holds: a run that repairs its own tasks pays the same on an empty database and on a full
        one. Without ``among`` (a manager's start-up), a pass over every task row in the
        database, with that probe for each terminal one: linear in the tasks ever stored, so
        right for a start-up and wrong for anything done once per run.
        """

    @abstractmethod
    async def close(self) -> None: ...

    # -- the contract --------------------------------------------------------------------------

    async def create_task(self, task_id: str) -> TaskRecord:
        await point("create.begin", task_id=task_id, acquires=self._create_lock(task_id))
        now = time.time()
        await self._insert_task(task_id, now)
        await point("create.done", task_id=task_id)
        return TaskRecord(task_id, TaskStatus.PENDING, now, now)

    async def set_status(self, task_id: str, status: TaskStatus) -> None:
        await point(
            "status.begin", task_id=task_id, status=str(status), acquires=self._lock_name(task_id)
        )
        if not await self._update_status(task_id, status, time.time()):
            raise UnknownTaskError(task_id)
        await point("status.committed", task_id=task_id, status=str(status))

    async def append_event(self, task_id: str, event: NewEvent) -> int:
        kind = event["kind"]
        lock = self._lock_name(task_id) if self._locked_append else None
        await point("append.begin", task_id=task_id, kind=kind, acquires=lock)
        async with self._append_transaction(task_id, locked=lock is not None) as tx:
            status, max_seq = await tx.read_status_and_max_seq()
            if status is None:
                raise UnknownTaskError(task_id)
            await point("append.locked", task_id=task_id, kind=kind, holds=lock)
            dropped = self._guard and kind != EventKind.FINAL and status in TERMINAL_STATUS_VALUES
            if not dropped:
                seq, ts = max_seq + 1, time.time()
                await tx.insert(seq, kind, event["body"], ts)
        await point("append.done", task_id=task_id, kind=kind, dropped=dropped)
        if dropped:
            logger.debug(
                "dropped %s event for task %s: row already %s, final stays last",
                kind,
                task_id,
                status,
            )
            return max_seq
        event["seq"] = seq
        event["ts"] = ts
        return seq
