"""``racetape stress``: the CI gate. Every scenario, every adapter, fault-free, random and pct;
three files every time; exit 1 on any strand."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness import stress
from harness.campaign import Group
from harness.cli import main
from harness.pgserver import PostgresServer
from harness.scenario import Scenario, find_scenarios
from reftask.faults import Fault

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.postgres
def test_stress_covers_every_scenario_adapter_and_strategy_and_writes_three_files(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "stress"
    code = main(["stress", "--adapter", "sqlite", "--adapter", "postgres", "--runs", "2",
                 "--pg-dsn", postgres_server.dsn, "--out", str(out)])  # fmt: skip
    assert code == 0
    doc = load(out / "result.json")
    groups = {(g["scenario"], g["adapter"], g["strategy"]) for g in doc["groups"]}
    names = [s.name for s in find_scenarios()]
    assert groups == {
        (n, a, s) for n in names for a in ("sqlite", "postgres") for s in ("random", "pct")
    }
    assert all(g["runs"] == 2 and g["faults"] == [] for g in doc["groups"])
    assert doc["totals"] == {"runs": 4 * 2 * len(names), "strands": 0, "hung": 0}
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) == len(groups)
    markdown = (out / "summary.md").read_text()
    assert "0 stranded of" in markdown
    assert summary.read_text() == "earlier step\n" + markdown


def test_a_strand_fails_the_job_and_names_its_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate itself: with the seed's bug put back, the same job exits 1."""
    fault_free = stress.stress_groups

    def with_bug(scenarios: Sequence[Scenario], adapters: Sequence[str]) -> list[Group]:
        late = [s for s in scenarios if s.name == "late-progress"]
        return [
            dataclasses.replace(g, faults=frozenset({Fault.NO_TERMINAL_GUARD}))
            for g in fault_free(late, adapters)
        ]

    monkeypatch.setattr(stress, "stress_groups", with_bug)
    out = tmp_path / "stress"
    assert main(["stress", "--adapter", "sqlite", "--runs", "10", "--out", str(out)]) == 1
    doc = load(out / "result.json")
    assert doc["totals"]["strands"] > 0
    failures = list(ET.parse(out / "junit.xml").getroot().iter("failure"))
    assert failures
    assert all(Path(trace).is_file() for g in doc["groups"] for trace in g["traces"])
    assert all(str(out / "traces") in trace for g in doc["groups"] for trace in g["traces"])


def test_an_unreachable_postgres_is_left_out_with_a_note_unless_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stress"
    code = main(["stress", "--runs", "1", "--pg-dsn", UNREACHABLE, "--out", str(out)])
    assert code == 0
    doc = load(out / "result.json")
    assert {g["adapter"] for g in doc["groups"]} == {"sqlite"}
    assert any(n.startswith("postgres left out: cannot reach Postgres") for n in doc["notes"])
    capsys.readouterr()
    asked = ["stress", "--adapter", "postgres", "--pg-dsn", UNREACHABLE, "--out", str(out)]
    assert main(asked) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("racetape: error: cannot reach Postgres")
