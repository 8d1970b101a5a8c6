"""racetape: deterministic race reproduction for asyncio code, as a library.

The public API is what ``__all__`` lists; every other module is private (``racetape._engine``,
``racetape._control``, ...), and ``racetape.pytest_plugin`` is the pytest plugin (entry point
``pytest11``).

* :func:`check` (and :func:`check_random`, :func:`check_pct`, :func:`check_exhaustive`) runs
  a coroutine factory, your code unmodified, on the controlled event loop
  (:class:`ControlledLoop`, also a loop factory for ``asyncio.Runner``): every worker-thread
  job, timer and foreign-thread callback is a decision; :func:`replay` runs a printed schedule
  (``"3.1"``) again. A run that cannot go on is a :class:`Deadlock` or :class:`Hung`.
* Code under test may mark finer control points: :func:`point` on the event loop,
  :func:`point_blocking` in a worker thread (with ``acquires=`` / ``holds=`` lock declarations
  where a point sits before or inside a database transaction).
* the same calls with ``engine="points"``, or on a :class:`Target`, run on the actor scheduler,
  one actor at a time between those points, and return every run's :class:`Schedule` and the
  failing runs (:class:`Checked`).
* :func:`replay` runs one recorded decision list again.
"""

import racetape.drivers  # noqa: F401  # registers the driver adapters with the engine
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
from racetape._engine.loop import ControlledLoop, Deadlock, Hung
from racetape._engine.schedule import Decision, Schedule
from racetape._target import Target, TargetRun

__all__ = [
    "Checked",
    "ControlledLoop",
    "Deadlock",
    "Decision",
    "Hung",
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
