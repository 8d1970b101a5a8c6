"""``racetape shrink TRACE``: minimise a failing controlled trace with Hypothesis."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from harness import display
from harness.adapters import ADAPTERS
from harness.commands.common import Subcommands, loudness_flags, path_arg, postgres_dsn
from harness.files import check_writable, write_json_atomic
from harness.run import RunResult
from harness.shrink import check_shrinkable, shrink_trace
from harness.traces import load_trace, shrunk_path
from racetape._progress import progress_bar


def add(commands: Subcommands) -> None:
    loud = loudness_flags()
    shr = commands.add_parser(
        "shrink",
        parents=[loud],
        help="minimise a failing controlled trace with Hypothesis (same strands; a pytest"
        " test's: racetape shrink NODEID)",
    )
    shr.add_argument("trace", type=path_arg, metavar="TRACE", help="a failing run's trace")
    shr.add_argument(
        "--out", type=path_arg, metavar="PATH", help="shrunk trace; default TRACE with .shrunk.json"
    )
    shr.add_argument("--adapter", choices=ADAPTERS, help="shrink on this adapter instead")
    shr.add_argument("--seed", type=int, default=0, help="Hypothesis's seed; default 0")
    shr.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    shr.set_defaults(handler=_shrink)


def _shrink(args: argparse.Namespace, argv: Sequence[str]) -> int:
    trace = load_trace(args.trace)
    check_shrinkable(trace)
    adapter = args.adapter or trace.adapter
    out_path = args.out or shrunk_path(args.trace)
    check_writable(out_path)
    pg_dsn = postgres_dsn(args, [adapter])  # checked before the bar starts: an error is one line
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
