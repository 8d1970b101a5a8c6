"""The CI stress job: every scenario on every available adapter, fault-free, under the random and
pct strategies, until its runs or its budget are spent.

Its contract is the CI gate's: any strand or hang fails the job (:func:`failed`), and every run
leaves the same three files, written atomically, so a job cut short still leaves what finished:
``result.json`` (``racetape.result/1``), ``summary.md`` and ``junit.xml`` rendered from it, and
the first failing runs' traces under ``traces/``. Trace paths in the result are relative to
where the job ran, as for ``racetape run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.adapters import REGISTRY
from harness.campaign import Group
from harness.files import strict_json, write_all_atomic
from harness.pgserver import PostgresUnavailable
from harness.scenario import Scenario

STRESS_STRATEGIES = ("random", "pct")


@dataclass(frozen=True)
class StressFiles:
    result: Path
    markdown: Path
    junit: Path

    @classmethod
    def under(cls, folder: Path) -> StressFiles:
        return cls(folder / "result.json", folder / "summary.md", folder / "junit.xml")


def available_adapters(pg_dsn: str) -> tuple[list[str], list[str]]:
    """Every adapter that can be used here, and a note for each one that cannot."""
    adapters, notes = [], []
    for adapter in REGISTRY.values():
        try:
            adapter.check_reachable(pg_dsn)
        except PostgresUnavailable as exc:
            notes.append(f"{adapter.name} left out: {exc} (set RACETAPE_PG_DSN or --pg-dsn)")
            continue
        adapters.append(adapter.name)
    return adapters, notes


def stress_groups(scenarios: Sequence[Scenario], adapters: Sequence[str]) -> list[Group]:
    """One group per scenario, adapter and stress strategy; no faults."""
    return [
        Group(scenario, adapter, frozenset(), strategy)
        for scenario in scenarios
        for adapter in adapters
        for strategy in STRESS_STRATEGIES
    ]


def failed(doc: dict[str, Any]) -> bool:
    """The gate: a stress job fails on any strand or hang."""
    return bool(doc["totals"]["strands"] or doc["totals"]["hung"])


def write_files(doc: dict[str, Any], files: StressFiles) -> None:
    """The result and the two reports CI reads, rendered from it: all three written, or none."""
    from harness.report import render_junit, render_markdown  # matplotlib: load when used

    write_all_atomic(
        [
            (files.result, strict_json(doc)),
            (files.markdown, render_markdown(doc)),
            (files.junit, render_junit(doc, Path())),
        ]
    )
