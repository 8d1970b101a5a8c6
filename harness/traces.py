"""Trace files: one run, recorded so that it replays alone, on this machine or another.

A trace embeds the scenario itself (not a path to it), the adapter, the faults, the mode and its
seeds, the decision list, and the outcome it led to. Replaying a controlled trace follows the
decision list and reaches the same interleaving; replaying a jitter trace reuses its seed, which
fixes the delays only (see :mod:`racetape._engine.jitter`).
"""

from __future__ import annotations

import datetime
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.adapters import ADAPTERS
from harness.files import read_json
from harness.run import RunResult, target_description
from harness.scenario import Scenario, ScenarioError, parse_scenario
from racetape._engine.strategies import STRATEGIES
from reftask.faults import Fault, UnknownFaultError, parse_faults

TRACE_SCHEMA = "racetape.trace/1"
TRACE_STRATEGIES = (*STRATEGIES, "hypothesis")
"""What a trace's ``strategy`` may say: a run's strategy, or ``hypothesis`` for the traces
``shrink`` and ``explore`` write (harness.shrink, harness.search)."""


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message is one line naming file and field."""


@dataclass(frozen=True)
class Trace:
    scenario: Scenario
    adapter: str
    faults: frozenset[Fault]
    strategy: str
    seed: int
    run: int
    run_seed: int
    decisions: tuple[str, ...]
    outcome: dict[str, Any]
    details: tuple[str, ...] | None = None  # the point each decision let go from, if recorded
    jitter_max_delay: float | None = None
    source: str = "<trace>"

    @property
    def controlled(self) -> bool:
        return self.strategy != "jitter"

    def recorded_kinds(self) -> list[tuple[int, str]]:
        return sorted((v["task"], v["kind"]) for v in self.outcome.get("violations", []))


def outcome_of(result: RunResult) -> dict[str, Any]:
    return {
        "status": result.schedule.outcome,
        "problem": result.schedule.problem,
        "violations": [
            {"kind": str(v.kind), "task": result.task_number(v.task_id), "detail": v.detail}
            for v in result.violations
        ],
        "landings": result.landings,
    }


def describe_kinds(kinds: list[tuple[int, str]]) -> str:
    """``task 1: final-not-last, task 2: seq-broken``, or ``no strand``."""
    return ", ".join(f"task {task}: {kind}" for task, kind in kinds) or "no strand"


def violation_lines(outcome: dict[str, Any]) -> list[str]:
    """A recorded outcome (:func:`outcome_of`, as :func:`load_trace` validates it) as lines:
    each violation, and a hang."""
    lines = [
        f"task {v.get('task')}: {v.get('kind')}: {v.get('detail')}"
        for v in outcome.get("violations") or []
    ]
    if outcome.get("status") not in (None, "settled"):
        lines.append(f"{outcome['status']}: {outcome.get('problem')}")
    return lines


def replay_command(trace_path: str) -> str:
    return shlex.join(["racetape", "replay", trace_path])


def run_folder_name(shard: tuple[int, int], started: datetime.datetime) -> str:
    """The name of one run's traces folder, so that a run's traces never sit beside an older
    run's: when it started (UTC, to the second), and its shard when it is one of several
    (``run-20261201T142000Z``, ``run-20261201T142000Z-shard2of4``)."""
    name = "run-" + started.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    index, count = shard
    return name if count == 1 else f"{name}-shard{index}of{count}"


def shrunk_path(trace_path: Path) -> Path:
    """Where ``racetape shrink TRACE`` writes the shrunk trace unless told (``--out``): beside
    it, ``NAME.shrunk.json``; the HTML report looks there for a group's shrunk run."""
    return trace_path.with_name(f"{trace_path.stem}.shrunk.json")


def kinds_of(result: RunResult) -> list[tuple[int, str]]:
    return sorted((result.task_number(v.task_id), str(v.kind)) for v in result.violations)


def trace_document(
    *,
    scenario: Scenario,
    adapter: str,
    faults: frozenset[Fault],
    strategy: str,
    seed: int,
    run: int,
    run_seed: int,
    result: RunResult,
    jitter_max_delay: float | None = None,
) -> dict[str, Any]:
    return {
        "schema": TRACE_SCHEMA,
        **target_description(scenario, faults),
        "adapter": adapter,
        "strategy": strategy,
        "seed": seed,
        "run": run,
        "run_seed": run_seed,
        "jitter_max_delay": jitter_max_delay,
        "decisions": result.schedule.choices,
        "steps": [d.to_json() for d in result.schedule.decisions],
        "outcome": outcome_of(result),
        "timeline": result.schedule.timeline,
    }


def load_trace(path: Path) -> Trace:
    """The trace at ``path``; any error reading, decoding or validating it is a
    :class:`TraceError` naming the file and the field."""
    return trace_from_dict(read_json(path, TraceError, "trace"), str(path))


def load_trace_document(path: Path) -> dict[str, Any]:
    """The trace document at ``path``, validated as :func:`load_trace` validates it, for what
    reads more of it than a :class:`Trace` holds (the timeline of a report)."""
    data: dict[str, Any] = read_json(path, TraceError, "trace")
    trace_from_dict(data, str(path))
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_outcome(outcome: dict[str, Any], fail: Callable[[str, str], TraceError]) -> None:
    violations = outcome.get("violations", [])
    if not isinstance(violations, list) or not all(
        isinstance(v, dict) and _is_int(v.get("task")) and isinstance(v.get("kind"), str)
        for v in violations
    ):
        raise fail("outcome.violations", "must be a list of {task: integer, kind: string}")
    landings = outcome.get("landings", [])
    if not isinstance(landings, list) or not all(isinstance(w, str) for w in landings):
        raise fail("outcome.landings", "must be a list of window names")
    for key in ("status", "problem"):
        if not isinstance(outcome.get(key), str | None):
            raise fail(f"outcome.{key}", "must be a string")


def _check_timeline(data: dict[str, Any], fail: Callable[[str, str], TraceError]) -> None:
    timeline = data.get("timeline", [])
    if not isinstance(timeline, list) or not all(isinstance(e, dict) for e in timeline):
        raise fail("timeline", "must be a list of objects")
    for number, entry in enumerate(timeline):
        if "t" in entry and not _is_number(entry["t"]):
            raise fail(f"timeline[{number}].t", "must be a number of seconds")
        if not isinstance(entry.get("step"), int | None) or isinstance(entry.get("step"), bool):
            raise fail(f"timeline[{number}].step", "must be a decision number")
    for number, step in enumerate(data.get("steps") or []):
        enabled = step.get("enabled", [])
        if not isinstance(enabled, list) or not all(isinstance(a, str) for a in enabled):
            raise fail(f"steps[{number}].enabled", "must be a list of actor names")


def trace_from_dict(data: Any, source: str) -> Trace:
    """A trace document already parsed (a file's, or one embedded in an emitted test);
    ``source`` names it in errors."""

    def fail(field: str, message: str) -> TraceError:
        return TraceError(f"{source}: {field}: {message}")

    if not isinstance(data, dict) or data.get("schema") != TRACE_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise fail("schema", f"expected {TRACE_SCHEMA!r}, found {found!r}")
    for field, kind in [
        ("scenario", dict), ("adapter", str), ("faults", list), ("strategy", str), ("seed", int),
        ("run", int), ("run_seed", int), ("decisions", list), ("outcome", dict),
    ]:  # fmt: skip
        if not isinstance(data.get(field), kind) or isinstance(data.get(field), bool):
            raise fail(field, f"missing or not a {kind.__name__}")
    if data["strategy"] not in TRACE_STRATEGIES:
        raise fail(
            "strategy",
            f"unknown strategy {data['strategy']!r}; traces record {', '.join(TRACE_STRATEGIES)}",
        )
    if not all(isinstance(f, str) for f in data["faults"]):
        raise fail("faults", "must be a list of fault names")
    _check_outcome(data["outcome"], fail)
    if data["adapter"] not in ADAPTERS:
        raise fail(
            "adapter", f"unknown adapter {data['adapter']!r}; adapters: {', '.join(ADAPTERS)}"
        )
    if not all(isinstance(d, str) for d in data["decisions"]):
        raise fail("decisions", "must be a list of actor names")
    details = None
    if "steps" in data:
        steps = data["steps"]
        if not isinstance(steps, list) or len(steps) != len(data["decisions"]):
            raise fail("steps", "must be a list with one entry per decision")
        found = [step.get("detail") if isinstance(step, dict) else None for step in steps]
        if not all(isinstance(detail, str) for detail in found):
            raise fail("steps", "each step needs its detail (the point it let go from)")
        details = tuple(str(detail) for detail in found)
    _check_timeline(data, fail)
    try:
        faults = parse_faults(data["faults"])
    except UnknownFaultError as exc:
        raise fail("faults", str(exc)) from exc
    try:
        scenario = parse_scenario(data["scenario"], f"{source}#scenario")
    except ScenarioError as exc:
        raise TraceError(str(exc)) from exc  # it names the trace, as FILE#scenario
    delay = data.get("jitter_max_delay")
    if delay is not None and not (_is_number(delay) and delay >= 0):
        raise fail("jitter_max_delay", f"must be a number of seconds >= 0, got {delay!r}")
    return Trace(
        scenario=scenario,
        adapter=data["adapter"],
        faults=faults,
        strategy=data["strategy"],
        seed=data["seed"],
        run=data["run"],
        run_seed=data["run_seed"],
        decisions=tuple(data["decisions"]),
        outcome=data["outcome"],
        details=details,
        jitter_max_delay=float(delay) if isinstance(delay, int | float) else None,
        source=source,
    )
