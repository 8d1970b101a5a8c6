"""Outputs: every path checked before any work starts, only regular files ever replaced, the
user's umask honoured, reports written all or none, a broken step summary only a warning."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.files import OutputError, write_all_atomic, write_text_atomic
from harness.results import load_result


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any run started is a failure: the outputs must be refused before."""

    def started(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr("harness.commands.run.run_groups", started)
    monkeypatch.setattr("harness.commands.stress.run_groups", started)
    monkeypatch.setattr("harness.commands.matrix.run_matrix", started)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "device-like"
    os.mkfifo(path)
    return path


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("racetape: error: ")
    return lines[0]


def _run(*extra: str | Path) -> int:
    return main(["run", "--scenario", "late-progress", "--runs", "1", *map(str, extra)])


@pytest.mark.usefixtures("no_work")
def test_a_bad_json_path_is_refused_before_any_run(
    tmp_path: Path, fifo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / "traces"
    cases: list[tuple[list[str | Path], str]] = [
        (["--json", tmp_path], "is a folder"),
        (["--json", fifo], "not a regular file"),
        (["--json", traces, "--traces", traces], "given for two outputs"),
        (["--json", tmp_path / "r.json", "--traces", fifo], "cannot write"),
    ]
    for extra, fragment in cases:
        assert _run(*extra) == 2
        assert fragment in _error(capsys)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    with pytest.raises(SystemExit):
        _run("--json", "")
    assert "expected a path, got an empty string" in capsys.readouterr().err


@pytest.mark.usefixtures("no_work")
def test_every_command_checks_its_outputs_first(
    tmp_path: Path, fifo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["stress", "--adapter", "sqlite", "--out", str(fifo)],
        ["matrix", "--markdown", str(fifo)],
        ["matrix", "--json", str(tmp_path)],
        ["bench", "--json", str(fifo)],
    ):
        assert main(argv) == 2, argv
        assert str(tmp_path) in _error(capsys)


def test_an_immutable_output_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    locked = tmp_path / "locked.json"
    locked.write_text("{}")
    if os.geteuid() != 0:
        locked.chmod(0o444)
    elif subprocess.run(["chattr", "+i", locked], capture_output=True).returncode != 0:
        pytest.skip("root, and chattr +i is not available here")
    try:
        assert _run("--json", locked) == 2
        assert "locked.json: cannot write" in _error(capsys)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", locked], check=False)


def test_a_fifo_or_a_folder_is_never_replaced(tmp_path: Path, fifo: Path) -> None:
    with pytest.raises(OutputError, match="not a regular file"):
        write_text_atomic(fifo, "x")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    with pytest.raises(OutputError, match="is a folder"):
        write_text_atomic(tmp_path, "x")
    assert list(tmp_path.iterdir()) == [fifo]  # no temporary file left either


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    yield
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_outputs_get_the_users_umask(tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        assert _run("--json", tmp_path / "r.json", "--traces", tmp_path / "t") == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode


def test_traces_and_their_folders_get_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        code = main(["run", "--scenario", "late-progress", "--fault", "no-terminal-guard",
                     "--runs", "5", "--json", str(tmp_path / "r.json"),
                     "--traces", str(tmp_path / "t")])  # fmt: skip
    finally:
        os.umask(old)
    assert code == 1
    traces = [Path(t) for t in load_result(tmp_path / "r.json")["groups"][0]["traces"]]
    assert traces
    assert {stat.S_IMODE(t.stat().st_mode) for t in traces} == {0o644}
    assert {stat.S_IMODE(t.parent.stat().st_mode) for t in traces} == {0o755}


def test_each_run_keeps_its_traces_in_a_folder_of_its_own(tmp_path: Path) -> None:
    """Two runs into one --traces: each run's traces in its own folder, none beside another
    run's; a run that keeps no trace leaves no folder."""
    traces = tmp_path / "t"
    kept = []
    for seed in ("0", "1"):
        result = tmp_path / f"r{seed}.json"
        code = main(["run", "--scenario", "late-progress", "--fault", "no-terminal-guard",
                     "--runs", "5", "--seed", seed, "--json", str(result),
                     "--traces", str(traces)])  # fmt: skip
        assert code == 1
        kept.append({Path(t) for t in load_result(result)["groups"][0]["traces"]})
    folders = [{t.parent for t in paths} for paths in kept]
    assert all(len(f) == 1 for f in folders)
    (first,), (second,) = folders
    assert first != second
    assert first.parent == second.parent == traces
    assert set(first.iterdir()) == kept[0]
    assert set(second.iterdir()) == kept[1]
    clean = tmp_path / "clean"
    assert main(["run", "--scenario", "late-progress", "--runs", "5", "--json",
                 str(tmp_path / "c.json"), "--traces", str(clean)]) == 0  # fmt: skip
    assert not clean.exists()


def test_outputs_are_written_all_or_none(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=r"a-file/b\.md: cannot write"):
        write_all_atomic([(tmp_path / "a.md", "a"), (blocker / "b.md", "b")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_report_writes_nothing_if_one_output_is_bad(
    tmp_path: Path, fifo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = tmp_path / "r.json"
    assert _run("--json", result, "--traces", tmp_path / "t") == 0
    capsys.readouterr()
    markdown = tmp_path / "r.md"
    assert main(["report", str(result), "--markdown", str(markdown), "--junit", str(fifo)]) == 2
    assert "not a regular file" in _error(capsys)
    assert not markdown.exists()
    assert main(["report", str(result), "--markdown", str(markdown), "--html", str(markdown)]) == 2
    assert "given for two outputs" in _error(capsys)


def test_a_trace_that_cannot_be_written_leaves_the_result_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.campaign.groups

    def full(path: Path, data: Any) -> None:
        raise OutputError(f"{path}: cannot write: No space left on device")

    monkeypatch.setattr(harness.campaign.groups, "write_json_atomic", full)
    result = tmp_path / "r.json"
    traces = tmp_path / "t"
    code = main(["run", "--scenario", "late-progress", "--fault", "no-terminal-guard",
                 "--runs", "20", "--json", str(result), "--traces", str(traces)])  # fmt: skip
    assert code == 1  # the strands fail the run; the lost traces do not change that
    doc = load_result(result)
    assert doc["totals"]["runs"] == 20
    assert doc["groups"][0]["traces"] == []
    assert any("traces not kept" in n and "No space left" in n for n in doc["notes"])


def test_an_unwritable_step_summary_is_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))  # a folder cannot be appended to
    out = tmp_path / "stress"
    argv = ["stress", "--adapter", "sqlite", "--runs", "1", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "warning" in line]
    assert warning.startswith("racetape: warning: GITHUB_STEP_SUMMARY=")
    assert "Traceback" not in err
    assert all((out / name).is_file() for name in ("result.json", "summary.md", "junit.xml"))
