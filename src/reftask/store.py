"""The ``TaskStore`` protocol: what the manager needs from a database, and its contract."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from reftask.models import EventRecord, NewEvent, TaskRecord, TaskStatus


class TaskStore(Protocol):
    """A task table and a per-task event tape, in a real database.

    Contract (both adapters pass one test suite, ``tests/test_store_contract.py``):

    * ``create_task`` inserts a PENDING row; ``set_status`` overwrites the status and commits.
    * ``append_event`` assigns the next per-task ``seq`` (1, 2, 3, ... no gaps, no duplicates)
      under an append lock that holds across connections and processes, and returns the current
      max seq. Under that lock it reads the row's status and max(seq) in one query. If the event
      is not ``final`` and the row is already terminal (:data:`TERMINAL_STATUS_VALUES`), it drops
      the event: nothing is written, the drop is logged at DEBUG, the event dict is left
      unstamped, and the return value is the current max seq. This is what keeps ``final`` last:
      the manager commits the terminal status immediately before it appends ``final``, so a late
      write from a worker thread that outlived a cancel finds the row terminal and is dropped.
      ``final`` itself is never dropped.
    * On an appended event the store stamps ``seq`` and ``ts`` into the dict it was given.
    * ``list_unfinished`` returns the ids of the tasks a crash may have left unfinished, oldest
      first: rows still PENDING or RUNNING, and terminal rows with no ``final`` on their tape
      (the manager died between committing the status and appending ``final``). Given
      ``among``, only those of the given ids (unknown ids are ignored), read from those tasks'
      rows alone, so its cost does not grow with the other tasks the database holds; without
      it, every task in the database is read.
    * Every write reaches the control points of :mod:`reftask.points` (``create.*``,
      ``status.*``, ``append.*``), declaring the lock it takes with ``acquires`` and the lock it
      holds with ``holds``; each write ends at a point that holds no lock.
    * Operations on an unknown task id raise :class:`UnknownTaskError`.
    """

    name: str

    async def create_task(self, task_id: str) -> TaskRecord: ...

    async def set_status(self, task_id: str, status: TaskStatus) -> None: ...

    async def append_event(self, task_id: str, event: NewEvent) -> int: ...

    async def get_task(self, task_id: str) -> TaskRecord: ...

    async def list_events(self, task_id: str) -> list[EventRecord]: ...

    async def list_unfinished(self, among: Collection[str] | None = None) -> list[str]: ...

    async def close(self) -> None: ...
