"""Reports from real runs: Markdown, JUnit, the swimlane layout, compare, merge, emitted tests.

The HTML page in a real browser is in ``test_report_browser.py``.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.campaign import Group, Settings, run_groups
from harness.cli import main
from harness.replay import replay
from harness.report import (
    ResultMismatch,
    compare_documents,
    merge_documents,
    render_html,
    render_junit,
    render_markdown,
)
from harness.report.plots import strand_gaps
from harness.report.timeline import load_swimlanes
from harness.results import result_document
from harness.scenario import resolve_scenario
from harness.traces import load_trace
from reftask.faults import Fault

PROJECT = Path(__file__).resolve().parent.parent


def run_doc(
    tmp: Path, *, runs: int, shard: tuple[int, int] = (1, 1), seed: int = 0
) -> dict[str, Any]:
    """A result document of three groups: a fault that strands late, the same scenario fixed,
    and the seed's bug 2 (a cancel before the runner starts)."""
    late, prestart = resolve_scenario("late-progress"), resolve_scenario("prestart-cancel")
    groups = [
        Group(late, "sqlite", frozenset({Fault.NO_TERMINAL_GUARD}), "random"),
        Group(late, "sqlite", frozenset(), "random"),
        Group(prestart, "sqlite", frozenset({Fault.PRESTART_CANCEL_STRAND}), "random"),
    ]
    # Trace paths relative to the folder the run ran in, as `racetape run` writes them.
    settings = Settings(runs=runs, seed=seed, shard=shard, traces_dir=Path("traces"))
    tmp.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(tmp):
        return result_document(run_groups(groups, settings), settings, command="test")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One document for the render tests, and the folder its trace paths are relative to."""
    tmp = tmp_path_factory.mktemp("report")
    return run_doc(tmp, runs=30), tmp


def test_markdown_has_counts_bounds_and_the_replay_command(
    result: tuple[dict[str, Any], Path],
) -> None:
    doc, _ = result
    faulty, fixed, _ = doc["groups"]
    text = render_markdown(doc)
    trace = faulty["traces"][0]
    row = next(line for line in text.splitlines() if "no-terminal-guard" in line)
    rate = faulty["strands"] / 30 * 100
    assert f"| {faulty['strands']} / 30 | {rate:.3g}% |" in row
    assert f"`racetape replay {trace}`" in row
    clean = next(line for line in text.splitlines() if "| no-faults |" in line)
    # 0 of 30: the one-sided 95% upper bound is 1 - 0.05^(1/30) = 9.5%, the rule of three's 3/n.
    assert "| 0 / 30 | 0% | 9.5% |" in clean
    assert clean.rstrip().endswith("| - |")  # no failing run, no replay command
    assert fixed["strands"] == 0


def test_junit_fails_each_stranding_group_with_its_violation_and_a_replay_that_works(
    result: tuple[dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, base = result
    root = ET.fromstring(render_junit(doc, base))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("classname") for c in cases] == [
        "racetape.late-progress", "racetape.late-progress", "racetape.prestart-cancel",
    ]  # fmt: skip
    assert root.get("tests") == "3"
    assert root.get("failures") == "2"
    faulty, clean, prestart = cases
    assert clean.find("failure") is None
    failure = faulty.find("failure")
    assert failure is not None
    assert failure.get("type") == "final-not-last"
    text = failure.text or ""
    assert "task 1: final-not-last: tape [1:task_started, 2:final, 3:progress]" in text
    prestart_failure = prestart.find("failure")
    assert prestart_failure is not None
    assert "stuck-nonterminal" in (prestart_failure.text or "")
    # The exact command replays the same violation (exit 1: it strands).
    command = next(line for line in text.splitlines() if line.startswith("replay: "))
    argv = shlex.split(command.removeprefix("replay: "))
    assert argv[:2] == ["racetape", "replay"]
    monkeypatch.chdir(base)
    assert main(argv[1:]) == 1


def test_swimlanes_show_the_loop_threads_connections_and_the_culprit_commit(
    result: tuple[dict[str, Any], Path],
) -> None:
    doc, base = result
    trace = doc["groups"][0]["traces"][0]
    lanes = load_swimlanes(trace, base)
    assert lanes.error is None
    names = {(lane.group, lane.name) for lane in lanes.lanes}
    assert ("event loop", "main/run1") in names
    assert ("event loop", "main/cancel1") in names
    assert any(g == "worker threads" and n.startswith("main/run1/write") for g, n in names)
    assert any(g == "DB connections" for g, _ in names)
    marks = [m for lane in lanes.lanes for m in lane.marks]
    decisions = [m for m in marks if m.kind == "decision"]
    assert sorted(m.step for m in decisions if m.step is not None) == list(range(len(lanes.steps)))
    # The one commit that broke "final is last": the progress committed after the final.
    culprits = [m for m in marks if m.culprit and m.kind == "commit"]
    assert {("progress" in m.title, "final" in m.title) for m in culprits} == {(True, False)}
    final_x = next(m.x for m in marks if m.kind == "commit" and "kind=final" in m.title)
    assert all(m.x > final_x for m in culprits)
    assert [str(v) for v in lanes.verdict] == [
        "task 1: final-not-last: tape [1:task_started, 2:final, 3:progress]"
    ]


def test_swimlanes_blame_nothing_when_the_run_is_clean(
    result: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    """The culprit comes from the outcome, not from the shape of the timeline: the same
    interleaving with no violation recorded marks nothing."""
    doc, base = result
    trace = json.loads((base / doc["groups"][0]["traces"][0]).read_text())
    trace["outcome"]["violations"] = []
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(trace))
    lanes = load_swimlanes(str(path), tmp_path)
    assert not [m for lane in lanes.lanes for m in lane.marks if m.culprit]
    assert lanes.verdict == []


def test_html_is_self_contained_and_names_a_missing_trace(
    result: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    doc, base = result
    page = render_html(doc, base)
    assert "http://" not in page
    assert "https://" not in page
    assert re.findall(r'src="(?!data:)', page) == []  # every resource is inline
    assert page.count('<article class="failure"') == 2
    assert page.count('src="data:image/svg+xml;base64,') == 2
    elsewhere = render_html(doc, tmp_path)  # the traces are not under this base
    assert elsewhere.count('class="missing note"') == 2


def test_strand_gaps_count_runs_that_finished() -> None:
    group = {"runs_done": [[0, 3], [6, 9]], "strand_runs": [1, 7, 8]}
    # Run 7 is the 6th finished run (0,1,2,3,6,7): 4 runs after the strand at run 1.
    assert strand_gaps(group) == [2, 4, 1]


# -- compare ------------------------------------------------------------------------------------


def _cli_run(out: Path, *faults: str, runs: int = 40) -> None:
    fault_flags = [f for name in faults for f in ("--fault", name)]
    code = main(
        ["run", "--scenario", "late-progress", *fault_flags, "--runs", str(runs),
         "--json", str(out), "--traces", str(out.parent / "traces")]
    )  # fmt: skip
    assert code == (1 if faults else 0)  # a fault strands runs, and strands fail the run


def test_compare_fault_on_then_off_says_better_with_the_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after, md = tmp_path / "before.json", tmp_path / "after.json", tmp_path / "c.md"
    _cli_run(before, "no-terminal-guard")
    _cli_run(after)
    strands = json.loads(before.read_text())["groups"][0]["strands"]
    assert strands > 5
    capsys.readouterr()
    assert main(["report", "compare", str(before), str(after), "--markdown", str(md)]) == 0
    printed = capsys.readouterr().out
    assert f"{strands}/40 -> 0/40" in printed
    assert "better" in printed
    row = next(line for line in md.read_text().splitlines() if "late-progress" in line)
    assert f"| no-terminal-guard -> no-faults | random | {strands}/40 -> 0/40 |" in row
    assert "**better**" in row
    # The other way round it got worse, and the gate says so.
    assert main(["report", "compare", str(after), str(before)]) == 1
    assert "worse" in capsys.readouterr().out


def test_compare_with_no_significant_change_passes_the_gate(tmp_path: Path) -> None:
    doc = run_doc(tmp_path, runs=4)
    later = copy.deepcopy(doc)
    comparison = compare_documents(doc, later)
    assert [p.verdict for p in comparison.pairs] == ["no significant change"] * 3
    assert not comparison.worse
    later["groups"][1] = {**later["groups"][1], "strands": 2}  # 0/4 -> 2/4: p = 0.43
    assert compare_documents(doc, later).pairs[1].verdict == "no significant change"
    assert not compare_documents(doc, later).worse
    later["groups"][1] = {**later["groups"][1], "strands": 4}  # 0/4 -> 4/4: p = 2/70
    assert compare_documents(doc, later).pairs[1].verdict == "worse"
    assert compare_documents(doc, later).worse


def test_compare_refuses_results_with_nothing_in_common(tmp_path: Path) -> None:
    doc = run_doc(tmp_path, runs=2)
    other = copy.deepcopy(doc)
    for group in other["groups"]:
        group["adapter"] = "postgres"
    with pytest.raises(ResultMismatch, match="none pairs with a group"):
        compare_documents(doc, other)


# -- merge --------------------------------------------------------------------------------------

MERGED_FIELDS = (
    "scenario", "adapter", "faults", "strategy", "runs", "strands", "kinds", "hung",
    "first_strand_run", "runs_to_first_strand", "strand_runs", "runs_done", "windows",
    "windows_possible", "windows_covered", "problems", "trace_runs",
)  # fmt: skip


def test_merge_of_two_shards_equals_one_run_of_the_same_seeds(tmp_path: Path) -> None:
    whole = run_doc(tmp_path / "whole", runs=24, seed=7)
    first = run_doc(tmp_path / "a", runs=24, seed=7, shard=(1, 2))
    second = run_doc(tmp_path / "b", runs=24, seed=7, shard=(2, 2))
    merged = merge_documents([("b.json", second), ("a.json", first)], command="merge")
    assert merged["settings"] == whole["settings"]
    assert merged["totals"] == whole["totals"]
    for mine, theirs in zip(merged["groups"], whole["groups"], strict=True):
        assert {f: mine[f] for f in MERGED_FIELDS} == {f: theirs[f] for f in MERGED_FIELDS}
    faulty = merged["groups"][0]
    assert faulty["strands"] > 0
    assert faulty["runs_done"] == [[0, 23]]
    # The traces kept are the same runs' (from the shards' folders).
    assert [Path(t).name for t in faulty["traces"]] == [
        Path(t).name for t in whole["groups"][0]["traces"]
    ]
    # The same through the CLI, from files.
    for name, doc in (("a.json", first), ("b.json", second)):
        (tmp_path / name).write_text(json.dumps(doc))
    out = tmp_path / "merged.json"
    assert main(["report", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "--json", str(out)]) == 0  # fmt: skip
    written = json.loads(out.read_text())
    assert [g["strand_runs"] for g in written["groups"]] == [
        g["strand_runs"] for g in whole["groups"]
    ]
    assert [m["shard"] for m in written["merged_from"]] == ["1/2", "2/2"]


def test_merge_refuses_mismatched_shards(tmp_path: Path) -> None:
    first = run_doc(tmp_path / "a", runs=4, shard=(1, 2))
    second = run_doc(tmp_path / "b", runs=4, shard=(2, 2))

    def refused(docs: list[tuple[str, dict[str, Any]]], message: str) -> None:
        with pytest.raises(ResultMismatch, match=message) as caught:
            merge_documents(docs, command="merge")
        assert "\n" not in str(caught.value)

    refused([("a", first), ("a2", first)], r"shard 1/2 is also in a")
    relabelled = copy.deepcopy(first)
    relabelled["settings"]["shard"] = "2/2"
    refused([("a", first), ("x", relabelled)], r"runs_done: run 0 is also in a")
    reseeded = copy.deepcopy(second)
    reseeded["settings"]["seed"] = 1
    refused([("a", first), ("b", reseeded)], r"b: settings.seed: 1 differs from a's 0")
    quartered = copy.deepcopy(second)
    quartered["settings"]["shard"] = "2/4"
    refused([("a", first), ("q", quartered)], r"q: settings.shard: a shard of 4")
    doubled = copy.deepcopy(second)
    doubled["groups"].append(doubled["groups"][0])
    refused([("a", first), ("b", doubled)], r"b: groups: .* is there twice")
    # Workers only spread the same runs: shards may differ there.
    spread = copy.deepcopy(second)
    spread["settings"]["workers"] = 4
    assert merge_documents([("a", first), ("b", spread)], command="m")["totals"]["runs"] == 12


def test_merge_joins_a_split_over_shards_and_adapters(tmp_path: Path) -> None:
    """A CI matrix of shards x adapters: each adapter's groups come from its own shard jobs, so
    no document holds every group; a group that lacks a shard is merged and named in a note."""
    halves = {
        (adapter, k): run_doc(tmp_path / f"{adapter}{k}", runs=4, shard=(k, 2))
        for adapter in ("sqlite", "elsewhere")
        for k in (1, 2)
    }
    for (adapter, _), doc in halves.items():
        for group in doc["groups"]:
            group["adapter"] = adapter  # the same runs, standing in for a second adapter's
    named = [(f"{a}-{k}", doc) for (a, k), doc in halves.items()]
    merged = merge_documents(named, command="merge")
    assert merged["settings"]["shard"] == "1/1"
    assert merged["notes"] == []
    assert {g["adapter"] for g in merged["groups"]} == {"sqlite", "elsewhere"}
    assert all(g["runs_done"] == [[0, 3]] for g in merged["groups"])
    partial = merge_documents(named[:3], command="merge")  # elsewhere's shard 2 did not finish
    assert partial["settings"]["shard"] == "1+2/2"
    assert len(partial["notes"]) == len(partial["groups"]) // 2
    assert all("elsewhere" in note and "only shard(s) 1 of 2" in note for note in partial["notes"])


# -- emitted regression tests -----------------------------------------------------------------


def _pytest(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        cwd=path.parent,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_emitted_test_fails_on_the_faulty_manager_and_passes_on_the_fixed_one(
    result: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    doc, base = result
    trace = tmp_path / "trace.json"
    trace.write_text((base / doc["groups"][0]["traces"][0]).read_text())
    emitted = tmp_path / "test_late_progress_race.py"
    assert main(["replay", str(trace), "--emit-test", str(emitted)]) == 0
    assert "TRACE = {" in emitted.read_text()
    imported = [
        (getattr(node, "module", None), alias.name)
        for node in ast.walk(ast.parse(emitted.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if getattr(node, "module", None) != "__future__"
    ]
    assert imported == [("harness", name) for name in harness.__all__]  # the public API only
    trace.unlink()  # standalone: the trace is inside the test
    faulty = _pytest(emitted)
    assert faulty.returncode == 1, faulty.stdout
    assert "final-not-last" in faulty.stdout
    assert "1 failed" in faulty.stdout
    fixed = _pytest(emitted, RACETAPE_FAULTS="none")
    assert fixed.returncode == 0, fixed.stdout
    assert "1 passed" in fixed.stdout


async def test_lenient_replay_goes_on_where_the_recording_cannot(
    result: tuple[dict[str, Any], Path],
) -> None:
    """What an emitted test relies on when a fix makes the recorded order impossible."""
    doc, base = result
    trace = load_trace(base / doc["groups"][0]["traces"][0])
    impossible = trace.__class__(**{**trace.__dict__, "decisions": ("main/nobody",)})
    strict = await replay(impossible)
    assert strict.result.schedule.outcome == "diverged"
    lenient = await replay(impossible, lenient=True)
    assert lenient.result.schedule.outcome == "settled"
    assert lenient.diverged is not None
    assert "recorded main/nobody" in lenient.diverged


# -- the CLI: shapes and input errors ---------------------------------------------------------


def test_report_writes_each_output_and_prints_markdown_without_flags(
    result: tuple[dict[str, Any], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc, base = result
    source = tmp_path / "result.json"
    source.write_text(json.dumps(doc))
    html, md, xml = tmp_path / "r.html", tmp_path / "r.md", tmp_path / "r.xml"
    assert main(["report", str(source), "--html", str(html), "--markdown", str(md),
                 "--junit", str(xml), "--base", str(base)]) == 0  # fmt: skip
    assert md.read_text() == render_markdown(doc)
    assert xml.read_text() == render_junit(doc, base)
    page = html.read_text()
    assert page.count('<article class="failure"') == 2
    # The page is not where the traces are: its links to them start from where it is.
    links = re.findall(r'class="trace-link" href="([^"#]+)"', page)
    assert links
    assert all((html.parent / link).is_file() for link in links), links
    capsys.readouterr()
    assert main(["report", "render", str(source)]) == 0
    assert capsys.readouterr().out == render_markdown(doc)


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("racetape: error: "), err
    for text in expected:
        assert text in err, err


def test_bad_inputs_are_one_line_errors(
    result: tuple[dict[str, Any], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc, base = result
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    missing = tmp_path / "missing.json"
    _one_line_error(["report", str(missing)], capsys, str(missing), "cannot read")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    _one_line_error(["report", str(garbage), "--html", "x.html"], capsys, "not valid JSON")
    (tmp_path / "a-file").write_text("")
    unwritable = str(tmp_path / "a-file" / "x.xml")
    _one_line_error(["report", str(good), "--junit", unwritable], capsys, "x.xml: cannot write")
    trace_doc = tmp_path / "trace.json"
    trace_doc.write_text(json.dumps({"schema": "racetape.trace/1"}))
    _one_line_error(["report", "compare", str(good), str(trace_doc)], capsys, "schema")
    broken = copy.deepcopy(doc)
    del broken["groups"][1]["strand_runs"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    _one_line_error(["report", str(bad)], capsys, "groups[1].strand_runs: missing")
    _one_line_error(["report", "merge", str(good), str(good), "--json", str(tmp_path / "m.json")],
                    capsys, "shard 1/1 is also in")  # fmt: skip
    assert not (tmp_path / "m.json").exists()
    elsewhere = copy.deepcopy(doc)
    for group in elsewhere["groups"]:
        group["scenario"] = "other"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(elsewhere))
    _one_line_error(["report", "compare", str(good), str(other)], capsys, "none pairs")
    _one_line_error(["replay", str(garbage), "--emit-test", str(tmp_path / "t.py")], capsys,
                    "not a racetape trace")  # fmt: skip
    jitter = json.loads((base / doc["groups"][0]["traces"][0]).read_text())
    jitter["strategy"] = "jitter"
    jitter_path = tmp_path / "jitter.json"
    jitter_path.write_text(json.dumps(jitter))
    _one_line_error(["replay", str(jitter_path), "--emit-test", str(tmp_path / "t.py")], capsys,
                    "strategy: a jitter trace")  # fmt: skip
    assert not (tmp_path / "t.py").exists()


def test_the_cli_loads_the_report_libraries_only_for_reports() -> None:
    """matplotlib and scipy.stats cost seconds at start-up; `racetape run` must not pay them."""
    probe = (
        "import sys, harness.cli;"
        " print(sorted({'matplotlib', 'scipy.stats', 'jinja2'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
