"""The HTML report in a real browser: Debian's headless Chromium, driven by playwright, which is
given the browser's path and downloads nothing.

Without Chromium the test skips with the reason, except under ``CI=true`` (``.ci/run`` installs
it), where it fails. The screenshot lands in ``reports/report-chromium.png`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.report import render_html
from tests.test_report import PROJECT, run_doc

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The report of a real run, and the same page broken on purpose."""
    tmp = tmp_path_factory.mktemp("browser")
    html = render_html(run_doc(tmp, runs=30), tmp)
    good, broken = tmp / "report.html", tmp / "broken.html"
    good.write_text(html)
    broken.write_text(
        html.replace(
            "</body>",
            '<img src="https://example.invalid/x.png"><script>undefinedFunction();</script></body>',
        )
    )
    return {"good": good, "broken": broken}


@pytest.fixture(scope="module")
def browser(pages: dict[str, Path]) -> Iterator[Any]:
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

    def __init__(self, browser: Any, path: Path) -> None:
        self.url = path.as_uri()
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
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


def test_html_report_in_chromium_has_plots_timelines_and_no_errors(
    browser: Any, pages: dict[str, Path]
) -> None:
    watched = Watched(browser, pages["good"])
    page = watched.page
    for plot in ("#plot-rate img", "#plot-runs-to-strand img"):
        assert page.eval_on_selector(plot, "img => img.complete && img.naturalWidth > 100"), plot
    timelines = page.locator("article.timeline svg.swimlanes")
    assert timelines.count() == 2  # the two stranding groups
    first = page.locator("#timeline-1")
    groups = set(first.locator("g.lane").evaluate_all("gs => gs.map(g => g.dataset.group)"))
    assert groups == {"event loop", "worker threads", "DB connections"}
    assert first.locator("polygon.mark-decision").count() == len(
        first.locator("table.decisions tbody tr").all()
    )
    # One culprit commit, drawn on its actor's lane and on its connection's.
    culprits = first.locator("rect.mark-commit.culprit").evaluate_all(
        "rs => rs.map(r => r.closest('g.lane').dataset.group)"
    )
    assert sorted(culprits) == ["DB connections", "event loop"]
    assert first.locator("line.oracle").count() == 1
    assert "final-not-last" in first.locator("p.verdict").inner_text()
    # The page's one script: a decision selects its row in the table below.
    first.locator("polygon.mark-decision").first.click()
    assert first.locator("details").evaluate("d => d.open")
    assert first.locator("table.decisions tr.selected").count() == 1
    screenshot = PROJECT / "reports" / "report-chromium.png"
    screenshot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    assert watched.errors == []
    assert watched.requests == []


def test_the_browser_check_sees_errors_and_blocked_fetches(
    browser: Any, pages: dict[str, Path]
) -> None:
    """The checks above can fail: a script error and a fetch (blocked by the page's policy)
    both reach them."""
    watched = Watched(browser, pages["broken"])
    assert any("undefinedFunction" in e for e in watched.errors), watched.errors
    assert any("Content Security Policy" in e for e in watched.errors), watched.errors
