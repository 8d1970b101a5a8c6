"""``racetape bench``: the seed's race measured four ways, side by side, in one process.

Per adapter, on the late-progress race (a runner with two progress writes, cancelled while the
first is in flight):

* (a) controlled: racetape's controlled mode, ``random`` strategy, fault-free and with
  ``no-terminal-guard``;
* (b) jitter: racetape's jitter mode on the same scenario;
* (c) floor: the store calls one such run makes, executed bare: no manager, no threads, no
  harness (control points cost their no-controller check only);
* (d) naive: the cancel test the way the seed's tests were written: submit, await a
  ``started = asyncio.Event()`` the runner sets first, cancel, wait for the task; repeated in a
  loop with no control, the tapes judged after the loop once every thread has drained.

With the fault on, (a), (b) and (d) also report runs to the first strand (for (a) and (b) the
median over seeds). Ratios: throughput (a)/(d), floor over controlled (c)/(a), and detection
(d)/(a) in runs to the first strand. Timing is wall clock and depends on the machine and its
load; the runs-to-first-strand figures of (a) do not (they are seeded and controlled).
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.adapters import Database
from harness.oracle import check_task
from harness.run import Controlled, Jittered, execute
from harness.runner import run_seed
from harness.scenario import resolve_scenario
from harness.strategies import RandomStrategy
from reftask.faults import Fault
from reftask.manager import RunContext, TaskManager
from reftask.models import EventKind, TaskStatus
from reftask.stores.base import SqlTaskStore

GUARD_OFF = frozenset({Fault.NO_TERMINAL_GUARD})


@dataclass
class Figure:
    name: str
    runs: int
    seconds: float
    runs_to_first_strand: float | None = None  # None: not measured; inf: none within the runs

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs_per_s"] = round(self.runs_per_s, 1)
        if self.runs_to_first_strand == float("inf"):
            data["runs_to_first_strand"] = None
            data["note"] = f"no strand in {self.runs} runs"
        return data


async def _timed(
    runs: int, one: Callable[[int], Coroutine[Any, Any, bool]]
) -> tuple[float, int | None]:
    """Run ``one(i)`` ``runs`` times; seconds taken, and the first i (1-based) that stranded."""
    first = None
    began = time.perf_counter()
    for index in range(runs):
        if await one(index) and first is None:
            first = index + 1
    return time.perf_counter() - began, first


async def controlled(
    store: SqlTaskStore, runs: int, faults: frozenset[Fault], seed: int
) -> tuple[float, int | None]:
    scenario = resolve_scenario("late-progress")

    async def one(index: int) -> bool:
        mode = Controlled(RandomStrategy(run_seed(seed, index)))
        return bool((await execute(store, scenario, faults, mode)).violations)

    return await _timed(runs, one)


async def jittered(
    store: SqlTaskStore, runs: int, faults: frozenset[Fault], seed: int
) -> tuple[float, int | None]:
    scenario = resolve_scenario("late-progress")

    async def one(index: int) -> bool:
        mode = Jittered(run_seed(seed, index))
        return bool((await execute(store, scenario, faults, mode)).violations)

    return await _timed(runs, one)


async def floor(store: SqlTaskStore, runs: int) -> float:
    """The store calls of one late-progress run, bare, ``runs`` times: the cost of the database."""

    async def one(index: int) -> bool:
        task_id = uuid.uuid4().hex
        await store.create_task(task_id)
        await store.set_status(task_id, TaskStatus.RUNNING)
        await store.append_event(task_id, {"kind": EventKind.TASK_STARTED, "body": {}})
        await store.append_event(task_id, {"kind": EventKind.PROGRESS, "body": {"step": 1}})
        await store.set_status(task_id, TaskStatus.CANCELLED)
        await store.append_event(
            task_id, {"kind": EventKind.FINAL, "body": {"status": "CANCELLED"}}
        )
        await store.append_event(task_id, {"kind": EventKind.PROGRESS, "body": {"step": 2}})
        await store.get_task(task_id)
        await store.list_events(task_id)
        return False

    seconds, _ = await _timed(runs, one)
    return seconds


async def naive(
    store: SqlTaskStore, runs: int, faults: frozenset[Fault]
) -> tuple[float, int | None]:
    """The seed's test in a loop: no control; strands judged once every worker thread drained."""
    manager = TaskManager(store, faults=faults)
    task_ids: list[str] = []
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    for _ in range(runs):
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
    # Drain: wait for the detached writes still in the default executor's threads.
    await loop.shutdown_default_executor()
    seconds = time.perf_counter() - began
    first = None
    for index, task_id in enumerate(task_ids):
        row, tape = await store.get_task(task_id), await store.list_events(task_id)
        if check_task(row, tape, runner_started=True):
            first = index + 1
            break
    return seconds, first


def _median_first(firsts: Sequence[int | None], budget: int) -> float:
    values = [float("inf") if f is None else float(f) for f in firsts]
    value = statistics.median_low(values)
    return value if value <= budget else float("inf")


async def bench_adapter(
    adapter: str, *, runs: int, seeds: int, pg_dsn: str | None, log: Callable[[str], None]
) -> dict[str, Any]:
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    try:
        clean, faulty = await db.store(), await db.store(GUARD_OFF)
        figures: dict[str, Figure] = {}
        log(f"{adapter}: (c) floor")
        figures["floor"] = Figure("(c) floor: bare store calls", runs, await floor(clean, runs))
        log(f"{adapter}: (a) controlled")
        seconds, _ = await controlled(clean, runs, frozenset(), seed=0)
        figures["controlled"] = Figure("(a) controlled, fault-free", runs, seconds)
        firsts, total = [], 0.0
        for seed in range(seeds):
            seconds, first = await controlled(faulty, runs, GUARD_OFF, seed)
            firsts.append(first)
            total += seconds
        figures["controlled_fault"] = Figure(
            "(a) controlled, no-terminal-guard", runs * seeds, total, _median_first(firsts, runs)
        )
        log(f"{adapter}: (b) jitter")
        seconds, _ = await jittered(clean, runs, frozenset(), seed=0)
        figures["jitter"] = Figure("(b) jitter, fault-free", runs, seconds)
        firsts, total = [], 0.0
        for seed in range(seeds):
            seconds, first = await jittered(faulty, runs, GUARD_OFF, seed)
            firsts.append(first)
            total += seconds
        figures["jitter_fault"] = Figure(
            "(b) jitter, no-terminal-guard", runs * seeds, total, _median_first(firsts, runs)
        )
        log(f"{adapter}: (d) naive loop")
        seconds, _ = await naive(clean, runs, frozenset())
        figures["naive"] = Figure("(d) naive loop, fault-free", runs, seconds)
        naive_runs = runs * seeds
        seconds, first = await naive(faulty, naive_runs, GUARD_OFF)
        figures["naive_fault"] = Figure(
            "(d) naive loop, no-terminal-guard",
            naive_runs,
            seconds,
            float("inf") if first is None else float(first),
        )
    finally:
        await db.cleanup()
    return {"adapter": adapter, "figures": figures, "ratios": ratios(figures)}


def ratios(figures: dict[str, Figure]) -> dict[str, float | None]:
    a, c, d = figures["controlled"], figures["floor"], figures["naive"]
    a_first = figures["controlled_fault"].runs_to_first_strand
    d_first = figures["naive_fault"].runs_to_first_strand
    detection = None
    if a_first and d_first is not None and a_first != float("inf"):
        detection = None if d_first == float("inf") else round(d_first / a_first, 1)
    return {
        "controlled_over_naive": round(a.runs_per_s / d.runs_per_s, 2),
        "floor_over_controlled": round(c.runs_per_s / a.runs_per_s, 2),
        "naive_over_controlled_runs_to_first_strand": detection,
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def memory_profile(
    adapter: str, checkpoints: Sequence[int], *, pg_dsn: str | None, log: Callable[[str], None]
) -> list[dict[str, float]]:
    """Peak RSS after each checkpoint count of controlled runs (flat means no growth per run)."""
    scenario = resolve_scenario("late-progress")
    db = Database.fresh(adapter, pg_dsn=pg_dsn)
    samples = []
    try:
        store = await db.store()
        done = 0
        for target in sorted(checkpoints):
            while done < target:
                mode = Controlled(RandomStrategy(run_seed(0, done)))
                await execute(store, scenario, frozenset(), mode)
                done += 1
            samples.append({"runs": done, "peak_rss_mb": round(peak_rss_mb(), 1)})
            log(f"{adapter}: {done} runs, peak RSS {samples[-1]['peak_rss_mb']} MB")
    finally:
        await db.cleanup()
    return samples
