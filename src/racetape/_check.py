"""The library's entry points, in the manner of shuttle's ``check_random`` / ``replay``: run a
program many times under a strategy and a seed, and get every run's schedule and the failures;
replay a recorded decision list.

A program is a coroutine factory (each call builds one run's root coroutine, with state of its
own) or, for a program that judges its own end state, a :class:`racetape._target.Target`. For
a coroutine factory a run fails when a task actor ends with an exception of its own (an
``assert`` in a task, say), or when the run does not settle: it hung, deadlocked or, replayed,
diverged from its recording. A target's run fails when its judge returns failures, or when it
does not settle.

Each call runs its runs one after another on one event loop of its own (``asyncio.run``); call
it from synchronous code (inside a running loop, use the ``race_scheduler`` fixture's
:class:`racetape._controlled.ControlledRuns`). The root coroutine must not await the actors it
starts (start them and return): see :mod:`racetape._engine.scheduler` for what an actor may
wait on. The same program, strategy and seed give the same schedules on any machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from racetape._engine.schedule import Schedule, Strategy
from racetape._engine.strategies import ExhaustiveSearch, ReplayStrategy, Search, search_named
from racetape._target import Controlled, Target, TargetRun, play

Program = Callable[[], Coroutine[Any, Any, None]] | Target[TargetRun]


@dataclass(frozen=True)
class RunReport:
    """One run: its index in the call, its schedule, and what failed (empty: it passed)."""

    index: int
    schedule: Schedule
    failures: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def decisions(self) -> list[str]:
        """The decision list :func:`replay` takes to run this interleaving again."""
        return self.schedule.choices


@dataclass(frozen=True)
class Checked:
    """Every run of a ``check_*`` call, in order, and whether a search ran out of schedules
    (exhaustive: True once every schedule ran; None for the seeded strategies)."""

    runs: list[RunReport] = field(default_factory=list)
    exhausted: bool | None = None

    @property
    def schedules(self) -> list[Schedule]:
        return [r.schedule for r in self.runs]

    @property
    def failures(self) -> list[RunReport]:
        return [r for r in self.runs if r.failed]


class _CoroutineRun:
    def __init__(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._factory = factory

    def main(self) -> Coroutine[Any, Any, None]:
        return self._factory()

    @property
    def gates(self) -> Sequence[Any]:
        return ()

    async def judge(self, schedule: Schedule) -> Sequence[object]:
        return schedule.errors


@dataclass(frozen=True)
class _CoroutineTarget:
    """A coroutine factory as a target: judged by the exceptions its task actors raised."""

    factory: Callable[[], Coroutine[Any, Any, None]]
    in_play: frozenset[str] | None
    detail_keys: Sequence[str]

    def new_run(self) -> _CoroutineRun:
        return _CoroutineRun(self.factory)

    def describe(self) -> dict[str, Any]:
        return {"program": getattr(self.factory, "__qualname__", repr(self.factory))}


def _target(
    program: Program, points: Iterable[str] | None, detail_keys: Sequence[str]
) -> Target[TargetRun]:
    if callable(program):
        in_play = None if points is None else frozenset(points)
        return _CoroutineTarget(program, in_play, tuple(detail_keys))
    return program


async def _one(
    target: Target[TargetRun], index: int, strategy: Strategy, settle_timeout: float
) -> RunReport:
    played = await play(target, Controlled(strategy, settle_timeout))
    failures = [str(f) for f in played.failures]
    if played.schedule.outcome != "settled":
        failures.append(f"{played.schedule.outcome}: {played.schedule.problem}")
    return RunReport(index, played.schedule, tuple(failures))


def check(
    program: Program,
    *,
    strategy: str = "random",
    runs: int = 100,
    seed: int = 0,
    pct_depth: int = 3,
    points: Iterable[str] | None = None,
    detail_keys: Sequence[str] = (),
    settle_timeout: float = 10.0,
    stop_at_first_failure: bool = False,
) -> Checked:
    """Run ``program`` up to ``runs`` times under the strategy named ``strategy`` (``random``,
    ``pct``, ``exhaustive``, ``fifo``; see ``racetape._engine.strategies.STRATEGIES``), run
    ``i`` seeded from ``seed`` and ``i``. ``points`` limits the decisions to those points (a
    target's own ``in_play`` wins); ``detail_keys`` names the info keys recorded beside each
    decision."""
    target = _target(program, points, detail_keys)
    search: Search = search_named(strategy, seed, pct_depth=pct_depth)

    async def campaign() -> list[RunReport]:
        reports: list[RunReport] = []
        for index in range(runs):
            chosen = search.next_strategy()
            if chosen is None:
                break
            reports.append(await _one(target, index, chosen, settle_timeout))
            search.ran(chosen)
            if stop_at_first_failure and reports[-1].failed:
                break
        return reports

    reports = asyncio.run(campaign())
    exhausted = search.exhausted if isinstance(search, ExhaustiveSearch) else None
    return Checked(reports, exhausted)


def check_random(program: Program, *, runs: int = 100, seed: int = 0, **options: Any) -> Checked:
    """:func:`check` with the ``random`` strategy: uniform among the actors that may go."""
    return check(program, strategy="random", runs=runs, seed=seed, **options)


def check_pct(
    program: Program, *, runs: int = 100, seed: int = 0, depth: int = 3, **options: Any
) -> Checked:
    """:func:`check` with ``pct`` (probabilistic concurrency testing) of bug depth ``depth``."""
    return check(program, strategy="pct", runs=runs, seed=seed, pct_depth=depth, **options)


def check_exhaustive(program: Program, *, max_runs: int = 10_000, **options: Any) -> Checked:
    """:func:`check` with the exhaustive search: every schedule, depth first, at most
    ``max_runs`` of them (``Checked.exhausted`` says whether that was all)."""
    return check(program, strategy="exhaustive", runs=max_runs, **options)


def replay(
    program: Program,
    decisions: Sequence[str],
    *,
    points: Iterable[str] | None = None,
    detail_keys: Sequence[str] = (),
    settle_timeout: float = 10.0,
) -> RunReport:
    """Run ``program`` once with a recorded decision list (:attr:`RunReport.decisions`);
    ``diverged`` (a failure) if the program no longer offers those choices."""
    target = _target(program, points, detail_keys)
    return asyncio.run(_one(target, 0, ReplayStrategy(decisions), settle_timeout))
