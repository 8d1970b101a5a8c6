"""The scenario catalog: every fault caught quickly, every window enumerated and reachable."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from harness.campaign import Group, Settings, run_exhaustive
from harness.results import possible_windows
from harness.run import execute
from harness.scenario import Scenario, find_scenarios, resolve_scenario
from racetape._engine.strategies import PctStrategy, RandomStrategy, run_seed
from racetape._target import Controlled
from reftask.faults import Fault
from tests.conftest import StoreFactory

# These tests drive racetape's own actor engine, which installs its task factory and executor
# on the running loop and keeps its own time: racing them on the controlled loop would race
# the engine, not code under test (pytest --race-runs leaves them alone).
pytestmark = pytest.mark.race(runs=0)


SEEDS, BUDGET = 20, 10
STRATEGIES = {"random": RandomStrategy, "pct": PctStrategy}


def catchers(fault: Fault) -> list[Scenario]:
    return [s for s in find_scenarios() if fault in s.expect.catches]


def test_every_fault_has_a_scenario_that_claims_it() -> None:
    assert all(catchers(fault) for fault in Fault)


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
async def test_each_fault_is_caught_within_five_runs_at_the_median_over_twenty_seeds(
    store_factory: StoreFactory, fault: Fault
) -> None:
    """Runs to the first strand, for each of 20 seeds (at most 10 runs each): the best catalog
    scenario and strategy for the fault must have a median of 5 runs or fewer."""
    faults = frozenset({fault})
    store = await store_factory(tuple(faults))
    medians = {}
    for scenario in catchers(fault):
        for name, strategy in STRATEGIES.items():
            firsts = []
            for seed in range(SEEDS):
                for index in range(BUDGET):
                    mode = Controlled(strategy(run_seed(seed, index)))
                    result = await execute(store, scenario, faults, mode)
                    if result.violations:
                        firsts.append(index + 1)
                        break
                else:
                    firsts.append(BUDGET + 1)
            medians[scenario.name, name] = statistics.median_low(firsts)
            if medians[scenario.name, name] <= 5:
                return
    pytest.fail(f"{fault}: no scenario strands within 5 runs at the median: {medians}")


@pytest.mark.parametrize("scenario_name", ["late-progress", "prestart-cancel"])
async def test_exhaustive_covers_every_cancel_window(
    store_factory: StoreFactory, adapter: str, scenario_name: str
) -> None:
    scenario = resolve_scenario(scenario_name)
    group = Group(scenario, adapter, frozenset(), "exhaustive")

    class OneDatabase:
        """run_exhaustive() asks a Database for its store; this one hands out the test's store."""

        async def store(self, faults: frozenset[Fault]) -> object:
            return await store_factory()

    records, exhausted = await run_exhaustive(OneDatabase(), group, Settings(runs=500))  # type: ignore[arg-type]
    assert exhausted
    covered = {landing for record in records for landing in record.landings}
    assert covered == set(possible_windows(scenario) or [])
    assert not any(record.stranded for record in records)


ENUMERABLE = [s for s in find_scenarios() if possible_windows(s) is not None]


def test_only_fire_and_forget_shapes_have_unknowable_windows() -> None:
    unknowable = {s.name for s in find_scenarios()} - {s.name for s in ENUMERABLE}
    assert unknowable == {"many-tasks"}


@pytest.mark.parametrize("scenario", ENUMERABLE, ids=lambda s: s.name)
async def test_landings_are_only_ever_the_enumerated_windows(
    store_factory: StoreFactory, scenario: Scenario
) -> None:
    possible = possible_windows(scenario)
    assert possible is not None
    store = await store_factory()
    for index in range(15):
        for strategy in STRATEGIES.values():
            result = await execute(
                store, scenario, frozenset(), Controlled(strategy(run_seed(11, index)))
            )
            assert set(result.landings) <= set(possible), result.landings


def test_every_scenario_documents_its_race(tmp_path: Path) -> None:
    for scenario in find_scenarios():
        assert len(scenario.description.split()) >= 20, f"{scenario.name}: say which race and why"
