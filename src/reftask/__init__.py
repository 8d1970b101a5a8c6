"""reftask: the reference asyncio task manager that racetape exercises.

It is a small, real system: tasks stored in SQLite (aiosqlite) or Postgres (asyncpg), an event tape
per task whose last event is always ``final``, progress written from worker threads through
``asyncio.to_thread`` exactly as in the pull request racetape was built from, and named faults that
put back the bugs that pull request found. It knows nothing of racetape's engine: it only calls
the named control points of :mod:`reftask.points`, through :func:`racetape.point`.
"""

from reftask.faults import Fault, UnknownFaultError, parse_faults
from reftask.manager import (
    CancelToken,
    Reporter,
    RunContext,
    TaskCancelled,
    TaskFailed,
    TaskManager,
)
from reftask.models import (
    TERMINAL_STATUS_VALUES,
    EventKind,
    EventRecord,
    NewEvent,
    TaskRecord,
    TaskStatus,
    UnknownTaskError,
)
from reftask.store import TaskStore

__all__ = [
    "TERMINAL_STATUS_VALUES",
    "CancelToken",
    "EventKind",
    "EventRecord",
    "Fault",
    "NewEvent",
    "Reporter",
    "RunContext",
    "TaskCancelled",
    "TaskFailed",
    "TaskManager",
    "TaskRecord",
    "TaskStatus",
    "TaskStore",
    "UnknownFaultError",
    "UnknownTaskError",
    "parse_faults",
]
