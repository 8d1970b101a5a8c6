"""``racetape bench``: the seed's race measured four ways, side by side, in one process.

Per adapter, on the late-progress race (a runner with two progress writes, cancelled while the
first is in flight):

* (a) controlled: racetape's controlled mode, ``random`` strategy, fault-free and with
  ``no-terminal-guard``;
* (b) jitter: racetape's jitter mode on the same scenario;
* (c) floor: the store calls one such run makes (create, two status writes, three appends, the
  oracle's two reads), executed bare through the adapter's SQL primitives: no manager, no
  threads, no harness, no control points;
* (d) naive: the cancel test the way the seed's tests were written: submit, await a
  ``started = asyncio.Event()`` the runner sets first, cancel, wait for the task; repeated in a
  loop with no control, the tapes judged after the loop once every thread has drained.

With the fault on, (a), (b) and (d) also report runs to the first strand: the median over
``seeds`` repeats (seeds for (a) and (b); independent loops for (d), which has no seed), each
given at most ``runs`` runs. Ratios: throughput (a)/(d), floor over controlled (c)/(a), and
detection (d)/(a) in runs to the first strand (a lower bound when (d) found nothing).

The throughput figures are measured in interleaved rounds (a share of each figure's runs in
turn), so a change in the machine's load falls on all of them alike. Every share runs in an
event loop of its own on fresh connections, after a few untimed warm-up runs, so no figure pays
for another's threads or connection set-up. Timing is wall clock and depends on the machine and
its load (the document records the load average); the runs-to-first-strand figures of (a) do
not (they are seeded and controlled). Postgres runs use racetape's session settings
(:data:`harness.adapters.PG_SESSION`), as ``racetape run`` does.

:func:`control_point_cost` measures what a control point costs the reference code when no
controller is installed (the price every production call pays), against an empty function.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import itertools
import os
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

from harness.adapters import PG_SESSION, Database
from harness.bench_unmodified import asyncpg_figures, unmodified_figures
from harness.oracle import check_task
from harness.run import execute
from harness.scaling import scaling_adapter
from harness.scenario import Scenario, resolve_scenario
from racetape import point, point_blocking
from racetape._engine.strategies import RandomStrategy, run_seed
from racetape._target import Controlled, Jittered, Mode
from reftask.faults import Fault
from reftask.manager import RunContext, TaskManager
from reftask.models import EventKind, TaskStatus
from reftask.stores.base import SqlTaskStore

SCENARIO = "late-progress"
GUARD_OFF = frozenset({Fault.NO_TERMINAL_GUARD})
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

T = TypeVar("T")
Log = Callable[[str], None]


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


# -- one run of each kind ----------------------------------------------------------------------


@functools.cache
def _scenario() -> Scenario:
    # Loaded once: parsing the TOML costs about half a millisecond, a tenth of a run.
    return resolve_scenario(SCENARIO)


async def _execute(store: SqlTaskStore, faults: frozenset[Fault], mode: Mode) -> bool:
    """One run of the scenario; True if it stranded."""
    return bool((await execute(store, _scenario(), faults, mode)).violations)


def _controlled_mode(seed: int, index: int) -> Mode:
    return Controlled(RandomStrategy(run_seed(seed, index)))


def _jitter_mode(seed: int, index: int) -> Mode:
    return Jittered(run_seed(seed, index))


async def bare_run(store: SqlTaskStore) -> str:
    """The store calls of one late-progress run, through the adapter's SQL primitives only.

    The run's calls: create the row, RUNNING, append task_started, append progress 1 (the
    write the cancel finds in flight), CANCELLED, append final, then the oracle's two reads.
    """
    task_id = uuid.uuid4().hex
    now = time.time()
    await store._insert_task(task_id, now)
    await store._update_status(task_id, TaskStatus.RUNNING, now)
    await _bare_append(store, task_id, EventKind.TASK_STARTED, {})
    await _bare_append(store, task_id, EventKind.PROGRESS, {"step": 1})
    await store._update_status(task_id, TaskStatus.CANCELLED, time.time())
    await _bare_append(store, task_id, EventKind.FINAL, {"status": TaskStatus.CANCELLED.value})
    await store.get_task(task_id)
    await store.list_events(task_id)
    return task_id


async def _bare_append(store: SqlTaskStore, task_id: str, kind: str, body: dict[str, Any]) -> None:
    async with store._append_transaction(task_id, locked=True) as tx:
        _, max_seq = await tx.read_status_and_max_seq()
        await tx.insert(max_seq + 1, kind, body, time.time())


@dataclass
class NaiveLoop:
    """What one naive loop did: its timed runs' tasks and verdicts, and the seconds they took."""

    seconds: float
    task_ids: list[str]
    stranded: list[bool]


async def naive_loop(
    store: SqlTaskStore, runs: int, faults: frozenset[Fault], *, warmup: int = 0
) -> NaiveLoop:
    """The seed's test in a loop: no control; every run judged once every thread has drained.

    ``warmup`` untimed runs first, then ``runs`` timed ones. It drains by shutting down the
    loop's default executor, so the caller's event loop must be its own and end after it (see
    :func:`naive_chunk`). The seconds include the drain.
    """
    manager = TaskManager(store, faults=faults)
    task_ids: list[str] = []
    began = time.perf_counter()
    for index in range(warmup + runs):
        if index == warmup:
            began = time.perf_counter()
        started = asyncio.Event()

        async def runner(ctx: RunContext, started: asyncio.Event = started) -> None:
            started.set()
            await ctx.reporter.progress(step=1)
            await ctx.reporter.progress(step=2)

        task_id = await manager.submit(runner)
        await started.wait()
        await manager.cancel(task_id)
        await manager.wait(task_id)
        task_ids.append(task_id)
    # The cancelled writes are still in the default executor's threads: wait for them to land.
    await asyncio.get_running_loop().shutdown_default_executor()
    seconds = time.perf_counter() - began
    timed = task_ids[warmup:]
    stranded = []
    for task_id in timed:
        row, tape = await store.get_task(task_id), await store.list_events(task_id)
        stranded.append(bool(check_task(row, tape, runner_started=True)))
    return NaiveLoop(seconds, timed, stranded)


# -- measuring -----------------------------------------------------------------------------------

Chunk = Callable[[int, int], tuple[float, list[int]]]
"""Runs ``count`` runs from index ``start`` in an event loop of its own, after untimed warm-up
runs: the seconds the timed runs took and the 0-based indices of those that stranded."""


def _in_own_loop(db: Database, body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body`` in an event loop of its own; the stores it opened are closed after it."""

    async def main() -> T:
        try:
            return await body()
        finally:
            await db.close_stores()

    return asyncio.run(main())


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
                await _execute(store, faults, mode_of(WARMUP_SEED, index))
            indices = range(start, start + count)
            return await _timed_runs(lambda i: _execute(store, faults, mode_of(0, i)), indices)

        return _in_own_loop(db, body)

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

        return _in_own_loop(db, body)

    return chunk


def naive_chunk(db: Database, faults: frozenset[Fault]) -> Chunk:
    """One naive loop per chunk, in its own event loop (the loop drains by shutting down the
    event loop's executor)."""

    def chunk(start: int, count: int) -> tuple[float, list[int]]:
        async def body() -> NaiveLoop:
            return await naive_loop(await db.store(faults), count, faults, warmup=WARMUP_RUNS)

        loop = _in_own_loop(db, body)
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
                lambda i: _execute(store, GUARD_OFF, mode_of(seed, i)),
                range(runs),
                stop_at_first=True,
            )

        _, stranded = _in_own_loop(db, body)
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
                "controlled": harness_chunk(db, _controlled_mode, frozenset()),
                "controlled_fault": harness_chunk(db, _controlled_mode, GUARD_OFF),
                "jitter": harness_chunk(db, _jitter_mode, frozenset()),
                "jitter_fault": harness_chunk(db, _jitter_mode, GUARD_OFF),
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
                harness_first_strand(db, _controlled_mode, runs), seeds
            ),
            "jitter_fault": first_strands(harness_first_strand(db, _jitter_mode, runs), seeds),
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


# -- control points with no controller --------------------------------------------------------


def _empty(name: str, /, **info: object) -> None:
    """What a control point would cost if it were free: a call with the same arguments."""


async def _empty_async(name: str, /, **info: object) -> None:
    """The coroutine twin of :func:`_empty`."""


def _calls(point: Callable[..., None], number: int, task_id: str) -> float:
    """Seconds for ``number`` calls, as the reference code makes them (``append.begin``'s)."""
    began = time.perf_counter()
    for _ in range(number):
        point("append.begin", task_id=task_id, kind="progress", acquires=task_id)
    return time.perf_counter() - began


async def _awaits(
    point: Callable[..., Coroutine[Any, Any, None]], number: int, task_id: str
) -> float:
    """Seconds for ``number`` awaits of ``point``, as the reference code awaits a point."""
    began = time.perf_counter()
    for _ in range(number):
        await point("append.begin", task_id=task_id, kind="progress", acquires=task_id)
    return time.perf_counter() - began


def control_point_cost(number: int = 100_000, repeat: int = 7) -> dict[str, Any]:
    """Nanoseconds per control point with no controller installed, best of ``repeat``.

    :func:`racetape.point` is awaited in a coroutine on a running loop, as the reference code
    does; :func:`racetape.point_blocking` is called (the document keeps its keys,
    ``checkpoint_*``). Each has an empty baseline with the same signature and arguments, so
    ``*_over_empty_ns`` is what the point itself costs.
    """
    task_id = uuid.uuid4().hex

    # Each timing alternates with its baseline's, so a slow spell of the machine falls on both.
    async def awaited() -> tuple[float, float]:
        point_s, empty_s = [], []
        for _ in range(repeat):
            point_s.append(await _awaits(point, number, task_id))
            empty_s.append(await _awaits(_empty_async, number, task_id))
        return min(point_s), min(empty_s)

    checkpoint_s, empty_coroutine_s = asyncio.run(awaited())
    blocking, empty = [], []
    for _ in range(repeat):
        blocking.append(_calls(point_blocking, number, task_id))
        empty.append(_calls(_empty, number, task_id))
    blocking_s, empty_s = min(blocking), min(empty)

    def ns(seconds: float) -> float:
        return round(seconds / number * 1e9, 1)

    return {
        "checkpoint_ns": ns(checkpoint_s),
        "empty_coroutine_ns": ns(empty_coroutine_s),
        "checkpoint_blocking_ns": ns(blocking_s),
        "empty_function_ns": ns(empty_s),
        "checkpoint_over_empty_ns": ns(checkpoint_s - empty_coroutine_s),
        "checkpoint_blocking_over_empty_ns": ns(blocking_s - empty_s),
        "calls_timed": number,
    }


# -- memory ---------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (it never falls)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float | None:
    """This process's resident set size now; None where /proc is not there to tell."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * resource.getpagesize() / 2**20


def memory_profile(
    adapter: str, checkpoints: Sequence[int], *, pg_dsn: str | None, log: Log
) -> dict[str, Any]:
    """Peak and current RSS after each checkpoint count of controlled runs, in one event loop
    on one database, as a worker of ``racetape run`` keeps them.

    Flat means no growth per run: ``growth_kb_per_run`` is the slope of RSS between the first
    and the last checkpoint. It uses the current RSS where the system tells it, because the peak
    is the whole process's: an adapter measured earlier in the same bench can mask a later one's.
    """
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    samples: list[dict[str, Any]] = []

    async def body() -> None:
        store = await db.store()
        done = 0
        for target in sorted(set(checkpoints)):
            while done < target:
                await _execute(store, frozenset(), _controlled_mode(0, done))
                done += 1
            now, peak = rss_mb(), round(peak_rss_mb(), 1)
            sample = {"runs": done, "peak_rss_mb": peak, "rss_mb": now and round(now, 1)}
            samples.append(sample)
            log(f"{adapter}: {done} runs, RSS {sample['rss_mb']} MB, peak {peak} MB")

    try:
        _in_own_loop(db, body)
    finally:
        asyncio.run(db.cleanup())
    growth = None
    if len(samples) > 1:
        first, last = samples[0], samples[-1]
        key = "rss_mb" if first["rss_mb"] is not None else "peak_rss_mb"
        growth = round((last[key] - first[key]) * 1024 / (last["runs"] - first["runs"]), 4)
    return {"samples": samples, "growth_kb_per_run": growth}


def machine_load() -> list[float]:
    """The 1, 5 and 15 minute load averages while the bench ran (timing depends on them)."""
    return [round(x, 2) for x in os.getloadavg()]


# -- the whole bench -----------------------------------------------------------------------------


def run_bench(
    adapters: Sequence[str],
    *,
    runs: int,
    seeds: int,
    memory: Sequence[int] = (),
    scaling: int | None = None,
    pg_dsn: str | None = None,
    command: str = "racetape bench",
    log: Log = lambda line: None,
) -> dict[str, Any]:
    """Every figure of every adapter (and peak RSS after ``memory`` runs, and the scaling
    figure of a job of ``scaling`` runs, :mod:`harness.scaling`): the JSON document."""
    load_before = machine_load()
    log("control points with no controller")
    control_points = control_point_cost()
    log("unmodified code: the bug-1 example, controlled and plain")
    unmodified = unmodified_figures(runs)
    unmodified_pg: dict[str, Any] | None = None
    if "postgres" in adapters and pg_dsn is not None:
        log("unmodified code: the asyncpg worker example, controlled and plain")
        unmodified_pg = asyncpg_figures(runs, pg_dsn)
    rendered = []
    for adapter in adapters:
        result = bench_adapter(adapter, runs=runs, seeds=seeds, pg_dsn=pg_dsn, log=log)
        entry: dict[str, Any] = {
            "adapter": adapter,
            "figures": {key: figure.to_json() for key, figure in result["figures"].items()},
            "ratios": result["ratios"],
        }
        if memory:
            entry["memory"] = memory_profile(adapter, memory, pg_dsn=pg_dsn, log=log)
        if scaling:
            entry["scaling"] = scaling_adapter(adapter, scaling, pg_dsn=pg_dsn, log=log)
        rendered.append(entry)
    return {
        "schema": "racetape.bench/1",
        "racetape": version("racetape"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "scenario": SCENARIO,
        "settings": {"runs": runs, "seeds": seeds, "warmup_runs": WARMUP_RUNS, "scaling": scaling},
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": machine_load(),
        },
        "control_points": control_points,
        "unmodified": unmodified,
        **({"unmodified_asyncpg": unmodified_pg} if unmodified_pg is not None else {}),
        "adapters": rendered,
        "notes": [
            "wall-clock timing depends on the machine and its load (see machine)",
            "runs to first strand: median over repeats, each given at most `runs` runs",
            *(
                [f"postgres sessions use {PG_SESSION} (visibility and locks unchanged)"]
                if "postgres" in adapters
                else []
            ),
        ],
    }
