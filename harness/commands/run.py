"""``racetape run``: run scenarios and count stranded tasks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import display, limits, signals
from harness.adapters import ADAPTERS, DEFAULT_ADAPTER
from harness.campaign import Group, run_groups
from harness.commands.common import (
    STRATEGY_HELP,
    Subcommands,
    UsageError,
    environment_failed,
    loudness_flags,
    path_arg,
    positive,
    postgres_dsn,
    print_result,
    recorded_command,
    run_flags,
    run_folder,
    settings_from,
    stopped_by_signal,
)
from harness.files import check_writable, write_json_atomic
from harness.results import result_document
from harness.scenario import find_scenarios, resolve_scenario
from reftask.faults import UnknownFaultError, parse_faults

DEFAULT_RUNS = 200
DEFAULT_JSON = Path("reports/result.json")


def add(commands: Subcommands) -> None:
    runs, loud = run_flags(), loudness_flags()
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
        help=f"store adapter; repeat; default: {DEFAULT_ADAPTER}",
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
        type=positive(int, "--runs", limits.MAX_RUNS),
        default=DEFAULT_RUNS,
        help=f"runs per group (exhaustive: most schedules); default {DEFAULT_RUNS}",
    )
    run.add_argument(
        "--json",
        type=path_arg,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"result document; default {DEFAULT_JSON}",
    )
    run.add_argument(
        "--traces",
        type=path_arg,
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
        type=positive(int, "--pct-depth", limits.MAX_PCT_DEPTH),
        default=3,
        metavar="D",
        help="pct: the bug depth it aims at (depth - 1 random priority drops per run); default 3",
    )
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    scenarios = [resolve_scenario(s) for s in args.scenario] or find_scenarios()
    if not scenarios:
        raise UsageError("no scenarios found: pass --scenario PATH or run from the project folder")
    try:
        faults = parse_faults(args.fault)
    except UnknownFaultError as exc:
        raise UsageError(f"--fault: {exc}") from None
    adapters = list(dict.fromkeys(args.adapter or [DEFAULT_ADAPTER]))
    strategies = list(dict.fromkeys(args.strategy or ["random"]))
    if "exhaustive" in strategies and args.shard != (1, 1):
        raise UsageError("--shard: exhaustive search walks one tree in order and does not shard")
    check_writable(args.json, folders=(args.traces,))  # before any work: see check_writable
    pg_dsn = postgres_dsn(args, adapters)
    groups = [Group(s, a, faults, st) for s in scenarios for a in adapters for st in strategies]
    with run_folder(args.traces, args.shard) as traces:
        settings = settings_from(args, pct_depth=args.pct_depth, traces_dir=traces, pg_dsn=pg_dsn)
        results = run_groups(groups, settings, display.progress_for(args.quiet, args.verbose))
    doc = result_document(results, settings, command=recorded_command(argv))
    write_json_atomic(args.json, doc)
    if not args.quiet:
        print_result(doc, f"result: {args.json}")
    if signals.stop_requested() or any(g["stopped"] == "interrupted" for g in doc["groups"]):
        return stopped_by_signal(f"wrote the {doc['totals']['runs']} runs that finished")
    if code := environment_failed(doc):
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
