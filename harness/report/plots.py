"""The HTML report's plots, drawn with matplotlib and returned as standalone SVG documents.

Figures are made with the object API (no pyplot state, no GUI backend) and saved with a fixed
hash salt and no date, so the same result document gives the same bytes.

* :func:`rate_plot`: each group's strand rate and, as a line from it, its 95% upper bound: the
  same number as the table's (:data:`harness.report.summary.BOUND_DEFINITION`), not a second
  kind of interval.
* :func:`runs_to_strand_plot`: the distribution of runs to a strand: for every group that
  stranded, the runs from the start (or from the previous strand) to each strand, as an
  empirical CDF; the first point of each curve's data is ``runs_to_first_strand``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

from harness.report.summary import BOUND_NAME, GroupFigures

STRANDED, CLEAN = "#c0392b", "#2e7d32"
FONT_SIZE = 9
"""The plots' font size, in force while a figure is made and while it is drawn (matplotlib makes
tick labels at draw time)."""


def _svg(fig: Figure, salt: str) -> str:
    buffer = io.StringIO()
    with mpl.rc_context({"font.size": FONT_SIZE, "svg.fonttype": "path", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()


def rate_plot(groups: Sequence[GroupFigures]) -> str:
    return _svg(rate_figure(groups), "rate")


def runs_to_strand_plot(groups: Sequence[GroupFigures]) -> str:
    return _svg(runs_to_strand_figure(groups), "runs-to-strand")


def rate_figure(groups: Sequence[GroupFigures]) -> Figure:
    with mpl.rc_context({"font.size": FONT_SIZE}):
        fig = Figure(figsize=(8, 0.45 * len(groups) + 1.2))
        ax = fig.add_subplot()
        rows = list(reversed(groups))  # the first group on top
        for y, g in enumerate(rows):
            if not g.runs:
                ax.text(0, y, "  no runs", va="center", color="#777")
                continue
            rate = g.rate or 0.0
            color = STRANDED if g.strands else CLEAN
            ax.plot([rate, g.upper], [y, y], color=color, linewidth=1.5)
            ax.plot([g.upper], [y], marker="|", markersize=10, color=color)
            ax.plot([rate], [y], marker="o", color=color)
            ax.annotate(
                f"{g.strands}/{g.runs}",
                (g.upper, y),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
            )
        ax.set_yticks(range(len(rows)), [g.label for g in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        top = max((g.upper for g in groups if g.runs), default=1.0)
        ax.set_xlim(0, min(1.0, top * 1.3) or 1.0)
        ax.xaxis.set_major_formatter(lambda value, _: f"{value * 100:.3g}%")
        ax.set_xlabel(f"strand rate (runs with a strand) and its {BOUND_NAME}")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(
            handles=[
                Line2D([], [], marker="o", linestyle="", color=STRANDED, label="rate, stranded"),
                Line2D([], [], marker="o", linestyle="", color=CLEAN, label="rate, no strand"),
                Line2D([], [], marker="|", markersize=10, color="#555", label=BOUND_NAME),
            ],
            fontsize=7,
            loc="lower center",  # above the axes: below, it would meet the axis label
            bbox_to_anchor=(0.5, 1.0),
            ncol=3,
            frameon=False,
        )
        return fig


def strand_gaps(group: dict[str, Any]) -> list[int]:
    """Runs it took to reach each strand: from the start to the first, then from one to the next.

    Counts only runs that finished (``runs_done``), so a sharded or merged document gives the
    same numbers as one unsharded run of the same seeds.
    """
    done = sorted(i for lo, hi in group["runs_done"] for i in range(lo, hi + 1))
    position = {index: n for n, index in enumerate(done, start=1)}
    gaps, previous = [], 0
    for run in sorted(group["strand_runs"]):
        gaps.append(position[run] - previous)
        previous = position[run]
    return gaps


def runs_to_strand_figure(groups: Sequence[GroupFigures]) -> Figure:
    with mpl.rc_context({"font.size": FONT_SIZE}):
        fig = Figure(figsize=(8, 3.6))
        ax = fig.add_subplot()
        stranded = [g for g in groups if g.strands]
        for g in stranded:
            gaps = sorted(strand_gaps(g.group))
            shares = [(i + 1) / len(gaps) for i in range(len(gaps))]
            line = ax.step(gaps, shares, where="post", label=f"{g.label} ({len(gaps)} strands)")[0]
            first = g.group["runs_to_first_strand"]
            ax.plot([first], [0], marker="v", color=line.get_color(), clip_on=False)
        handles, _ = ax.get_legend_handles_labels()
        if stranded:
            handles.append(
                Line2D([], [], marker="v", linestyle="", color="#555", label="runs to the first")
            )
        if stranded:
            if max(max(strand_gaps(g.group)) for g in stranded) > 20:
                ax.set_xscale("log")
                # 1, 2, 5, 10, 20, 50...: enough ticks to read a value off, not two decades.
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlim(left=0.8)
            # Above the axes: inside, a curve rising steeply would run under it.
            ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        else:
            ax.text(0.5, 0.5, "no strand in any group", ha="center", va="center")
            ax.set_xticks([])
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("runs to a strand (from the start, or from the previous strand)")
        ax.set_ylabel("share of strands")
        ax.grid(alpha=0.3)
        return fig
