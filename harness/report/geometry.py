"""Where everything of a swimlane SVG goes, so that no two text labels overlap at any page width.

The SVG has a fixed size (it scrolls sideways in a narrow window rather than shrinking), so
overlap is decided here, once, not by the browser. Every label is set in a monospace font, whose
width is its length times a known advance (about 0.6 em in DejaVu Sans Mono, Liberation Mono,
Menlo and Consolas; :data:`CHAR_EM` leaves a margin). Labels above a lane's line (decisions,
cancels) and below it (transactions, the violation) are put on the first tier of their side
where they clear every label already there; a lane is as tall as its tiers need. Lane names get
a column as wide as the longest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.report.timeline import Lane, Swimlanes

CHAR_EM = 0.64  # a monospace advance is 0.6 em: a little more, for safety
MARK_FONT = 9  # px, the labels beside marks
NAME_FONT = 11  # px, lane names and group headers
STEP_WIDTH = 18  # px per timeline event
TIER = 12  # px per tier of labels (a 9 px line is about 10.5 px tall)
BAND = 12  # px from a lane's line to the edge of its marks' band, each side
GAP = 4  # px between two labels on one tier
HEADER_HEIGHT = 20
NAME_INDENT = 16


def text_width(text: str, size: int = MARK_FONT) -> float:
    return len(text) * size * CHAR_EM


Pending = list[tuple[float, str, str]]  # left x, text, css class: a label not yet on a tier


@dataclass(frozen=True)
class Label:
    x: float  # left edge
    baseline: float
    text: str
    css: str


@dataclass
class Row:
    """A group header (``header`` set) or a lane, with its vertical place."""

    top: float
    height: float
    header: str | None = None
    count: int = 0
    lane: Lane | None = None
    y: float = 0.0  # a lane's line; a header's baseline
    labels: list[Label] = field(default_factory=list)


def _tiers(items: Pending) -> list[tuple[float, str, str, int]]:
    """(left x, text, css) -> the same with the first tier where each clears the others."""
    rights: list[float] = []
    placed = []
    for left, text, css in sorted(items, key=lambda item: item[0]):
        tier = next((i for i, right in enumerate(rights) if right + GAP <= left), len(rights))
        if tier == len(rights):
            rights.append(0.0)
        rights[tier] = left + text_width(text)
        placed.append((left, text, css, tier))
    return placed


@dataclass(frozen=True)
class Geometry:
    """The x of every event, the rows top to bottom, and the SVG's size."""

    events: int
    label_width: float
    rows: list[Row]
    height: float
    width: float

    def x(self, index: float) -> float:
        return self.label_width + index * STEP_WIDTH + STEP_WIDTH / 2

    @property
    def oracle_x(self) -> float:
        return self.x(self.events)


def _labels(lane: Lane, x: Callable[[float], float]) -> tuple[Pending, Pending]:
    """A lane's labels: those above its line, those below."""
    above: Pending = []
    below: Pending = []
    for mark in lane.marks:
        if not mark.label:
            continue
        if mark.kind == "decision":
            css = "label-deviation" if mark.deviation else "label-decision"
            above.append((x(mark.x) - 6, mark.label, css))
        elif mark.kind == "commit":
            if mark.culprit:
                below.append((x(mark.x) - 14, mark.label, "violation-text"))
        else:
            above.append((x(mark.x) - 4, mark.label, "label-other"))
    for span in lane.spans:
        if span.kind == "transaction" and span.label:
            below.append((x(span.x0) - 4, span.label, "label-transaction"))
    return above, below


def layout(lanes: Swimlanes, oracle_text: str) -> Geometry:
    """Place every row, mark column and label of ``lanes``; ``oracle_text`` goes right of the
    oracle's line, on the first header's band."""
    longest = max((text_width(lane.name, NAME_FONT) for lane in lanes.lanes), default=0.0)
    label_width = max(140.0, NAME_INDENT + longest + 16)

    def x(index: float) -> float:
        return label_width + index * STEP_WIDTH + STEP_WIDTH / 2

    rows: list[Row] = []
    y = 4.0
    right = x(lanes.events) + 4 + text_width(oracle_text, NAME_FONT)
    for group, members in lanes.grouped():
        rows.append(Row(y, HEADER_HEIGHT, header=group, count=len(members), y=y + 14))
        y += HEADER_HEIGHT
        for lane in members:
            above, below = _labels(lane, x)
            placed_above, placed_below = _tiers(above), _tiers(below)
            n_above = 1 + max((t for *_, t in placed_above), default=-1)
            n_below = 1 + max((t for *_, t in placed_below), default=-1)
            line = y + BAND + n_above * TIER
            labels = [
                Label(left, line - BAND + 1 - tier * TIER, text, css)
                for left, text, css, tier in placed_above
            ]
            labels += [
                Label(left, line + BAND + 7 + tier * TIER, text, css)
                for left, text, css, tier in placed_below
            ]
            right = max([right, *(label.x + text_width(label.text) for label in labels)])
            height = 2 * BAND + (n_above + n_below) * TIER
            rows.append(Row(y, height, lane=lane, y=line, labels=labels))
            y += height
    return Geometry(lanes.events, label_width, rows, y + 8, right + 8)
