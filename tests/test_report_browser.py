"""The HTML report in a real browser: Debian's headless Chromium, driven by playwright, which is
given the browser's path and downloads nothing.

At 900 px and 1,400 px: the banner, every link (to an anchor on the page, or to a trace file
that exists), the deviation marks, and that no two text labels overlap, measured by the
browser's own bounding boxes with every ``<details>`` opened. Without Chromium the test skips
with the reason, except under ``CI=true`` (``.ci/run`` installs it), where it fails. The
screenshots land in ``reports/report-chromium-WIDTH.png`` (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from harness.report import render_html
from tests.test_report import PROJECT
from tests.test_report_html import failing_doc

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WIDTHS = (900, 1400)

OVERLAPS = """() => {
  // Every text label: the timelines' SVG text and the legend's entries. Two overlap when their
  // boxes share more than half a pixel each way (anti-aliasing aside).
  const boxes = [...document.querySelectorAll("svg text, ul.legend span")]
    .map(e => ({text: e.textContent, r: e.getBoundingClientRect()}))
    .filter(b => b.r.width > 0 && b.r.height > 0);
  const found = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i].r, b = boxes[j].r;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 0.5 && h > 0.5) found.push(boxes[i].text + " | " + boxes[j].text);
    }
  }
  return {labels: boxes.length, overlaps: found};
}"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of real runs, one of them shrunk; and the same page broken on purpose: a
    script error, a fetch, and one label drawn twice over itself."""
    tmp = tmp_path_factory.mktemp("browser")
    doc = failing_doc(tmp)
    html = render_html(doc, tmp)
    good, broken = tmp / "report.html", tmp / "broken.html"
    good.write_text(html)
    label = re.search(r'<text class="label [^>]*>[^<]*</text>', html)
    assert label is not None
    broken.write_text(
        html.replace(label.group(0), label.group(0) * 2, 1).replace(
            "</body>",
            '<img src="https://example.invalid/x.png"><script>undefinedFunction();</script></body>',
        )
    )
    return {"good": good, "broken": broken, "doc": doc}


@pytest.fixture(scope="module")
def browser(pages: dict[str, Any]) -> Iterator[Any]:
    """A headless Chromium (playwright starts it with a fresh profile of its own).

    It needs ``pages`` made first: playwright's sync API runs an event loop on this thread
    while it is open, and the runs behind the pages use asyncio.run, which cannot nest in it."""
    chromium = shutil.which("chromium")
    reason = "Chromium is not installed (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium, reason = None, "playwright is not installed (pip install -e '.[dev]')"
    if chromium is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true needs the HTML report checked in a browser: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        yield launched
        launched.close()


class Watched:
    """A page whose console errors, uncaught exceptions and network requests are recorded."""

    def __init__(self, browser: Any, path: Path, width: int = 1400) -> None:
        self.url = path.as_uri()
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", self._request)
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def _request(self, request: Any) -> None:
        if request.url != self.url and not request.url.startswith("data:"):
            self.requests.append(request.url)

    def open_all(self) -> None:
        """Open every <details>, so that every label is laid out and measured."""
        self.page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")


@pytest.mark.parametrize("width", WIDTHS)
def test_html_report_at_each_width_has_banner_links_deviations_and_no_overlap(
    browser: Any, pages: dict[str, Any], width: int
) -> None:
    watched = Watched(browser, pages["good"], width)
    page = watched.page
    totals = pages["doc"]["totals"]
    banner = page.locator("#banner")
    assert banner.is_visible()
    assert "fail" in (banner.get_attribute("class") or "")
    assert banner.inner_text().startswith(f"FAIL: {totals['strands']} of {totals['runs']} runs")
    watched.open_all()
    # Links: to an element of this page, or to a file that exists.
    links = page.eval_on_selector_all(
        "a[href]", "as => as.map(a => [a.getAttribute('href'), a.href])"
    )
    anchors = [h for h, _ in links if h.startswith("#")]
    files = [unquote(urlparse(url).path) for h, url in links if not h.startswith("#")]
    assert {"#failure-1", "#failure-2", "#bound"} <= set(anchors)
    missing = page.evaluate("hs => hs.filter(h => !document.getElementById(h.slice(1)))", anchors)
    assert missing == []
    assert files
    assert all(Path(f).is_file() for f in files), files
    # Deviation marks: on the shrunk run, one per deviation listed, each visible, each titled.
    first = page.locator("#failure-1")
    marks = first.locator("#timeline-1-shrunk polygon.mark-decision.deviation")
    listed = first.locator("ul.deviations").first.locator("li")
    assert marks.count() == listed.count() > 0
    for i in range(marks.count()):
        box = marks.nth(i).bounding_box()
        assert box is not None
        assert box["width"] > 4
        assert "DEVIATION" in marks.nth(i).locator("title").text_content()
    measured = page.evaluate(OVERLAPS)
    assert measured["labels"] > 40  # the timelines' labels were measured, not none
    assert measured["overlaps"] == []
    screenshot = PROJECT / "reports" / f"report-chromium-{width}.png"
    screenshot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    assert watched.errors == []
    assert watched.requests == []


def test_html_report_in_chromium_has_plots_timelines_and_a_working_script(
    browser: Any, pages: dict[str, Any]
) -> None:
    watched = Watched(browser, pages["good"])
    page = watched.page
    for plot in ("#plot-rate img", "#plot-runs-to-strand img"):
        assert page.eval_on_selector(plot, "img => img.complete && img.naturalWidth > 100"), plot
    assert page.locator("article.failure svg.swimlanes").count() == 3  # shrunk, recorded, other
    first = page.locator("#timeline-1-shrunk")
    groups = set(first.locator("g.lane").evaluate_all("gs => gs.map(g => g.dataset.group)"))
    assert groups == {"event loop", "worker threads", "DB connections"}
    # The recorded run is a click away: hidden until its <details> opens.
    recorded = page.locator("#timeline-1-recorded")
    assert not recorded.is_visible()
    page.locator("#recorded-1 > summary").click()
    assert recorded.is_visible()
    # One culprit commit, drawn on its actor's lane and on its connection's.
    second = page.locator("#timeline-2-recorded")
    culprits = second.locator("rect.mark-commit.culprit").evaluate_all(
        "rs => rs.map(r => r.closest('g.lane').dataset.group)"
    )
    assert sorted(culprits) == ["DB connections", "event loop"]
    assert "final-not-last" in page.locator("#failure-2 p.verdict").inner_text()
    # The page's one script: a decision selects its row in the table below.
    first.locator("polygon.mark-decision").first.click()
    table = page.locator("#decisions-timeline-1-shrunk")
    assert table.evaluate("d => d.open")
    assert table.locator("tr.selected").count() == 1
    assert watched.errors == []
    assert watched.requests == []


def test_the_browser_check_sees_errors_fetches_and_overlapping_labels(
    browser: Any, pages: dict[str, Any]
) -> None:
    """The checks above can fail: a script error, a fetch (blocked by the page's policy) and
    a label drawn over another all reach them."""
    watched = Watched(browser, pages["broken"])
    assert any("undefinedFunction" in e for e in watched.errors), watched.errors
    assert any("Content Security Policy" in e for e in watched.errors), watched.errors
    watched.open_all()
    assert len(watched.page.evaluate(OVERLAPS)["overlaps"]) == 1
