"""``racetape report``: render a result, compare two, merge shards."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import display
from harness.commands.common import Subcommands, path_arg, recorded_command
from harness.files import check_writable, write_all_atomic, write_json_atomic, write_text_atomic
from harness.results import load_result

REPORT_COMMANDS = ("render", "compare", "merge")


def add(commands: Subcommands) -> None:
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
        type=path_arg,
        metavar="RESULT.json",
        help="a result (run, merge, pytest --race-json)",
    )
    render.add_argument("--html", type=path_arg, metavar="PATH", help="self-contained HTML page")
    render.add_argument(
        "--markdown", type=path_arg, metavar="PATH", help="Markdown (PR comment, step summary)"
    )
    render.add_argument("--junit", type=path_arg, metavar="PATH", help="JUnit XML")
    render.add_argument(
        "--base",
        type=path_arg,
        default=Path(),
        metavar="DIR",
        help="the folder the result's trace paths are relative to; default: this one",
    )
    render.set_defaults(handler=_report_render)
    compare = reports.add_parser("compare", help="before vs after, with verdicts; 1 if worse")
    compare.add_argument("before", type=path_arg, metavar="BEFORE.json", help="the result before")
    compare.add_argument("after", type=path_arg, metavar="AFTER.json", help="the result after")
    compare.add_argument("--markdown", type=path_arg, metavar="PATH", help="also write Markdown")
    compare.set_defaults(handler=_report_compare)
    merge = reports.add_parser("merge", help="join shard results into one document")
    merge.add_argument(
        "shards", type=path_arg, nargs="+", metavar="SHARD.json", help="the results to join"
    )
    merge.add_argument(
        "--json",
        type=path_arg,
        default=Path("reports/merged.json"),
        metavar="PATH",
        help="the merged document; default reports/merged.json",
    )
    merge.set_defaults(handler=_report_merge)


def shorthand(argv: list[str]) -> list[str]:
    """``report RESULT.json ...`` is ``report render RESULT.json ...``."""
    if argv[:1] == ["report"] and argv[1:2] and argv[1] not in (*REPORT_COMMANDS, "-h", "--help"):
        return ["report", "render", *argv[1:]]
    return argv


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
    merged = merge_documents(named, command=recorded_command(argv))
    write_json_atomic(args.json, merged)
    out = display.console()
    out.print(display.summary_table(merged))
    out.print(f"merged {len(named)} results (shard {merged['settings']['shard']}): {args.json}")
    return 0
