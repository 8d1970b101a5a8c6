"""Generated scenarios: a Hypothesis strategy over scenario shapes, and their TOML files.

:func:`scenario_shapes` draws what a scenario file says: how many tasks, the runner (progress
writes, work between them, outcome), the planned cancels (window, via
task or token, which task, which progress write), a planned crash, and which control points are
decisions. Faults are not part of a shape: they are the manager's, chosen by the caller.

Every drawn shape is valid for :func:`harness.scenario.parse_scenario`, and each part shrinks
towards the simplest race: one task, no work, succeed, fewer plans, earlier windows, fewer
points in play. :func:`scenario_file` turns a shape found failing into a catalog file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import strategies as st

from harness.files import write_text_atomic
from harness.scenario import (
    CANCEL_WINDOWS,
    HARNESS_POINTS,
    CancelPlan,
    CrashPlan,
    Expectation,
    RunnerShape,
    Scenario,
    parse_scenario,
)
from reftask.faults import Fault, fault_set_label
from reftask.points import POINTS

MAX_TASKS = 2
MAX_PROGRESS = 3
MAX_CANCELS = 2
DRAWN_NAME = "explored"
"""The name a drawn shape carries until :func:`named` gives it its file's."""

OPTIONAL_POINTS = sorted(
    set(POINTS) | (set(HARNESS_POINTS) - {"cancel.fire", "crash.fire", "crash.done"})
)
"""Points a shape may put in play; a plan's own points are decisions whatever the shape says."""


@st.composite
def _window(draw: st.DrawFn, tasks: int, progress: int) -> tuple[str, int, int]:
    """A plan's window, the task it targets and (for during-progress) which write."""
    windows = [w for w in CANCEL_WINDOWS if w != "during-progress" or progress > 0]
    when = draw(st.sampled_from(windows))
    task = draw(st.integers(1, tasks))
    nth = draw(st.integers(1, progress)) if when == "during-progress" else 1
    return when, task, nth


@st.composite
def _cancel(draw: st.DrawFn, tasks: int, progress: int) -> CancelPlan:
    when, task, nth = draw(_window(tasks, progress))
    via = draw(st.sampled_from(["task", "token"]))
    return CancelPlan(when, via, task, nth)  # type: ignore[arg-type]


@st.composite
def scenario_shapes(draw: st.DrawFn) -> Scenario:
    """A scenario shape, named :data:`DRAWN_NAME`, with no expectations."""
    tasks = draw(st.integers(1, MAX_TASKS))
    runner = RunnerShape(
        progress=draw(st.integers(0, MAX_PROGRESS)),
        work=draw(st.integers(0, 1)),
        outcome=draw(st.sampled_from(["succeed", "fail", "raise"])),
        detached=draw(st.booleans()),
    )
    cancels = draw(st.lists(_cancel(tasks, runner.progress), max_size=MAX_CANCELS))
    crash = None
    # One shape in four plans a crash: a crash ends every other actor of the run, so a shape
    # with one mostly tests the restart, not the interleavings around the cancels.
    if draw(st.integers(0, 3)) == 3:
        when, task, nth = draw(_window(tasks, runner.progress))
        crash = CrashPlan(when, task, nth)  # type: ignore[arg-type]
    points = draw(st.sets(st.sampled_from(OPTIONAL_POINTS)))
    return Scenario(
        name=DRAWN_NAME,
        description="A scenario shape drawn by racetape explore.",
        runner=runner,
        tasks=tasks,
        cancels=tuple(cancels),
        crash=crash,
        points=frozenset(points),
    )


def shape_digest(scenario: Scenario) -> str:
    """Eight hex digits naming the shape (not its name, description or expectations)."""
    data = replace(scenario, name=DRAWN_NAME, description="-", expect=Expectation())
    text = json.dumps(data.to_toml_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def named(
    scenario: Scenario, *, faults: frozenset[Fault], kinds: tuple[str, ...], story: str
) -> Scenario:
    """The shape as a catalog scenario: a name from its faults, failure and digest, a
    description that says what it found and how, and the faults it catches."""
    label = fault_set_label(faults)
    name = f"explore-{label}-{'+'.join(kinds)}-{shape_digest(scenario)}"
    description = (
        f"Found by racetape explore with faults {label}: {describe_shape(scenario)}. Under the"
        f" shrunk interleaving in its trace it strands ({', '.join(kinds)}). {story}"
    )
    return replace(
        scenario,
        name=name,
        description=description,
        expect=Expectation(clean=True, catches=tuple(sorted(faults))),
    )


def describe_shape(scenario: Scenario) -> str:
    r = scenario.runner
    parts = [
        f"{scenario.tasks} task(s), each {r.progress} progress write(s)"
        f"{' fire and forget' if r.detached else ''}, {r.work} work step(s) before each,"
        f" then {r.outcome}"
    ]
    for plan in scenario.cancels:
        where = f" #{plan.progress}" if plan.when == "during-progress" else ""
        parts.append(f"a cancel of task {plan.task} via {plan.via}, {plan.when}{where}")
    if scenario.crash is not None:
        parts.append(f"a crash {scenario.crash.when} of task {scenario.crash.task}")
    points = ", ".join(sorted(scenario.points or ())) or "none beyond the plans' windows"
    parts.append(f"points in play: {points}")
    return "; ".join(parts)


def scenario_toml(scenario: Scenario) -> str:
    data: dict[str, Any] = scenario.to_toml_dict()
    return tomli_w.dumps(data, multiline_strings=True)


def scenario_file(scenario: Scenario, folder: Path) -> Path:
    """Write ``scenario`` as ``folder/<name>.toml`` (atomically), checked by the loader's own
    validation first; returns the path."""
    text = scenario_toml(scenario)
    path = folder / f"{scenario.name}.toml"
    parse_scenario(tomllib.loads(text), str(path))
    write_text_atomic(path, text)
    return path
