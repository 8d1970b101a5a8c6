"""The plugin's settings: the marker on its own, ini options under flags, the warning when race
runs race nothing, and usage errors with pytest's own exit code."""

from __future__ import annotations

import re

import pytest

from racetape._engine.perturb import derive_seed

AUTO = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

LOOPS = """
import asyncio

import pytest


async def test_plain():
    print(f"LOOP test_plain {type(asyncio.get_running_loop()).__name__}")


@pytest.mark.race(runs=3)
async def test_marked():
    print(f"LOOP test_marked {type(asyncio.get_running_loop()).__name__}")


async def test_later():
    print(f"LOOP test_later {type(asyncio.get_running_loop()).__name__}")
"""


def loops(result: pytest.RunResult) -> list[tuple[str, str]]:
    return re.findall(r"LOOP (\S+) (\S+)", result.stdout.str())


def test_the_marker_alone_races_its_test_under_controlled_runs(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(test_loops=LOOPS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", "-v")
    # Three runs collected; the first tries the only schedule there is (no decision to take),
    # so the search skips the other two, saying so.
    result.assert_outcomes(passed=1 + 1 + 1, skipped=2)
    seen = loops(result)
    assert seen.count(("test_marked", "ControlledLoop")) == 1, seen
    assert [loop for test, loop in seen if test != "test_marked"] == [
        "_UnixSelectorEventLoop",
        "_UnixSelectorEventLoop",
    ], seen
    result.stdout.fnmatch_lines(
        [
            "*test_marked[[]race0[]] LOOP test_marked ControlledLoop",
            "*test_marked[[]race2[]] SKIPPED*",
            "*racetape race runs*",
            "test_loops.py::test_marked *1 *0 *every schedule (1): complete",
        ]
    )
    result.stdout.no_fnmatch_line("*test_plain[[]race*")


def test_ini_options_set_the_defaults_and_flags_win_over_them(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO + "race_runs = 2\nrace_mode = jitter\nrace_base_seed = 5\n")
    pytester.makepyfile(
        test_ini="""
        import asyncio


        async def test_a():
            print(f"SEED {asyncio.get_running_loop().perturbation.seed}")
        """
    )
    test = "test_ini.py::test_a"
    from_ini = pytester.runpytest("-p", "no:cacheprovider", "-s")
    from_ini.assert_outcomes(passed=2)  # race_runs, and jitter (only it has .perturbation)
    assert seeds(from_ini) == [derive_seed(5, test, i) for i in range(2)]  # race_base_seed

    flagged = pytester.runpytest(
        "-p", "no:cacheprovider", "-s", "--race-runs", "3", "--race-base-seed", "6"
    )
    flagged.assert_outcomes(passed=3)
    assert seeds(flagged) == [derive_seed(6, test, i) for i in range(3)]


def seeds(result: pytest.RunResult) -> list[int]:
    return [int(seed) for seed in re.findall(r"SEED (\d+)", result.stdout.str())]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("race_runs = many", "*race_runs: 'many' is not a whole number >= 1*"),
        ("race_mode = chaos", "*race_mode: invalid choice: 'chaos'*"),
        ("race_strategy = x", "*race_strategy: invalid choice: 'x'*"),
        ("race_max_delay = 99", "*race_max_delay: '99' is not a delay in seconds*"),
    ],
)
def test_a_bad_ini_option_is_a_usage_error_naming_file_and_option(
    pytester: pytest.Pytester, line: str, message: str
) -> None:
    pytester.makeini(AUTO + line + "\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*tox.ini: {message}"])


def test_a_bad_flag_value_exits_with_pytests_usage_code(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO)
    result = pytester.runpytest("-p", "no:cacheprovider", "--race-mode", "chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--race-mode: invalid choice: 'chaos'*"])


def test_race_runs_that_race_no_test_warn(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO.replace("auto", "strict"))
    pytester.makepyfile(
        test_none="""
        async def test_not_marked_in_strict_mode():
            pass


        def test_sync():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "5")
    result.stdout.fnmatch_lines(
        ["*warnings summary*", "*PytestWarning: racetape: race runs (5) were asked for*"]
    )
    raced = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "5", "-k", "sync")
    assert "race runs (5) were asked for" in raced.stdout.str()
    pytester.makepyfile(test_none="async def test_a():\n    pass\n")
    pytester.makeini(AUTO)
    fine = pytester.runpytest("-p", "no:cacheprovider", "--race-runs", "2")
    fine.assert_outcomes(passed=1, skipped=1)  # the second: no schedule left to try
    assert "were asked for" not in fine.stdout.str()


def test_a_test_on_anyios_loop_is_not_raced_and_a_warning_says_so(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(
        test_mixed="""
        import asyncio
        import pytest

        @pytest.mark.anyio
        async def test_on_anyio():
            await asyncio.sleep(0)

        async def test_on_asyncio():
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--race-runs", "2")
    lines = result.outlines
    assert any("test_on_anyio[asyncio] PASSED" in line for line in lines), lines
    assert not any("test_on_anyio[asyncio-race" in line for line in lines), lines
    assert any("test_on_asyncio[race0]" in line for line in lines), lines
    result.stdout.fnmatch_lines(["*racetape: 1 test(s) run on anyio's loop*not raced*"])
