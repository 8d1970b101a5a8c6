"""The HTML report: one self-contained page (no network at view time) from a result document.

Plots are matplotlib SVGs embedded as ``data:`` images; the swimlane timelines are inline SVG;
the page's own Content-Security-Policy forbids every fetch, so a missing embed shows as a console
error in a browser rather than as a quiet request. ``base`` is where the result's relative trace
paths resolve (the folder ``racetape run`` ran in); a trace that cannot be read is named on the
page in place of its timeline.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harness.report.plots import rate_plot, runs_to_strand_plot
from harness.report.summary import GroupFigures, figures
from harness.report.timeline import Swimlanes, load_swimlanes

LABEL_WIDTH = 330  # px for lane names
STEP_WIDTH = 18  # px per timeline event
ROW_HEIGHT = 24
DB_ROW_HEIGHT = 44  # room for the operations' names, above and below the bars
HEADER_HEIGHT = 20


@dataclass(frozen=True)
class Geometry:
    """Where things go in a swimlane SVG: x of an event, y of each row."""

    events: int

    def x(self, index: float) -> float:
        return LABEL_WIDTH + index * STEP_WIDTH + STEP_WIDTH / 2

    @property
    def width(self) -> int:
        return LABEL_WIDTH + (self.events + 1) * STEP_WIDTH + 120


def _rows(lanes: Swimlanes) -> tuple[list[dict[str, Any]], int]:
    """Group headers and lanes, top to bottom, with their y; and the total height."""
    rows: list[dict[str, Any]] = []
    y = 4
    for group, members in lanes.grouped():
        rows.append({"header": group, "y": y + HEADER_HEIGHT - 6, "count": len(members)})
        y += HEADER_HEIGHT
        height = DB_ROW_HEIGHT if group == "DB connections" else ROW_HEIGHT
        for lane in members:
            rows.append({"header": None, "lane": lane, "y": y + height / 2})
            y += height
    return rows, y + 8


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


@dataclass(frozen=True)
class TimelineView:
    figures: GroupFigures
    lanes: Swimlanes
    geometry: Geometry
    rows: list[dict[str, Any]]
    height: int


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(doc: dict[str, Any], base: Path) -> str:
    groups = [figures(g) for g in doc["groups"]]
    timelines = []
    for g in groups:
        if g.first_trace is None:
            continue
        lanes = load_swimlanes(g.first_trace, base)
        rows, height = _rows(lanes)
        timelines.append(TimelineView(g, lanes, Geometry(lanes.events), rows, height))
    template = _environment().get_template("report.html.j2")
    return template.render(
        doc=doc,
        groups=groups,
        rate_plot=_data_uri(rate_plot(groups)),
        runs_plot=_data_uri(runs_to_strand_plot(groups)),
        timelines=timelines,
        row_height=ROW_HEIGHT,
        label_width=LABEL_WIDTH,
        step_width=STEP_WIDTH,
    )
