"""What the subcommands share: argument types, the flags of many runs, settings, the result's
printing, exit codes and the errors that are the user's input (one line, exit 2).
"""

from __future__ import annotations

import argparse
import datetime
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

from harness import display, limits, signals
from harness.adapters import RECONNECT_WITHIN, needs_dsn, resolve_pg_dsn
from harness.campaign import DATABASE_LOST, WORKER_LOST, Settings
from harness.files import OutputError, folder_of_its_own
from harness.pgserver import PostgresUnavailable, check_reachable
from harness.results import ResultError
from harness.scenario import ScenarioError
from harness.shrink import ShrinkError
from harness.traces import TraceError, replay_command, run_folder_name
from racetape._engine.strategies import STRATEGIES
from reftask.dsn import DsnError, redact_dsn
from reftask.stores.base import StoreUnavailableError

STRATEGY_HELP = {name: entry.help for name, entry in STRATEGIES.items() if entry.in_cli}


class UsageError(ValueError):
    """Bad flags or arguments; the message is one line."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"racetape: error: {message} (see racetape --help)", file=sys.stderr)
        raise SystemExit(2)


Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"
"""What each subcommand's module's ``add(commands)`` is handed: the parser's subcommands."""


def positive(
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


def zero_or_positive(what: str, maximum: float) -> Callable[[str], int | float]:
    """As :func:`positive` for seconds, and 0 (for "never")."""
    parse_positive = positive(float, what, maximum)

    def parse(text: str) -> int | float:
        try:
            if float(text) == 0:
                return 0.0
            if float(text) < 0:
                raise argparse.ArgumentTypeError(f"{what} must be >= 0 (0: never), got {text!r}")
        except ValueError:
            pass
        return parse_positive(text)

    return parse


def reconnect_flag(parser: argparse.ArgumentParser) -> None:
    """``--reconnect-within``: how long a database that stops answering is waited for."""
    parser.add_argument(
        "--reconnect-within",
        type=zero_or_positive("--reconnect-within", limits.MAX_SECONDS),
        default=RECONNECT_WITHIN,
        metavar="SECONDS",
        help="a database that stops answering mid-run is waited for this long; if it answers"
        " again, the run it went away in runs again from its seed (0: never wait);"
        f" default {RECONNECT_WITHIN:g}",
    )


def path_arg(text: str) -> Path:
    """A path flag or argument; an empty one is refused here, where argparse would read it as
    the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def shard_arg(text: str) -> tuple[int, int]:
    """``--shard I/N``: 1 <= I <= N, and N at most the runs limit."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N, got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    if count > limits.MAX_RUNS:
        raise argparse.ArgumentTypeError(f"--shard N must be at most {limits.MAX_RUNS}")
    return index, count


def run_flags() -> Parser:
    """The flags that shape many runs, shared by ``run`` and ``stress``."""
    flags = Parser(add_help=False)
    flags.add_argument(
        "--seed", type=int, default=0, help="base seed; run i uses a seed derived from it"
    )
    flags.add_argument(
        "--workers",
        type=positive(int, "--workers", limits.MAX_WORKERS),
        default=1,
        help="worker processes",
    )
    flags.add_argument(
        "--shard",
        type=shard_arg,
        default=(1, 1),
        metavar="I/N",
        help="run only shard I of N of the seed space (1-based)",
    )
    flags.add_argument(
        "--budget",
        type=positive(float, "--budget", limits.MAX_SECONDS),
        metavar="SECONDS",
        help="stop handing out runs after this long (shared by every group), and cut a run"
        " still going then (not counted); keep what finished",
    )
    flags.add_argument(
        "--settle-timeout",
        type=positive(float, "--settle-timeout", limits.MAX_SECONDS),
        default=10.0,
        metavar="SECONDS",
        help="a run that does not settle for this long is 'hung'",
    )
    flags.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    reconnect_flag(flags)
    return flags


def loudness_flags() -> Parser:
    """-q / -v, for the commands that print more than a verdict."""
    flags = Parser(add_help=False)
    loud = flags.add_mutually_exclusive_group()
    loud.add_argument(
        "-q", "--quiet", action="store_true", help="print only the verdict and errors; no bar"
    )
    loud.add_argument(
        "-v", "--verbose", action="store_true", help="also one line per run, and more detail"
    )
    return flags


def postgres_dsn(args: argparse.Namespace, adapters: Sequence[str]) -> str | None:
    """The Postgres DSN (``--pg-dsn``, else RACETAPE_PG_DSN, else local), checked reachable,
    where one of ``adapters`` is on a server a DSN names (postgres); None where none is."""
    if not needs_dsn(adapters):
        return None
    dsn = resolve_pg_dsn(args.pg_dsn)
    check_reachable(dsn)
    return dsn


def recorded_command(argv: Sequence[str]) -> str:
    """The command line as a result records it: passwords in any DSN redacted."""
    return shlex.join(["racetape", *(redact_dsn(arg) for arg in argv)])


def run_folder(root: Path, shard: tuple[int, int]) -> AbstractContextManager[Path]:
    """This run's traces folder under ``root``, of its own, so that old traces never pile up
    beside new ones; gone again after a run that kept no trace."""
    return folder_of_its_own(root, run_folder_name(shard, datetime.datetime.now(datetime.UTC)))


def settings_from(args: argparse.Namespace, **fields: Any) -> Settings:
    """Settings from the flags of :func:`run_flags` (and ``--runs``), and ``fields``."""
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


EXIT_ENVIRONMENT = 3


def environment_failed(doc: dict[str, Any]) -> int:
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


def stopped_by_signal(what: str) -> int:
    """A cooperative command stopped by a signal: one line, and ``128 + the signal``."""
    print(f"racetape: stopped by {signals.describe()}; {what}", file=sys.stderr)
    return signals.exit_code()


def print_result(doc: dict[str, Any], written: str) -> None:
    """The summary table, the notes, what was ``written``, and how to replay each group's
    first failing run."""
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
