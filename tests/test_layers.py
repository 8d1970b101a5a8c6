"""The import direction: the library under ``src/racetape`` stands alone.

Nothing under ``src/racetape`` may import the reference harness (``harness``) or the reference
system (``reftask``), in any form: a top-level import, one inside a function, one under
``TYPE_CHECKING``, a relative one that climbs out of the package. The reference harness may
import racetape, never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import racetape

FORBIDDEN = frozenset({"harness", "reftask"})
LIBRARY = Path(racetape.__file__).parent


def forbidden_imports(root: Path, forbidden: frozenset[str] = FORBIDDEN) -> list[str]:
    """``path:line: module`` for every import under ``root`` of a module in :data:`FORBIDDEN`
    (``?`` for a relative import that leaves the package), in file and line order."""
    found: list[tuple[str, int, str]] = []
    for path in sorted(root.rglob("*.py")):
        where = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom):
                # Level 1 is the module's own package: it climbs out of racetape past its depth.
                depth = len(path.relative_to(root).parts)
                names = ["?"] if node.level > depth else []
            else:
                continue
            found += [
                (where, node.lineno, name)
                for name in names
                if name.split(".")[0] in forbidden or name == "?"
            ]
    return [f"{where}:{line}: {name}" for where, line, name in sorted(found)]


def test_racetape_imports_neither_harness_nor_reftask() -> None:
    assert LIBRARY.name == "racetape"
    assert (LIBRARY / "_engine").is_dir()  # the walk sees the engine, not an empty folder
    assert forbidden_imports(LIBRARY) == []


DRIVERS = frozenset({"aiosqlite", "asyncpg", "psycopg", "psycopg2", "sqlite3", "_sqlite3"})


def test_the_engine_imports_no_database_driver(tmp_path: Path) -> None:
    """The engine's seam is generic (a served thread, a lock probe): the adapters in
    racetape.drivers know the drivers; the engine imports none, in any form."""
    assert forbidden_imports(LIBRARY / "_engine", DRIVERS) == []
    (tmp_path / "late.py").write_text("def f() -> None:\n    import sqlite3\n    import asyncpg\n")
    (tmp_path / "top.py").write_text("from aiosqlite.core import Connection\nimport psycopg.rows\n")
    assert forbidden_imports(tmp_path, DRIVERS) == [
        "late.py:2: sqlite3",
        "late.py:3: asyncpg",
        "top.py:1: aiosqlite.core",
        "top.py:2: psycopg.rows",
    ]


def test_the_check_finds_every_form_of_a_forbidden_import(tmp_path: Path) -> None:
    """The check above is only as good as this: each form below is one finding."""
    package = tmp_path / "racetape"
    (package / "_engine").mkdir(parents=True)
    (package / "__init__.py").write_text("import harness\nimport asyncio\n")
    (package / "_engine" / "deep.py").write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from racetape._control import point\n"
        "if TYPE_CHECKING:\n"
        "    from reftask.models import TaskRecord\n"
        "def late() -> None:\n"
        "    import harness.cli as cli\n"
        "from .. import sibling\n"
        "from ... import outside\n"
    )
    assert forbidden_imports(package) == [
        "__init__.py:1: harness",
        "_engine/deep.py:5: reftask.models",
        "_engine/deep.py:7: harness.cli",
        "_engine/deep.py:9: ?",
    ]
