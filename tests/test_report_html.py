"""The HTML page's content, from real runs and a real shrink: the shrunk run shown first (the
recorded one a click away), the deviating decisions marked with file:line, one sentence per
strand kind shared with the Markdown, one bound defined once, links that resolve, and a legend
entry for every mark drawn. The page in a real browser is in ``test_report_browser.py``.
"""

from __future__ import annotations

import contextlib
import copy
import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

import harness
import reftask
from harness.campaign import Group, Settings, run_groups
from harness.files import write_json_atomic
from harness.oracle import STRAND_SENTENCES, StrandKind
from harness.report import render_html, render_markdown
from harness.report.geometry import layout, text_width
from harness.report.plots import FONT_SIZE, rate_figure, runs_to_strand_figure
from harness.report.summary import BOUND_DEFINITION, figures
from harness.report.timeline import Lane, Mark, Swimlanes
from harness.report.where import point_locations, where
from harness.results import result_document
from harness.scenario import resolve_scenario
from harness.shrink import shrink_trace
from harness.traces import load_trace, shrunk_path
from racetape._engine.drawn import deviations
from reftask.faults import Fault

NTG = frozenset({Fault.NO_TERMINAL_GUARD})


def failing_doc(tmp: Path) -> dict[str, Any]:
    """Three groups: cancel-anywhere with its guard off, its first failing run shrunk beside its
    trace (as ``racetape shrink TRACE`` writes it); late-progress with its guard off, not
    shrunk; and late-progress fixed."""
    anywhere, late = resolve_scenario("cancel-anywhere"), resolve_scenario("late-progress")
    groups = [
        Group(anywhere, "sqlite", NTG, "random"),
        Group(late, "sqlite", NTG, "random"),
        Group(late, "sqlite", frozenset(), "random"),
    ]
    settings = Settings(runs=60, traces_dir=Path("traces"), max_traces=2)
    tmp.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(tmp):
        doc = result_document(run_groups(groups, settings), settings, command="test")
    trace = Path(doc["groups"][0]["traces"][0])
    shrunk = shrink_trace(load_trace(tmp / trace))
    assert deviations(shrunk.after.schedule.decisions) > 0  # a run with deviations to mark
    write_json_atomic(tmp / shrunk_path(trace), shrunk.document())
    return doc


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("html")
    return failing_doc(tmp), tmp


class Page(HTMLParser):
    """What the tests read of a page: ids, links, sources, and elements by class."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        if "id" in found:
            self.ids.add(found["id"])
        if "href" in found:
            self.hrefs.append(found["href"])
        if "src" in found:
            self.srcs.append(found["src"])

    def having(self, css: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if css in a.get("class", "").split()]


def article(html: str, anchor: str) -> str:
    start = html.index(f'<article class="failure" id="{anchor}"')
    return html[start : html.index("</article>", start)]


def test_the_shrunk_run_is_shown_first_and_the_recorded_one_a_click_away(
    shrunk: tuple[dict[str, Any], Path],
) -> None:
    doc, base = shrunk
    html = render_html(doc, base)
    trace = doc["groups"][0]["traces"][0]
    first = article(html, "failure-1")
    shown, recorded = first.split('<details class="recorded"', 1)
    assert 'id="timeline-1-shrunk"' in shown
    assert 'id="timeline-1-recorded"' not in shown
    assert 'id="timeline-1-recorded"' in recorded
    assert f"racetape replay {shrunk_path(Path(trace))}" in shown
    # The group nobody shrank says so, and shows its recorded run.
    second = article(html, "failure-2")
    assert "No shrunk trace" in second
    assert "racetape shrink" in second
    assert 'id="timeline-2-recorded"' in second
    assert '<details class="recorded"' not in second
    assert html.count('<article class="failure"') == 2  # the fixed group has no failure


def test_a_shrunk_trace_of_another_run_is_not_shown_as_this_ones(
    shrunk: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    doc, base = shrunk
    copied = tmp_path / "base"
    shutil.copytree(base, copied)
    first, second = (Path(g["traces"][0]) for g in doc["groups"][:2])
    shutil.copy(copied / shrunk_path(first), copied / shrunk_path(second))
    html = render_html(doc, copied)
    assert "was not shrunk from this run" in article(html, "failure-2")
    assert 'id="timeline-2-shrunk"' not in html


def test_deviating_decisions_are_marked_with_file_and_line(
    shrunk: tuple[dict[str, Any], Path],
) -> None:
    doc, base = shrunk
    trace = json.loads((base / shrunk_path(Path(doc["groups"][0]["traces"][0]))).read_text())
    expected = {s["step"] for s in trace["steps"] if s["actor"] != s["enabled"][0]}
    assert expected
    html = render_html(doc, base)
    svg = re.search(r'<svg class="swimlanes" id="timeline-1-shrunk".*?</svg>', html, re.S)
    assert svg is not None
    marked = Page(svg.group(0)).having("deviation")
    assert {int(m["data-step"]) for m in marked} == expected
    listed = re.search(r'<ul class="deviations">.*?</ul>', article(html, "failure-1"), re.S)
    assert listed is not None
    items = re.findall(r'<li data-step="(\d+)">(.*?)</li>', listed.group(0))
    assert {int(step) for step, _ in items} == expected
    for _, text in items:  # each names where its point is reached: a line that reaches it
        place = re.search(r"at <code>([\w/.]+\.py):(\d+)</code>", text)
        assert place is not None, text
        assert _reaches(place.group(1), int(place.group(2)), text)


def _reaches(path: str, line: int, text: str) -> bool:
    """The call at ``path:line`` (shown relative to its package's folder) reaches the point
    the decision went from."""
    point = re.search(r"went from <code>([\w.]+)", text)
    assert point is not None
    roots = [Path(reftask.__file__).parents[1], Path(harness.__file__).parents[1]]
    source = next(r / path for r in roots if (r / path).is_file())
    return f'"{point.group(1)}"' in "".join(source.read_text().splitlines()[line - 1 : line + 1])


def test_where_reads_file_and_line_from_the_actor_or_the_point() -> None:
    assert where("main>to_thread@app/models.py:12#1", "body") == "app/models.py:12"
    assert where("loop", "turn") is None
    assert (where("main/run1", "run.before_try") or "").startswith("reftask/manager.py:")
    assert set(point_locations()) >= {"append.begin", "write.enter", "cancel.fire"}


def test_one_sentence_per_strand_kind_in_html_and_markdown_alike(
    shrunk: tuple[dict[str, Any], Path],
) -> None:
    doc, base = shrunk
    assert set(STRAND_SENTENCES) == set(StrandKind)
    sentence = STRAND_SENTENCES[StrandKind.FINAL_NOT_LAST]
    html, markdown = render_html(doc, base), render_markdown(doc)
    assert html.count(sentence) == 1  # defined once, linked to from each kind shown
    assert 'id="kind-final-not-last"' in html
    assert 'href="#kind-final-not-last"' in html
    assert markdown.count(sentence) == 1
    assert STRAND_SENTENCES[StrandKind.SEQ_BROKEN] not in html  # only the kinds found


def test_the_bound_is_defined_once_and_no_other_interval_is_shown(
    shrunk: tuple[dict[str, Any], Path],
) -> None:
    doc, base = shrunk
    html, markdown = render_html(doc, base), render_markdown(doc)
    assert html.count(BOUND_DEFINITION) == 1
    assert markdown.count(BOUND_DEFINITION) == 1
    assert 'id="bound"' in html
    assert 'href="#bound"' in html
    assert "two-sided" not in html
    assert "interval" not in html


def test_links_resolve_to_anchors_and_trace_files_from_where_the_page_is(
    shrunk: tuple[dict[str, Any], Path],
) -> None:
    doc, base = shrunk
    page_dir = base / "pages" / "html"
    page = Page(render_html(doc, base, page_dir=page_dir))
    assert all(src.startswith("data:") for src in page.srcs)  # every resource is inline
    anchors = [h for h in page.hrefs if h.startswith("#")]
    files = [h for h in page.hrefs if not h.startswith("#")]
    assert {"#failure-1", "#failure-2", "#bound"} <= set(anchors)
    assert all(h[1:] in page.ids for h in anchors)
    assert files
    assert all((page_dir / h).resolve().is_file() for h in files), files
    assert all(not re.match(r"[a-z]+://", h) for h in files)  # relative: the page moves along


def test_every_mark_drawn_has_an_entry_in_the_legend(shrunk: tuple[dict[str, Any], Path]) -> None:
    doc, base = shrunk
    page = Page(render_html(doc, base))
    legend = {a["data-legend-key"] for _, a in page.elements if "data-legend-key" in a}
    drawn = {a["data-legend"] for _, a in page.elements if "data-legend" in a}
    assert {"deviation", "decision", "ready", "culprit", "transaction", "oracle"} <= drawn
    assert drawn == legend


def test_crowded_labels_are_put_on_tiers_that_do_not_overlap() -> None:
    """Decisions one event apart with labels wider than a step: every pair of estimated label
    boxes in the lane is apart (the browser test measures the real ones)."""
    lane = Lane("event loop", "main")
    lane.marks = [Mark(x, "decision", "", f"#{x} cancel lands", step=x) for x in range(12)]
    geometry = layout(Swimlanes("t", [lane], 12, [], [], []), "oracle: clean")
    (row,) = [r for r in geometry.rows if r.lane is lane]
    boxes = [(lb.x, lb.x + text_width(lb.text), lb.baseline) for lb in row.labels]
    assert len({b for *_, b in boxes}) > 1  # more than one tier
    for i, (left, right, y) in enumerate(boxes):
        for other_left, other_right, other_y in boxes[i + 1 :]:
            assert y != other_y or right <= other_left or other_right <= left
    assert row.height >= len({b for *_, b in boxes}) * 12


def _text_overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of a drawn figure's texts (ticks, axis labels, legend entries, annotations) whose
    boxes overlap by more than a pixel each way."""
    with mpl.rc_context({"font.size": FONT_SIZE}):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()  # type: ignore[no-untyped-call]
        renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
        texts = [
            (t.get_text(), t.get_window_extent(renderer))
            for t in fig.findobj(Text)
            if isinstance(t, Text) and t.get_visible() and t.get_text().strip()
        ]
    found = []
    for i, (a, box) in enumerate(texts):
        for b, other in texts[i + 1 :]:
            w = min(box.x1, other.x1) - max(box.x0, other.x0)
            h = min(box.y1, other.y1) - max(box.y0, other.y0)
            if w > 1 and h > 1:
                found.append((a, b))
    return found


def test_no_two_texts_of_a_plot_overlap(shrunk: tuple[dict[str, Any], Path]) -> None:
    doc, _ = shrunk
    groups = [figures(g) for g in doc["groups"]]
    for fig in (rate_figure(groups), runs_to_strand_figure(groups)):
        assert _text_overlaps(fig) == []
    # The check can fail: a legend below the axes meets the axis label.
    fig = rate_figure(groups)
    fig.axes[0].legend(["rate"], loc="upper center", bbox_to_anchor=(0.5, -0.12))
    assert _text_overlaps(fig) != []


def test_a_raced_pytest_test_shows_the_plugins_report_in_place_of_a_timeline(
    shrunk: tuple[dict[str, Any], Path],
) -> None:
    """A ``--race-json`` group keeps no trace, but the plugin's report of its first failing run
    (replay command, deviating decisions with file:line): the page shows that, and says why
    there is no timeline."""
    doc, base = shrunk
    raced = copy.deepcopy(doc)
    group = raced["groups"][1]
    group["traces"] = []
    lines = [
        "run 3 failed under controlled schedule 3.1; replay it, exactly, with:",
        "  decision 3: t1/run1>job@test_example.py:57#1 body, ahead of the loop's own next step",
    ]
    replay = "pytest --race-replay 3.1 t.py::t"
    group["pytest"] = {"replay": replay, "first_failure": {"report": lines}}
    second = article(render_html(raced, base), "failure-2")
    shown = re.search(r'<pre class="plugin-report">(.*?)</pre>', second, re.S)
    assert shown is not None
    assert html.unescape(shown.group(1)) == "\n".join(lines)
    assert "No trace was kept" in second
    assert f"<code>{replay}</code>" in second
