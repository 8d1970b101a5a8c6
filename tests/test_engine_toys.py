"""The engine on toy programs with no reftask in them: a few tasks, worker threads and named
points, run through the public API only (``import racetape``), as shuttle's and loom's own
tests run their runtimes on plain code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import racetape


@dataclass
class Claims:
    owner: str | None = None


def claim_race(*, atomic: bool) -> Coroutine[Any, Any, None]:
    """Two tasks each claim one slot. Racy: check, point, set, point, assert the claim held.
    Atomic: check and set with no point between them (nothing can run in between)."""
    state = Claims()

    async def claim(name: str) -> None:
        if atomic:
            await racetape.point("start")
            if state.owner is None:
                state.owner = name
        else:
            if state.owner is None:
                await racetape.point("checked")
                state.owner = name
        await racetape.point("claimed")
        if not atomic or state.owner == name:
            assert state.owner == name, f"{name} lost its claim to {state.owner}"

    async def main() -> None:
        for name in ("a", "b"):
            asyncio.create_task(claim(name))  # noqa: RUF006 (the engine holds every actor's task)

    return main()


def test_exhaustive_search_counts_every_schedule_and_the_failing_ones() -> None:
    """Each task passes two decision points, so a schedule is an order of a1 < a2 and b1 < b2:
    C(4, 2) = 6 of them. Racy, both tasks have checked before any decision, so both set the
    owner; a task fails where the other's set (its first release) falls between its own set
    and its assert (its first and second releases): every order but a1 a2 b1 b2 and b1 b2 a1
    a2, so 4 of 6. Atomic, the second to check sees the first's claim: 0 of 6."""
    racy = racetape.check_exhaustive(lambda: claim_race(atomic=False), engine="points")
    assert racy.exhausted is True
    assert len(racy.runs) == 6
    assert len(racy.failures) == 4
    assert all("AssertionError" in f.failures[0] for f in racy.failures)
    orders = {tuple(r.decisions) for r in racy.runs}
    assert len(orders) == 6  # every schedule once
    passing = {tuple(r.decisions) for r in racy.runs if not r.failed}
    assert passing == {
        ("main/claim1", "main/claim1", "main/claim2", "main/claim2"),
        ("main/claim2", "main/claim2", "main/claim1", "main/claim1"),
    }

    atomic = racetape.check_exhaustive(lambda: claim_race(atomic=True), engine="points")
    assert (len(atomic.runs), len(atomic.failures), atomic.exhausted) == (6, 0, True)


def test_random_and_pct_find_the_race_and_a_seed_gives_the_same_schedules() -> None:
    """random: 4 of the 6 schedules fail. pct (depth 3) runs the highest-priority task to its
    end unless one of its 2 change points, drawn from steps 1..48, lands on step 1 or 2 (the
    first task demoted after its set): 1 - C(46,2)/C(48,2) = 8% of runs, so 100 runs. Either
    way the seed fixes every decision: a second call is the same, run for run."""
    for check, runs in ((racetape.check_random, 20), (racetape.check_pct, 100)):
        first = check(lambda: claim_race(atomic=False), runs=runs, seed=7, engine="points")
        again = check(lambda: claim_race(atomic=False), runs=runs, seed=7, engine="points")
        assert first.failures, check.__name__
        assert [r.decisions for r in first.runs] == [r.decisions for r in again.runs]
        assert [r.failures for r in first.runs] == [r.failures for r in again.runs]
        assert len(first.runs) == runs
        assert first.exhausted is None


def test_a_failing_schedule_replays_to_the_same_failure() -> None:
    found = racetape.check_random(
        lambda: claim_race(atomic=False), runs=20, seed=1, engine="points"
    )
    failing = found.failures[0]
    replayed = racetape.replay(lambda: claim_race(atomic=False), failing.decisions, engine="points")
    assert replayed.failures == failing.failures
    assert [d.to_json() for d in replayed.schedule.decisions] == [
        d.to_json() for d in failing.schedule.decisions
    ]
    # On the fixed program the same decisions still make a schedule, and it passes.
    assert not racetape.replay(
        lambda: claim_race(atomic=True), ["main/claim1"], engine="points"
    ).failed


@dataclass
class Counter:
    value: int = 0


@dataclass
class LostUpdateRun:
    """Two tasks each hand an increment to a worker thread: read, point, write."""

    counter: Counter

    def main(self) -> Coroutine[Any, Any, None]:
        counter = self.counter

        def bump() -> None:
            racetape.point_blocking("thread.read")
            seen = counter.value
            racetape.point_blocking("thread.write")
            counter.value = seen + 1

        async def task() -> None:
            await asyncio.to_thread(bump)

        async def main() -> None:
            for _ in range(2):
                asyncio.create_task(task())  # noqa: RUF006

        return main()

    @property
    def gates(self) -> Sequence[Any]:
        return ()

    async def judge(self, schedule: racetape.Schedule) -> list[str]:
        return [] if self.counter.value == 2 else [f"lost update: counter is {self.counter.value}"]


@dataclass(frozen=True)
class LostUpdate:
    """A :class:`racetape.Target` that judges its end state: the counter must be 2."""

    in_play: frozenset[str] | None = None
    detail_keys: tuple[str, ...] = ()

    def new_run(self) -> LostUpdateRun:
        return LostUpdateRun(Counter())

    def describe(self) -> dict[str, Any]:
        return {"program": "lost-update"}


def test_worker_threads_are_actors_and_a_target_judges_the_end_state() -> None:
    """Each thread passes two points; its read happens at its first release, its write at its
    second: 6 orders again, and the update is lost where both reads precede both writes'
    completion, i.e. unless one thread's two releases both come first: 4 of 6."""
    checked = racetape.check_exhaustive(LostUpdate())
    assert (len(checked.runs), checked.exhausted) == (6, True)
    assert [r.failures for r in checked.failures] == [("lost update: counter is 1",)] * 4
    threads = {d.actor for r in checked.runs for d in r.schedule.decisions}
    assert threads == {"main/task1/bump1", "main/task2/bump1"}


def test_a_run_that_hangs_is_a_failure_and_is_not_judged() -> None:
    """An actor awaiting another actor (here an Event only main could set) is invisible to
    the scheduler: reported hung after the settle timeout, naming it."""

    async def waits_forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        asyncio.create_task(waits_forever())  # noqa: RUF006

    report = racetape.check_random(main, runs=1, settle_timeout=0.2, engine="points").runs[0]
    assert report.schedule.outcome == "hung"
    assert report.failed
    assert "main/waits_forever1" in report.failures[0]


def test_the_public_api_is_listed() -> None:
    assert set(racetape.__all__) >= {"point", "point_blocking", "check_random", "replay"}
    assert all(hasattr(racetape, name) for name in racetape.__all__)
