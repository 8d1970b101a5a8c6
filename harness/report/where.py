"""Where in the code a decision was made, as ``file:line``, where that can be known.

Two sources, both recorded facts rather than guesses:

* an actor named by the controlled loop carries its ``file:line`` (``main>to_thread@app.py:12#1``:
  the first frame outside racetape, asyncio and the driver that made the job);
* a named control point of the reference code (``status.begin(status=RUNNING)``) is found where
  the code reaches it: the calls ``point("status.begin", ...)`` and ``point_blocking(...)`` in
  the installed ``reftask`` package and in the harness's own planned actions
  (:mod:`harness.run`), read with :mod:`ast`. The lines are those of the code installed now,
  which is the code a replay runs.

Anything else (a loop's own ``turn``, a timer) has no place in the code: ``None``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

POINT_CALLS = frozenset({"point", "point_blocking"})
POINT_MODULES = ("reftask", "harness.run")
"""Where the reference harness's control points are reached."""

_ACTOR_WHERE = re.compile(r"@([^@#>]+:\d+)")


def _sources(module: str) -> list[tuple[Path, Path]]:
    """Each Python file of ``module`` (a package's, or the module's own), with the folder its
    shown path is relative to (the one holding the top-level package)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)  # a package's __init__.py, or the module's file
    depth = len(module.split(".")) - (0 if spec.submodule_search_locations else 1)
    root = origin.parents[depth]
    if spec.submodule_search_locations:  # a package: all its files
        return [(path, root) for path in sorted(origin.parent.rglob("*.py"))]
    return [(origin, root)]


def _called(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


@functools.cache
def point_locations() -> dict[str, tuple[str, ...]]:
    """Each control point name of :data:`POINT_MODULES` -> the ``file:line`` of every call that
    reaches it (a literal first argument of ``point`` or ``point_blocking``)."""
    found: dict[str, list[str]] = {}
    for module in POINT_MODULES:
        for path, root in _sources(module):
            try:
                tree = ast.parse(path.read_text(), str(path))
            except (OSError, SyntaxError, UnicodeDecodeError):
                continue
            shown = path.relative_to(root).as_posix()
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and _called(node) in POINT_CALLS):
                    continue
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.setdefault(first.value, []).append(f"{shown}:{node.lineno}")
    return {name: tuple(places) for name, places in found.items()}


def where(actor: str, detail: str) -> str | None:
    """``file:line`` of a decision by ``actor`` at ``detail`` (a point, with its parts:
    ``append.begin(kind=progress)``), or None where the trace and the code cannot tell."""
    named = _ACTOR_WHERE.search(actor)
    if named:
        return named.group(1)
    places = point_locations().get(detail.split("(", 1)[0])
    return ", ".join(places) if places else None
