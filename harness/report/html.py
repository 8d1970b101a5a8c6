"""The HTML report: one self-contained page (no network at view time) from a result document.

Plots are matplotlib SVGs embedded as ``data:`` images; the swimlane timelines are inline SVG,
laid out by :mod:`harness.report.geometry` so that no two labels overlap; the page's own
Content-Security-Policy forbids every fetch, so a missing embed shows as a console error in a
browser rather than as a quiet request. ``base`` is where the result's relative trace paths
resolve (the folder ``racetape run`` ran in); ``page_dir`` is the folder the page is written to
(default ``base``), which its links to trace files are relative to. A trace that cannot be read
is named on the page in place of its timeline.

Each failing group links to its timeline and its trace file; the timeline shown is the group's
shrunk run where ``racetape shrink`` wrote one (:mod:`harness.report.failing`), the recorded one
a click away. Each mark the timelines draw has one entry in the legend (:data:`LEGEND`), and
each strand kind found one sentence (:data:`harness.oracle.STRAND_SENTENCES`).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2

from harness.report.failing import failures
from harness.report.geometry import MARK_FONT, NAME_FONT, NAME_INDENT
from harness.report.plots import rate_plot, runs_to_strand_plot
from harness.report.summary import BOUND_DEFINITION, BOUND_NAME, figures, kinds_found

LEGEND: tuple[tuple[str, str], ...] = (
    ("pass", "control point passed"),
    ("park", "parked at a point, for a decision"),
    ("decision", "decision (#step); click it for its row in the table"),
    ("deviation", "deviation: a decision that did not go first come, first served"),
    ("commit", "commit"),
    ("culprit", "the commit that broke the invariant"),
    ("edge", "an actor starts, ends, or hands its event to the loop"),
    ("other", "a cancel landing, a crash, an error"),
    ("alive", "an actor alive"),
    ("parked", "parked, waiting for a decision"),
    ("ready", "waiting its turn at a point (not a decision)"),
    ("waiting", "a worker thread waiting for the loop"),
    ("transaction", "a DB transaction, begin to commit"),
    ("culprit-transaction", "the transaction that broke the invariant"),
    ("oracle", "the oracle's check, once the run settled"),
)
"""Every mark a timeline draws (its ``data-legend`` key) and what it means, in legend order."""


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(doc: dict[str, Any], base: Path, page_dir: Path | None = None) -> str:
    groups = [figures(g) for g in doc["groups"]]
    found = failures(groups, base, page_dir if page_dir is not None else base)
    by_group = {id(f.figures): f for f in found}
    template = _environment().get_template("report.html.j2")
    return template.render(
        doc=doc,
        rows=[(g, by_group.get(id(g))) for g in groups],
        failures=found,
        kinds=kinds_found(groups),
        bound_name=BOUND_NAME,
        bound_definition=BOUND_DEFINITION,
        rate_plot=_data_uri(rate_plot(groups)),
        runs_plot=_data_uri(runs_to_strand_plot(groups)),
        legend=LEGEND,
        mark_font=MARK_FONT,
        name_font=NAME_FONT,
        name_indent=NAME_INDENT,
    )
