"""Traces of failing controlled pytest runs: written per session, found by node id, replayed and
shrunk by ``racetape replay`` / ``racetape shrink`` (which run pytest on that one test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from racetape._engine.deviations import Schedule, format_schedule, parse_schedule
from racetape._project import Project, find_project
from racetape._pytest_cli import resolve
from racetape._shrink import ScheduleShrinker, size
from racetape._traces import (
    KEEP_SESSIONS,
    MAX_TRACES_PER_TEST,
    TRACE_SCHEMA,
    SessionTraces,
    TraceError,
    find_root,
    find_trace,
    load_trace,
    sessions,
)
from racetape.cli import main as racetape
from racetape.pytest_plugin import TRACES_KEY, pytest_configure_node

AUTO = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
# Five worker-thread jobs land in any order; the test wants "e" last. The random strategy's first
# failing run deviates at many decisions; one deviation is enough.
ORDER = """
import asyncio


async def test_last_job_lands_last():
    landed = []

    async def job(name):
        await asyncio.to_thread(lambda: None)
        landed.append(name)

    await asyncio.gather(*(job(name) for name in "abcde"))
    assert landed[-1] == "e", landed
"""
TEST = "test_order.py::test_last_job_lands_last"
HEAVY = ("matplotlib", "scipy", "numpy", "jinja2", "asyncpg", "aiosqlite")  # the extras'


def ordered(pytester: pytest.Pytester, *args: str, fixed: bool = False) -> pytest.RunResult:
    pytester.makeini(AUTO)
    source = ORDER.replace('landed[-1] == "e"', '"e" in landed') if fixed else ORDER
    pytester.makepyfile(test_order=source)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def traces_of(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.json"))


# -- the shrinker, on a predicate ----------------------------------------------------------------


def shrink_with(schedule: Schedule, fails: object, max_runs: int = 64) -> ScheduleShrinker:
    shrinker = ScheduleShrinker(schedule, max_runs=max_runs)
    proposed: list[Schedule] = []
    while (proposal := shrinker.next_schedule()) is not None:
        proposed.append(proposal)
        shrinker.tell(proposal if fails(proposal) else None)  # type: ignore[operator]
    assert len(proposed) == len(set(proposed)), "a schedule is never proposed twice"
    assert shrinker.runs == len(proposed) <= max_runs
    return shrinker


def test_the_shrinker_finds_the_one_deviation_that_fails_then_its_lowest_index() -> None:
    recorded = parse_schedule("0.1-1.1-4.2-5.3-7.2-8.1-9.1-10.1-11.2-14.1")
    shrinker = shrink_with(recorded, lambda s: any(step == 5 and i >= 2 for step, i in s))
    assert shrinker.reproduced is True
    assert shrinker.best == ((5, 2),)  # alone, and index 3 lowered to the 2 that still fails
    # Two deviations that must go together are both kept, and nothing else.
    pair = shrink_with(recorded, lambda s: {(1, 1), (9, 1)} <= set(s))
    assert pair.best == ((1, 1), (9, 1))


def test_the_shrinker_keeps_what_a_lenient_run_took_and_stops_at_its_budget() -> None:
    recorded = parse_schedule("2.1-3.1-4.1")
    # A run takes less than proposed (a step no longer offers the candidate): what it took is
    # kept when smaller, as it is what replays strictly.
    shrinker = ScheduleShrinker(recorded)
    assert shrinker.next_schedule() == recorded
    shrinker.tell(recorded)
    proposal = shrinker.next_schedule()
    assert proposal is not None
    assert size(proposal) < size(recorded)
    shrinker.tell(((3, 1),))
    assert shrinker.best == ((3, 1),)
    # The recorded run passing: nothing to shrink, no proposal more.
    passing = ScheduleShrinker(recorded)
    passing.tell(None)
    assert (passing.reproduced, passing.next_schedule(), passing.best) == (False, None, recorded)
    assert shrink_with(recorded, lambda s: True, max_runs=2).runs == 2


# -- trace files ---------------------------------------------------------------------------------


def doc(nodeid: str, run: int | None = 0, schedule: str = "3.1") -> dict[str, object]:
    return {
        "schema": TRACE_SCHEMA, "racetape": "0", "created": "", "nodeid": nodeid,
        "schedule": schedule, "strategy": "search", "seed": 1, "run": run,
        "error": "AssertionError: boom", "when": "call", "invocation_dir": "/p",
        "rootdir": "/p", "decisions": [],
    }  # fmt: skip


def test_sessions_write_apart_old_ones_go_and_a_node_id_finds_its_newest_trace(
    tmp_path: Path,
) -> None:
    root = tmp_path / "traces"
    names = [f"20260101T0000{n:02d}.000000Z-1" for n in range(KEEP_SESSIONS + 2)]
    for name in names:
        SessionTraces(root, name).write(doc("t.py::test_a"))
    assert [p.name for p in sessions(root)] == names[-KEEP_SESSIONS:]  # the oldest went
    assert (root / ".gitignore").read_text().endswith("*\n")
    newest = SessionTraces(root, "20270101T000000.000000Z-2")
    for _ in range(MAX_TRACES_PER_TEST):
        assert newest.wants("t.py::test_a")
        newest.write(doc("t.py::test_a", schedule="4.1"))
    assert not newest.wants("t.py::test_a")  # a few per test, then no more
    assert len(list(newest.folder.glob("*.json"))) == MAX_TRACES_PER_TEST  # none overwritten
    found = find_trace("t.py::test_a", root, cwd=tmp_path)
    assert (found.source.parent, found.label) == (newest.folder, "4.1")
    shrunk = found.source.with_name(found.source.stem + ".shrunk.json")
    shrunk.write_text(json.dumps(doc("t.py::test_a", run=None, schedule="2.1")))
    assert find_trace("t.py::test_a", root, cwd=tmp_path).source == shrunk  # shrunk first
    with pytest.raises(
        TraceError, match=r"t.py::test_b: no trace of this test under .*--race-runs"
    ):
        find_trace("t.py::test_b", root, cwd=tmp_path)
    # The node id as typed from another folder of the project (the rootdir is the trace's).
    (tmp_path / "tests").mkdir()
    SessionTraces(root, "20280101T000000.000000Z-3").write(
        {**doc("tests/t.py::test_c"), "rootdir": str(tmp_path)}
    )
    from_tests = find_trace("t.py::test_c", root, cwd=tmp_path / "tests")
    assert from_tests.nodeid == "tests/t.py::test_c"
    assert find_root(tmp_path / "tests" / "deeper") is None  # no .racetape/traces above
    (tmp_path / ".racetape" / "traces").mkdir(parents=True)
    assert find_root(tmp_path / "tests" / "deeper") == tmp_path / ".racetape" / "traces"


def test_a_file_that_is_not_a_pytest_trace_is_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text, field in [
        ("{", "not a readable JSON trace"),
        (json.dumps({"schema": "racetape.trace/1"}), "schema: expected 'racetape.pytest-trace/1'"),
        (json.dumps({**doc("t.py::a"), "seed": "x"}), "seed: missing or not a int"),
        (json.dumps({**doc("t.py::a"), "schedule": "3.0"}), "schedule: '3.0': steps must"),
    ]:
        bad.write_text(text)
        with pytest.raises(TraceError, match=f"^{bad}: {field}") as info:
            load_trace(bad)
        assert "\n" not in str(info.value)


# -- the plugin writes them ----------------------------------------------------------------------


def test_a_failing_controlled_run_writes_its_trace_in_the_sessions_folder_and_names_it(
    pytester: pytest.Pytester,
) -> None:
    result = ordered(pytester, "--race-runs", "20", "--race-traces", "tr", "--race-keep-going")
    failed = result.parseoutcomes()["failed"]
    assert failed > MAX_TRACES_PER_TEST
    root = pytester.path / "tr"
    (session,) = sessions(root)
    written = traces_of(root)
    assert len(written) == MAX_TRACES_PER_TEST  # the first failing runs, a bounded few
    trace = load_trace(written[0])
    assert (trace.nodeid, trace.strategy, trace.when) == (TEST, "search", "call")
    assert trace.error.startswith("AssertionError: [")
    assert trace.decisions
    assert all("actor" in d for d in trace.decisions)
    data = json.loads(written[0].read_text())
    assert data["racetape"]
    assert data["rootdir"] == str(pytester.path)
    assert os.stat(written[0]).st_mode & 0o044 == 0o044  # readable by others (umask 022)
    # The report names the trace and the commands that replay and shrink it.
    first = min(written, key=lambda p: load_trace(p).run or 0)
    result.stdout.fnmatch_lines(
        [
            f"trace: tr/{session.name}/{first.name}",
            f"  racetape replay {TEST}  (racetape shrink {TEST} shrinks it)",
        ]
    )
    # Another session: a folder of its own; a jitter run writes none (it replays by its seed).
    ordered(pytester, "--race-runs", "20", "--race-traces", "tr")
    assert len(sessions(root)) == 2
    ordered(pytester, "--race-runs", "5", "--race-traces", "jt", "--race-mode", "jitter")
    assert not (pytester.path / "jt").exists()


def test_xdist_workers_write_into_the_controllers_session_folder(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        "def pytest_configure(config):\n"
        "    config.workerinput = {'racetape_traces': '20260102T030405.000000Z-9'}\n"
    )
    ordered(pytester, "--race-runs", "20")
    (session,) = sessions(pytester.path / ".racetape" / "traces")  # the default root
    assert session.name == "20260102T030405.000000Z-9"
    # The controller's side: it hands each worker its session folder's name.
    pytester.makeconftest("")
    config = pytester.parseconfigure("--race-runs", "2")
    node = SimpleNamespace(config=config, workerinput={})
    pytest_configure_node(node)
    assert node.workerinput == {"racetape_traces": config.stash[TRACES_KEY].folder.name}


def test_pytest_replays_a_trace_on_its_test_alone(pytester: pytest.Pytester) -> None:
    ordered(pytester, "--race-runs", "20", "--race-traces", "tr")
    (path,) = traces_of(pytester.path / "tr")
    pytester.makepyfile(test_other="async def test_other():\n    pass\n")
    again = pytester.runpytest("-p", "no:cacheprovider", "--race-replay", str(path))
    again.assert_outcomes(failed=1, deselected=1)
    assert len(traces_of(pytester.path / "tr")) == 1  # a trace's replay writes no other trace
    wrong = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-replay", str(path), "test_other.py"
    )
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    wrong.stderr.fnmatch_lines([f"*is a trace of {TEST}, which is not among the selected tests*"])
    missing = pytester.runpytest("-p", "no:cacheprovider", "--race-replay", "gone.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--race-replay: gone.json: no such trace*"])


# -- racetape replay / shrink by node id ---------------------------------------------------------


def test_racetape_replay_by_node_id_says_reproduced_then_not_after_the_fix(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    ordered(pytester, "--race-runs", "20")
    trace = load_trace(traces_of(pytester.path / ".racetape" / "traces")[0])
    # The command needs none of the extras (the harness's drivers, the report's packages).
    block = f"import sys; sys.modules.update(dict.fromkeys({HEAVY!r}));"
    replayed = subprocess.run(
        [sys.executable, "-c", f"{block} from racetape.cli import main;"
         f" sys.exit(main(['replay', {TEST!r}, '-q']))"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stdout.splitlines() == [
        f"racetape replay: reproduced: {TEST} failed again under schedule {trace.label}"
        f" (pytest in {pytester.path}): {trace.error}"
    ]  # -q: the verdict alone, and where it ran
    assert replayed.stderr == ""
    ordered(pytester, "--collect-only", fixed=True)  # the fix, no new run
    assert racetape(["replay", TEST, "-v"]) == 0
    out, err = capsys.readouterr()
    assert f"racetape: replay {TEST}: 1 run, " in err  # the progress, from the plugin's run
    assert "1 passed" in out  # -v: pytest's own output
    assert "result.json" not in out  # but not the scratch file it wrote, gone by now
    assert f"racetape replay: did not reproduce: {TEST} passed under schedule" in out
    pytester.path.joinpath("test_order.py").unlink()  # the test is gone
    assert racetape(["replay", TEST, "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"racetape replay: error: pytest exited 4 on {TEST} (in {pytester.path}): ERROR: file"
        f" or directory not found: {TEST}; is the test still there? run it with -v to see"
        " pytest's output"
    ]  # -q: no progress either


def test_racetape_shrink_by_node_id_writes_a_smaller_trace_that_replays(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    ordered(pytester, "--race-runs", "30", "--race-strategy", "random")
    (recorded,) = traces_of(pytester.path / ".racetape" / "traces")
    before = load_trace(recorded)
    assert len(before.schedule) > 2  # random deviates at many decisions
    capsys.readouterr()
    assert racetape(["shrink", TEST, "-v"]) == 0
    captured = capsys.readouterr()
    shrunk = load_trace(recorded.with_name(recorded.stem + ".shrunk.json"))
    assert len(shrunk.schedule) == 1
    data = json.loads(shrunk.source.read_text())["shrunk_from"]
    assert (data["schedule"], data["deviations"]) == (before.label, len(before.schedule))
    lines = captured.out.splitlines()
    per_run = [line for line in lines if line.startswith("racetape shrink: run ")]
    assert len(per_run) == data["runs"]  # -v: a line per run
    assert per_run[-1] == f"racetape shrink: run {data['runs']}: best {shrunk.label} (1 deviation)"
    # -v shows pytest's own output (the plugin's summary of the shrink) before the command's.
    summary = [line for line in lines if line.startswith(f"racetape shrink: {TEST}: ")][-1]
    assert summary.startswith(f"racetape shrink: {TEST}: {before.label} (")
    assert summary.endswith(
        f"-> {shrunk.label} (1 deviation), in {data['runs']} runs (pytest in {pytester.path})"
    )
    shown = os.path.relpath(shrunk.source)
    assert f"replay it: racetape replay {shown}" in lines
    assert f"  or: pytest --race-replay={shrunk.label} {TEST}" in lines
    # The progress, on stderr (plain lines: not a terminal), counted from the plugin's runs.
    assert f"racetape: shrink {TEST}: at most 65 runs\n" in captured.err
    assert f"racetape: shrink {TEST}: {data['runs']} runs, " in captured.err
    # replay NODEID now takes the shrunk trace.
    assert racetape(["replay", TEST, "-q"]) == 1
    assert f"under schedule {format_schedule(shrunk.schedule)} (" in capsys.readouterr().out


def test_replay_and_shrink_of_what_is_not_there_is_one_line_and_exit_2(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    assert racetape(["replay", TEST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"racetape replay: error: {TEST}: no .racetape/traces at or above")
    assert "pytest --race-runs 50" in err
    assert err.count("\n") == 1
    assert racetape(["shrink", "nothing.json", "--traces", "x"]) == 2  # a path, not a file
    assert capsys.readouterr().err == (
        "racetape shrink: error: nothing.json: no such trace; give a trace's path or a test's"
        " node id\n"
    )


# -- which test, which checkout, which traces (replay / shrink NODEID) ---------------------------


def project(tmp_path: Path, ini: str = AUTO) -> Path:
    """A project with an ini file and the ORDER test, ``t.py``, and ``tests/t.py`` under it."""
    (tmp_path / "tests").mkdir(parents=True, exist_ok=True)
    tmp_path.joinpath("pytest.ini").write_text(ini)
    for test in (tmp_path / "t.py", tmp_path / "tests" / "t.py"):
        test.write_text(ORDER)
    return tmp_path


def write(root: Path, session: str, nodeid: str, rootdir: Path, **more: object) -> Path:
    folder = f"2026010{session}T000000.000000Z-1"
    trace = {**doc(nodeid), "rootdir": str(rootdir), "invocation_dir": str(rootdir), **more}
    return SessionTraces(root, folder).write(trace)


def test_a_node_id_typed_below_the_rootdir_is_its_file_there_never_a_same_named_one(
    tmp_path: Path,
) -> None:
    root = project(tmp_path) / "traces"
    (tmp_path / "pkg" / "tests").mkdir(parents=True)
    (tmp_path / "pkg" / "tests" / "t.py").write_text(ORDER)
    write(root, "1", "pkg/tests/t.py::test_a", tmp_path)  # the older session
    write(root, "2", "tests/t.py::test_a", tmp_path)  # the newer: the root's tests/t.py
    from_pkg = find_trace("tests/t.py::test_a", root, cwd=tmp_path / "pkg", rootdir=tmp_path)
    assert from_pkg.nodeid == "pkg/tests/t.py::test_a"  # not the newer, same-named one
    # A file that two traced tests are (a link): one line, never a pick by time.
    (tmp_path / "link.py").symlink_to(tmp_path / "t.py")
    write(root, "3", "t.py::test_b", tmp_path)
    SessionTraces(root, "20260103T000000.000000Z-1").write(
        {**doc("link.py::test_b"), "rootdir": str(tmp_path)}
    )
    with pytest.raises(TraceError, match=r"names more than one traced test .*trace's path"):
        find_trace("t.py::test_b", root, cwd=tmp_path, rootdir=tmp_path)


def test_a_node_id_as_pytests_failed_line_prints_it_and_the_ini_race_traces_find_it(
    tmp_path: Path,
) -> None:
    project(tmp_path, AUTO + "race_traces = build/traces\n")
    ini_root = tmp_path / "build" / "traces"
    wanted = write(ini_root, "1", "tests/t.py::test_a", tmp_path)
    write(ini_root, "1", "tests/t.py::test_p[1]", tmp_path)
    stale = write(tmp_path / ".racetape" / "traces", "2", "tests/t.py::test_a", tmp_path)
    assert stale.exists()
    assert resolve("tests/t.py::test_a[race4]", None, tmp_path).trace.source == wanted
    assert resolve("t.py::test_a", None, tmp_path / "tests").trace.source == wanted
    found = resolve("tests/t.py::test_p[1-race0]", None, tmp_path).trace
    assert found.nodeid == "tests/t.py::test_p[1]"
    # A node id with a space is quoted in the hint, as a shell needs it.
    with pytest.raises(TraceError, match=r"pytest --race-runs 50 'tests/t.py::test_p\[a b\]'"):
        resolve("tests/t.py::test_p[a b]", None, tmp_path)


def test_a_trace_from_another_checkout_runs_this_checkouts_test_and_says_where(
    tmp_path: Path,
) -> None:
    mine, theirs = project(tmp_path / "mine"), tmp_path / "theirs"
    shared = tmp_path / "shared"
    trace = write(shared, "1", "tests/t.py::test_a", theirs)  # their checkout: gone, or not
    target = resolve("t.py::test_a", shared, mine / "tests")
    assert (target.trace.source, target.where, target.node) == (trace, mine, "tests/t.py::test_a")
    assert target.note == ""
    # Not found from here: where it was recorded, and a note that says so.
    project(theirs)
    elsewhere = resolve(str(trace), None, tmp_path)
    assert elsewhere.where == theirs
    assert elsewhere.note == (
        f"tests/t.py is not found at or above {tmp_path}: running the copy where the trace was"
        f" recorded, {theirs}"
    )


def test_a_file_that_goes_while_traces_are_read_is_passed_over(tmp_path: Path) -> None:
    root = tmp_path / "traces"
    kept = write(root, "1", "t.py::test_a", tmp_path)
    (kept.parent / "a-gone.json").symlink_to(tmp_path / "gone.json")  # listed, then not there
    assert find_trace("t.py::test_a", root, cwd=tmp_path).source == kept


def test_replay_runs_the_checkout_it_is_typed_in_and_a_failure_in_another_phase_is_not_the_same(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ordered(pytester, "--race-runs", "20")
    (recorded,) = traces_of(pytester.path / ".racetape" / "traces")
    fixed = pytester.path / "fixed"  # a copy of the project with the fix (another worktree)
    fixed.mkdir()
    fixed.joinpath("pytest.ini").write_text(AUTO)
    fixed.joinpath("test_order.py").write_text(ORDER.replace('landed[-1] == "e"', '"e" in landed'))
    monkeypatch.chdir(fixed)
    capsys.readouterr()
    assert racetape(["replay", str(recorded)]) == 0  # the fixed code, not the recorded copy's
    out, err = capsys.readouterr()
    assert "note:" not in err  # the test is here: no word of the recorded copy
    assert out.splitlines() == [
        f"racetape replay: did not reproduce: {TEST} passed under schedule"
        f" {load_trace(recorded).label} (pytest in {fixed}); recorded call:"
        f" {load_trace(recorded).error}; fixed, or part of it is not under racetape's control"
    ]  # and not pytest's own output: that is -v's
    # The same exception type in another phase is another failure.
    monkeypatch.chdir(pytester.path)
    setup = pytester.path / "setup.json"
    setup.write_text(json.dumps({**json.loads(recorded.read_text()), "when": "setup"}))
    assert racetape(["replay", str(setup), "-q"]) == 1
    (verdict,) = capsys.readouterr().out.splitlines()
    assert verdict.startswith(f"racetape replay: failed differently: {TEST} under schedule")
    assert "failed in call: AssertionError: " in verdict
    assert "; recorded setup: AssertionError: " in verdict


def test_replay_of_a_trace_outside_a_nested_projects_rootdir_keeps_its_rootdir(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    # A monorepo: an outer pyproject.toml, the package's own pytest.ini; traces outside it.
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pkg = pytester.mkpydir("pkg")
    pkg.joinpath("pytest.ini").write_text(AUTO)
    pkg.joinpath("test_order.py").write_text(ORDER)
    pytester.runpytest("-p", "no:cacheprovider", "pkg/test_order.py", "--race-runs", "20",
                       "--race-traces", "traces")  # fmt: skip
    (recorded,) = traces_of(pytester.path / "traces")
    assert load_trace(recorded).rootdir == str(pkg)
    capsys.readouterr()
    # Two words (--race-replay PATH), pytest took PATH for a path: rootdir the outer folder.
    assert racetape(["replay", str(recorded), "-q"]) == 1
    assert capsys.readouterr().out.startswith(f"racetape replay: reproduced: {TEST} failed again")


def test_replay_or_shrink_wins_over_race_runs_from_addopts_but_not_typed_beside_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(AUTO + "addopts = --race-runs 20\n")
    pytester.makepyfile(test_order=ORDER)
    assert pytester.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.TESTS_FAILED
    (recorded,) = traces_of(pytester.path / ".racetape" / "traces")
    again = pytester.runpytest("-p", "no:cacheprovider", f"--race-replay={recorded}")
    again.assert_outcomes(failed=1)  # once, under the trace's schedule
    both = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-runs=3", f"--race-replay={recorded}"
    )
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--race-runs and --race-replay are exclusive*"])


def test_the_project_of_a_path_is_found_as_pytest_finds_its_rootdir(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project(deep) is None
    (tmp_path / "setup.py").write_text("")
    assert find_project(deep) == Project(tmp_path)
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest table
    assert find_project(deep) == Project(tmp_path / "a", tmp_path / "a" / "pyproject.toml")
    (deep / "tox.ini").write_text("[tox]\n")  # no [pytest]: not pytest's
    (tmp_path / "a" / "setup.cfg").write_text("[tool:pytest]\nrace_traces = out/tr\n")
    found = find_project(deep)
    assert found is not None
    assert (found.rootdir, found.traces_root) == (tmp_path / "a", tmp_path / "a" / "out" / "tr")
    (deep / "pytest.toml").write_text("[pytest]\n")
    found = find_project(deep / "t.py")
    assert found is not None
    assert (found.rootdir, found.configured_traces) == (deep, False)
    assert found.traces_root == deep / ".racetape" / "traces"
