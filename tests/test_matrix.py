"""``racetape matrix`` at a reduced size, and how it reports gaps and findings."""

from __future__ import annotations

import json
from pathlib import Path

from harness.campaign import Group, RunRecord, Settings
from harness.cli import main
from harness.matrix import Cell, matrix_document, run_matrix
from harness.scenario import resolve_scenario
from reftask.faults import Fault


def test_a_reduced_matrix_finds_its_faults_and_nothing_without_them() -> None:
    scenarios = [resolve_scenario("late-progress"), resolve_scenario("cancel-after-terminal")]
    faults: list[Fault | None] = [None, Fault.NO_TERMINAL_GUARD, Fault.DOUBLE_FINAL_ON_LATE_CANCEL]
    cells, interrupted = run_matrix(
        scenarios, ["sqlite"], ["random"], faults, seeds=4, runs=5, settings=Settings()
    )
    doc = matrix_document(cells, seeds=4, runs=5, command="test", interrupted=interrupted)
    assert not interrupted
    assert len(doc["cells"]) == 2 * 3
    assert doc["findings"] == []
    assert doc["gaps"] == []
    assert doc["caught_by"] == {
        "double-final-on-late-cancel": ["cancel-after-terminal"],
        "no-terminal-guard": ["late-progress"],
    }
    late = doc["best"]["no-terminal-guard / sqlite"]
    assert late["scenario"] == "late-progress"
    assert late["seeds"] == 4
    assert late["runs"] == 20
    assert late["median_runs_to_first"] is not None
    assert late["median_runs_to_first"] <= 5
    assert late["windows_covered"] == late["windows_possible"] == 4
    for row in doc["cells"]:
        if row["fault"] is None:
            assert row["strands"] == 0
            assert row["median_runs_to_first"] is None


def test_a_fault_no_scenario_catches_is_a_gap_and_a_fault_free_strand_a_finding() -> None:
    scenario = resolve_scenario("prestart-cancel")
    missed = Cell(
        Fault.UNLOCKED_APPEND,
        Group(scenario, "sqlite", frozenset({Fault.UNLOCKED_APPEND}), "random"),
    )
    missed.add(0, [RunRecord(i, (), False, None, (), 3, 0.01) for i in range(5)])
    suspicious = Cell(None, Group(scenario, "sqlite", frozenset(), "random"))
    suspicious.add(0, [RunRecord(0, ("missing-final",), False, None, (), 3, 0.01)])
    doc = matrix_document([missed, suspicious], seeds=1, runs=5, command="test", interrupted=False)
    assert doc["gaps"] == ["unlocked-append"]
    assert [f["scenario"] for f in doc["findings"]] == ["prestart-cancel"]


def test_the_matrix_command_writes_json_and_markdown(tmp_path: Path) -> None:
    out, md = tmp_path / "m.json", tmp_path / "m.md"
    code = main(["matrix", "--scenario", "prestart-cancel", "--fault", "none", "--fault",
                 "prestart-cancel-strand", "--seeds", "3", "--runs", "2", "--json", str(out),
                 "--markdown", str(md)])  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "racetape.matrix/1"
    assert doc["gaps"] == []
    assert "| prestart-cancel-strand / sqlite | prestart-cancel |" in md.read_text()
    assert main(["matrix", "--scenario", "prestart-cancel", "--fault", "unlocked-append",
                 "--seeds", "2", "--runs", "2", "--json", str(out)]) == 1  # fmt: skip
    assert json.loads(out.read_text())["gaps"] == ["unlocked-append"]


def test_the_terminal_table_calls_a_gap_only_what_the_document_does() -> None:
    from rich.console import Console

    from harness.display import matrix_table

    scenario = resolve_scenario("late-progress")
    fault = Fault.NO_TERMINAL_GUARD
    slow = Cell(fault, Group(scenario, "sqlite", frozenset({fault}), "random"))
    for seed in range(3):  # one seed of three strands, in its last run: no median
        slow.add(seed, [RunRecord(i, ("final-not-last",) if (seed, i) == (0, 4) else (), False,
                                  None, (), 3, 0.01) for i in range(5)])  # fmt: skip
    doc = matrix_document([slow], seeds=3, runs=5, command="test", interrupted=False)
    assert doc["gaps"] == []
    console = Console(width=200, record=True)
    console.print(matrix_table(doc))
    text = console.export_text()
    assert "gap" not in text
    assert "late-progress: median >5, 1/15 strands" in text
