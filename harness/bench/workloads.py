"""One run of each kind the bench measures, on the late-progress race: a racetape run in a
mode (controlled, jitter), the floor's bare store calls, and the naive loop.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.adapters import Database
from harness.oracle import check_task
from harness.run import execute
from harness.scenario import Scenario, resolve_scenario
from racetape._engine.strategies import RandomStrategy, run_seed
from racetape._target import Controlled, Jittered, Mode
from reftask.faults import Fault
from reftask.manager import RunContext, TaskManager
from reftask.models import EventKind, TaskStatus
from reftask.stores.base import SqlTaskStore

SCENARIO = "late-progress"
GUARD_OFF = frozenset({Fault.NO_TERMINAL_GUARD})
T = TypeVar("T")
Log = Callable[[str], None]


@functools.cache
def _scenario() -> Scenario:
    # Loaded once: parsing the TOML costs about half a millisecond, a tenth of a run.
    return resolve_scenario(SCENARIO)


async def run_strands(store: SqlTaskStore, faults: frozenset[Fault], mode: Mode) -> bool:
    """One run of the scenario; True if it stranded."""
    return bool((await execute(store, _scenario(), faults, mode)).violations)


def controlled_mode(seed: int, index: int) -> Mode:
    return Controlled(RandomStrategy(run_seed(seed, index)))


def jitter_mode(seed: int, index: int) -> Mode:
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


def in_own_loop(db: Database, body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body`` in an event loop of its own; the stores it opened are closed after it."""

    async def main() -> T:
        try:
            return await body()
        finally:
            await db.close_stores()

    return asyncio.run(main())
