"""Scenarios: TOML files, one race or stress shape each; data, not code. The catalog is
``harness/scenarios/`` (package data); a ``scenarios/`` folder in the current directory comes
first.

Loading validates everything: an unknown key, a wrong type, an unknown point, fault or cancel
window is a :class:`ScenarioError` whose one-line message names the file, the key and what is
allowed. See ``harness/scenarios/README.md`` for the format.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from harness.limits import MAX_CANCEL_PLANS, MAX_PROGRESS_WRITES, MAX_WORK_STEPS
from reftask.faults import Fault
from reftask.points import POINTS

CRASH_DONE = "crash.done"
"""Where a planned crash's restarting actor waits while the crashed actors die."""

HARNESS_POINTS: dict[str, str] = {
    "runner.work": "the scenario runner's work between steps (an await of its own)",
    "cancel.fire": "a planned cancel, waiting for its window; always in play",
    "crash.fire": "a planned crash of the manager's process, waiting for its window; in play",
    CRASH_DONE: "the crashed manager's actors are gone; the restart has not begun",
}
"""Points the harness itself reaches, beside the reference system's :data:`POINTS`."""

DETAIL_KEYS = ("kind", "status", "via", "step")
"""The info keys that tell two visits of one point apart in a decision's detail (a trace's
``detail``, which a replay checks): the write's kind, the status written, the cancel's way in,
the runner's step. Never ``task_id``, drawn afresh each run."""

KNOWN_POINTS = frozenset(POINTS) | frozenset(HARNESS_POINTS)

Outcome = Literal["succeed", "fail", "raise"]
CancelWhen = Literal[
    "before-start",
    "during-started",
    "after-started",
    "during-progress",
    "after-terminal",
    "anytime",
]
CancelVia = Literal["task", "token"]

CANCEL_WINDOWS: dict[str, str] = {
    "before-start": "after submit, before the run opens its try (seed bug 2)",
    "during-started": "while the task_started write is in flight: from its worker thread "
    "starting until the write is handed back",
    "after-started": "any time once task_started is committed",
    "during-progress": "while the k-th progress write is in flight (seed bug 1)",
    "after-terminal": "once final is on the tape",
    "anytime": "any time after submit",
}


MAX_OPEN_APPENDS = 24
"""The most appends one run may hold open at once. Each parked inside its transaction holds a
database connection; stores are opened with room for more (:mod:`harness.adapters`), so no
actor ever waits for a connection, a wait on other actors the scheduler could not see."""


def open_appends(tasks: int, runner: RunnerShape) -> int:
    """The most appends a run of this shape can hold open at once: per task, its run's own and
    each worker-thread write that can be in flight beside it (every one of a detached runner's,
    else the one a cancel leaves behind), and a restart's."""
    return tasks * (1 + (runner.progress if runner.detached else 1)) + 1


SCENARIO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
"""A scenario's name names its trace files, so it holds no path separator."""


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line naming file, key and fix."""


@dataclass(frozen=True)
class RunnerShape:
    progress: int = 1
    work: int = 0
    outcome: Outcome = "succeed"
    detached: bool = False  # start the progress writes without awaiting them (fire and forget)


@dataclass(frozen=True)
class CancelPlan:
    when: CancelWhen
    via: CancelVia = "task"
    task: int = 1
    progress: int = 1


@dataclass(frozen=True)
class CrashPlan:
    """The manager's process dies in this window; a fresh manager then runs restart_cleanup."""

    when: CancelWhen
    task: int = 1
    progress: int = 1


@dataclass(frozen=True)
class Expectation:
    clean: bool = True
    catches: tuple[Fault, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    runner: RunnerShape = RunnerShape()
    tasks: int = 1
    cancels: tuple[CancelPlan, ...] = ()
    crash: CrashPlan | None = None
    points: frozenset[str] | None = None
    expect: Expectation = Expectation()
    source: str = field(default="<inline>", compare=False)

    def to_toml_dict(self) -> dict[str, Any]:
        """The scenario as the TOML table it was loaded from (a trace embeds this)."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "tasks": self.tasks,
            "runner": {
                "progress": self.runner.progress,
                "work": self.runner.work,
                "outcome": self.runner.outcome,
                "detached": self.runner.detached,
            },
            "cancel": [
                {"when": c.when, "via": c.via, "task": c.task, "progress": c.progress}
                for c in self.cancels
            ],
            "expect": {
                "clean": self.expect.clean,
                "catches": [f.value for f in self.expect.catches],
            },
        }
        if self.crash is not None:
            data["crash"] = {
                "when": self.crash.when,
                "task": self.crash.task,
                "progress": self.crash.progress,
            }
        if self.points is not None:
            data["points"] = sorted(self.points)
        return data


class _Reader:
    """Reads one table, remembering where it is for error messages."""

    def __init__(self, source: str, table: Mapping[str, Any], where: str, allowed: set[str]):
        self.source, self.table, self.where = source, table, where
        unknown = sorted(set(table) - allowed)
        if unknown:
            # A key can be any string (a newline, say): quoted unless it reads as a name, so
            # that the error stays one line.
            key = unknown[0] if unknown[0].isidentifier() else repr(unknown[0])
            self.fail(key, f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def fail(self, key: str, message: str) -> None:
        location = f"[{self.where}] " if self.where else ""
        raise ScenarioError(f"{self.source}: {location}{key}: {message}")

    def string(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {value!r}")
        assert isinstance(value, str)
        return value

    def integer(self, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, f"must be an integer >= {minimum}, got {value!r}")
        assert isinstance(value, int)
        if maximum is not None and value > maximum:
            self.fail(key, f"must be at most {maximum}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        assert isinstance(value, bool)
        return value

    def choice(self, key: str, default: str | None, allowed: tuple[str, ...]) -> str:
        value = self.table.get(key, default)
        if value not in allowed:
            self.fail(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        assert isinstance(value, str)
        return value

    def strings(self, key: str) -> list[str] | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"must be a list of strings, got {value!r}")
        assert isinstance(value, list)
        return value

    def table_of(self, key: str) -> Mapping[str, Any]:
        value = self.table.get(key, {})
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a table, got {value!r}")
        assert isinstance(value, Mapping)
        return value


def parse_scenario(data: Mapping[str, Any], source: str) -> Scenario:
    """Validate a scenario table; ``source`` names the file in error messages."""
    top = _Reader(
        source,
        data,
        "",
        {"name", "description", "tasks", "runner", "cancel", "crash", "points", "expect"},
    )
    name = top.string("name")
    if not SCENARIO_NAME.match(name):
        top.fail("name", f"{name!r} must match {SCENARIO_NAME.pattern} (it names files)")
    description = top.string("description")
    tasks = top.integer("tasks", 1, 1)

    runner_table = _Reader(
        source, top.table_of("runner"), "runner", {"progress", "work", "outcome", "detached"}
    )
    runner = RunnerShape(
        progress=runner_table.integer("progress", 1, 0, MAX_PROGRESS_WRITES),
        work=runner_table.integer("work", 0, 0, MAX_WORK_STEPS),
        outcome=runner_table.choice("outcome", "succeed", get_args(Outcome)),  # type: ignore[arg-type]
        detached=runner_table.boolean("detached", False),
    )
    if (held := open_appends(tasks, runner)) > MAX_OPEN_APPENDS:
        top.fail(
            "tasks",
            f"{tasks} task(s) of this runner can hold {held} appends open at once, more than"
            f" {MAX_OPEN_APPENDS}; use fewer tasks or fewer detached progress writes",
        )

    raw_cancels = data.get("cancel", [])
    if isinstance(raw_cancels, Mapping):
        raw_cancels = [raw_cancels]
    if not isinstance(raw_cancels, list) or not all(isinstance(c, Mapping) for c in raw_cancels):
        top.fail("cancel", "must be a table or an array of tables ([[cancel]])")
    if len(raw_cancels) > MAX_CANCEL_PLANS:
        top.fail("cancel", f"{len(raw_cancels)} plans; at most {MAX_CANCEL_PLANS}")
    cancels = []
    for index, raw in enumerate(raw_cancels, start=1):
        table = _Reader(source, raw, f"cancel {index}", {"when", "via", "task", "progress"})
        plan = CancelPlan(
            when=table.choice("when", None, tuple(CANCEL_WINDOWS)),  # type: ignore[arg-type]
            via=table.choice("via", "task", get_args(CancelVia)),  # type: ignore[arg-type]
            task=table.integer("task", 1, 1),
            progress=table.integer("progress", 1, 1),
        )
        _check_window(table, plan, tasks, runner)
        cancels.append(plan)

    crash = None
    if "crash" in data:
        table = _Reader(source, top.table_of("crash"), "crash", {"when", "task", "progress"})
        crash = CrashPlan(
            when=table.choice("when", None, tuple(CANCEL_WINDOWS)),  # type: ignore[arg-type]
            task=table.integer("task", 1, 1),
            progress=table.integer("progress", 1, 1),
        )
        _check_window(table, crash, tasks, runner)

    points_list = top.strings("points")
    points = None
    if points_list is not None:
        unknown = sorted(set(points_list) - KNOWN_POINTS)
        if unknown:
            top.fail(
                "points", f"unknown point {unknown[0]!r}; known: {', '.join(sorted(KNOWN_POINTS))}"
            )
        points = frozenset(points_list)

    expect_table = _Reader(source, top.table_of("expect"), "expect", {"clean", "catches"})
    catches: list[Fault] = []
    for fault_name in expect_table.strings("catches") or []:
        try:
            catches.append(Fault(fault_name))
        except ValueError:
            expect_table.fail(
                "catches",
                f"unknown fault {fault_name!r}; valid faults: {', '.join(f.value for f in Fault)}",
            )
    expect = Expectation(clean=expect_table.boolean("clean", True), catches=tuple(catches))
    return Scenario(name, description, runner, tasks, tuple(cancels), crash, points, expect, source)


def _check_window(
    table: _Reader, plan: CancelPlan | CrashPlan, tasks: int, runner: RunnerShape
) -> None:
    if plan.task > tasks:
        table.fail("task", f"there are only {tasks} task(s) in this scenario")
    if plan.when == "during-progress" and plan.progress > runner.progress:
        table.fail("progress", f"the runner makes only {runner.progress} progress write(s)")


def load_scenario(path: Path) -> Scenario:
    """The scenario in the TOML file at ``path``; any error reading, decoding or validating it
    is a :class:`ScenarioError` naming the file (and the key, where one is at fault)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except RecursionError as exc:
        raise ScenarioError(f"{path}: not a scenario (nested too deeply to read)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    scenario = parse_scenario(data, str(path))
    if scenario.name != path.stem:
        raise ScenarioError(
            f"{path}: name: {scenario.name!r} must match the file name {path.stem!r}"
        )
    return scenario


def default_scenario_dir() -> Path:
    """The catalog: the ``scenarios`` folder inside the ``harness`` package (package data, so an
    installed racetape finds it as a checkout does)."""
    return Path(__file__).resolve().parent / "scenarios"


def scenario_dirs() -> list[Path]:
    here = Path.cwd() / "scenarios"
    dirs = [here] if here.is_dir() else []
    default = default_scenario_dir()
    if default.is_dir() and default not in dirs:
        dirs.append(default)
    return dirs


def find_scenarios() -> list[Scenario]:
    """Every scenario in the scenario folders, by name; the first folder wins a name clash."""
    found: dict[str, Scenario] = {}
    for folder in scenario_dirs():
        try:
            paths = sorted(folder.glob("*.toml"))
        except OSError as exc:
            raise ScenarioError(f"{folder}: cannot list scenarios: {exc.strerror}") from exc
        for path in paths:
            found.setdefault(path.stem, load_scenario(path))
    return [found[name] for name in sorted(found)]


def resolve_scenario(name_or_path: str) -> Scenario:
    """A scenario by file path, or by name from the scenario folders."""
    path = Path(name_or_path)
    try:
        if path.suffix == ".toml" or path.exists():
            if not path.is_file():
                raise ScenarioError(f"{path}: no such scenario file")
            return load_scenario(path)
        for folder in scenario_dirs():
            candidate = folder / f"{name_or_path}.toml"
            if candidate.is_file():
                return load_scenario(candidate)
    except OSError as exc:  # a folder on the way that cannot be searched
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    names = ", ".join(s.name for s in find_scenarios()) or "none found"
    raise ScenarioError(f"--scenario: unknown scenario {name_or_path!r}; known: {names}")
