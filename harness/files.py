"""Writing result files so that a reader never sees half of one, and saying so in one line when
a file cannot be written at all."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class OutputError(ValueError):
    """An output path that cannot be written; the message is one line naming it."""


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write: {exc.strerror or exc} (choose a writable path)")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: a temporary file beside it, then an atomic rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from exc
        raise


def read_json(path: Path, error: type[ValueError], what: str) -> Any:
    """The JSON document at ``path``; ``error``, one line naming the file, if it cannot be read
    or is not JSON (``what`` names what it should have been: "trace", "result")."""
    try:
        return json.loads(path.read_text(), parse_constant=_no_constant)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a racetape {what} (not valid JSON: {exc})") from exc
    except _NotJson as exc:
        raise error(f"{path}: not a racetape {what} ({exc})") from exc


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (strict parsers refuse them)."""
    raise _NotJson(f"{name} is not a JSON number")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path``, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def check_writable(*paths: Path | None, folders: tuple[Path | None, ...] = ()) -> None:
    """Before a long run: raise :class:`OutputError` unless each file in ``paths`` and each of
    ``folders`` could be written later, so that the work is not lost at the end for want of a
    place to put it. It creates nothing: it tries the nearest folder that already exists."""
    targets = [(p, p.parent) for p in paths if p is not None]
    targets += [(f, f) for f in folders if f is not None]
    for named, folder in targets:
        existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(existing))
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            raise _cannot_write(named, exc) from exc
