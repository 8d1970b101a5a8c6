"""The swimlane timeline of one failing run, laid out from its trace (``timeline`` and ``steps``).

Lanes, grouped by where the code runs:

* **event loop**: one row per task actor (``main``, ``main/run1``, ``main/cancel1``...), and one
  per worker-thread job's continuation on the loop (the reporter hands its append to the loop
  and waits: the ``append.*`` points after a ``delegate`` event run there);
* **worker threads**: one row per ``asyncio.to_thread`` job, from its start to its end;
* **DB connections**: each database operation (``create``, ``status``, ``append``) from the step
  after its ``*.begin`` point to its commit (``create.done``, ``status.committed``,
  ``append.done``). The trace does not say which pooled connection served an operation, so the
  operations are put on the fewest connections that can serve them in order, and the page says
  so.

The x axis is the order of the run's timeline events, not wall time: in a controlled run one
actor runs at a time and the order is what replays; the recorded times are in the tooltips.

Marks: control points passed (dot) or parked at (circle), a wait for its turn at a point that is
not a decision (a lilac bar), decisions (diamond, ``#step``, with what else could have gone),
the decisions that deviated from first come, first served (ringed, with ``file:line`` where
:mod:`harness.report.where` knows it), commits (square), cancels landing, and the oracle's
verdict after the run settled (a red line). Where the scenario has one task, the commits that
broke the invariant (an event committed after ``final``, a second ``final``) are marked as the
culprit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.report.where import where
from harness.traces import TraceError, load_trace_document

COMMIT_POINTS = {"append.done", "status.committed", "create.done"}
DB_BEGIN_POINTS = {"create.begin", "status.begin", "append.begin"}  # each ends at a commit point

LaneGroup = Literal["event loop", "worker threads", "DB connections"]
LANE_GROUPS: tuple[LaneGroup, ...] = ("event loop", "worker threads", "DB connections")


@dataclass
class Mark:
    x: int
    kind: str  # pass, park, decision, commit, spawn, done, cancelled, raised, ...
    title: str
    label: str = ""
    culprit: bool = False
    step: int | None = None  # a decision's step
    deviation: bool = False  # a decision that did not go first come, first served


@dataclass(frozen=True)
class Deviation:
    """A decision where the actor that went was not the first come (``enabled[0]``): the
    definition shrinking counts by (:func:`racetape._engine.drawn.deviations`)."""

    step: int
    actor: str
    detail: str
    ahead_of: str  # the first come, passed over
    where: str | None  # file:line, where known


def deviates(step: dict[str, Any]) -> bool:
    """Whether a trace's decision (one of its ``steps``) passed over the first come."""
    enabled = step.get("enabled") or []
    return bool(enabled) and step.get("actor") != enabled[0]


def deviations_of(steps: list[dict[str, Any]]) -> list[Deviation]:
    """The decisions of a trace's ``steps`` that deviated from first come, first served."""
    found = []
    for number, step in enumerate(steps):
        if deviates(step):
            enabled, actor = step["enabled"], str(step.get("actor", "?"))
            detail = str(step.get("detail", ""))
            found.append(
                Deviation(
                    int(step.get("step", number)), actor, detail, enabled[0], where(actor, detail)
                )
            )
    return found


@dataclass
class Span:
    x0: int
    x1: int
    kind: str  # alive, parked, ready (waits its turn), waiting, transaction
    title: str
    label: str = ""
    culprit: bool = False


@dataclass
class Lane:
    group: LaneGroup
    name: str
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """One thing the oracle found (``task 1``, ``final-not-last``, the tape), or how the run
    ended (``hung``, the problem)."""

    subject: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return (
            f"{self.subject}: {self.kind}: {self.detail}"
            if self.subject
            else f"{self.kind}: {self.detail}"
        )


@dataclass
class Swimlanes:
    source: str
    lanes: list[Lane]
    events: int  # x runs over 0..events-1; the oracle's line is at x = events
    steps: list[dict[str, Any]]
    verdict: list[Finding]  # what the oracle found, or how the run ended
    notes: list[str]
    error: str | None = None  # the trace could not be read: nothing else is set
    deviations: list[Deviation] = field(default_factory=list)

    def grouped(self) -> list[tuple[LaneGroup, list[Lane]]]:
        return [(g, [lane for lane in self.lanes if lane.group == g]) for g in LANE_GROUPS]


def _base(point: str) -> str:
    return point.split("(", 1)[0]


def _detail(point: str) -> str:
    return point[len(_base(point)) :].strip("()")


def _op_label(point: str) -> str:
    """``append.begin(kind=progress)`` -> ``append progress``."""
    values = [part.split("=", 1)[-1] for part in _detail(point).split(", ") if part]
    return " ".join([_base(point).split(".")[0], *values])


class _Layout:
    def __init__(self, trace: dict[str, Any]) -> None:
        self.timeline: list[dict[str, Any]] = trace.get("timeline") or []
        self.steps: list[dict[str, Any]] = trace.get("steps") or []
        self.lanes: dict[tuple[LaneGroup, str], Lane] = {}
        self.kind: dict[str, str] = {}
        self.delegated: set[str] = set()
        self.parked: dict[str, tuple[Lane, int, str]] = {}
        self.open_ops: dict[str, tuple[int, str]] = {}
        self.pending_ops: dict[str, str] = {}  # parked at a *.begin: the op starts on release
        self.ready: dict[str, tuple[Lane, int, str]] = {}  # waiting its turn since x, at point
        self.ops: list[tuple[int, int, str, str, bool]] = []  # x0, x1, label, actor, committed
        self.commits: list[tuple[int, str, Mark]] = []  # x, point, its mark (for the culprit)
        self.connection_rows: list[Lane] = []

    def lane(self, group: LaneGroup, name: str) -> Lane:
        return self.lanes.setdefault((group, name), Lane(group, name))

    def lane_of(self, actor: str) -> Lane:
        if self.kind.get(actor) == "thread":
            if actor in self.delegated:
                return self.lane("event loop", f"{actor} (continuation on the loop)")
            return self.lane("worker threads", actor)
        return self.lane("event loop", actor)

    def build(self) -> None:
        for x, entry in enumerate(self.timeline):
            self.event(x, entry)
        end = len(self.timeline)
        for actor, (lane, x0, point) in self.parked.items():
            lane.spans.append(Span(x0, end, "parked", f"{actor} still parked at {point}"))
        for actor, (lane, x0, point) in self.ready.items():
            lane.spans.append(Span(x0, end, "ready", f"{actor} still waits its turn at {point}"))
        for actor, (x0, label) in self.open_ops.items():
            self.ops.append((x0, end, f"{label} (never committed)", actor, False))
        self.connection_rows = self.connections()

    def event(self, x: int, entry: dict[str, Any]) -> None:
        actor, event = str(entry.get("actor", "?")), str(entry.get("event", "?"))
        when = f"t={float(entry.get('t', 0)) * 1000:.3f} ms"
        point = str(entry.get("point") or "")
        if event == "spawn":
            self.kind[actor] = str(entry.get("kind", "task"))
            lane = self.lane_of(actor)
            lane.spans.append(Span(x, -1, "alive", f"{actor} ({self.kind[actor]})"))
            lane.marks.append(Mark(x, "spawn", f"{actor} starts ({when})"))
            return
        if event == "delegate":
            thread_lane = self.lane_of(actor)
            thread_lane.marks.append(
                Mark(x, "delegate", f"{actor} hands its event to the loop and waits ({when})")
            )
            thread_lane.spans.append(
                Span(x, -1, "waiting", f"{actor} waits for the loop to commit its event")
            )
            self.delegated.add(actor)
            self.lane_of(actor).spans.append(Span(x, -1, "alive", f"{actor} on the loop"))
            return
        lane = self.lane_of(actor)
        if actor in self.ready:  # its turn came: whatever it does next ends the wait
            ready_lane, x0, at = self.ready.pop(actor)
            ready_lane.spans.append(Span(x0, x, "ready", f"{actor} waits its turn at {at}"))
        if event == "wait turn":
            self.ready[actor] = (lane, x, point)
            return
        if event in ("pass", "park"):
            self.point(x, actor, lane, event, point, when)
        elif event == "release":
            self.release(x, actor, lane, entry, when)
        elif event in ("done", "never ran"):
            self.finish(x, actor, event, when)
        else:  # cancelled, crashed, raised, fire, ...
            what = entry.get("at") or entry.get("error") or entry.get("landing") or ""
            lane.marks.append(
                Mark(x, event, f"{actor}: {event} {what} ({when})".replace("  ", " "), event)
            )

    def point(self, x: int, actor: str, lane: Lane, event: str, point: str, when: str) -> None:
        base = _base(point)
        if base in COMMIT_POINTS:
            mark = Mark(x, "commit", f"{actor} committed: {point} ({when})")
            self.commits.append((x, point, mark))
            if actor in self.open_ops:
                x0, label = self.open_ops.pop(actor)
                self.ops.append((x0, x, label, actor, True))
        else:
            verb = "passes" if event == "pass" else "parks at"
            mark = Mark(x, event, f"{actor} {verb} {point} ({when})")
        lane.marks.append(mark)
        if base in DB_BEGIN_POINTS:
            if event == "pass":
                self.open_ops[actor] = (x, _op_label(point))
            else:
                self.pending_ops[actor] = _op_label(point)
        if event == "park":
            self.parked[actor] = (lane, x, point)

    def release(self, x: int, actor: str, lane: Lane, entry: dict[str, Any], when: str) -> None:
        step = entry.get("step")
        decision = self.steps[step] if isinstance(step, int) and step < len(self.steps) else {}
        others = [a for a in decision.get("enabled", []) if a != actor]
        title = f"decision #{step}: {actor} goes from {decision.get('detail', entry.get('point'))}"
        title += f"; could also have gone: {', '.join(others)}" if others else "; the only choice"
        if decision.get("landing"):
            title += f"; the cancel lands: {decision['landing']}"
        title += f" ({when})"
        if actor in self.parked:
            parked_lane, x0, point = self.parked.pop(actor)
            parked_lane.spans.append(Span(x0, x, "parked", f"{actor} parked at {point}"))
            lane = parked_lane
        deviation = deviates(decision)
        if deviation:
            at = where(str(decision.get("actor")), str(decision.get("detail", "")))
            title = f"DEVIATION, ahead of {decision['enabled'][0]} (the first come): {title}"
            title += f"; at {at}" if at else ""
        label = f"#{step}" + (" cancel lands" if decision.get("landing") else "")
        lane.marks.append(
            Mark(
                x,
                "decision",
                title,
                label,
                step=step if isinstance(step, int) else None,
                deviation=deviation,
            )
        )
        if actor in self.pending_ops:
            self.open_ops[actor] = (x, self.pending_ops.pop(actor))

    def finish(self, x: int, actor: str, event: str, when: str) -> None:
        lanes = [self.lane_of(actor)]
        if actor in self.delegated:
            lanes.append(self.lane("worker threads", actor))
        for lane in lanes:
            for span in lane.spans:
                if span.x1 == -1:
                    span.x1 = x
            lane.marks.append(Mark(x, "done", f"{actor}: {event} ({when})"))
        self.parked.pop(actor, None)
        if actor in self.open_ops:
            x0, label = self.open_ops.pop(actor)
            self.ops.append((x0, x, f"{label} (rolled back: its actor ended)", actor, False))

    def connections(self) -> list[Lane]:
        """Operations on the fewest connections that serve them: first free one, in order."""
        rows: list[Lane] = []
        ends: list[int] = []
        for x0, x1, label, actor, committed in sorted(self.ops):
            free = next((i for i, end in enumerate(ends) if end < x0), None)
            if free is None:
                rows.append(Lane("DB connections", f"connection {len(rows) + 1}"))
                ends.append(x1)
                free = len(rows) - 1
            ends[free] = x1
            rows[free].spans.append(Span(x0, x1, "transaction", f"{label}, by {actor}", label))
            if committed:
                rows[free].marks.append(Mark(x1, "commit", f"{label} committed, by {actor}"))
        return rows


def _culprits(layout: _Layout, violations: list[dict[str, Any]], tasks: int) -> None:
    """Mark the commits that broke the invariant, where the trace can tell which they were."""
    if tasks != 1:
        return  # commits are not tied to a task in the trace: no guessing with several tasks
    kinds = {v.get("kind") for v in violations}
    appends = [(x, p, m) for x, p, m in layout.commits if _base(p) == "append.done"]
    finals = [(x, m) for x, p, m in appends if "kind=final" in p]
    if not finals:
        return
    first_final = finals[0][0]
    blamed: list[Mark] = []
    if "final-not-last" in kinds:
        blamed += [m for x, p, m in appends if x > first_final and "kind=final" not in p]
    if "duplicate-final" in kinds:
        blamed += [m for _, m in finals[1:]]
    for mark in blamed:
        mark.culprit, mark.label = True, "violation"
        mark.title = "VIOLATION: " + mark.title
    culprit_xs = {m.x for m in blamed}
    for row in layout.connection_rows:
        for span in row.spans:
            if span.x1 in culprit_xs:
                span.culprit = True
        for mark in row.marks:
            if mark.x in culprit_xs:
                mark.culprit = True


def swimlanes(trace: dict[str, Any], source: str) -> Swimlanes:
    """Lay out one trace document (already parsed)."""
    layout = _Layout(trace)
    layout.build()
    outcome = trace.get("outcome") or {}
    violations: list[dict[str, Any]] = outcome.get("violations") or []
    tasks = int((trace.get("scenario") or {}).get("tasks", 1))
    _culprits(layout, violations, tasks)
    verdict = [
        Finding(f"task {v.get('task')}", str(v.get("kind")), str(v.get("detail")))
        for v in violations
    ]
    if outcome.get("status") not in (None, "settled"):
        verdict.append(Finding("", str(outcome["status"]), str(outcome.get("problem"))))
    notes = [
        "x: the order of the run's events, not wall time (times are in the tooltips)",
        "DB connections: the trace does not record which pooled connection served an"
        " operation; operations are shown on the fewest connections that can serve them",
    ]
    if trace.get("strategy") == "jitter":
        notes.append("a jitter run: the OS scheduled it; the order shown happened once")
    lanes = [*layout.lanes.values(), *layout.connection_rows]
    order = {g: i for i, g in enumerate(LANE_GROUPS)}
    lanes.sort(key=lambda lane: order[lane.group])
    for lane in lanes:
        for span in lane.spans:
            if span.x1 == -1:
                span.x1 = len(layout.timeline)
    return Swimlanes(
        source,
        lanes,
        len(layout.timeline),
        layout.steps,
        verdict,
        notes,
        deviations=deviations_of(layout.steps),
    )


def load_swimlanes(path: str, base: Path) -> Swimlanes:
    """The swimlanes of the trace at ``path`` (relative paths resolve against ``base``); a trace
    that cannot be read gives a :class:`Swimlanes` that says why, so the page still renders."""
    resolved = Path(path) if Path(path).is_absolute() else base / path
    try:
        trace = load_trace_document(resolved)
    except TraceError as exc:
        return Swimlanes(path, [], 0, [], [], [], error=str(exc))
    if not isinstance(trace.get("timeline"), list):
        return Swimlanes(path, [], 0, [], [], [], error=f"{resolved}: no timeline in it")
    return swimlanes(trace, path)
