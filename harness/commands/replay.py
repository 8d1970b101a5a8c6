"""``racetape replay TRACE``: re-run one recorded run and show its timeline, or emit a test."""

from __future__ import annotations

import argparse
import asyncio
import shlex
from collections.abc import Sequence

from harness import display
from harness.adapters import ADAPTERS
from harness.commands.common import Subcommands, loudness_flags, path_arg, postgres_dsn
from harness.files import check_writable, write_text_atomic
from harness.replay import replay
from harness.traces import load_trace
from racetape._progress import progress_bar


def add(commands: Subcommands) -> None:
    loud = loudness_flags()
    rep = commands.add_parser(
        "replay",
        parents=[loud],
        help="re-run one recorded run and show its timeline (a pytest test's: racetape replay"
        " NODEID)",
    )
    rep.add_argument("trace", type=path_arg, metavar="TRACE", help="a trace a run wrote (--traces)")
    rep.add_argument("--adapter", choices=ADAPTERS, help="replay on this adapter instead")
    rep.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    rep.add_argument(
        "--emit-test",
        type=path_arg,
        metavar="PATH",
        help="write a standalone pytest file that replays this interleaving (no replay now)",
    )
    rep.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.emit_test is not None:
        from harness.report import emit_test  # see the report commands (harness.commands.report)

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
    pg_dsn = postgres_dsn(args, [adapter])
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
