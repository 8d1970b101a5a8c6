"""The scenario engine on real databases: finding, not finding, determinism, exhaustive counts."""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

from harness.run import RunResult, execute
from harness.scenario import Scenario, find_scenarios, parse_scenario, resolve_scenario
from racetape import point
from racetape._engine.actors import TrackedExecutor, install_loop_hooks
from racetape._engine.jitter import Jitter
from racetape._engine.scheduler import Scheduler
from racetape._engine.strategies import (
    FifoStrategy,
    PctStrategy,
    PrefixStrategy,
    RandomStrategy,
    next_prefix,
    run_seed,
)
from racetape._target import Controlled, Jittered
from reftask.faults import Fault
from reftask.manager import Reporter
from reftask.models import EventKind
from tests.conftest import StoreFactory

# These tests drive racetape's own actor engine, which installs its task factory and executor
# on the running loop and keeps its own time: racing them on the controlled loop would race
# the engine, not code under test (pytest --race-runs leaves them alone).
pytestmark = pytest.mark.race(runs=0)


GUARD_OFF = frozenset({Fault.NO_TERMINAL_GUARD})


def kinds(result: RunResult) -> list[str]:
    return sorted(str(v.kind) for v in result.violations)


async def test_late_progress_strands_within_five_runs_for_each_of_twenty_seeds(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory(tuple(GUARD_OFF))
    scenario = resolve_scenario("late-progress")
    for seed in range(20):
        for index in range(5):
            strategy = RandomStrategy(run_seed(seed, index))
            result = await execute(store, scenario, GUARD_OFF, Controlled(strategy))
            if result.violations:
                assert kinds(result) == ["final-not-last"]
                break
        else:
            pytest.fail(f"seed {seed}: no strand in 5 runs")


async def test_fault_free_manager_never_strands_over_two_thousand_controlled_runs(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    scenarios = find_scenarios()
    per_group = 2000 // (2 * len(scenarios)) + 1
    total, windows = 0, Counter[str]()
    for scenario in scenarios:
        for strategy_type in (RandomStrategy, PctStrategy):
            for index in range(per_group):
                result = await execute(
                    store, scenario, frozenset(), Controlled(strategy_type(run_seed(7, index)))
                )
                assert not result.unsettled, result.schedule.problem
                assert not result.violations, (scenario.name, index, result.violations)
                windows.update(result.landings)
                total += 1
    assert total >= 2000
    assert len(windows) >= 10, f"the runs covered too few cancel windows: {windows}"


@pytest.mark.parametrize(
    ("scenario_name", "faults"),
    [("late-progress", GUARD_OFF), ("cancel-anywhere", frozenset())],
)
async def test_a_seed_gives_the_same_decisions_and_outcome_twenty_times(
    store_factory: StoreFactory, scenario_name: str, faults: frozenset[Fault]
) -> None:
    store = await store_factory(tuple(faults))
    scenario = resolve_scenario(scenario_name)
    seen = set()
    for _ in range(20):
        result = await execute(store, scenario, faults, Controlled(PctStrategy(1234)))
        seen.add((tuple(result.schedule.choices), tuple(kinds(result)), tuple(result.landings)))
    assert len(seen) == 1
    ((choices, _, _),) = seen
    assert len(choices) >= 3


@pytest.fixture
def late_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker thread starts its write 0-3 ms late, at random: what a loaded machine does to
    the threads of a run, and what a deterministic run must not notice."""
    write = Reporter._write
    rng = random.Random()

    @functools.wraps(write)
    def late(self: Reporter, kind: EventKind, body: dict[str, Any]) -> int:
        time.sleep(rng.uniform(0, 0.003))
        return write(self, kind, body)

    monkeypatch.setattr(Reporter, "_write", late)


@pytest.mark.usefixtures("late_threads")
@pytest.mark.parametrize("scenario", find_scenarios(), ids=lambda s: s.name)
async def test_every_catalog_scenario_is_deterministic_with_each_fault_it_catches(
    store_factory: StoreFactory, scenario: Scenario
) -> None:
    """Points that are not decisions are still where actors take turns: two actors never run
    between points at the same time, so which of them reads the database first is never left to
    the OS. Without that, many-tasks with unlocked-append replayed to a different outcome, and
    two fire-and-forget writes raced for the append lock."""
    for fault_set in [frozenset(), *(frozenset({f}) for f in scenario.expect.catches)]:
        store = await store_factory(tuple(fault_set))
        for strategy_type in (RandomStrategy, PctStrategy):
            for index in range(2):
                seen = set()
                for _ in range(4):
                    mode = Controlled(strategy_type(run_seed(5, index)))
                    result = await execute(store, scenario, fault_set, mode)
                    assert not result.unsettled, result.schedule.problem
                    seen.add((tuple(result.schedule.choices), tuple(kinds(result))))
                assert len(seen) == 1, (sorted(fault_set), strategy_type.__name__, seen)


def small_scenario(progress: int) -> Scenario:
    return parse_scenario(
        {
            "name": "small",
            "description": "one task, a cancel at any time; only the run's awaits are decisions",
            "points": ["run.before_try", "write.enter"],
            "runner": {"progress": progress},
            "cancel": [{"when": "anytime"}],
        },
        "test",
    )


@pytest.mark.parametrize("progress", [1, 2])
async def test_exhaustive_explores_exactly_the_schedules_counted_by_hand(
    store_factory: StoreFactory, progress: int
) -> None:
    """The run has k = 2 + progress steps that are decisions: its first await, and the start of
    each worker-thread write (task_started, then each progress). The cancel has one step, and it
    may go before any of those k steps or after the last: k + 1 places. Once it has gone, every
    step left is forced: the run finishes its cancel arm at once (none of its finishing points
    are in play) and the one detached write, if any, is all that remains. So k + 1 schedules:
    4 with one progress write, 5 with two."""
    store = await store_factory()
    scenario = small_scenario(progress)
    prefix: list[int] | None = []
    schedules: list[tuple[str, ...]] = []
    while prefix is not None:
        strategy = PrefixStrategy(prefix)
        result = await execute(store, scenario, frozenset(), Controlled(strategy))
        assert not result.violations
        assert not result.unsettled
        schedules.append(tuple(result.schedule.choices))
        prefix = next_prefix(strategy.taken)
    assert len(schedules) == (2 + progress) + 1
    assert len(set(schedules)) == len(schedules)
    cancel_positions = sorted(s.index("main/cancel1") for s in schedules)
    assert cancel_positions == list(range(2 + progress + 1))


async def test_jitter_finds_the_late_write_with_the_fault_and_nothing_without(
    store_factory: StoreFactory,
) -> None:
    scenario = resolve_scenario("late-progress")
    faulty, fixed = await store_factory(tuple(GUARD_OFF)), await store_factory()
    found = clean = 0
    for index in range(150):
        seed = run_seed(3, index)
        result = await execute(faulty, scenario, GUARD_OFF, Jittered(seed))
        found += bool(result.violations)
        result = await execute(fixed, scenario, frozenset(), Jittered(seed))
        assert not result.unsettled
        clean += not result.violations
    assert found > 0
    assert clean == 150


async def test_an_actor_that_waits_on_another_is_reported_hung_with_its_name() -> None:
    never = asyncio.Event()

    async def waits_forever() -> None:
        await point("runner.work", task_id="t")
        await never.wait()

    scheduler = Scheduler(FifoStrategy(), settle_timeout=0.3)
    schedule = await scheduler.run(waits_forever())
    assert schedule.outcome == "hung"
    assert schedule.problem is not None
    assert "main" in schedule.problem
    assert [d.actor for d in schedule.decisions] == ["main"]
    stuck = [a.name for a in scheduler.actors if a.task is not None and not a.task.done()]
    assert stuck == [], "an abandoned run's tasks must not outlive it"


async def test_an_actor_is_not_let_go_into_a_lock_another_holds() -> None:
    """The lock contract of racetape._control, on a toy pair of actors."""
    order: list[str] = []

    async def holder() -> None:
        await point("append.begin", task_id="t", acquires="L")
        await point("append.locked", task_id="t", holds="L")
        order.append("holder commits")
        await point("append.done", task_id="t")

    async def other() -> None:
        await point("status.begin", task_id="t", acquires="L")
        order.append("other takes the lock")

    async def main() -> None:
        asyncio.create_task(holder())  # noqa: RUF006 - the scheduler keeps every actor's task
        asyncio.create_task(other())  # noqa: RUF006

    class HolderFirst:
        name = "holder-first"

        def choose(self, step: int, enabled: list) -> object:  # type: ignore[type-arg]
            for candidate in enabled:
                if candidate.actor.endswith("holder1"):
                    return candidate
            return enabled[0]

    scheduler = Scheduler(HolderFirst())  # type: ignore[arg-type]
    schedule = await scheduler.run(main())
    assert schedule.outcome == "settled"
    locked_step = next(d for d in schedule.decisions if d.detail == "append.locked")
    assert "main/other1" not in locked_step.enabled, "other may not go while holder holds L"
    assert order == ["holder commits", "other takes the lock"]


async def test_a_job_cancelled_while_queued_never_runs_and_does_not_hang_the_run() -> None:
    """asyncio cancels a to_thread job that no worker thread has picked up yet: it never runs.
    The tracker must count it as finished, or the run waits for it forever (found in jitter
    mode on Postgres, where a cancel can land between the submit and the thread starting)."""
    loop = asyncio.get_running_loop()
    install_loop_hooks(loop)
    loop.set_default_executor(TrackedExecutor(max_workers=1))
    blocker = threading.Event()
    busy = loop.run_in_executor(None, blocker.wait)  # the only worker thread is taken
    ran: list[str] = []

    async def main() -> None:
        job = asyncio.create_task(asyncio.to_thread(ran.append, "ran"))
        await asyncio.sleep(0)  # the job's task submits it, and it waits in the queue
        job.cancel()

    schedule = await Jitter(seed=1, settle_timeout=5).run(main())
    blocker.set()
    await busy
    assert schedule.outcome == "settled", schedule.problem
    assert any(e["event"] == "never ran" for e in schedule.timeline)
    assert ran == []
