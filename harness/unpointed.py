"""The reference manager as a user's code is: every named control point off, on the
controlled loop, through the store's own driver (aiosqlite, asyncpg).

A scenario's shape becomes a plain test, the way someone outside the project would write it:
open the store, submit the tasks, cancel the planned ones (at once, for ``before-start``; once
the task has started, polling with a 1 ms sleep, for the in-flight windows; once it has its
final, for ``after-terminal``), wait for the manager, let detached writes land, and check every
task with the strand oracle. Nothing here names a point: what the controlled loop decides is
what it sees in any user's code (worker-thread jobs, timers, the drivers' requests and answers).

Crash plans need racetape's actor scheduler (a crash kills the other actors at a point), so
scenarios with one are not run here; :func:`runnable` says which are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from harness.oracle import Violation, check_task
from harness.run import RunResult, make_runner
from harness.scenario import CancelPlan, Scenario
from racetape import check
from racetape._engine.schedule import Schedule
from reftask.faults import Fault
from reftask.manager import TaskManager
from reftask.stores.base import SqlTaskStore
from reftask.stores.postgres import PostgresStore
from reftask.stores.sqlite import SqliteStore

Main = Callable[[], Coroutine[Any, Any, None]]

POLL = 0.001
"""The user's polling interval while waiting for a task to start."""
SETTLE = 1.0
"""Virtual seconds the test waits at the end, for writes still in flight to land (the
controlled loop's time moves past work still owed only by its horizon, so they do)."""


POINTS_OFF = "points-off"
"""The matrix's name for this column (a group's strategy): runs on the controlled loop, each
decision taken by the ``pct`` strategy, with no named point."""

LOOP_STRATEGY = "pct"
"""The controlled loop's strategy for these runs: a detached write that lands late needs one
connection held back over several decisions, which priorities per actor give (see
docs/drivers.md)."""


class Stranded(AssertionError):
    """The oracle found tasks left stranded: the message lists every violation."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(str(v) for v in violations))
        self.violations = violations


def runnable(scenario: Scenario) -> bool:
    """Whether the scenario has a points-off form (no crash plan)."""
    return scenario.crash is None


def program(
    scenario: Scenario,
    faults: frozenset[Fault],
    *,
    sqlite_path: Path | None = None,
    pg_dsn: str | None = None,
    pg_schema: str = "public",
) -> Main:
    """A coroutine factory: one points-off run of ``scenario`` with ``faults`` on SQLite at
    ``sqlite_path`` or on Postgres at ``pg_dsn`` (schema ``pg_schema``), for ``racetape.check``.
    It raises :class:`Stranded` when the oracle finds a violation."""
    if not runnable(scenario):
        raise ValueError(f"scenario {scenario.name!r} has a crash plan: it needs control points")
    if (sqlite_path is None) == (pg_dsn is None):
        raise ValueError("give one of sqlite_path and pg_dsn")

    async def open_store() -> SqlTaskStore:
        if sqlite_path is not None:
            return await SqliteStore.open(sqlite_path, faults=faults)
        assert pg_dsn is not None
        return await PostgresStore.open(pg_dsn, schema=pg_schema, faults=faults, max_connections=4)

    async def main() -> None:
        store = await open_store()
        try:
            await _run(store, scenario, faults)
        finally:
            await store.close()

    return main


async def _run(store: SqlTaskStore, scenario: Scenario, faults: frozenset[Fault]) -> None:
    manager = TaskManager(store, faults=faults)
    started: set[str] = set()
    runner = make_runner(scenario.runner, started)
    task_ids = [await manager.submit(runner) for _ in range(scenario.tasks)]
    cancels = [
        asyncio.create_task(_cancel(manager, plan, task_ids[plan.task - 1], started))
        for plan in scenario.cancels
    ]
    await asyncio.gather(*cancels)
    await manager.join()
    await asyncio.sleep(SETTLE)
    violations = []
    for task_id in task_ids:
        row = await store.get_task(task_id)
        tape = await store.list_events(task_id)
        violations += check_task(row, tape, runner_started=task_id in started)
    if violations:
        raise Stranded(violations)


async def _cancel(manager: TaskManager, plan: CancelPlan, task_id: str, started: set[str]) -> None:
    if plan.when == "after-terminal":
        await manager.wait(task_id)
    elif plan.when != "before-start":
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while task_id not in started:  # noqa: ASYNC110 - a user's test polls
                    await asyncio.sleep(POLL)
    await manager.cancel(task_id, via=plan.via)


async def run_points_off(
    scenario: Scenario,
    faults: frozenset[Fault],
    seed: int,
    *,
    sqlite_path: Path | None,
    pg_dsn: str | None,
    pg_schema: str | None,
    settle_timeout: float,
) -> RunResult:
    """One points-off run seeded ``seed``, on a controlled loop of its own in a worker thread
    (the caller's loop holds the harness's own store), as the runner's other runs are results.
    An error of the program other than a strand (a lost database) is raised, as ``execute``
    raises it."""
    main = program(
        scenario, faults, sqlite_path=sqlite_path, pg_dsn=pg_dsn, pg_schema=pg_schema or "public"
    )
    started = time.perf_counter()
    checked = await asyncio.to_thread(
        check, main, strategy=LOOP_STRATEGY, runs=1, seed=seed, settle_timeout=settle_timeout
    )
    (report,) = checked.runs
    violations: list[Violation] = []
    if isinstance(report.error, Stranded):
        violations = report.error.violations
    elif report.error is not None and report.schedule.outcome == "settled":
        raise report.error
    schedule = Schedule(report.schedule.decisions, report.schedule.outcome, report.schedule.problem)
    return RunResult(violations, schedule, [], [], time.perf_counter() - started)
