"""Scenario-level control from a test of one's own: run a coroutine under racetape's scheduler.

:class:`RaceScheduler` is what the pytest fixture ``race_scheduler`` gives a test. The test
writes the scenario as a coroutine (set up a :class:`reftask.manager.TaskManager`, submit, start
a canceller, ...) and runs it with a strategy and a seed; every task it spawns and every
``asyncio.to_thread`` job is an actor, and the returned
:class:`racetape._engine.scheduler.Schedule` holds the decisions (by actor name) and how the run
ended. The same strategy and seed give the same decisions; :meth:`RaceScheduler.replay`
repeats a recorded list.

The scheduler's rules hold (see :mod:`racetape._engine.scheduler`): the coroutine must not await
an actor it started (start it and return, as ``harness.run.drive`` does), and code with no
control point runs as one step. :func:`racetape.point` adds a decision of the test's own, e.g.
right before a cancel, so the strategy chooses when the cancel lands.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from racetape._engine.schedule import Schedule, Strategy
from racetape._engine.scheduler import Scheduler
from racetape._engine.strategies import ReplayStrategy, per_run_strategy


@dataclass(frozen=True)
class RaceScheduler:
    """Runs coroutines under the controlled scheduler, one run per call, on the running loop."""

    settle_timeout: float = 10.0

    async def run(
        self,
        main: Coroutine[Any, Any, None],
        *,
        strategy: str | Strategy = "random",
        seed: int = 0,
        points: Iterable[str] | None = None,
    ) -> Schedule:
        """Run ``main`` once; ``points`` limits the decisions to those points (default: all)."""
        chosen = per_run_strategy(strategy, seed) if isinstance(strategy, str) else strategy
        scheduler = Scheduler(chosen, in_play=points, settle_timeout=self.settle_timeout)
        return await scheduler.run(main)

    async def replay(
        self,
        main: Coroutine[Any, Any, None],
        decisions: Sequence[str],
        *,
        points: Iterable[str] | None = None,
    ) -> Schedule:
        """Run ``main`` with a recorded list of choices; the outcome is ``diverged`` if the code
        no longer offers them."""
        return await self.run(main, strategy=ReplayStrategy(decisions), points=points)
