"""``racetape replay`` and ``racetape shrink`` of a user's pytest test, by node id or trace.

A failing controlled run under the plugin writes a trace (:mod:`racetape._traces`). These
commands find a node id's newest trace (under ``--traces DIR``, default the nearest
``.racetape/traces`` at or above the current folder) and run pytest on that one test, in a
process of its own started where the traced session was, so the user's conftest, fixtures and
ini file apply as they did:

* ``replay``: ``pytest --race-replay TRACE``: the recorded schedule, exactly; says whether the
  failure reproduced (the same phase and exception type). Exit 1 when the test fails (as
  recorded or otherwise), 0 when it passes (it did not reproduce: fixed, or partly
  uncontrolled), 2 for bad input or a pytest that could not run the test.
* ``shrink``: ``pytest --race-shrink TRACE``: fewer and smaller deviations that still fail the
  same way (:mod:`racetape._shrink`); the result is written beside the trace
  (``NAME.shrunk.json``, which ``replay NODEID`` then prefers) with its replay command. Exit 0
  when shrunk, 1 when the failure did not reproduce, 2 for bad input.

``-q``: the verdict and errors only; ``-v``: pytest's own output and the command run, and one
line per shrink run. Progress (runs/s, time left) is drawn on stderr from the plugin's
``--race-progress`` lines. Arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
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
from racetape._shrink import DEFAULT_MAX_RUNS
from racetape._traces import (
    TRACE_SCHEMA,
    PytestTrace,
    TraceError,
    find_root,
    find_trace,
    is_pytest_trace,
    load_trace,
)

PROGRESS_PREFIX = "racetape-progress: "  # the plugin's --race-progress lines (pytest_plugin)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"racetape {self.prog.split()[-1]}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def is_pytest_target(argv: Sequence[str]) -> bool:
    """Whether ``racetape replay/shrink ARGS`` is about a pytest test (a node id, or a trace
    the plugin wrote) rather than a catalog trace; decided by the first positional argument."""
    if "--traces" in argv:  # only the pytest side has traces folders
        return True
    args = iter(argv[1:])
    for arg in args:
        if arg == "--":
            return False
        if arg in ("--traces", "--out"):
            next(args, None)  # its value
            continue
        if arg.startswith("-"):
            continue
        path = Path(arg)
        if path.is_file():
            return is_pytest_trace(path)
        return "::" in arg or arg.endswith(".py")
    return False


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


def resolve(target: str, traces: Path | None, cwd: Path) -> PytestTrace:
    """The trace ``target`` names (a path, or a node id's newest trace); :class:`TraceError`
    with one line naming what is missing and the fix."""
    path = Path(target)
    if path.is_file():
        return load_trace(path)
    if target.endswith(".json") and "::" not in target:
        raise TraceError(f"{target}: no such trace; give a trace's path or a test's node id")
    root = traces if traces is not None else find_root(cwd)
    if root is None:
        raise TraceError(
            f"{target}: no .racetape/traces at or above {cwd}: run the test under the plugin"
            f" first (pytest --race-runs 50 {shlex.quote(target)}), or give --traces DIR"
        )
    return find_trace(target, root, cwd=cwd)


@dataclass
class _Ran:
    code: int
    stdout: str
    other_stderr: list[str]
    last: dict[str, Any]  # the last progress line's data


def _pytest(
    trace: PytestTrace,
    flags: Sequence[str],
    extra: Sequence[str],
    on_progress: Callable[[dict[str, Any]], None],
    *,
    node: str | None = None,
) -> _Ran:
    """pytest on the trace's test, where its session ran, reading --race-progress as it goes."""
    where = Path(trace.invocation_dir)
    if not where.is_dir():
        raise TraceError(
            f"{trace.source}: invocation_dir: {where} is gone; run pytest --race-replay"
            f" {trace.source} from the project's folder"
        )
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--race-progress",
        *flags, *extra, node or trace.node_words,
    ]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=where,
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


def _pytest_failed_to_run(ran: _Ran, trace: PytestTrace) -> str | None:
    """pytest's own trouble (a usage error, nothing collected, an internal error): one line."""
    if ran.code in (0, 1):
        return None
    said = [*ran.other_stderr, *ran.stdout.splitlines()]
    detail = next((line for line in said if "error" in line.lower()), "")
    return (
        f"pytest exited {ran.code} on {trace.node_words} (in {trace.invocation_dir})"
        + (f": {detail.strip()}" if detail else "")
        + "; is the test still there? run it with -v to see pytest's output"
    )


def _say(text: str) -> None:
    print(text, flush=True)


def replay_main(argv: list[str]) -> int:
    args = _parser("replay").parse_args(argv[1:])
    try:
        trace = resolve(args.target, args.traces, Path.cwd())
    except TraceError as exc:
        print(f"racetape replay: error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="racetape-replay-") as scratch:
        result = Path(scratch) / "result.json"
        flags = ["--race-replay", str(trace.source.resolve()), "--race-json", str(result)]
        flags += ["-v"] if args.verbose else ["-q"]
        if args.verbose:
            _say(f"racetape replay: {trace.label} from {trace.source}, in {trace.invocation_dir}")
        bar = progress_bar(quiet=args.quiet)
        bar.start(1, f"replay {trace.nodeid}")
        try:
            ran = _pytest(
                trace, flags, args.pytest_args, lambda d: bar.advance(int(d.get("done", 0)))
            )
        except TraceError as exc:
            bar.finish()
            print(f"racetape replay: error: {exc}", file=sys.stderr)
            return 2
        bar.finish()
        problem = _pytest_failed_to_run(ran, trace)
        if problem is None and not result.is_file():
            problem = f"pytest wrote no result for {trace.nodeid}"
        if problem is not None:
            if args.verbose:
                print(ran.stdout, end="")
            print(f"racetape replay: error: {problem}", file=sys.stderr)
            return 2
        groups = json.loads(result.read_text())["groups"]
    group = next((g for g in groups if g["scenario"] == trace.nodeid), None)
    if not args.quiet:
        print(ran.stdout, end="")
    if group is None or not group["runs"]:
        print(
            f"racetape replay: error: pytest ran no race run of {trace.nodeid}; is it still an"
            " async test that pytest-asyncio runs?",
            file=sys.stderr,
        )
        return 2
    first = group["pytest"]["first_failure"]
    if first is None:
        _say(
            f"racetape replay: did not reproduce: {trace.nodeid} passed under schedule"
            f" {trace.label} (recorded: {trace.error}); fixed, or part of it is not under"
            " racetape's control"
        )
        return 0
    error = str(first.get("error") or "?")
    if error.partition(":")[0] == trace.error_type:
        _say(
            f"racetape replay: reproduced: {trace.nodeid} failed again under schedule"
            f" {trace.label}: {error}"
        )
    else:
        _say(
            f"racetape replay: failed differently: {trace.nodeid} under schedule {trace.label}"
            f" raised {error}, recorded {trace.error}"
        )
    return 1


def shrink_main(argv: list[str]) -> int:
    args = _parser("shrink").parse_args(argv[1:])
    try:
        trace = resolve(args.target, args.traces, Path.cwd())
    except TraceError as exc:
        print(f"racetape shrink: error: {exc}", file=sys.stderr)
        return 2
    flags = ["--race-shrink", str(trace.source.resolve()), "-q"]
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

    # The trace's file and not its node words: the shrink's runs are parametrized, so the node
    # id of a parametrized test would select none of them; the plugin keeps the trace's test.
    path = trace.nodeid.partition("::")[0]
    node = os.path.relpath(Path(trace.rootdir) / path, trace.invocation_dir)
    try:
        ran = _pytest(trace, flags, args.pytest_args, on_progress, node=node)
    except TraceError as exc:
        bar.finish()
        print(f"racetape shrink: error: {exc}", file=sys.stderr)
        return 2
    bar.finish()
    if args.verbose:
        print(ran.stdout, end="")
    outcome = ran.last.get("shrink") if isinstance(ran.last.get("shrink"), dict) else None
    if outcome is None:
        problem = _pytest_failed_to_run(ran, trace) or f"pytest ran no run of {trace.nodeid}"
        print(f"racetape shrink: error: {problem}", file=sys.stderr)
        return 2
    if not outcome["reproduced"]:
        _say(
            f"racetape shrink: did not reproduce: {trace.nodeid} did not fail as recorded"
            f" ({trace.when}: {trace.error_type}) under {trace.label}; nothing to shrink"
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
        f" ({_count(after)}), in {outcome['runs']} runs"
    )
    if not args.quiet:
        _say(f"shrunk trace: {shown}")
        _say(f"replay it: {shlex.join(['racetape', 'replay', shown])}")
        _say(f"  or: pytest --race-replay {after} {shlex.quote(trace.node_words)}")
    return 0


def _count(schedule: str) -> str:
    n = 0 if schedule == "fifo" else schedule.count("-") + 1
    return f"{n} deviation" + ("" if n == 1 else "s")


__all__ = ["TRACE_SCHEMA", "is_pytest_target", "replay_main", "resolve", "shrink_main"]
