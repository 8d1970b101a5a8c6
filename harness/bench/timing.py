"""Measuring: the figures' runs in interleaved rounds, runs to the first strand, and the
ratios between the figures of one adapter.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.adapters import Database
from harness.bench.workloads import (
    GUARD_OFF,
    Log,
    NaiveLoop,
    bare_run,
    controlled_mode,
    in_own_loop,
    jitter_mode,
    naive_loop,
    run_strands,
)
from racetape._target import Mode
from reftask.faults import Fault

WARMUP_RUNS = 3
WARMUP_SEED = 10**9  # warm-up runs use seeds no measured run uses
FIGURE_KEYS = (
    "controlled",
    "controlled_fault",
    "jitter",
    "jitter_fault",
    "floor",
    "naive",
    "naive_fault",
)
"""The figures every adapter's result has; the ``_fault`` ones carry runs to the first strand."""


@dataclass
class Figure:
    """``runs`` runs in ``seconds``; for a fault-on figure, how soon and how often it stranded."""

    name: str
    runs: int
    seconds: float
    cpu_seconds: float = 0.0  # this process's CPU time (every thread) over the timed runs
    runs_to_first_strand: float | None = None  # median; None: not measured; inf: none found
    strands: int | None = None  # stranded runs among the timed ``runs``
    budget: int | None = None  # the most runs each repeat had to find its first strand
    repeats: int | None = None  # how many repeats the median is over

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0

    @property
    def found(self) -> bool:
        return self.runs_to_first_strand is not None and self.runs_to_first_strand != float("inf")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["cpu_seconds"] = round(self.cpu_seconds, 3)
        data["runs_per_s"] = round(self.runs_per_s, 1)
        if self.runs_to_first_strand == float("inf"):
            data["runs_to_first_strand"] = None
            data["note"] = f"no strand within {self.budget} runs in the median repeat"
        return data


Chunk = Callable[[int, int], tuple[float, list[int]]]
"""Runs ``count`` runs from index ``start`` in an event loop of its own, after untimed warm-up
runs: the seconds the timed runs took and the 0-based indices of those that stranded."""


async def _timed_runs(
    one: Callable[[int], Coroutine[Any, Any, bool]],
    indices: range,
    *,
    stop_at_first: bool = False,
) -> tuple[float, list[int]]:
    """``one(i)`` for each index: seconds taken and the indices that stranded."""
    stranded: list[int] = []
    began = time.perf_counter()
    for index in indices:
        if await one(index):
            stranded.append(index)
            if stop_at_first:
                break
    return time.perf_counter() - began, stranded


def harness_chunk(
    db: Database, mode_of: Callable[[int, int], Mode], faults: frozenset[Fault]
) -> Chunk:
    """Runs of a racetape mode: run ``i`` uses ``mode_of(0, i)``, as ``racetape run`` would."""

    def chunk(start: int, count: int) -> tuple[float, list[int]]:
        async def body() -> tuple[float, list[int]]:
            store = await db.store(faults)
            for index in range(WARMUP_RUNS):
                await run_strands(store, faults, mode_of(WARMUP_SEED, index))
            indices = range(start, start + count)
            return await _timed_runs(lambda i: run_strands(store, faults, mode_of(0, i)), indices)

        return in_own_loop(db, body)

    return chunk


def floor_chunk(db: Database) -> Chunk:
    def chunk(start: int, count: int) -> tuple[float, list[int]]:
        async def body() -> tuple[float, list[int]]:
            store = await db.store()
            for _ in range(WARMUP_RUNS):
                await bare_run(store)

            async def one(index: int) -> bool:
                await bare_run(store)
                return False

            return await _timed_runs(one, range(count))

        return in_own_loop(db, body)

    return chunk


def naive_chunk(db: Database, faults: frozenset[Fault]) -> Chunk:
    """One naive loop per chunk, in its own event loop (the loop drains by shutting down the
    event loop's executor)."""

    def chunk(start: int, count: int) -> tuple[float, list[int]]:
        async def body() -> NaiveLoop:
            return await naive_loop(await db.store(faults), count, faults, warmup=WARMUP_RUNS)

        loop = in_own_loop(db, body)
        return loop.seconds, [start + i for i, bad in enumerate(loop.stranded) if bad]

    return chunk


@dataclass
class _Tally:
    runs: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    stranded: list[int] = field(default_factory=list)


def interleaved(chunks: dict[str, Chunk], runs: int, rounds: int, log: Log) -> dict[str, _Tally]:
    """``runs`` runs of every chunk kind, in ``rounds`` rounds that take each kind in turn.

    Interleaving keeps the figures side by side: a change in the machine's load during the bench
    falls on every figure alike instead of on whichever ran at the time.
    """
    tallies = {key: _Tally() for key in chunks}
    bounds = [runs * r // rounds for r in range(rounds + 1)]
    for round_index, (start, end) in enumerate(itertools.pairwise(bounds)):
        if end == start:
            continue
        log(f"  round {round_index + 1}/{rounds}: runs {start}..{end - 1}")
        for key, chunk in chunks.items():
            cpu_before = _cpu_seconds()
            seconds, stranded = chunk(start, end - start)
            tally = tallies[key]
            tally.cpu_seconds += _cpu_seconds() - cpu_before
            tally.runs += end - start
            tally.seconds += seconds
            tally.stranded += stranded
    return tallies


def first_strands(chunk: Callable[[int], int | None], repeats: int) -> list[int | None]:
    """Runs to the first strand (1-based) of each repeat 1..repeats-1; None if none was found."""
    return [chunk(repeat) for repeat in range(1, repeats)]


def harness_first_strand(
    db: Database, mode_of: Callable[[int, int], Mode], runs: int
) -> Callable[[int], int | None]:
    """Seed ``seed`` of a racetape mode, with the fault, run until its first strand."""

    def first(seed: int) -> int | None:
        async def body() -> tuple[float, list[int]]:
            store = await db.store(GUARD_OFF)
            return await _timed_runs(
                lambda i: run_strands(store, GUARD_OFF, mode_of(seed, i)),
                range(runs),
                stop_at_first=True,
            )

        _, stranded = in_own_loop(db, body)
        return stranded[0] + 1 if stranded else None

    return first


def naive_first_strand(db: Database, runs: int) -> Callable[[int], int | None]:
    """A fresh naive loop of ``runs`` runs with the fault (the loop has no seed to vary)."""

    def first(repeat: int) -> int | None:
        _, stranded = naive_chunk(db, GUARD_OFF)(0, runs)
        return stranded[0] + 1 if stranded else None

    return first


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _median_first(firsts: Sequence[int | None]) -> float:
    return statistics.median_low([float("inf") if f is None else float(f) for f in firsts])


NAMES = {
    "floor": "(c) floor: the run's store calls, bare",
    "controlled": "(a) controlled, fault-free",
    "controlled_fault": "(a) controlled, no-terminal-guard",
    "jitter": "(b) jitter, fault-free",
    "jitter_fault": "(b) jitter, no-terminal-guard",
    "naive": "(d) naive loop, fault-free",
    "naive_fault": "(d) naive loop, no-terminal-guard",
}


def bench_adapter(
    adapter: str, *, runs: int, seeds: int, pg_dsn: str | None, log: Log, rounds: int = 4
) -> dict[str, Any]:
    """Every figure of one adapter, and the ratios between them."""
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    try:
        log(f"{adapter}: throughput, every figure in turn")
        tallies = interleaved(
            {
                "floor": floor_chunk(db),
                "controlled": harness_chunk(db, controlled_mode, frozenset()),
                "controlled_fault": harness_chunk(db, controlled_mode, GUARD_OFF),
                "jitter": harness_chunk(db, jitter_mode, frozenset()),
                "jitter_fault": harness_chunk(db, jitter_mode, GUARD_OFF),
                "naive": naive_chunk(db, frozenset()),
                "naive_fault": naive_chunk(db, GUARD_OFF),
            },
            runs,
            min(rounds, runs),
            log,
        )
        log(f"{adapter}: runs to the first strand, {seeds} repeats each")
        repeats = {
            "controlled_fault": first_strands(
                harness_first_strand(db, controlled_mode, runs), seeds
            ),
            "jitter_fault": first_strands(harness_first_strand(db, jitter_mode, runs), seeds),
            "naive_fault": first_strands(naive_first_strand(db, runs), seeds),
        }
    finally:
        asyncio.run(db.cleanup())
    figures: dict[str, Figure] = {}
    for key in FIGURE_KEYS:
        tally = tallies[key]
        figure = Figure(NAMES[key], tally.runs, tally.seconds, cpu_seconds=tally.cpu_seconds)
        if key != "floor":  # the floor runs no oracle: it has nothing to strand
            figure.strands = len(tally.stranded)
        if key in repeats:
            firsts = [tally.stranded[0] + 1 if tally.stranded else None, *repeats[key]]
            figure.runs_to_first_strand = _median_first(firsts)
            figure.budget = runs
            figure.repeats = len(firsts)
        figures[key] = figure
    return {"adapter": adapter, "figures": figures, "ratios": ratios(figures)}


def ratios(figures: dict[str, Figure]) -> dict[str, Any]:
    """(a)/(d) and (c)/(a) in runs/s; (d)/(a) in runs to the first strand.

    The detection ratio is a lower bound (``detection_lower_bound``) when the naive loop found no
    strand within its budget; None when controlled mode found none (it then failed its job).
    """
    a, c, d = figures["controlled"], figures["floor"], figures["naive"]
    a_fault, d_fault = figures["controlled_fault"], figures["naive_fault"]
    detection: float | None = None
    lower_bound = False
    if a_fault.found and a_fault.runs_to_first_strand:
        d_first = d_fault.runs_to_first_strand if d_fault.found else d_fault.budget
        lower_bound = not d_fault.found
        if d_first is not None:
            detection = round(d_first / a_fault.runs_to_first_strand, 1)
    return {
        "controlled_over_naive": round(a.runs_per_s / d.runs_per_s, 2),
        "floor_over_controlled": round(c.runs_per_s / a.runs_per_s, 2),
        "naive_over_controlled_runs_to_first_strand": detection,
        "detection_lower_bound": lower_bound,
    }
