"""The reference manager with every named control point off, as a user's code runs: the
controlled loop still finds the store faults through the stores' own drivers (aiosqlite,
asyncpg), and the fault-free manager stays clean."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from harness.campaign import Settings
from harness.matrix import matrix_document, run_matrix
from harness.scenario import resolve_scenario
from harness.unpointed import POINTS_OFF, Stranded, program, runnable
from racetape import check
from reftask.faults import Fault


@pytest.fixture
def where(adapter: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, object]:
    if adapter == "sqlite":
        return {"sqlite_path": tmp_path / "tasks.db"}
    server = request.getfixturevalue("postgres_server")
    return {"pg_dsn": server.dsn, "pg_schema": f"rt_unp_{uuid.uuid4().hex[:10]}"}


@pytest.mark.parametrize(
    ("scenario", "fault", "strategy", "budget"),
    [
        ("late-progress", Fault.NO_TERMINAL_GUARD, "pct", 30),
        ("many-tasks", Fault.UNLOCKED_APPEND, "random", 40),
    ],
)
def test_with_points_off_the_controlled_loop_finds_the_store_faults(
    where: dict[str, object], scenario: str, fault: Fault, strategy: str, budget: int
) -> None:
    main = program(resolve_scenario(scenario), frozenset([fault]), **where)  # type: ignore[arg-type]
    checked = check(main, strategy=strategy, runs=budget, seed=0, stop_at_first_failure=True)
    assert checked.failures, f"{fault} not found in {budget} runs"
    assert isinstance(checked.failures[0].error, Stranded), checked.failures[0].error


def test_with_points_off_the_fault_free_manager_stays_clean(where: dict[str, object]) -> None:
    for name in ["late-progress", "many-tasks", "cancel-during-started"]:
        main = program(resolve_scenario(name), frozenset(), **where)  # type: ignore[arg-type]
        checked = check(main, strategy="pct", runs=10, seed=1)
        assert not checked.failures, f"{name}: {checked.failures[0].error!r}"


def test_a_crash_scenario_has_no_points_off_form_and_the_matrix_leaves_it_out() -> None:
    crash = resolve_scenario("crash-restart")
    assert not runnable(crash)
    with pytest.raises(ValueError, match="crash plan"):
        program(crash, frozenset(), sqlite_path=Path("x.db"))
    cells, _ = run_matrix(
        [crash, resolve_scenario("late-progress")],
        ["sqlite"],
        ["random", POINTS_OFF],
        [Fault.NO_TERMINAL_GUARD],
        seeds=1,
        runs=3,
        settings=Settings(),
    )
    columns = {(c.group.scenario.name, c.group.strategy) for c in cells}
    assert ("crash-restart", POINTS_OFF) not in columns
    assert ("late-progress", POINTS_OFF) in columns
    doc = matrix_document(cells, seeds=1, runs=3, command="test", interrupted=False)
    assert doc["points_off_caught_by"] == {"no-terminal-guard / sqlite": ["late-progress"]}
