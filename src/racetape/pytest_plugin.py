"""racetape's pytest plugin: shake a project's asyncio tests with seeded timing; replay by seed.

Registered through the ``pytest11`` entry point (``-p no:racetape`` unloads it). It does nothing
unless asked: without ``--race-runs`` or ``--race-seed`` it registers one marker and the
``race_scheduler`` fixture, and no hook that changes how a test runs.

* ``--race-runs N``: every async test that pytest-asyncio runs is collected N times
  (``test[race0]`` ... ``test[raceN-1]``); run ``i`` runs on a :class:`PerturbingEventLoop`
  with the perturbation of seed ``derive_seed(B, nodeid, i)`` (``B``: ``--race-base-seed``,
  default 0, so a session repeats the last one's perturbations unless told otherwise).
* ``--race-seed S``: replay. The selected async tests run once each, with seed ``S``.
* ``--race-max-delay SECONDS``: the longest worker-thread delay (default 0.05).
* ``@pytest.mark.race(runs=N)``: this test's number of runs under ``--race-runs`` (0: never
  perturbed).
* On a failure the report gets a ``racetape`` section: the seed, the command that replays it, and
  what the perturbation did; the terminal summary has a line per test (runs, failures, the rate
  with its 95% Clopper-Pearson interval and upper bound) and the replay commands.

The loop reaches pytest-asyncio through its ``pytest_asyncio_loop_factories`` hook, implemented
by :class:`RaceSession`, a plugin object registered only when the plugin is on (pytest-asyncio
parametrizes every async test with the factories that hook returns, so merely implementing it
would change every async test). Sync tests, and loops a test makes itself (``asyncio.run``), are
not perturbed.

What a replay repeats: the plugin's own decisions (each worker-thread job's delays, each
arriving callback's hold), drawn in the same order from the same seed. The OS still schedules
the threads, so the program may not reach those decisions in the same order, and a replay can
pass where the run failed. The summary says so.
"""

from __future__ import annotations

import argparse
import inspect
import io
import os
import shlex
import weakref
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

# Standard library only, so loading the plugin costs milliseconds; the engine (for the
# fixture) and scipy and rich (for the summary) are imported when used.
from racetape._engine.perturb import (
    DEFAULT_MAX_DELAY,
    Perturbation,
    PerturbingEventLoop,
    derive_seed,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from racetape._controlled import ControlledRuns

PLUGIN_NAME = "racetape-race"
RUN_PARAM = "_racetape_run"
REPLAY_NOTE = (
    "a replay repeats racetape's perturbation (the same delays and held callbacks, drawn in the"
    " same order from the seed); the OS still schedules the threads, so a replay can pass where"
    " the run failed"
)


def _whole(minimum: int, example: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number >= {minimum}; e.g. {example}"
            )
        return value

    return parse


def _max_delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 10:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a delay in seconds in (0, 10]; e.g. --race-max-delay 0.05"
        )
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("racetape", "racetape: seeded race perturbation of asyncio tests")
    group.addoption(
        "--race-runs",
        type=_whole(1, "--race-runs 50"),
        metavar="N",
        help="run every async test N times, each with its own seeded perturbation",
    )
    group.addoption(
        "--race-seed",
        type=_whole(0, "--race-seed 1234 (the seed a failure printed)"),
        metavar="S",
        help="replay: run the selected async tests once with the perturbation of seed S",
    )
    group.addoption(
        "--race-base-seed",
        type=_whole(0, "--race-base-seed 7"),
        default=0,
        metavar="B",
        help="derive the seeds of --race-runs from B (default 0)",
    )
    group.addoption(
        "--race-max-delay",
        type=_max_delay,
        default=DEFAULT_MAX_DELAY,
        metavar="SECONDS",
        help=f"longest delay around a worker-thread job (default {DEFAULT_MAX_DELAY})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "race(runs=N): run this async test N times under --race-runs (0: never perturb it)",
    )
    runs: int | None = config.getoption("race_runs")
    seed: int | None = config.getoption("race_seed")
    if runs is None and seed is None:
        return
    if runs is not None and seed is not None:
        raise pytest.UsageError(
            "racetape: --race-runs and --race-seed are exclusive: --race-seed replays one"
            " printed run; drop one of them"
        )
    if not hasattr(config.hook, "pytest_asyncio_loop_factories"):
        raise pytest.UsageError(
            "racetape: --race-runs/--race-seed need pytest-asyncio>=1.4 (its"
            " pytest_asyncio_loop_factories hook): pip install 'pytest-asyncio>=1.4'"
        )
    config.pluginmanager.register(
        RaceSession(
            config,
            runs=runs,
            replay_seed=seed,
            base_seed=config.getoption("race_base_seed"),
            max_delay=config.getoption("race_max_delay"),
        ),
        PLUGIN_NAME,
    )


@pytest.fixture
def race_scheduler() -> ControlledRuns:
    """Runs a coroutine under racetape's controlled scheduler: ``await
    race_scheduler.run(main(), strategy="random", seed=3)`` returns the Schedule (decisions by
    actor name, outcome); see :mod:`racetape._controlled`."""
    from racetape._controlled import ControlledRuns

    return ControlledRuns()


# -- the session, when on ------------------------------------------------------------------------


@dataclass(frozen=True)
class RaceRun:
    """One perturbed run of one test."""

    test: str  # the test's node id without the run's parameter: what a replay selects
    index: int | None  # None for a replay
    seed: int


@dataclass
class Tally:
    runs: set[str] = field(default_factory=set)  # node ids that ran
    failed: dict[str, int] = field(default_factory=dict)  # node id -> seed


RUN_KEY = pytest.StashKey[RaceRun]()
PERTURBATION_KEY = pytest.StashKey[Perturbation]()


def _is_asyncio_test(item: pytest.Item) -> bool:
    """A test pytest-asyncio runs: marked asyncio (auto mode marks every async test at
    collection), and a coroutine function, or a Hypothesis test around one."""
    if item.get_closest_marker("asyncio") is None:
        return False
    function = getattr(item, "obj", None)
    inner = getattr(getattr(function, "hypothesis", None), "inner_test", None)
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(inner)


def _runs_marked(item: pytest.Item, default: int) -> int:
    marker = item.get_closest_marker("race")
    if marker is None:
        return default
    runs = marker.kwargs.get("runs", marker.args[0] if marker.args else default)
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 0:
        pytest.fail(
            f"{item.nodeid}: @pytest.mark.race(runs={runs!r}): runs must be a whole number >= 0"
            " (0 never perturbs the test)",
            pytrace=False,
        )
    return runs


def _test_of(nodeid: str, index: int) -> str:
    """The node id without this plugin's parameter, which is always the last one (its
    pytest_generate_tests runs last)."""
    own = f"race{index}]"
    if nodeid.endswith(f"[{own}"):
        return nodeid[: -len(own) - 1]
    if nodeid.endswith(f"-{own}"):
        return nodeid[: -len(own) - 1] + "]"
    return nodeid


class RaceSession:
    """The plugin's hooks while it is on: the loop factory, the runs, the reports, the summary."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        runs: int | None,
        replay_seed: int | None,
        base_seed: int,
        max_delay: float,
    ) -> None:
        self.config = config
        self.runs = runs
        self.replay_seed = replay_seed
        self.base_seed = base_seed
        self.max_delay = max_delay
        self.active: Perturbation | None = None
        self.loops: weakref.WeakSet[PerturbingEventLoop] = weakref.WeakSet()
        self.tallies: dict[str, Tally] = {}

    # -- the loop --------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, optionalhook=True)
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Generator[None, Mapping[str, Any] | None, Mapping[str, Any]]:
        others = yield
        if others:
            raise pytest.UsageError(
                f"racetape: another plugin sets pytest_asyncio_loop_factories"
                f" ({', '.join(others)}); --race-runs/--race-seed provide the loop themselves:"
                " run without one of them"
            )
        return {"racetape": self._new_loop}

    def _new_loop(self) -> PerturbingEventLoop:
        loop = PerturbingEventLoop(self.active)
        self.loops.add(loop)
        return loop

    def _activate(self, perturbation: Perturbation | None) -> None:
        # Loops of a wider scope than the test outlive it: each test's runs get its own.
        self.active = perturbation
        for loop in list(self.loops):
            if not loop.is_closed():
                loop.perturbation = perturbation

    # -- collection ------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if self.runs is None or not _is_asyncio_test(metafunc.definition):
            return
        runs = _runs_marked(metafunc.definition, self.runs)
        if runs == 0:
            return
        metafunc.fixturenames.append(RUN_PARAM)
        metafunc.parametrize(RUN_PARAM, range(runs), ids=[f"race{i}" for i in range(runs)])

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            callspec = getattr(item, "callspec", None)
            index = callspec.params.get(RUN_PARAM) if callspec is not None else None
            if isinstance(index, int):
                test = _test_of(item.nodeid, index)
                run = RaceRun(test, index, derive_seed(self.base_seed, test, index))
            elif (
                self.replay_seed is not None
                and _is_asyncio_test(item)
                and _runs_marked(item, 1) > 0
            ):
                run = RaceRun(item.nodeid, None, self.replay_seed)
            else:
                continue
            item.stash[RUN_KEY] = run
            # On the report, so the summary (and junitxml, and xdist's controller) can see them.
            item.user_properties += [
                ("racetape_test", run.test),
                ("racetape_seed", run.seed),
            ]

    # -- running ---------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        run = item.stash.get(RUN_KEY, None)
        if run is None:
            self._activate(None)
            return
        perturbation = Perturbation(run.seed, max_delay=self.max_delay)
        item.stash[PERTURBATION_KEY] = perturbation
        self._activate(perturbation)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            self._activate(None)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        run = item.stash.get(RUN_KEY, None)
        if run is not None and report.failed:
            which = "a replay" if run.index is None else f"run {run.index}"
            lines = [
                f"{which} of {run.test}, seed {run.seed}; replay it with:",
                f"  {self.replay_command(run.test, run.seed)}",
            ]
            perturbation = item.stash.get(PERTURBATION_KEY, None)
            if perturbation is not None:
                lines.append(f"perturbation: {perturbation.summary()}")
            lines.append(f"note: {REPLAY_NOTE}")
            report.sections.append(("racetape", "\n".join(lines)))
        return report

    def replay_command(self, test: str, seed: int) -> str:
        """The command that replays ``seed`` on ``test``, from where pytest was started."""
        path, sep, rest = test.partition("::")
        where = os.path.relpath(self.config.rootpath / path, self.config.invocation_params.dir)
        words = ["pytest", "--race-seed", str(seed)]
        if self.max_delay != DEFAULT_MAX_DELAY:
            words += ["--race-max-delay", repr(self.max_delay)]
        return shlex.join([*words, f"{where}{sep}{rest}"])

    # -- the summary -----------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        test = props.get("racetape_test")
        if not isinstance(test, str):
            return
        tally = self.tallies.setdefault(test, Tally())
        if report.when == "call" or report.failed:
            tally.runs.add(report.nodeid)
        if report.failed:
            seed = props.get("racetape_seed")
            tally.failed[report.nodeid] = seed if isinstance(seed, int) else -1

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.tallies:
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from racetape._stats import interval, upper_bound

        table = Table(box=None, pad_edge=False)
        table.add_column("test", no_wrap=True)
        for column in ("runs", "failed", "rate", "95% interval", "95% upper bound"):
            table.add_column(column, justify="right")
        replays = []
        for test, tally in sorted(self.tallies.items(), key=lambda kv: (-len(kv[1].failed), kv[0])):
            n, k = len(tally.runs), len(tally.failed)
            low, high = interval(k, n)
            rate = f"{k / n:.0%}" if n else "-"
            table.add_row(
                Text(test),
                str(n),
                str(k),
                rate,
                f"{low:.0%}-{high:.0%}",
                f"{upper_bound(k, n):.1%}",
            )
            replays += [self.replay_command(test, seed) for seed in tally.failed.values()]
        buffer = io.StringIO()
        # Wide enough that a node id is never cut: it is what a reader copies.
        longest = max(len(test) for test in self.tallies)
        width = max(self.config.get_terminal_writer().fullwidth, longest + 60)
        Console(file=buffer, width=width, no_color=True, highlight=False).print(table)
        terminalreporter.write_sep("=", "racetape race runs")
        for line in buffer.getvalue().rstrip().splitlines():
            terminalreporter.write_line(line.rstrip())
        for command in replays:
            terminalreporter.write_line(f"replay: {command}")
        terminalreporter.write_line(f"note: {REPLAY_NOTE}")
