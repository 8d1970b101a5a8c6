"""The library's entry points, in the manner of shuttle's ``check_random`` / ``replay``: run a
program many times under a strategy and a seed, and get every run's schedule and the failures;
replay a recorded decision list.

Two engines, one API:

* a coroutine factory (each call builds one run's root coroutine: your own code, unmodified)
  runs on the controlled event loop (:mod:`racetape._engine.loop`): every worker-thread job,
  timer and foreign-thread callback is a decision. A run fails when the coroutine raises, or the
  loop finds a deadlock or a hang. The default strategy is ``search``: fewest deviations from
  first come, first served first. ``engine="points"`` runs it on the actor scheduler instead,
  which decides only at named control points (:func:`racetape.point`);
* a :class:`racetape._target.Target` (a program that judges its own end state: the reference
  harness's scenarios) runs on the actor scheduler. A run fails when its judge returns failures,
  or when it does not settle.

Each call runs its runs one after another on event loops of its own; call it from synchronous
code (inside a running loop, use the ``race_scheduler`` fixture's
:class:`racetape._race_scheduler.RaceScheduler`). The same program, strategy and seed give the same
schedules on any machine, except where a run says it was partly uncontrolled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from racetape._engine.checking import Main, run_once
from racetape._engine.deviations import (
    Deviations,
    Diverged,
    format_schedule,
    parse_schedule,
    schedule_of,
)
from racetape._engine.loop import Deadlock, Hung
from racetape._engine.schedule import Decision, Ending, Schedule, Strategy, StrategyRefused
from racetape._engine.strategies import LOOP_STRATEGIES, ReplayStrategy, Search, search_named
from racetape._target import Controlled, Target, TargetRun, play

Program = Callable[[], Coroutine[Any, Any, Any]] | Target[TargetRun]


@dataclass(frozen=True)
class RunReport:
    """One run: its index in the call, its schedule, and what failed (empty: it passed)."""

    index: int
    schedule: Schedule
    failures: tuple[str, ...]
    error: BaseException | None = None  # the loop's: the exception the run ended with
    uncontrolled: Mapping[str, int] = field(default_factory=dict)  # the loop's coverage

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def decisions(self) -> list[str]:
        """The decision list :func:`replay` takes to run this interleaving again."""
        return self.schedule.choices

    @property
    def token(self) -> str:
        """The loop's schedule as a failure prints it (``"3.1"``): :func:`replay` takes it."""
        return format_schedule(schedule_of(self.schedule.decisions))

    @property
    def deviations(self) -> list[Decision]:
        """The decisions that did not go first come, first served."""
        return [d for d in self.schedule.decisions if d.index]


@dataclass(frozen=True)
class Checked:
    """Every run of a ``check_*`` call, in order, and whether a search ran out of schedules
    (exhaustive: True once every schedule ran; None for the seeded strategies)."""

    runs: list[RunReport] = field(default_factory=list)
    exhausted: bool | None = None
    covered: str = ""  # what the search's runs covered, in one clause

    @property
    def partly_uncontrolled(self) -> dict[str, int]:
        """What no run could control, summed over the runs: a verdict is only this honest."""
        found: dict[str, int] = {}
        for run in self.runs:
            for what, n in run.uncontrolled.items():
                found[what] = found.get(what, 0) + n
        return found

    @property
    def clean(self) -> bool:
        """No failure and nothing uncontrolled: only then may the code be called clean."""
        return not self.failures and not self.partly_uncontrolled

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
    strategy: str | None = None,
    runs: int = 100,
    seed: int = 0,
    pct_depth: int = 3,
    engine: Engine | None = None,
    points: Iterable[str] | None = None,
    detail_keys: Sequence[str] = (),
    settle_timeout: float = 10.0,
    stop_at_first_failure: bool = False,
) -> Checked:
    """Run ``program`` up to ``runs`` times under the strategy named ``strategy`` (see
    ``racetape._engine.strategies.STRATEGIES``; default ``search`` on the loop, ``random`` on
    the actor scheduler), run ``i`` seeded from ``seed`` and ``i``. ``engine`` is ``"loop"``
    (a coroutine factory's default) or ``"points"`` (a target's only one); ``points`` and
    ``detail_keys`` are the actor scheduler's (which points are decisions, which info keys are
    recorded beside them)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    engine = _engine_of(program, engine)
    name = strategy or ("search" if engine == "loop" else "random")
    if engine == "loop" and name not in LOOP_STRATEGIES:
        raise ValueError(
            f"strategy {name!r} does not run on the loop: {', '.join(LOOP_STRATEGIES)}"
        )
    search: Search = search_named(name, seed, pct_depth=pct_depth)
    if engine == "loop":
        factory: Main = program  # type: ignore[assignment]  # _engine_of: a coroutine factory
        reports = _campaign(
            search,
            runs,
            stop_at_first_failure,
            lambda index, chosen: _on_loop(factory, index, chosen, settle_timeout),
        )
    else:
        target = _target(program, points, detail_keys)
        with asyncio.Runner() as runner:  # the actor scheduler's runs share one event loop
            reports = _campaign(
                search,
                runs,
                stop_at_first_failure,
                lambda index, chosen: runner.run(_one(target, index, chosen, settle_timeout)),
            )
    exhausted = search.exhausted if name in ("exhaustive", "search") else None
    return Checked(reports, exhausted, search.covered())


Engine = Literal["loop", "points"]


def _campaign(
    search: Search,
    runs: int,
    stop_at_first_failure: bool,
    run: Callable[[int, Strategy], RunReport],
) -> list[RunReport]:
    """Up to ``runs`` runs, each with the strategy ``search`` hands out, until it has none."""
    reports: list[RunReport] = []
    for index in range(runs):
        chosen = search.next_strategy()
        if chosen is None:
            break
        reports.append(run(index, chosen))
        search.ran(chosen)
        if stop_at_first_failure and reports[-1].failed:
            break
    return reports


def _engine_of(program: Program, engine: Engine | None) -> Engine:
    if engine not in (None, "loop", "points"):
        raise ValueError(f"engine must be 'loop' or 'points', got {engine!r}")
    if not callable(program):
        if engine == "loop":
            raise ValueError("a Target runs on the actor scheduler: engine='points'")
        return "points"
    return engine or "loop"


def _on_loop(main: Main, index: int, strategy: Strategy, settle_timeout: float) -> RunReport:
    run = run_once(main, strategy, settle_timeout=settle_timeout)
    execution, error = run.execution, run.error
    if isinstance(error, Deadlock):
        outcome: Ending = "deadlock"
    elif isinstance(error, Hung):
        outcome = "hung"
    elif isinstance(error, Diverged | StrategyRefused):
        outcome = "diverged"
    else:
        outcome = "settled"
    schedule = Schedule(
        decisions=list(execution.decisions),
        outcome=outcome,
        problem=None if outcome == "settled" else str(error),
    )
    failures = () if error is None else (f"{type(error).__name__}: {error}",)
    return RunReport(index, schedule, failures, error, dict(execution.uncontrolled))


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
    decisions: Sequence[str] | str,
    *,
    engine: Engine | None = None,
    points: Iterable[str] | None = None,
    detail_keys: Sequence[str] = (),
    settle_timeout: float = 10.0,
) -> RunReport:
    """Run ``program`` once with a recorded decision list (:attr:`RunReport.decisions`), or, on
    the loop, the schedule a failure printed (:attr:`RunReport.token`, ``"3.1"``);
    ``diverged`` (a failure) if the program no longer offers those choices."""
    engine = _engine_of(program, engine)
    if isinstance(decisions, str):
        if engine != "loop":
            raise ValueError("a schedule string replays on the loop; give the decision list")
        strategy: Strategy = Deviations(parse_schedule(decisions))
    else:
        strategy = ReplayStrategy(decisions)
    if engine == "loop":
        return _on_loop(program, 0, strategy, settle_timeout)  # type: ignore[arg-type]
    target = _target(program, points, detail_keys)
    return asyncio.run(_one(target, 0, strategy, settle_timeout))
