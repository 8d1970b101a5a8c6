"""Writing result files so that a reader never sees half of one, and saying so in one line when
a file cannot be written at all."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


class OutputError(ValueError):
    """An output path that cannot be written; the message is one line naming it."""


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write: {exc.strerror or exc} (choose a writable path)")


def _file_mode() -> int:
    """The mode a new file gets under the user's umask (0644 under umask 022), as ``open``
    would give it; ``mkstemp`` alone would make every output 0600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _refuse_non_regular(path: Path) -> None:
    """Only a regular file is ever replaced: a device node, a FIFO, a socket or a folder at
    ``path`` is an :class:`OutputError` (as root, replacing /dev/null would destroy it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is a folder (give a file path)")
    if not stat.S_ISREG(mode):
        raise OutputError(
            f"{path}: not a regular file (a device, FIFO or socket); racetape replaces only"
            " regular files"
        )


def _stage(path: Path, text: str) -> Path:
    """``text`` in a temporary file beside ``path``, with the mode a new file gets."""
    _refuse_non_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), _file_mode())
            handle.write(text)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from exc
        raise
    return Path(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: a temporary file beside it, then an atomic rename."""
    write_all_atomic([(path, text)])


def write_all_atomic(outputs: Sequence[tuple[Path, str]]) -> None:
    """Write every ``(path, text)``, or none of them: all are staged in temporary files first,
    and only once every one is staged are they renamed into place (renames within a folder
    do not fail for want of space). A reader never sees half of a file."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in outputs:
            staged.append((_stage(path, text), path))
        for tmp, path in staged:
            _refuse_non_regular(path)
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _cannot_write(path, exc) from exc
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def new_folder(root: Path, name: str) -> Path:
    """A folder of one's own under ``root``: ``root/name``, or ``name-2``, ``name-3``... where that
    is taken. It is made here, and ``mkdir`` either makes a folder or fails, so no two callers
    ever share one; it gets the user's umask, as any new folder does. An :class:`OutputError`
    if it cannot be made."""
    for n in itertools.count(1):
        folder = root / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _cannot_write(folder, exc) from exc
        return folder
    raise AssertionError("unreachable")  # itertools.count never ends


@contextlib.contextmanager
def folder_of_its_own(root: Path, name: str) -> Iterator[Path]:
    """A :func:`new_folder` under ``root`` for the block, removed after it if nothing was written
    to it (and ``root`` with it, if ``root`` was made for it): a run that keeps no trace leaves
    no folder behind."""
    made_root = not root.exists()
    folder = new_folder(root, name)
    try:
        yield folder
    finally:
        for made in (folder, root) if made_root else (folder,):
            with contextlib.suppress(OSError):  # not empty, or gone: leave it
                made.rmdir()


def read_json(path: Path, error: type[ValueError], what: str) -> Any:
    """The JSON document at ``path``; ``error``, one line naming the file, if it cannot be read
    or is not JSON (``what`` names what it should have been: "trace", "result"): not UTF-8,
    not JSON, a bare NaN or Infinity, or nested deeper than Python can follow."""
    try:
        return json.loads(path.read_text(), parse_constant=_no_constant)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a racetape {what} (not valid JSON: {exc})") from exc
    except RecursionError as exc:
        raise error(f"{path}: not a racetape {what} (nested too deeply to read)") from exc
    except _NotJson as exc:
        raise error(f"{path}: not a racetape {what} ({exc})") from exc


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (strict parsers refuse them)."""
    raise _NotJson(f"{name} is not a JSON number")


def strict_json(data: Any) -> str:
    """``data`` as the JSON racetape writes: indented, and strict (a NaN or an infinity is a
    ValueError, never a bare ``NaN`` that strict parsers refuse)."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path``, atomically."""
    write_text_atomic(path, strict_json(data))


def check_writable(*paths: Path | None, folders: tuple[Path | None, ...] = ()) -> None:
    """Before a long run: raise :class:`OutputError` unless each file in ``paths`` and each of
    ``folders`` could be written later, so that the work is not lost at the end for want of a
    place to put it. A file must be a regular file or not exist yet (never a folder, device
    or FIFO), and one it names that exists must take a write (not immutable, not read-only);
    a folder must be one or not exist yet; no two outputs may be the same path. It creates
    nothing: it tries the nearest folder that already exists."""
    seen: dict[Path, Path] = {}
    for named in [*paths, *folders]:
        if named is None:
            continue
        key = Path(os.path.abspath(named))
        if key in seen:
            raise OutputError(
                f"{named}: given for two outputs (also as {seen[key]}); choose different paths"
            )
        seen[key] = named
    targets = [(p, p.parent) for p in paths if p is not None]
    targets += [(f, f) for f in folders if f is not None]
    for path in paths:
        if path is not None:
            _refuse_non_regular(path)
            _check_takes_a_write(path)
    for named, folder in targets:
        existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(existing))
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            raise _cannot_write(named, exc) from exc


def _check_takes_a_write(path: Path) -> None:
    """An existing file that cannot be opened for writing (immutable, read-only) would not be
    replaced at the end either; opening it to append changes nothing in it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    os.close(fd)
