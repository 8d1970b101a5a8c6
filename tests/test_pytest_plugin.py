"""The pytest plugin, through pytest itself: off by default, --race-runs, replay, marker, summary.

Most tests run an inner pytest session in-process (pytester); the example of bug 1 runs in a
subprocess from the project root, so the printed replay command is run exactly as printed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest

from racetape._engine.perturb import Perturbation, derive_seed
from racetape._stats import interval, upper_bound

# pytester restores sys.modules after every in-process session: Hypothesis, imported here,
# stays imported instead of costing a second or more in each of them.
assert hypothesis.__version__

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "tests/examples/late_write.py"
AUTO = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

SEEDS = """
import asyncio

import pytest


async def test_a():
    print(f"SEED test_a {asyncio.get_running_loop().perturbation.seed}")


@pytest.mark.parametrize("p", ["x", "y"])
async def test_b(p):
    print(f"SEED test_b[{p}] {asyncio.get_running_loop().perturbation.seed}")


def test_sync():
    print("SYNC ran")
"""


def seeds_printed(result: pytest.RunResult) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for line in result.outlines:
        for match in re.finditer(r"SEED (\S+) (\d+)", line):
            seen.setdefault(match[1], []).append(int(match[2]))
    return seen


def test_off_by_default_the_plugin_adds_nothing(pytester: pytest.Pytester) -> None:
    """Installed and loaded, no flags: pytest-asyncio's own loop, no loop-factory hook, no
    parametrization, worker-thread jobs handed to the executor as asyncio made them."""
    pytester.makeini(AUTO)
    pytester.makepyfile(
        """
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        from racetape._engine.perturb import PerturbingEventLoop


        async def test_untouched(request):
            config = request.config
            assert config.pluginmanager.hasplugin("racetape")
            assert config.pluginmanager.get_plugin("racetape-race") is None
            assert not config.hook.pytest_asyncio_loop_factories.get_hookimpls()
            assert request.node.name == "test_untouched"

            loop = asyncio.get_running_loop()
            fresh = asyncio.get_event_loop_policy().new_event_loop()
            try:
                assert type(loop) is type(fresh)
            finally:
                fresh.close()
            assert not isinstance(loop, PerturbingEventLoop)

            submitted = []

            class Recording(ThreadPoolExecutor):
                def submit(self, fn, /, *args, **kwargs):
                    submitted.append(fn)
                    return super().submit(fn, *args, **kwargs)

            loop.set_default_executor(Recording())
            assert await asyncio.to_thread(lambda: 7) == 7
            assert [type(fn).__name__ for fn in submitted] == ["partial"]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*racetape race runs*")


def test_race_runs_repeat_each_async_test_with_a_seed_per_test_and_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(test_seeds=SEEDS)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "3", "-s", "-v"
    )
    result.assert_outcomes(passed=3 * 3 + 1)
    result.stdout.fnmatch_lines(["test_seeds.py::test_b[[]y-race2[]] *"])
    assert sum("SYNC ran" in line for line in result.outlines) == 1

    seeds = seeds_printed(result)
    assert sorted(seeds) == ["test_a", "test_b[x]", "test_b[y]"]
    assert seeds["test_a"] == [derive_seed(0, "test_seeds.py::test_a", i) for i in range(3)]
    assert len({s for run in seeds.values() for s in run}) == 9

    other_base = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--race-mode",
        "jitter",
        "--race-runs",
        "3",
        "--race-base-seed",
        "1",
        "-s",
    )
    assert set(seeds_printed(other_base)["test_a"]).isdisjoint(seeds["test_a"])

    low, high = interval(0, 3)
    assert low == 0
    result.stdout.fnmatch_lines(
        [
            "*racetape race runs*",
            f"test_seeds.py::test_b[[]x[]] *3 *0 *0% *0%-{high:.0%} *{upper_bound(0, 3):.1%}",
            "note: a replay repeats racetape's perturbation*",
        ]
    )


def test_a_failure_prints_its_seed_and_the_command_that_replays_it(
    pytester: pytest.Pytester,
) -> None:
    """The test fails exactly on odd seeds, so which runs fail is known without any timing."""
    pytester.makeini(AUTO)
    pytester.makepyfile(
        test_odd="""
        import asyncio


        async def test_even_seeds_only():
            seed = asyncio.get_running_loop().perturbation.seed
            print(f"SEED test_even_seeds_only {seed}")
            assert seed % 2 == 0
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "8", "-s"
    )
    seeds = seeds_printed(result)["test_even_seeds_only"]
    odd = [s for s in seeds if s % 2]
    assert 0 < len(odd) < 8, "the 8 derived seeds should mix odd and even"
    result.assert_outcomes(passed=8 - len(odd), failed=len(odd))

    nodeid = "test_odd.py::test_even_seeds_only"
    commands = [line.removeprefix("replay: ") for line in result.outlines if "replay: " in line]
    assert commands == [
        shlex.join(["pytest", "--race-mode", "jitter", "--race-seed", str(odd[0]), nodeid])
    ]
    others = [line for line in result.outlines if "other failing seeds" in line]
    assert others == [f"  other failing seeds of {nodeid}: {', '.join(map(str, odd[1:]))}"] * (
        len(odd) > 1
    )
    result.stdout.fnmatch_lines(
        [
            "*- racetape -*",
            f"run * of {nodeid}, seed {odd[0]}; replay it with:",
            f"  pytest --race-mode jitter --race-seed {odd[0]} {nodeid}",
            f"perturbation: seed {odd[0]}: *",
        ]
    )
    k = len(odd)
    result.stdout.fnmatch_lines([f"{nodeid} *8 *{k} *{k / 8:.0%} *{upper_bound(k, 8):.1%}"])

    stopping = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "8",
        "--race-stop-at-first",
    )  # fmt: skip
    first = seeds.index(odd[0])
    stopping.assert_outcomes(passed=first, failed=1, skipped=8 - first - 1)

    replay = pytester.runpytest("-p", "no:cacheprovider", "-s", *shlex.split(commands[0])[1:])
    replay.assert_outcomes(failed=1)
    assert seeds_printed(replay) == {"test_even_seeds_only": [odd[0]]}
    even = next(s for s in seeds if s % 2 == 0)
    passing = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-seed", str(even), nodeid
    )
    passing.assert_outcomes(passed=1)


def test_the_marker_sets_a_tests_runs_and_zero_leaves_it_alone(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(
        test_marked="""
        import asyncio

        import pytest


        @pytest.mark.race(runs=2)
        async def test_two():
            assert asyncio.get_running_loop().perturbation is not None


        @pytest.mark.race(runs=0)
        async def test_never(request):
            assert asyncio.get_running_loop().perturbation is None
            assert request.node.name == "test_never"


        async def test_default():
            assert asyncio.get_running_loop().perturbation is not None
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "4", "-v"
    )
    result.assert_outcomes(passed=2 + 1 + 4)
    result.stdout.fnmatch_lines(["*test_two[[]race1[]] PASSED*"])
    result.stdout.no_fnmatch_line("*test_two[[]race2[]]*")
    result.stdout.no_fnmatch_line("*test_marked.py::test_never *0 *")  # not in the summary

    replay = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-seed", "5"
    )
    replay.assert_outcomes(passed=3)

    plain = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", "--collect-only")
    assert plain.ret == pytest.ExitCode.OK  # the marker is known
    plain.stdout.fnmatch_lines(["*4 tests collected*"])  # and races test_two on its own


def test_a_bad_marker_is_an_error_naming_the_test_and_the_fix(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO)
    pytester.makepyfile(
        test_bad="""
        import pytest


        @pytest.mark.race(runs=-1)
        async def test_bad():
            pass
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "2"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*test_bad.py::test_bad: @pytest.mark.race(runs=-1): runs must be a whole number >= 0*"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--race-runs", "0"], "*--race-runs: '0' is not a whole number >= 1; e.g. --race-runs 50"),
        (["--race-seed", "x"], "*--race-seed: 'x' is not a whole number >= 0*"),
        (["--race-seed", "3"], "*--race-seed replays a jitter run*--race-replay SCHEDULE*"),
        (["--race-replay", "3"], "*--race-replay: '3' is not a schedule*e.g. '3.1'*"),
        (["--race-replay", "3.1", "--race-mode", "jitter"], "*drop --race-mode jitter*"),
        (["--race-runs", "2", "--race-replay", "3.1"], "*are exclusive*"),
        (["--race-max-delay", "0"], "*--race-max-delay: '0' is not a delay in seconds in (0, 10]*"),
        (["--race-runs", "2", "--race-seed", "3"], "*--race-runs and --race-seed are exclusive*"),
    ],
)
def test_bad_options_are_usage_errors_that_say_the_fix(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makeini(AUTO)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_strict_mode_races_only_what_pytest_asyncio_runs(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO.replace("auto", "strict"))
    pytester.makepyfile(
        test_strict="""
        import asyncio

        import pytest


        @pytest.mark.asyncio
        async def test_marked():
            assert asyncio.get_running_loop().perturbation is not None


        def test_sync():
            pass
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "3"
    )
    result.assert_outcomes(passed=3 + 1)


def test_hypothesis_and_module_scoped_loops_run_perturbed(pytester: pytest.Pytester) -> None:
    """A Hypothesis test runs every example on the perturbed loop; two tests sharing one
    module-scoped loop each get their own run's perturbation."""
    pytester.makeini(AUTO)
    pytester.makepyfile(
        test_more="""
        import asyncio

        import pytest
        from hypothesis import given, settings, strategies as st


        @settings(max_examples=5, deadline=None)
        @given(st.integers())
        async def test_examples(n):
            assert asyncio.get_running_loop().perturbation is not None
            assert await asyncio.to_thread(lambda: n) == n


        @pytest.mark.asyncio(loop_scope="module")
        async def test_first():
            loop = asyncio.get_running_loop()
            print(f"SEED first {loop.perturbation.seed}")
            print(f"LOOP {id(loop)}")


        @pytest.mark.asyncio(loop_scope="module")
        async def test_second():
            loop = asyncio.get_running_loop()
            print(f"SEED second {loop.perturbation.seed}")
            print(f"LOOP {id(loop)}")
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "2", "-s"
    )
    result.assert_outcomes(passed=6)
    seeds = seeds_printed(result)
    assert seeds["first"] == [derive_seed(0, "test_more.py::test_first", i) for i in range(2)]
    assert seeds["second"] == [derive_seed(0, "test_more.py::test_second", i) for i in range(2)]
    assert len({line for line in result.outlines if line.startswith("LOOP")}) == 1


def test_another_loop_factory_plugin_is_refused_not_silently_replaced(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(AUTO)
    pytester.makeconftest(
        """
        import asyncio


        def pytest_asyncio_loop_factories(config, item):
            return {"custom": asyncio.new_event_loop}
        """
    )
    pytester.makepyfile("async def test_a():\n    pass\n")
    assert pytester.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.OK
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--race-mode", "jitter", "--race-runs", "2"
    )
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*racetape: another plugin sets pytest_asyncio_loop_factories*"])


# -- the example: the seed's bug 1 in miniature ------------------------------------------------


def pytest_in_root(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_late_write_passes_plainly_fails_under_race_runs_and_replays_from_its_seed() -> None:
    plain = pytest_in_root(EXAMPLE, "-q")
    assert plain.returncode == 0, plain.stdout
    assert "2 passed" in plain.stdout

    raced = pytest_in_root(EXAMPLE, "-q", "--race-mode", "jitter", "--race-runs", "50")
    assert raced.returncode == 1, raced.stdout
    failed = re.findall(r"^FAILED (\S+)", raced.stdout, re.MULTILINE)
    assert failed, raced.stdout
    assert all("test_final_stays_last[race" in nodeid for nodeid in failed), failed
    assert "with_guard" not in " ".join(failed)
    test = f"{EXAMPLE}::test_final_stays_last"
    assert re.search(rf"^{re.escape(test)}_with_guard +50 +0 ", raced.stdout, re.MULTILINE)

    # One section, the first failure's: its seed and the delays racetape gave the worker-thread
    # write; the other failing runs' seeds on one line.
    sections = re.findall(
        r"seed (\d+); replay it with:\n  (.+)\nperturbation: seed \1: 1 worker-thread jobs"
        r" delayed \(ms before start/before hand-back: ([\d.]+)/([\d.]+)\)",
        raced.stdout,
    )
    assert len(sections) == 1, raced.stdout
    other = re.search(rf"^  other failing seeds of {re.escape(test)}: (.+)$", raced.stdout, re.M)
    listed = other[1].split(", ") if other else []
    seeds = [int(sections[0][0]), *(int(s) for s in listed)]
    assert len(seeds) == len(failed)
    # Replay the failure with the widest margin over the test's 10 ms wait, exactly as the
    # command a failure prints. (Other failures may have smaller delays: on a loaded machine
    # the OS adds its own.) A seed's delays are its Perturbation's first draw.
    delays = {s: Perturbation(s).job_delays() for s in seeds}
    seed = max(seeds, key=lambda s: delays[s][0])
    before, after = (f"{d * 1e3:.1f}" for d in delays[seed])
    assert float(before) > 10, "the worker-thread write was delayed past the test's wait"
    command = f"pytest --race-mode jitter --race-seed {seed} {test}"
    assert sections[0][1] == command.replace(str(seed), sections[0][0])
    replay = pytest_in_root(*shlex.split(command)[1:])
    assert replay.returncode == 1, replay.stdout
    assert "an event landed after final: ['started', 'final', 'progress']" in replay.stdout
    same_delays = (
        f"perturbation: seed {seed}: 1 worker-thread jobs delayed (ms before start/before"
        f" hand-back: {before}/{after})"
    )
    assert same_delays in replay.stdout
