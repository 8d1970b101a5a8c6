"""``racetape bench``: controlled vs jitter vs the floor vs the naive loop (see harness.bench)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from harness import bench, display, limits
from harness.adapters import ADAPTERS, DEFAULT_ADAPTER
from harness.bench.scaling import scaling_table
from harness.bench.unmodified import unmodified_line
from harness.commands.common import (
    Subcommands,
    UsageError,
    path_arg,
    positive,
    postgres_dsn,
    recorded_command,
)
from harness.files import check_writable, write_json_atomic


def add(commands: Subcommands) -> None:
    ben = commands.add_parser("bench", help="controlled vs jitter vs the floor vs the naive loop")
    ben.add_argument(
        "--adapter",
        action="append",
        choices=ADAPTERS,
        default=[],
        help=f"repeat; default: {DEFAULT_ADAPTER}",
    )
    ben.add_argument(
        "--runs",
        type=positive(int, "--runs", limits.MAX_RUNS),
        default=200,
        help="runs per figure (per seed for the fault-on figures)",
    )
    ben.add_argument(
        "--seeds",
        type=positive(int, "--seeds", limits.MAX_SEEDS),
        default=10,
        help="seeds for the fault-on runs-to-first-strand medians",
    )
    ben.add_argument(
        "--memory", metavar="N,M,...", help="also measure peak RSS after N, M, ... controlled runs"
    )
    ben.add_argument(
        "--scaling",
        type=positive(int, "--scaling", limits.MAX_RUNS),
        metavar="N",
        help="also run a stress-shaped job of N runs: each scenario's first vs last 1,000 runs/s",
    )
    ben.add_argument(
        "--json",
        type=path_arg,
        default=Path("reports/bench.json"),
        metavar="PATH",
        help="the benchmark document; default reports/bench.json",
    )
    ben.add_argument(
        "--pg-dsn", metavar="DSN", help="Postgres DSN; default RACETAPE_PG_DSN or local"
    )
    ben.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    adapters = list(dict.fromkeys(args.adapter or [DEFAULT_ADAPTER]))
    check_writable(args.json)
    pg_dsn = postgres_dsn(args, adapters)
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
        command=recorded_command(argv),
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
