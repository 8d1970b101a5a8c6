"""``racetape bench --scaling N``: does a run's cost grow with the runs before it?

One long job of about ``N`` runs per adapter, in one process on one database, shaped the way
``racetape stress`` shapes its job: every catalog scenario, fault-free, under the ``random`` and
``pct`` strategies, ``N`` split evenly over those groups, and the chunks handed out one group
after another in turn (:func:`harness.campaign.spread_jobs`, the same call ``racetape run`` and
``racetape stress`` use). Each run goes through :func:`harness.campaign.run_indices`, the per-run
path of those commands (execute, judge, record).

The figure, per scenario: runs per second over its first ``window`` runs and over its last
``window`` runs, and their ratio last/first. A run's share of time is the wall clock from the
previous run's end (of any group) to its own, so it includes every cost the job pays around the
run, not only the run itself. Where a scenario ran fewer than ``2 * window`` runs, the window is
half of its runs, so the two never overlap. A ratio well under 1 means the scenario's runs grew
slower as the database filled: their cost depends on the runs before them.

Timing is wall clock, and the two windows are minutes apart: on a shared machine a change of
load between them moves that ratio as much as anything the database does (the document records
the load before and after). The windows' CPU time says more there (``cpu_ratio``, runs per CPU
second, last over first: this process's CPU, every thread's, which on SQLite is all of a run's
work and on Postgres only the client's). And the job ends with a check the load cannot move,
side by side:
each scenario's next ``side`` runs (the same seeds twice) on the full database and on a fresh,
empty one, in alternating chunks of ``SIDE_CHUNK``, so both see the same moments of the machine.
``full_over_fresh`` is the full database's runs/s over the fresh one's (the median over the chunk
pairs): under 1 by more than the noise means a run costs more for the runs before it.

Also the database's size at the end of the job (the SQLite file and its WAL; the Postgres
schema's tables with their indexes and TOAST, and their dead rows).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from rich.table import Table

from harness.adapters import Database
from harness.campaign import Group, GroupResult, RunRecord, Settings, run_indices, spread_jobs
from harness.scenario import Scenario, find_scenarios
from harness.stress import STRESS_STRATEGIES, stress_groups

WINDOW = 1000
SIDE = 400
"""Runs per scenario on each database in the side-by-side check."""
SIDE_CHUNK = 10
TARGET = 1 / 1.2
"""The target: a scenario's last window at no less than this fraction of its first's runs/s."""

Log = Callable[[str], None]


@dataclass
class Timeline:
    """Every finished run of one scenario, in the order the job finished them."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # this process's, every thread's
    strands: int = 0
    hung: int = 0


def window_rates(seconds: Sequence[float], window: int) -> dict[str, Any]:
    """Runs per second over the first and the last ``window`` of ``seconds`` (one a run).

    The window shrinks to half the runs when there are fewer than ``2 * window``, so the two
    windows never share a run; with fewer than two runs there is nothing to compare.
    """
    size = min(window, len(seconds) // 2)
    if size == 0:
        return {"window": 0, "first_runs_per_s": None, "last_runs_per_s": None, "ratio": None}
    first, last = sum(seconds[:size]), sum(seconds[-size:])
    first_rate = size / first if first > 0 else None
    last_rate = size / last if last > 0 else None
    ratio = last_rate / first_rate if first_rate and last_rate else None
    return {
        "window": size,
        "first_runs_per_s": None if first_rate is None else round(first_rate, 1),
        "last_runs_per_s": None if last_rate is None else round(last_rate, 1),
        "ratio": None if ratio is None else round(ratio, 3),
    }


def scenario_rows(
    timelines: dict[str, Timeline], window: int, target: float = TARGET
) -> list[dict[str, Any]]:
    """One row per scenario: its runs, both windows' rates, last/first, and the target's verdict."""
    rows = []
    for name, timeline in timelines.items():
        rates = window_rates(timeline.seconds, window)
        met = None if rates["ratio"] is None else rates["ratio"] >= target
        cpu = window_rates(timeline.cpu_seconds, window) if timeline.cpu_seconds else None
        rows.append(
            {
                "scenario": name,
                "runs": len(timeline.seconds),
                **rates,
                "cpu_ratio": cpu and cpu["ratio"],
                "meets_target": met,
                "strands": timeline.strands,
                "hung": timeline.hung,
            }
        )
    return rows


async def database_size(db: Database) -> dict[str, Any]:
    """What the job's database holds at its end, in bytes (and Postgres's dead rows)."""
    if db.sqlite_path is not None:

        def size(path: Path) -> int:
            return path.stat().st_size if path.exists() else 0

        main, wal = size(db.sqlite_path), size(Path(f"{db.sqlite_path}-wal"))
        return {"bytes": main + wal, "file_bytes": main, "wal_bytes": wal}
    assert db.pg_dsn is not None
    conn = await asyncpg.connect(db.pg_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT COALESCE(SUM(pg_total_relation_size(relid)), 0)::bigint AS bytes,"
            " COALESCE(SUM(n_live_tup), 0)::bigint AS live, COALESCE(SUM(n_dead_tup), 0)::bigint"
            " AS dead FROM pg_stat_user_tables WHERE schemaname = $1",
            db.pg_schema,
        )
    finally:
        await conn.close()
    assert row is not None  # an aggregate always yields one row
    return {"bytes": row["bytes"], "live_rows": row["live"], "dead_rows": row["dead"]}


def scaling_groups(scenarios: Sequence[Scenario], adapter: str) -> list[Group]:
    """The stress job's groups on one adapter: every scenario under random and pct, no faults."""
    return stress_groups(scenarios, [adapter])


async def _long_job(
    db: Database,
    groups: Sequence[Group],
    settings: Settings,
    log: Log,
    log_every: float,
) -> tuple[dict[str, Timeline], float]:
    """Every job of the spread, in order, on ``db``: each scenario's timeline and the seconds."""
    timelines = {g.scenario.name: Timeline() for g in groups}
    results = {g: GroupResult(g) for g in groups}  # kept as run_groups keeps them
    jobs = spread_jobs(groups, range(settings.runs), settings)
    total = sum(len(job.indices) for job in jobs)
    done = 0
    began = last = logged = time.perf_counter()
    last_cpu = time.process_time()

    def on_record(group: Group, record: RunRecord) -> None:
        nonlocal last, last_cpu, done, logged
        now, cpu_now = time.perf_counter(), time.process_time()
        timeline = timelines[group.scenario.name]
        timeline.seconds.append(now - last)
        timeline.cpu_seconds.append(cpu_now - last_cpu)
        last_cpu = cpu_now
        timeline.strands += record.stranded
        timeline.hung += record.hung
        results[group].add(record, settings.max_traces)
        last, done = now, done + 1
        if now - logged >= log_every:
            logged = now
            log(f"  {db.adapter}: {done}/{total} runs, {now - began:.0f} s")

    for job in jobs:
        await run_indices(
            db,
            job.group,
            job.indices,
            job.settings,
            keep_traces=job.keep_traces,
            on_record=partial(on_record, job.group),
        )
    return timelines, time.perf_counter() - began


@dataclass
class Pairs:
    """One scenario's side-by-side chunks: the seconds of each on the full and the fresh database
    (the same seeds, one right after the other)."""

    runs: list[int] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    fresh: list[float] = field(default_factory=list)


async def _side_by_side(
    full: Database,
    fresh: Database,
    groups: Sequence[Group],
    settings: Settings,
    runs: int,
) -> dict[str, Pairs]:
    """Each scenario's ``runs`` more runs on ``full`` and, with the same seeds, on ``fresh``, a
    chunk on one right after the same chunk on the other (which goes first alternates)."""
    pairs = {g.scenario.name: Pairs() for g in groups}
    await fresh.store()  # opened (schema, first connection) before any timing
    per_group = max(1, runs // len(STRESS_STRATEGIES))  # a scenario's, split over strategies
    first = settings.runs  # indices the long job did not use: seeds it did not run
    for turn, start in enumerate(range(first, first + per_group, SIDE_CHUNK)):
        indices = range(start, min(start + SIDE_CHUNK, first + per_group))
        for group in groups:
            took = {}
            order = (("full", full), ("fresh", fresh))
            for key, db in order if turn % 2 == 0 else order[::-1]:
                began = time.perf_counter()
                await run_indices(db, group, indices, settings, keep_traces=0)
                took[key] = time.perf_counter() - began
            chunks = pairs[group.scenario.name]
            chunks.runs.append(len(indices))
            chunks.full.append(took["full"])
            chunks.fresh.append(took["fresh"])
    return pairs


def side_rows(pairs: dict[str, Pairs]) -> dict[str, dict[str, Any]]:
    """Runs/s on the full and the fresh database per scenario, and full over fresh: the median
    over the chunk pairs of the fresh chunk's seconds over the full one's, so that a burst of
    load on a few chunks (this machine is shared) moves it little."""
    rows = {}
    for name, chunks in pairs.items():
        runs, full_s, fresh_s = sum(chunks.runs), sum(chunks.full), sum(chunks.fresh)
        per_pair = [b / a for a, b in zip(chunks.full, chunks.fresh, strict=True) if a > 0]
        rows[name] = {
            "side_runs": runs,
            "full_runs_per_s": round(runs / full_s, 1) if full_s else None,
            "fresh_runs_per_s": round(runs / fresh_s, 1) if fresh_s else None,
            "full_over_fresh": round(statistics.median(per_pair), 3) if per_pair else None,
        }
    return rows


def scaling_adapter(
    adapter: str,
    runs: int,
    *,
    pg_dsn: str | None,
    log: Log = lambda line: None,
    window: int = WINDOW,
    scenarios: Sequence[Scenario] | None = None,
    seed: int = 0,
    side: int = SIDE,
    log_every: float = 30.0,
) -> dict[str, Any]:
    """The scaling figure of one adapter over a job of about ``runs`` runs, then the side-by-side
    check of ``side`` runs per scenario, at most as many as the job ran of each (see the module).
    """
    groups = scaling_groups(scenarios if scenarios is not None else find_scenarios(), adapter)
    per_group = max(1, runs // len(groups))
    side = min(side, per_group * len(STRESS_STRATEGIES))
    settings = Settings(runs=per_group, seed=seed, pg_dsn=pg_dsn)
    db, fresh = Database.fresh(adapter, pg_dsn=pg_dsn), Database.fresh(adapter, pg_dsn=pg_dsn)
    log(f"{adapter}: scaling, {per_group * len(groups)} runs over {len(groups)} groups")

    async def main() -> tuple[dict[str, Timeline], float, dict[str, Any], dict[str, Any]]:
        try:
            timelines, seconds = await _long_job(db, groups, settings, log, log_every)
            size = await database_size(db)
            log(f"{adapter}: side by side, {side} runs per scenario on the full and a fresh one")
            beside = await _side_by_side(db, fresh, groups, settings, side)
            return timelines, seconds, size, side_rows(beside)
        finally:
            await db.cleanup()
            await fresh.cleanup()

    load_before = [round(x, 2) for x in os.getloadavg()]
    timelines, seconds, size, beside = asyncio.run(main())
    done = sum(len(t.seconds) for t in timelines.values())
    rows = [{**row, **beside[row["scenario"]]} for row in scenario_rows(timelines, window)]
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    side_ratios = [r["full_over_fresh"] for r in rows if r["full_over_fresh"] is not None]
    return {
        "adapter": adapter,
        "runs": done,
        "runs_per_group": per_group,
        "groups": len(groups),
        "strategies": sorted({g.strategy for g in groups}),
        "seconds": round(seconds, 1),
        "window": window,
        "target_ratio": round(TARGET, 3),
        "meets_target": bool(ratios) and all(r["meets_target"] for r in rows if r["ratio"]),
        "worst_ratio": min(ratios) if ratios else None,
        "side": side,
        "side_meets_target": bool(side_ratios) and min(side_ratios) >= TARGET,
        "worst_full_over_fresh": min(side_ratios) if side_ratios else None,
        "scenarios": rows,
        "database": {**size, "bytes_per_run": round(size["bytes"] / done, 1) if done else None},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def scaling_table(result: dict[str, Any]) -> Table:
    """One adapter's scaling figure: both windows per scenario and last/first."""
    table = Table(
        title=f"racetape bench --scaling: {result['adapter']}, {result['runs']} runs in "
        f"{result['seconds']:.0f} s"
    )
    columns = ("scenario", "runs", "window", "first runs/s", "last runs/s", "last/first",
               "cpu last/first", "full runs/s", "fresh runs/s", "full/fresh")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for row in result["scenarios"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        if row["meets_target"] is False:
            ratio += " (below)"
        beside = "-" if row["full_over_fresh"] is None else f"{row['full_over_fresh']:.2f}"
        if row["full_over_fresh"] is not None and row["full_over_fresh"] < result["target_ratio"]:
            beside += " (below)"
        table.add_row(
            row["scenario"], str(row["runs"]), str(row["window"]),
            str(row["first_runs_per_s"] or "-"), str(row["last_runs_per_s"] or "-"), ratio,
            "-" if row["cpu_ratio"] is None else f"{row['cpu_ratio']:.2f}",
            str(row["full_runs_per_s"] or "-"), str(row["fresh_runs_per_s"] or "-"), beside,
        )  # fmt: skip
    database = result["database"]
    size = f"database {database['bytes'] / 2**20:.1f} MB ({database['bytes_per_run']} B a run"
    if "wal_bytes" in database:
        size += f"; WAL {database['wal_bytes'] / 2**20:.1f} MB"
    if "dead_rows" in database:
        size += f"; {database['dead_rows']} dead rows of {database['live_rows']}"
    verdict = "met" if result["meets_target"] else "not met"
    side = "met" if result["side_meets_target"] else "not met"
    table.caption = (
        f"{size}); target {result['target_ratio']}: last/first {verdict} (worst"
        f" {result['worst_ratio']}), full/fresh over {result['side']} runs a scenario {side}"
        f" (worst {result['worst_full_over_fresh']}); load {result['load_before']} ->"
        f" {result['load_after']}"
    )
    return table
