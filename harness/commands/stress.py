"""``racetape stress``: the CI stress job, every scenario and adapter, fault-free."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import display, limits, signals, stress
from harness.adapters import ADAPTERS, needs_dsn, resolve_pg_dsn
from harness.campaign import run_groups
from harness.commands.common import (
    Subcommands,
    environment_failed,
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
from harness.files import check_writable
from harness.results import result_document
from harness.scenario import find_scenarios


def add(commands: Subcommands) -> None:
    runs = run_flags()
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
        type=positive(int, "--runs", limits.MAX_RUNS),
        default=1000,
        help="runs per group; default 1000",
    )
    sts.add_argument(
        "--out",
        type=path_arg,
        default=Path("reports/stress"),
        metavar="DIR",
        help="result.json, summary.md, junit.xml and traces/; default reports/stress",
    )
    sts.set_defaults(handler=_stress)


def _stress(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.adapter:
        adapters, notes = list(dict.fromkeys(args.adapter)), list[str]()
        pg_dsn = postgres_dsn(args, adapters)
    else:
        pg_dsn = resolve_pg_dsn(args.pg_dsn)
        adapters, notes = stress.available_adapters(pg_dsn)
    files = stress.StressFiles.under(args.out)
    check_writable(files.result, files.markdown, files.junit, folders=(args.out / "traces",))
    groups = stress.stress_groups(find_scenarios(), adapters)
    with run_folder(args.out / "traces", args.shard) as traces:
        settings = settings_from(
            args, traces_dir=traces, pg_dsn=pg_dsn if needs_dsn(adapters) else None
        )
        results = run_groups(groups, settings, display.progress_for_terminal())
    doc = result_document(results, settings, command=recorded_command(argv), notes=notes)
    stress.write_files(doc, files)
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        _append_step_summary(Path(summary), files.markdown.read_text())
    print_result(doc, f"result: {files.result}, {files.markdown}, {files.junit}")
    if signals.stop_requested() or any(g["stopped"] == "interrupted" for g in doc["groups"]):
        return stopped_by_signal(f"wrote the {doc['totals']['runs']} runs that finished")
    if code := environment_failed(doc):
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
