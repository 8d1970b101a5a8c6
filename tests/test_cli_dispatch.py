"""``racetape`` the command: a dispatcher that knows its commands only through the entry-point
group ``racetape.commands``; the reference harness registers every one of its subcommands."""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from harness.cli import build_parser
from racetape import cli


def _harness_commands() -> set[str]:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_harness_subcommand_is_registered_and_nothing_else() -> None:
    """A subcommand added to harness/cli.py without its line in pyproject.toml fails here."""
    registered = cli.commands()
    assert set(registered) == _harness_commands()
    assert set(registered.values()) == {"harness.cli:main"}


def test_a_registered_command_gets_the_whole_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []

    def provider(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    monkeypatch.setattr(cli, "_load", lambda name: provider)
    assert cli.main(["run", "--runs", "3"]) == 7
    assert seen == [["run", "--runs", "3"]]


def test_version_help_and_bad_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for asked in ("version", "--version"):
        assert cli.main([asked]) == 0
        assert capsys.readouterr().out == f"racetape {version('racetape')}\n"
    assert cli.main(["--help"]) == 0
    assert "commands: bench, explore, list" in capsys.readouterr().out
    for argv, problem in (([], "a command is required"), (["nope"], "unknown command 'nope'")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.splitlines()[-1] == f"racetape: error: {problem}"


def test_replay_and_shrink_route_a_pytest_trace_of_any_version_and_a_node_id_to_the_plugin_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("newer.json").write_text(json.dumps({"schema": "racetape.pytest-trace/2"}))
    Path("empty.json").write_text("")
    Path("test_race.py").write_text("async def test_order(): pass\n")
    Path("catalog.json").write_text(json.dumps({"schema": "racetape.trace/1"}))
    for argv, line in [
        (["replay", "newer.json"], "newer.json: schema: 'racetape.pytest-trace/2' was written by a"
         " newer racetape; this one (*) reads 'racetape.pytest-trace/1': pip install --upgrade"
         " racetape"),
        (["shrink", "-q", "empty.json"], "empty.json: not a readable JSON trace: *; give a trace"
         " a failing run wrote, or the test's node id"),
        (["replay", "test_race.py"], "test_race.py: a test file, not a trace: give a test's node"
         " id (test_race.py::test_name, *) or a trace's path"),
    ]:  # fmt: skip
        assert cli.main(argv) == 2
        (said,) = capsys.readouterr().err.splitlines()
        assert fnmatch.fnmatchcase(said, f"racetape {argv[0]}: error: {line}"), said
    # A node id is a positional argument shaped like one; a flag's value never is one.
    assert cli.is_pytest_target(["replay", "-v", "tests/t.py::test_a[x::y]"])
    assert cli.is_pytest_target(["shrink", "--out", "s.json", "newer.json"])
    assert not cli.is_pytest_target(["replay", "--pg-dsn", "postgresql://[::1]/x", "t.json"])
    assert not cli.is_pytest_target(["replay", "--pg-dsn=postgresql://[::1]/x", "catalog.json"])
    assert not cli.is_pytest_target(["replay", "postgresql://[::1]/x"])
    # Without the harness's extras the pytest side still answers (it imports none of them).
    block = f"import sys; sys.modules.update(dict.fromkeys({('asyncpg', 'aiosqlite')!r}));"
    call = "from racetape.cli import main; main(['replay', 'empty.json'])"
    run = subprocess.run(
        [sys.executable, "-c", f"{block} {call}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.stderr.startswith("racetape replay: error: empty.json: not a readable JSON trace")
