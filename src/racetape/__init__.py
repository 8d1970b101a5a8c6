"""racetape: deterministic race reproduction for asyncio code, as a library.

The public API is what ``__all__`` lists; every other module is private (``racetape._engine``,
``racetape._control``, ...), and ``racetape.pytest_plugin`` is the pytest plugin (entry point
``pytest11``).

* Code under test marks its control points: :func:`point` on the event loop,
  :func:`point_blocking` in a worker thread (with ``acquires=`` / ``holds=`` lock declarations
  where a point sits before or inside a database transaction).
* :func:`check_random`, :func:`check_pct`, :func:`check_exhaustive` (or :func:`check` with a
  strategy's name) run a coroutine factory, or a :class:`Target`, many times, one actor at a
  time, and return every run's :class:`Schedule` and the failing runs (:class:`Checked`).
* :func:`replay` runs one recorded decision list again.
"""

from racetape._check import (
    Checked,
    RunReport,
    check,
    check_exhaustive,
    check_pct,
    check_random,
    replay,
)
from racetape._control import point, point_blocking
from racetape._engine.schedule import Decision, Schedule
from racetape._target import Target, TargetRun

__all__ = [
    "Checked",
    "Decision",
    "RunReport",
    "Schedule",
    "Target",
    "TargetRun",
    "check",
    "check_exhaustive",
    "check_pct",
    "check_random",
    "point",
    "point_blocking",
    "replay",
]
