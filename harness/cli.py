"""``racetape``: the command line, a thin layer over the library (runner, replay, scenarios).

Each subcommand is a module of :mod:`harness.commands` (its flags and its handler); this module
only builds the parser from them and dispatches.

Exit codes: 0 done (no strand, or strands with ``run --no-fail``); 1 a strand or hang (unless
``--no-fail``), or a replay that strands; 2 a usage or input error, always one line
on stderr; 3 the environment failed mid-run: a database became unreachable, or a worker
process died (what finished is written); 128 + N stopped
by signal N (SIGINT 130, SIGTERM 143, SIGHUP 129; what finished is
written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness import signals
from harness.adapters import connection_lost
from harness.campaign import EnvironmentFault
from harness.commands import bench, explore, matrix, replay, report, run, shrink, stress
from harness.commands import list as list_
from harness.commands.common import EXIT_ENVIRONMENT, INPUT_ERRORS, Parser
from reftask.dsn import redact_dsn

SUBCOMMANDS = (run, replay, report, matrix, bench, shrink, explore, stress, list_)
"""In the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="racetape", description="Deterministic race reproduction and stress harness."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.add(commands)
    return parser


COOPERATIVE = frozenset({"run", "stress", "matrix"})
"""Commands that keep what finished when stopped: a signal is recorded, their loops stop
between runs and they write their results (see :mod:`harness.signals`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; the exit code (the README's table)."""
    argv = report.shorthand(list(sys.argv[1:] if argv is None else argv))
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
