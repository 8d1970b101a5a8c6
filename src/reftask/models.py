"""Task rows, event kinds and the shapes the stores read and write."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Required, TypedDict


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATUS_VALUES: frozenset[str] = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)
"""A row in one of these statuses is finished: its tape ends with exactly one ``final``."""


class EventKind(StrEnum):
    TASK_STARTED = "task_started"
    PROGRESS = "progress"
    FINAL = "final"


class NewEvent(TypedDict, total=False):
    """An event handed to ``TaskStore.append_event``.

    The caller fills ``kind`` and ``body``. The store stamps ``seq`` and ``ts`` into the same dict
    when it appends the event, and leaves the dict untouched when it drops it.
    """

    kind: Required[str]
    body: Required[dict[str, Any]]
    seq: int
    ts: float


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    status: TaskStatus
    created_at: float
    updated_at: float

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUS_VALUES


@dataclass(frozen=True, slots=True)
class EventRecord:
    task_id: str
    seq: int
    kind: str
    body: dict[str, Any]
    ts: float


class UnknownTaskError(KeyError):
    """The store or manager has no task with this id."""
