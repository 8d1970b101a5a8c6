"""The detection-power matrix: how fast each scenario catches each fault, and that nothing is
found without one.

For every fault (and the fault-free manager) x scenario x adapter x strategy, ``seeds`` seeds of
``runs`` runs each: runs to the first strand per seed (median and max over the seeds), the strand
rate over all of them, and the cancel windows covered. A fault that no cell catches is a *gap*,
listed, never hidden; a strand without a fault is a *finding* (a bug in the reference manager
or in racetape), listed first.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.campaign import Group, Job, Progress, RunRecord, Settings, run_jobs
from harness.results import possible_windows
from harness.scenario import Scenario
from harness.unpointed import POINTS_OFF, runnable
from reftask.faults import Fault

MATRIX_SCHEMA = "racetape.matrix/1"


@dataclass
class Cell:
    fault: Fault | None
    group: Group
    first_strand: dict[int, int | None] = field(default_factory=dict)  # seed -> runs to first
    runs: int = 0
    strands: int = 0
    hung: int = 0
    windows: Counter[str] = field(default_factory=Counter)

    def add(self, seed: int, records: Sequence[RunRecord]) -> None:
        for record in sorted(records, key=lambda r: r.index):
            self.runs += 1
            self.strands += record.stranded
            self.hung += record.hung
            self.windows.update(record.landings)
            if record.stranded and self.first_strand.get(seed) is None:
                self.first_strand[seed] = record.index + 1
            self.first_strand.setdefault(seed, None)

    def runs_to_first(self, budget: int) -> tuple[int | None, int | None]:
        """Median and max runs to the first strand over the seeds; None: more than ``budget``."""
        values = [budget + 1 if v is None else v for v in self.first_strand.values()]
        if not values:
            return None, None
        median = statistics.median_low(values)
        worst = max(values)
        return (None if median > budget else median), (None if worst > budget else worst)


def run_matrix(
    scenarios: Sequence[Scenario],
    adapters: Sequence[str],
    strategies: Sequence[str],
    faults: Sequence[Fault | None],
    *,
    seeds: int,
    runs: int,
    settings: Settings,
    progress: Progress | None = None,
) -> tuple[list[Cell], bool]:
    """Run the matrix; returns its cells and whether Ctrl-C cut it short."""
    progress = progress or Progress()
    cells = {
        (fault, scenario.name, adapter, strategy): Cell(
            fault, Group(scenario, adapter, frozenset([fault] if fault else []), strategy)
        )
        for fault in faults
        for scenario in scenarios
        for adapter in adapters
        for strategy in strategies
        if strategy != POINTS_OFF or runnable(scenario)
    }
    jobs = [
        Job(cell.group, replace(settings, seed=seed), tuple(range(runs)))
        for cell in cells.values()
        for seed in range(seeds)
    ]
    by_group = {cell.group: cell for cell in cells.values()}
    progress.start(len(jobs) * runs)

    def keep(job: Job, records: list[RunRecord]) -> None:
        by_group[job.group].add(job.settings.seed, records)
        for record in records:
            progress.advance(job.group, record)

    try:
        interrupted = run_jobs(
            jobs, workers=settings.workers, pg_dsn=settings.pg_dsn, on_records=keep
        )
    finally:
        progress.finish()
    return list(cells.values()), interrupted


def matrix_document(
    cells: Sequence[Cell], *, seeds: int, runs: int, command: str, interrupted: bool
) -> dict[str, Any]:
    rows = []
    caught: dict[str, list[str]] = defaultdict(list)
    findings = []
    for cell in cells:
        median, worst = cell.runs_to_first(runs)
        group = cell.group
        # A points-off run has no named point, so no window to land in.
        possible = None if group.strategy == POINTS_OFF else possible_windows(group.scenario)
        fault = cell.fault.value if cell.fault else None
        row = {
            "fault": fault,
            "scenario": group.scenario.name,
            "adapter": group.adapter,
            "strategy": group.strategy,
            "seeds": len(cell.first_strand),
            "runs": cell.runs,
            "strands": cell.strands,
            "hung": cell.hung,
            "rate": round(cell.strands / cell.runs, 4) if cell.runs else None,
            "seeds_with_strand": sum(1 for v in cell.first_strand.values() if v is not None),
            "median_runs_to_first": median,
            "max_runs_to_first": worst,
            "windows_covered": (
                None if possible is None else sum(1 for w in possible if w in cell.windows)
            ),
            "windows_possible": None if possible is None else len(possible),
        }
        rows.append(row)
        if fault is None and (cell.strands or cell.hung):
            findings.append(row)
        elif fault is not None and cell.strands:
            caught[fault].append(group.scenario.name)
    faults = sorted({c.fault.value for c in cells if c.fault})
    points_off: dict[str, list[str]] = {}
    for row in rows:
        if row["strategy"] == POINTS_OFF and row["fault"] is not None:
            found = points_off.setdefault(f"{row['fault']} / {row['adapter']}", [])
            if row["strands"]:
                found.append(str(row["scenario"]))
    return {
        "schema": MATRIX_SCHEMA,
        "command": command,
        "seeds": seeds,
        "runs_per_seed": runs,
        "interrupted": interrupted,
        "cells": rows,
        "findings": findings,
        "caught_by": {fault: sorted(set(caught[fault])) for fault in faults},
        "gaps": [fault for fault in faults if not caught[fault]],
        "best": _best(rows),
        "points_off_caught_by": {key: sorted(v) for key, v in sorted(points_off.items())},
    }


def _best(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each (fault, adapter): the cell that strands soonest (lowest median, then rate)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["fault"] is None or row["median_runs_to_first"] is None:
            continue
        key = f"{row['fault']} / {row['adapter']}"
        rank = (row["median_runs_to_first"], -row["rate"], row["max_runs_to_first"] or 10**9)
        current = best.get(key)
        if current is None or rank < current["_rank"]:
            best[key] = {**row, "_rank": rank}
    return {k: {f: v for f, v in row.items() if f != "_rank"} for k, row in sorted(best.items())}


def _runs(value: int | None, budget: int) -> str:
    return f">{budget}" if value is None else str(value)


def matrix_markdown(doc: dict[str, Any]) -> str:
    """The matrix as Markdown: the verdict first (findings, gaps, best cell per fault), then
    every cell."""
    budget = doc["runs_per_seed"]

    def first(row: dict[str, Any]) -> str:
        median, worst = row["median_runs_to_first"], row["max_runs_to_first"]
        return f"{_runs(median, budget)} / {_runs(worst, budget)}"

    lines = [
        "# racetape detection-power matrix",
        "",
        f"`{doc['command']}`",
        "",
        f"{doc['seeds']} seeds x {budget} runs per cell. *median / max* = runs to the first"
        f" strand over the seeds (`>{budget}`: not within {budget} runs); *rate* = stranded"
        " runs / runs.",
        "",
    ]
    if doc["findings"]:
        lines.append("**Findings: strands without any fault:**")
        lines += [
            f"- {r['scenario']} / {r['adapter']} / {r['strategy']}: {r['strands']}/{r['runs']}"
            for r in doc["findings"]
        ]
    else:
        lines.append("Fault-free manager: **0 strands** in every cell.")
    lines += ["", f"Gaps (faults no scenario caught): {', '.join(doc['gaps']) or 'none'}.", ""]
    if doc.get("points_off_caught_by"):
        lines += [
            f"With every named control point off ({POINTS_OFF}: the controlled loop through the"
            " stores' own drivers, no crash scenario; a run opens its store itself, and a"
            " connection's start-up is not decided, see docs/drivers.md):",
            "",
        ]
        lines += [
            f"- {key}: {', '.join(found) if found else '**not caught**'}"
            for key, found in doc["points_off_caught_by"].items()
        ]
        lines.append("")
    lines += [
        "## Best scenario per fault",
        "",
        "| fault / adapter | scenario | strategy | median / max | rate | windows |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in doc["best"].items():
        lines.append(
            f"| {key} | {row['scenario']} | {row['strategy']} | {first(row)}"
            f" | {_rate(row)} | {_windows(row)} |"
        )
    lines += [
        "",
        "## Every cell",
        "",
        "| fault | scenario | adapter | strategy | median / max | rate | strands / runs | hung"
        " | windows |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in doc["cells"]:
        lines.append(
            f"| {row['fault'] or 'none'} | {row['scenario']} | {row['adapter']}"
            f" | {row['strategy']} | {first(row)} | {_rate(row)}"
            f" | {row['strands']}/{row['runs']} | {row['hung']} | {_windows(row)} |"
        )
    return "\n".join(lines) + "\n"


def _rate(row: dict[str, Any]) -> str:
    """A cell's strand rate; ``-`` for a cell no run reached (an interrupted matrix)."""
    return "-" if row["rate"] is None else f"{row['rate']:.2f}"


def _windows(row: dict[str, Any]) -> str:
    if row["windows_possible"] is None:
        return "-"
    return f"{row['windows_covered']}/{row['windows_possible']}"
