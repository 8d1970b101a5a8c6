"""The target seam: what racetape runs, one run at a time, and how one run is played.

A :class:`Target` is the program under test as racetape sees it. For each run it builds a fresh
:class:`TargetRun`: the run's root coroutine (the actor ``main``), the gates of the planned
actions it starts (see :class:`racetape._engine.schedule.Gate`), and, once the run settled, its
judgement: the failures found (empty when it passed). The target also says which points are
decisions, which info keys tell two visits of a point apart, and describes itself for traces.

:func:`play` is the one place a run is played: under the controlled scheduler or in jitter
mode, judged only when it settled (a run that hung, deadlocked or diverged is not judged: its
state is whatever the abandoned actors left).
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from racetape._engine.jitter import JITTER_MAX_DELAY, Jitter
from racetape._engine.schedule import Gate, Schedule, Strategy
from racetape._engine.scheduler import Scheduler


class TargetRun(Protocol):
    """One run of a target, built fresh for it."""

    def main(self) -> Coroutine[Any, Any, None]:
        """The run's root coroutine. It must not await the actors it starts (start them and
        return): the scheduler cannot see a wait on another actor."""
        ...

    @property
    def gates(self) -> Sequence[Gate]:
        """The gates of the planned actions this run starts (watched from its first point)."""
        ...

    async def judge(self, schedule: Schedule) -> Sequence[object]:
        """The failures of the settled run (empty: it passed)."""
        ...


RunT = TypeVar("RunT", bound=TargetRun, covariant=True)


class Target(Protocol[RunT]):
    """A program under test, as racetape runs it."""

    @property
    def in_play(self) -> frozenset[str] | None:
        """The points that are decisions (None: every point)."""
        ...

    @property
    def detail_keys(self) -> Sequence[str]:
        """The info keys that tell two visits of one point apart (see ``describe``)."""
        ...

    def new_run(self) -> RunT:
        """A fresh run: nothing it holds is shared with an earlier run's."""
        ...

    def describe(self) -> dict[str, Any]:
        """What a trace records of the target: enough to build it again."""
        ...


@dataclass(frozen=True)
class Controlled:
    """Controlled mode with this strategy (one instance per run)."""

    strategy: Strategy
    settle_timeout: float = 10.0


@dataclass(frozen=True)
class Jittered:
    """Jitter mode: seeded delays, real OS scheduling."""

    seed: int
    max_delay: float = JITTER_MAX_DELAY
    settle_timeout: float = 30.0


Mode = Controlled | Jittered

PlayedRunT = TypeVar("PlayedRunT", bound=TargetRun)


@dataclass
class Played(Generic[PlayedRunT]):
    """One played run: the target's run object, its schedule, and its failures (judged only
    when the schedule settled; empty otherwise)."""

    run: PlayedRunT
    schedule: Schedule
    failures: Sequence[object]
    elapsed: float


async def play(target: Target[PlayedRunT], mode: Mode) -> Played[PlayedRunT]:
    """Build one run of ``target``, play it in ``mode`` on the running loop, and judge it."""
    started_at = time.perf_counter()
    run = target.new_run()
    controller: Scheduler | Jitter
    if isinstance(mode, Controlled):
        controller = Scheduler(
            mode.strategy,
            in_play=target.in_play,
            settle_timeout=mode.settle_timeout,
            detail_keys=target.detail_keys,
        )
    else:
        controller = Jitter(mode.seed, max_delay=mode.max_delay, settle_timeout=mode.settle_timeout)
    for gate in run.gates:
        controller.watch(gate)
    schedule = await controller.run(run.main())
    failures = await run.judge(schedule) if schedule.outcome == "settled" else []
    return Played(run, schedule, failures, time.perf_counter() - started_at)
