"""``racetape matrix``: detection power, runs to the first strand per fault."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from harness import display, limits, signals
from harness.adapters import ADAPTERS, DEFAULT_ADAPTER
from harness.campaign import Settings
from harness.commands.common import (
    STRATEGY_HELP,
    Subcommands,
    UsageError,
    path_arg,
    positive,
    postgres_dsn,
    reconnect_flag,
    recorded_command,
    stopped_by_signal,
)
from harness.files import check_writable, strict_json, write_all_atomic
from harness.matrix import matrix_document, matrix_markdown, run_matrix
from harness.scenario import find_scenarios, resolve_scenario
from harness.unpointed import POINTS_OFF
from reftask.faults import Fault, UnknownFaultError, parse_faults


def add(commands: Subcommands) -> None:
    mat = commands.add_parser("matrix", help="detection power: runs to first strand per fault")
    mat.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="scenario (repeat); default: all",
    )
    mat.add_argument(
        "--adapter",
        action="append",
        choices=ADAPTERS,
        default=[],
        help=f"repeat; default: {DEFAULT_ADAPTER}",
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
        type=positive(int, "--seeds", limits.MAX_SEEDS),
        default=20,
        help="seeds per cell, each a run of --runs; default 20",
    )
    mat.add_argument(
        "--runs", type=positive(int, "--runs", limits.MAX_RUNS), default=10, help="runs per seed"
    )
    mat.add_argument(
        "--workers",
        type=positive(int, "--workers", limits.MAX_WORKERS),
        default=1,
        help="worker processes; default 1",
    )
    mat.add_argument(
        "--json",
        type=path_arg,
        default=Path("reports/matrix.json"),
        metavar="PATH",
        help="the matrix document; default reports/matrix.json",
    )
    mat.add_argument("--markdown", type=path_arg, metavar="PATH", help="also write the matrix here")
    mat.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    reconnect_flag(mat)
    mat.set_defaults(handler=_matrix)


def _matrix(args: argparse.Namespace, argv: Sequence[str]) -> int:
    scenarios = [resolve_scenario(s) for s in args.scenario] or find_scenarios()
    faults: list[Fault | None] = []
    for name in args.fault or ["none", *(f.value for f in Fault)]:
        try:
            faults.append(None if name == "none" else next(iter(parse_faults([name]))))
        except UnknownFaultError as exc:
            raise UsageError(f"--fault: {exc} (or none)") from None
    adapters = list(dict.fromkeys(args.adapter or [DEFAULT_ADAPTER]))
    if args.seeds * args.runs > limits.MAX_RUNS:
        raise UsageError(
            f"--seeds {args.seeds} x --runs {args.runs}: at most {limits.MAX_RUNS} runs per cell"
        )
    check_writable(args.json, args.markdown)
    settings = Settings(
        workers=args.workers,
        pg_dsn=postgres_dsn(args, adapters),
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
        command=recorded_command(argv),
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
        return stopped_by_signal("wrote the cells that finished")
    return 1 if doc["findings"] or doc["gaps"] else 0
