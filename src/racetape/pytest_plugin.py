"""racetape's pytest plugin: run a project's own asyncio tests under control; replay any run.

Registered through the ``pytest11`` entry point (``-p no:racetape`` unloads it). It does nothing
unless asked: without ``--race-runs`` (or ini ``race_runs``), ``--race-replay``, ``--race-seed``
or a test marked ``@pytest.mark.race(runs=N)``, it registers one marker and the
``race_scheduler`` fixture, and no hook that changes how a test runs.

* ``--race-runs N``: every async test that pytest-asyncio runs is collected N times
  (``test[race0]`` ... ``test[raceN-1]``).
* ``--race-mode controlled`` (the default): each run runs on a
  :class:`~racetape._engine.loop.ControlledLoop`: worker-thread jobs, timers (on virtual time)
  and callbacks from other threads are decisions, taken by the search of ``--race-strategy``
  (default ``search``: fewest deviations from first come, first served first), which lives
  across the runs of one test. A test's runs stop at its first failure (``--race-keep-going``
  runs them all); a search that has tried every schedule skips the rest and says so. A failing
  run prints its schedule, the few decisions that deviate from first come, first served (who,
  and at which line of the test's code), what the loop could not control, and the command that
  replays it exactly: ``pytest --race-replay SCHEDULE NODEID``.
* One failure report per test: its first failing run has the traceback and the racetape
  section (seed or schedule, replay command, deviating decisions); each later failing run
  (``--race-keep-going``, jitter) is one line naming the first; the summary gives one replay
  command per test and its other failing seeds or schedules on one line; notes once.
  ``--race-stop-at-first`` stops a test's jitter runs at its first failure too.
* ``--race-json PATH``: the session's race runs as one ``racetape.result/1`` document (a group
  per raced test; see :mod:`racetape._result`), written atomically at the end by the process
  that hears every report (xdist's controller; a worker never writes it).
* ``--race-mode jitter``: each run runs on a :class:`PerturbingEventLoop` with the seeded
  perturbation of ``derive_seed(B, nodeid, i)`` (``B``: ``--race-base-seed``, default 0); real
  OS scheduling, so ``--race-seed S`` repeats the perturbation, not the interleaving.
* ``@pytest.mark.race(runs=N)``: this test's number of runs, with or without ``--race-runs``
  (0: never raced); without a flag, the plugin turns on at the first marked test collected.
* ini options (``[pytest]``): ``race_runs``, ``race_mode``, ``race_strategy``,
  ``race_base_seed``, ``race_max_delay``, ``race_keep_going``; the flag wins over the ini file.
  Race runs that race no test are a ``PytestWarning``; a bad flag or ini value is a usage error
  (exit 4), one line naming it and the fix.

The loop reaches pytest-asyncio through its ``pytest_asyncio_loop_factories`` hook, implemented
by :class:`RaceSession`, a plugin object registered only when the plugin is on (pytest-asyncio
parametrizes every async test with the factories that hook returns, so merely implementing it
would change every async test). Sync tests, and loops a test makes itself (``asyncio.run``), are
not raced.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import io
import os
import shlex
import warnings
import weakref
from collections import Counter
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

# Standard library only, so loading the plugin costs milliseconds; the old engine (for the
# fixture), rich and the statistics (for the summary) are imported when used.
from racetape._engine.deviations import (
    Deviations,
    Schedule,
    ScheduleError,
    format_schedule,
    parse_schedule,
    schedule_of,
)
from racetape._engine.loop import LOOP, ControlledLoop, Execution, Strategy
from racetape._engine.perturb import (
    DEFAULT_MAX_DELAY,
    Perturbation,
    PerturbingEventLoop,
    derive_seed,
)
from racetape._engine.schedule import Decision
from racetape._engine.strategies import LOOP_STRATEGIES, STRATEGIES, Search, search_named
from racetape._result import Tally

if TYPE_CHECKING:
    from collections.abc import Callable

    from racetape._controlled import ControlledRuns

PLUGIN_NAME = "racetape-race"
SWITCH_NAME = "racetape-marker-switch"
RUN_PARAM = "_racetape_run"
MODES = ("controlled", "jitter")
JITTER_NOTE = (
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


def _schedule(text: str) -> Schedule:
    try:
        return parse_schedule(text)
    except ScheduleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# Each flag with an ini option of the same name (``race_runs = 30`` under ``[pytest]``); the flag
# wins over the ini file, the ini file over the default.
INI_OPTIONS = ("race_runs", "race_mode", "race_strategy", "race_base_seed", "race_max_delay")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(choices)})"
            )
        return text

    return parse


def _json_path(text: str) -> Path:
    path = Path(text)
    if not text.strip() or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file path; e.g. --race-json race.json")
    if path.exists() and not path.is_file():
        # A device or a FIFO: renaming a document over it would replace it (as root, even
        # /dev/null); only regular files are ever replaced.
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a regular file (a device or a pipe); e.g. --race-json race.json"
        )
    return path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("racetape", "racetape: race runs of asyncio tests, replayable")
    group.addoption(
        "--race-runs",
        type=_whole(1, "--race-runs 50"),
        metavar="N",
        help="run every async test N times, each run under its own schedule (ini: race_runs;"
        " @pytest.mark.race(runs=N) races one test without it)",
    )
    group.addoption(
        "--race-mode",
        type=_choice(MODES),
        metavar="{" + ",".join(MODES) + "}",
        help="controlled (default): the loop decides every thread hand-back, timer and foreign"
        " callback, and a failing run replays exactly; jitter: seeded delays with real OS"
        " scheduling (statistical) (ini: race_mode)",
    )
    group.addoption(
        "--race-strategy",
        type=_choice(LOOP_STRATEGIES),
        metavar="{" + ",".join(LOOP_STRATEGIES) + "}",
        help="how controlled runs choose (default search; ini: race_strategy): "
        + "; ".join(f"{name}: {STRATEGIES[name].help}" for name in LOOP_STRATEGIES),
    )
    group.addoption(
        "--race-replay",
        type=_schedule,
        metavar="SCHEDULE",
        help="replay: run the selected async tests once under the controlled schedule a"
        " failure printed (e.g. 3.1 or 3.1-7.2; fifo for none)",
    )
    group.addoption(
        "--race-seed",
        type=_whole(0, "--race-seed 1234 (the seed a failure printed)"),
        metavar="S",
        help="replay a jitter run: run the selected async tests once with the perturbation"
        " of seed S (needs --race-mode jitter)",
    )
    group.addoption(
        "--race-base-seed",
        type=_whole(0, "--race-base-seed 7"),
        metavar="B",
        help="derive each test's search (controlled) or seeds (jitter) from B (default 0;"
        " ini: race_base_seed)",
    )
    group.addoption(
        "--race-keep-going",
        action="store_true",
        default=None,
        help="controlled: run all of a test's runs after its first failure (default: stop;"
        " ini: race_keep_going)",
    )
    group.addoption(
        "--race-stop-at-first",
        action="store_true",
        help="jitter: skip a test's remaining runs after its first failure (controlled runs"
        " stop there by default)",
    )
    group.addoption(
        "--race-max-delay",
        type=_max_delay,
        metavar="SECONDS",
        help=f"jitter: longest delay around a worker-thread job (default {DEFAULT_MAX_DELAY};"
        " ini: race_max_delay)",
    )
    group.addoption(
        "--race-json",
        type=_json_path,
        metavar="PATH",
        help="write the session's race runs here: a racetape.result document (a group per"
        " raced test), for racetape report / report compare / report merge",
    )
    for name in INI_OPTIONS:
        flag = "--" + name.replace("_", "-")
        parser.addini(name, f"racetape: the default of {flag}", default="")
    parser.addini(
        "race_keep_going", "racetape: the default of --race-keep-going", type="bool", default=False
    )


def _setting(config: pytest.Config, name: str, parse: Callable[[str], Any], default: Any) -> Any:
    """The value of flag ``--name``, else of ini option ``name``, else ``default``. A bad ini
    value is a usage error naming the ini option and the file."""
    value = config.getoption(name)
    if value is not None:
        return value
    raw = config.getini(name)
    text = raw.strip() if isinstance(raw, str) else str(raw)
    if not text:
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        where = config.inipath or "the ini file"
        raise pytest.UsageError(f"racetape: {where}: {name}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "race(runs=N): race this async test N times (with or without --race-runs; 0: never"
        " race it)",
    )
    runs: int | None = _setting(config, "race_runs", _whole(1, "race_runs = 50"), None)
    seed: int | None = config.getoption("race_seed")
    replay: Schedule | None = config.getoption("race_replay")
    mode: str = _setting(config, "race_mode", _choice(MODES), "controlled")
    strategy: str = _setting(config, "race_strategy", _choice(LOOP_STRATEGIES), "search")
    base_seed: int = _setting(config, "race_base_seed", _whole(0, "race_base_seed = 7"), 0)
    max_delay: float = _setting(config, "race_max_delay", _max_delay, DEFAULT_MAX_DELAY)
    keep_going = config.getoption("race_keep_going")
    if keep_going is None:
        keep_going = bool(config.getini("race_keep_going"))
    given = [
        flag
        for flag, value in (
            ("--race-runs", config.getoption("race_runs")),
            ("--race-seed", seed),
            ("--race-replay", replay),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise pytest.UsageError(
            f"racetape: {' and '.join(given)} are exclusive: --race-runs races, --race-replay"
            " and --race-seed replay one printed run; keep one of them"
        )
    if seed is not None or replay is not None:
        runs = None  # a replay runs each selected test once, whatever the ini file's race_runs
    if seed is not None and mode != "jitter":
        raise pytest.UsageError(
            "racetape: --race-seed replays a jitter run; a controlled run replays by its"
            " schedule: use the --race-replay SCHEDULE it printed, or add --race-mode jitter"
        )
    if replay is not None and mode != "controlled":
        raise pytest.UsageError(
            "racetape: --race-replay replays a controlled run; drop --race-mode jitter"
        )
    replaying = seed is not None or replay is not None

    json_path: Path | None = config.getoption("race_json")

    def start(marked_only: bool, *, register: bool = True) -> RaceSession:
        """The session, registered: at once for flags and ini, else at the first marked test
        (or, unregistered, at the end of a session that raced nothing, for --race-json)."""
        driver: _Driver
        if mode == "controlled":
            driver = _Controlled(
                config,
                strategy=strategy,
                base_seed=base_seed,
                replay=replay,
                stop_at_first=not keep_going,
            )
        else:
            driver = _Jitter(
                config,
                base_seed=base_seed,
                max_delay=max_delay,
                stop_at_first=config.getoption("race_stop_at_first"),
            )
        session = RaceSession(
            config,
            runs=None if replaying else (runs or 0),
            replaying=replaying,
            driver=driver,
            warn_unused=runs is not None and not marked_only,
            json_path=json_path,
            settings={"mode": mode, "strategy": strategy, "base_seed": base_seed},
        )
        if register:
            config.pluginmanager.register(session, PLUGIN_NAME)
        return session

    if runs is None and not replaying:
        # Off until a test asks for races with the marker: then on, before pytest-asyncio
        # parametrizes that test's loop (see _MarkerSwitch).
        config.pluginmanager.register(_MarkerSwitch(start), SWITCH_NAME)
        return
    _need_loop_factories(config)
    start(False)


def _need_loop_factories(config: pytest.Config) -> None:
    if not hasattr(config.hook, "pytest_asyncio_loop_factories"):
        raise pytest.UsageError(
            "racetape: race runs (--race-runs, race_runs, @pytest.mark.race, --race-replay,"
            " --race-seed) need pytest-asyncio>=1.4 (its pytest_asyncio_loop_factories hook):"
            " pip install 'pytest-asyncio>=1.4'"
        )


class _MarkerSwitch:
    """Turns the plugin on at the first async test marked ``@pytest.mark.race(runs=N)``, N > 0,
    when no flag or ini option did. It runs first among the ``pytest_generate_tests`` hooks, so
    pytest-asyncio, later in the same call, already sees racetape's loop factory for that test;
    the race runs themselves are parametrized last (the module's own hook). Async tests
    collected before the first marked one run on pytest-asyncio's loop as without racetape;
    those after it on asyncio's loop through racetape's factory."""

    def __init__(self, start: Callable[..., RaceSession]) -> None:
        self.start = start
        self.session: RaceSession | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if self.session is not None:
            return
        test = metafunc.definition
        if not _is_asyncio_test(test, before_marking=True) or _runs_marked(test, 0) == 0:
            return
        _need_loop_factories(metafunc.config)
        self.session = self.start(True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # xdist's controller collects nothing: it first hears of a marked test here.
        if self.session is not None:
            return
        if any(name == "racetape_test" for name, _ in report.user_properties):
            self.session = self.start(True)
            self.session.pytest_runtest_logreport(report)  # not among this call's hooks

    def pytest_sessionfinish(self) -> None:
        if self.session is None:
            self.start(True, register=False).write_json()  # --race-json: nothing was raced


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The race runs' parameter, last of all, so it is the last in each node id (_test_of)."""
    session = metafunc.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(session, RaceSession):
        session.parametrize(metafunc)


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
    """One raced run of one test."""

    test: str  # the test's node id without the run's parameter: what a replay selects
    index: int | None  # None for a replay
    seed: int  # jitter: the perturbation's seed; controlled: the seed of the test's search


@dataclass(frozen=True)
class Failure:
    """What the report of one failed run says."""

    lines: list[str]  # the report's racetape section
    command: str  # replays the run
    label: str  # names the run among the test's failing runs: its seed or its schedule
    kind: str  # "seed" or "schedule"


RUN_KEY = pytest.StashKey[RaceRun]()
PERTURBATION_KEY = pytest.StashKey[Perturbation]()
LOOP_KEY = pytest.StashKey["ControlledLoop"]()
STRATEGY_KEY = pytest.StashKey["Strategy"]()


def _node_words(config: pytest.Config, test: str) -> str:
    """The node id as typed from where pytest was started."""
    path, sep, rest = test.partition("::")
    where = os.path.relpath(config.rootpath / path, config.invocation_params.dir)
    return f"{where}{sep}{rest}"


class _Driver(Protocol):
    """What one mode does around a raced run (the session does the collection and the tally)."""

    def new_loop(self) -> asyncio.AbstractEventLoop: ...

    def seed(self, test: str, index: int) -> int:
        """The seed run ``index`` of ``test`` gets (or its search, controlled)."""
        ...

    def begin(self, item: pytest.Item, run: RaceRun | None) -> None:
        """Before the run's setup; may skip it (``pytest.skip``)."""

    def end(self, item: pytest.Item, run: RaceRun) -> None:
        """After the run's teardown."""

    def failure(self, item: pytest.Item, run: RaceRun) -> Failure:
        """The report's lines for a failed run, the command that replays it, and what names
        the run in a list of failing runs (its seed, or its schedule)."""
        ...

    def notes(self, item: pytest.Item) -> tuple[set[str], str]:
        """After the call: what the run could not control, and what its search covered."""
        ...

    def summary(self, tallies: Mapping[str, Tally]) -> list[str]: ...


class _Jitter:
    """Seeded perturbation with real OS scheduling (:mod:`racetape._engine.perturb`)."""

    def __init__(
        self, config: pytest.Config, *, base_seed: int, max_delay: float, stop_at_first: bool
    ) -> None:
        self.config = config
        self.base_seed = base_seed
        self.max_delay = max_delay
        self.stop_at_first = stop_at_first
        self.failed: dict[str, str] = {}  # test -> the replay command of its first failure
        self.active: Perturbation | None = None
        self.loops: weakref.WeakSet[PerturbingEventLoop] = weakref.WeakSet()

    def seed(self, test: str, index: int) -> int:
        return derive_seed(self.base_seed, test, index)

    def new_loop(self) -> PerturbingEventLoop:
        loop = PerturbingEventLoop(self.active)
        self.loops.add(loop)
        return loop

    def _activate(self, perturbation: Perturbation | None) -> None:
        # Loops of a wider scope than the test outlive it: each test's runs get its own.
        self.active = perturbation
        for loop in list(self.loops):
            if not loop.is_closed():
                loop.perturbation = perturbation

    def begin(self, item: pytest.Item, run: RaceRun | None) -> None:
        if run is None:
            self._activate(None)
            return
        if self.stop_at_first and run.index is not None and run.test in self.failed:
            pytest.skip(f"racetape: an earlier run failed; {self.failed[run.test]}")
        perturbation = Perturbation(run.seed, max_delay=self.max_delay)
        item.stash[PERTURBATION_KEY] = perturbation
        self._activate(perturbation)

    def end(self, item: pytest.Item, run: RaceRun) -> None:
        self._activate(None)

    def failure(self, item: pytest.Item, run: RaceRun) -> Failure:
        which = "a replay" if run.index is None else f"run {run.index}"
        command = self.replay_command(run.test, run.seed)
        self.failed.setdefault(run.test, command)
        lines = [f"{which} of {run.test}, seed {run.seed}; replay it with:", f"  {command}"]
        perturbation = item.stash.get(PERTURBATION_KEY, None)
        if perturbation is not None:
            lines.append(f"perturbation: {perturbation.summary()}")
        # JITTER_NOTE is said once, in the summary.
        return Failure(lines, command, str(run.seed), "seed")

    def notes(self, item: pytest.Item) -> tuple[set[str], str]:
        return set(), ""  # nothing is controlled, so nothing is said to be uncontrolled

    def replay_command(self, test: str, seed: int) -> str:
        """The command that replays ``seed`` on ``test``, from where pytest was started."""
        words = ["pytest", "--race-mode", "jitter", "--race-seed", str(seed)]
        if self.max_delay != DEFAULT_MAX_DELAY:
            words += ["--race-max-delay", repr(self.max_delay)]
        return shlex.join([*words, _node_words(self.config, test)])

    def summary(self, tallies: Mapping[str, Tally]) -> list[str]:
        from rich.table import Table
        from rich.text import Text

        from racetape._stats import interval, upper_bound

        table = Table(box=None, pad_edge=False)
        table.add_column("test", no_wrap=True)
        for column in ("runs", "failed", "rate", "95% interval", "95% upper bound"):
            table.add_column(column, justify="right")
        for test, tally in _by_failures(tallies):
            n, k = len(tally.runs), len(tally.failed)
            low, high = interval(k, n)
            table.add_row(
                Text(test),
                str(n),
                str(k),
                f"{k / n:.0%}" if n else "-",
                f"{low:.0%}-{high:.0%}",
                f"{upper_bound(k, n):.1%}",
            )
        lines = _render(self.config, table, tallies) + _replay_lines(tallies)
        return [*lines, f"note: {JITTER_NOTE}"]


class _Controlled:
    """Runs on :class:`ControlledLoop`, each test's runs served by one search."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        strategy: str,
        base_seed: int,
        replay: Schedule | None,
        stop_at_first: bool,
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.base_seed = base_seed
        self.replay = replay
        self.stop_at_first = stop_at_first
        self.searches: dict[str, Search] = {}
        self.failed: dict[str, str] = {}  # test -> the replay command of its first failure
        self.active: Strategy | None = None
        self.loops: weakref.WeakSet[ControlledLoop] = weakref.WeakSet()
        self.item: pytest.Item | None = None

    def seed(self, test: str, index: int) -> int:
        return derive_seed(self.base_seed, test, self.strategy)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        if self.active is None:  # a test that is not raced: asyncio's own loop
            return asyncio.SelectorEventLoop()
        loop = ControlledLoop(self.active)
        self.loops.add(loop)
        if self.item is not None:
            self.item.stash[LOOP_KEY] = loop
        return loop

    def _activate(self, strategy: Strategy | None, item: pytest.Item | None) -> None:
        self.active, self.item = strategy, item
        for loop in list(self.loops):  # a loop of a wider scope serves this run too
            if not loop.is_closed() and strategy is not None and item is not None:
                loop.strategy = strategy
                loop.execution = Execution()
                item.stash[LOOP_KEY] = loop

    def begin(self, item: pytest.Item, run: RaceRun | None) -> None:
        if run is None:
            self._activate(None, None)
            return
        strategy: Strategy | None
        if run.index is None:
            strategy = Deviations(self.replay or ())
        else:
            if self.stop_at_first and run.test in self.failed:
                pytest.skip(f"racetape: an earlier run failed; {self.failed[run.test]}")
            search = self.searches.get(run.test)
            if search is None:
                search = self.searches[run.test] = search_named(self.strategy, run.seed)
            strategy = search.next_strategy()
            if strategy is None:
                pytest.skip(f"racetape: nothing left to try: {search.covered()}")
            item.stash[STRATEGY_KEY] = strategy
        self._activate(strategy, item)

    def end(self, item: pytest.Item, run: RaceRun) -> None:
        strategy = item.stash.get(STRATEGY_KEY, None)
        search = self.searches.get(run.test)
        if strategy is not None and search is not None:
            search.ran(strategy)
        self._activate(None, None)

    def replay_command(self, test: str, schedule: Schedule) -> str:
        words = ["pytest", "--race-replay", format_schedule(schedule)]
        return shlex.join([*words, _node_words(self.config, test)])

    def failure(self, item: pytest.Item, run: RaceRun) -> Failure:
        loop = item.stash.get(LOOP_KEY, None)
        execution = loop.execution if loop is not None else Execution()
        schedule = schedule_of(execution.decisions)
        command = self.replay_command(run.test, schedule)
        self.failed.setdefault(run.test, command)
        which = "a replay" if run.index is None else f"run {run.index}"
        lines = [
            f"{which} of {run.test} failed under controlled schedule"
            f" {format_schedule(schedule)}; replay it, exactly, with:",
            f"  {command}",
        ]
        lines += _deviation_lines(execution.deviations)
        lines.append(f"coverage: {execution.coverage()}")
        if execution.partly_uncontrolled:
            lines.append(
                "note: part of this run was not under racetape's control (see coverage): its"
                " replay may differ there"
            )
        return Failure(lines, command, format_schedule(schedule), "schedule")

    def notes(self, item: pytest.Item) -> tuple[set[str], str]:
        loop = item.stash.get(LOOP_KEY, None)
        notes = set(loop.execution.uncontrolled) if loop is not None else set()
        run = item.stash.get(RUN_KEY, None)
        search = self.searches.get(run.test) if run is not None else None
        return notes, search.covered() if search is not None else ""

    def summary(self, tallies: Mapping[str, Tally]) -> list[str]:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False)
        table.add_column("test", no_wrap=True)
        for column in ("runs", "failed"):
            table.add_column(column, justify="right")
        table.add_column(f"what the {self.strategy} covered")
        for test, tally in _by_failures(tallies):
            covered = tally.verdict
            if tally.notes:
                covered += "; partly uncontrolled: " + ", ".join(sorted(tally.notes))
            table.add_row(Text(test), str(len(tally.runs)), str(len(tally.failed)), covered)
        return _render(self.config, table, tallies) + _replay_lines(tallies)


def _replay_lines(tallies: Mapping[str, Tally]) -> list[str]:
    """For each failing test: the command that replays its first failing run, and its other
    failing runs' seeds or schedules on one line."""
    lines: list[str] = []
    for test, tally in _by_failures(tallies):
        if not tally.failed:
            continue
        lines.append(f"replay: {next(iter(tally.failed.values()))}")
        others = Counter(list(tally.labels.values())[1:])  # in order of first failure
        if others:
            listed = ", ".join(f"{o} ({n} runs)" if n > 1 else o for o, n in others.items())
            lines.append(f"  other failing {tally.kind}s of {test}: {listed}")
    return lines


def _deviation_lines(deviations: list[Decision]) -> list[str]:
    if not deviations:
        return ["it fails with no deviation from first come, first served"]
    lines = ["the decisions that deviate from first come, first served:"]
    for d in deviations:
        ahead = "the loop's own next step" if d.enabled[0] == LOOP else d.enabled[0]
        lines.append(f"  decision {d.step}: {d.actor} {d.detail}, ahead of {ahead}")
    return lines


def _by_failures(tallies: Mapping[str, Tally]) -> list[tuple[str, Tally]]:
    return sorted(tallies.items(), key=lambda kv: (-len(kv[1].failed), kv[0]))


def _render(config: pytest.Config, table: Any, tallies: Mapping[str, Tally]) -> list[str]:
    from rich.console import Console

    buffer = io.StringIO()
    # Wide enough that a node id is never cut: it is what a reader copies.
    longest = max(len(test) for test in tallies)
    width = max(config.get_terminal_writer().fullwidth, longest + 90)
    Console(file=buffer, width=width, no_color=True, highlight=False).print(table)
    return [line.rstrip() for line in buffer.getvalue().rstrip().splitlines()]


def _is_asyncio_test(item: pytest.Item, *, before_marking: bool = False) -> bool:
    """A test pytest-asyncio runs: marked asyncio (auto mode marks every async test at
    collection, in its pytest_generate_tests: ``before_marking``, earlier, counts auto mode as
    a mark), and a coroutine function, or a Hypothesis test around one."""
    if item.get_closest_marker("asyncio") is None:
        config = item.config
        mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
        if not (before_marking and mode == "auto"):
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
        replaying: bool,
        driver: _Driver,
        warn_unused: bool = False,
        json_path: Path | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """``runs``: every async test's runs (a marker overrides it; 0: only marked tests are
        raced), None while replaying; ``warn_unused``: warn when no test is raced."""
        self.config = config
        self.runs = runs
        self.warn_unused = warn_unused
        self.replaying = replaying
        self.driver = driver
        self.tallies: dict[str, Tally] = {}
        self.first_failures: dict[str, str] = {}  # test -> the node id of its first failed run
        self.json_path = json_path
        self.settings = dict(settings or {})

    # -- the loop --------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, optionalhook=True)
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Generator[None, Mapping[str, Any] | None, Mapping[str, Any]]:
        others = yield
        if others:
            raise pytest.UsageError(
                f"racetape: another plugin sets pytest_asyncio_loop_factories"
                f" ({', '.join(others)}); racetape's race runs provide the loop themselves:"
                " run without one of them"
            )
        return {"racetape": self.driver.new_loop}

    # -- collection ------------------------------------------------------------------------------

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        """Called by the module's pytest_generate_tests, which runs last."""
        if self.runs is None or not _is_asyncio_test(metafunc.definition):
            return
        runs = _runs_marked(metafunc.definition, self.runs)
        if runs == 0:
            return
        metafunc.fixturenames.append(RUN_PARAM)
        metafunc.parametrize(RUN_PARAM, range(runs), ids=[f"race{i}" for i in range(runs)])

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        raced = 0
        for item in items:
            callspec = getattr(item, "callspec", None)
            index = callspec.params.get(RUN_PARAM) if callspec is not None else None
            if isinstance(index, int):
                test = _test_of(item.nodeid, index)
                run = RaceRun(test, index, self.driver.seed(test, index))
            elif self.replaying and _is_asyncio_test(item) and _runs_marked(item, 1) > 0:
                seed = self.config.getoption("race_seed")
                run = RaceRun(item.nodeid, None, seed if seed is not None else 0)
            else:
                continue
            item.stash[RUN_KEY] = run
            raced += 1
            # On the report, so the summary (and junitxml, and xdist's controller) can see them.
            item.user_properties += [
                ("racetape_test", run.test),
                ("racetape_seed", run.seed),
                ("racetape_run", run.index if run.index is not None else 0),
            ]
        if self.warn_unused and not raced:
            warnings.warn(
                pytest.PytestWarning(
                    f"racetape: race runs ({self.runs}) were asked for, but no collected test is"
                    " an async test that pytest-asyncio runs: nothing was raced (strict mode"
                    " needs @pytest.mark.asyncio; a sync test is never raced)"
                ),
                stacklevel=1,
            )

    # -- running ---------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.driver.begin(item, item.stash.get(RUN_KEY, None))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            run = item.stash.get(RUN_KEY, None)
            if run is not None:
                self.driver.end(item, run)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        run = item.stash.get(RUN_KEY, None)
        if run is None:
            return report
        if report.failed:
            failure = self.driver.failure(item, run)
            first = self.first_failures.setdefault(run.test, item.nodeid)
            if first == item.nodeid:
                report.sections.append(("racetape", "\n".join(failure.lines)))
            else:
                # One traceback and one report per test: its first failing run's.
                report.longrepr = (
                    f"racetape: failed too ({failure.kind} {failure.label}); {first} is this"
                    " test's first failing run: its traceback and report are above"
                )
            report.user_properties += [
                ("racetape_report", failure.lines),
                ("racetape_replay", failure.command),
                ("racetape_label", failure.label),
                ("racetape_kind", failure.kind),
            ]
        if report.when == "call":
            uncontrolled, verdict = self.driver.notes(item)
            report.user_properties += [
                ("racetape_uncontrolled", sorted(uncontrolled)),
                ("racetape_verdict", verdict),
            ]
        return report

    # -- the summary -----------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        test = props.get("racetape_test")
        if not isinstance(test, str):
            return
        tally = self.tallies.setdefault(test, Tally())
        if report.when == "call" or report.failed:
            number = props.get("racetape_run")
            tally.runs[report.nodeid] = number if isinstance(number, int) else 0
        if report.when == "call":
            tally.elapsed += report.duration
        if report.failed:
            lines = props.get("racetape_report")
            if isinstance(lines, list):
                tally.reports.setdefault(report.nodeid, [str(line) for line in lines])
            command = props.get("racetape_replay")
            tally.failed.setdefault(report.nodeid, command if isinstance(command, str) else "?")
            label, kind = props.get("racetape_label"), props.get("racetape_kind")
            tally.labels.setdefault(report.nodeid, label if isinstance(label, str) else "?")
            tally.kind = kind if isinstance(kind, str) else tally.kind
        uncontrolled = props.get("racetape_uncontrolled")
        if isinstance(uncontrolled, list):
            tally.notes.update(str(u) for u in uncontrolled)
        verdict = props.get("racetape_verdict")
        if isinstance(verdict, str) and verdict:
            tally.verdict = verdict

    def pytest_sessionfinish(self) -> None:
        self.write_json()

    def write_json(self) -> None:
        """--race-json: the session's document, written by xdist's controller (which hears
        every worker's reports), never by a worker; an unwritable path is one line on stderr."""
        if self.json_path is None or hasattr(self.config, "workerinput"):
            return
        from racetape._result import result_document, write_json_atomic

        mode = self.settings.get("mode", "controlled")
        notes = sorted({note for tally in self.tallies.values() for note in tally.notes})
        doc = result_document(
            self.tallies,
            command=shlex.join(["pytest", *self.config.invocation_params.args]),
            mode=mode,
            strategy="jitter" if mode == "jitter" else self.settings.get("strategy", "search"),
            runs=self.runs,
            base_seed=self.settings.get("base_seed", 0),
            max_delay=getattr(self.driver, "max_delay", None),
            notes=[*(f"uncontrolled: {n}" for n in notes), *([JITTER_NOTE] * (mode == "jitter"))],
        )
        try:
            write_json_atomic(self.json_path, doc)
        except OSError as exc:
            self.config.get_terminal_writer().line(
                f"racetape: --race-json {self.json_path}: cannot write: {exc.strerror or exc}",
                red=True,
            )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.tallies:
            terminalreporter.write_sep("=", "racetape race runs")
            for line in self.driver.summary(self.tallies):
                terminalreporter.write_line(line)
        if self.json_path is not None and not hasattr(self.config, "workerinput"):
            terminalreporter.write_line(f"racetape: race runs written to {self.json_path}")
