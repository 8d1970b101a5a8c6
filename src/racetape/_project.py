"""The pytest project a path belongs to, found as pytest finds it: its rootdir and ini options.

``racetape replay`` and ``racetape shrink`` need two things before they start pytest: which
checkout's test to run (the current one, not the one a trace was recorded in) and where the
project's traces are (its ini file's ``race_traces``). :func:`find_project` follows pytest's
rootdir discovery from one path: at it and each folder above, the first of ``pytest.toml``,
``.pytest.toml``, ``pytest.ini``, ``.pytest.ini`` (always), ``pyproject.toml`` (with a
``[tool.pytest]`` or ``[tool.pytest.ini_options]`` table), ``tox.ini`` (with ``[pytest]``),
``setup.cfg`` (with ``[tool:pytest]``); else the nearest ``pyproject.toml``; else the folder of the
nearest ``setup.py``. pytest stays the judge: it runs the test and finds its own rootdir; if the
two ever disagree the plugin refuses the trace in one line (the node ids differ), never silently.

Only the standard library: the commands stay light.
"""

from __future__ import annotations

import configparser
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from racetape._traces import DEFAULT_ROOT

_INI_SECTION = {"pytest.ini": "pytest", ".pytest.ini": "pytest", "tox.ini": "pytest"}
_NAMES = (
    "pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini",
    "setup.cfg",
)  # fmt: skip


@dataclass(frozen=True)
class Project:
    """A pytest project: its rootdir, the file its options came from, and those options."""

    rootdir: Path
    inifile: Path | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def traces_root(self) -> Path:
        """Where its failing runs write traces: ini ``race_traces`` (from the rootdir, as the
        plugin resolves it), else ``.racetape/traces`` under the rootdir."""
        return self.rootdir / (self.options.get("race_traces", "").strip() or DEFAULT_ROOT)

    @property
    def configured_traces(self) -> bool:
        """Whether the ini file names the traces folder (``race_traces``)."""
        return bool(self.options.get("race_traces", "").strip())


def _options(path: Path) -> dict[str, str] | None:
    """The pytest options in ``path``, or None when it holds none (pytest skips such a file)."""
    try:
        if path.suffix == ".toml":
            document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
            if path.name == "pyproject.toml":
                tool = document.get("tool", {}).get("pytest")
                if not isinstance(tool, dict):
                    return None
                table = tool.get("ini_options", tool)
            else:
                table = document.get("pytest", {})
            return {k: str(v) for k, v in table.items()} if isinstance(table, dict) else {}
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, ValueError, configparser.Error):
        # A file pytest cannot read either: pytest says so when it runs; here it holds nothing.
        return (
            {}
            if path.name in ("pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml")
            else None
        )
    section = _INI_SECTION.get(path.name, "tool:pytest")
    if parser.has_section(section):
        return dict(parser.items(section))
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def find_project(start: Path) -> Project | None:
    """The project ``start`` (a file or a folder) is in, as pytest would find its rootdir from
    it; None when no file at or above it says (pytest would then root at the common folder)."""
    start = start.absolute()
    pyproject: Path | None = None
    for folder in (start, *start.parents):
        for name in _NAMES:
            path = folder / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and pyproject is None:
                pyproject = path
            options = _options(path)
            if options is not None:
                return Project(folder, path, options)
    if pyproject is not None:
        return Project(pyproject.parent, pyproject)
    for folder in (start, *start.parents):
        if (folder / "setup.py").is_file():
            return Project(folder)
    return None
