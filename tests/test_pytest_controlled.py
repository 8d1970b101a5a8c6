"""The pytest plugin in controlled mode, on tests written outside the project (tests/examples):
found in the first runs, one failure per test, replayed exactly from the printed command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"
AUTO = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def project(pytester: pytest.Pytester, **files: str) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(**{name: (EXAMPLES / source).read_text() for name, source in files.items()})


def replays(result: pytest.RunResult) -> list[str]:
    return [
        line.removeprefix("replay: ") for line in result.outlines if line.startswith("replay: ")
    ]


@pytest.mark.parametrize(
    ("source", "buggy", "fixed", "message"),
    [
        (
            "tape_sqlite.py",
            "test_cancel_leaves_final_last",
            "test_cancel_leaves_final_last_guarded",
            "an event landed after final: ['started', 'final', 'progress']",
        ),
        (
            "worker_stop.py",
            "test_stop_ends_the_worker",
            "test_stop_ends_the_fixed_worker",
            "TimeoutError",
        ),
        (
            "progress_aiosqlite.py",
            "test_final_is_last",
            "test_final_is_last_fixed",
            "an event landed after final",
        ),
    ],
    ids=["bug1", "lost-stop", "aiosqlite-progress"],
)
def test_a_race_fails_within_five_controlled_runs_and_its_replay_fails_the_same_way(
    pytester: pytest.Pytester, source: str, buggy: str, fixed: str, message: str
) -> None:
    project(pytester, test_example=source)

    raced = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "5")
    outcomes = raced.parseoutcomes()
    assert outcomes.get("failed") == 1, raced.outlines  # one failing run: its test stops there
    failed = re.findall(r"^FAILED (\S+)", raced.stdout.str(), re.MULTILINE)
    assert len(failed) == 1, failed
    assert f"::{buggy}[race" in failed[0], failed
    assert f"{fixed}[" not in raced.stdout.str().split("short test summary")[-1]
    raced.stdout.fnmatch_lines(
        [
            "*- racetape -*",
            f"run * of test_example.py::{buggy} failed under controlled schedule *; replay it,"
            " exactly, with:",
            f"  pytest --race-replay * test_example.py::{buggy}",
            "the decisions that deviate from first come, first served:",
            "  decision *: *test_example.py:* ahead of *",
        ]
    )
    assert raced.stdout.str().count("Traceback") <= 1
    (command,) = replays(raced)
    deviations = [line for line in raced.outlines if line.startswith("  decision ")]

    for _ in range(3):
        again = pytester.runpytest("-p", "no:cacheprovider", *shlex.split(command)[1:])
        again.assert_outcomes(failed=1)
        assert message in again.stdout.str()
        assert [line for line in again.outlines if line.startswith("  decision ")] == deviations


def test_keep_going_runs_every_run_and_a_complete_search_skips_the_rest_saying_so(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, test_example="tape_sqlite.py")
    result = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "60", "--race-keep-going")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] > 1
    result.stdout.fnmatch_lines(
        [
            "*test_example.py::test_cancel_leaves_final_last_guarded *0  every schedule (*):"
            " complete*"
        ]
    )
    assert outcomes["skipped"] > 0, "the guarded test's search ran out before 60 runs"


def test_a_test_on_a_thread_racetape_cannot_hold_is_reported_partly_uncontrolled(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(
        test_thread="""
        import asyncio
        import threading


        async def test_hand_started_thread():
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            worker = threading.Thread(target=lambda: loop.call_soon_threadsafe(done.set_result, 1))
            worker.start()
            assert await done == 1
            worker.join()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "3")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*test_hand_started_thread*partly uncontrolled: *thread*"])


def test_racetape_strategies_come_from_one_registry(pytester: pytest.Pytester) -> None:
    project(pytester, test_example="worker_stop.py")
    for strategy in ("random", "pct", "exhaustive"):
        result = pytester.runpytest(
            "-p", "no:cacheprovider", "--race-runs", "40", "--race-strategy", strategy
        )
        assert result.parseoutcomes().get("failed") == 1, (strategy, result.outlines[-5:])
    bad = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "2", "--race-strategy", "x")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--race-strategy: invalid choice: 'x'*"])


def test_a_test_failing_many_runs_prints_one_traceback_one_report_and_one_replay(
    pytester: pytest.Pytester,
) -> None:
    """Under --race-keep-going the buggy test fails several of its 60 runs; the FAILURES section
    holds one traceback (one exception line ends each) and one racetape section, the first
    failing run's; each later failing run is one line naming the first; the summary gives one
    replay command and the other failing schedules on one line."""
    project(pytester, test_example="tape_sqlite.py")
    result = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "60", "--race-keep-going")
    failed = result.parseoutcomes()["failed"]
    assert failed > 1
    out = result.stdout.str()
    failures = out.split("= FAILURES =")[1].split("= racetape race runs =")[0]
    assert len(re.findall(r"^\S+\.py:\d+: \w+Error$", failures, re.MULTILINE)) == 1, failures
    assert failures.count("- racetape -") == 1
    assert failures.count("replay it, exactly, with:") == 1
    assert failures.count("racetape: failed too (schedule ") == failed - 1
    assert len(replays(result)) == 1
    (others,) = [line for line in result.outlines if "other failing schedules of" in line]
    counted = [
        int(n[0]) if n else 1
        for label in others.split(": ", 1)[1].split(", ")
        for n in [re.findall(r"\((\d+) runs\)", label)]
    ]
    assert sum(counted) == failed - 1
