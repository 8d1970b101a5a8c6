"""Running unmodified asyncio code under control: many runs of a search, or one schedule again.

:func:`check` runs ``main()`` (a coroutine factory: a fresh coroutine each run) on a fresh
:class:`~racetape._engine.loop.ControlledLoop` per run, with the strategies a search hands out,
and returns every run's schedule and the failures, each replayable by :func:`replay` from its
schedule alone. A failure is an exception out of ``main()`` (an ``AssertionError`` of the code's
own checks, a ``TimeoutError``, ...), or a :class:`~racetape._engine.loop.Deadlock` or
:class:`~racetape._engine.loop.Hung` of the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from racetape._engine.deviations import (
    Deviations,
    Schedule,
    format_schedule,
    parse_schedule,
    schedule_of,
)
from racetape._engine.loop import HORIZON, SETTLE_TIMEOUT, ControlledLoop, Execution, Strategy
from racetape._engine.searches import new_search

Main = Callable[[], Coroutine[Any, Any, Any]]


@dataclass
class Run:
    """One controlled run: its schedule, what the loop saw, and the exception it ended with."""

    index: int
    schedule: Schedule
    execution: Execution
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def token(self) -> str:
        """The schedule as :func:`replay` and ``pytest --race-replay`` take it."""
        return format_schedule(self.schedule)


@dataclass
class Checked:
    """Every run of a :func:`check`, and what the search covered."""

    runs: list[Run] = field(default_factory=list)
    verdict: str = ""
    complete: bool = False

    @property
    def failures(self) -> list[Run]:
        return [run for run in self.runs if run.failed]

    @property
    def partly_uncontrolled(self) -> dict[str, int]:
        """What no run could control, summed over the runs: a verdict is only this honest."""
        found: dict[str, int] = {}
        for run in self.runs:
            for what, n in run.execution.uncontrolled.items():
                found[what] = found.get(what, 0) + n
        return found

    @property
    def clean(self) -> bool:
        """No failure, and nothing uncontrolled: only then may code be called clean."""
        return not self.failures and not self.partly_uncontrolled


def run_once(
    main: Main,
    strategy: Strategy,
    *,
    horizon: float = HORIZON,
    settle_timeout: float = SETTLE_TIMEOUT,
    index: int = 0,
) -> Run:
    """One run of ``main()`` on a fresh controlled loop; the exception is caught and kept."""
    loop = ControlledLoop(strategy, horizon=horizon, settle_timeout=settle_timeout)
    error: BaseException | None = None
    runner = asyncio.Runner(loop_factory=lambda: loop)
    try:
        runner.run(main())
    except Exception as exc:  # the run's own failure: kept, not raised
        error = exc
    finally:
        try:
            runner.close()
        except Exception as exc:  # cleanup of a failed run can fail too: the first one counts
            error = error or exc
    execution = loop.execution
    return Run(index, schedule_of(execution.decisions), execution, error)


def check(
    main: Main,
    *,
    runs: int = 100,
    search: str = "search",
    seed: int = 0,
    stop_at_first: bool = False,
    horizon: float = HORIZON,
    settle_timeout: float = SETTLE_TIMEOUT,
) -> Checked:
    """Run ``main()`` up to ``runs`` times under the named search (see ``SEARCHES``)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    chosen = new_search(search, seed)
    checked = Checked()
    for index in range(runs):
        strategy = chosen.next()
        if strategy is None:
            break
        run = run_once(main, strategy, horizon=horizon, settle_timeout=settle_timeout, index=index)
        chosen.record(run.schedule, run.execution.decisions)
        checked.runs.append(run)
        if run.failed and stop_at_first:
            break
    checked.complete = chosen.complete
    checked.verdict = chosen.verdict()
    return checked


def replay(
    main: Main,
    schedule: Schedule | str,
    *,
    horizon: float = HORIZON,
    settle_timeout: float = SETTLE_TIMEOUT,
) -> Run:
    """Run ``main()`` once more on the schedule a run printed (``"3.1"``, or its tuple)."""
    wanted = parse_schedule(schedule) if isinstance(schedule, str) else schedule
    return run_once(main, Deviations(wanted), horizon=horizon, settle_timeout=settle_timeout)
