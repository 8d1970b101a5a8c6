"""``racetape explore``: Hypothesis searches generated scenarios and schedules for strands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from harness import display, limits
from harness.adapters import ADAPTERS, DEFAULT_ADAPTER
from harness.commands.common import (
    Subcommands,
    UsageError,
    loudness_flags,
    path_arg,
    positive,
    postgres_dsn,
)
from harness.files import check_writable
from harness.run import RunResult
from harness.search import DEFAULT_EXAMPLES, Exploration, explore_shapes, write_findings
from racetape._engine.drawn import DEFAULT_DB, open_database
from racetape._progress import RunsProgress, progress_bar
from reftask.faults import UnknownFaultError, parse_faults


def add(commands: Subcommands) -> None:
    loud = loudness_flags()
    exp = commands.add_parser(
        "explore",
        parents=[loud],
        help="Hypothesis searches generated scenarios and schedules for strands",
    )
    exp.add_argument(
        "--adapter",
        action="append",
        choices=ADAPTERS,
        default=[],
        help=f"repeat; default: {DEFAULT_ADAPTER}",
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
        type=positive(int, "--examples", limits.MAX_EXAMPLES),
        default=DEFAULT_EXAMPLES,
        help=f"most examples generated per adapter; default {DEFAULT_EXAMPLES}",
    )
    exp.add_argument("--seed", type=int, default=0, help="Hypothesis's seed; default 0")
    exp.add_argument(
        "--out",
        type=path_arg,
        default=Path("reports/explore"),
        metavar="DIR",
        help="where each failure's scenario file and shrunk trace go",
    )
    exp.add_argument(
        "--db",
        type=path_arg,
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
        type=positive(float, "--settle-timeout", limits.MAX_SECONDS),
        default=10.0,
        metavar="SECONDS",
        help="a run that does not settle for this long is 'hung' (a failure)",
    )
    exp.set_defaults(handler=_explore)


def _explore(args: argparse.Namespace, argv: Sequence[str]) -> int:
    try:
        faults = parse_faults(args.fault)
    except UnknownFaultError as exc:
        raise UsageError(f"--fault: {exc}") from None
    adapters = list(dict.fromkeys(args.adapter or [DEFAULT_ADAPTER]))
    pg_dsn = postgres_dsn(args, adapters)
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
