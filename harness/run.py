"""One run: a fresh task (or several), the scenario's runner and cancel plan, drain, oracle.

:class:`ScenarioTarget` is the reference harness's side of racetape's target seam
(:mod:`racetape._target`): it builds each run's root coroutine and judges the settled run with
the strand oracle. :func:`execute` is the library call every mode, strategy, test and CLI
command goes through.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.oracle import Violation, check_task
from harness.scenario import CRASH_DONE, DETAIL_KEYS, CancelVia, RunnerShape, Scenario
from harness.windows import Window
from racetape import point
from racetape._engine.actors import current_tracker
from racetape._engine.schedule import Schedule
from racetape._target import Mode, play
from reftask.faults import Fault
from reftask.manager import RunContext, Runner, TaskFailed, TaskManager
from reftask.store import TaskStore
from reftask.stores.base import SqlTaskStore


@dataclass
class RunResult:
    violations: list[Violation]
    schedule: Schedule
    task_ids: list[str]
    landings: list[str]
    elapsed: float
    runner_started: set[str] = field(default_factory=set)

    @property
    def unsettled(self) -> bool:
        """The run did not settle: it hung, deadlocked or (replayed) diverged. Result documents
        count these runs under ``hung``."""
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


def target_description(scenario: Scenario, faults: frozenset[Fault]) -> dict[str, Any]:
    """What a trace records of a :class:`ScenarioTarget`: the scenario itself and the faults
    (the adapter is the caller's: it is the store's kind, not the target's)."""
    return {"scenario": scenario.to_toml_dict(), "faults": sorted(f.value for f in faults)}


class ScenarioTarget:
    """A scenario on an open store with a fault set: the reference harness's
    :class:`racetape._target.Target`. Each run gets fresh task ids, windows and manager."""

    def __init__(self, store: SqlTaskStore, scenario: Scenario, faults: frozenset[Fault]) -> None:
        self.store = store
        self.scenario = scenario
        self.faults = faults

    @property
    def in_play(self) -> frozenset[str] | None:
        return self.scenario.points

    @property
    def detail_keys(self) -> Sequence[str]:
        return DETAIL_KEYS

    def new_run(self) -> ScenarioRun:
        return ScenarioRun(self)

    def describe(self) -> dict[str, Any]:
        return target_description(self.scenario, self.faults)


class ScenarioRun:
    """One run of a :class:`ScenarioTarget`: its tasks, its planned cancels and crash, and the
    oracle's verdict on every task once the run settled."""

    def __init__(self, target: ScenarioTarget) -> None:
        scenario = target.scenario
        self.target = target
        self.task_ids = [uuid.uuid4().hex for _ in range(scenario.tasks)]
        self.cancels = [
            (Window(plan, self.task_ids[plan.task - 1], f"cancel{i}"), plan.via)
            for i, plan in enumerate(scenario.cancels, start=1)
        ]
        self.crash_window = None
        if scenario.crash is not None:
            self.crash_window = Window(
                scenario.crash, self.task_ids[scenario.crash.task - 1], "crash"
            )
        self.started: set[str] = set()
        self.violations: list[Violation] = []

    @property
    def gates(self) -> list[Window]:
        crash = [self.crash_window] if self.crash_window is not None else []
        return [w for w, _ in self.cancels] + crash

    def main(self) -> Coroutine[Any, Any, None]:
        target = self.target
        manager = TaskManager(target.store, faults=target.faults)
        runner = make_runner(target.scenario.runner, self.started)
        return drive(manager, runner, self.task_ids, self.cancels, self.crash_window, target.faults)

    async def judge(self, schedule: Schedule) -> list[Violation]:
        for task_id in self.task_ids:
            row = await self.target.store.get_task(task_id)
            tape = await self.target.store.list_events(task_id)
            self.violations += check_task(row, tape, runner_started=task_id in self.started)
        return self.violations


async def execute(
    store: SqlTaskStore, scenario: Scenario, faults: frozenset[Fault], mode: Mode
) -> RunResult:
    """Run the scenario once on ``store`` (opened with ``faults``) and judge it once it settled."""
    played = await play(ScenarioTarget(store, scenario, faults), mode)
    run, schedule = played.run, played.schedule
    landings = [d.landing for d in schedule.decisions if d.landing is not None]
    landings += [e["landing"] for e in schedule.timeline if e["event"] == "fire"]
    return RunResult(run.violations, schedule, run.task_ids, landings, played.elapsed, run.started)
