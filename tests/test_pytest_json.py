"""``--race-json``: a user's raced tests as a ``racetape.result`` document, rendered, compared
and merged by ``racetape report`` as a ``racetape run``'s are."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from harness.cli import main as racetape
from harness.report import compare_documents
from harness.results import load_result
from racetape._traces import load_trace
from racetape.cli import main as racetape_command

EXAMPLES = Path(__file__).parent / "examples"
AUTO = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
BUGGY = "test_example.py::test_cancel_leaves_final_last"
GUARDED = "test_example.py::test_cancel_leaves_final_last_guarded"


def raced(pytester: pytest.Pytester, out: Path, *, fixed: bool) -> pytest.RunResult:
    source = (EXAMPLES / "tape_sqlite.py").read_text()
    if fixed:  # the fixed twin: the same test names, the buggy test on the guarded tape
        source = source.replace(
            "await check_final_is_last(guarded=False)", "await check_final_is_last(guarded=True)"
        )
    pytester.makeini(AUTO)
    pytester.makepyfile(test_example=source)
    return pytester.runpytest(
        "-p", "no:cacheprovider", "--race-runs", "60", "--race-keep-going",
        "--race-json", str(out),
    )  # fmt: skip


def test_race_json_is_a_result_that_reports_render_and_compare_judges(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    before = tmp_path / "out" / "before.json"
    result = raced(pytester, before, fixed=False)
    failed = result.parseoutcomes()["failed"]
    assert failed > 1
    assert stat.S_IMODE(before.stat().st_mode) & 0o044 == 0o044  # readable by others (umask)
    doc = load_result(before)  # the harness's own checks of the schema pass
    groups = {g["scenario"]: g for g in doc["groups"]}
    assert sorted(groups) == [BUGGY, GUARDED]
    buggy, guarded = groups[BUGGY], groups[GUARDED]
    assert (buggy["strands"], guarded["strands"]) == (failed, 0)
    assert buggy["kinds"] == {"failed": failed}
    assert buggy["runs"] == guarded["runs"] == doc["totals"]["runs"] // 2
    assert len(buggy["strand_runs"]) == failed

    (replay,) = [line.removeprefix("replay: ") for line in result.outlines if "replay: " in line]
    first = buggy["pytest"]["first_failure"]
    assert buggy["pytest"]["replay"] == replay
    assert first["run"] == min(buggy["strand_runs"])
    assert replay == f"pytest --race-replay {first['schedule']} {BUGGY}"
    assert any(re.match(r"  decision \d+: .*test_example.py:\d+", line) for line in first["report"])
    assert len(buggy["pytest"]["failing"]) == failed
    assert guarded["pytest"]["first_failure"] is None
    assert first["error"].startswith("AssertionError: an event landed after final")
    assert first["when"] == "call"  # the phase that failed: a replay compares it too

    # The group links its first failing run's trace (relative to the document's folder), which
    # racetape replays and shrinks by the test's node id.
    trace = load_trace(before.parent / buggy["pytest"]["trace"])
    assert (trace.nodeid, trace.run, trace.label) == (BUGGY, first["run"], first["schedule"])
    assert len(buggy["pytest"]["traces"]) == 3  # the first few failing runs write one
    assert (guarded["pytest"]["trace"], guarded["pytest"]["traces"]) == (None, [])
    assert racetape_command(["replay", BUGGY, "-q"]) == 1  # it fails again: reproduced
    assert racetape_command(["shrink", BUGGY, "-q"]) == 0
    shrunk = load_trace(trace.source.with_name(trace.source.stem + ".shrunk.json"))
    assert 1 <= len(shrunk.schedule) <= len(trace.schedule)

    html, junit, markdown = (tmp_path / name for name in ("r.html", "r.xml", "r.md"))
    assert racetape(
        ["report", str(before), "--html", str(html), "--junit", str(junit),
         "--markdown", str(markdown)]
    ) == 0  # fmt: skip
    assert BUGGY in markdown.read_text()
    page = html.read_text()
    assert BUGGY in page
    assert f"<code>{replay}</code>" in page  # the groups table's replay column
    assert re.search(rf'id="banner" class="banner fail">FAIL: {failed} of \d+ runs', page)
    assert replay in markdown.read_text()
    xml = junit.read_text()
    assert 'failures="1"' in xml
    assert f"replay: {replay}" in xml  # the failure's text: the first failing run's report
    assert '"None"' not in xml  # settings a pytest session has not (budget_s) are left out

    after = tmp_path / "out" / "after.json"
    assert raced(pytester, after, fixed=True).parseoutcomes().get("failed", 0) == 0
    assert racetape(["report", "compare", str(before), str(after)]) == 0
    (pair,) = [
        p
        for p in compare_documents(load_result(before), load_result(after)).pairs
        if p.any_side["scenario"] == BUGGY
    ]
    assert pair.verdict == "better"
    assert racetape(["report", str(after), "--html", str(html)]) == 0
    assert 'class="banner pass">PASS: no run of' in html.read_text()
    assert racetape(["report", "compare", str(after), str(before)]) == 1  # worse
    merged = tmp_path / "merged.json"
    assert racetape(["report", "merge", str(before), "--json", str(merged)]) == 0
    assert load_result(merged)["totals"]["strands"] == failed


def test_race_json_without_races_is_an_empty_result_and_a_folder_is_refused(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(test_plain="async def test_a():\n    pass\n")
    out = tmp_path / "race.json"
    pytester.runpytest("-p", "no:cacheprovider", "--race-json", str(out)).assert_outcomes(passed=1)
    doc = json.loads(out.read_text())
    assert (doc["schema"], doc["groups"], doc["totals"]["runs"]) == ("racetape.result/1", [], 0)
    bad = pytester.runpytest("-p", "no:cacheprovider", "--race-json", str(tmp_path))
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--race-json: * is not a file path; e.g. --race-json race.json*"])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    device = pytester.runpytest("-p", "no:cacheprovider", "--race-json", str(fifo))
    assert device.ret == pytest.ExitCode.USAGE_ERROR
    device.stderr.fnmatch_lines(["*--race-json: * is not a regular file (a device or a pipe)*"])
    assert stat.S_ISFIFO(fifo.stat().st_mode), "the pipe is still a pipe"


def test_an_xdist_worker_writes_no_race_json(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A worker (pytest-xdist gives its config a ``workerinput``) leaves the document to the
    controller, which hears every worker's reports: workers never clobber one another."""
    pytester.makeini(AUTO)
    pytester.makeconftest("def pytest_configure(config):\n    config.workerinput = {}\n")
    pytester.makepyfile(test_plain="async def test_a():\n    pass\n")
    out = tmp_path / "race.json"
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-runs", "2", "--race-json", str(out)
    )
    result.assert_outcomes(passed=1, skipped=1)
    assert not out.exists()


CONTROLLER = """
import pytest

PROPS = [
    ("racetape_test", "t.py::test_x"), ("racetape_seed", 1), ("racetape_run", 2),
    ("racetape_report", ["run 2 of t.py::test_x failed"]),
    ("racetape_replay", "pytest --race-replay 3.1 t.py::test_x"),
    ("racetape_label", "3.1"), ("racetape_kind", "schedule"),
]


def pytest_collection_finish(session):
    # What xdist's controller gets: a worker's report of a marked test's failing run, for a
    # test the controller itself never collected.
    report = pytest.TestReport(
        "t.py::test_x[race2]", ("t.py", 0, "test_x"), {}, "failed", "boom", "call",
        user_properties=PROPS,
    )
    session.config.hook.pytest_runtest_logreport(report=report)
"""


def test_a_controller_that_collects_no_marked_test_still_tallies_its_workers_reports(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makeini(AUTO)
    pytester.makeconftest(CONTROLLER)
    pytester.makepyfile(test_plain="def test_sync():\n    pass\n")
    out = tmp_path / "race.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--race-json", str(out))
    result.stdout.fnmatch_lines(["*racetape race runs*", "replay: pytest --race-replay 3.1 t.py*"])
    (group,) = load_result(out)["groups"]
    assert (group["scenario"], group["runs"], group["strands"]) == ("t.py::test_x", 1, 1)
    assert group["pytest"]["first_failure"]["schedule"] == "3.1"
