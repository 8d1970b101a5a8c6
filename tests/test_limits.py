"""Numbers: float flags are finite, counts and sizes have documented upper bounds checked up
front, and no result holds a bare NaN or Infinity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness import limits
from harness.campaign import Settings, mode_for
from harness.cli import main
from harness.files import write_json_atomic
from harness.results import ResultError, load_result
from harness.scenario import ScenarioError, parse_scenario


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("flag", ["--budget", "--settle-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e400"])
def test_float_flags_refuse_what_is_not_a_finite_number(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("run", "stress"):
        line = _refused(capsys, command, f"{flag}={value}")
        assert f"{flag} must be a finite number, got {value!r}" in line


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "--runs", "100000000"], f"--runs must be at most {limits.MAX_RUNS}"),
        (["stress", "--runs", "100000000"], "--runs must be at most"),
        (["run", "--workers", "100000"], f"--workers must be at most {limits.MAX_WORKERS}"),
        (["run", "--budget", "1e12"], "--budget must be at most"),
        (["run", "--pct-depth", "1000000"], "--pct-depth must be at most"),
        (["run", "--shard", "1/100000000"], "--shard N must be at most"),
        (["matrix", "--seeds", "100000000"], "--seeds must be at most"),
        (["explore", "--examples", "1000000000"], "--examples must be at most"),
    ],
)
def test_counts_have_upper_bounds_checked_before_any_work(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fragment in _refused(capsys, *argv)


def test_matrix_and_bench_bound_their_products_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--seeds", "10000", "--runs", "100000"]) == 2
    assert "at most 1000000 runs per cell" in capsys.readouterr().err
    assert main(["bench", "--memory", "10,100000000000"]) == 2
    assert "--memory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("runner", "key"),
    [({"progress": 1_000_000_000}, "progress"), ({"work": 10**12}, "work")],
)
def test_scenario_sizes_are_bounded_in_the_loader(runner: dict[str, int], key: str) -> None:
    with pytest.raises(ScenarioError, match=rf"^big.toml: \[runner\] {key}: must be at most"):
        parse_scenario({"name": "big", "description": "d", "runner": runner}, "big.toml")
    cancels = [{"when": "anytime"}] * (limits.MAX_CANCEL_PLANS + 1)
    with pytest.raises(ScenarioError, match=r"^big.toml: cancel: 65 plans; at most 64"):
        parse_scenario({"name": "big", "description": "d", "cancel": cancels}, "big.toml")


def test_a_scenario_at_the_bounds_still_loads() -> None:
    shape = {"progress": limits.MAX_PROGRESS_WRITES, "work": limits.MAX_WORK_STEPS}
    scenario = parse_scenario({"name": "b", "description": "d", "runner": shape}, "b.toml")
    assert scenario.runner.progress == limits.MAX_PROGRESS_WRITES


def test_results_are_strict_json_written_and_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json_atomic(tmp_path / "nan.json", {"budget_s": math.nan})
    assert not (tmp_path / "nan.json").exists()
    out = tmp_path / "r.json"
    assert main(["run", "--scenario", "late-progress", "--runs", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    for constant in ("NaN", "Infinity", "-Infinity"):
        doc["settings"]["budget_s"] = "@"
        out.write_text(json.dumps(doc).replace('"@"', constant))
        with pytest.raises(ResultError, match=f"r.json: not a racetape result .{constant} is not"):
            load_result(out)


def test_jitter_runs_use_the_settle_timeout_the_result_records() -> None:
    mode = mode_for("jitter", 1, Settings(settle_timeout=2.5))
    assert mode.settle_timeout == 2.5
