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
* Traces: a failing controlled run (the first few per test) writes a ``racetape.pytest-trace/1``
  into a folder of its session's under ``--race-traces DIR`` (ini ``race_traces``, default
  ``.racetape/traces`` under the rootdir; see :mod:`racetape._traces`), and its report names it
  with ``racetape replay NODEID`` (:mod:`racetape._pytest_cli`). ``--race-replay TRACE`` runs
  the trace's test alone under its schedule; ``--race-shrink TRACE`` runs it under the
  proposals of a :class:`~racetape._shrink.ScheduleShrinker`, one per race run, and writes the
  smallest schedule that fails the same way beside the trace; ``--race-progress`` writes a
  JSON line per run on stderr for the commands' bars.
* ``--race-mode jitter``: each run runs on a :class:`PerturbingEventLoop` with the seeded
  perturbation of ``derive_seed(B, nodeid, i)`` (``B``: ``--race-base-seed``, default 0); real
  OS scheduling, so ``--race-seed S`` repeats the perturbation, not the interleaving.
* ``@pytest.mark.race(runs=N)``: this test's number of runs, with or without ``--race-runs``
  (0: never raced); without a flag, the plugin turns on at the first marked test collected.
* ini options (``[pytest]``): ``race_runs``, ``race_mode``, ``race_strategy``,
  ``race_base_seed``, ``race_max_delay``, ``race_keep_going``; the flag wins over the ini file,
  and a replay or a shrink over race runs from the ini file or ``addopts`` (``--race-runs``
  typed beside one is an error).
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
import datetime
import inspect
import io
import json
import os
import shlex
import sys
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
from racetape._result import Tally, write_json_atomic
from racetape._shrink import DEFAULT_MAX_RUNS, ScheduleShrinker
from racetape._traces import (
    DEFAULT_ROOT,
    SHRUNK_SUFFIX,
    PytestTrace,
    SessionTraces,
    TraceError,
    load_trace,
    session_name,
    trace_document,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from racetape._race_scheduler import RaceScheduler

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


def _schedule(text: str) -> Schedule | PytestTrace:
    """A schedule as a failure printed it, or the path of a trace the plugin wrote."""
    try:
        return parse_schedule(text)
    except ScheduleError as exc:
        if not (text.endswith(".json") or os.sep in text or Path(text).exists()):
            raise argparse.ArgumentTypeError(f"{exc}, or a trace's path") from None
    return _trace(text)


def _trace(text: str) -> PytestTrace:
    try:
        return load_trace(Path(text))
    except TraceError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc} (a trace a failing run wrote under --race-traces)"
        ) from None


def _folder(text: str) -> Path:
    path = Path(text)
    if not text.strip() or (path.exists() and not path.is_dir()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a folder; e.g. --race-traces .racetape/traces"
        )
    return path


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
        " failure printed (e.g. 3.1 or 3.1-7.2; fifo for none), or the schedule of a trace"
        " (TRACE.json: then only its test runs; racetape replay NODEID finds it)",
    )
    group.addoption(
        "--race-shrink",
        type=_trace,
        metavar="TRACE",
        help="shrink a trace's failing run: run its test under fewer and smaller deviations"
        " until none can go, and write TRACE's .shrunk.json beside it (racetape shrink NODEID"
        " runs this)",
    )
    group.addoption(
        "--race-traces",
        type=_folder,
        metavar="DIR",
        help="where failing controlled runs write their traces, a folder per session (default"
        f" {DEFAULT_ROOT} under the rootdir; ini: race_traces)",
    )
    group.addoption(
        "--race-progress",
        action="store_true",
        help="one line on stderr per raced run ('racetape-progress: ...'), for racetape shrink"
        " and replay's bars",
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
    for name in (*INI_OPTIONS, "race_traces"):
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


def _typed(config: pytest.Config, flag: str) -> bool:
    """Whether ``flag`` is on the command line itself (not from addopts or PYTEST_ADDOPTS)."""
    return any(arg == flag or arg.startswith(flag + "=") for arg in config.invocation_params.args)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "race(runs=N): race this async test N times (with or without --race-runs; 0: never"
        " race it)",
    )
    runs: int | None = _setting(config, "race_runs", _whole(1, "race_runs = 50"), None)
    seed: int | None = config.getoption("race_seed")
    replay_given: Schedule | PytestTrace | None = config.getoption("race_replay")
    shrink: PytestTrace | None = config.getoption("race_shrink")
    mode: str = _setting(config, "race_mode", _choice(MODES), "controlled")
    strategy: str = _setting(config, "race_strategy", _choice(LOOP_STRATEGIES), "search")
    base_seed: int = _setting(config, "race_base_seed", _whole(0, "race_base_seed = 7"), 0)
    max_delay: float = _setting(config, "race_max_delay", _max_delay, DEFAULT_MAX_DELAY)
    keep_going = config.getoption("race_keep_going")
    if keep_going is None:
        keep_going = bool(config.getini("race_keep_going"))
    # A replay or a shrink wins over race runs from the ini file or addopts (the project's
    # defaults); --race-runs typed beside it is a mistake to say.
    typed_runs = config.getoption("race_runs") if _typed(config, "--race-runs") else None
    given = [
        flag
        for flag, value in (
            ("--race-runs", typed_runs),
            ("--race-seed", seed),
            ("--race-replay", replay_given),
            ("--race-shrink", shrink),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise pytest.UsageError(
            f"racetape: {' and '.join(given)} are exclusive: --race-runs races, --race-replay"
            " and --race-seed replay one printed run, --race-shrink shrinks one; keep one of"
            " them"
        )
    # A trace names its test: a replay of it (or its shrink) runs that test alone.
    only = shrink if shrink is not None else None
    replay: Schedule | None
    if isinstance(replay_given, PytestTrace):
        only, replay = replay_given, replay_given.schedule
    else:
        replay = replay_given
    if seed is not None or replay is not None:
        runs = None  # a replay runs each selected test once, whatever the ini file's race_runs
    if shrink is not None:
        runs = DEFAULT_MAX_RUNS + 1  # the shrink's runs, then one strict run of its result
    if seed is not None and mode != "jitter":
        raise pytest.UsageError(
            "racetape: --race-seed replays a jitter run; a controlled run replays by its"
            " schedule: use the --race-replay SCHEDULE it printed, or add --race-mode jitter"
        )
    if (replay is not None or shrink is not None) and mode != "controlled":
        raise pytest.UsageError(
            f"racetape: {given[0]} replays a controlled run; drop --race-mode jitter"
        )
    replaying = seed is not None or replay is not None

    json_path: Path | None = config.getoption("race_json")
    traces = _session_traces(config)
    config.stash[TRACES_KEY] = traces

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
                traces=traces,
                shrink=shrink,
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
            warn_unused=runs is not None and not marked_only and shrink is None,
            json_path=json_path,
            settings={"mode": mode, "strategy": strategy, "base_seed": base_seed},
            only=only,
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


TRACES_KEY = pytest.StashKey["SessionTraces"]()
WORKER_TRACES = "racetape_traces"  # xdist's workerinput key: the controller's session folder


def _session_traces(config: pytest.Config) -> SessionTraces:
    """This session's traces folder: under --race-traces (as typed, from where pytest was
    started), ini race_traces (from the rootdir), or the default; named by the controller, so
    xdist's workers write into the same folder."""
    flag: Path | None = config.getoption("race_traces")
    if flag is not None:
        root = config.invocation_params.dir / flag
    else:
        raw = config.getini("race_traces")
        text = raw.strip() if isinstance(raw, str) else ""
        root = config.rootpath / (text or DEFAULT_ROOT)
    workerinput = getattr(config, "workerinput", None)
    name = workerinput.get(WORKER_TRACES) if isinstance(workerinput, dict) else None
    if not isinstance(name, str):
        name = session_name(datetime.datetime.now(datetime.UTC), os.getpid())
    return SessionTraces(root, name)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller, for each worker: the session's traces folder."""
    traces = node.config.stash.get(TRACES_KEY, None)
    if traces is not None:
        node.workerinput[WORKER_TRACES] = traces.folder.name


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
def race_scheduler() -> RaceScheduler:
    """Runs a coroutine under racetape's controlled scheduler: ``await
    race_scheduler.run(main(), strategy="random", seed=3)`` returns the Schedule (decisions by
    actor name, outcome); see :mod:`racetape._race_scheduler`."""
    from racetape._race_scheduler import RaceScheduler

    return RaceScheduler()


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
ERROR_KEY = pytest.StashKey[tuple[str, str]]()  # a run's first failure: phase, "Type: message"


def _shown(path: Path, where: Path) -> str:
    """``path`` as a reader in ``where`` types it: relative below it, else absolute."""
    return str(path.relative_to(where)) if path.is_relative_to(where) else str(path)


def _error_of(call: pytest.CallInfo[None]) -> str:
    """``Type: the message's first line`` (what a shrink and a replay compare by its type)."""
    if call.excinfo is None:
        return "Failed: no exception"
    lines = str(call.excinfo.value).strip().splitlines()
    return f"{call.excinfo.typename}: {lines[0] if lines else ''}".rstrip(": ")


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

    def trace(self, item: pytest.Item, run: RaceRun, error: tuple[str, str]) -> Path | None:
        """Write the trace of a failed run (``error``: the phase, and ``Type: message``) if it
        is one this mode writes; its path."""
        ...

    def ended(self, item: pytest.Item, run: RaceRun, error: tuple[str, str] | None) -> None:
        """After a run's last report, with its first failure (None: it passed)."""

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

    def trace(self, item: pytest.Item, run: RaceRun, error: tuple[str, str]) -> Path | None:
        return None  # a jitter run replays by its seed, printed; it has no decisions to shrink

    def ended(self, item: pytest.Item, run: RaceRun, error: tuple[str, str] | None) -> None:
        pass

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
        traces: SessionTraces | None = None,
        shrink: PytestTrace | None = None,
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.base_seed = base_seed
        self.replay = replay
        self.stop_at_first = stop_at_first
        self.traces = traces
        self.shrink = _Shrink(shrink) if shrink is not None else None
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
        elif self.shrink is not None:
            strategy = self.shrink.begin(item)
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

    def trace(self, item: pytest.Item, run: RaceRun, error: tuple[str, str]) -> Path | None:
        """Write the trace of a failed run (its first few per test, and never a shrink's
        attempts: the shrink writes its result itself); its path, or None."""
        if self.traces is None or self.shrink is not None or not self.traces.wants(run.test):
            return None
        loop = item.stash.get(LOOP_KEY, None)
        search = self.searches.get(run.test)
        doc = trace_document(
            nodeid=run.test,
            decisions=loop.execution.decisions if loop is not None else [],
            strategy="replay" if run.index is None else self.strategy,
            seed=run.seed,
            run=run.index,
            error=error[1],
            when=error[0],
            invocation_dir=self.config.invocation_params.dir,
            rootdir=self.config.rootpath,
        )
        if search is not None:
            doc["covered"] = search.covered()
        try:
            return self.traces.write(doc)
        except OSError as exc:
            self.config.get_terminal_writer().line(
                f"racetape: --race-traces {self.traces.root}: cannot write a trace:"
                f" {exc.strerror or exc}",
                red=True,
            )
            return None

    def ended(self, item: pytest.Item, run: RaceRun, error: tuple[str, str] | None) -> None:
        """After a run's last report: a shrink learns whether it failed the same way."""
        if self.shrink is not None and run.index is not None:
            loop = item.stash.get(LOOP_KEY, None)
            decisions = list(loop.execution.decisions) if loop is not None else []
            self.shrink.ended(item, decisions, error, self.config)

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
        if self.shrink is not None:  # the attempts' failures are the shrink's business
            return self.shrink.lines(self.config.invocation_params.dir)
        return _render(self.config, table, tallies) + _replay_lines(tallies)


SHRINK_KEY = pytest.StashKey[str]()


def progress(config: pytest.Config, data: Mapping[str, Any]) -> None:
    """--race-progress: one JSON line on stderr (racetape shrink and replay draw their bars
    from these); a line at a time, flushed, so a reader sees each as it happens."""
    if config.getoption("race_progress", False):
        print(f"{PROGRESS_PREFIX}{json.dumps(dict(data))}", file=sys.stderr, flush=True)


PROGRESS_PREFIX = "racetape-progress: "


class _Shrink:
    """--race-shrink TRACE: the trace's test runs one proposal of a
    :class:`~racetape._shrink.ScheduleShrinker` per race run (leniently), then the smallest
    schedule once strictly; if that fails as the trace did, it is written beside the trace
    (``NAME.shrunk.json``). The same way: the same phase, the same exception type."""

    def __init__(self, trace: PytestTrace) -> None:
        self.trace = trace
        self.shrinker = ScheduleShrinker(trace.schedule)
        self.confirmed: bool | None = None  # the strict run of the result failed the same way
        self.path: Path | None = None
        self.problem = ""

    @property
    def finished(self) -> bool:
        return self.shrinker.next_schedule() is None and (
            self.confirmed is not None or not self.shrinker.reproduced
        )

    def begin(self, item: pytest.Item) -> Strategy:
        proposal = self.shrinker.next_schedule()
        if proposal is not None:
            item.stash[SHRINK_KEY] = "try"
            return Deviations(proposal, name="shrink", lenient=True)
        if self.shrinker.reproduced and self.confirmed is None:
            item.stash[SHRINK_KEY] = "confirm"
            return Deviations(self.shrinker.best)
        pytest.skip("racetape: the shrink is done")

    def ended(
        self,
        item: pytest.Item,
        decisions: list[Decision],
        error: tuple[str, str] | None,
        config: pytest.Config,
    ) -> None:
        phase = item.stash.get(SHRINK_KEY, None)
        same = error is not None and (error[0], error[1].partition(":")[0]) == (
            self.trace.when,
            self.trace.error_type,
        )
        took = schedule_of(decisions)
        if phase == "try":
            self.shrinker.tell(took if same else None)
        elif phase == "confirm":
            self.confirmed = same and took == self.shrinker.best
            if self.confirmed and error is not None:
                self.write(decisions, error, config)
            elif not self.confirmed:
                self.problem = (
                    f"the shrunk schedule {format_schedule(self.shrinker.best)} did not fail"
                    " the same way when replayed strictly (part of the run is uncontrolled?);"
                    " the trace is kept as it was"
                )
        else:
            return
        best = self.shrinker.best
        progress(
            config,
            {"shrink_runs": self.shrinker.runs + (phase == "confirm"),
             "max_runs": self.shrinker.max_runs + 1, "best": format_schedule(best),
             "deviations": len(best), "finished": self.finished},
        )  # fmt: skip
        if self.finished:
            progress(config, {"shrink": self.result()})

    def write(
        self, decisions: list[Decision], error: tuple[str, str], config: pytest.Config
    ) -> None:
        trace = self.trace
        doc = trace_document(
            nodeid=trace.nodeid,
            decisions=decisions,
            strategy="shrink",
            seed=trace.seed,
            run=None,
            error=error[1],
            when=error[0],
            invocation_dir=config.invocation_params.dir,  # where it was shrunk: the code here
            rootdir=config.rootpath,
            shrunk_from={
                "trace": str(trace.source),
                "schedule": trace.label,
                "deviations": len(trace.schedule),
                "runs": self.shrinker.runs + 1,
            },
        )
        name = trace.source.name.removesuffix(SHRUNK_SUFFIX).removesuffix(".json")
        path = trace.source.with_name(name + SHRUNK_SUFFIX)
        try:
            write_json_atomic(path, doc)
        except OSError as exc:
            self.problem = f"{path}: cannot write the shrunk trace: {exc.strerror or exc}"
            return
        self.path = path

    def result(self) -> dict[str, Any]:
        """What the shrink did, for racetape shrink (the last progress line)."""
        return {
            "trace": str(self.trace.source),
            "reproduced": bool(self.shrinker.reproduced),
            "from": self.trace.label,
            "to": format_schedule(self.shrinker.best),
            "runs": self.shrinker.runs + (self.confirmed is not None),
            "shrunk": str(self.path) if self.path is not None else None,
            "problem": self.problem,
        }

    def lines(self, where: Path) -> list[str]:
        trace, best = self.trace, self.shrinker.best
        if not self.shrinker.reproduced:
            return [
                f"racetape shrink: {trace.nodeid} did not fail as recorded ({trace.when}:"
                f" {trace.error_type}) under {trace.label}: nothing to shrink"
            ]
        if self.path is None:
            return [f"racetape shrink: {trace.nodeid}: {self.problem}"]
        return [
            f"racetape shrink: {trace.nodeid}: {trace.label} ({len(trace.schedule)} deviations)"
            f" -> {format_schedule(best)} ({len(best)}), in {self.result()['runs']} runs",
            f"shrunk trace: {_shown(self.path, where)}",
            f"replay it: {shlex.join(['racetape', 'replay', _shown(self.path, where)])}",
        ]


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


def _on_anyio(item: pytest.Item) -> bool:
    """A test anyio's pytest plugin runs (``@pytest.mark.anyio``): on a loop that plugin makes,
    which racetape cannot take, so it is never raced (see pytest_collection_modifyitems)."""
    return item.get_closest_marker("anyio") is not None


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
        only: PytestTrace | None = None,
    ) -> None:
        """``runs``: every async test's runs (a marker overrides it; 0: only marked tests are
        raced), None while replaying; ``warn_unused``: warn when no test is raced; ``only``:
        a trace, whose test alone runs (a replay or a shrink of it)."""
        self.only = only
        self.raced = 0  # race runs collected
        self.done = 0  # race runs ended
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
        if self.runs is None or _on_anyio(metafunc.definition):
            return
        if not _is_asyncio_test(metafunc.definition):
            return
        test = metafunc.definition.nodeid
        if self.only is not None and not (
            self.only.nodeid == test or self.only.nodeid.startswith(test + "[")
        ):
            return  # a shrink races its trace's test alone
        runs = self.runs if self.only is not None else _runs_marked(metafunc.definition, self.runs)
        if runs == 0:
            return
        metafunc.fixturenames.append(RUN_PARAM)
        metafunc.parametrize(RUN_PARAM, range(runs), ids=[f"race{i}" for i in range(runs)])

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if self.only is not None:
            self._keep_only(items, self.only)
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
            self.raced += 1
            # On the report, so the summary (and junitxml, and xdist's controller) can see them.
            item.user_properties += [
                ("racetape_test", run.test),
                ("racetape_seed", run.seed),
                ("racetape_run", run.index if run.index is not None else 0),
            ]
        on_anyio = [item.nodeid for item in items if _on_anyio(item)]
        if self.runs is not None and on_anyio:
            warnings.warn(
                pytest.PytestWarning(
                    f"racetape: {len(on_anyio)} test(s) run on anyio's loop (@pytest.mark.anyio;"
                    f" {on_anyio[0]}{', ...' if len(on_anyio) > 1 else ''}), which racetape"
                    " cannot take: each ran as anyio runs it, not raced; to race one, let"
                    " pytest-asyncio run it (@pytest.mark.asyncio, or asyncio_mode = auto"
                    " without the anyio mark)"
                ),
                stacklevel=1,
            )
        if self.warn_unused and not raced:
            warnings.warn(
                pytest.PytestWarning(
                    f"racetape: race runs ({self.runs}) were asked for, but no collected test is"
                    " an async test that pytest-asyncio runs: nothing was raced (strict mode"
                    " needs @pytest.mark.asyncio; a sync test is never raced)"
                ),
                stacklevel=1,
            )

    def _keep_only(self, items: list[pytest.Item], trace: PytestTrace) -> None:
        """Deselect every item but the trace's test (its race runs, for a shrink)."""
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            callspec = getattr(item, "callspec", None)
            index = callspec.params.get(RUN_PARAM) if callspec is not None else None
            test = _test_of(item.nodeid, index) if isinstance(index, int) else item.nodeid
            (keep if test == trace.nodeid else drop).append(item)
        if not keep:
            raise pytest.UsageError(
                f"racetape: {trace.source} is a trace of {trace.nodeid}, which is not among the"
                " selected tests; select it:"
                f" {shlex.join(['pytest', f'--race-replay={trace.source}', trace.node_words])}"
            )
        if drop:
            self.config.hook.pytest_deselected(items=drop)
            items[:] = keep

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
        error = item.stash.get(ERROR_KEY, None)
        if report.failed:
            failure = self.driver.failure(item, run)
            trace = None
            if error is None:  # the run's first failing phase: its trace
                error = item.stash[ERROR_KEY] = (report.when, _error_of(call))
                report.user_properties += [
                    ("racetape_error", error[1]),
                    ("racetape_when", error[0]),
                ]
                if self.only is None:  # a trace's replay is that trace's run again
                    trace = self.driver.trace(item, run, error)
            if trace is not None:
                words = _node_words(self.config, run.test)
                failure.lines.extend(
                    [
                        f"trace: {_shown(trace, self.config.invocation_params.dir)}",
                        f"  racetape replay {shlex.quote(words)}  (racetape shrink"
                        f" {shlex.quote(words)} shrinks it)",
                    ]
                )
                report.user_properties.append(("racetape_trace", str(trace)))
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
        if report.when == "teardown":  # every run ends with one, whatever failed before
            self.driver.ended(item, run, error)
            self.done += 1
            if self.only is None or self.replaying:
                progress(
                    self.config,
                    {"done": self.done, "total": self.raced, "failed": error is not None},
                )
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
            trace, error = props.get("racetape_trace"), props.get("racetape_error")
            if isinstance(trace, str):
                tally.traces.setdefault(report.nodeid, trace)
            if isinstance(error, str):
                tally.errors.setdefault(report.nodeid, error)
            when = props.get("racetape_when")
            if isinstance(when, str):
                tally.whens.setdefault(report.nodeid, when)
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
            base=self.json_path.parent,
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
