"""One run: a fresh task (or several), the scenario's runner and cancel plan, drain, oracle.

:func:`execute` is the library call every mode, strategy, test and CLI command goes through.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.oracle import Violation, check_task
from harness.scenario import CRASH_DONE, DETAIL_KEYS, CancelVia, RunnerShape, Scenario
from harness.windows import Window
from racetape import point
from racetape._engine.actors import current_tracker
from racetape._engine.jitter import DEFAULT_MAX_DELAY, Jitter
from racetape._engine.schedule import Schedule, Strategy
from racetape._engine.scheduler import Scheduler
from reftask.faults import Fault
from reftask.manager import RunContext, Runner, TaskFailed, TaskManager
from reftask.store import TaskStore
from reftask.stores.base import SqlTaskStore


@dataclass(frozen=True)
class Controlled:
    """Controlled mode with this strategy (one instance per run)."""

    strategy: Strategy
    settle_timeout: float = 10.0


@dataclass(frozen=True)
class Jittered:
    """Jitter mode: seeded delays, real OS scheduling."""

    seed: int
    max_delay: float = DEFAULT_MAX_DELAY
    settle_timeout: float = 30.0


Mode = Controlled | Jittered


@dataclass
class RunResult:
    violations: list[Violation]
    schedule: Schedule
    task_ids: list[str]
    landings: list[str]
    elapsed: float
    runner_started: set[str] = field(default_factory=set)

    @property
    def hung(self) -> bool:
        return self.schedule.outcome != "settled"

    @property
    def stranded(self) -> bool:
        return bool(self.violations)

    def task_number(self, task_id: str) -> int:
        return self.task_ids.index(task_id) + 1


def make_runner(shape: RunnerShape, started: set[str]) -> Runner:
    """The scenario's runner: ``work`` awaits before each of ``progress`` writes, then its outcome.

    It checks its cancel token before each write and at the end, as a cooperative runner does.
    A ``detached`` runner starts its writes and does not await them (fire and forget), so they
    may still be in flight when the task finishes.
    """

    async def runner(ctx: RunContext) -> None:
        started.add(ctx.task_id)
        detached = []
        for step in range(1, shape.progress + 1):
            for _ in range(shape.work):
                await point("runner.work", task_id=ctx.task_id, step=step)
            ctx.token.raise_if_cancelled()
            if shape.detached:
                detached.append(asyncio.create_task(ctx.reporter.progress(step=step)))
            else:
                await ctx.reporter.progress(step=step)
        ctx.token.raise_if_cancelled()
        if shape.outcome == "fail":
            raise TaskFailed("the scenario's runner fails")
        if shape.outcome == "raise":
            raise RuntimeError("the scenario's runner raises")

    return runner


async def cancel(manager: TaskManager, window: Window, via: CancelVia) -> None:
    """A planned cancel: waits at ``cancel.fire`` until its window lets it go, then cancels."""
    await point("cancel.fire", task_id=window.task_id, plan=window.key, via=via)
    await manager.cancel(window.task_id, via=via)


async def crash(
    store: TaskStore, faults: frozenset[Fault], window: Window, task_ids: Sequence[str]
) -> None:
    """A planned crash: in its window every other actor of the run dies, as in a dead process;
    then a fresh manager on the same store runs ``restart_cleanup`` over this run's tasks.

    Only this run's: runs share a database, and a restart that also repaired what earlier runs
    left (a fault can leave a task unfinished for good) would make a run's decisions depend on
    the runs before it, and a trace replay differently from how it was recorded."""
    await point("crash.fire", task_id=window.task_id, plan=window.key)
    tracker = current_tracker()
    assert tracker is not None, "a crash plan runs only under racetape's controllers"
    await tracker.crash_others(then=CRASH_DONE)
    await TaskManager(store, faults=faults).restart_cleanup(among=task_ids)


async def drive(
    manager: TaskManager,
    runner: Runner,
    task_ids: Sequence[str],
    cancels: Sequence[tuple[Window, CancelVia]],
    crash_window: Window | None,
    faults: frozenset[Fault],
) -> None:
    """The root actor: submit every task, start every planned cancel and crash, and end.

    It does not await them: an actor that waits on another actor (rather than at a point, on
    its own worker-thread job, or on the database) looks busy to the scheduler forever.
    """
    for task_id in task_ids:
        await manager.submit(runner, task_id=task_id)
    # The scheduler holds every actor's task, so these are not lost when drive returns.
    for window, via in cancels:
        asyncio.create_task(cancel(manager, window, via))  # noqa: RUF006
    if crash_window is not None:
        asyncio.create_task(crash(manager.store, faults, crash_window, task_ids))  # noqa: RUF006


async def execute(
    store: SqlTaskStore, scenario: Scenario, faults: frozenset[Fault], mode: Mode
) -> RunResult:
    """Run the scenario once on ``store`` (opened with ``faults``) and judge it once it settled."""
    started_at = time.perf_counter()
    task_ids = [uuid.uuid4().hex for _ in range(scenario.tasks)]
    cancels = [
        (Window(plan, task_ids[plan.task - 1], f"cancel{i}"), plan.via)
        for i, plan in enumerate(scenario.cancels, start=1)
    ]
    crash_window = None
    if scenario.crash is not None:
        crash_window = Window(scenario.crash, task_ids[scenario.crash.task - 1], "crash")
    windows = [w for w, _ in cancels] + ([crash_window] if crash_window else [])
    controller: Scheduler | Jitter
    if isinstance(mode, Controlled):
        controller = Scheduler(
            mode.strategy,
            in_play=scenario.points,
            settle_timeout=mode.settle_timeout,
            detail_keys=DETAIL_KEYS,
        )
    else:
        controller = Jitter(mode.seed, max_delay=mode.max_delay, settle_timeout=mode.settle_timeout)
    for window in windows:
        controller.watch(window)
    manager = TaskManager(store, faults=faults)
    started: set[str] = set()
    runner = make_runner(scenario.runner, started)
    schedule = await controller.run(drive(manager, runner, task_ids, cancels, crash_window, faults))
    violations: list[Violation] = []
    if schedule.outcome == "settled":
        for task_id in task_ids:
            row = await store.get_task(task_id)
            tape = await store.list_events(task_id)
            violations += check_task(row, tape, runner_started=task_id in started)
    landings = [d.landing for d in schedule.decisions if d.landing is not None]
    landings += [e["landing"] for e in schedule.timeline if e["event"] == "fire"]
    return RunResult(
        violations, schedule, task_ids, landings, time.perf_counter() - started_at, started
    )
