"""``racetape`` the command: a dispatcher that knows its commands only through the entry-point
group ``racetape.commands``; the reference harness registers every one of its subcommands."""

from __future__ import annotations

import argparse
from importlib.metadata import version

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
