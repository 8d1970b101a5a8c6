"""-q / -v on racetape's commands, and the progress of explore, shrink and replay."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from harness.cli import main
from racetape._progress import NoProgress, PlainProgress, RichProgress, progress_bar

LATE = ("--scenario", "late-progress", "--fault", "no-terminal-guard")


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """A failing run's trace of the catalog."""
    out = tmp_path / "r.json"
    cli("run", *LATE, "--runs", "10", "--json", out, "--traces", tmp_path / "t", "-q")
    return Path(json.loads(out.read_text())["groups"][0]["traces"][0])


def test_run_quiet_prints_the_verdict_alone_and_verbose_a_line_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert cli("run", *LATE, "--runs", "6", "--json", out, "-q") == 1
    quiet = capsys.readouterr()
    (line,) = quiet.out.splitlines()
    assert line.startswith("verdict: FAIL, ")
    assert quiet.err == ""  # no bar either
    assert cli("run", *LATE, "--runs", "6", "--json", out, "-v") == 1
    loud = capsys.readouterr().out.splitlines()
    runs = [text for text in loud if text.startswith("run ")]
    assert len(runs) == 6
    assert runs[0].startswith("run 0 of late-progress / sqlite / no-terminal-guard / random: ")
    assert any("stranded (final-not-last)" in text for text in runs)
    assert loud[-1].startswith("verdict: FAIL")
    assert any(text.startswith("totals: ") for text in loud)
    with pytest.raises(SystemExit) as bad:
        cli("run", "-q", "-v", "--runs", "1")
    assert bad.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_replay_quiet_is_one_line_verbose_adds_the_decisions_and_both_show_progress(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli("replay", trace, "-q") == 1
    quiet = capsys.readouterr()
    assert quiet.out.splitlines() == [
        "replay: recorded task 1: final-not-last; replayed task 1: final-not-last: same as recorded"
    ]
    assert quiet.err == ""
    assert cli("replay", trace, "-v") == 1
    loud = capsys.readouterr()
    assert "timeline" in loud.out
    assert "decisions" in loud.out
    assert "first come (if passed over)" in loud.out  # the decisions table
    # Not a terminal: the plain progress, a line at the start and one at the end.
    assert "racetape: replay late-progress on sqlite: 1 run\n" in loud.err
    assert "racetape: replay late-progress on sqlite: 1 run, " in loud.err


def test_shrink_and_explore_show_progress_and_honour_quiet_and_verbose(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli("shrink", trace, "-q", "--out", tmp_path / "s.json") == 0
    quiet = capsys.readouterr()
    (line,) = quiet.out.splitlines()
    assert line.startswith("deviations ")
    assert line.endswith(f"shrunk trace: {tmp_path / 's.json'}")
    assert quiet.err == ""
    assert cli("shrink", trace, "-v", "--out", tmp_path / "s.json") == 0
    loud = capsys.readouterr()
    runs = [text for text in loud.out.splitlines() if text.startswith("run ")]
    assert runs
    assert re.fullmatch(r"run 1: \d+ deviations, \d+ decisions, task 1: final-not-last", runs[0])
    assert f"racetape: shrink late-progress: {len(runs)} runs, " in loud.err  # the end line
    ex = ("explore", "--examples", "5", "--no-db", "--out", tmp_path / "ex")
    assert cli(*ex, "-q") in (0, 1)
    quiet = capsys.readouterr()
    (line,) = quiet.out.splitlines()
    assert "generated examples (at most 5)" in line
    assert quiet.err == ""
    cli(*ex, "-v")
    loud = capsys.readouterr()
    assert sum(text.startswith("run ") for text in loud.out.splitlines()) >= 5
    assert "racetape: explore sqlite (at most 5 examples generated): runs until it is done" in (
        loud.err
    )


def test_the_bars_say_runs_per_second_and_the_time_left() -> None:
    buffer = io.StringIO()
    rich = RichProgress(Console(file=buffer, force_terminal=True, width=140))
    rich.start(10, "shrink t.py::test_a", cap=True)
    rich.advance(4, "best 3.1 (1 deviation)")
    rich._progress.refresh()
    shown = buffer.getvalue()
    assert "shrink t.py::test_a" in shown
    assert "4/10 runs" in shown
    assert "runs/s" in shown
    assert "left" in shown
    assert "best 3.1 (1 deviation)" in shown
    rich.finish()
    plain_out = io.StringIO()
    plain = PlainProgress(plain_out, every=0)
    plain.start(10, "replay x", cap=True)
    plain.advance(5)
    plain.finish()
    lines = plain_out.getvalue().splitlines()
    assert lines[0] == "racetape: replay x: at most 10 runs"
    assert lines[1].startswith("racetape: replay x: 5/10 runs, ")
    assert lines[1].endswith(" s left")
    assert lines[2].startswith("racetape: replay x: 5 runs, ")
    unknown = PlainProgress(io.StringIO(), every=0)
    unknown.start(None, "explore")
    unknown.advance(3)
    assert "left" not in unknown.line()
    assert isinstance(progress_bar(quiet=True), NoProgress)
    assert isinstance(progress_bar(stream=io.StringIO()), PlainProgress)
