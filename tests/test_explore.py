"""``racetape explore``: generated shapes and schedules find every fault without the catalog,
and nothing without a fault; failures are written as catalog scenarios with shrunk traces, kept
in the example database and tried first next time.

Example counts are small on purpose (the suite's time is shared): with seed 0 the slowest fault
to find, unlocked-append, fails at the 174th example, so 300 leaves a margin; the fault-free
search gets 200 examples on SQLite and 60 on Postgres.
"""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis.database import DirectoryBasedExampleDatabase

import harness.scenario
from harness.cli import main
from harness.replay import replay
from harness.scenario import load_scenario, parse_scenario
from harness.search import explore_shapes, write_findings
from harness.shapes import named, scenario_shapes, scenario_toml
from harness.traces import kinds_of, load_trace
from reftask.faults import Fault
from tests.conftest import StoreLocation

FAULT_EXAMPLES = 300
CLEAN_EXAMPLES = {"sqlite": 200, "postgres": 60}


@settings(max_examples=60)
@given(scenario_shapes())
def test_every_drawn_shape_is_a_valid_scenario_file(scenario: harness.scenario.Scenario) -> None:
    found = named(
        scenario, faults=frozenset({Fault.UNLOCKED_APPEND}), kinds=("seq-broken",), story="."
    )
    loaded = parse_scenario(tomllib.loads(scenario_toml(found)), "<drawn>")
    assert loaded.to_toml_dict() == found.to_toml_dict()
    assert len(found.description.split()) >= 20


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
def test_explore_finds_each_fault_without_the_catalog(
    fault: Fault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_catalog(*args: object) -> None:
        raise AssertionError("explore read the scenario catalog")

    with monkeypatch.context() as patched:
        # No catalog to be had: not in the working folder, not beside the package, and every
        # way the harness reads one raises.
        patched.chdir(tmp_path)
        (tmp_path / "empty").mkdir()
        patched.setattr(harness.scenario, "default_scenario_dir", lambda: tmp_path / "empty")
        for name in ("find_scenarios", "scenario_dirs", "load_scenario", "resolve_scenario"):
            patched.setattr(harness.scenario, name, no_catalog)
        exploration = explore_shapes(
            "sqlite", frozenset({fault}), examples=FAULT_EXAMPLES, seed=0, max_failures=1
        )
        write_findings(exploration, tmp_path)
    (finding,) = exploration.findings
    assert finding.scenario_path is not None
    assert finding.trace_path is not None
    scenario = load_scenario(finding.scenario_path)
    assert scenario.expect.catches == (fault,)
    trace = load_trace(finding.trace_path)
    assert trace.scenario.to_toml_dict() == scenario.to_toml_dict()
    replayed = asyncio.run(replay(trace))
    assert replayed.same_outcome
    assert replayed.same_decisions
    assert tuple(sorted({kind for _, kind in kinds_of(replayed.result)})) == finding.kinds


def test_explore_finds_nothing_without_a_fault(store_location: StoreLocation) -> None:
    adapter = store_location.adapter
    exploration = explore_shapes(
        adapter, frozenset(), examples=CLEAN_EXAMPLES[adapter], seed=0,
        pg_dsn=store_location.pg_dsn,
    )  # fmt: skip
    assert exploration.generated == CLEAN_EXAMPLES[adapter]
    assert exploration.findings == []


def test_explore_is_deterministic_in_its_seed() -> None:
    faults = frozenset({Fault.PRESTART_CANCEL_STRAND})
    runs = [explore_shapes("sqlite", faults, examples=50, seed=3) for _ in range(2)]
    shapes = [[f.scenario.to_toml_dict() for f in run.findings] for run in runs]
    decisions = [[f.result.schedule.choices for f in run.findings] for run in runs]
    assert shapes[0]
    assert shapes[0] == shapes[1]
    assert decisions[0] == decisions[1]
    assert runs[0].runs == runs[1].runs


def test_a_failure_found_once_is_tried_first_next_time(tmp_path: Path) -> None:
    faults = frozenset({Fault.NO_TERMINAL_GUARD})
    database = DirectoryBasedExampleDatabase(tmp_path / "db")
    first = explore_shapes(
        "sqlite", faults, examples=100, seed=0, database=database, max_failures=1
    )
    assert first.findings
    assert first.generated > 1
    # Another seed and a single example: only what the database holds can fail at once.
    again = explore_shapes("sqlite", faults, examples=1, seed=1, database=database)
    fresh = explore_shapes(
        "sqlite", faults, examples=1, seed=1,
        database=DirectoryBasedExampleDatabase(tmp_path / "empty"),
    )  # fmt: skip
    assert fresh.findings == []
    assert [f.kinds for f in again.findings] == [f.kinds for f in first.findings]
    assert [f.scenario for f in again.findings] == [f.scenario for f in first.findings]
    assert again.generated == 1


def test_racetape_explore_writes_each_failure_and_keeps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, db = tmp_path / "found", tmp_path / "db"
    code = main([
        "explore", "--fault", "prestart-cancel-strand", "--examples", "60", "--out", str(out),
        "--db", str(db),
    ])  # fmt: skip
    assert code == 1
    scenarios = sorted(out.glob("*.toml"))
    assert scenarios
    for path in scenarios:
        assert load_scenario(path).expect.catches == (Fault.PRESTART_CANCEL_STRAND,)
        assert load_trace(path.with_suffix(".trace.json")).strategy == "hypothesis"
    assert any(db.rglob("*")), "the failures are kept in the example database"
    printed = capsys.readouterr().out
    assert "stuck-nonterminal" in printed
    assert f"examples database: {db}" in printed


def test_racetape_explore_without_a_fault_exits_zero_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "found"
    assert main(["explore", "--examples", "20", "--out", str(out), "--no-db"]) == 0
    assert not out.exists()
    assert "no failure in 20 generated examples" in capsys.readouterr().out
    assert main(["explore", "--fault", "no-such-fault"]) == 2
    assert "racetape: error: --fault: unknown fault 'no-such-fault'" in capsys.readouterr().err
