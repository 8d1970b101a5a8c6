"""``racetape run / replay / list`` end to end: results, traces, shards, workers, errors."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli import build_parser, main

PROJECT = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def racetape(
    *args: str | Path, cwd: Path = PROJECT, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    command = [str(Path(sys.executable).parent / "racetape"), *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_run_writes_the_result_document_and_traces(tmp_path: Path) -> None:
    out, traces = tmp_path / "result.json", tmp_path / "traces"
    code = run_cli(
        "run", "--scenario", "late-progress", "--fault", "no-terminal-guard", "--runs", "20",
        "--json", out, "--traces", traces, "--fail-on-strand",
    )  # fmt: skip
    assert code == 1
    doc = load(out)
    assert doc["schema"] == "racetape.result/1"
    (group,) = doc["groups"]
    assert group["scenario"] == "late-progress"
    assert group["faults"] == ["no-terminal-guard"]
    assert group["runs"] == 20
    assert 0 < group["strands"] == group["kinds"]["final-not-last"]
    assert group["hung"] == 0
    assert group["runs_per_s"] > 0
    assert group["runs_done"] == [[0, 19]]
    assert sum(group["windows"].values()) == 20
    assert 1 <= len(group["traces"]) <= 5
    assert all(Path(t).is_file() for t in group["traces"])


def test_strands_fail_the_run_by_default_and_no_fail_asks_for_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / ("a-folder-whose-name-is-long-enough-to-wrap-at-any-width" * 3)
    common: list[str | Path] = ["run", "--scenario", "late-progress", "--fault",
        "no-terminal-guard", "--runs", "20", "--json", tmp_path / "r.json",
        "--traces", traces]  # fmt: skip
    assert run_cli(*common) == 1
    doc = load(tmp_path / "r.json")
    strands = doc["totals"]["strands"]
    assert strands > 0
    printed = capsys.readouterr().out
    trace = doc["groups"][0]["traces"][0]
    assert any(line.endswith(f": racetape replay {trace}") for line in printed.splitlines()), (
        "the replay command is printed on one line, however long its path"
    )
    lines = " ".join(printed.split())
    assert f"totals: 1 group, 20 runs, {strands} stranded, 0 hung," in lines
    assert f"verdict: FAIL, {strands} of 20 runs stranded and 0 hung, in 1 of 1 group (exit 1)" in (
        lines
    )
    assert run_cli(*common, "--no-fail") == 0
    assert "(exit 0; --no-fail)" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as refused:  # one or the other
        main(["run", "--fail-on-strand", "--no-fail"])
    assert refused.value.code == 2


def test_every_flag_of_every_command_has_help() -> None:
    def missing(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += missing(sub, f"{path} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                found.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return found

    assert missing(build_parser(), "racetape") == []


def test_no_strand_exits_zero_even_with_fail_on_strand(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    assert (
        run_cli("run", "--runs", "10", "--json", out, "--fail-on-strand", "--traces", tmp_path) == 0
    )
    doc = load(out)
    assert {g["scenario"] for g in doc["groups"]} >= {"late-progress", "prestart-cancel"}
    assert doc["totals"]["strands"] == 0


def test_a_trace_replays_to_the_same_violation_in_another_process(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run_cli(
        "run", "--scenario", "late-progress", "--fault", "no-terminal-guard", "--runs", "10",
        "--json", out, "--traces", tmp_path / "traces", "--strategy", "pct",
    )  # fmt: skip
    trace = Path(load(out)["groups"][0]["traces"][0])
    recorded = load(trace)
    replayed = racetape("replay", trace)
    assert replayed.returncode == 1, replayed.stderr
    assert "final-not-last" in replayed.stdout
    assert "same as recorded" in replayed.stdout
    assert recorded["outcome"]["violations"][0]["kind"] == "final-not-last"


def test_a_replay_checks_each_decision_lets_go_from_the_recorded_point(tmp_path: Path) -> None:
    """The same actor name at another point is another interleaving: the replay says so."""
    out = tmp_path / "result.json"
    run_cli("run", "--scenario", "late-progress", "--fault", "no-terminal-guard", "--runs", "5",
            "--json", out, "--traces", tmp_path / "traces")  # fmt: skip
    trace = load(Path(load(out)["groups"][0]["traces"][0]))
    step = trace["steps"][1]
    step["detail"] = "final.appended(status=SUCCEEDED)"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(trace))
    replayed = racetape("replay", tampered)
    assert replayed.returncode == 1
    flat = " ".join(replayed.stdout.split())
    assert f"replay diverged at step 1: recorded {step['actor']} at final.appended" in flat


@pytest.mark.postgres
def test_a_trace_replays_on_the_other_adapter(tmp_path: Path, postgres_server: Any) -> None:
    out = tmp_path / "result.json"
    run_cli(
        "run", "--scenario", "late-progress", "--fault", "no-terminal-guard", "--runs", "10",
        "--json", out, "--traces", tmp_path / "traces",
    )  # fmt: skip
    trace = load(out)["groups"][0]["traces"][0]
    replayed = racetape("replay", trace, "--adapter", "postgres", "--pg-dsn", postgres_server.dsn)
    assert replayed.returncode == 1, replayed.stderr
    assert "adapter postgres (recorded on sqlite)" in replayed.stdout
    assert "same as recorded" in replayed.stdout


def test_shards_add_up_to_the_unsharded_run(tmp_path: Path) -> None:
    common: list[str | Path] = ["run", "--scenario", "late-progress", "--fault",
        "no-terminal-guard", "--strategy", "pct", "--runs", "40",
        "--traces", tmp_path / "t"]  # fmt: skip
    run_cli(*common, "--json", tmp_path / "all.json")
    run_cli(*common, "--shard", "1/2", "--json", tmp_path / "s1.json")
    run_cli(*common, "--shard", "2/2", "--json", tmp_path / "s2.json")
    whole = load(tmp_path / "all.json")["groups"][0]
    one, two = (load(tmp_path / f"s{i}.json")["groups"][0] for i in (1, 2))
    assert one["runs"] + two["runs"] == whole["runs"] == 40
    assert sorted(one["strand_runs"] + two["strand_runs"]) == whole["strand_runs"]
    assert 0 < len(whole["strand_runs"]) < 40


def test_two_workers_run_the_same_seeds_as_one_and_leave_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where every process makes its database
    monkeypatch.setattr(tempfile, "tempdir", None)
    common: list[str | Path] = ["run", "--scenario", "late-progress", "--fault",
        "no-terminal-guard", "--runs", "60", "--traces", tmp_path / "t"]  # fmt: skip
    run_cli(*common, "--json", tmp_path / "one.json")
    run_cli(*common, "--workers", "2", "--json", tmp_path / "two.json")
    one, two = (load(tmp_path / f"{n}.json")["groups"][0] for n in ("one", "two"))
    assert one["strand_runs"] == two["strand_runs"]
    assert one["windows"] == two["windows"]
    assert two["runs"] == 60
    assert list(scratch.iterdir()) == []


def test_budget_stops_cleanly_says_so_and_is_shared_by_every_group(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    assert run_cli("run", "--scenario", "cancel-anywhere", "--scenario", "prestart-cancel",
                   "--runs", "100000", "--budget", "2", "--json", out, "--traces", tmp_path,
                   ) == 0  # fmt: skip
    groups = load(out)["groups"]
    assert [g["scenario"] for g in groups] == ["cancel-anywhere", "prestart-cancel"]
    for group in groups:
        assert 0 < group["runs"] < 100000
        assert group["stopped"] == "budget"


def test_ctrl_c_keeps_what_finished(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "racetape"), "run", "--scenario", "cancel-anywhere",
         "--runs", "100000", "--json", str(out), "--traces", str(tmp_path)],
        cwd=PROJECT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    process.stderr.readline()  # "racetape: N runs": the runs have begun
    time.sleep(1.0)  # let some runs finish; what is asserted is only that they are kept
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    (group,) = load(out)["groups"]
    assert group["stopped"] == "interrupted"
    assert 0 < group["runs"] < 100000


def test_exhaustive_reports_the_space_exhausted(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run_cli("run", "--scenario", "prestart-cancel", "--strategy", "exhaustive", "--runs", "50",
            "--json", out, "--traces", tmp_path)  # fmt: skip
    (group,) = load(out)["groups"]
    assert group["exhausted"] is True
    assert group["runs"] == 1  # the window forces the cancel before the run's first step


def test_list_names_everything() -> None:
    listed = racetape("list")
    assert listed.returncode == 0
    for name in (
        "late-progress",
        "no-terminal-guard",
        "unlocked-append",
        "pct",
        "exhaustive",
        "postgres",
    ):
        assert name in listed.stdout


def _one_line_error(
    result: subprocess.CompletedProcess[str], *fragments: str, prefix: str = "racetape: error: "
) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


def test_input_errors_are_one_line_and_exit_two(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ndescription = "d"\n[runner]\nprogres = 1\n')
    _one_line_error(racetape("run", "--scenario", bad), "bad.toml", "progres", "allowed")
    _one_line_error(racetape("run", "--scenario", "no-such"), "unknown scenario 'no-such'")
    _one_line_error(racetape("run", "--fault", "nope"), "--fault", "'nope'", "no-terminal-guard")
    _one_line_error(racetape("run", "--runs", "0"), "--runs must be > 0")
    _one_line_error(racetape("run", "--shard", "3/2"), "--shard")
    _one_line_error(racetape("run", "--strategy", "clever"), "--strategy", "invalid choice")
    _one_line_error(racetape("run", "--strategy", "exhaustive", "--shard", "1/2"), "does not shard")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(racetape("run", "--scenario", "prestart-cancel", "--runs", "1", "--json",
                             blocker / "r.json"), "a-file/r.json: cannot write")  # fmt: skip
    _one_line_error(racetape("stress", "--runs", "1", "--adapter", "sqlite", "--out",
                             blocker / "out"), "a-file/out/result.json: cannot write")  # fmt: skip
    _one_line_error(racetape("report", PROJECT / "reports" / "baseline" / "matrix.json"),
                    "schema")  # fmt: skip
    unreachable = "postgresql://postgres@127.0.0.1:1/postgres"
    _one_line_error(racetape("run", "--adapter", "postgres", "--pg-dsn", unreachable),
                    "cannot reach Postgres at", ":1/")  # fmt: skip


def test_corrupt_traces_are_one_line_errors(tmp_path: Path) -> None:
    not_json = tmp_path / "a.json"
    not_json.write_text("{ nope")
    # Not JSON at all: it may be a pytest trace, whose side answers (it needs no extra).
    _one_line_error(
        racetape("replay", not_json),
        "a.json",
        "not a readable JSON trace",
        prefix="racetape replay: error: ",
    )
    wrong = tmp_path / "b.json"
    wrong.write_text(json.dumps({"schema": "something/else"}))
    _one_line_error(racetape("replay", wrong), "b.json", "schema", "racetape.trace/1")
    partial = tmp_path / "c.json"
    partial.write_text(json.dumps({"schema": "racetape.trace/1", "scenario": {}}))
    _one_line_error(racetape("replay", partial), "c.json", "adapter")
    good = {"schema": "racetape.trace/1", "scenario": {"name": "s", "description": "d"},
            "adapter": "sqlite", "faults": [], "strategy": "random", "seed": 0, "run": 0,
            "run_seed": 0, "decisions": [], "outcome": {}}  # fmt: skip
    cases: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
        ("d.json", {"faults": ["nope"]}, ("d.json: faults: unknown fault 'nope'",)),
        ("e.json", {"scenario": {"name": "s", "description": "d", "tasks": 0}},
         ("e.json#scenario: tasks: must be an integer >= 1",)),
        ("f.json", {"steps": [{"actor": "main"}]}, ("f.json: steps:",)),
    ]  # fmt: skip
    for name, change, fragments in cases:
        bad = tmp_path / name
        bad.write_text(json.dumps({**good, **change}))
        result = racetape("replay", bad)
        _one_line_error(result, *fragments)
        assert result.stderr.count(name) == 1, result.stderr
    _one_line_error(racetape("replay", tmp_path / "missing.json"), "missing.json", "cannot read")


def test_console_script_runs_outside_the_project(tmp_path: Path) -> None:
    """Scenarios are found from the package's checkout even when cwd is elsewhere."""
    result = racetape("run", "--scenario", "prestart-cancel", "--runs", "3", cwd=tmp_path,
                      env={**os.environ, "PYTHONPATH": ""})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reports" / "result.json").is_file()


@pytest.mark.postgres
def test_a_divergence_between_adapters_is_reported_as_a_finding(
    tmp_path: Path, postgres_server: Any
) -> None:
    """Four tasks on one store: SQLite's lock is the whole file, Postgres's one row, so what may
    go at each step differs, and the SQLite interleaving cannot be replayed on Postgres."""
    out = tmp_path / "result.json"
    run_cli("run", "--scenario", "many-tasks", "--runs", "3", "--json", out,
            "--traces", tmp_path / "traces", "--fault", "no-terminal-guard")  # fmt: skip
    trace = load(out)["groups"][0]["traces"][0]
    replayed = racetape("replay", trace, "--adapter", "postgres", "--pg-dsn", postgres_server.dsn)
    assert replayed.returncode == 1
    assert (
        "cross-adapter finding: the interleaving recorded on sqlite cannot happen on postgres"
        in (" ".join(replayed.stdout.split()))
    )


def test_plain_progress_says_runs_per_second_and_the_time_left_of_a_budget_or_of_the_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness.display import PlainProgress

    capped = PlainProgress()
    capped.start(100000, budget=8.0)
    capped._done = 102
    assert capped.line().startswith("102 runs, ")
    assert capped.line().endswith("s of the budget left")
    assert "100000" not in capped.line()  # a budgeted job's runs are a cap, not its end
    counted = PlainProgress()
    counted.start(200)
    counted._done = 50
    assert counted.line().startswith("50/200 runs, ")
    assert counted.line().endswith("s left")
    assert "budget of 8 s" in capsys.readouterr().err
