"""Traces of a user's failing pytest runs: one file per run, so it replays and shrinks alone.

A pytest trace (schema ``racetape.pytest-trace/1``) records one failing controlled run of one
test: the test's node id (without the race run's parameter), the run's schedule (its deviations
from first come, first served: what replays it), every decision it took (step, actor, where it
let go from, the candidates), the strategy and seed of the search that found it, the error the
test failed with, the directory pytest was started in and the racetape that wrote it. A shrunk
trace adds ``shrunk_from`` (the schedule and file it was shrunk from).

Where: each pytest session writes into a folder of its own under the traces root (default
``.racetape/traces`` under the rootdir), named by the time it started and its process id, so two
sessions never mix and the newest is last by name. Each file is written atomically (a reader
never sees half of one) and gets the user's umask. :func:`find_trace` finds a node id's newest
trace across the sessions; the newest few sessions are kept (:data:`KEEP_SESSIONS`).

Only the standard library: the plugin stays light.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from racetape._engine.deviations import (
    Schedule,
    ScheduleError,
    format_schedule,
    parse_schedule,
    schedule_of,
)
from racetape._engine.schedule import Decision
from racetape._result import write_json_atomic

TRACE_SCHEMA = "racetape.pytest-trace/1"
SCHEMA_FAMILY = "racetape.pytest-trace/"
"""What every version of the schema starts with (a later one is a newer racetape's)."""
DEFAULT_ROOT = Path(".racetape") / "traces"
"""The traces root, relative to pytest's rootdir (``--race-traces`` / ini ``race_traces``)."""
KEEP_SESSIONS = 20
"""Session folders kept under a root; older ones go when a new session writes its first trace."""
SHRUNK_SUFFIX = ".shrunk.json"
"""How a shrunk trace's name ends: beside the trace it was shrunk from."""
MAX_TRACES_PER_TEST = 3
"""Failing runs of one test that write a trace, per session: the first, and a few more."""


class TraceError(ValueError):
    """A trace that cannot be read or found; the message is one line naming what and the fix."""


@dataclass(frozen=True)
class PytestTrace:
    """One failing controlled run of one test, as :func:`load_trace` reads it back."""

    nodeid: str  # the test's node id, relative to rootdir, without the race run's parameter
    schedule: Schedule
    decisions: tuple[Mapping[str, Any], ...]
    strategy: str
    seed: int
    run: int | None  # the race run's number; None for a replay's or a shrink's run
    error: str  # "AssertionError: ..." (the type, then the message's first line)
    when: str  # the phase that failed: "setup", "call" or "teardown"
    invocation_dir: str  # where pytest was started: the replay runs there
    rootdir: str
    source: Path

    @property
    def error_type(self) -> str:
        return self.error.partition(":")[0]

    @property
    def label(self) -> str:
        return format_schedule(self.schedule)

    @property
    def node_words(self) -> str:
        """The node id as typed from :attr:`invocation_dir`."""
        path, sep, rest = self.nodeid.partition("::")
        where = os.path.relpath(Path(self.rootdir) / path, self.invocation_dir)
        return f"{where}{sep}{rest}"


def trace_document(
    *,
    nodeid: str,
    decisions: Sequence[Decision],
    strategy: str,
    seed: int,
    run: int | None,
    error: str,
    when: str,
    invocation_dir: Path,
    rootdir: Path,
    shrunk_from: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The trace of one failing run (see the module's docstring)."""
    doc: dict[str, Any] = {
        "schema": TRACE_SCHEMA,
        "racetape": version("racetape"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nodeid": nodeid,
        "schedule": format_schedule(schedule_of(decisions)),
        "strategy": strategy,
        "seed": seed,
        "run": run,
        "error": error,
        "when": when,
        "invocation_dir": str(invocation_dir),
        "rootdir": str(rootdir),
        "decisions": [d.to_json() for d in decisions],
    }
    if shrunk_from is not None:
        doc["shrunk_from"] = dict(shrunk_from)
    return doc


def load_trace(path: Path) -> PytestTrace:
    """The trace at ``path``; a file that is not one is a :class:`TraceError` naming the file,
    the field and the fix."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(
            f"{path}: not a readable JSON trace: {exc}; give a trace a failing run wrote, or"
            " the test's node id"
        ) from None

    def fail(field: str, message: str) -> TraceError:
        return TraceError(f"{path}: {field}: {message}")

    found = data.get("schema") if isinstance(data, dict) else type(data).__name__
    if isinstance(found, str) and found.startswith(SCHEMA_FAMILY) and found != TRACE_SCHEMA:
        raise fail(
            "schema",
            f"{found!r} was written by a newer racetape; this one ({version('racetape')})"
            f" reads {TRACE_SCHEMA!r}: pip install --upgrade racetape",
        )
    if not isinstance(data, dict) or found != TRACE_SCHEMA:
        raise fail("schema", f"expected {TRACE_SCHEMA!r} (a pytest run's trace), found {found!r}")
    for key, kind in [
        ("nodeid", str), ("schedule", str), ("strategy", str), ("seed", int), ("error", str),
        ("when", str), ("invocation_dir", str), ("rootdir", str), ("decisions", list),
    ]:  # fmt: skip
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise fail(key, f"missing or not a {kind.__name__}")
    run = data.get("run")
    if run is not None and (not isinstance(run, int) or isinstance(run, bool)):
        raise fail("run", "must be a run number or null")
    if not all(isinstance(d, dict) for d in data["decisions"]):
        raise fail("decisions", "must be a list of decisions (objects)")
    try:
        schedule = parse_schedule(data["schedule"])
    except ScheduleError as exc:
        raise fail("schedule", str(exc)) from None
    return PytestTrace(
        nodeid=data["nodeid"],
        schedule=schedule,
        decisions=tuple(data["decisions"]),
        strategy=data["strategy"],
        seed=data["seed"],
        run=run,
        error=data["error"],
        when=data["when"],
        invocation_dir=data["invocation_dir"],
        rootdir=data["rootdir"],
        source=path,
    )


def is_pytest_trace(path: Path) -> bool:
    """Whether ``path`` is a JSON file that says it is a pytest trace of any version (not a
    catalog trace)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    schema = data.get("schema") if isinstance(data, dict) else None
    return isinstance(schema, str) and schema.startswith(SCHEMA_FAMILY)


def _slug(nodeid: str) -> str:
    """A file name for a node id: readable, and short enough for any file system."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:120] or "test"


def session_name(started: datetime.datetime, pid: int) -> str:
    """A session folder's name: its start (UTC, sortable) and its process id."""
    return f"{started.strftime('%Y%m%dT%H%M%S.%fZ')}-{pid}"


class SessionTraces:
    """The folder one pytest session writes its traces into, made at its first trace.

    ``root / name`` is the session's; the same ``name`` is handed to xdist's workers, so a
    session's traces are in one folder whichever process ran the test. Files are named by the
    node id and the run, and never overwrite one another within the session.
    """

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.folder = root / name
        self.written: dict[str, int] = {}  # test -> traces written for it, this process

    def wants(self, nodeid: str) -> bool:
        return self.written.get(nodeid, 0) < MAX_TRACES_PER_TEST

    def write(self, doc: Mapping[str, Any]) -> Path:
        """Write ``doc`` (a :func:`trace_document`) atomically; its path. Raises OSError."""
        fresh = not self.folder.exists()
        if not self.root.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            # As .pytest_cache does: a project's version control leaves the traces alone.
            (self.root / ".gitignore").write_text("# created by racetape\n*\n")
        self.folder.mkdir(parents=True, exist_ok=True)
        if fresh:
            prune(self.root, keep=KEEP_SESSIONS, current=self.folder.name)
        nodeid = str(doc["nodeid"])
        run = doc.get("run")
        stem = f"{_slug(nodeid)}-{'replay' if run is None else f'run{run}'}"
        path = self.folder / f"{stem}.json"
        number = 1
        while path.exists():
            number += 1
            path = self.folder / f"{stem}-{number}.json"
        write_json_atomic(path, doc)
        self.written[nodeid] = self.written.get(nodeid, 0) + 1
        return path


def sessions(root: Path) -> list[Path]:
    """The session folders under ``root``, oldest first (their names sort by start time)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and re.match(r"^\d{8}T", p.name))


def prune(root: Path, *, keep: int, current: str) -> None:
    """Remove all but the newest ``keep`` session folders (never ``current``): old traces do not
    pile up beside new ones. A folder another process is removing is left to it."""
    old = [p for p in sessions(root) if p.name != current]
    for folder in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(folder, ignore_errors=True)


def _traces_in(folder: Path) -> list[PytestTrace]:
    """The traces in a session folder, by name. A file that goes while the folder is read (a
    session pruning it) or that is not a trace of ours is passed over."""
    traces = []
    for path in sorted(folder.glob("*.json")):
        try:
            traces.append(load_trace(path))
        except TraceError:
            continue  # gone, or not ours: whatever else is there is not our business
    return traces


SAME_FILE, SAME_PROJECT_PATH, SAME_WORDS = range(3)
"""How a trace matches a typed node id, best first (see :func:`match`)."""


def match(trace: PytestTrace, nodeid: str, cwd: Path, rootdir: Path | None) -> int | None:
    """How ``trace`` is the test ``nodeid`` names, as typed in ``cwd`` of the project rooted at
    ``rootdir``: :data:`SAME_FILE` (its file, resolved), :data:`SAME_PROJECT_PATH` (the same
    path under ``rootdir``: this test in another copy of the project, a worktree or a shared
    traces folder), :data:`SAME_WORDS` (the same node id, for a file not found from here);
    None: another test."""
    path, sep, rest = nodeid.partition("::")
    mine, own_sep, own_rest = trace.nodeid.partition("::")
    if (sep, rest) != (own_sep, own_rest):
        return None
    typed = (cwd / path).resolve()
    if typed == (Path(trace.rootdir) / mine).resolve():
        return SAME_FILE
    root = rootdir.resolve() if rootdir is not None else None
    if (
        root is not None
        and typed.is_relative_to(root)
        and typed.relative_to(root).as_posix() == mine
    ):
        return SAME_PROJECT_PATH
    if not typed.is_file() and trace.nodeid == nodeid:
        return SAME_WORDS
    return None


def find_root(start: Path) -> Path | None:
    """The nearest ``.racetape/traces`` at or above ``start``, if any."""
    for folder in (start, *start.parents):
        if (folder / DEFAULT_ROOT).is_dir():
            return folder / DEFAULT_ROOT
    return None


def find_trace(nodeid: str, root: Path, *, cwd: Path, rootdir: Path | None = None) -> PytestTrace:
    """The trace of ``nodeid`` (as typed in ``cwd``, of the project rooted at ``rootdir``) under
    ``root``: of the best :func:`match` any session has, the newest session's; of its traces,
    the shrunk one, else its first failing run's. Two tests that match as well in one session
    are a :class:`TraceError`, never a guess; so is no trace, naming how to get one."""
    if not root.is_dir():
        raise TraceError(
            f"{root}: no traces folder; run the test under the plugin first (pytest"
            f" --race-runs 50 {shlex.quote(nodeid)}), or give --traces DIR"
        )
    scanned = [_traces_in(folder) for folder in reversed(sessions(root))]  # newest first
    for level in (SAME_FILE, SAME_PROJECT_PATH, SAME_WORDS):
        for traces in scanned:
            found = [t for t in traces if match(t, nodeid, cwd, rootdir) == level]
            tests = sorted({str(Path(t.rootdir) / t.nodeid) for t in found})
            if len(tests) > 1:
                raise TraceError(
                    f"{nodeid}: names more than one traced test ({', '.join(tests)}) in"
                    f" {found[0].source.parent}; give the trace's path instead"
                )
            # Stable sorts: the session's first failing run (the one its report shows), and a
            # shrunk trace before any.
            found.sort(key=lambda t: t.run if t.run is not None else -1)
            found.sort(key=lambda t: not t.source.name.endswith(SHRUNK_SUFFIX))
            if found:
                return found[0]
    raise TraceError(
        f"{nodeid}: no trace of this test under {root}; run it under the plugin (pytest"
        f" --race-runs 50 {shlex.quote(nodeid)}) until it fails, or give the trace's path"
    )
