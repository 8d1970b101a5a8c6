"""A run's cost does not grow with the runs before it; and the figure that measures it.

The proof is by plan, not by timing (speed targets live in ``racetape bench --scaling``): on a
database made large on purpose, no statement a run of any catalog scenario sends reads a whole
table (see :mod:`tests.plans`). The figure's logic is tested on tiny jobs, for what it reports,
never for how fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.adapters import Database
from harness.bench import GUARD_OFF, scaling
from harness.campaign import Group, Settings, run_groups
from harness.run import RunResult, execute
from harness.scenario import Scenario, find_scenarios, resolve_scenario
from racetape._engine.strategies import RandomStrategy, run_seed
from racetape._target import Controlled
from reftask.stores.base import SqlTaskStore
from reftask.stores.postgres import PostgresStore
from reftask.stores.sqlite import SqliteStore
from tests import plans
from tests.conftest import StoreLocation
from tests.test_cli import racetape


async def test_no_catalog_scenario_run_reads_a_whole_table(
    large_store: SqlTaskStore, store_location: StoreLocation
) -> None:
    """Every statement of a controlled run of each catalog scenario (its creates, status writes,
    appends, the oracle's reads, a crash's restart_cleanup) is answered by index probes, on a
    database already holding 20,000 other tasks: what a run reads does not depend on what the
    runs before it left."""
    assert isinstance(large_store, SqliteStore | PostgresStore)
    scenarios = find_scenarios()
    assert any(s.crash is not None for s in scenarios)  # restart_cleanup is among them
    results: dict[str, RunResult] = {}
    for number, scenario in enumerate(scenarios):

        async def run(scenario: Scenario = scenario, number: int = number) -> None:
            mode = Controlled(RandomStrategy(run_seed(0, number)))
            results[scenario.name] = await execute(large_store, scenario, frozenset(), mode)

        scans = await plans.full_scans(large_store, run, pg_dsn=store_location.pg_dsn or "")
        result = results[scenario.name]
        assert not result.unsettled, (scenario.name, result.schedule.problem)
        assert not result.violations, (scenario.name, result.violations)
        assert scans == [], scenario.name


def test_window_rates_compare_the_first_and_last_runs() -> None:
    """Four runs of 0.1 s, then four of 0.2 s: with windows of 4, 10 runs/s then 5, ratio 0.5."""
    rates = scaling.window_rates([0.1] * 4 + [0.2] * 4, 4)
    assert rates == {"window": 4, "first_runs_per_s": 10.0, "last_runs_per_s": 5.0, "ratio": 0.5}


def test_window_shrinks_to_half_the_runs_so_the_windows_never_overlap() -> None:
    """Five runs and a window of 1,000: windows of 2 (runs 1-2 and 4-5); the middle run is in
    neither; one run has nothing to compare."""
    rates = scaling.window_rates([0.5, 0.5, 9.0, 0.25, 0.25], 1000)
    assert rates == {"window": 2, "first_runs_per_s": 2.0, "last_runs_per_s": 4.0, "ratio": 2.0}
    assert scaling.window_rates([0.1], 1000)["ratio"] is None


def test_side_by_side_is_the_median_over_chunk_pairs() -> None:
    """Three pairs of 10 runs: the full database half as fast in two, twice as fast in one burst
    of load on the fresh side. Runs/s are over all 30 runs; full/fresh is the median pair, 0.5."""
    pairs = scaling.Pairs(runs=[10, 10, 10], full=[2.0, 2.0, 1.0], fresh=[1.0, 1.0, 2.0])
    assert scaling.side_rows({"s": pairs}) == {
        "s": {
            "side_runs": 30,
            "full_runs_per_s": 6.0,
            "fresh_runs_per_s": 7.5,
            "full_over_fresh": 0.5,
        }
    }


def test_a_scenario_whose_last_runs_are_slower_than_the_target_allows_misses_it() -> None:
    """1/1.2 is the line: a ratio of 0.85 meets it, 0.8 does not."""
    timelines = {
        "steady": scaling.Timeline([0.1] * 10),
        "slowing": scaling.Timeline([0.1] * 5 + [0.125] * 5),
        "slight": scaling.Timeline([0.1] * 5 + [0.1 / 0.85] * 5),
    }
    rows = {r["scenario"]: r for r in scaling.scenario_rows(timelines, 5)}
    assert rows["steady"]["ratio"] == 1.0
    assert rows["steady"]["meets_target"] is True
    assert rows["slowing"]["ratio"] == 0.8
    assert rows["slowing"]["meets_target"] is False
    assert rows["slight"]["meets_target"] is True
    assert rows["steady"]["cpu_ratio"] is None  # no CPU time recorded


def test_cpu_ratio_is_runs_per_cpu_second_last_over_first() -> None:
    """Wall time steady, CPU time per run doubling: the CPU ratio says 0.5, the wall ratio 1."""
    timeline = scaling.Timeline([0.1] * 4, cpu_seconds=[0.01, 0.01, 0.02, 0.02])
    (row,) = scaling.scenario_rows({"s": timeline}, 2)
    assert (row["ratio"], row["cpu_ratio"]) == (1.0, 0.5)


def test_the_job_gives_every_scenario_its_share_under_both_stress_strategies() -> None:
    """52 runs over the catalog: every scenario under random and pct, 52 // groups runs each."""
    scenarios = find_scenarios()
    result = scaling.scaling_adapter("sqlite", 52, pg_dsn=None, window=1000, side=4)
    groups = 2 * len(scenarios)
    assert result["groups"] == groups
    assert result["strategies"] == ["pct", "random"]
    assert result["runs_per_group"] == max(1, 52 // groups)
    assert [r["scenario"] for r in result["scenarios"]] == sorted(s.name for s in scenarios)
    for row in result["scenarios"]:
        assert row["runs"] == 2 * result["runs_per_group"]
        assert row["window"] == result["runs_per_group"]
        assert row["ratio"] > 0
        assert row["cpu_ratio"] is None or row["cpu_ratio"] > 0  # None: a window took no CPU tick
        assert row["strands"] == 0
        assert row["hung"] == 0
        assert row["side_runs"] == 4  # two a strategy, on each database
        assert row["full_over_fresh"] > 0
    assert result["runs"] == groups * result["runs_per_group"]
    assert result["side"] == 4
    database = result["database"]
    assert database["bytes"] == database["file_bytes"] + database["wal_bytes"] > 0


def test_bench_scaling_prints_the_figure_and_writes_it_in_the_document(
    adapter: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    dsn = (
        [] if adapter == "sqlite" else ["--pg-dsn", request.getfixturevalue("postgres_server").dsn]
    )
    done = racetape(
        "bench", "--adapter", adapter, "--runs", "2", "--seeds", "2", "--scaling", "26",
        "--json", out, *dsn,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["settings"]["scaling"] == 26
    (result,) = doc["adapters"]
    figure = result["scaling"]
    assert figure["adapter"] == adapter
    assert figure["runs"] == figure["groups"] * figure["runs_per_group"]
    assert figure["database"]["bytes"] > 0
    if adapter == "postgres":
        assert figure["database"]["live_rows"] >= 0
    assert "racetape bench --scaling" in done.stdout
    for row in figure["scenarios"]:
        assert row["scenario"] in done.stdout
    assert "last/first" in done.stdout


def test_a_long_failing_job_holds_only_the_traces_it_writes(tmp_path: Path) -> None:
    """60 runs of late-progress without the guard, in chunks of 15, two traces kept: each chunk
    keeps its first two failing runs' traces, but the group holds only the two of the lowest
    run indices (the two it writes), not two per chunk."""
    group = Group(resolve_scenario("late-progress"), "sqlite", GUARD_OFF, "random")
    settings = Settings(runs=60, max_traces=2, traces_dir=tmp_path / "traces")
    (result,) = run_groups([group], settings)
    failing = [r.index for r in result.records if r.stranded]
    assert len(failing) > 8  # more chunks failed than two traces each would fit in
    assert [r.index for r in result.records if r.trace is not None] == failing[:2]
    assert [Path(t).name for t in result.traces] == [
        f"{group.slug}--run{index}.json" for index in failing[:2]
    ]


async def test_a_database_whose_folder_is_already_gone_cleans_up_without_error() -> None:
    """A long job's temporary folder removed under it (a shared machine's /tmp gets cleaned):
    cleanup still succeeds, so the figure of the runs that finished is not lost at the end."""
    db = Database.fresh("sqlite")
    store = await db.store()
    await store.create_task("t")
    assert db.sqlite_path is not None
    shutil.rmtree(db.sqlite_path.parent)
    await db.cleanup()
    assert not db.sqlite_path.parent.exists()
