"""``racetape``: the command line, a thin layer over the library (runner, replay, scenarios).

Exit codes: 0 done (no strand, or strands with ``run --no-fail``); 1 a strand or hang (unless
``--no-fail``), or a replay that strands; 2 a usage or input error, always one line
on stderr; 3 the environment failed mid-run: a database became unreachable, or a worker
process died (what finished is written); 128 + N stopped
by signal N (SIGINT 130, SIGTERM 143, SIGHUP 129; what finished is
written).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NoReturn

from harness import bench, display, limits, signals, stress
from harness.adapters import ADAPTERS, RECONNECT_WITHIN, connection_lost, resolve_pg_dsn
from harness.bench_unmodified import unmodified_line
from harness.files import (
    OutputError,
    check_writable,
    folder_of_its_own,
    strict_json,
    write_all_atomic,
    write_json_atomic,
    write_text_atomic,
)
from harness.matrix import matrix_document, matrix_markdown, run_matrix
from harness.pgserver import PostgresUnavailable, check_reachable
from harness.replay import replay
from harness.results import ResultError, load_result, result_document
from harness.run import RunResult
from harness.runner import (
    DATABASE_LOST,
    WORKER_LOST,
    EnvironmentFault,
    Group,
    Settings,
    run_groups,
)
from harness.scaling import scaling_table
from harness.scenario import ScenarioError, find_scenarios, resolve_scenario
from harness.search import DEFAULT_EXAMPLES, Exploration, explore_shapes, write_findings
from harness.shrink import ShrinkError, check_shrinkable, shrink_trace
from harness.traces import (
    TraceError,
    load_trace,
    replay_command,
    run_folder_name,
    shrunk_path,
)
from harness.unpointed import POINTS_OFF
from racetape._engine.drawn import DEFAULT_DB, open_database
from racetape._engine.strategies import STRATEGIES
from racetape._progress import RunsProgress, progress_bar
from reftask.dsn import DsnError, redact_dsn
from reftask.faults import FAULT_DESCRIPTIONS, Fault, UnknownFaultError, parse_faults
from reftask.stores.base import StoreUnavailableError

DEFAULT_RUNS = 200
DEFAULT_JSON = Path("reports/result.json")

STRATEGY_HELP = {name: entry.help for name, entry in STRATEGIES.items() if entry.in_cli}
ADAPTER_HELP = {
    "sqlite": "aiosqlite on a temporary database file (the default)",
    "postgres": "asyncpg; RACETAPE_PG_DSN or --pg-dsn (default 127.0.0.1:5432, user postgres)",
}


class UsageError(ValueError):
    """Bad flags or arguments; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"racetape: error: {message} (see racetape --help)", file=sys.stderr)
        raise SystemExit(2)


def _positive(
    kind: type[int] | type[float], what: str, maximum: float
) -> Callable[[str], int | float]:
    """A flag's parser: a finite number in (0, ``maximum``] (see :mod:`harness.limits`)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{what} must be a finite number, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be > 0, got {text!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"{what} must be at most {kind(maximum)}, got {text!r}"
            )
        return value

    return parse


def _zero_or_positive(what: str, maximum: float) -> Callable[[str], int | float]:
    """As :func:`_positive` for seconds, and 0 (for "never")."""
    positive = _positive(float, what, maximum)

    def parse(text: str) -> int | float:
        try:
            if float(text) == 0:
                return 0.0
            if float(text) < 0:
                raise argparse.ArgumentTypeError(f"{what} must be >= 0 (0: never), got {text!r}")
        except ValueError:
            pass
        return positive(text)

    return parse


def _add_reconnect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reconnect-within",
        type=_zero_or_positive("--reconnect-within", limits.MAX_SECONDS),
        default=RECONNECT_WITHIN,
        metavar="SECONDS",
        help="a database that stops answering mid-run is waited for this long; if it answers"
        " again, the run it went away in runs again from its seed (0: never wait);"
        f" default {RECONNECT_WITHIN:g}",
    )


def _path(text: str) -> Path:
    """A path flag or argument; an empty one is refused here, where argparse would read it as
    the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N, got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    if count > limits.MAX_RUNS:
        raise argparse.ArgumentTypeError(f"--shard N must be at most {limits.MAX_RUNS}")
    return index, count


def _run_flags() -> _Parser:
    """The flags that shape many runs, shared by ``run`` and ``stress``."""
    flags = _Parser(add_help=False)
    flags.add_argument(
        "--seed", type=int, default=0, help="base seed; run i uses a seed derived from it"
    )
    flags.add_argument(
        "--workers",
        type=_positive(int, "--workers", limits.MAX_WORKERS),
        default=1,
        help="worker processes",
    )
    flags.add_argument(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="I/N",
        help="run only shard I of N of the seed space (1-based)",
    )
    flags.add_argument(
        "--budget",
        type=_positive(float, "--budget", limits.MAX_SECONDS),
        metavar="SECONDS",
        help="stop handing out runs after this long (shared by every group), and cut a run"
        " still going then (not counted); keep what finished",
    )
    flags.add_argument(
        "--settle-timeout",
        type=_positive(float, "--settle-timeout", limits.MAX_SECONDS),
        default=10.0,
        metavar="SECONDS",
        help="a run that does not settle for this long is 'hung'",
    )
    flags.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    _add_reconnect(flags)
    return flags


def _loudness() -> _Parser:
    """-q / -v, for the commands that print more than a verdict."""
    flags = _Parser(add_help=False)
    loud = flags.add_mutually_exclusive_group()
    loud.add_argument(
        "-q", "--quiet", action="store_true", help="print only the verdict and errors; no bar"
    )
    loud.add_argument(
        "-v", "--verbose", action="store_true", help="also one line per run, and more detail"
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="racetape", description="Deterministic race reproduction and stress harness."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    runs, loud = _run_flags(), _loudness()
    run = commands.add_parser(
        "run", parents=[runs, loud], help="run scenarios and count stranded tasks"
    )
    run.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="scenario name (from scenarios/) or TOML file; repeat; default: all",
    )
    run.add_argument(
        "--adapter",
        action="append",
        choices=ADAPTERS,
        default=[],
        help="store adapter; repeat; default: sqlite",
    )
    run.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="put a known bug back (racetape list shows them); repeat for a fault set",
    )
    run.add_argument(
        "--strategy",
        action="append",
        choices=list(STRATEGY_HELP),
        default=[],
        help="how interleavings are chosen; repeat; default: random",
    )
    run.add_argument(
        "--runs",
        type=_positive(int, "--runs", limits.MAX_RUNS),
        default=DEFAULT_RUNS,
        help=f"runs per group (exhaustive: most schedules); default {DEFAULT_RUNS}",
    )
    run.add_argument(
        "--json",
        type=_path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"result document; default {DEFAULT_JSON}",
    )
    run.add_argument(
        "--traces",
        type=_path,
        default=Path("reports/traces"),
        metavar="DIR",
        help="where the first failing runs of each group are written",
    )
    failing = run.add_mutually_exclusive_group()
    failing.add_argument(
        "--fail-on-strand",
        action="store_true",
        help="exit 1 if any run strands or hangs: the default (kept for old command lines)",
    )
    failing.add_argument(
        "--no-fail",
        action="store_true",
        help="exit 0 even if runs strand or hang (the result and the verdict still say so)",
    )
    run.add_argument(
        "--pct-depth",
        type=_positive(int, "--pct-depth", limits.MAX_PCT_DEPTH),
        default=3,
        metavar="D",
        help="pct: the bug depth it aims at (depth - 1 random priority drops per run); default 3",
    )
    run.set_defaults(handler=_run)

    rep = commands.add_parser(
        "replay",
        parents=[loud],
        help="re-run one recorded run and show its timeline (a pytest test's: racetape replay"
        " NODEID)",
    )
    rep.add_argument("trace", type=_path, metavar="TRACE", help="a trace a run wrote (--traces)")
    rep.add_argument("--adapter", choices=ADAPTERS, help="replay on this adapter instead")
    rep.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    rep.add_argument(
        "--emit-test",
        type=_path,
        metavar="PATH",
        help="write a standalone pytest file that replays this interleaving (no replay now)",
    )
    rep.set_defaults(handler=_replay)

    _add_report(commands)

    mat = commands.add_parser("matrix", help="detection power: runs to first strand per fault")
    mat.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="scenario (repeat); default: all",
    )
    mat.add_argument(
        "--adapter", action="append", choices=ADAPTERS, default=[], help="repeat; default: sqlite"
    )
    mat.add_argument(
        "--strategy",
        action="append",
        choices=[name for name in STRATEGY_HELP if name != "exhaustive"],  # seeds, not a walk
        default=[],
        help="repeat; default: random and pct",
    )
    mat.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME|none",
        help="repeat; default: every fault and none",
    )
    mat.add_argument(
        "--points-off",
        action="store_true",
        help="add a column with every named control point off: the reference manager on the"
        " controlled loop through its stores' drivers, as a user's code runs (no crash scenario)",
    )
    mat.add_argument(
        "--seeds",
        type=_positive(int, "--seeds", limits.MAX_SEEDS),
        default=20,
        help="seeds per cell, each a run of --runs; default 20",
    )
    mat.add_argument(
        "--runs", type=_positive(int, "--runs", limits.MAX_RUNS), default=10, help="runs per seed"
    )
    mat.add_argument(
        "--workers",
        type=_positive(int, "--workers", limits.MAX_WORKERS),
        default=1,
        help="worker processes; default 1",
    )
    mat.add_argument(
        "--json",
        type=_path,
        default=Path("reports/matrix.json"),
        metavar="PATH",
        help="the matrix document; default reports/matrix.json",
    )
    mat.add_argument("--markdown", type=_path, metavar="PATH", help="also write the matrix here")
    mat.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    _add_reconnect(mat)
    mat.set_defaults(handler=_matrix)

    ben = commands.add_parser("bench", help="controlled vs jitter vs the floor vs the naive loop")
    ben.add_argument(
        "--adapter", action="append", choices=ADAPTERS, default=[], help="repeat; default: sqlite"
    )
    ben.add_argument(
        "--runs",
        type=_positive(int, "--runs", limits.MAX_RUNS),
        default=200,
        help="runs per figure (per seed for the fault-on figures)",
    )
    ben.add_argument(
        "--seeds",
        type=_positive(int, "--seeds", limits.MAX_SEEDS),
        default=10,
        help="seeds for the fault-on runs-to-first-strand medians",
    )
    ben.add_argument(
        "--memory", metavar="N,M,...", help="also measure peak RSS after N, M, ... controlled runs"
    )
    ben.add_argument(
        "--scaling",
        type=_positive(int, "--scaling", limits.MAX_RUNS),
        metavar="N",
        help="also run a stress-shaped job of N runs: each scenario's first vs last 1,000 runs/s",
    )
    ben.add_argument(
        "--json",
        type=_path,
        default=Path("reports/bench.json"),
        metavar="PATH",
        help="the benchmark document; default reports/bench.json",
    )
    ben.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    ben.set_defaults(handler=_bench)

    shr = commands.add_parser(
        "shrink",
        parents=[loud],
        help="minimise a failing controlled trace with Hypothesis (same strands; a pytest"
        " test's: racetape shrink NODEID)",
    )
    shr.add_argument("trace", type=_path, metavar="TRACE", help="a failing run's trace")
    shr.add_argument(
        "--out", type=_path, metavar="PATH", help="shrunk trace; default TRACE with .shrunk.json"
    )
    shr.add_argument("--adapter", choices=ADAPTERS, help="shrink on this adapter instead")
    shr.add_argument("--seed", type=int, default=0, help="Hypothesis's seed; default 0")
    shr.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    shr.set_defaults(handler=_shrink)

    exp = commands.add_parser(
        "explore",
        parents=[loud],
        help="Hypothesis searches generated scenarios and schedules for strands",
    )
    exp.add_argument(
        "--adapter", action="append", choices=ADAPTERS, default=[], help="repeat; default: sqlite"
    )
    exp.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="put a known bug back; repeat for a fault set; default none",
    )
    exp.add_argument(
        "--examples",
        type=_positive(int, "--examples", limits.MAX_EXAMPLES),
        default=DEFAULT_EXAMPLES,
        help=f"most examples generated per adapter; default {DEFAULT_EXAMPLES}",
    )
    exp.add_argument("--seed", type=int, default=0, help="Hypothesis's seed; default 0")
    exp.add_argument(
        "--out",
        type=_path,
        default=Path("reports/explore"),
        metavar="DIR",
        help="where each failure's scenario file and shrunk trace go",
    )
    exp.add_argument(
        "--db",
        type=_path,
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"Hypothesis example database, failures tried first next time; default {DEFAULT_DB}",
    )
    exp.add_argument("--no-db", action="store_true", help="keep no examples between runs")
    exp.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    exp.add_argument(
        "--settle-timeout",
        type=_positive(float, "--settle-timeout", limits.MAX_SECONDS),
        default=10.0,
        metavar="SECONDS",
        help="a run that does not settle for this long is 'hung' (a failure)",
    )
    exp.set_defaults(handler=_explore)

    sts = commands.add_parser(
        "stress",
        parents=[runs],
        help="the CI stress job: every scenario and adapter, fault-free, random and pct;"
        " exit 1 on any strand or hang",
    )
    sts.add_argument(
        "--adapter",
        action="append",
        choices=ADAPTERS,
        default=[],
        help="repeat; default: every adapter that answers (sqlite, and postgres if reachable)",
    )
    sts.add_argument(
        "--runs",
        type=_positive(int, "--runs", limits.MAX_RUNS),
        default=1000,
        help="runs per group; default 1000",
    )
    sts.add_argument(
        "--out",
        type=_path,
        default=Path("reports/stress"),
        metavar="DIR",
        help="result.json, summary.md, junit.xml and traces/; default reports/stress",
    )
    sts.set_defaults(handler=_stress)

    lst = commands.add_parser("list", help="scenarios, faults, strategies and adapters")
    lst.set_defaults(handler=_list)
    return parser


REPORT_COMMANDS = ("render", "compare", "merge")


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="render a result (Markdown, HTML, JUnit), compare two, merge shards",
        description="racetape report RESULT.json [--html P] [--markdown P] [--junit P]"
        " (short for 'report render'); racetape report compare BEFORE AFTER;"
        " racetape report merge SHARD...",
    )
    reports = report.add_subparsers(
        dest="report_command", required=True, metavar="render|compare|merge"
    )
    render = reports.add_parser("render", help="Markdown, HTML and JUnit from one result")
    render.add_argument(
        "result",
        type=_path,
        metavar="RESULT.json",
        help="a result (run, merge, pytest --race-json)",
    )
    render.add_argument("--html", type=_path, metavar="PATH", help="self-contained HTML page")
    render.add_argument(
        "--markdown", type=_path, metavar="PATH", help="Markdown (PR comment, step summary)"
    )
    render.add_argument("--junit", type=_path, metavar="PATH", help="JUnit XML")
    render.add_argument(
        "--base",
        type=_path,
        default=Path(),
        metavar="DIR",
        help="the folder the result's trace paths are relative to; default: this one",
    )
    render.set_defaults(handler=_report_render)
    compare = reports.add_parser("compare", help="before vs after, with verdicts; 1 if worse")
    compare.add_argument("before", type=_path, metavar="BEFORE.json", help="the result before")
    compare.add_argument("after", type=_path, metavar="AFTER.json", help="the result after")
    compare.add_argument("--markdown", type=_path, metavar="PATH", help="also write Markdown")
    compare.set_defaults(handler=_report_compare)
    merge = reports.add_parser("merge", help="join shard results into one document")
    merge.add_argument(
        "shards", type=_path, nargs="+", metavar="SHARD.json", help="the results to join"
    )
    merge.add_argument(
        "--json",
        type=_path,
        default=Path("reports/merged.json"),
        metavar="PATH",
        help="the merged document; default reports/merged.json",
    )
    merge.set_defaults(handler=_report_merge)


def _report_shorthand(argv: list[str]) -> list[str]:
    """``report RESULT.json ...`` is ``report render RESULT.json ...``."""
    if argv[:1] == ["report"] and argv[1:2] and argv[1] not in (*REPORT_COMMANDS, "-h", "--help"):
        return ["report", "render", *argv[1:]]
    return argv


def _pg_dsn(args: argparse.Namespace, adapters: Sequence[str]) -> str | None:
    if "postgres" not in adapters:
        return None
    dsn = resolve_pg_dsn(args.pg_dsn)
    check_reachable(dsn)
    return dsn


def _command(argv: Sequence[str]) -> str:
    """The command line as a result records it: passwords in any DSN redacted."""
    return shlex.join(["racetape", *(redact_dsn(arg) for arg in argv)])


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    scenarios = [resolve_scenario(s) for s in args.scenario] or find_scenarios()
    if not scenarios:
        raise UsageError("no scenarios found: pass --scenario PATH or run from the project folder")
    try:
        faults = parse_faults(args.fault)
    except UnknownFaultError as exc:
        raise UsageError(f"--fault: {exc}") from None
    adapters = list(dict.fromkeys(args.adapter or ["sqlite"]))
    strategies = list(dict.fromkeys(args.strategy or ["random"]))
    if "exhaustive" in strategies and args.shard != (1, 1):
        raise UsageError("--shard: exhaustive search walks one tree in order and does not shard")
    check_writable(args.json, folders=(args.traces,))  # before any work: see check_writable
    pg_dsn = _pg_dsn(args, adapters)
    groups = [Group(s, a, faults, st) for s in scenarios for a in adapters for st in strategies]
    with _run_folder(args.traces, args.shard) as traces:
        settings = _settings(args, pct_depth=args.pct_depth, traces_dir=traces, pg_dsn=pg_dsn)
        results = run_groups(groups, settings, display.progress_for(args.quiet, args.verbose))
    doc = result_document(results, settings, command=_command(argv))
    write_json_atomic(args.json, doc)
    if not args.quiet:
        _print_result(doc, f"result: {args.json}")
    if signals.stop_requested() or any(g["stopped"] == "interrupted" for g in doc["groups"]):
        return _stopped(f"wrote the {doc['totals']['runs']} runs that finished")
    if code := _lost_database(doc):
        return code
    failed = bool(doc["totals"]["strands"] or doc["totals"]["hung"])
    code = 1 if failed and not args.no_fail else 0
    if not args.quiet:
        display.console().print(_totals_line(doc), soft_wrap=True)
    display.console().print(_verdict(doc, code), soft_wrap=True)
    return code


def _totals_line(doc: dict[str, Any]) -> str:
    """``totals: 3 groups, 600 runs, 17 stranded, 0 hung, 4.2 s``."""
    groups, totals = doc["groups"], doc["totals"]
    elapsed = sum(g.get("elapsed_s") or 0 for g in groups)
    return (
        f"totals: {_count(len(groups), 'group')}, {totals['runs']} runs,"
        f" {totals['strands']} stranded, {totals['hung']} hung, {elapsed:.1f} s"
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _verdict(doc: dict[str, Any], code: int) -> str:
    """One line: did any run strand or hang, and what the exit code is."""
    totals = doc["totals"]
    if not totals["strands"] and not totals["hung"]:
        return f"verdict: PASS, no run of {totals['runs']} stranded or hung (exit 0)"
    bad = [g for g in doc["groups"] if g["strands"] or g["hung"]]
    why = "" if code else "; --no-fail"
    return (
        f"verdict: FAIL, {totals['strands']} of {totals['runs']} runs stranded and"
        f" {totals['hung']} hung, in {len(bad)} of {_count(len(doc['groups']), 'group')}"
        f" (exit {code}{why})"
    )


def _run_folder(root: Path, shard: tuple[int, int]) -> AbstractContextManager[Path]:
    """This run's traces folder under ``root``, of its own, so that old traces never pile up
    beside new ones; gone again after a run that kept no trace."""
    return folder_of_its_own(root, run_folder_name(shard, datetime.datetime.now(datetime.UTC)))


def _settings(args: argparse.Namespace, **fields: Any) -> Settings:
    """Settings from the flags of :func:`_run_flags` (and ``--runs``), and ``fields``."""
    return Settings(
        runs=args.runs,
        seed=args.seed,
        workers=args.workers,
        shard=args.shard,
        budget=args.budget,
        settle_timeout=args.settle_timeout,
        reconnect_within=args.reconnect_within,
        **fields,
    )


def _stress(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.adapter:
        adapters, notes = list(dict.fromkeys(args.adapter)), list[str]()
        pg_dsn = _pg_dsn(args, adapters)
    else:
        pg_dsn = resolve_pg_dsn(args.pg_dsn)
        adapters, notes = stress.available_adapters(pg_dsn)
    files = stress.StressFiles.under(args.out)
    check_writable(files.result, files.markdown, files.junit, folders=(args.out / "traces",))
    groups = stress.stress_groups(find_scenarios(), adapters)
    with _run_folder(args.out / "traces", args.shard) as traces:
        settings = _settings(
            args, traces_dir=traces, pg_dsn=pg_dsn if "postgres" in adapters else None
        )
        results = run_groups(groups, settings, display.progress_for_terminal())
    doc = result_document(results, settings, command=_command(argv), notes=notes)
    stress.write_files(doc, files)
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        _append_step_summary(Path(summary), files.markdown.read_text())
    _print_result(doc, f"result: {files.result}, {files.markdown}, {files.junit}")
    if signals.stop_requested() or any(g["stopped"] == "interrupted" for g in doc["groups"]):
        return _stopped(f"wrote the {doc['totals']['runs']} runs that finished")
    if code := _lost_database(doc):
        return code
    return 1 if stress.failed(doc) else 0


def _append_step_summary(summary: Path, markdown: str) -> None:
    """Append to CI's step summary (every step appends; it is not ours to replace). One that
    cannot be written is a warning: the job's own files are written already."""
    try:
        with open(summary, "a") as step_summary:
            step_summary.write(markdown)
    except OSError as exc:
        print(
            f"racetape: warning: GITHUB_STEP_SUMMARY={summary}: cannot append:"
            f" {exc.strerror or exc}; the summary is in the stress folder",
            file=sys.stderr,
        )


EXIT_ENVIRONMENT = 3


def _lost_database(doc: dict[str, Any]) -> int:
    """A database that became unreachable mid-run, or a worker process that died, is a fault
    of the environment, not a strand: one line for each, and exit 3 (the result with what
    finished is written)."""
    stopped = {g["stopped"] for g in doc["groups"]}
    if not stopped & {DATABASE_LOST, WORKER_LOST}:
        return 0
    for note in doc["notes"]:
        if " became unreachable at " in note:
            print(f"racetape: database lost: {note}", file=sys.stderr)
        elif note.startswith("a worker process died"):
            print(f"racetape: worker lost: {note}", file=sys.stderr)
    print(
        f"racetape: wrote the {doc['totals']['runs']} runs that finished; exit"
        f" {EXIT_ENVIRONMENT} (the environment failed, not the code under test)",
        file=sys.stderr,
    )
    return EXIT_ENVIRONMENT


def _stopped(what: str) -> int:
    """A cooperative command stopped by a signal: one line, and ``128 + the signal``."""
    print(f"racetape: stopped by {signals.describe()}; {what}", file=sys.stderr)
    return signals.exit_code()


def _print_result(doc: dict[str, Any], written: str) -> None:
    out = display.console()
    out.print(display.summary_table(doc))
    for note in doc["notes"]:
        out.print(f"[yellow]note:[/] {note}")
    # Paths and commands are printed unbroken (soft_wrap), at any width: a reader pastes them.
    out.print(written, soft_wrap=True, markup=False)
    for group in doc["groups"]:
        for trace in group["traces"][:1]:
            out.print(
                f"replay the first failing run of {group['scenario']}: {replay_command(trace)}",
                soft_wrap=True,
                markup=False,
            )


def _replay(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.emit_test is not None:
        from harness.report import emit_test  # see _report_render

        check_writable(args.emit_test)
        source = emit_test(args.trace, adapter=args.adapter, test_path=args.emit_test)
        write_text_atomic(args.emit_test, source)
        out = display.console()
        out.print(f"regression test: {args.emit_test}")
        out.print(
            f"run it: python -m pytest {shlex.quote(str(args.emit_test))}",
            soft_wrap=True,
            markup=False,
        )
        return 0
    trace = load_trace(args.trace)
    adapter = args.adapter or trace.adapter
    pg_dsn = _pg_dsn(args, [adapter])
    bar = progress_bar(quiet=args.quiet)
    bar.start(1, f"replay {trace.scenario.name} on {adapter}")
    try:
        replayed = asyncio.run(replay(trace, adapter=adapter, pg_dsn=pg_dsn))
        bar.advance(1)
    finally:
        bar.finish()
    out = display.console()
    if args.quiet:
        out.print(display.replay_verdict(replayed), soft_wrap=True)
    else:
        display.print_replay(replayed, out)
    if args.verbose:
        out.print(display.decisions_table("decisions", replayed.result.schedule.decisions))
    failed = replayed.result.violations or replayed.result.unsettled or replayed.finding
    return 1 if failed else 0


def _matrix(args: argparse.Namespace, argv: Sequence[str]) -> int:
    scenarios = [resolve_scenario(s) for s in args.scenario] or find_scenarios()
    faults: list[Fault | None] = []
    for name in args.fault or ["none", *(f.value for f in Fault)]:
        try:
            faults.append(None if name == "none" else next(iter(parse_faults([name]))))
        except UnknownFaultError as exc:
            raise UsageError(f"--fault: {exc} (or none)") from None
    adapters = list(dict.fromkeys(args.adapter or ["sqlite"]))
    if args.seeds * args.runs > limits.MAX_RUNS:
        raise UsageError(
            f"--seeds {args.seeds} x --runs {args.runs}: at most {limits.MAX_RUNS} runs per cell"
        )
    check_writable(args.json, args.markdown)
    settings = Settings(
        workers=args.workers,
        pg_dsn=_pg_dsn(args, adapters),
        reconnect_within=args.reconnect_within,
    )
    cells, interrupted = run_matrix(
        scenarios,
        adapters,
        list(dict.fromkeys(args.strategy or ["random", "pct"]))
        + ([POINTS_OFF] if args.points_off else []),
        list(dict.fromkeys(faults)),
        seeds=args.seeds,
        runs=args.runs,
        settings=settings,
        progress=display.progress_for_terminal(),
    )
    doc = matrix_document(
        cells,
        seeds=args.seeds,
        runs=args.runs,
        command=_command(argv),
        interrupted=interrupted,
    )
    write_all_atomic(
        [(args.json, strict_json(doc))]
        + ([(args.markdown, matrix_markdown(doc))] if args.markdown else [])
    )
    out = display.console()
    out.print(display.matrix_table(doc))
    for finding in doc["findings"]:
        out.print(
            f"[red]finding[/]: {finding['scenario']} / {finding['adapter']} strands"
            f" {finding['strands']}/{finding['runs']} runs without any fault"
        )
    out.print(f"gaps: {', '.join(doc['gaps']) or 'none'}; matrix: {args.json}")
    if interrupted or signals.stop_requested():
        return _stopped("wrote the cells that finished")
    return 1 if doc["findings"] or doc["gaps"] else 0


def _bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    adapters = list(dict.fromkeys(args.adapter or ["sqlite"]))
    check_writable(args.json)
    pg_dsn = _pg_dsn(args, adapters)
    try:
        checkpoints = [int(n) for n in args.memory.split(",")] if args.memory else []
    except ValueError:
        checkpoints = [0]
    if any(not 1 <= n <= limits.MAX_RUNS for n in checkpoints):
        raise UsageError(
            f"--memory: expected run counts like 10000,100000 (each at most {limits.MAX_RUNS}),"
            f" got {args.memory!r}"
        )
    doc = bench.run_bench(
        adapters,
        runs=args.runs,
        seeds=args.seeds,
        memory=checkpoints,
        scaling=args.scaling,
        pg_dsn=pg_dsn,
        command=_command(argv),
        log=display.console(stderr=True).print,
    )
    write_json_atomic(args.json, doc)
    out = display.console()
    for adapter_result in doc["adapters"]:
        out.print(display.bench_table(adapter_result))
        if "scaling" in adapter_result:
            out.print(scaling_table(adapter_result["scaling"]))
    out.print(display.control_point_line(doc["control_points"]))
    out.print(unmodified_line(doc["unmodified"]))
    if "unmodified_asyncpg" in doc:
        out.print(unmodified_line(doc["unmodified_asyncpg"]))
    out.print(f"bench: {args.json}")
    return 0


# The report commands import harness.report where they run: it loads matplotlib and jinja2
# (the 'report' extra), seconds that every other command (racetape run in a CI loop) should
# not pay, and packages a plain install does not have.


def _report_render(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.report import render_html, render_junit, render_markdown

    check_writable(args.markdown, args.html, args.junit)
    doc = load_result(args.result)
    outputs: list[tuple[Path | None, Callable[[], str]]] = [
        (args.markdown, lambda: render_markdown(doc)),
        (args.html, lambda: render_html(doc, args.base, page_dir=args.html.parent)),
        (args.junit, lambda: render_junit(doc, args.base)),
    ]
    if not any(path for path, _ in outputs):
        sys.stdout.write(render_markdown(doc))
        return 0
    # Every output is rendered before any is written, and all are written or none.
    rendered = [(path, render()) for path, render in outputs if path is not None]
    write_all_atomic(rendered)
    out = display.console()
    for path, _ in rendered:
        out.print(f"wrote {path}")
    return 0


def _report_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.report import compare_documents, render_comparison

    check_writable(args.markdown)
    comparison = compare_documents(
        load_result(args.before),
        load_result(args.after),
        before_name=str(args.before),
        after_name=str(args.after),
    )
    display.console().print(display.comparison_table(comparison))
    if args.markdown:
        write_text_atomic(args.markdown, render_comparison(comparison))
    return 1 if comparison.worse else 0


def _report_merge(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.report import merge_documents

    check_writable(args.json)
    named = [(str(path), load_result(path)) for path in args.shards]
    merged = merge_documents(named, command=_command(argv))
    write_json_atomic(args.json, merged)
    out = display.console()
    out.print(display.summary_table(merged))
    out.print(f"merged {len(named)} results (shard {merged['settings']['shard']}): {args.json}")
    return 0


def _shrink(args: argparse.Namespace, argv: Sequence[str]) -> int:
    trace = load_trace(args.trace)
    check_shrinkable(trace)
    adapter = args.adapter or trace.adapter
    out_path = args.out or shrunk_path(args.trace)
    check_writable(out_path)
    pg_dsn = _pg_dsn(args, [adapter])  # checked before the bar starts: an error is one line
    out = display.console()
    bar = progress_bar(quiet=args.quiet)
    bar.start(None, f"shrink {trace.scenario.name}")

    def ran(number: int, result: RunResult) -> None:
        line = display.shrink_run_line(number, result)
        bar.advance(number, line.partition(": ")[2])
        if args.verbose:
            out.print(line, soft_wrap=True, markup=False)

    try:
        shrunk = shrink_trace(trace, adapter=adapter, pg_dsn=pg_dsn, seed=args.seed, on_run=ran)
    finally:
        bar.finish()
    write_json_atomic(out_path, shrunk.document())
    if args.quiet:
        out.print(f"{display.shrunk_line(shrunk)}; shrunk trace: {out_path}", soft_wrap=True)
        return 0
    display.print_shrunk(shrunk, out)
    out.print(
        f"shrunk trace: {out_path}; run it again: racetape replay {out_path}",
        soft_wrap=True,
        markup=False,
    )
    return 0


def _explore(args: argparse.Namespace, argv: Sequence[str]) -> int:
    try:
        faults = parse_faults(args.fault)
    except UnknownFaultError as exc:
        raise UsageError(f"--fault: {exc}") from None
    adapters = list(dict.fromkeys(args.adapter or ["sqlite"]))
    pg_dsn = _pg_dsn(args, adapters)
    check_writable(folders=(args.out, None if args.no_db else args.db))
    database = open_database(None if args.no_db else args.db)
    out = display.console()
    found = 0
    for adapter in adapters:
        bar = progress_bar(quiet=args.quiet)
        bar.start(None, f"explore {adapter} (at most {args.examples} examples generated)")

        def ran(exploration: Exploration, result: RunResult, bar: RunsProgress = bar) -> None:
            line = display.explore_run_line(exploration.runs, result)
            bar.advance(exploration.runs, line.partition(": ")[2])
            if args.verbose:
                out.print(line, soft_wrap=True, markup=False)

        try:
            exploration = explore_shapes(
                adapter,
                faults,
                examples=args.examples,
                seed=args.seed,
                database=database,
                pg_dsn=pg_dsn,
                settle_timeout=args.settle_timeout,
                on_run=ran,
            )
        finally:
            bar.finish()
        write_findings(exploration, args.out)
        if args.quiet:
            out.print(display.exploration_verdict(exploration), soft_wrap=True)
        else:
            display.print_exploration(exploration, out)
        found += len(exploration.findings)
    if not args.no_db and not args.quiet:
        out.print(f"examples database: {args.db} (its failures are tried first next time)")
    return 1 if found else 0


def _list(args: argparse.Namespace, argv: Sequence[str]) -> int:
    display.print_list(
        find_scenarios(), FAULT_DESCRIPTIONS, STRATEGY_HELP, ADAPTER_HELP, display.console()
    )
    return 0


INPUT_ERRORS = (
    OutputError,
    DsnError,
    ScenarioError,
    TraceError,
    ResultError,
    ShrinkError,
    StoreUnavailableError,
    PostgresUnavailable,
    UsageError,
)


COOPERATIVE = frozenset({"run", "stress", "matrix"})
"""Commands that keep what finished when stopped: a signal is recorded, their loops stop
between runs and they write their results (see :mod:`harness.signals`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; the exit code (the README's table)."""
    argv = _report_shorthand(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    signals.install(cooperative=args.command in COOPERATIVE)
    try:
        code: int = args.handler(args, argv)
    except INPUT_ERRORS as exc:
        print(f"racetape: error: {redact_dsn(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # an interrupting command (see harness.signals): nothing to keep
        signals.calm()
        print(f"racetape: stopped by {signals.describe()}", file=sys.stderr)
        return signals.exit_code()
    except Exception as exc:
        # A database gone in a command that keeps no partial result (replay, shrink, explore,
        # bench, matrix): one line, not the driver's traceback.
        if not (isinstance(exc, EnvironmentFault) or connection_lost(exc)):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"racetape: database lost: {redact_dsn(detail)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    finally:
        signals.uninstall()
    return code


if __name__ == "__main__":
    sys.exit(main())
