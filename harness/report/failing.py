"""What the HTML page shows of each failing group: its first failing run's timeline, shrunk first.

A group's shrunk run is the trace ``racetape shrink`` wrote beside the group's first failing
trace under its default name (:func:`harness.traces.shrunk_path`), taken only if it says it was
shrunk (``shrunk_from``) from that run: the same scenario, faults, run and run seed. Without
one the page says so and shows the recorded run; nothing is shrunk here. The recorded run is
always a click away.

Links are relative to the folder the page is written to, so that they resolve where the page
is opened; trace paths in the result are relative to ``base`` (where ``racetape run`` ran).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.geometry import Geometry, layout
from harness.report.summary import GroupFigures
from harness.report.timeline import Swimlanes, load_swimlanes
from harness.traces import TraceError, load_trace_document, shrunk_path

SAME_RUN = ("scenario", "faults", "run", "run_seed")
"""What a shrunk trace keeps of the run it was shrunk from (``Shrunk.document``)."""


@dataclass(frozen=True)
class Timeline:
    """One trace's timeline on the page."""

    anchor: str  # its element id
    path: str  # the trace, as the result (or the shrink) names it
    href: str  # the trace file, relative to the page
    lanes: Swimlanes
    geometry: Geometry

    @property
    def oracle_text(self) -> str:
        return oracle_text(self.lanes)


@dataclass(frozen=True)
class Failure:
    """A failing group: its number on the page, its figures, and the timelines to show."""

    number: int
    figures: GroupFigures
    recorded: Timeline | None  # the first failing run's, as recorded; None: no trace kept
    shrunk: Timeline | None
    no_shrunk: str  # why there is no shrunk timeline (empty when there is one)
    report: list[str]  # a raced pytest test's report of its first failing run, if any

    @property
    def anchor(self) -> str:
        return f"failure-{self.number}"

    @property
    def shown(self) -> Timeline | None:
        """The timeline shown first: the shrunk run's, else the recorded one's."""
        return self.shrunk or self.recorded


def oracle_text(lanes: Swimlanes) -> str:
    return "oracle: violation" if lanes.verdict else "oracle: clean"


def href(path: str, base: Path, page_dir: Path) -> str:
    """``path`` (relative to ``base``) as a link from a page in ``page_dir``."""
    target = Path(path) if Path(path).is_absolute() else base / path
    try:
        return Path(os.path.relpath(target.resolve(), page_dir.resolve())).as_posix()
    except ValueError:  # another drive: no relative path
        return target.resolve().as_uri()


def _timeline(anchor: str, path: str, base: Path, page_dir: Path) -> Timeline:
    lanes = load_swimlanes(path, base)
    return Timeline(
        anchor, path, href(path, base, page_dir), lanes, layout(lanes, oracle_text(lanes))
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return load_trace_document(path)
    except TraceError:
        return None


def find_shrunk(trace: str, base: Path) -> tuple[str | None, str]:
    """The shrunk trace of the run at ``trace`` (as the result names it), or None and why not."""
    candidate = shrunk_path(Path(trace))
    resolved = candidate if candidate.is_absolute() else base / candidate
    if not resolved.is_file():
        return None, f"No shrunk trace: {candidate} does not exist."
    shrunk = _read(resolved)
    recorded = _read(base / trace if not Path(trace).is_absolute() else Path(trace))
    if shrunk is None or not isinstance(shrunk.get("shrunk_from"), dict):
        return None, f"{candidate} is not a shrunk trace, so it is not shown."
    if recorded is None or any(shrunk.get(key) != recorded.get(key) for key in SAME_RUN):
        return None, (
            f"{candidate} was not shrunk from this run (another scenario, fault set or run),"
            " so it is not shown."
        )
    return str(candidate), ""


def plugin_report(group: dict[str, Any]) -> list[str]:
    """The report the pytest plugin printed for a raced test's first failing run (its replay
    command and its deviating decisions, with ``file:line``), as ``--race-json`` keeps it."""
    raced = group.get("pytest")
    first = raced.get("first_failure") if isinstance(raced, dict) else None
    report = first.get("report") if isinstance(first, dict) else None
    return [line for line in report if isinstance(line, str)] if isinstance(report, list) else []


def failures(groups: list[GroupFigures], base: Path, page_dir: Path) -> list[Failure]:
    """The failing groups, numbered from 1 in the result's order."""
    found: list[Failure] = []
    for g in (g for g in groups if g.failed):
        number = len(found) + 1
        trace, report = g.first_trace, plugin_report(g.group)
        if trace is None:
            why = "No trace was kept for this group: no timeline."
            found.append(Failure(number, g, None, None, why, report))
            continue
        recorded = _timeline(f"timeline-{number}-recorded", trace, base, page_dir)
        shrunk_trace, why = find_shrunk(trace, base)
        shrunk = None
        if shrunk_trace is not None:
            shrunk = _timeline(f"timeline-{number}-shrunk", shrunk_trace, base, page_dir)
        found.append(Failure(number, g, recorded, shrunk, why, report))
    return found
