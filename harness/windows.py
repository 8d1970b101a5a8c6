"""Plan windows: when a planned cancel (or crash) may fire, where it landed, where it could land.

A :class:`Window` turns one plan on one task into a gate: it watches every point the run
reaches, opens when the plan's window opens and, for windows that close, makes the scheduler
fire the plan before the step that would close them.

Where a plan lands is named by what the task's actors were doing at that moment:

* ``before-start``: the run has not left its first await (seed bug 2);
* ``<write>#<n>:<sub>``: a worker-thread write of the task was live, in one of its sub-windows:

  ====================  ===================================================================
  ``not-started``       the worker thread started; the store has not been called
  ``before-lock``       the append is about to take the append lock
  ``in-flight``         status and max(seq) read under the lock; insert and commit to come
  ``committed``         committed (or dropped); the result not yet handed back
  ====================  ===================================================================

* ``run:<point>``: the run was at one of its own points (``run:status.begin(status=RUNNING)``);
* ``after-terminal``: the run had ended.

:func:`possible_landings` lists every name a plan can land on, given the scenario's shape and
the points in play: the denominator of cancel-window coverage.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Protocol

from harness.scenario import DETAIL_KEYS, Scenario
from racetape._control import PointInfo
from racetape._engine.schedule import describe

WRITE_POINTS = ("write.enter", "append.begin", "append.locked", "append.done")
SUB_WINDOWS = dict(
    zip(WRITE_POINTS, ("not-started", "before-lock", "in-flight", "committed"), strict=True)
)
_WRITE_KIND = {"during-started": "task_started", "during-progress": "progress"}
_FINAL_STATUS = {"succeed": "SUCCEEDED", "fail": "FAILED", "raise": "FAILED"}


class Plan(Protocol):
    @property
    def when(self) -> str: ...

    @property
    def task(self) -> int: ...

    @property
    def progress(self) -> int: ...


class Window:
    """One plan's gate (see :class:`racetape._engine.schedule.Gate`). It guards the actor that
    reaches a point with ``plan=key``: keys are unique within a run."""

    def __init__(self, plan: Plan, task_id: str, key: str) -> None:
        self.plan = plan
        self.task_id = task_id
        self.key = key
        self.opened = asyncio.Event()  # for the jitter controller, which waits instead of gating
        self._writes: Counter[str] = Counter()
        self._write_of: dict[str, str] = {}  # write actor -> "kind#n"
        self._where: dict[str, tuple[str, PointInfo]] = {}  # this task's actors -> last point
        self._target: str | None = None
        self._run_actor: str | None = None
        if plan.when in ("before-start", "anytime"):
            self.opened.set()

    @property
    def is_open(self) -> bool:
        return self.opened.is_set()

    async def wait_open(self) -> None:
        await self.opened.wait()

    def guards(self, actor: str, point: str, info: PointInfo) -> bool:
        return info.get("plan") == self.key

    def observe(self, actor: str, point: str, info: PointInfo) -> None:
        if info.get("task_id") != self.task_id:
            return
        self._where[actor] = (point, info)
        when = self.plan.when
        if point == "run.before_try":
            self._run_actor = actor
        elif point == "write.enter":
            kind = str(info.get("kind"))
            self._writes[kind] += 1
            self._write_of[actor] = f"{kind}#{self._writes[kind]}"
            nth = self.plan.progress if kind == "progress" else 1
            if _WRITE_KIND.get(when) == kind and self._writes[kind] == nth:
                self._target = actor
                self.opened.set()
        elif point == "append.done" and info.get("kind") == "task_started":
            if when == "after-started":
                self.opened.set()
        elif point == "final.appended" and when == "after-terminal":
            self.opened.set()

    def must_precede(self, actor: str, point: str, info: PointInfo) -> bool:
        if self.plan.when == "before-start":
            return point == "run.before_try" and info.get("task_id") == self.task_id
        return actor == self._target and point == "append.done"

    def wants_decision(self, actor: str, point: str, info: PointInfo) -> bool:
        """The window's own edges are decisions: the run's first await for ``before-start``;
        every sub-window of the write for ``during-*``. Nothing else needs to be."""
        if info.get("task_id") != self.task_id:
            return False
        if self.plan.when == "before-start":
            return point == "run.before_try"
        kind = _WRITE_KIND.get(self.plan.when)
        if kind is None:
            return False
        if point == "write.enter":
            return info.get("kind") == kind
        return actor == self._target and point in SUB_WINDOWS

    def landing(self, live: set[str]) -> str:
        """Where the plan lands if it fires now (one of :func:`possible_landings`)."""
        run = self._run_actor
        if run is None or self._where[run][0] == "run.before_try":
            return "before-start"
        if run not in live:
            return "after-terminal"
        writes = [a for a in self._write_of if a in live and self._where[a][0] in SUB_WINDOWS]
        if self._target in writes:
            writes = [self._target]
        if writes:
            actor = writes[-1]
            return f"{self._write_of[actor]}:{SUB_WINDOWS[self._where[actor][0]]}"
        point, info = self._where[run]
        return f"run:{describe(point, info, DETAIL_KEYS)}"


def possible_landings(scenario: Scenario, plan: Plan) -> list[str] | None:
    """Every landing the plan can have in controlled mode, in the order the run meets them.

    None when the shape makes the list unknowable in advance (fire-and-forget writes, whose
    lifetimes are not nested in the run's).
    """
    if scenario.runner.detached:
        return None
    if plan.when == "before-start":
        return ["before-start"]
    kind = _WRITE_KIND.get(plan.when)
    if kind is not None:
        n = plan.progress if kind == "progress" else 1
        return [f"{kind}#{n}:{sub}" for sub in SUB_WINDOWS.values()]

    def decided(point: str) -> bool:
        return scenario.points is None or point in scenario.points

    def write(kind: str, n: int) -> list[str]:
        return [f"{kind}#{n}:{sub}" for point, sub in SUB_WINDOWS.items() if decided(point)]

    def run(point: str, **info: object) -> list[str]:
        return [f"run:{describe(point, info, DETAIL_KEYS)}"] if decided(point) else []

    shape = scenario.runner
    final = _FINAL_STATUS[shape.outcome]
    # Another planned cancel may have landed first: the run then finishes CANCELLED.
    others = sum(1 for c in scenario.cancels if c is not plan)
    finals = [final, *(["CANCELLED"] if others and final != "CANCELLED" else [])]
    path = ["before-start"] if decided("run.before_try") else []
    path += run("status.begin", status="RUNNING") + run("status.committed", status="RUNNING")
    path += write("task_started", 1)
    started_at = len(path)  # the first landing after task_started was handed back
    for step in range(1, shape.progress + 1):
        path += run("runner.work", step=step) if shape.work else []
        path += write("progress", step)
    for status in finals:
        path += run("status.begin", status=status) + run("status.committed", status=status)
    for point in ("append.begin", "append.locked", "append.done"):
        path += run(point, kind="final")
    for status in finals:
        path += run("final.appended", status=status)
    path.append("after-terminal")
    if plan.when == "after-started":  # opens once task_started is committed
        path = path[started_at - (1 if decided("append.done") else 0) :]
    elif plan.when == "after-terminal":
        path = path[path.index("after-terminal") - (1 if decided("final.appended") else 0) :]
    return path
