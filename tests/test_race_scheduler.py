"""The ``race_scheduler`` fixture: racetape's controlled scheduler in a test of one's own.

The scenario is written here, as a user would write it, against the reference TaskManager on
SQLite: a runner with two progress writes, and a canceller whose cancel the strategy places
(its ``point`` is a decision). The decisions are limited to that point and the worker
thread's first step (``write.enter``): where the race lives. With the seed's bug 1 put back
(``no-terminal-guard``), most seeds let the cancel land while a progress write's worker thread
has not yet reached the store, and the manager writes ``final`` before that write lands. (With
every point a decision, 1 seed in 30 finds it under ``random``, 11 under ``pct``.)
"""

from __future__ import annotations

import asyncio

import pytest

from harness.oracle import check_task
from racetape import point
from racetape._engine.schedule import Schedule
from racetape._engine.strategies import per_run_strategy
from racetape._race_scheduler import RaceScheduler
from reftask.faults import Fault
from reftask.manager import RunContext, TaskManager
from reftask.stores.base import SqlTaskStore
from tests.conftest import StoreFactory

GUARD_OFF = (Fault.NO_TERMINAL_GUARD,)
SEEDS = range(30)
POINTS = ("test.cancel", "write.enter")


class Scenario:
    """One task: a runner with two progress writes, and a cancel the strategy places."""

    def __init__(self, store: SqlTaskStore, task_id: str, faults: tuple[Fault, ...]) -> None:
        self.store = store
        self.task_id = task_id
        self.manager = TaskManager(store, faults=faults)
        self.runner_started = False

    async def runner(self, ctx: RunContext) -> None:
        self.runner_started = True
        await ctx.reporter.progress(step=1)
        await ctx.reporter.progress(step=2)

    async def cancel_sometime(self) -> None:
        await point("test.cancel", task_id=self.task_id)
        await self.manager.cancel(self.task_id)

    async def main(self) -> None:
        await self.manager.submit(self.runner, task_id=self.task_id)
        # Started, not awaited: an actor that awaits another looks busy to the scheduler.
        asyncio.create_task(self.cancel_sometime())  # noqa: RUF006 - the scheduler keeps it

    async def strands(self) -> list[str]:
        row = await self.store.get_task(self.task_id)
        tape = await self.store.list_events(self.task_id)
        violations = check_task(row, tape, runner_started=self.runner_started)
        return sorted(str(v.kind) for v in violations)


async def run_once(
    race_scheduler: RaceScheduler,
    store: SqlTaskStore,
    seed: int,
    task_id: str,
    faults: tuple[Fault, ...] = GUARD_OFF,
) -> tuple[Schedule, list[str]]:
    scenario = Scenario(store, task_id, faults)
    schedule = await race_scheduler.run(
        scenario.main(), strategy="random", seed=seed, points=POINTS
    )
    assert schedule.outcome == "settled", schedule.problem
    return schedule, await scenario.strands()


@pytest.mark.parametrize("adapter", ["sqlite"])
async def test_the_fixture_finds_no_terminal_guard_and_replays_it(
    race_scheduler: RaceScheduler, store_factory: StoreFactory
) -> None:
    store = await store_factory(GUARD_OFF)
    found: dict[int, tuple[Schedule, list[str]]] = {}
    for seed in SEEDS:
        schedule, kinds = await run_once(race_scheduler, store, seed, f"t{seed}")
        if kinds:
            found[seed] = (schedule, kinds)
    assert len(found) > len(SEEDS) // 2, f"only seeds {sorted(found)} of {SEEDS} found it"
    assert all(kinds == ["final-not-last"] for _, kinds in found.values())

    # Deterministic: each finding seed gives the same decisions and the same violation again,
    # and its recorded decisions replay it.
    for seed, (schedule, kinds) in found.items():
        again, kinds_again = await run_once(race_scheduler, store, seed, f"again{seed}")
        assert (again.choices, kinds_again) == (schedule.choices, kinds)
    seed, (schedule, _) = next(iter(found.items()))
    scenario = Scenario(store, "replayed", GUARD_OFF)
    replayed = await race_scheduler.replay(scenario.main(), schedule.choices, points=POINTS)
    assert replayed.choices == schedule.choices
    assert await scenario.strands() == ["final-not-last"]


@pytest.mark.parametrize("adapter", ["sqlite"])
async def test_with_the_guard_the_same_seeds_find_nothing(
    race_scheduler: RaceScheduler, store_factory: StoreFactory
) -> None:
    store = await store_factory()
    for seed in SEEDS:
        _, kinds = await run_once(race_scheduler, store, seed, f"t{seed}", faults=())
        assert kinds == [], seed


def test_strategies_are_named_and_an_unknown_name_says_which_exist() -> None:
    assert per_run_strategy("pct", 3).name == "pct"
    assert per_run_strategy("fifo", 0).name == "fifo"
    with pytest.raises(ValueError, match="strategies: random, pct, fifo"):
        per_run_strategy("dfs", 0)
    with pytest.raises(ValueError, match="'exhaustive' has no per-run strategy"):
        per_run_strategy("exhaustive", 0)
