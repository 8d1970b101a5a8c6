"""``racetape replay`` and ``racetape shrink`` of a user's pytest test, by node id or trace.

A failing controlled run under the plugin writes a trace (:mod:`racetape._traces`). These
commands find a node id's newest trace (under ``--traces DIR``, else the project's ini
``race_traces``, else ``.racetape/traces`` under its rootdir: :mod:`racetape._project`; a node
id as typed from any folder of the project, or as pytest's FAILED line prints it, ``[raceN]``
and all) and run pytest on that one test in a process of its own, in *this* checkout (the
project found from the current folder, from the folder below its rootdir the traced session
started in), so the code replayed is the code here, and the user's conftest, fixtures and ini
file apply; the verdict says where it ran. Only a test not found from here runs where the trace
was recorded, and a note on stderr says so.

* ``replay``: ``pytest --race-replay=TRACE``: the recorded schedule, exactly; says whether the
  failure reproduced (the same phase and exception type). Exit 1 when the test fails (as
  recorded or otherwise), 0 when it passes (it did not reproduce: fixed, or partly
  uncontrolled), 2 for bad input or a pytest that could not run the test.
* ``shrink``: ``pytest --race-shrink=TRACE``: fewer and smaller deviations that still fail the
  same way (:mod:`racetape._shrink`); the result is written beside the trace
  (``NAME.shrunk.json``, which ``replay NODEID`` then prefers) with its replay command. Exit 0
  when shrunk, 1 when the failure did not reproduce, 2 for bad input.

``-q``: the verdict and errors only; ``-v``: pytest's own output (else shown only when pytest
could not run the test) and the command run, and one line per shrink run. Progress (runs/s,
time left) is drawn on stderr from the plugin's ``--race-progress`` lines. Arguments after
``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NoReturn

from racetape._progress import progress_bar
from racetape._project import Project, find_project
from racetape._shrink import DEFAULT_MAX_RUNS
from racetape._traces import (
    TRACE_SCHEMA,
    PytestTrace,
    TraceError,
    find_root,
    find_trace,
    load_trace,
)

PROGRESS_PREFIX = "racetape-progress: "  # the plugin's --race-progress lines (pytest_plugin)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"racetape {self.prog.split()[-1]}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser(command: str) -> _Parser:
    what = {
        "replay": "re-run a failing pytest test under its recorded schedule; say if it fails again",
        "shrink": "shrink a failing pytest run's schedule (fewer, smaller deviations); write it",
    }[command]
    parser = _Parser(prog=f"racetape {command}", description=what)
    parser.add_argument(
        "target",
        metavar="NODEID|TRACE",
        help="a test's node id as pytest prints it (its newest trace), or a trace's path",
    )
    parser.add_argument(
        "--traces",
        type=Path,
        metavar="DIR",
        help="the traces folder (default: the nearest .racetape/traces at or above here)",
    )
    if command == "shrink":
        parser.add_argument(
            "--out", type=Path, metavar="PATH", help="also write the shrunk trace here"
        )
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="only the verdict and errors")
    loud.add_argument(
        "-v", "--verbose", action="store_true", help="pytest's output, the command, every run"
    )
    parser.add_argument(
        "pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="passed on to pytest"
    )
    return parser


@dataclass(frozen=True)
class Target:
    """A trace, and where its test is run: ``where`` (the folder pytest starts in) and ``node``
    (the test's path as typed there); ``note``: why it is not this checkout's, or ""."""

    trace: PytestTrace
    where: Path
    node: str
    note: str = ""


# The race run's parameter as pytest prints a run's node id (the plugin's _test_of):
# test[race3], or test[x-race3] inside a parametrized id.
_RACE_RUN = re.compile(r"\[race\d+\]$|-race\d+(?=\]$)")


def _without_race_run(nodeid: str) -> str:
    return _RACE_RUN.sub("", nodeid)


def _traces_root(project: Project | None, cwd: Path) -> Path | None:
    """Where this project's traces are: its ini file's race_traces, else .racetape/traces under
    its rootdir, else (no project found) the nearest .racetape/traces at or above ``cwd``."""
    if project is not None and (project.configured_traces or project.traces_root.is_dir()):
        return project.traces_root
    return find_root(cwd)


def resolve(target: str, traces: Path | None, cwd: Path) -> Target:
    """The trace ``target`` names (a path, or a node id's newest trace) and where to run it;
    :class:`TraceError` with one line naming what is missing and the fix."""
    path = Path(target)
    if path.is_file() and path.suffix == ".py":
        raise TraceError(
            f"{target}: a test file, not a trace: give a test's node id"
            f" ({shlex.quote(target + '::test_name')}, as pytest's FAILED line prints it) or a"
            " trace's path"
        )
    if path.is_file():
        trace = load_trace(path)
        return _home(trace, find_project(cwd), cwd)
    if target.endswith(".json") and "::" not in target:
        raise TraceError(f"{target}: no such trace; give a trace's path or a test's node id")
    test_file = cwd / target.partition("::")[0]
    project = find_project(test_file.parent if test_file.is_file() else cwd)
    root = traces if traces is not None else _traces_root(project, cwd)
    if root is None:
        raise TraceError(
            f"{target}: no .racetape/traces at or above {cwd}: run the test under the plugin"
            f" first (pytest --race-runs 50 {shlex.quote(target)}), or give --traces DIR"
        )
    rootdir = project.rootdir if project is not None else None
    try:
        trace = find_trace(target, root, cwd=cwd, rootdir=rootdir)
    except TraceError:
        bare = _without_race_run(target)
        if bare == target:
            raise
        trace = find_trace(bare, root, cwd=cwd, rootdir=rootdir)
    return _home(trace, project, cwd)


def _home(trace: PytestTrace, project: Project | None, cwd: Path) -> Target:
    """Where to run ``trace``'s test: in this checkout (the project found from here, else the
    nearest folder above holding the test's file), from the folder below its rootdir the traced
    session started in; only where the test is not found from here, where it was recorded."""
    mine, sep, rest = trace.nodeid.partition("::")
    homes = [project.rootdir] if project is not None else []
    for home in [*homes, cwd, *cwd.parents]:
        if (home / mine).is_file():
            break
    else:
        recorded = Path(trace.invocation_dir)
        if not recorded.is_dir():
            raise TraceError(
                f"{trace.source}: {mine} is not found at or above {cwd}, and the folder the"
                f" trace was recorded in ({recorded}) is gone: run from the project's folder"
                f" (pytest --race-replay={trace.source} NODEID there)"
            )
        # This checkout's test (here, or a project nested in this one) that is gone runs here
        # all the same, with no note: pytest says it is gone.
        there = Path(trace.rootdir).resolve()
        elsewhere = not cwd.resolve().is_relative_to(there) and (
            project is None or not there.is_relative_to(project.rootdir.resolve())
        )
        note = (
            f"{mine} is not found at or above {cwd}: running the copy where the trace was"
            f" recorded, {recorded}"
        )
        return Target(trace, recorded, trace.node_words, note if elsewhere else "")
    below = os.path.relpath(trace.invocation_dir, trace.rootdir)
    where = home / below if not below.startswith("..") and (home / below).is_dir() else home
    node = os.path.relpath(home / mine, where) + sep + rest
    return Target(trace, where.resolve(), node)


@dataclass
class _Ran:
    code: int
    stdout: str
    other_stderr: list[str]
    last: dict[str, Any]  # the last progress line's data


def _pytest(
    target: Target,
    flags: Sequence[str],
    extra: Sequence[str],
    on_progress: Callable[[dict[str, Any]], None],
    *,
    node: str | None = None,
) -> _Ran:
    """pytest on the target's test, in its folder, reading --race-progress as it goes. A flag
    and its value are one word (``--race-replay=PATH``): pytest finds its rootdir from the
    words that are paths before it knows the plugin's flags take one."""
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--race-progress",
        *flags, *extra, node or target.node,
    ]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=target.where,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out: list[str] = []
    reader = threading.Thread(
        target=lambda: out.append(child.stdout.read() if child.stdout else "")
    )
    reader.start()
    other: list[str] = []
    last: dict[str, Any] = {}
    assert child.stderr is not None
    for line in child.stderr:
        if line.startswith(PROGRESS_PREFIX):
            try:
                data = json.loads(line[len(PROGRESS_PREFIX) :])
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                last = data
                on_progress(data)
        else:
            other.append(line.rstrip("\n"))
    code = child.wait()
    reader.join()
    return _Ran(code, "".join(out), other, last)


def _pytest_failed_to_run(ran: _Ran, target: Target) -> str | None:
    """pytest's own trouble (a usage error, nothing collected, an internal error): one line."""
    if ran.code in (0, 1):
        return None
    said = [*ran.other_stderr, *ran.stdout.splitlines()]
    detail = next((line for line in said if "error" in line.lower()), "")
    return (
        f"pytest exited {ran.code} on {target.node} (in {target.where})"
        + (f": {detail.strip()}" if detail else "")
        + "; is the test still there? run it with -v to see pytest's output"
    )


def _say(text: str) -> None:
    print(text, flush=True)


def _start(command: str, args: argparse.Namespace) -> Target | None:
    """The target, and the note when it is not this checkout's (on stderr: it changes what
    the verdict is about); None after an error's one line."""
    try:
        target = resolve(args.target, args.traces, Path.cwd())
    except TraceError as exc:
        print(f"racetape {command}: error: {exc}", file=sys.stderr)
        return None
    if target.note:
        print(f"racetape {command}: note: {target.note}", file=sys.stderr)
    return target


def replay_main(argv: list[str]) -> int:
    args = _parser("replay").parse_args(argv[1:])
    target = _start("replay", args)
    if target is None:
        return 2
    trace = target.trace
    with tempfile.TemporaryDirectory(prefix="racetape-replay-") as scratch:
        result = Path(scratch) / "result.json"
        flags = [f"--race-replay={trace.source.resolve()}", f"--race-json={result}"]
        flags += ["-v"] if args.verbose else ["-q"]
        if args.verbose:
            _say(f"racetape replay: {trace.label} from {trace.source}, in {target.where}")
        bar = progress_bar(quiet=args.quiet)
        bar.start(1, f"replay {trace.nodeid}")
        ran = _pytest(target, flags, args.pytest_args, lambda d: bar.advance(int(d.get("done", 0))))
        bar.finish()
        problem = _pytest_failed_to_run(ran, target)
        if problem is None and not result.is_file():
            problem = f"pytest wrote no result for {trace.nodeid}"
        if problem is not None:
            if not args.quiet:  # what pytest said is the way to the fix
                print(ran.stdout, end="")
            print(f"racetape replay: error: {problem}", file=sys.stderr)
            return 2
        groups = json.loads(result.read_text())["groups"]
        # pytest's output, but not the line naming this scratch file, gone when it is shown.
        said = "".join(x for x in ran.stdout.splitlines(True) if str(result) not in x)
    group = next((g for g in groups if g["scenario"] == trace.nodeid), None)
    if args.verbose:
        print(said, end="")
    if group is None or not group["runs"]:
        print(
            f"racetape replay: error: pytest ran no race run of {trace.nodeid}; is it still an"
            " async test that pytest-asyncio runs?",
            file=sys.stderr,
        )
        return 2
    first = group["pytest"]["first_failure"]
    recorded = f"{trace.when}: {trace.error}"
    ran_in = f"(pytest in {target.where})"
    if first is None:
        _say(
            f"racetape replay: did not reproduce: {trace.nodeid} passed under schedule"
            f" {trace.label} {ran_in}; recorded {recorded}; fixed, or part of it is not under"
            " racetape's control"
        )
        return 0
    error = str(first.get("error") or "?")
    when = str(first.get("when") or "?")
    # The same failure: the same phase and the same exception type (its message may differ).
    if (when, error.partition(":")[0]) == (trace.when, trace.error_type):
        _say(
            f"racetape replay: reproduced: {trace.nodeid} failed again under schedule"
            f" {trace.label} {ran_in}: {error}"
        )
    else:
        _say(
            f"racetape replay: failed differently: {trace.nodeid} under schedule {trace.label}"
            f" {ran_in} failed in {when}: {error}; recorded {recorded}"
        )
    return 1


def shrink_main(argv: list[str]) -> int:
    args = _parser("shrink").parse_args(argv[1:])
    target = _start("shrink", args)
    if target is None:
        return 2
    trace = target.trace
    flags = [f"--race-shrink={trace.source.resolve()}", "-q"]
    if find_spec("xdist") is not None:
        flags += ["-n", "0"]  # one process: each run's proposal depends on the one before
    bar = progress_bar(quiet=args.quiet)
    bar.start(DEFAULT_MAX_RUNS + 1, f"shrink {trace.nodeid}", cap=True)

    def on_progress(data: dict[str, Any]) -> None:
        if "shrink_runs" not in data:
            return
        note = f"best {data['best']} ({_count(data['best'])})"
        bar.advance(int(data["shrink_runs"]), note)
        if args.verbose:
            _say(f"racetape shrink: run {data['shrink_runs']}: {note}")

    # The test's file and not its node id: the shrink's runs are parametrized, so the node id
    # of a parametrized test would select none of them; the plugin keeps the trace's test.
    ran = _pytest(target, flags, args.pytest_args, on_progress, node=target.node.partition("::")[0])
    bar.finish()
    if args.verbose:
        print(ran.stdout, end="")
    outcome = ran.last.get("shrink") if isinstance(ran.last.get("shrink"), dict) else None
    if outcome is None:
        if not args.quiet and not args.verbose:  # what pytest said is the way to the fix
            print(ran.stdout, end="")
        problem = _pytest_failed_to_run(ran, target) or f"pytest ran no run of {trace.nodeid}"
        print(f"racetape shrink: error: {problem}", file=sys.stderr)
        return 2
    ran_in = f"(pytest in {target.where})"
    if not outcome["reproduced"]:
        _say(
            f"racetape shrink: did not reproduce: {trace.nodeid} did not fail as recorded"
            f" ({trace.when}: {trace.error_type}) under {trace.label} {ran_in}; nothing to shrink"
        )
        return 1
    if outcome["shrunk"] is None:
        _say(f"racetape shrink: {trace.nodeid}: {outcome['problem']}")
        return 1
    shrunk = Path(outcome["shrunk"])
    if args.out is not None:
        from racetape._result import write_json_atomic

        try:
            write_json_atomic(args.out, json.loads(shrunk.read_text()))
        except OSError as exc:
            print(
                f"racetape shrink: error: --out {args.out}: {exc.strerror or exc}", file=sys.stderr
            )
            return 2
        shrunk = args.out
    shown = os.path.relpath(shrunk) if shrunk.is_absolute() else str(shrunk)
    before, after = outcome["from"], outcome["to"]
    _say(
        f"racetape shrink: {trace.nodeid}: {before} ({_count(before)}) -> {after}"
        f" ({_count(after)}), in {outcome['runs']} runs {ran_in}"
    )
    if not args.quiet:
        node = os.path.relpath(target.where / target.node.partition("::")[0])
        node += "".join(target.node.partition("::")[1:])
        _say(f"shrunk trace: {shown}")
        _say(f"replay it: {shlex.join(['racetape', 'replay', shown])}")
        _say(f"  or: {shlex.join(['pytest', '--race-replay=' + after, node])}")
    return 0


def _count(schedule: str) -> str:
    n = 0 if schedule == "fifo" else schedule.count("-") + 1
    return f"{n} deviation" + ("" if n == 1 else "s")


__all__ = ["TRACE_SCHEMA", "Target", "replay_main", "resolve", "shrink_main"]
